"""`pyctr image build NAME|FILE.toml`: an image from a recipe.

Recipes are TOML files (images/*.toml in a checkout, pyctr/recipes/ when installed; the
format is documented at the top of images/busybox.toml). A build runs these steps into a
staging directory of the store:

    [base]      the first files: Debian packages (deb), a Debian system (mmdebstrap or
                debootstrap), files copied from the host (host), or nothing (empty);
                [base.fallback] is tried when a base fails
    [applets]   links for every applet of a multi-call binary such as busybox
    [dirs], [symlinks], [[file]]
    [config]    what `pyctr run` starts with, saved in image.json

load_recipe() checks the whole recipe before anything is built: a mistake is one line
naming the file.
"""
import os

from pyctr.errors import PyctrError
from pyctr.images import inroot
from pyctr.images.store import (DEFAULT_IMAGE, Staging, checked_name, interruptible, lookup,
                                os_errors, valid_name)


@os_errors
def build(paths, ref, name=None):
    """Build the image a recipe describes; `ref` is a recipe name or a .toml file."""
    from pyctr.progress import Progress

    recipe_path = find_recipe(ref)
    recipe = load_recipe(recipe_path)
    name = checked_name(name or recipe["name"])
    with interruptible(), Progress("building image %s" % name) as p:
        with Staging(paths, name) as st:
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


def ensure_default(paths):
    """The default image, built first if the store does not have it yet."""
    return lookup(paths, DEFAULT_IMAGE) or build(paths, DEFAULT_IMAGE)


# --------------------------------------------------------------------------- finding, checking

def recipe_dirs():
    """Where recipe names are looked up: $PYCTR_RECIPES (colon-separated), the recipes
    shipped as package data (pyctr/recipes/ in an installed copy), and images/ beside the
    package in a source checkout or editable install."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    dirs = [d for d in os.environ.get("PYCTR_RECIPES", "").split(":") if d]
    dirs += [os.path.join(package, "recipes"), os.path.join(os.path.dirname(package), "images")]
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


# key -> type, per table. "strs" is a list of strings, "tables" a list of tables.
_RECIPE_KEYS = {
    "": {"name": str, "description": str, "base": dict, "applets": dict, "dirs": dict,
         "symlinks": dict, "file": "tables", "config": dict},
    "applets": {"binary": str, "skip": "strs"},
    "file": {"path": str, "content": str, "shipped": str, "mode": int},
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
    from pyctr import tomlio
    r = tomlio.load(path, "image recipe")
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
        if "path" not in f or ("content" in f) == ("shipped" in f):
            raise PyctrError("%s: [[file]] needs path and either content or shipped" % path)
        if "shipped" in f and ("/" in f["shipped"] or
                               not os.path.isfile(shipped_file(f["shipped"]))):
            raise PyctrError("%s: [[file]] shipped %r is not a file pyctr installs"
                             % (path, f["shipped"]))
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


# --------------------------------------------------------------------------- bases

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
            inroot.remove(os.path.join(rootfs, n))
        return _make_base(fallback, rootfs, p)
    for ex in base.get("exclude", []):
        inroot.remove(inroot.resolve(rootfs, ex))
    return source


def _run(argv, what, **kw):
    import subprocess
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    except FileNotFoundError as e:
        raise PyctrError("%s: %s is not installed" % (what, argv[0])) from e
    if r.returncode != 0:
        raise PyctrError("%s failed: %s" % (what, _last_error(r.stderr) or "exit %d" % r.returncode))
    return r.stdout


def _last_error(text):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
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
        dst = inroot.resolve(rootfs, f["path"])
        os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
        inroot.remove(dst)
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


# --------------------------------------------------------------------------- steps after the base

def _add_applets(applets, rootfs, p):
    binary = applets["binary"]
    host_bin = inroot.resolve(rootfs, binary, follow_last=True)
    p.step("linking %s applets" % binary)
    listing = _run([host_bin, "--list-full"], "%s --list-full" % binary)
    skip = set(applets.get("skip", []))
    for line in listing.split():
        rel = "/" + line.strip("/")
        if rel in skip or ".." in rel.split("/"):
            continue
        dst = inroot.resolve(rootfs, rel)
        if os.path.lexists(dst):
            continue            # a real file from the base wins over an applet
        os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
        # Relative, so the link is right both inside the container and seen from the host.
        os.symlink(os.path.relpath(host_bin, os.path.dirname(dst)), dst)


def _add_dirs(dirs, rootfs):
    for path, mode in dirs.items():
        dst = inroot.resolve(rootfs, path, follow_last=True)
        if os.path.lexists(dst) and not os.path.isdir(dst):
            raise PyctrError("recipe: %s exists and is not a directory" % path)
        os.makedirs(dst, 0o755, exist_ok=True)
        os.chmod(dst, mode)


def _add_symlinks(links, rootfs):
    for path, target in links.items():
        dst = _replaceable(rootfs, path, "is a directory, not replacing it with a link")
        os.symlink(target, dst)


def _add_files(files, rootfs):
    for f in files:
        if "shipped" in f:
            with open(shipped_file(f["shipped"]), "rb") as src:
                data = src.read()
        else:
            data = f["content"].encode("utf-8")
        dst = _replaceable(rootfs, f["path"], "is a directory")
        with inroot.create_file(dst) as out:
            out.write(data)
            os.fchmod(out.fileno(), f.get("mode", 0o644))


def shipped_file(name):
    """A file pyctr installs beside its code (built from csrc/ by setup.py), by its
    bare name."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(package, name)


def _replaceable(rootfs, path, why_not):
    """The host path of `path` in rootfs, made free for a new link or file: its directory
    exists, nothing is at it. An existing directory is not replaced."""
    dst = inroot.resolve(rootfs, path)
    if os.path.isdir(dst) and not os.path.islink(dst):
        raise PyctrError("recipe: %s %s" % (path, why_not))
    os.makedirs(os.path.dirname(dst), 0o755, exist_ok=True)
    inroot.remove(dst)
    return dst
