"""The child as a program for csrc/child.c: what child.child_main does from
clone() to execve(), written out by the parent before clone as an op list,
so that the cloned process runs no Python at all (bubblewrap's way: the
list is built first, then executed).

Why: a child that runs Python after a fork-style clone touches, and so
copies, hundreds of the interpreter's pages, and makes ~150 Python calls
before its exec; that is most of the time between clone and the workload,
and it is on every start's path.

compile() covers every container but a bundle's (whose hooks, exec FIFO
and terminal the Python child handles) and returns None for those, which
the Python child runs as before, as it does every container where pyctr's
environment has PYCTR_CHILD=python. With --init the parent loads
pyctr-init's memfd (reaper.load) before clone, where the Python child
loads it itself.

The steps are child.py's and rootfs.plan_*'s, in the same order, with the
same step names and messages; only who executes them differs. Composite
rootfs steps that ask the filesystem (is it a directory, does it exist,
which flags are locked) are asked in C, at the moment the Python child
would ask.
"""
import errno
import sys

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import cgroups, devices, rootfs, syscalls
from pyctr.child import builds_before_ids, first_ids, kept_fds
from pyctr.errors import PyctrError
from pyctr.reaper import REPORT_TAG
from pyctr.spec import CAPABILITIES

SIGKILL = 9
NO_STRING = 0xFFFFFFFF

# csrc/child.c's ops, in its enum's order, each with its arguments: i an
# int, s a string (or None), [..] a list of those (of tuples, for several).
OPS = (("step", "s"), ("close", "i"), ("prctl", "ii"), ("hostname", "s"),
       ("mount", "sssis"), ("mkdir", "s"), ("hold_root", "i"), ("mkdir_in_root", "ss"),
       ("mount_in_root", "ssssis"), ("bind", "sssi"), ("mount_sysfs", "ssi"),
       ("symlink_in_root", "ssss"), ("setattr_in_root", "ssii"), ("chdir", "s"),
       ("pivot_root", "ss"), ("umount", "si"), ("mask", "[s]"), ("readonly", "s"),
       ("unshare", "i"), ("loopback_up", ""), ("ready_go", ""), ("keyring", ""),
       ("keep_fds", "[i]"), ("seccomp", "s"), ("drop_bounding", "[i]"), ("set_ids", "ii[i]"),
       ("capset", "iii"), ("ambient", "[i]"), ("workdir", "s"), ("reset_signals", ""),
       ("exec", "[s][s]sis"), ("join_cgroups", "[is]"), ("device", "sssssiiiis"),
       ("expect_ids", ""), ("setns", "ii"))
_CODE = {name: i for i, (name, _) in enumerate(OPS)}


class Program:
    """What Syscalls.clone hands the C child: its channel end and its code.
    waits_for_ids: the child waits for IDS, the parent moving it into its
    groups first (cgroup_attach); else it moves itself and takes no IDS."""
    __slots__ = ("channel_fd", "code", "waits_for_ids")

    def __init__(self, channel_fd, code, waits_for_ids):
        self.channel_fd, self.code, self.waits_for_ids = channel_fd, code, waits_for_ids


class Unsupported(Exception):
    """A step the C child has no op for: the Python child runs instead."""


def wanted(plan):
    """Is the C child to run `plan`, as far as can be told before its
    steps are written? PYCTR_CHILD in pyctr's environment: "python" always
    takes the Python child, "c" the C child or fails (tests use both)."""
    choice = os.environ.get("PYCTR_CHILD")
    if choice == "python":
        return False
    why = _why_not(plan)
    if why and choice == "c":
        raise PyctrError("PYCTR_CHILD=c: the C child does not do %s" % why)
    return not why


def _why_not(plan):
    return "a bundle" if plan.oci or plan.spec.process.oci else None


def compile(plan, channel, procs=(), init=-1):
    """The Program of `plan` (a child.Plan), or None where the Python child
    must run it. procs: [(fd, directory)] of the cgroup.procs files the
    child writes itself into first (cgroups.open_procs_files) where it
    builds its root before IDS (child.builds_before_ids): it needs no IDS
    then, nothing from the parent before GO; else (a user namespace,
    namespaces to join) it waits for IDS as the Python child does, the
    parent having moved it. init: for --init, the parent's memfd of
    pyctr-init (reaper.load), which the child execs."""
    if not wanted(plan):
        return None
    if plan.spec.process.init and init < 0:
        raise ValueError("--init needs the memfd of pyctr-init")
    w = _Writer()
    try:
        _child(w, plan, channel, procs, init)
    except Unsupported as e:
        if os.environ.get("PYCTR_CHILD") == "c":
            raise PyctrError("PYCTR_CHILD=c: the C child does not do step %s" % e) from None
        return None
    return Program(channel.child_fd, w.bytes(), not builds_before_ids(plan))


def _child(w, plan, channel, procs, init):
    """child.child_main, but that where it builds before IDS it moves
    itself into its groups (as `pyctr exec` does) and takes no IDS."""
    spec = plan.spec
    w.op("close", channel.parent_fd)
    if plan.tie_to_parent:
        w.op("prctl", syscalls.PR_SET_PDEATHSIG, SIGKILL)
    if builds_before_ids(plan):
        if procs:
            w.op("step", "join the container's cgroups")
            w.op("join_cgroups", list(procs))
    else:  # child_main's after_ids
        w.op("expect_ids")
        w.op("prctl", syscalls.PR_SET_DUMPABLE, 0)  # a rootless parent wrote our maps
        w.op("step", "join namespaces")
        for ns_type, fd in plan.join:
            w.op("setns", fd, syscalls.NAMESPACES[ns_type][0])
        if plan.new_userns:
            w.op("step", "become root in the user namespace")
            w.op("set_ids", *first_ids(spec))
    if plan.new_cgroupns:  # rooted at the groups just joined
        w.op("step", "unshare the cgroup namespace")
        w.op("unshare", syscalls.CLONE_NEWCGROUP)
    uts = spec.namespace("uts")
    if spec.hostname and uts and not uts.path:
        w.op("step", "sethostname")
        w.op("hostname", spec.hostname)
    w.op("step", "prepare root filesystem")
    _steps(w, rootfs.plan_root(spec, plan.rootfs, plan.layers))
    w.op("step", "mount")
    w.op("hold_root", 1)
    _steps(w, rootfs.plan_mounts(spec, plan.rootfs, plan.etc_mounts, plan.cgroup_view,
                                 pivot=False))
    w.op("hold_root", 0)
    _steps(w, rootfs.plan_pivot(plan.rootfs))
    w.op("step", "mask and protect paths")
    _steps(w, rootfs.plan_finish(spec))
    if plan.new_netns:
        w.op("step", "bring up lo")
        w.op("loopback_up")
    w.op("step", "wait at the exec barrier")
    w.op("ready_go")
    w.op("step", "set up the process (ids, capabilities, fds)")
    _process(w, spec.process, plan.tie_to_parent, spec.seccomp)
    w.op("exec", spec.process.args, spec.process.env,
         spec.seccomp.program if spec.seccomp and spec.process.no_new_privileges else None,
         init, REPORT_TAG)


def _process(w, proc, tie_to_parent, seccomp):
    """child.prepare_process, in its order."""
    w.op("keyring")
    w.op("keep_fds", kept_fds(proc))
    if seccomp and not proc.no_new_privileges:
        w.op("seccomp", seccomp.program)
    caps = proc.capabilities
    numbers = lambda names: [CAPABILITIES[c] for c in names]
    w.op("drop_bounding", syscalls.cap_split(numbers(caps.bounding))[1])
    w.op("prctl", syscalls.PR_SET_KEEPCAPS, 1)
    w.op("set_ids", proc.uid, proc.gid, list(proc.additional_gids))
    w.op("capset", *(syscalls.cap_mask(numbers(c))
                     for c in (caps.effective, caps.permitted, caps.inheritable)))
    w.op("ambient", syscalls.cap_split(numbers(caps.ambient))[0])
    if proc.no_new_privileges:
        w.op("prctl", syscalls.PR_SET_NO_NEW_PRIVS, 1)
    if tie_to_parent:
        w.op("prctl", syscalls.PR_SET_PDEATHSIG, SIGKILL)
    w.op("workdir", proc.cwd)
    w.op("reset_signals")


def _steps(w, steps):
    """rootfs steps as ops: primitive ones one to one, composite ones as the
    ops that ask at run time (bind, mount_sysfs, mask, readonly) or, for the
    cgroup mount, expanded here (it asks nothing)."""
    for op, *args in steps:
        if op == "symlink_in_root":  # the parent directory is opened, the name made in it
            root, target, path = args
            parent, _, name = path.rstrip("/").rpartition("/")
            w.op(op, root, target, parent or "/", name)
        elif op == "mask":
            w.op(op, list(args[0]))
        elif op == "mount_cgroup":
            _cgroup_mount(w, *args)
        elif op == "device":  # devices.make_node
            root, dest, device = args
            parent, _, name = dest.rstrip("/").rpartition("/")
            w.op(op, root, dest, os.path.dirname(dest), parent or "/", name,
                 devices.node_mode(device), os.makedev(device.major, device.minor), device.uid,
                 device.gid, device.host_path)
        elif op in ("mount", "mkdir", "mkdir_in_root", "mount_in_root", "bind", "mount_sysfs",
                    "chdir", "pivot_root", "umount", "readonly"):
            w.op(op, *args)
        else:
            raise Unsupported(op)


def _cgroup_mount(w, root, dest, flags, view):
    """cgroups.mount_view's calls, recorded twice: as it runs where
    mount_setattr works, and where it fails with ENOSYS (a kernel before
    5.12). The C child makes the first; on ENOSYS it runs the rest of the
    second (remounts), which it skips otherwise."""
    done, old_kernel = _MountRecorder(), _MountRecorder(enosys=True)
    cgroups.mount_view(done, root, dest, flags, view)
    cgroups.mount_view(old_kernel, root, dest, flags, view)
    if not done.calls or done.calls[-1][0] != "setattr_in_root":
        _steps(w, done.calls)
        return
    fallback = old_kernel.calls[len(done.calls):]
    _steps(w, done.calls[:-1])
    w.op(*done.calls[-1], len(fallback))
    _steps(w, fallback)


class _MountRecorder:
    """The Syscalls methods mount_view calls, as steps; any other one it
    may come to call leaves the cgroup mount to the Python child."""

    def __init__(self, enosys=False):
        self.calls, self.enosys = [], enosys

    def mount_in_root(self, root, path, source, fstype, flags=0, data=None):
        self.calls.append(("mount_in_root", root, path, source, fstype, flags, data))

    def mkdir_in_root(self, root, path):
        self.calls.append(("mkdir_in_root", root, path))

    def symlink_in_root(self, root, target, path):
        self.calls.append(("symlink_in_root", root, target, path))

    def set_mount_flags_in_root(self, root, path, flags):
        self.calls.append(("setattr_in_root", root, path, flags))
        if self.enosys:
            raise OSError(errno.ENOSYS, "mount_setattr")

    def __getattr__(self, name):
        raise Unsupported("cgroup mount: " + name)


def _parse(schema):
    """"ii[is]" -> ["i", "i", ["i", "s"]]"""
    out, stack = [], []
    for ch in schema:
        if ch == "[":
            stack.append(out)
            out = []
        elif ch == "]":
            inner, out = out, stack.pop()
            out.append(inner)
        else:
            out.append(ch)
    return out


_TYPES = {name: _parse(schema) for name, schema in OPS}


class _Writer:
    """The byte format csrc/child.c reads: an op is its code, then its
    arguments as OPS gives them; an int is 8 bytes, a string a 4-byte
    length (NO_STRING for None), its bytes and a NUL; a list its length,
    then its items. Arguments are checked against OPS: a mistake here fails
    in the parent, not as a garbled program in the child. Written for speed
    (it runs before clone, on every start's path: ~100 ops)."""

    def __init__(self):
        self._buf = bytearray()

    def op(self, name, *args):
        types = _TYPES[name]
        if len(args) != len(types):
            raise TypeError("op %s takes %d arguments, not %d" % (name, len(types), len(args)))
        self._buf += _INT(_CODE[name])
        self._args(types, args)

    def bytes(self):
        return bytes(self._buf)

    def _args(self, types, args):
        buf = self._buf
        for kind, arg in zip(types, args):
            if kind == "s":
                if arg is None:
                    buf += _NONE
                else:
                    raw = arg.encode("utf-8", "surrogateescape") if isinstance(arg, str) \
                        else bytes(arg)
                    buf += len(raw).to_bytes(4, _ORDER)
                    buf += raw
                    buf += b"\0"
            elif kind == "i":
                if not isinstance(arg, int):
                    raise TypeError("an int, not %r" % (arg,))
                buf += _INT(arg)
            else:  # a list
                buf += _INT(len(arg))
                for item in arg:
                    self._args(kind, item if len(kind) > 1 else (item,))


_ORDER = sys.byteorder
_INT = lambda value: value.to_bytes(8, _ORDER, signed=True)
_NONE = NO_STRING.to_bytes(4, _ORDER)


def decode(code):
    """[(op, args)] of a program, as _Writer was given them (lists as lists,
    strings as bytes): for tests and for reading one by hand."""
    pos, ops = 0, []

    def read(kind):
        nonlocal pos
        if isinstance(kind, list):
            items = [[read(k) for k in kind] for _ in range(read("i"))]
            return [i if len(kind) > 1 else i[0] for i in items]
        if kind == "i":
            pos += 8
            return int.from_bytes(code[pos - 8:pos], sys.byteorder, signed=True)
        length = int.from_bytes(code[pos:pos + 4], sys.byteorder)
        pos += 4
        if length == NO_STRING:
            return None
        pos += length + 1
        return code[pos - length - 1:pos - 1]

    while pos < len(code):
        name = OPS[read("i")][0]
        ops.append((name, [read(k) for k in _TYPES[name]]))
    return ops
