"""`pyctr spec` with no image or rootfs: runc's `spec`, a starting
config.json for a bundle whose root filesystem is its rootfs/ directory."""
import json

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import identity, spec
from pyctr.errors import PyctrError


def default_config():
    """What `runc spec` writes, in pyctr's defaults: sh on a terminal, the
    default mounts, masks and capabilities, new namespaces, a read-only root."""
    config = spec.Spec(
        process=spec.Process(args=["sh"], env=[spec.DEFAULT_ENV_PATH, "TERM=xterm"],
                             capabilities=identity.podman_capabilities(0, [], [])),
        root=spec.Root(path="rootfs", readonly=True), hostname="pyctr",
        mounts=spec.default_mounts(),
        namespaces=[spec.Namespace(type=t) for t in ("pid", "network", "ipc", "uts", "mount")],
        masked_paths=list(spec.DEFAULT_MASKED_PATHS),
        readonly_paths=list(spec.DEFAULT_READONLY_PATHS)).to_oci()
    config["process"]["terminal"] = True
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]
    return config


def write(bundle):
    """bundle/config.json, never over an existing one (as runc)."""
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError as e:
        raise PyctrError("%s exists already: remove it first" % path) from e
    except OSError as e:
        raise PyctrError("cannot write %s: %s" % (path, e.strerror)) from e
    with os.fdopen(fd, "w") as f:
        json.dump(default_config(), f, indent=2)
        f.write("\n")
