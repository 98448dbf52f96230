"""A container's own cgroup: layout detection, create, attach, limits,
freeze/thaw, removal and gc.

Layouts (read from /proc/self/mountinfo, never assumed):
  v1 / hybrid  one hierarchy per controller set under /sys/fs/cgroup/<name>,
               maybe with a controller-less cgroup2 at /sys/fs/cgroup/unified;
  v2           the unified tree at /sys/fs/cgroup, controllers in it.

pyctr makes one group per container in EVERY mounted hierarchy (named ones
too): the container's cgroup namespace is rooted at its groups, so a
hierarchy left out would show it the host's groups there. A default group is

  <own cgroup>/pyctr-<world>-<id>          limits and device rules
  <own cgroup>/pyctr-<world>-<id>/ctr      the container's processes

one directory per hierarchy where runc makes one (its default cgroupsPath is
/<id>): each cgroupfs mkdir and rmdir is kernel work of every run, and a
parent made and removed with a lone container doubled it. The exception is
a v1 cpuset hierarchy, where the group sits in <own cgroup>/pyctr/, which
passes its CPUs and memory nodes on at mkdir (cgroup.clone_children; at a
hierarchy's root they would have to be written, and that rebuilds the
scheduler domains), and once pyctr/ holds BUCKETS groups one level lower, in
one of BUCKETS subgroups of pyctr/ (see bucket: the kernel compares a new
cpuset with each of its siblings). pyctr/ goes with its last group.

"own cgroup" is pyctr's own in v1 and its parent in v2 (pyctr's own may hold
processes, and then v2 allows no controllers below it); relative paths
mean the same for runc. <world> is a hash of the state root, so `gc` of one
pyctr world never touches another's groups. The processes live one level
below the limits: a container's root that mounts cgroupfs in a new user and
cgroup namespace sees `ctr` as its root and cannot raise its own limits
(cgroup v1 checks only file ownership there). The exception ("flat"): in a
v1 hierarchy, or a hybrid host's cgroup2, whose group holds no limit and
whose controllers' files can only restrict the group itself (SELF_ONLY;
a named hierarchy has none), the processes live in the group itself. There
the group's files are of the kind the container may write in `ctr` anyway,
and its leaf would be two more cgroupfs calls per hierarchy; not where a
file weighs the group against its siblings (cpu and blkio weights, net_cls
classes, net_prio priorities, an exclusive cpuset), holds device rules, or
counts its usage (cpuacct, reset by a write). An OCI bundle's
linux.cgroupsPath is used as it stands, with no `ctr` level.

What `create` made is recorded in the container's state as "cgroup" (see
Group.record), and `remove`, `freeze`, `thaw` and `gc` work from that record.
"""
import errno

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import fileio, resources, syscalls
from pyctr.errors import PyctrError
from pyctr.spec import Record

ROOT = "/sys/fs/cgroup"
PARENT = "pyctr"  # holds the default groups in a v1 cpuset hierarchy
PREFIX = "pyctr-"  # a default group's name: PREFIX + <world>-<id>
LEAF = "ctr"
# v1 controllers whose files in a group without limits can only restrict
# that group (and its descendants): see "flat" above
SELF_ONLY = frozenset(("memory", "pids", "freezer", "perf_event", "hugetlb", "rdma", "misc"))


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
    # split on "\n" alone, as the kernel writes lines: a mount point may hold
    # any other byte, escaped or not
    for line in filter(None, fileio.read(cgroup).decode(errors="surrogateescape").split("\n")):
        _, controllers, path = line.split(":", 2)
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
        if h.version == 2:  # what the groups made where pyctr's go may have
            h.controllers = set(_read(_own_dir(h), "cgroup.controllers", "").split())
        hierarchies[key] = h
    if not hierarchies:
        raise PyctrError("no cgroup hierarchy is mounted under %s" % ROOT)
    global _detected
    _detected = _detected or mountinfo == "/proc/self/mountinfo"
    return Layout(hierarchies=sorted(hierarchies.values(), key=lambda h: h.name))


MOUNT_SOURCE = "pyctr-cgroup"  # marks the mounts _mount_as_init made
_detected = False  # detect() found (or mounted) the hierarchies in this process


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
    for line in filter(None, fileio.read(mountinfo).decode(errors="surrogateescape").split("\n")):
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


# cgroupfs files are read and written with os.open/read/write (fileio): a
# run makes ~60 such calls.
def _read(directory, name, default=None):
    try:
        return fileio.read(os.path.join(directory, name)).decode().strip()
    except OSError:
        if default is None:
            raise
        return default


def _write(directory, name, value):
    path = os.path.join(directory, name)
    try:
        syscalls.write_kernel_file(path, str(value))
    except OSError as e:
        raise PyctrError("cannot write %s to %s: %s" % (value, path, e.strerror)) from e


# -- one container's group ----------------------------------------------------------

class Group:
    """The directories of one container's cgroup: `dirs` maps a hierarchy's
    name to the group that holds the limits; processes go into `leaf` below
    each (or into the group itself when leaf is "", or in the hierarchies
    named in `flat`: see create)."""

    def __init__(self, dirs, leaf, version, path, limits=None, flat=()):
        self.dirs, self.leaf, self.version, self.path = dirs, leaf, version, path
        self.limits, self.flat = limits or {}, tuple(flat)

    def record(self):
        """What the container's state keeps as "cgroup" (limits: for inspect)."""
        return {"path": self.path, "version": self.version, "leaf": self.leaf,
                "dirs": dict(self.dirs), "limits": dict(self.limits), "flat": list(self.flat)}

    @classmethod
    def from_record(cls, record, reach=True):
        """The group a container's state names. reach: make sure its
        hierarchies are mounted here (see detect: a later `ip netns exec
        pyctr ...` needs them again)."""
        if not isinstance(record, dict) or not isinstance(record.get("dirs"), dict):
            return None
        flat = record.get("flat") or ()
        group = cls(record["dirs"], record.get("leaf") or "", record.get("version", 1),
                    record.get("path"), record.get("limits"),
                    [n for n in flat if isinstance(n, str)] if isinstance(flat, list) else ())
        # Once per process is enough (the mounts stay), and not at all when its
        # directories are there: the hierarchies are mounted here already.
        if reach and not _detected and not all(os.path.isdir(d) for d in group.dirs.values()):
            try:
                detect()
            except (OSError, PyctrError):
                pass  # then there is nothing this process can reach or remove
        return group

    def process_dir(self, name):
        """Where the container's processes live in hierarchy `name`."""
        directory = self.dirs[name]
        return os.path.join(directory, self.leaf) if self.leaf and name not in self.flat \
            else directory

    def process_dirs(self):
        return [self.process_dir(name) for name in self.dirs]

    def open_procs(self, skip=None):
        """[(fd, directory)] of the cgroup.procs files processes go into
        (but the one in directory `skip`): see open_procs_files."""
        return open_procs_files([d for d in self.process_dirs() if d != skip])

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
        # leaves first; a group that is its own process dir (v1 memory
        # without a limit) once
        if self._rmdir_all(dict.fromkeys([*self.process_dirs(), *self.dirs.values()])):
            self._remove_parents()
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
        self._remove_parents()
        return True

    def _remove_parents(self):
        """pyctr/ above a default group in a v1 cpuset hierarchy, once no
        world's group is left in it (an engine's cgroupsPath parent is the
        engine's)."""
        if self.leaf == LEAF:
            _remove_parents(os.path.dirname(d) for d in self.dirs.values())

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
                or {"..", ".", ""} & set(directory[1:].split("/")) or _is_mount(directory):
            return False
    return True


def _is_mount(directory):
    """os.path.ismount without its realpath (a stat per component): the
    kernel resolves ".." itself, across a mount to the mountpoint's parent."""
    try:
        st, up = os.lstat(directory), os.lstat(directory + "/..")
    except OSError:
        return False
    if st.st_mode & 0o170000 == 0o120000:  # a symlink is no mount (as ismount says)
        return False
    return st.st_dev != up.st_dev or st.st_ino == up.st_ino


def world_tag(paths):
    """8 hex digits naming a pyctr world (its state root). CRC-32: hashlib
    alone would add 15 ms to every `pyctr run`."""
    import zlib
    return "%08x" % zlib.crc32(os.path.realpath(paths.root).encode())


def _world_prefix(paths):
    """What the names of the world's default groups start with."""
    return "%s%s-" % (PREFIX, world_tag(paths))


def _own_dir(h):
    """pyctr's own group in hierarchy h (v1), or the one above it (v2):
    where relative cgroupsPaths start, as for runc."""
    own = h.own if h.version == 1 else os.path.dirname(h.own.rstrip("/")) or "/"
    return h.host_dir(own)


def _home(h):
    """Where pyctr's default groups go in hierarchy h."""
    return _own_dir(h) + "/" + PARENT if _v1_cpuset(h) else _own_dir(h)


def create(paths, container_id, res, layout=None):
    """Make the container's group in every hierarchy, with its limits and
    device policy; returns a Group to attach the container's init to.
    On failure nothing is left and a PyctrError says why."""
    layout = layout or detect()
    _check_host(res, layout)
    if res.path:
        rel = res.path if res.path.startswith("/") else None
        dirs = {h.name: (h.mountpoint + rel) if rel else
                _own_dir(h) + "/" + res.path for h in layout.hierarchies}
        leaf, path, flat = "", res.path, ()
    else:
        name = _world_prefix(paths) + container_id
        dirs = {h.name: _home(h) + "/" + (
            bucket(name) + "/" + name if _crowded(h) else name) for h in layout.hierarchies}
        leaf, path = LEAF, name
        limited = {c for c, _, _ in resources.limit_files(res, 1)}
        flat = tuple(h.name for h in layout.hierarchies if _flat(h, layout, limited))
    group = Group(dirs, leaf, 2 if layout.v2_only else 1, path, res.limits(), flat)
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
        group._remove_parents()  # a v1 cpuset's pyctr/ made for it, as after its last group
        raise
    return group


def _flat(h, layout, limited):
    """Do the container's processes live in its group itself in hierarchy h
    (see "flat" above)? Not where a v2 device program is attached to it."""
    controllers = {c for c in h.controllers if not c.startswith("name=")}
    return not layout.v2_only and controllers <= SELF_ONLY and not controllers & limited \
        and (h.version == 1 or layout.controller("devices") is not None)


def _check_host(res, layout):
    """What the host must offer for the limits asked (before clone)."""
    wanted = [c for c, _, _ in resources.limit_files(res, 2)]
    for controller in dict.fromkeys(wanted):
        if not layout.controller(controller):
            raise PyctrError("the %s limits need the %s cgroup controller, which this host "
                             "does not offer" % (controller, controller))
    cpuset = layout.controller("cpuset")
    for option, asked, kind, what in (("--cpuset-cpus", res.cpuset_cpus, "cpus", "CPU"),
                                      ("--cpuset-mems", res.cpuset_mems, "mems", "memory node")):
        if asked is None:
            continue
        own = cpuset.host_dir(cpuset.own)
        available = resources.expand_cpu_list(_read(own, "cpuset.effective_" + kind, "") or
                                              _read(own, "cpuset." + kind, ""))
        missing = resources.expand_cpu_list(asked) - available
        if available and missing:
            raise PyctrError("%s %s: %s %s not available (this host offers %s)"
                             % (option, asked, what, ",".join(map(str, sorted(missing))),
                                ",".join(map(str, sorted(available)))))


def _make_group(h, directory, res, layout, group, made):
    parent = os.path.dirname(directory)
    for attempt in range(5):
        if attempt or _v1_cpuset(h):  # else pyctr's own group: made when mkdir says it is not
            _make_parents(h, parent, layout)
        try:
            os.mkdir(directory, 0o755)
            made.append(directory)
            break
        except FileNotFoundError as e:
            # a parent not made yet, or taken by `pyctr gc` or the last group's removal
            if attempt == 4:
                raise PyctrError("cannot create cgroup %s: %s" % (directory, e.strerror)) from e
        except FileExistsError as e:
            if group.leaf:
                raise PyctrError("cgroup %s exists already" % directory) from e
            if _read(directory, "cgroup.procs", ""):  # an engine's path: reused if empty (runc)
                raise PyctrError("cgroup %s is in use" % directory) from e
            break
        except OSError as e:
            raise PyctrError("cannot create cgroup %s: %s" % (directory, e.strerror)) from e
    _limit(h, directory, res)
    from pyctr import devices
    if "devices" in h.controllers:
        devices.apply_v1(directory, devices.policy(res))
    elif h.version == 2 and not layout.controller("devices"):
        devices.apply_bpf(directory, devices.policy(res))
    if group.leaf and h.name not in group.flat:
        # The same limits again where the container can see them (a JVM
        # sizes its heap from them); the group above enforces them. The
        # leaf copies the v1 device rules and runs the v2 program above it.
        leaf = os.path.join(directory, group.leaf)
        os.mkdir(leaf, 0o755)
        made.append(leaf)
        _limit(h, leaf, res)


def _limit(h, directory, res):
    if _v1_cpuset(h):
        _inherit_cpuset(directory)
    if h.version == 2:
        wanted = {c for c, _, _ in resources.limit_files(res, 2)} & h.controllers
        if wanted:
            _enable(os.path.dirname(directory), wanted, h)
    # memsw is a question for the memory hierarchy only (elsewhere the memory
    # files are not written, and asking there would refuse --memory-swap)
    memsw = "memory" not in h.controllers or _memsw(h)
    for controller, name, value in resources.limit_files(res, h.version, memsw=memsw):
        if name == "memory.swap.max" and res.memory_swap is None and not os.path.exists(
                os.path.join(directory, name)):
            continue  # swap not asked for, and this kernel has none to limit
        if controller in h.controllers:
            _write(directory, name, value)


def _memsw(h):
    return os.path.exists(os.path.join(h.mountpoint, "memory.memsw.limit_in_bytes"))


def _make_parents(h, parent, layout):
    """mkdir -p for the parents, each v1 cpuset one given its parent's CPUs
    and memory nodes (an empty cpuset takes no processes)."""
    missing = []
    directory = parent
    while not os.path.isdir(directory):
        missing.append(directory)
        directory = os.path.dirname(directory)
    cpuset = _v1_cpuset(h)
    try:
        # pyctr's parent when it exists but a bucket is missing too: another
        # process may have made it and not yet given it CPUs, and an empty
        # cpuset passes on none
        first = [directory] if os.path.basename(directory) == PARENT else []
        for directory in first + missing[::-1] if missing else [parent]:
            if directory in missing:
                try:
                    os.mkdir(directory, 0o755)
                except FileExistsError:
                    pass
                except FileNotFoundError:
                    return  # a removal took the one above: _make_group tries again
            if not cpuset:
                continue
            _inherit_cpuset(directory)
            if directory in missing and (os.path.basename(directory) == PARENT or
                                         _is_bucket(directory)):
                # New groups below take their CPUs and nodes at mkdir:
                # writing cpuset.cpus rebuilds the scheduler domains, a walk
                # over every cpuset on the node. Where it cannot be set,
                # _inherit_cpuset still writes them.
                try:
                    _write(directory, "cgroup.clone_children", "1")
                except PyctrError:
                    pass
    except PyctrError as e:
        if not isinstance(e.__cause__, FileNotFoundError):
            raise
        # the last container's removal took a parent: _make_group makes it again


BUCKETS = 32


def bucket(name):
    """The subgroup of pyctr/ that holds group `name` in a v1 cpuset
    hierarchy. With cgroup.clone_children (see _make_parents) the kernel
    brings a new cpuset online only after comparing it with each sibling,
    a cache miss apiece: beside 1,000 containers in one parent that was
    about 0.3 ms of every start (perf record -a -g of 100 starts beside
    none and beside 1,000). Spread over BUCKETS, a thousand cost about
    what 30 do.
    Only once pyctr/ is crowded (_crowded): a bucket made and removed
    with a lone container would cost it more than its few siblings do."""
    import zlib
    return "b%02x" % (zlib.crc32(name.encode()) % BUCKETS)


def _v1_cpuset(h):
    return "cpuset" in h.controllers and h.version == 1


def _crowded(h):
    """Does pyctr's parent in a v1 cpuset hierarchy hold BUCKETS groups or
    buckets already? One stat: a cgroupfs directory's link count is 2 plus
    its subdirectories. pyctr/ then holds at most 2 * BUCKETS."""
    if not _v1_cpuset(h):
        return False
    try:
        return os.stat(_home(h)).st_nlink - 2 >= BUCKETS
    except OSError:
        return False  # not made yet


def _is_bucket(directory):
    name = os.path.basename(directory)
    return len(name) == 3 and name[0] == "b" and all(c in "0123456789abcdef" for c in name[1:]) \
        and os.path.basename(os.path.dirname(directory)) == PARENT


def _parents(h):
    """Every directory that holds pyctr's default groups in hierarchy h:
    its home, and in a v1 cpuset hierarchy the buckets in it."""
    home = _home(h)
    if not _v1_cpuset(h):
        return [home]
    try:
        names = os.listdir(home)
    except OSError:
        names = []
    return [home] + sorted(os.path.join(home, n) for n in names
                           if _is_bucket(os.path.join(home, n)))


def world_groups(paths, layout):
    """{group name: {hierarchy name: directory}}: the default groups of
    the pyctr world at `paths` (its containers' and any left behind)."""
    prefix = _world_prefix(paths)
    found = {}
    for h in layout.hierarchies:
        for parent in _parents(h):
            try:
                names = os.listdir(parent)
            except OSError:
                continue
            for name in names:
                if name.startswith(prefix) and os.path.isdir(os.path.join(parent, name)):
                    found.setdefault(name, {})[h.name] = os.path.join(parent, name)
    return found


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


def start_warm_up(paths):
    """(layout, wait) with warm_up(layout) started, or (None, None) where
    pyctr makes no cgroup (rootless) or finds none (that error is the cgroup
    stage's to report). Everything cgroupfs does waits meanwhile, mkdir
    too: `run` starts it before it builds the spec, so that work (not
    cgroup work) overlaps the wait. Where pyctr-front started its warm-up
    process before this interpreter (adopt_warm_up), that one goes on, and
    wait() ends it."""
    if paths.rootless:
        return None, None
    try:
        layout = detect()
    except (OSError, PyctrError):
        return None, None
    if _front_warm_up is not None:
        return layout, end_front_warm_up
    return layout, warm_up(layout)


_front_warm_up = None  # the pipe that keeps pyctr-front's warm-up process going
_front_fork = 0  # the process pyctr-front forked it through, until reaped


def adopt_warm_up(value):
    """pyctr-front (csrc/front.c) started a process that moves itself into
    its own cgroup every 2 ms while this interpreter starts: the first move
    pays the grace period warm_up() describes, 10-20 ms before any cgroup
    work here, and the next ones keep moves fast. It runs while the write
    end of its pipe, fd FD of `value` ("FD PID", PYCTR_WARM_FD), is open
    anywhere: close-on-exec from now, so no other program keeps it. PID is
    the process it was forked through, which exited at once and is this
    one's child: reaped here or, if not gone yet, when the warm-up ends."""
    global _front_warm_up, _front_fork
    fd_text, _, pid_text = value.partition(" ")
    try:
        _front_fork = int(pid_text)
    except ValueError:
        pass
    _reap_front_fork(os.WNOHANG)
    try:
        fd = int(fd_text)
        os.set_inheritable(fd, False)
    except (ValueError, OSError):
        return
    _front_warm_up = fd


def _reap_front_fork(options):
    global _front_fork
    if _front_fork > 0:
        try:
            if os.waitpid(_front_fork, options)[0] == 0:
                return  # WNOHANG, still there
        except ChildProcessError:
            pass
        _front_fork = 0


def end_front_warm_up():
    """Let pyctr-front's warm-up process end (right before the move it was
    for: the kernel's fast state lasts a grace period after its last move)."""
    global _front_warm_up
    fd, _front_warm_up = _front_warm_up, None
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
    _reap_front_fork(0)  # it only forks and exits


def warm_up(layout):
    """Start the kernel's wait that the first move of a process between
    cgroups pays, so that the move of the container's init (move_in)
    does not. Every write to a cgroup.procs file takes the global
    cgroup_threadgroup_rwsem for writing; after a quiet spell that waits for
    an RCU grace period (5-20 ms here), and for one grace period after the
    last writer, the next writer does not wait. So a thread writes this
    process's pid into its own group (a move to where it is: nothing
    changes) while the stages before clone work. On a pure v2 host clone3's
    CLONE_INTO_CGROUP would avoid the wait; on v1 hierarchies nothing does.

    Returns wait(): it returns once the thread has ended. Call it before
    clone: the child of a raw clone(2) inherits any lock a running thread
    holds. The thread is the shim's, not Python's: a Python thread that a
    join has seen finish may still be freeing its state under the malloc
    lock (the likely cause of a detached `run` whose child waited for that
    lock for good), and pthread_join waits until the kernel has seen it go."""
    h = layout.hierarchies[0]
    try:
        low = os.open(h.host_dir(h.own) + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return lambda: None  # only a head start: attach() still does the real work
    try:
        # The fd stays open during the wait, while `run` checks the fds the
        # user passes (a higher one than 1024 would grow the fd table).
        fd = os.dup_high(low, 64)
    finally:
        os.close(low)
    syscall = syscalls.Syscalls()
    try:
        syscall.start_writer(fd, str(os.getpid()).encode())
    except OSError:
        os.close(fd)
        return lambda: None
    return syscall.join_writer


# -- the container's view: /sys/fs/cgroup inside -------------------------------

def view(layout, group, namespaced):
    """What the child mounts at /sys/fs/cgroup: [(name, fstype, options,
    host dir, fresh)]. fresh: mount cgroupfs anew, which in the container's
    own cgroup namespace shows its groups as the roots; else bind its
    groups' directories (as runc does without a cgroup namespace).

    v1 hierarchies are bound even in a cgroup namespace when pyctr made the
    groups: the view is the same (the leaf and below, and /proc shows it as
    "/"), but a fresh v1 mount walks every cgroup of the unified tree under
    the cgroup mutex (cgroup1_get_tree drains offline groups first): the
    start-up of the 1,000th container grew with it (`pyctr bench scale`)."""
    entries = []
    for h in layout.hierarchies:
        if group:
            directory = group.process_dir(h.name)
        else:
            directory = h.host_dir(h.own)
        fresh = namespaced and (h.version == 2 or not group)
        entries.append((h.name, "cgroup2" if h.version == 2 else "cgroup", h.options or None,
                        directory, fresh))
    return entries


def mount_view(syscall, root, dest, flags, view):
    """The rootfs step for a "cgroup" mount at `dest` inside `root` (runs
    in the child, before pivot_root): read-only, as the mount's options say
    (OCI default: ro). Every path is resolved inside the root. The flags
    reach the binds below `dest` in one mount_setattr where the kernel has
    it: a remount per hierarchy is ten calls on the child's way to exec."""
    locked = flags | syscalls.MS_BIND | syscalls.MS_REMOUNT

    def one(fstype, options, directory, fresh, where):
        if fresh:
            syscall.mount_in_root(root, where, fstype, fstype, flags, options)
        else:
            syscall.mount_in_root(root, where, directory, None, syscalls.MS_BIND, None)
            syscall.mount_in_root(root, where, None, None, locked, None)

    if len(view) == 1 and view[0][0] == "":  # a v2-only host
        one(*view[0][1:], dest)
        return
    syscall.mount_in_root(root, dest, "tmpfs", "tmpfs", flags & ~syscalls.MS_RDONLY, "mode=755")
    bound = []
    for name, fstype, options, directory, fresh in view:
        where = dest + "/" + name
        syscall.mkdir_in_root(root, where)
        if fresh:
            one(fstype, options, directory, fresh, where)
        else:
            syscall.mount_in_root(root, where, directory, None, syscalls.MS_BIND, None)
            bound.append(where)
        for alias in name.split(",") if "," in name else ():
            # cpu -> cpu,cpuacct as on the host
            syscall.symlink_in_root(root, name, dest + "/" + alias)
    try:
        syscall.set_mount_flags_in_root(root, dest, flags)
        return
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
    for where in bound:
        syscall.mount_in_root(root, where, None, None, locked, None)
    if flags & syscalls.MS_RDONLY:
        syscall.mount_in_root(root, dest, None, None, locked, None)


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
    return [fd for fd, _ in group.open_procs()]


def open_procs_files(directories):
    """[(fd, directory)]: each directory's cgroup.procs opened for writing
    (close-on-exec); PyctrError if one cannot be, none left open."""
    opened = []
    try:
        for directory in directories:
            opened.append((os.open(directory + "/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC),
                           directory))
    except OSError as e:
        close(fd for fd, _ in opened)
        raise PyctrError("cannot join the container's cgroup %s: %s"
                         % (directory, e.strerror)) from e
    return opened


def join(fds):
    """In the forked process: move itself into the container's groups."""
    for fd in fds:
        os.write(fd, b"0")


def move_in(opened, pid):
    """Write `pid` to each of Group.open_procs()'s files, and close them.
    Opened before clone, so that between clone and IDS (the child waits for
    it) this process only writes."""
    data = str(pid).encode()
    try:
        for fd, directory in opened:
            try:
                os.write(fd, data)
            except OSError as e:
                raise PyctrError("cannot write %s to %s/cgroup.procs: %s"
                                 % (pid, directory, e.strerror)) from e
    finally:
        close(fd for fd, _ in opened)


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
    prefix = _world_prefix(paths)
    found = world_groups(paths, layout)
    live = live_ids()
    removed = []
    for name, dirs in sorted(found.items()):
        if name[len(prefix):] in live:
            continue
        group = Group(dirs, LEAF, 2 if layout.v2_only else 1, name)
        if group.remove():
            removed.append("cgroup %s" % group.path)
    _remove_parents(p for h in layout.hierarchies for p in reversed(_parents(h)))
    return removed


def _remove_parents(parents):
    """pyctr/ of a v1 cpuset hierarchy, and a bucket of it, once no world's
    group is left in it (it lives in pyctr's own cgroup, which its owner may
    want to remove). A create meanwhile makes it again (_make_group)."""
    for parent in parents:
        if _is_bucket(parent):
            try:
                os.rmdir(parent)
            except OSError:
                continue  # in use, or never made
            parent = os.path.dirname(parent)
        if os.path.basename(parent) != PARENT:
            continue
        try:
            os.rmdir(parent)
        except OSError:
            pass  # in use, or never made
