"""The image store: named root filesystems that `pyctr run IMAGE` starts from.

    <paths.images>/<name>/rootfs/        the files, owned as they are inside the container
    <paths.images>/<name>/image.json     {"name", "created", "source", "env", "cmd",
                                          "entrypoint", "workdir", "user", "size", ...}

Images come from a recipe (`pyctr image build NAME|FILE.toml`, recipes in images/*.toml; the
format is documented at the top of images/busybox.toml) or from an archive (`pyctr image import
FILE.tar`: a plain rootfs tarball, a `docker save` archive or an OCI image layout).

Every build or import happens in a hidden directory beside the store (.tmp-<name>-<pid>-*) and
is renamed into place only when complete, so a failed or interrupted one leaves nothing and a
rebuild swaps atomically. An image that a running container still uses is never deleted under
it: `rm` refuses, and a rebuild parks the old copy as .old-* until it is free (gc()).

The runtime only needs lookup(), which reads one JSON file: this module imports nothing heavy
at load time (tarfile, toml, subprocess... are imported by the functions that use them).
"""
import os

from pyctr.errors import PyctrError

DEFAULT_IMAGE = "busybox"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-")


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


# --------------------------------------------------------------------------- public API

def _os_errors(fn):
    """An OSError escaping build/import/rm (a full disk, a read-only store, no permission)
    becomes one clear line instead of a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kw):
        try:
            return fn(*args, **kw)
        except OSError as e:
            where = " %s" % e.filename if e.filename else ""
            raise PyctrError("image %s:%s" % (fn.__name__.replace("_", " "), where),
                             e.errno or 0)
    return wrapper


def lookup(paths, name):
    """The image called `name`, or None. Cheap: one small JSON read."""
    name = _canonical(name)
    if not valid_name(name):
        return None
    path = os.path.join(paths.images, name)
    try:
        with open(os.path.join(path, "image.json"), encoding="utf-8") as f:
            text = f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        raise PyctrError("image %s: cannot read image.json" % name, e.errno or 0)
    from pyctr import jsonio  # not json: it imports re, slow for `run`
    try:
        meta = jsonio.loads(text)
    except ValueError as e:
        raise PyctrError("image %s: malformed image.json (%s)" % (name, e))
    return Image(name, path, meta)


def ensure_default(paths):
    """The default image, built first if the store does not have it yet."""
    return lookup(paths, DEFAULT_IMAGE) or build(paths, DEFAULT_IMAGE)


def valid_name(name):
    return (isinstance(name, str) and 0 < len(name) <= 128 and name[0].isalnum()
            and name.isascii() and _NAME_CHARS.issuperset(name))


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


@_os_errors
def build(paths, ref, name=None):
    """Build the image a recipe describes; `ref` is a recipe name or a .toml file."""
    from pyctr.progress import Progress

    recipe_path = find_recipe(ref)
    recipe = load_recipe(recipe_path)
    name = _canonical(name or recipe["name"])
    if not valid_name(name):
        raise PyctrError("invalid image name %r (letters, digits, '_', '.', ':', '-')" % name)
    with _interruptible(), Progress("building image %s" % name) as p:
        with _Staging(paths, name) as st:
            source = _make_base(recipe["base"], st.rootfs, p)
            if "applets" in recipe:
                _add_applets(recipe["applets"], st.rootfs, p)
            if recipe.get("dirs") or recipe.get("symlinks") or recipe.get("file"):
                p.step("writing directories, links and files")
                _add_dirs(recipe.get("dirs", {}), st.rootfs)
                _add_symlinks(recipe.get("symlinks", {}), st.rootfs)
                _add_files(recipe.get("file", []), st.rootfs)
            config = recipe.get("config", {})
            p.step("saving image")
            st.commit({
                "name": name,
                "description": recipe.get("description", ""),
                "source": source,
                "recipe": recipe_path,
                "env": config.get("env", []),
                "cmd": config.get("cmd", []),
                "entrypoint": config.get("entrypoint", []),
                "workdir": config.get("workdir", "/"),
                "user": config.get("user", ""),
            })
    return lookup(paths, name)


@_os_errors
def import_archive(paths, archive, name=None):
    """Import a plain rootfs tarball, a `docker save` archive or an OCI layout tarball."""
    import tarfile
    from pyctr.progress import Progress

    if name is not None:
        name = _canonical(name)
        if not valid_name(name):
            raise PyctrError("invalid image name %r (letters, digits, '_', '.', ':', '-')" % name)
    if not os.path.isfile(archive):
        raise PyctrError("%s: no such file" % archive)
    try:
        outer = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, OSError):
        raise PyctrError("%s is not a tar archive (plain, gzip, bzip2 or xz)" % archive)
    with outer, _interruptible():
        label = os.path.basename(archive)
        with Progress("importing %s" % label) as p:
            p.step("reading the archive")
            members = _members(outer, label)
            try:
                kind, layers, config, ref = _detect_format(outer, members, label)
                cfg = (config.get("config") or {}) if config is not None else {}
                meta = {"env": _strs(cfg.get("Env")), "cmd": _strs(cfg.get("Cmd")),
                        "entrypoint": _strs(cfg.get("Entrypoint")),
                        "workdir": cfg.get("WorkingDir") or "/", "user": cfg.get("User") or ""}
                if not (isinstance(meta["workdir"], str) and isinstance(meta["user"], str)):
                    raise TypeError("WorkingDir/User")
            except (AttributeError, TypeError, KeyError, IndexError) as e:
                # JSON of the wrong shape somewhere in manifest/index/config
                raise PyctrError("%s: malformed image metadata (%s)" % (label, _first_line(e)))
            name = name or _name_from(ref if isinstance(ref, str) else None, archive)
            with _Staging(paths, name) as st:
                for i, (what, opener) in enumerate(layers, 1):
                    if kind != "tar":
                        p.step("layer %d/%d %s" % (i, len(layers), what))
                    else:
                        p.step("extracting")
                    with opener() as layer:
                        _apply_layer(st.rootfs, layer, "%s %s" % (label, what), layered=kind != "tar")
                p.step("saving image")
                meta.update(name=name, source="%s %s" % (kind, os.path.abspath(archive))
                            + (" (%s)" % ref if ref else ""))
                st.commit(meta)
    return lookup(paths, name)


@_os_errors
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
        _remove_tree(parked)


def gc(paths):
    """Remove what an interrupted build or a rebuild left beside the store: build dirs of
    processes that are gone, and replaced images no container uses any more."""
    store = paths.images
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
            _remove_tree(path)
            removed.append(path)
        except (OSError, PyctrError):
            pass
    return removed


# --------------------------------------------------------------------------- CLI

_USAGE = """usage: pyctr image SUBCOMMAND [ARGS...]

subcommands:
  build [--name NAME] RECIPE|FILE.toml   build an image from a recipe (%s)
  import [--name NAME] FILE.tar          import a rootfs tarball, docker-save archive or OCI layout
  ls [-q]                                list images
  inspect NAME                           print an image's image.json
  rm NAME...                             remove images"""


def command(paths, argv):
    """`pyctr image ...`"""
    from pyctr.cli import arg_parser

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_USAGE % (", ".join(recipe_names()) or "none found"))
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "build":
        ap = arg_parser("image build", "Build an image from a recipe: a name from %s or a "
                        ".toml file." % " or ".join(recipe_dirs()))
        ap.add_argument("--name", help="image name (default: the recipe's)")
        ap.add_argument("recipe", metavar="RECIPE|FILE.toml")
        a = ap.parse_args(rest)
        img = build(paths, a.recipe, a.name)
        print(img.name)
    elif sub == "import":
        ap = arg_parser("image import", "Import a plain rootfs tarball, a `docker save` "
                        "archive or an OCI image layout tarball (compressed or not).")
        ap.add_argument("--name", help="image name (default: the archive's tag or file name)")
        ap.add_argument("archive", metavar="FILE.tar")
        a = ap.parse_args(rest)
        img = import_archive(paths, a.archive, a.name)
        print(img.name)
    elif sub in ("ls", "list"):
        ap = arg_parser("image ls", "List stored images.")
        ap.add_argument("-q", "--quiet", action="store_true", help="names only")
        a = ap.parse_args(rest)
        _print_table(list_images(paths), a.quiet)
    elif sub == "inspect":
        ap = arg_parser("image inspect", "Print an image's metadata as JSON.")
        ap.add_argument("name")
        a = ap.parse_args(rest)
        img = lookup(paths, a.name)
        if img is None:
            raise PyctrError("no such image: %s" % a.name)
        import json
        with open(os.path.join(img.path, "image.json"), encoding="utf-8") as f:
            meta = json.load(f)
        meta["rootfs"] = img.rootfs
        print(json.dumps(meta, indent=2))
    elif sub in ("rm", "remove"):
        ap = arg_parser("image rm", "Remove images.")
        ap.add_argument("names", nargs="+", metavar="NAME")
        a = ap.parse_args(rest)
        remove(paths, a.names)
    else:
        raise PyctrError("image: unknown subcommand %r (build, import, ls, inspect, rm)" % sub)
    return 0


def _print_table(images, quiet):
    if quiet:
        for img in images:
            print(img.name)
        return
    rows = [("NAME", "SIZE", "CREATED", "SOURCE")]
    for img in images:
        rows.append((img.name, _human_size(img.size), _ago(img.created), img.source))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("%-*s  %-*s  %-*s  %s" % (widths[0], r[0], widths[1], r[1], widths[2], r[2], r[3]))


def _human_size(n):
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1000.0


def _ago(created):
    import calendar
    import time
    try:
        then = calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return "?"
    s = max(0, int(time.time() - then))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if s >= size:
            n = s // size
            return "%d %s%s ago" % (n, unit, "s" if n > 1 else "")
    return "just now"


# --------------------------------------------------------------------------- the store

class _Staging:
    """A build directory beside the store; commit() moves it into place, anything else
    (an error, Ctrl-C, SIGTERM) removes it."""

    def __init__(self, paths, name):
        self.store = paths.images
        self.name = name
        self.dir = None

    def __enter__(self):
        import tempfile
        os.makedirs(self.store, 0o755, exist_ok=True)
        gc(_PathsShim(self.store))
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
            _remove_tree(self.dir)
        return False


class _PathsShim:
    __slots__ = ("images",)

    def __init__(self, images):
        self.images = images


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
    _remove_tree(old)


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


def _remove_tree(path):
    """rm -rf that never descends into something mounted below `path` (a debootstrap killed
    mid-way could leave /proc or /dev bind mounts there): those are detached first."""
    import shutil
    mounts = _mounts_under(path)
    if mounts:
        from pyctr.syscalls import MNT_DETACH, Syscalls
        sc = Syscalls()
        for m in sorted(mounts, key=len, reverse=True):
            try:
                sc.umount(m, MNT_DETACH)
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


def _interruptible():
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


def _canonical(name):
    """`busybox:latest` is `busybox`, as in docker."""
    if isinstance(name, str) and name.endswith(":latest"):
        return name[:-len(":latest")]
    return name


# --------------------------------------------------------------------------- paths in a rootfs

def _resolve(root, rel, follow_last=False):
    """The host path of `rel` inside `root`, resolving symlinks as if `root` were `/`:
    absolute links restart at root, `..` stops at root. Nothing in a rootfs (or a hostile
    archive) can make this point outside it. The last component is followed only if asked."""
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
            if hops > 40:
                raise PyctrError("%s: too many levels of symbolic links" % rel)
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            todo = [x for x in target.split("/") if x and x != "."] + todo
            continue
        done.append(c)
    return os.path.join(root, *done)


def _remove(path):
    """Remove whatever is at path (a directory with its contents), never following links."""
    import shutil
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _write_file(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        os.fchmod(f.fileno(), mode)


# --------------------------------------------------------------------------- recipes

def recipe_dirs():
    """Where recipe names are looked up: $PYCTR_RECIPES (colon-separated), the recipes
    shipped as package data (pyctr/recipes/ in an installed copy), and images/ beside the
    package in a source checkout or editable install."""
    here = os.path.dirname(os.path.abspath(__file__))
    dirs = [d for d in os.environ.get("PYCTR_RECIPES", "").split(":") if d]
    dirs += [os.path.join(here, "recipes"), os.path.join(os.path.dirname(here), "images")]
    return [d for d in dirs if os.path.isdir(d)]


def recipe_names():
    names = set()
    for d in recipe_dirs():
        names.update(f[:-5] for f in os.listdir(d) if f.endswith(".toml"))
    return sorted(names)


def find_recipe(ref):
    if ref.endswith(".toml") or "/" in ref:
        if not os.path.isfile(ref):
            raise PyctrError("%s: no such recipe file" % ref)
        return os.path.abspath(ref)
    if valid_name(ref):
        for d in recipe_dirs():
            path = os.path.join(d, ref + ".toml")
            if os.path.isfile(path):
                return path
    raise PyctrError("unknown image recipe %r (known: %s; or give a FILE.toml)"
                     % (ref, ", ".join(recipe_names()) or "none"))


def _load_toml(path):
    try:
        import tomllib          # Python >= 3.11: the standard parser
        try:
            with open(path, "rb") as f:
                return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise PyctrError("%s: %s" % (path, e))
    except ImportError:
        import toml
        try:
            with open(path, encoding="utf-8") as f:
                return toml.load(f)
        except toml.TomlDecodeError as e:
            raise PyctrError("%s: line %d: %s" % (path, e.lineno, e.msg))
    except OSError as e:
        raise PyctrError("%s: cannot read" % path, e.errno or 0)


# key -> type, per table. "strs" is a list of strings, "files" a list of tables.
_RECIPE_KEYS = {
    "": {"name": str, "description": str, "base": dict, "applets": dict, "dirs": dict,
         "symlinks": dict, "file": "tables", "config": dict},
    "applets": {"binary": str, "skip": "strs"},
    "file": {"path": str, "content": str, "mode": int},
    "config": {"env": "strs", "cmd": "strs", "entrypoint": "strs", "workdir": str, "user": str},
}
_BASE_KEYS = {
    "empty": {},
    "deb": {"packages": "strs", "exclude": "strs"},
    "host": {"files": "tables", "exclude": "strs"},
    "debootstrap": {"suite": str, "variant": str, "packages": "strs", "mirror": str,
                    "exclude": "strs"},
}
_HOST_FILE_KEYS = {"path": str, "from": "strs", "static": bool}


def _check_table(table, keys, where, path):
    for k, v in table.items():
        if k not in keys:
            raise PyctrError("%s: %sunknown key %r (expected one of: %s)"
                             % (path, where, k, ", ".join(sorted(keys))))
        want = keys[k]
        if want == "strs":
            ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
            desc = "a list of strings"
        elif want == "tables":
            ok = isinstance(v, list) and all(isinstance(x, dict) for x in v)
            desc = "a list of tables"
        else:
            ok = isinstance(v, want) and not (want is int and isinstance(v, bool))
            desc = {str: "a string", int: "an integer", bool: "true or false",
                    dict: "a table"}[want]
        if not ok:
            raise PyctrError("%s: %s%s must be %s" % (path, where, k, desc))


def load_recipe(path):
    """Parse and check a recipe; every mistake is one line naming the file."""
    r = _load_toml(path)
    _check_table(r, _RECIPE_KEYS[""], "", path)
    for k in ("name", "base"):
        if k not in r:
            raise PyctrError("%s: missing %r" % (path, k))
    if not valid_name(r["name"]):
        raise PyctrError("%s: invalid image name %r" % (path, r["name"]))
    base, where = r["base"], "[base] "
    while base is not None:
        kind = base.get("kind")
        if kind not in _BASE_KEYS:
            raise PyctrError("%s: %skind must be one of: %s" % (path, where, ", ".join(_BASE_KEYS)))
        keys = dict(_BASE_KEYS[kind], kind=str, fallback=dict)
        _check_table(base, keys, where, path)
        if kind == "host":
            for f in base.get("files", []):
                _check_table(f, _HOST_FILE_KEYS, where + "files: ", path)
                if "path" not in f or not f.get("from"):
                    raise PyctrError("%s: %sfiles: each needs path and from" % (path, where))
        if kind == "deb" and not base.get("packages"):
            raise PyctrError("%s: %spackages must name at least one package" % (path, where))
        for pkg in base.get("packages", []):
            if not pkg or pkg.startswith("-") or " " in pkg:
                raise PyctrError("%s: %sbad package name %r" % (path, where, pkg))
        base, where = base.get("fallback"), where.rstrip("] ") + ".fallback] "
    if "applets" in r:
        _check_table(r["applets"], _RECIPE_KEYS["applets"], "[applets] ", path)
        if "binary" not in r["applets"]:
            raise PyctrError("%s: [applets] missing 'binary'" % path)
    for p, mode in r.get("dirs", {}).items():
        if not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 0o7777:
            raise PyctrError("%s: [dirs] %s: mode must be an integer like 0o755" % (path, p))
    for p, target in r.get("symlinks", {}).items():
        if not isinstance(target, str) or not target:
            raise PyctrError("%s: [symlinks] %s: target must be a string" % (path, p))
    for f in r.get("file", []):
        _check_table(f, _RECIPE_KEYS["file"], "[[file]] ", path)
        if "path" not in f or "content" not in f:
            raise PyctrError("%s: [[file]] needs path and content" % path)
    if "config" in r:
        c = r["config"]
        _check_table(c, _RECIPE_KEYS["config"], "[config] ", path)
        for e in c.get("env", []):
            if "=" not in e or e.startswith("="):
                raise PyctrError("%s: [config] env entries are NAME=VALUE, not %r" % (path, e))
        if c.get("workdir", "/")[:1] != "/":
            raise PyctrError("%s: [config] workdir must be an absolute path" % path)
    for sect in ("dirs", "symlinks"):
        for p in r.get(sect, {}):
            _check_inside(p, path, "[%s]" % sect)
    for f in r.get("file", []):
        _check_inside(f["path"], path, "[[file]]")
    return r


def _check_inside(p, path, where):
    if not p.startswith("/") or ".." in p.split("/"):
        raise PyctrError("%s: %s %r must be an absolute path without '..'" % (path, where, p))


def _make_base(base, rootfs, p):
    """Fill rootfs from the [base] table, falling back as the recipe allows. Returns a
    one-line description of where the files came from."""
    kind = base["kind"]
    try:
        source = {"empty": lambda b, r, p: "empty", "deb": _base_deb, "host": _base_host,
                  "debootstrap": _base_debootstrap}[kind](base, rootfs, p)
    except PyctrError as e:
        fallback = base.get("fallback")
        if not fallback:
            raise
        p.step("%s; falling back to %s" % (e, fallback["kind"]))
        for n in os.listdir(rootfs):
            _remove(os.path.join(rootfs, n))
        return _make_base(fallback, rootfs, p)
    for ex in base.get("exclude", []):
        _remove(_resolve(rootfs, ex))
    return source


def _run(argv, what, **kw):
    import subprocess
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise PyctrError("%s: %s is not installed" % (what, argv[0]))
    if r.returncode != 0:
        raise PyctrError("%s failed: %s" % (what, _last_error(r.stderr) or "exit %d" % r.returncode))
    return r.stdout


def _last_error(text):
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("E:")]
    return (errors or lines or [""])[-1]


def _base_deb(base, rootfs, p):
    import glob
    import tempfile
    pkgs = base["packages"]
    with tempfile.TemporaryDirectory(prefix="pyctr-deb-") as dl:
        # apt's download method runs as _apt: let it write here, or apt complains.
        os.chmod(dl, 0o755)
        if os.geteuid() == 0:
            import pwd
            try:
                os.chown(dl, pwd.getpwnam("_apt").pw_uid, -1)
            except KeyError:
                pass
        p.step("downloading %s" % " ".join(pkgs))
        _run(["apt-get", "download", "-q"] + pkgs, "apt-get download %s" % " ".join(pkgs),
             cwd=dl)
        versions = []
        for deb in sorted(glob.glob(os.path.join(dl, "*.deb"))):
            fields = _run(["dpkg-deb", "--show", "--showformat=${Package} ${Version}", deb],
                          "dpkg-deb --show").strip()
            p.step("extracting %s" % fields)
            _run(["dpkg-deb", "-x", deb, rootfs], "dpkg-deb -x %s" % os.path.basename(deb))
            versions.append(fields)
    os.chmod(rootfs, 0o755)
    return "deb " + ", ".join(versions)


def _base_host(base, rootfs, p):
    import shutil
    used = []
    for f in base["files"]:
        chosen, why = None, []
        for cand in f["from"]:
            if not os.path.isfile(cand):
                why.append("%s: missing" % cand)
            elif f.get("static") and not is_static_elf(cand):
                why.append("%s: not a static executable" % cand)
            else:
                chosen = cand
                break
        if not chosen:
            raise PyctrError("no usable %s on this host (%s)" % (f["path"], "; ".join(why)))
        p.step("copying %s from the host" % chosen)
        dst = _resolve(rootfs, f["path"])
        os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
        _remove(dst)
        shutil.copy2(os.path.realpath(chosen), dst)
        used.append(chosen)
    return "host " + ", ".join(used)


def is_static_elf(path):
    """True if path is an ELF executable without a program interpreter (PT_INTERP): it
    runs without the host's dynamic loader and libc, so it can live alone in an image."""
    import struct
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if len(hdr) < 52 or hdr[:4] != b"\x7fELF" or hdr[4] not in (1, 2) or hdr[5] not in (1, 2):
                return False
            end = "<" if hdr[5] == 1 else ">"
            (e_type,) = struct.unpack(end + "H", hdr[16:18])
            if hdr[4] == 2:
                (phoff,) = struct.unpack(end + "Q", hdr[32:40])
                phentsize, phnum = struct.unpack(end + "HH", hdr[54:58])
            else:
                (phoff,) = struct.unpack(end + "I", hdr[28:32])
                phentsize, phnum = struct.unpack(end + "HH", hdr[42:46])
            if e_type not in (2, 3) or phnum == 0 or phentsize < 4:
                return False
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    PT_INTERP = 3
    for i in range(0, len(table) - 3, phentsize):
        if struct.unpack(end + "I", table[i:i + 4])[0] == PT_INTERP:
            return False
    return True


def _base_debootstrap(base, rootfs, p):
    import collections
    import shutil
    import subprocess
    import time
    suite = base.get("suite", "bookworm")
    variant = base.get("variant", "minbase")
    pkgs = base.get("packages", [])
    mirror = [base["mirror"]] if base.get("mirror") else []
    include = ["--include=" + ",".join(pkgs)] if pkgs else []
    tool = shutil.which("mmdebstrap") or shutil.which("debootstrap")
    if not tool:
        raise PyctrError("neither mmdebstrap nor debootstrap is installed (apt-get install mmdebstrap)")
    name = os.path.basename(tool)
    if name == "mmdebstrap":
        argv = [tool, "--mode=root", "--format=directory", "--variant=" + variant] + include
    else:
        argv = [tool, "--variant=" + variant] + include
    argv += [suite, rootfs] + mirror
    # Both tools mount /proc, /sys (and more) inside the target. In a private mount
    # namespace those mounts die with the process, even if it is killed half-way.
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "--mount", "--propagation", "private", "--"] + argv
    p.step("%s %s/%s%s (needs the network; minutes)"
           % (name, suite, variant, " +" + " ".join(pkgs) if pkgs else ""))
    tail = collections.deque(maxlen=30)
    last = 0.0
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    try:
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            tail.append(line)
            # Tool chatter in "I: what" lines; one a second is plenty for a progress line.
            if line.startswith("I:") and time.monotonic() - last >= 1.0:
                last = time.monotonic()
                p.step("%s: %s" % (name, line[2:].strip()[:100]))
        rc = proc.wait()
    except BaseException:
        proc.terminate()
        proc.wait()
        raise
    if rc != 0:
        raise PyctrError("%s %s failed (exit %d): %s" % (name, suite, rc, _last_error("\n".join(tail))))
    return "%s %s/%s%s" % (name, suite, variant, " + " + ", ".join(pkgs) if pkgs else "")


def _add_applets(applets, rootfs, p):
    binary = applets["binary"]
    host_bin = _resolve(rootfs, binary, follow_last=True)
    p.step("linking %s applets" % binary)
    listing = _run([host_bin, "--list-full"], "%s --list-full" % binary)
    skip = set(applets.get("skip", []))
    for line in listing.split():
        rel = "/" + line.strip("/")
        if rel in skip or ".." in rel.split("/"):
            continue
        dst = _resolve(rootfs, rel)
        if os.path.lexists(dst):
            continue            # a real file from the base wins over an applet
        os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
        # Relative, so the link is right both inside the container and seen from the host.
        os.symlink(os.path.relpath(host_bin, os.path.dirname(dst)), dst)


def _add_dirs(dirs, rootfs):
    for path, mode in dirs.items():
        dst = _resolve(rootfs, path, follow_last=True)
        if os.path.lexists(dst) and not os.path.isdir(dst):
            raise PyctrError("recipe: %s exists and is not a directory" % path)
        os.makedirs(dst, 0o755, exist_ok=True)
        os.chmod(dst, mode)


def _add_symlinks(links, rootfs):
    for path, target in links.items():
        dst = _resolve(rootfs, path)
        if os.path.isdir(dst) and not os.path.islink(dst):
            raise PyctrError("recipe: %s is a directory, not replacing it with a link" % path)
        os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
        _remove(dst)
        os.symlink(target, dst)


def _add_files(files, rootfs):
    for f in files:
        dst = _resolve(rootfs, f["path"])
        if os.path.isdir(dst) and not os.path.islink(dst):
            raise PyctrError("recipe: %s is a directory" % f["path"])
        os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
        _remove(dst)
        _write_file(dst, f["content"].encode("utf-8"), f.get("mode", 0o644))


# --------------------------------------------------------------------------- archives

_INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
                "application/vnd.docker.distribution.manifest.list.v2+json")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
         "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
         "riscv64": "riscv64"}


def _members(tf, label):
    import tarfile
    import zlib
    try:
        return tf.getmembers()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise PyctrError("%s: corrupt tar archive (%s)" % (label, _first_line(e)))


def _strs(v):
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise TypeError("expected a list of strings, got %r" % (v,))
    return v


def _first_line(e):
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _norm(name):
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _detect_format(outer, members, label):
    """-> (kind, [(label, opener)], config dict or None, reference name or None)"""
    import contextlib
    byname = {_norm(m.name): m for m in members}
    if "oci-layout" in byname and "index.json" in byname:
        return _oci_layers(outer, byname, label)
    if "manifest.json" in byname:
        manifest = _read_json(outer, byname, "manifest.json", label)
        if isinstance(manifest, list) and manifest and isinstance(manifest[0], dict) \
                and "Layers" in manifest[0]:
            return _docker_layers(outer, byname, manifest, label)
    return "tar", [("rootfs", lambda: contextlib.nullcontext(outer))], None, None


def _member_file(outer, byname, name, label):
    m = byname.get(_norm(name))
    f = outer.extractfile(m) if m is not None else None
    if f is None:
        raise PyctrError("%s: archive lacks %s" % (label, name))
    return f


def _read_json(outer, byname, name, label, digest=None):
    import json
    data = _member_file(outer, byname, name, label).read()
    if digest:
        _check_digest(data, digest, label)
    try:
        return json.loads(data)
    except ValueError as e:
        raise PyctrError("%s: malformed %s (%s)" % (label, name, e))


def _blob_name(digest, label):
    alg, _, hexd = str(digest).partition(":")
    if alg not in ("sha256", "sha512") or not hexd or not all(c in "0123456789abcdef" for c in hexd):
        raise PyctrError("%s: bad digest %r" % (label, digest))
    return "blobs/%s/%s" % (alg, hexd)


def _check_digest(data_or_file, digest, label):
    import hashlib
    alg, _, want = digest.partition(":")
    h = hashlib.new(alg)
    if isinstance(data_or_file, bytes):
        h.update(data_or_file)
    else:
        for chunk in iter(lambda: data_or_file.read(1 << 20), b""):
            h.update(chunk)
    if h.hexdigest() != want:
        raise PyctrError("%s: blob %s is corrupt (digest mismatch)" % (label, digest))


def _layer_opener(outer, byname, name, label, digest=None, media_type=""):
    import tarfile
    import zlib

    def open_layer():
        if media_type.endswith("+zstd"):
            raise PyctrError("%s: zstd-compressed layers are not supported" % label)
        if digest:
            _check_digest(_member_file(outer, byname, name, label), digest, label)
        try:
            return tarfile.open(fileobj=_member_file(outer, byname, name, label), mode="r:*")
        except (tarfile.TarError, EOFError, zlib.error, OSError):
            raise PyctrError("%s: layer %s is not a tar archive (plain, gzip, bzip2 or xz)" % (label, name))
    return open_layer


def _docker_layers(outer, byname, manifest, label):
    entry = manifest[0]
    config = _read_json(outer, byname, entry.get("Config", ""), label) if entry.get("Config") else None
    layers = [(name, _layer_opener(outer, byname, name, label)) for name in _strs(entry["Layers"])]
    tags = entry.get("RepoTags") or []
    return "docker-save", layers, config, tags[0] if tags else None


def _oci_layers(outer, byname, label):
    index = _read_json(outer, byname, "index.json", label)
    arch = _ARCH.get(os.uname().machine, os.uname().machine)
    ref = None
    for _ in range(4):          # an index may point at an index (multi-platform), not deeper
        descs = index.get("manifests") if isinstance(index, dict) else None
        if not descs:
            raise PyctrError("%s: index.json lists no images" % label)
        fits = [d for d in descs if _platform_ok(d.get("platform"), arch)]
        if not fits:
            raise PyctrError("%s: no image for linux/%s in this archive" % (label, arch))
        desc = fits[0]
        ann = desc.get("annotations") or {}
        ref = ref or ann.get("io.containerd.image.name") or ann.get("org.opencontainers.image.ref.name")
        digest = desc.get("digest")
        doc = _read_json(outer, byname, _blob_name(digest, label), label, digest)
        if desc.get("mediaType") in _INDEX_TYPES or "manifests" in doc:
            index = doc
            continue
        cdesc = doc.get("config") or {}
        config = _read_json(outer, byname, _blob_name(cdesc.get("digest"), label), label,
                            cdesc.get("digest"))
        layers = []
        for i, l in enumerate(doc.get("layers") or []):
            d = l.get("digest")
            layers.append(("%s" % str(d)[:19], _layer_opener(
                outer, byname, _blob_name(d, label), label, d, l.get("mediaType", ""))))
        return "oci", layers, config, ref
    raise PyctrError("%s: image indexes nested too deeply" % label)


def _platform_ok(plat, arch):
    if not plat:
        return True
    return plat.get("os", "linux") == "linux" and plat.get("architecture", arch) == arch


def _name_from(ref, archive):
    """Image name from a reference like docker.io/library/alpine:3.19 (-> alpine:3.19),
    else from the file name. `latest` is dropped as docker does."""
    # A bare "latest" or "1.0" (OCI ref.name is often just the tag) says nothing of the name.
    if ref and ("/" in ref or ":" in ref) and not ref.startswith("sha256:"):
        name = _canonical(ref.split("@")[0].rsplit("/", 1)[-1])
        if valid_name(name):
            return name
    base = os.path.basename(archive)
    for ext in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".txz", ".tar"):
        if base.endswith(ext):
            base = base[:-len(ext)]
            break
    name = "".join(c if c in _NAME_CHARS else "-" for c in base).lstrip("-_.:")
    if not valid_name(name):
        raise PyctrError("cannot derive an image name from %s; give --name" % archive)
    return name


def _member_rel(name, label):
    """A member's path relative to the rootfs; `..` anywhere is refused (a tar that
    climbs out of its root is broken or hostile)."""
    parts = []
    for c in name.split("/"):
        if c in ("", "."):
            continue
        if c == "..":
            raise PyctrError("%s: member %r points outside the image" % (label, name))
        parts.append(c)
    return "/".join(parts)


def _apply_layer(root, tf, label, layered):
    """Extract one layer onto root. Whiteouts (layered formats) apply to the layers below
    only, so they all run before this layer's files are written (OCI image spec)."""
    entries, whiteouts = [], []
    for m in _members(tf, label):
        rel = _member_rel(m.name, label)
        base = rel.rpartition("/")[2]
        if base.startswith(".wh."):
            if layered:
                whiteouts.append(rel)
            continue
        if m.islnk():
            _member_rel(m.linkname, label)
        entries.append((rel, m))
    for rel in whiteouts:
        parent_rel, _, base = rel.rpartition("/")
        parent = _resolve(root, parent_rel, follow_last=True)
        if base == ".wh..wh..opq":          # opaque: hide everything below from lower layers
            if os.path.isdir(parent) and not os.path.islink(parent):
                for child in os.listdir(parent):
                    _remove(os.path.join(parent, child))
        elif not base.startswith(".wh..wh."):   # .wh..wh.* others are aufs bookkeeping
            _remove(os.path.join(parent, base[len(".wh."):]))
    import tarfile
    import zlib
    dirs, skipped = [], 0
    for rel, m in entries:
        try:
            skipped += _extract(root, rel, m, tf, dirs, label)
        except OSError as e:
            raise PyctrError("%s: cannot extract %s" % (label, m.name), e.errno or 0)
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise PyctrError("%s: corrupt tar archive at %s (%s)" % (label, m.name, _first_line(e)))
    # Directory times last: creating their contents changed them.
    for path, mtime in reversed(dirs):
        try:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        except OSError:
            pass
    return skipped


def _extract(root, rel, m, tf, dirs, label):
    """Create one member at rel (resolved inside root), with owner, mode, times, xattrs.
    Returns 1 if it had to be skipped (a device node without the right to make one)."""
    import stat
    if not rel:                         # "./": the root directory itself
        if m.isdir():
            _owner_mode(root, m)
            dirs.append((root, m.mtime))
        return 0
    parent_rel, _, base = rel.rpartition("/")
    parent = _resolve(root, parent_rel, follow_last=True)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)      # archives may omit parent directory entries
    path = os.path.join(parent, base)
    if m.isdir():
        if not (os.path.isdir(path) and not os.path.islink(path)):
            _remove(path)
            os.mkdir(path, 0o700)
        _owner_mode(path, m)
        dirs.append((path, m.mtime))
        return 0
    _remove(path)
    if m.isreg():
        src = tf.extractfile(m)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out:
            import shutil
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            _owner_mode(out.fileno(), m)
        return 0
    if m.issym():
        os.symlink(m.linkname, path)
        _owner_mode(path, m, link=True)
        return 0
    if m.islnk():
        target = _resolve(root, _member_rel(m.linkname, label))
        if not os.path.lexists(target) or (os.path.isdir(target) and not os.path.islink(target)):
            raise PyctrError("%s: hard link %s -> %s: no such file in the image"
                             % (label, m.name, m.linkname))
        os.link(target, path, follow_symlinks=False)
        return 0
    if m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        try:
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        except PermissionError:         # not root (or in a user namespace): /dev is a tmpfs anyway
            return 1
        _owner_mode(path, m)
        return 0
    if m.isfifo():
        os.mkfifo(path, 0o600)
        _owner_mode(path, m)
        return 0
    return 0                            # other types (GNU volume labels...): nothing to make


def _owner_mode(target, m, link=False):
    """Owner first (chown clears set-id bits), then mode, xattrs (file capabilities), times.
    Owners are numeric: the names are the image's, not this host's."""
    kw = {"follow_symlinks": False} if not isinstance(target, int) else {}
    try:
        os.chown(target, m.uid, m.gid, **kw)
    except PermissionError:
        pass                            # rootless import: files stay ours
    if not link:
        os.chmod(target, m.mode & 0o7777)
    for key, value in m.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            try:
                os.setxattr(target, key[len("SCHILY.xattr."):],
                            value.encode("utf-8", "surrogateescape"), **kw)
            except OSError:
                pass                    # e.g. a filesystem without that xattr namespace
    try:
        os.utime(target, (m.mtime, m.mtime), **kw)
    except OSError:
        pass
