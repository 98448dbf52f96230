"""Container state under <root>/containers/<name>/ (tmpfs by default):

  state.json   the ContainerState below, replaced atomically on every change
  config.json  the OCI-shaped spec the container was made from
  hosts, hostname, resolv.conf
               the container's /etc files, bind-mounted into it
  log          stdout+stderr of a detached container
  exit         the workload's exit code, written by pyctr-monitor (pyctr.monitor)
               until `_finished` records it here

The directory is created (atomically: mkdir fails if the name is taken)
before the container exists and state.json is written right after, so a
container never runs without a record, and a record whose writer died is
recognisable (its owner is gone). Every verb reaches a container through
StateStore.load(name); a name is checked at creation and at every lookup,
so no verb can touch a path outside the state directory.
"""
import time

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import fileio, jsonio
from pyctr.errors import PyctrError
from pyctr.spec import Record

OWNER_RECORDS_WITHIN = 2.0  # seconds: see StateStore._recorded_exit
MAX_NAME = 200  # engines' ids: 64 hex (podman, containerd); Slurm's %n.%u.%j.%s.%t


def check_name(name):
    """A container name or OCI id: letters, digits, then also _ . - ;
    so never empty, never '.', '..' or anything with '/'."""
    ok = isinstance(name, str) and 0 < len(name) <= MAX_NAME and name[0].isascii() \
        and name[0].isalnum() and all(c.isascii() and (c.isalnum() or c in "_.-") for c in name)
    if not ok:
        raise PyctrError("invalid container name %r: use letters, digits, _ . - (first a letter "
                         "or digit, at most %d)" % (name, MAX_NAME))
    return name


STATUSES = ("creating", "created", "running", "paused", "stopped")


class DamagedRecord(PyctrError):
    """A record that is there but is not one pyctr can read (a torn or
    foreign state.json): `rm -f` and `gc` remove it, nothing else acts on it."""


def _is_record(data):
    """A JSON value that is a record pyctr wrote: what every reader relies on."""
    return isinstance(data, dict) and isinstance(data.get("id"), str) \
        and isinstance(data.get("name"), str) and data.get("status", "creating") in STATUSES \
        and type(data.get("pid", 0)) is int and type(data.get("owner_pid", 0)) is int


class ContainerState(Record):
    """What pyctr knows of one container. `status` is what was recorded:
    creating -> created -> running -> stopped (paused by `pause`);
    live_status() corrects it for processes that died unrecorded.

    owner_*: the process that created the container and cleans it up (the
    `run` process, the -d monitor); a dead owner of an unfinished record
    marks what a crash left for `pyctr gc`."""
    __slots__ = ("id", "name", "status", "pid", "pid_start", "owner_pid", "owner_start",
                 "rootfs", "image", "bundle", "command", "created", "started", "finished",
                 "exit_code", "remove", "detach", "networks", "cgroup", "mpi_env",
                 "pmix_relay", "annotations",
                 # a bundle's (pyctr.oci.lifecycle): engine, hooks, netns, freezer
                 "oci")
    DEFAULTS = {"status": "creating", "pid": 0, "owner_pid": 0, "command": list,
                "remove": False, "detach": False, "networks": list, "mpi_env": dict,
                "pmix_relay": list, "annotations": dict}

    def to_json(self):
        return {n: getattr(self, n) for n in self.__slots__}

    @classmethod
    def from_json(cls, data):
        if not _is_record(data):
            raise ValueError("not a container record")
        # Unknown keys come from another pyctr version: keep what we know.
        return cls(**{k: v for k, v in data.items() if k in cls.__slots__})

    def process_alive(self):
        return is_alive(self.pid, self.pid_start)

    def owner_alive(self):
        return is_alive(self.owner_pid, self.owner_start)

    def live_status(self):
        return live_status(self.status, self.pid, self.pid_start, self.owner_pid,
                           self.owner_start)

    def crashed(self):
        """Left by a crash: unfinished, and neither its owner nor its process lives."""
        return self.status != "stopped" and not self.owner_alive() and not self.process_alive()

    def exited(self, code, finished=None):
        """The workload ended with `code` (128+N: signal N), now or at `finished`."""
        self.status, self.exit_code, self.finished = "stopped", code, finished or now()


def live_status(status, pid, pid_start, owner_pid, owner_start):
    """The recorded status, corrected for a container whose process is gone
    without its owner recording it (owner killed), and for one whose
    creator died before it ever ran."""
    if status in ("created", "running", "paused") and not is_alive(pid, pid_start):
        return "stopped"
    if status == "creating" and not is_alive(owner_pid, owner_start):
        return "stopped"
    return status


class StateStore:
    def __init__(self, paths):
        self.base = paths.containers

    def dir(self, name):
        return os.path.join(self.base, check_name(name))

    def reserve(self, state):
        """Claim state.name with its first record in one step; fails if
        another container (running or not) has the name. The directory is
        made under a temporary name and renamed into place, so no name is
        ever taken by a directory without a record (a creator killed in
        between leaves only a `.new-PID-*` entry that gc removes)."""
        final = self.dir(state.name)
        # 0711: a container whose root is an unprivileged host uid (--userns)
        # must reach its bind-mounted /etc files, but not list other containers.
        os.makedirs(self.base, mode=0o711, exist_ok=True)
        tmp = os.path.join(self.base, ".new-%d-%s" % (os.getpid(), os.urandom(4).hex()))
        os.mkdir(tmp, 0o711)
        try:
            fileio.write(os.path.join(tmp, "state.json"), jsonio.dumps(state.to_json()).encode())
            os.rename(tmp, final)  # fails on a taken name: that dir is never empty
        except OSError as e:
            remove_tree(tmp)
            if e.errno in (17, 39):  # EEXIST, ENOTEMPTY
                raise PyctrError("container name %r is already in use (pyctr rm %s)"
                                 % (state.name, state.name)) from e
            raise PyctrError("cannot record container %s" % state.name, e.errno or 0) from e
        return final

    def stale_reservations(self):
        """`.new-PID-*` directories whose creator is dead (for gc)."""
        try:
            entries = os.listdir(self.base)
        except FileNotFoundError:
            return []
        stale = []
        for entry in entries:
            if entry.startswith(".new-"):
                pid = entry.split("-")[1]
                if not pid.isdigit() or not os.path.exists("/proc/" + pid):
                    stale.append(os.path.join(self.base, entry))
        return stale

    def load(self, name):
        """The ContainerState of `name`, or one clear error."""
        state = self._read(name)
        if state.status == "running" and state.exit_code is None \
                and state.owner_pid != os.getpid() and not state.process_alive():
            return self._recorded_exit(name, state)
        return state

    def _read(self, name):
        path = os.path.join(self.dir(name), "state.json")
        try:
            raw = fileio.read(path)
        except (FileNotFoundError, NotADirectoryError) as e:  # a file beside the records
            raise PyctrError("no such container: %s" % name) from e
        try:
            state = ContainerState.from_json(jsonio.loads(raw.decode()))
        except (ValueError, TypeError) as e:
            if os.path.islink(self.dir(name)):  # not made by pyctr: never removed as a record
                raise PyctrError("no such container: %s" % name) from e
            raise DamagedRecord("state of %s is damaged (%s); `pyctr rm -f %s` removes it"
                                % (name, e, name)) from e
        if state.status == "running" and state.exit_code is None:
            _exit_written(self.dir(name), state)
        return state

    def _recorded_exit(self, name, state):
        """The workload has ended but its exit code is not on record yet.
        If its owner lives, the owner is between reaping it and recording
        the code (in `exit` or the record: microseconds, more on a busy
        node), so wait for that: `stopped` is never shown without its code
        while one is coming. Bounded, for an owner that is itself stopped."""
        deadline = time.monotonic() + OWNER_RECORDS_WITHIN
        while state.owner_alive() and time.monotonic() < deadline:
            time.sleep(0.002)
            try:
                fresh = self._read(name)
            except PyctrError:
                return state  # removed meanwhile: what was read stays true
            if fresh.status != "running" or fresh.exit_code is not None:
                return fresh
        return state

    def peek(self, name):
        """The raw record of `name` (a dict), or None if it is gone or
        damaged: for listing many (`ps`) without building each state."""
        try:
            fd = os.open(os.path.join(self.base, name, "state.json"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = jsonio.loads(fileio.read_fd(fd).decode())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        finally:
            os.close(fd)
        return data if _is_record(data) else None

    def save(self, state):
        """Replace the record atomically. Never recreates a removed container:
        an owner recording the exit of a container `rm -f` just removed
        would otherwise bring its directory back."""
        self.write_file(state.name, "state.json", jsonio.dumps(state.to_json()))

    def write_file(self, name, filename, text):
        try:
            fileio.replace(os.path.join(self.dir(name), filename), text.encode())
        except FileNotFoundError:
            pass

    def read_file(self, name, filename):
        try:
            return fileio.read(os.path.join(self.dir(name), filename)).decode()
        except FileNotFoundError as e:
            raise PyctrError("no such container: %s" % name) from e

    def names(self):
        """Every container name on record (entries that are not directories
        with valid names were not made by pyctr and are left alone; the
        directory entry's type tells, no stat per record)."""
        try:
            with os.scandir(self.base) as entries:
                return sorted(e.name for e in entries
                              if e.is_dir(follow_symlinks=False) and _valid(e.name))
        except FileNotFoundError:
            return []

    def remove(self, name):
        remove_tree(self.dir(name))


def _exit_written(state_dir, state):
    """The exit code pyctr-monitor wrote to `exit` (pyctr.monitor) before
    `_finished` records it: the workload has ended. The status stays as
    recorded (live_status tells), so a record whose owner died before
    cleaning up is still what gc removes."""
    try:
        fd = os.open(os.path.join(state_dir, "exit"), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        text, written = os.read(fd, 32), os.fstat(fd).st_mtime
    finally:
        os.close(fd)
    if text.strip().isdigit():
        state.exit_code = int(text)
        state.finished = time.strftime(TIME_FORMAT, time.gmtime(written))


def _valid(name):
    try:
        check_name(name)
        return True
    except PyctrError:
        return False


def process_start_time(pid):
    """Start time of `pid` in clock ticks since boot, or None if it is gone.
    (pid, start time) names a process for good: pids are reused, this pair is not."""
    try:
        fd = os.open("/proc/%d/stat" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        stat = os.read(fd, 4096)  # a /proc file is read whole in one call
    except OSError:
        return None
    finally:
        os.close(fd)
    # comm (field 2) may hold spaces or parentheses: split after the last ')'
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has finished: only its parent has yet to notice
    return int(fields[19])


def is_alive(pid, start_time):
    return bool(pid) and start_time is not None and process_start_time(pid) == start_time


def remove_tree(top):
    """shutil.rmtree(top, ignore_errors=True) without importing shutil (and
    the compression modules it pulls in) on `run --rm`'s path. Never
    follows a symlink: a link is removed, not what it points to."""
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


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def now():
    return time.strftime(TIME_FORMAT, time.gmtime())
