"""The store: one directory per image, put in place whole or not at all.

    <paths.images>/<name>/rootfs/          the files, owned as they are inside the container
    <paths.images>/<name>/image.json       the metadata `pyctr run` starts from
    <paths.images>/.tmp-<name>-<pid>-*/    a build or import in progress (Staging)
    <paths.images>/.old-<name>-<pid>-*/    a replaced image a container still runs on
    <paths.images>/.lock                   serialises the renames in and out of the store

Every build or import fills a staging directory beside the store and renames it into place
only when complete, so a failed or interrupted one leaves nothing and a rebuild swaps
atomically. An image a running container still uses is never deleted under it: remove()
refuses, and a rebuild parks the old copy as .old-* until it is free (gc()).

lookup() is on the start-up path of `pyctr run`: it reads one JSON file, and this module
imports nothing heavy at load time.
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import fileio
from pyctr.errors import PyctrError

DEFAULT_IMAGE = "busybox"
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


class Image:
    """One stored image, as the runtime sees it."""
    __slots__ = ("name", "path", "rootfs", "env", "cmd", "entrypoint", "workdir", "user",
                 "source", "created", "size", "description")

    def __init__(self, name, path, meta):
        self.name = name
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.env = list(meta.get("env") or [])
        self.cmd = list(meta.get("cmd") or [])
        self.entrypoint = list(meta.get("entrypoint") or [])
        self.workdir = meta.get("workdir") or "/"
        self.user = meta.get("user") or ""
        self.source = meta.get("source") or ""
        self.created = meta.get("created") or ""
        self.size = meta.get("size")
        self.description = meta.get("description") or ""

    def __repr__(self):
        return "Image(%r, %r)" % (self.name, self.rootfs)


def lookup(paths, name):
    """The image called `name`, or None. Cheap: one small JSON read."""
    name = canonical(name)
    if not valid_name(name):
        return None
    path = os.path.join(paths.images, name)
    try:
        raw = fileio.read(os.path.join(path, "image.json"))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise PyctrError("image %s: cannot read image.json" % name, e.errno or 0) from e
    from pyctr import jsonio  # not json: it imports re, slow for `run`
    try:
        meta = jsonio.loads(raw.decode("utf-8"))
    except ValueError as e:  # UnicodeDecodeError too
        raise PyctrError("image %s: malformed image.json (%s)" % (name, e)) from e
    return Image(name, path, meta)


def valid_name(name):
    return (isinstance(name, str) and 0 < len(name) <= 128 and name[0].isalnum()
            and name.isascii() and NAME_CHARS.issuperset(name))


def checked_name(name):
    """`name` in its canonical form, or one line saying why it cannot name an image."""
    name = canonical(name)
    if not valid_name(name):
        raise PyctrError("invalid image name %r (letters, digits, '_', '.', ':', '-')" % name)
    return name


def canonical(name):
    """`busybox:latest` is `busybox`, as in docker."""
    if isinstance(name, str) and name.endswith(":latest"):
        return name[:-len(":latest")]
    return name


def list_images(paths):
    """All stored images, sorted by name (half-written ones are hidden by design)."""
    try:
        names = sorted(n for n in os.listdir(paths.images) if not n.startswith("."))
    except FileNotFoundError:
        return []
    found = []
    for n in names:
        try:
            img = lookup(paths, n)
        except PyctrError:
            continue
        if img:
            found.append(img)
    return found


def os_errors(fn):
    """An OSError escaping build/import/rm (a full disk, a read-only store, no permission)
    becomes one clear line instead of a traceback."""
    def wrapper(*args, **kw):
        try:
            return fn(*args, **kw)
        except OSError as e:
            where = " %s" % e.filename if e.filename else ""
            raise PyctrError("image %s:%s" % (fn.__name__.replace("_", " "), where),
                             e.errno or 0) from e
    # functools.wraps by hand: importing functools (collections) costs `run` ~3 ms
    wrapper.__name__, wrapper.__qualname__ = fn.__name__, fn.__qualname__
    wrapper.__doc__, wrapper.__wrapped__ = fn.__doc__, fn
    return wrapper


@os_errors
def remove(paths, names):
    """Remove images; all must exist and be unused, or nothing is removed."""
    images = []
    for n in names:
        img = lookup(paths, n)
        if img is None:
            raise PyctrError("no such image: %s" % n)
        images.append(img)
    for img in images:
        users = _users(img.rootfs)
        if users:
            raise PyctrError("image %s is in use by process %s; stop its containers first"
                             % (img.name, users[0]))
    for img in images:
        with _store_lock(paths.images):
            parked = _park(paths.images, img.name)
        remove_tree(parked)


def gc(paths):
    """Remove what an interrupted build or a rebuild left beside the store: build dirs of
    processes that are gone, and replaced images no container uses any more."""
    return _collect(paths.images)


def _collect(store):
    try:
        names = os.listdir(store)
    except FileNotFoundError:
        return []
    removed = []
    for n in names:
        if not n.startswith((".tmp-", ".old-")):
            continue
        try:
            prefix, pid, _ = n.rsplit("-", 2)
            pid = int(pid)
        except ValueError:
            continue
        if n.startswith(".tmp-") and (pid == os.getpid() or os.path.exists("/proc/%d" % pid)):
            continue                    # a build in progress
        path = os.path.join(store, n)
        if _users(os.path.join(path, "rootfs"), os.path.join(store, prefix[5:], "rootfs")):
            continue
        try:
            remove_tree(path)
            removed.append(path)
        except (OSError, PyctrError):
            pass
    return removed


class Staging:
    """A build directory beside the store; commit() moves it into place, anything else
    (an error, Ctrl-C, SIGTERM) removes it."""

    def __init__(self, paths, name):
        self.store = paths.images
        self.name = name
        self.dir = None

    def __enter__(self):
        import tempfile
        os.makedirs(self.store, 0o755, exist_ok=True)
        _collect(self.store)
        self.old_umask = os.umask(0o022)
        self.dir = tempfile.mkdtemp(prefix=".tmp-%s-%d-" % (self.name, os.getpid()), dir=self.store)
        # mkdtemp makes it 0700; the image must be traversable by mapped (userns) root.
        os.chmod(self.dir, 0o755)
        self.rootfs = os.path.join(self.dir, "rootfs")
        os.mkdir(self.rootfs, 0o755)
        return self

    def commit(self, meta):
        import json
        import time
        meta = dict(meta)
        meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta["size"] = _tree_size(self.rootfs)
        with open(os.path.join(self.dir, "image.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        final = os.path.join(self.store, self.name)
        # Decided before the swap: afterwards the store path names the new image.
        in_use = bool(_users(os.path.join(final, "rootfs")))
        with _store_lock(self.store):
            if os.path.lexists(final):
                if _exchange(self.dir, final):
                    old = self.dir         # the staging path now holds the previous image
                else:
                    old = _park(self.store, self.name)
                    os.rename(self.dir, final)
            else:
                os.rename(self.dir, final)
                old = None
        self.dir = None
        if old:
            _retire(self.store, self.name, old, in_use)

    def __exit__(self, exc_type, exc, tb):
        os.umask(self.old_umask)
        if self.dir:
            remove_tree(self.dir)
        return False


def _store_lock(store):
    """Serialises the renames that put images in and out of the store."""
    import contextlib
    import fcntl

    @contextlib.contextmanager
    def held():
        fd = os.open(os.path.join(store, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
    return held()


def _park(store, name):
    """Rename an image out of the way (it vanishes from the store at once); returns the path."""
    import tempfile
    parked = tempfile.mkdtemp(prefix=".old-%s-%d-" % (name, os.getpid()), dir=store)
    os.rename(os.path.join(store, name), parked)   # replaces the empty placeholder
    return parked


def _retire(store, name, old, in_use):
    """Delete a replaced image, or keep it parked while a container still runs on it
    (gc() removes it once none does)."""
    if in_use:
        if os.path.basename(old).startswith(".tmp-"):
            import tempfile
            parked = tempfile.mkdtemp(prefix=".old-%s-%d-" % (name, os.getpid()), dir=store)
            os.rename(old, parked)
        return
    remove_tree(old)


def _exchange(a, b):
    """Swap two paths atomically (renameat2 RENAME_EXCHANGE); False if unsupported."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    return False


def remove_tree(path):
    """rm -rf that never descends into something mounted below `path` (a debootstrap killed
    mid-way could leave /proc or /dev bind mounts there): those are detached first."""
    import shutil
    mounts = _mounts_under(path)
    if mounts:
        from pyctr.syscalls import MNT_DETACH, Syscalls
        syscall = Syscalls()
        for m in sorted(mounts, key=len, reverse=True):
            try:
                syscall.umount(m, MNT_DETACH)
            except OSError:
                pass
        if _mounts_under(path):
            raise PyctrError("cannot remove %s: something is still mounted inside" % path)
    if os.path.lexists(path):
        shutil.rmtree(path)


def _mounts_under(path):
    path = os.path.realpath(path)
    found = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError:
        return found
    for line in lines:
        fields = line.split(" ")
        if len(fields) > 4:
            point = _unescape_mount(fields[4])
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return found


def _unescape_mount(s):
    if "\\" not in s:
        return s
    import re
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def _users(rootfs, named=None):
    """PIDs of processes whose root directory is `rootfs` (a bind-mounted root), or whose
    mount namespace has an overlay with it as lowerdir (how `pyctr run` uses an image):
    containers still running on this image. An overlay shows the lowerdir path it was given,
    so a parked (renamed) image is also looked for under `named`, its path in the store."""
    try:
        st = os.stat(rootfs)
        key = (st.st_dev, st.st_ino)
    except OSError:
        key = None
    wanted = set()
    for p in (rootfs, named):
        if p:
            wanted.update((p.rstrip("/"), os.path.realpath(p)))
    users, seen_ns = [], set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            s = os.stat("/proc/%s/root" % pid)
            if key and (s.st_dev, s.st_ino) == key:
                users.append(int(pid))
                continue
            ns = os.readlink("/proc/%s/ns/mnt" % pid)
            if ns in seen_ns:
                continue
            seen_ns.add(ns)
            with open("/proc/%s/mountinfo" % pid, encoding="utf-8", errors="surrogateescape") as f:
                for line in f:
                    if " - overlay " in line and _lowerdirs(line) & wanted:
                        users.append(int(pid))
                        break
        except OSError:
            continue
    return users


def _lowerdirs(line):
    """The lowerdir paths of an overlay line of mountinfo."""
    opts = line.rstrip("\n").rsplit(" ", 1)[-1]
    for opt in opts.split(","):
        if opt.startswith("lowerdir="):
            return {_unescape_mount(d).rstrip("/") for d in opt[len("lowerdir="):].split(":")}
    return set()


def _tree_size(top):
    """Bytes of files and links under top, each hard-linked inode once."""
    total, seen, stack = 0, set(), [top]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif st.st_nlink > 1:
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        total += st.st_size
                else:
                    total += st.st_size
    return total


def interruptible():
    """SIGTERM/SIGHUP during a build raise KeyboardInterrupt like Ctrl-C does, so the
    staging directory is cleaned up on the way out instead of being left behind."""
    import contextlib
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def scope():
        saved = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                saved[sig] = signal.signal(sig, interrupt)
        except ValueError:      # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
    return scope()
