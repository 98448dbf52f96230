"""Device policy: which device nodes a container may make (mknod), read
and write. Default deny, then the allow list runc gives every container,
then the rules a user or bundle adds, then one rule per device node asked
for with --device or linux.devices. The last rule that matches decides
(the OCI runtime spec's order).

Enforced by the cgroup (see cgroups.py): the v1 devices controller, or on a
cgroup v2 host an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE that
the C shim builds from the same rules and attaches to the group.
"""
import stat

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError
from pyctr.spec import Record
from pyctr.syscalls import MS_BIND

ANY = -1  # major or minor "*"


class Rule(Record):
    """type: a (all), b (block) or c (char); major/minor: a number or ANY;
    access: a subset of "rwm" (read, write, mknod)."""
    __slots__ = ("allow", "type", "major", "minor", "access")

    def v1(self):
        """The line the v1 devices controller reads (devices.allow/deny)."""
        if self.type == "a":
            return "a"
        number = lambda n: "*" if n == ANY else str(n)
        return "%s %s:%s %s" % (self.type, number(self.major), number(self.minor), self.access)

    def to_oci(self):
        rule = {"allow": self.allow, "type": self.type, "access": self.access}
        if self.major != ANY:
            rule["major"] = self.major
        if self.minor != ANY:
            rule["minor"] = self.minor
        return rule


class Device(Record):
    """A node made in the container's /dev (linux.devices) and allowed with
    `access`. host_path: the node to bind when mknod is not allowed (in a
    user namespace)."""
    __slots__ = ("path", "type", "major", "minor", "file_mode", "uid", "gid", "host_path",
                 "access")
    DEFAULTS = {"file_mode": 0o666, "uid": 0, "gid": 0, "access": "rwm"}

    def to_oci(self):
        return {"path": self.path, "type": self.type, "major": self.major, "minor": self.minor,
                "fileMode": self.file_mode, "uid": self.uid, "gid": self.gid}


def _allow(type_, major, minor, access="rwm"):
    return Rule(allow=True, type=type_, major=major, minor=minor, access=access)


# runc's default allow list (libcontainer's AllowedDevices, without tun).
DEFAULT_RULES = (
    Rule(allow=False, type="a", major=ANY, minor=ANY, access="rwm"),
    _allow("c", ANY, ANY, "m"), _allow("b", ANY, ANY, "m"),
    _allow("c", 1, 3),    # null
    _allow("c", 1, 5),    # zero
    _allow("c", 1, 7),    # full
    _allow("c", 1, 8),    # random
    _allow("c", 1, 9),    # urandom
    _allow("c", 5, 0),    # tty
    _allow("c", 5, 2),    # ptmx
    _allow("c", 136, ANY),  # /dev/pts/*
)


def policy(res):
    """The whole ordered rule list for a container's Resources: deny all,
    then a bundle's own rules, then the default allow list, then --device
    nodes. The defaults come after the bundle's rules, as runc appends
    them: engines' rules begin with a deny-all that must not take away
    /dev/null or the terminal."""
    deny_all, defaults = DEFAULT_RULES[0], DEFAULT_RULES[1:]
    rules = [deny_all] + list(res.device_rules) + list(defaults)
    # The device controller knows only character and block nodes, not FIFOs.
    rules += [_allow(d.type, d.major, d.minor, d.access) for d in res.devices if d.type != "p"]
    return rules


# -- parsing ------------------------------------------------------------------

def add_option(res, text):
    """--device HOST[:CTR][:PERMS]: the host's node, made at CTR (default the
    same path) and allowed with PERMS (default rwm)."""
    parts = str(text).split(":")
    host, ctr, access = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if parts[1].startswith("/"):
            ctr = parts[1]
        else:
            access = parts[1]
    elif len(parts) == 3:
        ctr, access = parts[1], parts[2]
    elif len(parts) != 1:
        raise PyctrError("invalid --device %r: expected HOST[:CONTAINER][:PERMISSIONS]" % text)
    _check_access("--device %s" % text, access)
    if not host.startswith("/"):
        raise PyctrError("invalid --device %r: the host path must be absolute" % text)
    try:
        st = os.stat(host)
    except OSError as e:
        raise PyctrError("--device %s: %s" % (host, e.strerror)) from e
    if stat.S_ISCHR(st.st_mode):
        type_ = "c"
    elif stat.S_ISBLK(st.st_mode):
        type_ = "b"
    else:
        raise PyctrError("--device %s: not a device node" % host)
    if not ctr.startswith("/dev/") or ".." in ctr.split("/"):
        raise PyctrError("invalid --device %r: the container's path must be under /dev" % text)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    res.devices.append(Device(path=ctr, type=type_, major=major, minor=minor,
                              file_mode=stat.S_IMODE(st.st_mode), host_path=host,
                              access=access))


def _check_access(where, access):
    if not access or any(c not in "rwm" for c in access) or len(set(access)) != len(access):
        raise PyctrError("%s: permissions must be some of r, w, m" % where)


def _number(value, where):
    if value is None:
        return ANY
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PyctrError("%s must be a non-negative integer" % where)
    return value


def rule_from_oci(rule):
    where = "linux.resources.devices"
    if not isinstance(rule, dict) or not isinstance(rule.get("allow"), bool):
        raise PyctrError("%s: each rule needs \"allow\": true or false" % where)
    type_ = rule.get("type") or "a"
    if type_ not in ("a", "b", "c"):
        raise PyctrError("%s: type must be a, b or c, not %r" % (where, type_))
    access = rule.get("access") or "rwm"
    _check_access(where, access)
    return Rule(allow=rule["allow"], type=type_, major=_number(rule.get("major"), where + " major"),
                minor=_number(rule.get("minor"), where + " minor"), access=access)


def device_from_oci(device):
    where = "linux.devices"
    if not isinstance(device, dict):
        raise PyctrError("%s: each entry must be an object" % where)
    path = device.get("path")
    if not isinstance(path, str) or not path.startswith("/dev/") or ".." in path.split("/"):
        raise PyctrError("%s: path must be under /dev, not %r" % (where, path))
    type_ = device.get("type")
    if type_ == "u":
        type_ = "c"  # unbuffered character device: the same node type
    if type_ not in ("b", "c", "p"):
        raise PyctrError("%s %s: type must be b, c, u or p, not %r" % (where, path, type_))
    major, minor = device.get("major"), device.get("minor")
    if type_ == "p":  # a FIFO has no device number
        major, minor = major or 0, minor or 0
    if major is None or minor is None:
        raise PyctrError("%s %s: major and minor are required" % (where, path))
    mode = device.get("fileMode", 0o666)
    return Device(path=path, type=type_, major=_number(major, where + " major"),
                  minor=_number(minor, where + " minor"),
                  file_mode=_number(mode, where + " fileMode") & 0o7777,
                  uid=_number(device.get("uid", 0), where + " uid"),
                  gid=_number(device.get("gid", 0), where + " gid"), host_path=path)


# -- the node in /dev ------------------------------------------------------------------

def node_mode(device):
    """mknod's mode for `device`: its file type and permissions."""
    return {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[device.type] | \
        device.file_mode


def make_node(syscall, root, dest, device):
    """The rootfs step for one device at `dest` inside `root` (runs in the
    child, before pivot_root): mknod as runc does, or, where a user
    namespace may not, a bind mount of the host's node."""
    syscall.mkdir_in_root(root, os.path.dirname(dest))
    if not syscall.exists_in_root(root, dest):
        try:
            syscall.mknod_in_root(root, dest, node_mode(device),
                                  os.makedev(device.major, device.minor), device.uid, device.gid)
            return
        except PermissionError:
            syscall.touch_in_root(root, dest)
    syscall.mount_in_root(root, dest, device.host_path, None, MS_BIND, None)


# -- enforcement ------------------------------------------------------------------

def apply_v1(directory, rules):
    """Write `rules` to a new v1 devices cgroup, before it has children
    (they copy it; the kernel refuses a new default once children exist).
    One write(2) per rule, as the kernel reads them, but each file opened
    once for a run of rules: the default policy is a deny then ten allows."""
    fd, opened = -1, None
    try:
        for rule in rules:
            name = "devices.allow" if rule.allow else "devices.deny"
            try:
                if name != opened:
                    if fd >= 0:
                        os.close(fd)
                        fd = -1
                    fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_CLOEXEC)
                    opened = name
                os.write(fd, rule.v1().encode())
            except OSError as e:
                raise PyctrError("cannot set device rule %r in %s: %s" % (
                    rule.v1(), directory, e.strerror)) from e
    finally:
        if fd >= 0:
            os.close(fd)


ACCESS_BITS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
TYPE_CODES = {"a": 0, "b": 1, "c": 2}   # BPF_DEVCG_DEV_BLOCK, _CHAR


def apply_bpf(directory, rules):
    """cgroup v2: load the rules as a device program and attach it to the
    group (it stays attached until the group is removed)."""
    from pyctr._shim import ffi, lib
    table = ffi.new("struct pyctr_device_rule[]", len(rules))
    for entry, rule in zip(table, rules):
        entry.allow = int(rule.allow)
        entry.type = TYPE_CODES[rule.type]
        entry.major = rule.major
        entry.minor = rule.minor
        entry.access = sum(ACCESS_BITS[c] for c in rule.access)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if lib.pyctr_device_filter_attach(fd, table, len(rules)) < 0:
            err = ffi.errno
            raise PyctrError("cannot attach the device policy (eBPF) to %s: %s"
                             % (directory, os.strerror(err)), errno=0)
    finally:
        os.close(fd)
