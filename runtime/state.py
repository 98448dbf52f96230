"""Container state under <root>/containers/<name>/ (tmpfs by default):

  state.json   id, name, status, pid (+ its start time), networks, exit code ...
  config.json  the OCI-shaped spec the container was made from
  etc/         hosts, hostname, resolv.conf bind-mounted into the container
  rootfs/      where an image-based root is mounted (inside the container only)
  log          stdout+stderr of a detached container

The directory is created (atomically: mkdir fails if the name is taken)
before the container exists and state.json is written before the workload
starts, so a container is never running without a record.
"""
import os
import time

from pyctr import jsonio
from pyctr.errors import PyctrError


def process_start_time(pid):
    """Start time of `pid` in clock ticks since boot, or None if it is gone.
    (pid, start time) names a process for good: pids are reused, this pair is not."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces or parentheses: split after the last ')'
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has finished: only its parent has yet to notice
    return int(fields[19])


def is_alive(pid, start_time):
    return bool(pid) and start_time is not None and process_start_time(pid) == start_time


class StateStore:
    def __init__(self, paths):
        self.base = paths.containers

    def dir(self, name):
        return os.path.join(self.base, name)

    def reserve(self, name):
        """Claim `name`; fails if another container (running or not) has it."""
        # 0711: a container whose root is an unprivileged host uid (--userns)
        # must reach its bind-mounted etc/ files, but not list other containers.
        os.makedirs(self.base, mode=0o711, exist_ok=True)
        try:
            os.mkdir(self.dir(name), 0o711)
        except FileExistsError:
            raise PyctrError("container name %r is already in use (pyctr rm %s)" % (name, name))
        return self.dir(name)

    def write(self, name, state, filename="state.json"):
        """Replace a record atomically. Never recreates a removed container:
        an owner recording the exit of a container `rm -f` just removed
        would otherwise bring its directory back."""
        path = os.path.join(self.dir(name), filename)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(jsonio.dumps(state))
            os.rename(tmp, path)
        except FileNotFoundError:
            pass

    def read(self, name, filename="state.json"):
        try:
            with open(os.path.join(self.dir(name), filename)) as f:
                return jsonio.loads(f.read())
        except FileNotFoundError:
            raise PyctrError("no such container: %s" % name)
        except ValueError as e:
            raise PyctrError("state of %s is damaged (%s); `pyctr rm -f %s` removes it"
                             % (name, e, name))

    def names(self):
        try:
            return sorted(os.listdir(self.base))
        except FileNotFoundError:
            return []

    def remove(self, name):
        remove_tree(self.dir(name))

    def status(self, state):
        """What `ps` shows: the recorded status, corrected for a process that
        is gone without its owner recording it (owner killed)."""
        if state.get("status") in ("created", "running") and not is_alive(
                state.get("pid"), state.get("pid_start")):
            return "stopped"
        return state.get("status", "unknown")


def remove_tree(top):
    """shutil.rmtree(top, ignore_errors=True) without importing shutil (and
    the compression modules it pulls in) on `run --rm`'s path."""
    for root, dirs, files in os.walk(top, topdown=False):
        for name in files:
            _quietly(os.unlink, os.path.join(root, name))
        for name in dirs:
            path = os.path.join(root, name)
            _quietly(os.unlink if os.path.islink(path) else os.rmdir, path)
    _quietly(os.rmdir, top)


def _quietly(fn, path):
    try:
        fn(path)
    except OSError:
        pass


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
