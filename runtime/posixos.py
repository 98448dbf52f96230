"""The parts of `os` that pyctr's start-up path uses, built on `posix` alone.

Importing os was the costliest import of a `pyctr run` (`-X importtime`
lists it): its environ is a MutableMapping, which builds all of
collections.abc. The modules a run, an exec, ps, rm or an engine's
create import take this one instead, as `from pyctr import posixos as
os`: the calls are posix's own functions (those os re-exports), the path
functions follow posixpath's rules for str paths. A name used there and
missing here fails tests/test_posixos.py, which reads those modules; a
rare path that needs more (realpath of a path that is not there) imports
os itself.
"""
import io as _io
import posix as _posix
import sys as _sys
from posix import *  # noqa: F401,F403 (os re-exports the same)
from posix import _exit  # noqa: F401 (not in the *)

# Only the names those modules use (one missing fails tests/test_posixos.py).
SEEK_CUR = 1
sep = "/"


def dup_high(fd, room):
    """pyctr's own, not os's: a close-on-exec copy of fd on the lowest free
    number at least `room` below the fd table's top (1024, or the soft
    RLIMIT_NOFILE where lower: a batch system's `ulimit -n 512`), as
    F_DUPFD_CLOEXEC gives it, without importing fcntl. An fd pyctr keeps
    open stays out of the way of those a user passes (--preserve-fds,
    PMI_FD). Call it while no other thread opens fds: the number is looked
    at, then taken."""
    top = min(sysconf("SC_OPEN_MAX"), 1024)
    for number in range(max(top - room, 3), top):
        try:
            fstat(number)
        except OSError:
            return dup2(fd, number, inheritable=False)
    return dup(fd)  # all taken: any number will do


def fsencode(name):
    return name if isinstance(name, bytes) else name.encode("utf-8", "surrogateescape")


def fsdecode(name):
    return name if isinstance(name, str) else name.decode("utf-8", "surrogateescape")


def fdopen(fd, *args, **kwargs):
    return _io.open(fd, *args, **kwargs)


class _Environ(dict):
    """os.environ's behaviour: str keys and values, changes passed on to
    the C environment (and to posix.environ, which a later `import os`
    copies)."""

    def __setitem__(self, key, value):
        _posix.putenv(key, value)
        _posix.environ[fsencode(key)] = fsencode(value)
        super().__setitem__(key, value)

    def __delitem__(self, key):
        _posix.unsetenv(key)
        _posix.environ.pop(fsencode(key), None)
        super().__delitem__(key)

    _absent = object()

    def pop(self, key, default=_absent):
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default is self._absent:
            raise KeyError(key)
        return default

    def setdefault(self, key, value=None):
        if key not in self:
            self[key] = value
        return self[key]

    def update(self, *args, **kwargs):
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def copy(self):
        return dict(self)


def _environ():
    if "os" in _sys.modules:  # imported already: one mapping, not two
        return _sys.modules["os"].environ
    return _Environ((fsdecode(k), fsdecode(v)) for k, v in _posix.environ.items())


environ = _environ()


def makedirs(name, mode=0o777, exist_ok=False):
    head = path.dirname(name.rstrip("/") or "/")
    if head and head != name and not path.exists(head):
        try:
            makedirs(head, mode, exist_ok=True)
        except FileExistsError:
            pass  # made meanwhile
    try:
        mkdir(name, mode)
    except OSError:
        if not exist_ok or not path.isdir(name):
            raise


def walk(top, topdown=True):
    """os.walk without onerror or followlinks: a directory that cannot be
    listed is skipped, symlinks to directories are listed, not entered."""
    try:
        entries = list(scandir(top))
    except OSError:
        return
    dirs, files, links = [], [], set()
    for entry in entries:
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        (dirs if is_dir else files).append(entry.name)
        if is_dir and entry.is_symlink():
            links.add(entry.name)
    if topdown:
        yield top, dirs, files
    for name in dirs:
        if name not in links:
            yield from walk(path.join(top, name), topdown)
    if not topdown:
        yield top, dirs, files


class path:
    """os.path's functions, for str paths."""

    @staticmethod
    def join(a, *rest):
        for b in rest:
            if b.startswith("/"):
                a = b
            elif not a or a.endswith("/"):
                a += b
            else:
                a += "/" + b
        return a

    @staticmethod
    def dirname(p):
        i = p.rfind("/") + 1
        head = p[:i]
        if head and head != "/" * len(head):
            head = head.rstrip("/")
        return head

    @staticmethod
    def basename(p):
        return p[p.rfind("/") + 1:]

    @staticmethod
    def isabs(p):
        return p.startswith("/")

    @staticmethod
    def normpath(p):
        if not p:
            return "."
        initial = 2 if p.startswith("//") and not p.startswith("///") else \
            1 if p.startswith("/") else 0
        parts = []
        for part in p.split("/"):
            if part in ("", "."):
                continue
            if part != ".." or (not initial and not parts) or (parts and parts[-1] == ".."):
                parts.append(part)
            elif parts:
                parts.pop()
        return "/" * initial + "/".join(parts) or "."

    @staticmethod
    def abspath(p):
        return path.normpath(p if p.startswith("/") else path.join(getcwd(), p))

    @staticmethod
    def relpath(p, start="."):
        p, start = path.abspath(p).split("/"), path.abspath(start).split("/")
        p, start = [x for x in p if x], [x for x in start if x]
        common = 0
        for a, b in zip(p, start):
            if a != b:
                break
            common += 1
        return "/".join([".."] * (len(start) - common) + p[common:]) or "."

    @staticmethod
    def realpath(p):
        """The kernel's name for what `p` resolves to (one open, one
        readlink); posixpath's answer where /proc or `p` is not there."""
        try:
            fd = _posix.open(p, _posix.O_PATH | _posix.O_CLOEXEC)
        except (OSError, ValueError):
            fd = -1
        if fd >= 0:
            try:
                resolved = readlink("/proc/self/fd/%d" % fd)
                if resolved.startswith("/") and not resolved.endswith(" (deleted)"):
                    return resolved
            except OSError:
                pass
            finally:
                close(fd)
        import os
        return os.path.realpath(p)

    @staticmethod
    def _stat(p, follow=True):
        try:
            return stat(p, follow_symlinks=follow)
        except (OSError, ValueError):
            return None

    @staticmethod
    def exists(p):
        return path._stat(p) is not None

    @staticmethod
    def lexists(p):
        return path._stat(p, False) is not None

    @staticmethod
    def isdir(p):
        st = path._stat(p)
        return st is not None and st.st_mode & 0o170000 == 0o040000

    @staticmethod
    def isfile(p):
        st = path._stat(p)
        return st is not None and st.st_mode & 0o170000 == 0o100000

    @staticmethod
    def islink(p):
        st = path._stat(p, False)
        return st is not None and st.st_mode & 0o170000 == 0o120000
