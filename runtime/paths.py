"""Where pyctr keeps things. Each can be moved (flag or environment), so a
test or a simulated cluster node gets its own world:

  state   --root DIR    PYCTR_ROOT    /run/pyctr       tmpfs: containers, leases, locks, scratch
                                      ($XDG_RUNTIME_DIR/pyctr when not root)
  config  --config DIR  PYCTR_CONFIG  /etc/pyctr       networks/*.toml
  data    --data DIR    PYCTR_DATA    /var/lib/pyctr   images/<name>/{rootfs,image.json}
"""
from pyctr import posixos as os  # os without its import cost: see posixos



class Paths:
    __slots__ = ("root", "config", "data")

    def __init__(self, root=None, config=None, data=None):
        env = os.environ
        self.root = root or env.get("PYCTR_ROOT") or _default_root()
        self.config = config or env.get("PYCTR_CONFIG") or "/etc/pyctr"
        self.data = data or env.get("PYCTR_DATA") or "/var/lib/pyctr"

    @property
    def rootless(self):
        return os.geteuid() != 0

    @property
    def containers(self):
        return os.path.join(self.root, "containers")

    @property
    def scratch(self):
        """The mount point of every container's tmpfs under its overlay
        (container.clone): an empty directory on the host."""
        return os.path.join(self.root, "scratch")

    @property
    def leases(self):
        return os.path.join(self.root, "ipam")

    @property
    def networks(self):
        return os.path.join(self.config, "networks")

    @property
    def images(self):
        return os.path.join(self.data, "images")


def _default_root():
    if os.geteuid() == 0:
        return "/run/pyctr"
    # Rootless: the user's runtime dir (tmpfs too), as podman does.
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or "/run/user/%d" % os.geteuid()
    if os.path.isdir(runtime_dir):
        return os.path.join(runtime_dir, "pyctr")
    return "/tmp/pyctr-%d" % os.geteuid()
