"""Who asks the network helper, and what they pass it, as the kernel says.

The caller is whoever holds the connection: SO_PEERCRED (pid, uid, gid as
of connect) and SO_PEERGROUPS (its supplementary groups at that moment; no
/proc/PID/status read that a recycled pid could answer for someone else).
A passed fd is a network namespace only if it is on nsfs and the kernel
says so (NS_GET_NSTYPE); whose it is, is the owner of its user namespace
(NS_GET_USERNS, NS_GET_OWNER_UID). No ioctl is sent to an fd that is not
on nsfs: a device's driver could read it as its own command.
"""
import fcntl
import os
import socket
import struct

from pyctr.errors import PyctrError

NSIO = 0xb7
NS_GET_USERNS = NSIO << 8 | 0x1
NS_GET_NSTYPE = NSIO << 8 | 0x3
NS_GET_OWNER_UID = NSIO << 8 | 0x4
CLONE_NEWNET = 0x40000000
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
_GROUPS_BUFFER = 1024  # CPython's largest getsockopt buffer: 256 groups


class Refused(PyctrError):
    """A request the helper turns down; the message is the reply's line."""


class Peer:
    __slots__ = ("pid", "uid", "gid", "groups", "name")

    def __init__(self, pid, uid, gid, groups):
        from pyctr.netd.policy import user_name
        self.pid, self.uid, self.gid = pid, uid, gid
        self.groups = frozenset(groups) | {gid}
        self.name = user_name(uid)

    def __str__(self):
        return "user %s" % self.name if self.name else "uid %d" % self.uid


def of(conn):
    """The Peer on a connected unix socket."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _GROUPS_BUFFER)
        groups = struct.unpack("%dI" % (len(raw) // 4), raw[:len(raw) // 4 * 4])
    except OSError:
        # More groups than the buffer holds (ERANGE) or an old kernel: the
        # primary group only. A grant to a group then needs it as primary.
        groups = ()
    return Peer(pid, uid, gid, groups)


def _nsfs_dev():
    return os.stat("/proc/self/ns/net").st_dev


def _owner_uid(userns_fd):
    raw = fcntl.ioctl(userns_fd, NS_GET_OWNER_UID, bytes(4))
    return struct.unpack("I", raw)[0]


def netns_owner(fd):
    """The uid owning the user namespace of netns fd; Refused if fd is not a
    network namespace."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        raise Refused("the fd passed is not open") from e
    if st.st_dev != _nsfs_dev():
        raise Refused("the fd passed is not a network namespace")
    try:
        nstype = fcntl.ioctl(fd, NS_GET_NSTYPE)
    except OSError as e:
        raise Refused("the fd passed is not a network namespace") from e
    if nstype != CLONE_NEWNET:
        raise Refused("the fd passed is a namespace, but not a network namespace")
    try:
        userns = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError as e:
        raise Refused("the owner of the network namespace passed is out of reach") from e
    try:
        return _owner_uid(userns)
    finally:
        os.close(userns)


def check_netns(fd, peer):
    """Refused unless fd is a network namespace of peer's own: never the
    helper's (the host's), never one owned by another user."""
    owner = netns_owner(fd)
    st = os.fstat(fd)
    for host in ("/proc/self/ns/net", "/proc/1/ns/net"):
        try:
            own = os.stat(host)
        except OSError:
            continue
        if (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino):
            raise Refused("the fd passed is the host's network namespace")
    if owner != peer.uid:
        raise Refused("the network namespace passed is not owned by %s" % peer)


def check_pid(pid, fd, peer):
    """Refused unless process pid is in netns fd and is peer's: its user
    namespace is owned by peer's uid (a container's init), or it runs as
    peer's uid itself."""
    st = os.fstat(fd)
    try:
        here = os.stat("/proc/%d/ns/net" % pid)
    except OSError as e:
        raise Refused("process %d is gone or out of reach" % pid) from e
    if (here.st_dev, here.st_ino) != (st.st_dev, st.st_ino):
        raise Refused("process %d is not in the network namespace passed" % pid)
    if _userns_owner(pid) == peer.uid or _real_uid(pid) == peer.uid:
        return
    raise Refused("process %d is not %s's" % (pid, peer))


def _userns_owner(pid):
    try:
        fd = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _owner_uid(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def _real_uid(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None
