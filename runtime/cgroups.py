"""A container's own cgroup: layout detection, create, attach, limits,
freeze/thaw, removal and gc.

Layouts (read from /proc/self/mountinfo, never assumed):
  v1 / hybrid  one hierarchy per controller set under /sys/fs/cgroup/<name>,
               maybe with a controller-less cgroup2 at /sys/fs/cgroup/unified;
  v2           the unified tree at /sys/fs/cgroup, controllers in it.

pyctr makes one group per container in EVERY mounted hierarchy (named ones
too): the container's cgroup namespace is rooted at its groups, so a
hierarchy left out would show it the host's groups there. A default group is

  <own cgroup>/pyctr/<world>-<id>          limits and device rules
  <own cgroup>/pyctr/<world>-<id>/ctr      the container's processes

"own cgroup" is pyctr's own in v1 and its parent in v2 (pyctr's own may hold
processes, and then v2 allows no controllers below it); relative paths
mean the same for runc. <world> is a hash of the state root, so `gc` of one
pyctr world never touches another's groups. The processes live one level
below the limits: a container's root that mounts cgroupfs in a new user and
cgroup namespace sees `ctr` as its root and cannot raise its own limits
(cgroup v1 checks only file ownership there). An OCI bundle's
linux.cgroupsPath is used as it stands, with no `ctr` level.

What `create` made is recorded in the container's state as "cgroup" (see
Group.record), and `remove`, `freeze`, `thaw` and `gc` work from that record.
"""
import os

from pyctr import syscalls
from pyctr.errors import PyctrError
from pyctr.spec import Record

ROOT = "/sys/fs/cgroup"
PARENT = "pyctr"
LEAF = "ctr"
CFS_PERIOD = 100000
MIN_MEMORY = 6 * 1024 * 1024  # podman's lower bound: less cannot start a process


class Resources(Record):
    """Limits and the device policy, as podman options and OCI
    linux.resources give them. None means "not set" (the host's default).

    memory, memory_swap, memory_reservation in bytes; memory_swap is memory
    plus swap (-1: unlimited), as podman's --memory-swap; cpu_quota and
    cpu_period in microseconds; pids_limit -1 is unlimited.
    device_rules: devices.Rule list added after the default policy;
    devices: devices.Device nodes to make in /dev (and allow);
    path: linux.cgroupsPath, None for pyctr's own group."""
    __slots__ = ("memory", "memory_swap", "memory_reservation", "cpu_shares", "cpu_quota",
                 "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit", "device_rules",
                 "devices", "path")
    DEFAULTS = {"device_rules": list, "devices": list}

    LIMITS = ("memory", "memory_swap", "memory_reservation", "cpu_shares", "cpu_quota",
              "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit")

    def limits(self):
        """The settings that are set, as {name: value} (for inspect)."""
        return {name: getattr(self, name) for name in self.LIMITS
                if getattr(self, name) is not None}

    def oci_linux(self):
        """linux.resources, linux.devices and linux.cgroupsPath of config.json."""
        linux = {"resources": self.to_oci()}
        if self.devices:
            linux["devices"] = [d.to_oci() for d in self.devices]
        if self.path:
            linux["cgroupsPath"] = self.path
        return linux

    def to_oci(self):
        """linux.resources as the OCI runtime spec writes it."""
        out = {}
        memory = {"limit": self.memory, "swap": self.memory_swap,
                  "reservation": self.memory_reservation}
        cpu = {"shares": self.cpu_shares, "quota": self.cpu_quota, "period": self.cpu_period,
               "cpus": self.cpuset_cpus, "mems": self.cpuset_mems}
        for key, values in (("memory", memory), ("cpu", cpu)):
            values = {k: v for k, v in values.items() if v is not None}
            if values:
                out[key] = values
        if self.pids_limit is not None:
            out["pids"] = {"limit": self.pids_limit}
        from pyctr import devices
        out["devices"] = [r.to_oci() for r in devices.policy(self)]
        return out


# -- parsing (CLI/TOML and OCI), all before clone --------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(option, text):
    """podman's sizes: 512m, 1g, 1.5g, 1024 (bytes); k/m/g/t, optionally
    followed by b or ib, any case."""
    raw = str(text).strip().lower()
    for suffix in ("ib", "b"):
        if raw.endswith(suffix) and raw[:-len(suffix)][-1:] in "kmgt" and len(raw) > len(suffix):
            raw = raw[:-len(suffix)]
            break
    unit = raw[-1:] if raw[-1:] in _UNITS and raw[-1:] else ""
    number = raw[:-1] if unit else raw
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not number or not 0 <= value < 1 << 50 or number.startswith(("+", "-")):
        raise PyctrError("invalid %s %r: expected a size such as 512m or 2g" % (option, text))
    return int(value * _UNITS[unit])


def parse_cpu_list(option, text):
    """A cpuset list (0-3,6): checked here, kept as the kernel reads it."""
    text = str(text).strip()
    try:
        for part in text.split(","):
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and (not last.isdigit() or int(last) < int(first))):
                raise ValueError(part)
    except ValueError as e:
        raise PyctrError("invalid %s %r: expected a list such as 0-3,6" % (option, text)) from e
    return text


def expand_cpu_list(text):
    numbers = set()
    for part in text.split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def _int(option, value, low, high=None):
    try:
        number = int(value)
        if isinstance(value, float) or isinstance(value, bool):
            raise ValueError(value)
    except (TypeError, ValueError) as e:
        raise PyctrError("invalid %s %r: expected a whole number" % (option, value)) from e
    if number < low or (high is not None and number > high):
        raise PyctrError("invalid %s %d: allowed range is %d..%s" % (
            option, number, low, high if high is not None else "any"))
    return number


def from_options(opts, rootless=False):
    """CLI/TOML keys (memory, memory_swap, cpus, cpu_shares, cpuset_cpus,
    cpuset_mems, pids_limit, device) -> Resources."""
    res = Resources()
    if rootless:
        asked = [k for k in OPTION_KEYS if opts.get(k) not in (None, [])]
        if asked:
            raise PyctrError("--%s needs root: rootless containers get no cgroup of their own"
                             % asked[0].replace("_", "-"))
        return res
    if opts.get("memory") is not None:
        res.memory = parse_bytes("--memory", opts["memory"])
    if opts.get("memory_swap") is not None:
        swap = str(opts["memory_swap"]).strip()
        res.memory_swap = -1 if swap == "-1" else parse_bytes("--memory-swap", swap)
    if opts.get("cpus") is not None:
        try:
            cpus = float(opts["cpus"])
        except (TypeError, ValueError) as e:
            raise PyctrError("invalid --cpus %r: expected a number such as 1.5"
                             % (opts["cpus"],)) from e
        if not 0.01 <= cpus <= os.cpu_count():
            raise PyctrError("invalid --cpus %s: allowed range is 0.01..%d (the host's CPUs)"
                             % (opts["cpus"], os.cpu_count()))
        res.cpu_period, res.cpu_quota = CFS_PERIOD, int(round(cpus * CFS_PERIOD))
    if opts.get("cpu_shares") is not None:
        res.cpu_shares = _int("--cpu-shares", opts["cpu_shares"], 2, 262144)
    if opts.get("cpuset_cpus") is not None:
        res.cpuset_cpus = parse_cpu_list("--cpuset-cpus", opts["cpuset_cpus"])
    if opts.get("cpuset_mems") is not None:
        res.cpuset_mems = parse_cpu_list("--cpuset-mems", opts["cpuset_mems"])
    if opts.get("pids_limit") is not None:
        limit = _int("--pids-limit", opts["pids_limit"], -1)
        res.pids_limit = -1 if limit == 0 else limit  # podman: 0 and -1 mean unlimited
    if opts.get("device"):
        from pyctr import devices
        for text in opts["device"]:
            devices.add_option(res, text)
    check(res)
    return res


OPTION_KEYS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "cpuset_mems",
               "pids_limit", "device")


def from_oci(linux):
    """linux.resources, linux.devices and linux.cgroupsPath -> Resources.
    Settings pyctr cannot honour are refused, never dropped silently."""
    from pyctr import devices
    resources = linux.get("resources") or {}
    res = Resources()
    _refuse(resources, "linux.resources", ("memory", "cpu", "pids", "devices"))
    memory = resources.get("memory") or {}
    _refuse(memory, "linux.resources.memory", ("limit", "swap", "reservation"))
    res.memory, res.memory_swap, res.memory_reservation = (
        _oci_int(memory, key, "memory") for key in ("limit", "swap", "reservation"))
    cpu = resources.get("cpu") or {}
    _refuse(cpu, "linux.resources.cpu", ("shares", "quota", "period", "cpus", "mems"))
    res.cpu_shares, res.cpu_quota, res.cpu_period = (
        _oci_int(cpu, key, "cpu") for key in ("shares", "quota", "period"))
    if cpu.get("cpus"):
        res.cpuset_cpus = parse_cpu_list("linux.resources.cpu.cpus", cpu["cpus"])
    if cpu.get("mems"):
        res.cpuset_mems = parse_cpu_list("linux.resources.cpu.mems", cpu["mems"])
    if res.memory is not None and res.memory < 0:
        res.memory = None  # -1: no limit
    res.pids_limit = _oci_int(resources.get("pids") or {}, "limit", "pids")
    if res.pids_limit is not None and res.pids_limit <= 0:
        res.pids_limit = -1
    if res.cpu_quota is not None and res.cpu_quota <= 0:
        res.cpu_quota = None  # -1: no quota
    if res.cpu_quota and not res.cpu_period:
        res.cpu_period = CFS_PERIOD
    res.device_rules = [devices.rule_from_oci(r) for r in resources.get("devices") or []]
    res.devices = [devices.device_from_oci(d) for d in linux.get("devices") or []]
    path = linux.get("cgroupsPath")
    if path:
        res.path = oci_path(str(path))
    check(res)
    return res


def _refuse(section, where, known):
    if not isinstance(section, dict):
        raise PyctrError("%s must be an object" % where)
    for key, value in section.items():
        if key not in known and value not in (None, {}, [], 0, False):
            raise PyctrError("%s.%s is not supported by pyctr" % (where, key))


def _oci_int(section, key, where):
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PyctrError("linux.resources.%s.%s must be an integer" % (where, key))
    return value


def oci_path(path):
    """linux.cgroupsPath: a cgroupfs path, or systemd's slice:prefix:name
    (podman's default), turned into the path systemd would use."""
    parts = path.split(":")
    if len(parts) == 3 and not path.startswith("/"):
        slice_name, prefix, name = parts
        slices = []
        if slice_name and slice_name != "-.slice":
            stem = slice_name[:-len(".slice")] if slice_name.endswith(".slice") else slice_name
            words = stem.split("-")
            slices = ["-".join(words[:i]) + ".slice" for i in range(1, len(words) + 1)]
        path = "/" + "/".join(slices + ["%s-%s.scope" % (prefix, name) if prefix else name])
    if ".." in path.split("/") or "\0" in path:
        raise PyctrError("invalid linux.cgroupsPath %r" % path)
    return path.rstrip("/") or None


def check(res):
    """Checks that need no host: podman's rules for the values' relations."""
    if res.memory is not None and res.memory < MIN_MEMORY:
        raise PyctrError("--memory %d is below the minimum of 6m" % res.memory)
    if res.memory_swap is not None and res.memory_swap != -1:
        if res.memory is None:
            raise PyctrError("--memory-swap needs --memory")
        if res.memory_swap < res.memory:
            raise PyctrError("--memory-swap must be at least --memory (it is memory plus swap)")
    if res.cpu_shares is not None and not 2 <= res.cpu_shares <= 262144:
        raise PyctrError("cpu shares %d: allowed range is 2..262144" % res.cpu_shares)
    if res.cpu_period is not None and not 1000 <= res.cpu_period <= 1000000:
        raise PyctrError("cpu period %d: allowed range is 1000..1000000" % res.cpu_period)
    if res.cpu_quota is not None and res.cpu_quota < 1000:
        raise PyctrError("cpu quota %d: the minimum is 1000" % res.cpu_quota)


# -- the host's layout ---------------------------------------------------------

class Hierarchy(Record):
    """One mounted cgroup hierarchy. name: its directory under /sys/fs/cgroup
    (memory, cpu,cpuacct, systemd, unified; "" for a v2-only host); options:
    what mounts it again (cgroup -o OPTIONS); own: pyctr's cgroup in it."""
    __slots__ = ("name", "version", "mountpoint", "mount_root", "options", "controllers", "own")

    def host_dir(self, cgroup_path):
        """The directory of `cgroup_path` (as /proc/PID/cgroup shows it)."""
        relative = cgroup_path
        if self.mount_root != "/" and (cgroup_path + "/").startswith(self.mount_root + "/"):
            relative = cgroup_path[len(self.mount_root):]
        return self.mountpoint + "/" + relative.strip("/") if relative.strip("/") \
            else self.mountpoint


class Layout(Record):
    __slots__ = ("hierarchies",)

    @property
    def v2_only(self):
        return len(self.hierarchies) == 1 and self.hierarchies[0].version == 2

    def controller(self, name):
        """The hierarchy that has controller `name`, or None."""
        for h in self.hierarchies:
            if name in h.controllers:
                return h
        return None


def detect(mountinfo="/proc/self/mountinfo", cgroup="/proc/self/cgroup"):
    """The cgroup hierarchies mounted under /sys/fs/cgroup, each with pyctr's
    own group in it. v2 controllers are those cgroup.controllers offers.

    `ip netns exec` (how simulated cluster nodes run pyctr) mounts a fresh
    /sys without them. In such a mount namespace pyctr mounts the
    hierarchies PID 1 has, where PID 1 has them (a v1 mount with the same
    options is the same hierarchy), under a lock, since the processes of one
    `mpirun` share the namespace."""
    own = {}
    with open(cgroup) as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[controllers or ""] = path
    mounts = _mounts(mountinfo)
    if mountinfo == "/proc/self/mountinfo" and (not mounts or MOUNT_SOURCE in (
            m[4] for m in mounts if m[2] == ROOT)):
        mounts = _mount_as_init(mountinfo)
    hierarchies = {}
    for fstype, key, mountpoint, mount_root, _ in mounts:
        if key in hierarchies or key not in own or fstype == "tmpfs":
            continue  # a second mount of the same hierarchy
        h = Hierarchy(name=mountpoint[len(ROOT) + 1:], version=2 if fstype == "cgroup2" else 1,
                      mountpoint=mountpoint, mount_root=mount_root, options=key,
                      controllers=set(key.split(",")) if key else set(), own=own[key])
        if h.version == 2:  # what the parent of pyctr's parent group offers
            h.controllers = set(_read(os.path.dirname(_default_parent(h)),
                                      "cgroup.controllers", "").split())
        hierarchies[key] = h
    if not hierarchies:
        raise PyctrError("no cgroup hierarchy is mounted under %s" % ROOT)
    return Layout(hierarchies=sorted(hierarchies.values(), key=lambda h: h.name))


MOUNT_SOURCE = "pyctr-cgroup"  # marks the mounts _mount_as_init made


def _mount_as_init(mountinfo):
    """Mount what PID 1 has under /sys/fs/cgroup and this namespace lacks;
    returns the mounts then here."""
    import fcntl
    try:
        wanted = _mounts("/proc/1/mountinfo")
    except OSError:
        return []
    lock = os.open("/sys/fs", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        have = {m[2] for m in _mounts(mountinfo)}
        syscall = syscalls.Syscalls()
        flags = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC
        for fstype, key, mountpoint, _, _ in wanted:
            if mountpoint not in have:
                os.makedirs(mountpoint, exist_ok=True)
                syscall.mount(MOUNT_SOURCE, mountpoint, fstype, flags,
                              "mode=755" if fstype == "tmpfs" else key or None)
        return _mounts(mountinfo)
    except OSError as e:
        raise PyctrError("no cgroup hierarchy is mounted under %s, and mounting PID 1's "
                         "failed: %s" % (ROOT, e.strerror)) from e
    finally:
        os.close(lock)  # and with it the lock


def _mounts(mountinfo):
    """[(fstype, hierarchy key, mountpoint, mount root, source)] of the cgroup
    mounts under /sys/fs/cgroup, and of a tmpfs at /sys/fs/cgroup itself."""
    mounts = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            dash = fields.index("-")
            fstype, source = fields[dash + 1], fields[dash + 2]
            mount_root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
            if fstype == "tmpfs" and mountpoint == ROOT:
                mounts.append((fstype, None, mountpoint, mount_root, source))
            elif fstype in ("cgroup", "cgroup2") and mountpoint.startswith(ROOT + "/") or \
                    fstype == "cgroup2" and mountpoint == ROOT:
                names = [o for o in fields[dash + 3].split(",")
                         if o in V1_CONTROLLERS or o.startswith("name=")]
                key = ",".join(names) if fstype == "cgroup" else ""
                mounts.append((fstype, key, mountpoint, mount_root, source))
    return mounts


# Order as /proc/cgroups lists them; the mount options name them the same way.
V1_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "blkio", "memory", "devices", "freezer",
                  "net_cls", "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc")


def _unescape(text):
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def _read(directory, name, default=None):
    try:
        with open(os.path.join(directory, name)) as f:
            return f.read().strip()
    except OSError:
        if default is None:
            raise
        return default


def _write(directory, name, value):
    path = os.path.join(directory, name)
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise PyctrError("cannot write %s to %s: %s" % (value, path, e.strerror)) from e


# -- the settings as files --------------------------------------------------------

def limit_files(res, version, memsw=True):
    """Resources -> [(controller, file, value)] in the order to write them
    (pure: unit-tested). memsw: the v1 host accounts swap (memsw files)."""
    files = []
    swap = res.memory_swap
    if swap is None and res.memory is not None:
        swap = 2 * res.memory  # podman: as much swap as memory, unless told
    if version == 1:
        if res.memory is not None:
            files.append(("memory", "memory.limit_in_bytes", res.memory))
            if memsw:
                files.append(("memory", "memory.memsw.limit_in_bytes", swap))
            elif res.memory_swap not in (None, -1):
                raise PyctrError("--memory-swap: this host does not account swap "
                                 "(no memory.memsw.limit_in_bytes; boot with swapaccount=1)")
        if res.memory_reservation is not None:
            files.append(("memory", "memory.soft_limit_in_bytes", res.memory_reservation))
        if res.cpu_shares is not None:
            files.append(("cpu", "cpu.shares", res.cpu_shares))
        if res.cpu_quota is not None:
            files.append(("cpu", "cpu.cfs_period_us", res.cpu_period or CFS_PERIOD))
            files.append(("cpu", "cpu.cfs_quota_us", res.cpu_quota))
    else:
        if res.memory is not None:
            files.append(("memory", "memory.max", res.memory))
            files.append(("memory", "memory.swap.max",
                          "max" if swap == -1 else swap - res.memory))
        if res.memory_reservation is not None:
            files.append(("memory", "memory.low", res.memory_reservation))
        if res.cpu_shares is not None:
            # runc's mapping of v1 shares [2, 262144] onto v2 weight [1, 10000]
            files.append(("cpu", "cpu.weight", 1 + (res.cpu_shares - 2) * 9999 // 262142))
        if res.cpu_quota is not None:
            files.append(("cpu", "cpu.max", "%d %d" % (res.cpu_quota,
                                                      res.cpu_period or CFS_PERIOD)))
    if res.cpuset_cpus is not None:
        files.append(("cpuset", "cpuset.cpus", res.cpuset_cpus))
    if res.cpuset_mems is not None:
        files.append(("cpuset", "cpuset.mems", res.cpuset_mems))
    if res.pids_limit is not None:
        files.append(("pids", "pids.max", "max" if res.pids_limit < 0 else res.pids_limit))
    return files


# -- one container's group ----------------------------------------------------------

class Group:
    """The directories of one container's cgroup: `dirs` maps a hierarchy's
    name to the group that holds the limits; processes go into `leaf` below
    each (or into the group itself when leaf is "")."""

    def __init__(self, dirs, leaf, version, path, limits=None):
        self.dirs, self.leaf, self.version, self.path = dirs, leaf, version, path
        self.limits = limits or {}

    def record(self):
        """What the container's state keeps as "cgroup" (limits: for inspect)."""
        return {"path": self.path, "version": self.version, "leaf": self.leaf,
                "dirs": dict(self.dirs), "limits": dict(self.limits)}

    @classmethod
    def from_record(cls, record, reach=True):
        """The group a container's state names. reach: make sure its
        hierarchies are mounted here (see detect: a later `ip netns exec
        pyctr ...` needs them again)."""
        if not isinstance(record, dict) or not isinstance(record.get("dirs"), dict):
            return None
        group = cls(record["dirs"], record.get("leaf") or "", record.get("version", 1),
                    record.get("path"), record.get("limits"))
        if reach:
            try:
                detect()
            except (OSError, PyctrError):
                pass  # then there is nothing this process can reach or remove
        return group

    def process_dirs(self):
        return [os.path.join(d, self.leaf) if self.leaf else d for d in self.dirs.values()]

    def attach(self, pid):
        """Move `pid` (the container's init, before it runs anything) in."""
        for directory in self.process_dirs():
            _write(directory, "cgroup.procs", pid)

    def pids(self):
        found = set()
        for directory in self.dirs.values():
            for top, _, _ in os.walk(directory):
                found.update(int(p) for p in _read(top, "cgroup.procs", "").split())
        return found

    def kill(self):
        """SIGKILL everything in the group (what --pid=host may leave)."""
        v2 = self.dirs.get("unified", self.dirs.get(""))
        if self.version == 2 and v2 and os.path.exists(os.path.join(v2, "cgroup.kill")):
            _write(v2, "cgroup.kill", 1)
            return
        frozen = self.freeze(quiet=True)  # no fork can escape between read and kill
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def remove(self):
        """Remove the directories, first killing whatever is left in them.
        True when all are gone. Never raises: cleanup goes on to the other
        records."""
        if not _safe(self):
            return False
        if self._rmdir_all(list(self.process_dirs()) + list(self.dirs.values())):
            return True  # the usual case: the container's processes are gone
        import time
        try:
            self.kill()
        except (OSError, PyctrError):
            pass
        deadline = time.monotonic() + 2.0
        while not self._rmdir_all(self._removal_order()):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)  # killed processes are still exiting
        return True

    @staticmethod
    def _rmdir_all(directories):
        done = True
        for directory in directories:
            try:
                os.rmdir(directory)
            except FileNotFoundError:
                pass
            except OSError:
                done = False  # busy, or holds groups the container made
        return done

    def _removal_order(self):
        order = []
        for directory in self.dirs.values():
            # children first: the leaf, and anything the container made in it
            nested = [top for top, _, _ in os.walk(directory)]
            order += sorted(nested, key=len, reverse=True)
        return order

    # -- freezer (OCI pause/resume) --
    def _freezer(self):
        if self.version == 2:
            return self.dirs.get("unified", self.dirs.get("")), "cgroup.freeze"
        return self.dirs.get("freezer"), "freezer.state"

    def freeze(self, quiet=False):
        """Stop every process of the container; returns once they are stopped."""
        import time
        directory, name = self._freezer()
        if not directory or not os.path.exists(os.path.join(directory, name)):
            if quiet:
                return False
            raise PyctrError("this host's cgroups have no freezer")
        _write(directory, name, "1" if self.version == 2 else "FROZEN")
        deadline = time.monotonic() + 5.0
        while not self._frozen(directory):
            if time.monotonic() > deadline:
                self.thaw()
                raise PyctrError("container did not freeze within 5 s")
            time.sleep(0.001)
        return True

    def thaw(self):
        directory, name = self._freezer()
        if directory:
            _write(directory, name, "0" if self.version == 2 else "THAWED")

    def _frozen(self, directory):
        if self.version == 2:
            return "frozen 1" in _read(directory, "cgroup.events", "").splitlines()
        return _read(directory, "freezer.state", "") == "FROZEN"


def _safe(group):
    """A recorded group is acted on only if each dir is below a cgroup
    mount (never a mount's root): records are files, and a damaged one must
    not make pyctr kill the host's processes."""
    for directory in group.dirs.values():
        if not isinstance(directory, str) or not directory.startswith(ROOT + "/") \
                or os.path.ismount(directory) \
                or {"..", ".", ""} & set(directory[1:].split("/")):
            return False
    return True


def world_tag(paths):
    """8 hex digits naming a pyctr world (its state root). CRC-32: hashlib
    alone would add 15 ms to every `pyctr run`."""
    import zlib
    return "%08x" % zlib.crc32(os.path.realpath(paths.root).encode())


def _default_parent(h):
    own = h.own if h.version == 1 else os.path.dirname(h.own.rstrip("/")) or "/"
    return h.host_dir(own) + "/" + PARENT


def create(paths, container_id, res, layout=None):
    """Make the container's group in every hierarchy, with its limits and
    device policy; returns a Group to attach the container's init to.
    On failure nothing is left and a PyctrError says why."""
    layout = layout or detect()
    _check_host(res, layout)
    if res.path:
        rel = res.path if res.path.startswith("/") else None
        dirs = {h.name: (h.mountpoint + rel) if rel else
                _default_parent(h)[:-len(PARENT)] + res.path for h in layout.hierarchies}
        leaf, path = "", res.path
    else:
        name = "%s-%s" % (world_tag(paths), container_id)
        dirs = {h.name: _default_parent(h) + "/" + name for h in layout.hierarchies}
        leaf, path = LEAF, "%s/%s" % (PARENT, name)
    group = Group(dirs, leaf, 2 if layout.v2_only else 1, path, res.limits())
    made = []  # undone, leaf first, if a later step fails; nothing runs in them yet
    try:
        for h in layout.hierarchies:
            _make_group(h, dirs[h.name], res, layout, group, made)
    except BaseException:
        for directory in reversed(made):
            try:
                os.rmdir(directory)
            except OSError:
                pass
        raise
    return group


def _check_host(res, layout):
    """What the host must offer for the limits asked (before clone)."""
    wanted = [c for c, _, _ in limit_files(res, 2)]
    for controller in dict.fromkeys(wanted):
        if not layout.controller(controller):
            raise PyctrError("the %s limits need the %s cgroup controller, which this host "
                             "does not offer" % (controller, controller))
    cpuset = layout.controller("cpuset")
    if res.cpuset_cpus is not None:
        available = expand_cpu_list(_read(cpuset.host_dir(cpuset.own),
                                          "cpuset.effective_cpus", "") or
                                    _read(cpuset.host_dir(cpuset.own), "cpuset.cpus", ""))
        missing = expand_cpu_list(res.cpuset_cpus) - available
        if available and missing:
            raise PyctrError("--cpuset-cpus %s: CPU %s not available (this host offers %s)"
                             % (res.cpuset_cpus, ",".join(map(str, sorted(missing))),
                                ",".join(map(str, sorted(available)))))


def _make_group(h, directory, res, layout, group, made):
    parent = os.path.dirname(directory)
    _make_parents(h, parent, layout)
    try:
        os.mkdir(directory, 0o755)
        made.append(directory)
    except FileExistsError as e:
        if not group.leaf:  # an engine's path: reuse it if empty, as runc does
            if _read(directory, "cgroup.procs", ""):
                raise PyctrError("cgroup %s is in use" % directory) from e
        else:
            raise PyctrError("cgroup %s exists already" % directory) from e
    except OSError as e:
        raise PyctrError("cannot create cgroup %s: %s" % (directory, e.strerror)) from e
    _limit(h, directory, res)
    from pyctr import devices
    if "devices" in h.controllers:
        devices.apply_v1(directory, devices.policy(res))
    elif h.version == 2 and not layout.controller("devices"):
        devices.apply_bpf(directory, devices.policy(res))
    if group.leaf:
        # The same limits again where the container can see them (a JVM
        # sizes its heap from them); the group above enforces them. The
        # leaf copies the v1 device rules and runs the v2 program above it.
        leaf = os.path.join(directory, group.leaf)
        os.mkdir(leaf, 0o755)
        made.append(leaf)
        _limit(h, leaf, res)


def _limit(h, directory, res):
    if "cpuset" in h.controllers and h.version == 1:
        _inherit_cpuset(directory)
    if h.version == 2:
        wanted = {c for c, _, _ in limit_files(res, 2)} & h.controllers
        if wanted:
            _enable(os.path.dirname(directory), wanted, h)
    for controller, name, value in limit_files(res, h.version, memsw=_memsw(h)):
        if name == "memory.swap.max" and res.memory_swap is None and not os.path.exists(
                os.path.join(directory, name)):
            continue  # swap not asked for, and this kernel has none to limit
        if controller in h.controllers:
            _write(directory, name, value)


def _memsw(h):
    return os.path.exists(os.path.join(h.mountpoint, "memory.memsw.limit_in_bytes"))


def _controllers(directory):
    return set(_read(directory, "cgroup.controllers", "").split())


def _make_parents(h, parent, layout):
    """mkdir -p for the parents, each v1 cpuset one given its parent's CPUs
    and memory nodes (an empty cpuset takes no processes)."""
    missing = []
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o755)
        except FileExistsError:
            pass
    if "cpuset" in h.controllers and h.version == 1:
        for directory in reversed(missing or [parent]):
            _inherit_cpuset(directory)


def _inherit_cpuset(directory):
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not _read(directory, name, ""):
            _write(directory, name, _read(parent, name, ""))


def _enable(parent, controllers, h):
    """v2: controllers reach a group only through every ancestor's
    cgroup.subtree_control, from the mount's root down."""
    chain = []
    directory = parent
    while directory.startswith(h.mountpoint):
        chain.append(directory)
        if directory == h.mountpoint:
            break
        directory = os.path.dirname(directory)
    for directory in reversed(chain):
        enabled = set(_read(directory, "cgroup.subtree_control", "").split())
        todo = controllers - enabled
        if todo:
            _write(directory, "cgroup.subtree_control", " ".join("+" + c for c in sorted(todo)))


# -- the container's view: /sys/fs/cgroup inside -------------------------------

def view(layout, group, namespaced):
    """What the child mounts at /sys/fs/cgroup: (namespaced, [(name, fstype,
    options, host dir)]). In its own cgroup namespace it mounts cgroupfs
    afresh, which shows its groups as the roots; otherwise it binds its
    groups' directories (as runc does)."""
    entries = []
    for h in layout.hierarchies:
        if group:
            directory = group.dirs[h.name]
            directory = os.path.join(directory, group.leaf) if group.leaf else directory
        else:
            directory = h.host_dir(h.own)
        entries.append((h.name, "cgroup2" if h.version == 2 else "cgroup", h.options or None,
                        directory))
    return namespaced, entries


def mount_view(syscall, target, flags, view):
    """The rootfs step for a "cgroup" mount (runs in the child, before
    pivot_root): read-only, as the mount's options say (OCI default: ro)."""
    namespaced, entries = view
    locked = flags | syscalls.MS_BIND | syscalls.MS_REMOUNT

    def one(fstype, options, directory, where):
        if namespaced:
            syscall.mount(fstype, where, fstype, flags, options)
        else:
            syscall.mount(directory, where, None, syscalls.MS_BIND, None)
            syscall.mount(None, where, None, locked, None)

    if len(entries) == 1 and entries[0][0] == "":  # a v2-only host
        one(*entries[0][1:], target)
        return
    syscall.mount("tmpfs", target, "tmpfs", flags & ~syscalls.MS_RDONLY, "mode=755")
    for name, fstype, options, directory in entries:
        syscall.mkdir(target + "/" + name)
        one(fstype, options, directory, target + "/" + name)
        for alias in name.split(",") if "," in name else ():
            syscall.symlink(name, target + "/" + alias)  # cpu -> cpu,cpuacct as on the host
    if flags & syscalls.MS_RDONLY:
        syscall.mount(None, target, None, locked, None)


# -- what other verbs call -----------------------------------------------------------

def remove(state):
    """Remove the group a ContainerState names (idempotent)."""
    group = Group.from_record(state.cgroup)
    return group.remove() if group else True


def freeze(state):
    """OCI pause: stop every process of the container (a ContainerState)."""
    group = Group.from_record(state.cgroup)
    if not group:
        raise PyctrError("container %s has no cgroup to freeze" % state.name)
    group.freeze()


def thaw(state):
    """OCI resume."""
    group = Group.from_record(state.cgroup)
    if not group:
        raise PyctrError("container %s has no cgroup to thaw" % state.name)
    group.thaw()


def open_procs(state):
    """`pyctr exec`: the container's cgroup.procs files, opened before it
    joins the container's namespaces (the kernel checks a write against
    the opener's cgroup namespace)."""
    group = Group.from_record(state.cgroup)
    if not group or not _safe(group):
        return []
    fds = []
    try:
        for directory in group.process_dirs():
            fds.append(os.open(os.path.join(directory, "cgroup.procs"),
                               os.O_WRONLY | os.O_CLOEXEC))
    except OSError as e:
        close(fds)
        raise PyctrError("cannot join the container's cgroup %s: %s"
                         % (group.path, e.strerror)) from e
    return fds


def join(fds):
    """In the forked process: move itself into the container's groups."""
    for fd in fds:
        os.write(fd, b"0")


def close(fds):
    for fd in fds:
        os.close(fd)


def gc(paths, live_ids, layout=None):
    """Remove this world's default groups whose container is not among
    live_ids() (ids of records that exist and are alive), called once the
    groups are listed: a group is made after its record, so a container
    created meanwhile is counted live. Returns what it removed, for
    `pyctr gc` to print."""
    try:
        layout = layout or detect()
    except (OSError, PyctrError):
        return []
    prefix = world_tag(paths) + "-"
    found = {}
    for h in layout.hierarchies:
        parent = _default_parent(h)
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix) and os.path.isdir(os.path.join(parent, name)):
                found.setdefault(name, {})[h.name] = os.path.join(parent, name)
    live = live_ids()
    removed = []
    for name, dirs in sorted(found.items()):
        if name[len(prefix):] in live:
            continue
        group = Group(dirs, LEAF, 2 if layout.v2_only else 1, "%s/%s" % (PARENT, name))
        if group.remove():
            removed.append("cgroup %s" % group.path)
    return removed
