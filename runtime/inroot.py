"""Paths inside a container's root, as pyctr sees them from outside it.

A destination is checked once, when the Spec is built: absolute, not the
root itself, no ".." (which could only mean a way out). Files pyctr reads
from an image (/etc/passwd for -u NAME) are opened inside the root through
the shim, like every mount target (see rootfs.py), so a symlink in the
image can never make pyctr read or write a host file instead.
"""
import stat

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError

READ_LIMIT = 4 << 20  # /etc/passwd and /etc/group: far smaller in any image


def destination(path, what):
    """`path` as a clean absolute path inside the root ("//a/./b/" -> "/a/b"),
    or one PyctrError line naming `what` ("volume 'SRC:DST'")."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise PyctrError("%s: the destination must be an absolute path" % what)
    if "\0" in path:
        raise PyctrError("%s: the destination contains a NUL byte" % what)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise PyctrError("%s: '..' is not allowed in a destination inside the container"
                         % what)
    if not parts:
        raise PyctrError("%s: the destination cannot be the container's root /" % what)
    return "/" + "/".join(parts)


def check_mounts(mounts, what="mounts"):
    """Every mount destination checked and cleaned, in place."""
    for number, m in enumerate(mounts):
        m.destination = destination(m.destination, "%s[%d] (%s)" % (what, number,
                                                                   m.destination))


def check_mount_namespace(spec):
    """pyctr builds the container's root and pivots into it: that needs a
    new mount namespace. Without one, or joining an existing one (the
    host's /proc/1/ns/mnt), it would do so in someone else's."""
    ns = spec.namespace("mount")
    if ns is None or ns.path:
        raise PyctrError("linux.namespaces: the container needs a new mount namespace of "
                         "its own (a mount entry without a path)")


def read_text(root, path):
    """The text of regular file `path` resolved inside `root` ("" if there
    is none). Never opens a FIFO or a device node an image may hold."""
    from pyctr.syscalls import Syscalls
    try:
        fd = Syscalls().open_in_root(root, path)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        # Re-open the very inode just resolved, now for reading.
        with open("/proc/self/fd/%d" % fd, "rb") as f:
            raw = f.read(READ_LIMIT)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return raw.decode("utf-8", errors="replace")
