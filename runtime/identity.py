"""Who the workload is: its capability sets, its uid/gid, the descriptors it
inherits. Everything here is decided and checked before clone; the child
only applies the result (child.prepare_process).
"""
import stat

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import spec
from pyctr.errors import PyctrError

# The largest real id: (uid_t)-1 means "leave unchanged" to setresuid, so a
# workload asked to run as 4294967295 would silently stay root.
MAX_ID = 2 ** 32 - 2


# -- capabilities ------------------------------------------------------------
def cap_name(name, where="capability", allow_all=False):
    """"CAP_NET_RAW", "net_raw" -> "net_raw"; "all" only where allowed."""
    if not isinstance(name, str):
        raise PyctrError("%s: %r is not a capability name" % (where, name))
    short = name.lower()
    short = short[4:] if short.startswith("cap_") else short
    if short not in spec.CAPABILITIES and not (allow_all and short == "all"):
        raise PyctrError("%s: unknown capability %r" % (where, name))
    return short


def podman_capabilities(uid, add, drop):
    """The sets `podman run` gives: the default list changed by --cap-add
    and --cap-drop bounds everything; root has it effective and permitted;
    any other user gets only what --cap-add names, in every set including
    ambient, since a non-root exec keeps no other capability. Inheritable
    stays empty for root."""
    add = [cap_name(c, "--cap-add", allow_all=True) for c in add]
    drop = [cap_name(c, "--cap-drop", allow_all=True) for c in drop]
    bounding = set() if "all" in drop else set(spec.DEFAULT_CAPABILITIES)
    bounding -= set(drop)
    added = set(spec.CAPABILITIES) if "all" in add else set(add)
    bounding |= added
    if uid == 0:
        return spec.Capabilities(bounding=sorted(bounding), effective=sorted(bounding),
                                 permitted=sorted(bounding))
    granted = sorted(added & bounding)
    return spec.Capabilities(bounding=sorted(bounding), effective=granted, permitted=granted,
                             inheritable=granted, ambient=granted)


def capabilities_from_oci(caps, where="process.capabilities"):
    """OCI's process.capabilities object -> Capabilities, checked. A
    missing set is empty (the runtime spec's default)."""
    if caps is None:
        caps = {}
    if not isinstance(caps, dict):
        raise PyctrError("%s must be an object of capability lists" % where)
    sets = {}
    for name in spec.Capabilities.SETS:
        names = caps.get(name) or []
        if not isinstance(names, list):
            raise PyctrError("%s.%s must be a list of capability names" % (where, name))
        sets[name] = sorted({cap_name(c, "%s.%s" % (where, name)) for c in names})
    # An ambient capability must also be permitted and inheritable, or the
    # kernel refuses to raise it. runc and crun warn and go on without it
    # (`runc spec` itself writes such a config since CVE-2022-29162 emptied
    # inheritable), so a bundle that asks for it is not refused either.
    raisable = set(sets["permitted"]) & set(sets["inheritable"])
    dropped = [c for c in sets["ambient"] if c not in raisable]
    if dropped:
        import sys
        sys.stderr.write("pyctr: warning: %s.ambient: %s not raised: not also permitted and "
                         "inheritable\n" % (where, ", ".join("CAP_" + c.upper() for c in dropped)))
        sets["ambient"] = [c for c in sets["ambient"] if c in raisable]
    result = spec.Capabilities(**sets)
    check_capabilities(result, where)
    return result


def check_capabilities(caps, where):
    """What the kernel would refuse half-way through the child's setup,
    refused here in one line: effective within permitted, inheritable within
    bounding, ambient within permitted and inheritable."""
    rules = (("effective", caps.effective, set(caps.permitted), "permitted"),
             ("inheritable", caps.inheritable, set(caps.bounding), "bounding"),
             ("ambient", caps.ambient, set(caps.permitted) & set(caps.inheritable),
              "permitted and inheritable"))
    for name, members, allowed, within in rules:
        extra = sorted(set(members) - allowed)
        if extra:
            raise PyctrError("%s: %s capability %s is not also %s" % (
                where, name, "CAP_" + extra[0].upper(), within))


# -- uid and gid -------------------------------------------------------------
def check_ids(process, uid_mappings=(), gid_mappings=()):
    """uid, gid and supplementary gids are real ids (0..2^32-2) and, in a
    user namespace, mapped in it: an unmapped id makes setresuid fail or,
    for (uid_t)-1, do nothing at all."""
    _check_id(process.uid, "uid", uid_mappings)
    for gid in [process.gid] + list(process.additional_gids):
        _check_id(gid, "gid", gid_mappings)


def _check_id(value, kind, mappings):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise PyctrError("%s %r out of range (0..%d)" % (kind, value, MAX_ID))
    if mappings and not any(m.container_id <= value < m.container_id + m.size
                            for m in mappings):
        ranges = ", ".join("%d..%d" % (m.container_id, m.container_id + m.size - 1)
                           for m in mappings)
        raise PyctrError("%s %d is not mapped in the container's user namespace (%s)"
                         % (kind, value, ranges))


def resolve_user(user, root):
    """"UID[:GID]" or "NAME[:GROUP]" -> (uid, gid). Names are looked up in
    the container's /etc/passwd and /etc/group, read inside `root`; a user
    given by name without a group gets its passwd group, a numeric one its
    own number."""
    if user is None or user == "":
        return 0, 0
    if isinstance(user, bool) or not isinstance(user, (str, int)):
        raise PyctrError("user must be UID[:GID] or NAME[:GROUP], not %r" % (user,))
    name, _, group = str(user).partition(":")
    uid = _lookup_id(name, root, "passwd")
    if group:
        gid = _lookup_id(group, root, "group")
    elif _is_number(name):
        gid = uid
    else:
        gid = _passwd_entry(name, root)[1]
    return uid, gid


def _is_number(text):
    return text.isascii() and text.isdigit()


def _lookup_id(name, root, db):
    if _is_number(name):
        return int(name)
    if db == "passwd":
        return _passwd_entry(name, root)[0]
    for fields in _db(root, db):
        if fields[0] == name and _is_number(fields[2]):
            return int(fields[2])
    raise PyctrError("unknown group %r in the container's /etc/group" % name)


def _passwd_entry(name, root):
    for fields in _db(root, "passwd"):
        if fields[0] == name and _is_number(fields[2]) and _is_number(fields[3]):
            return int(fields[2]), int(fields[3])
    raise PyctrError("unknown user %r in the container's /etc/passwd" % name)


def _db(root, db):
    from pyctr import inroot
    text = inroot.read_text(root, "/etc/" + db)
    return [line.split(":") for line in text.splitlines() if line.count(":") >= 3]


# -- descriptors ---------------------------------------------------------------
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def check_passed_fds(process):
    """--preserve-fds and an MPI launcher's PMI_FD hand descriptors to the
    workload: only sockets and pipes may pass. A directory or file fd
    would let the container open the host's files relative to it."""
    n = process.preserve_fds
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise PyctrError("--preserve-fds wants a count of 0 or more, not %r" % (n,))
    limit = os.sysconf("SC_OPEN_MAX")
    if n > limit:
        raise PyctrError("--preserve-fds %d: more than the %d fds a process may have"
                         % (n, limit))
    fds = [(fd, "--preserve-fds %d: fd %d" % (n, fd)) for fd in range(3, 3 + n)]
    fds += [(fd, "PMI_FD %d" % fd) for fd in process.pass_fds]
    for fd, what in fds:
        try:
            mode = os.fstat(fd).st_mode
        except OSError as e:
            raise PyctrError("%s is not open" % what) from e
        if not (stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode)):
            kind = next((k for test, k in _KINDS if test(mode)), "not a socket or pipe")
            raise PyctrError("%s is %s: only sockets and pipes are passed to a container"
                             % (what, kind))
