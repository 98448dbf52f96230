"""Paths inside an image's rootfs, seen from the host while it is built or imported.

The rootfs is not ours to trust: an archive or a base can put any symlink in it. resolve()
walks a path component by component as the kernel would inside the container, with the
rootfs as `/` (what openat2's RESOLVE_IN_ROOT does): absolute links restart at the rootfs and
`..` stops there. Nothing else writes the staging directory while we do, so the host path it
returns stays inside until we are done. Everything that then creates or removes something
there does so without following a link in the last component.
"""
import errno
import os

MAX_LINKS = 40      # the kernel's limit on symlinks followed in one lookup


def resolve(root, rel, follow_last=False):
    """The host path of `rel` inside `root`; the last component is followed only if asked.
    A chain of more than MAX_LINKS links (a link to itself) is OSError ELOOP."""
    todo = [c for c in rel.split("/") if c and c != "."]
    done = []
    hops = 0
    while todo:
        c = todo.pop(0)
        if c == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, c)
        if (todo or follow_last) and os.path.islink(here):
            hops += 1
            if hops > MAX_LINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo = [x for x in target.split("/") if x and x != "."] + todo
            continue
        done.append(c)
    return os.path.join(root, *done)


def remove(path):
    """Remove whatever is at path (a directory with its contents), never following links."""
    import shutil
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def create_file(path, mode=0o600):
    """A new regular file at path, opened for writing; never through a link, never over an
    existing file (remove() it first)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    return os.fdopen(fd, "wb")
