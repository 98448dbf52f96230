"""`pyctr image import FILE.tar`: a plain rootfs tarball, a `docker save` archive or an OCI
image layout (each plain, gzip, bzip2 or xz), into the store.

    plain        the members are the rootfs
    docker-save  manifest.json -> [{Config, RepoTags, Layers: [".../layer.tar"...]}]
    oci          oci-layout + index.json -> (index ->) manifest -> config, layers (blobs/ALG/HEX,
                 every blob checked against its digest)

Layers are applied in order; a layer's whiteouts (.wh.NAME deletes NAME, .wh..wh..opq empties
its directory) hide the layers below it only, so they run before its files are written.

An archive is input from anyone. Every member lands inside the rootfs: names and hard-link
targets with `..` are refused, absolute ones are taken from the rootfs (as tar does), and
paths are resolved in the root (inroot.resolve), so a member such as `etc -> /etc` followed
by `etc/passwd` writes the image's /etc, never the host's. Anything refused is one line and
the import leaves nothing; its progress is shown only once it has succeeded.
"""
import os

from pyctr.errors import PyctrError
from pyctr.images import inroot
from pyctr.images.store import (NAME_CHARS, Staging, canonical, checked_name, interruptible,
                                lookup, os_errors, valid_name)

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "armv6l": "arm",
        "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x",
        "riscv64": "riscv64"}
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
# trusted.overlay.* would steer the overlay `pyctr run` stacks on the image (redirects,
# opaque dirs, metacopy); trusted.* is the host administrator's namespace anyway.
XATTR_SKIPPED = ("trusted.",)


@os_errors
def import_archive(paths, archive, name=None):
    """Import a plain rootfs tarball, a `docker save` archive or an OCI layout tarball."""
    import tarfile
    from pyctr.progress import Progress

    if name is not None:
        name = checked_name(name)
    if not os.path.isfile(archive):
        raise PyctrError("%s: no such file" % archive)
    try:
        outer = tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise PyctrError("%s is not a tar archive (plain, gzip, bzip2 or xz)" % archive) from e
    with outer, interruptible():
        label = os.path.basename(archive)
        with Progress("importing %s" % label, held=True) as p:
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
                raise PyctrError("%s: malformed image metadata (%s)" % (label, _first_line(e))) from e
            name = name or _name_from(ref if isinstance(ref, str) else None, archive)
            with Staging(paths, name) as st:
                for i, (what, opener) in enumerate(layers, 1):
                    if kind != "tar":
                        p.step("layer %d/%d %s" % (i, len(layers), what))
                    else:
                        p.step("extracting")
                    with opener() as layer:
                        apply_layer(st.rootfs, layer, "%s %s" % (label, what), layered=kind != "tar")
                p.step("saving image")
                meta.update(name=name, source="%s %s" % (kind, os.path.abspath(archive))
                            + (" (%s)" % ref if ref else ""))
                st.commit(meta)
    return lookup(paths, name)


def _members(tf, label):
    import tarfile
    import zlib
    try:
        return tf.getmembers()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise PyctrError("%s: corrupt tar archive (%s)" % (label, _first_line(e))) from e


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


# --------------------------------------------------------------------------- formats

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
        raise PyctrError("%s: malformed %s (%s)" % (label, name, e)) from e


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
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise PyctrError("%s: layer %s is not a tar archive (plain, gzip, bzip2 or xz)"
                             % (label, name)) from e
    return open_layer


def _docker_layers(outer, byname, manifest, label):
    entry = manifest[0]
    config = _read_json(outer, byname, entry.get("Config", ""), label) if entry.get("Config") else None
    layers = [(name, _layer_opener(outer, byname, name, label)) for name in _strs(entry["Layers"])]
    tags = entry.get("RepoTags") or []
    return "docker-save", layers, config, tags[0] if tags else None


def _oci_layers(outer, byname, label):
    index = _read_json(outer, byname, "index.json", label)
    arch = ARCH.get(os.uname().machine, os.uname().machine)
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
        if desc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            index = doc
            continue
        cdesc = doc.get("config") or {}
        config = _read_json(outer, byname, _blob_name(cdesc.get("digest"), label), label,
                            cdesc.get("digest"))
        layers = []
        for layer in doc.get("layers") or []:
            d = layer.get("digest")
            layers.append(("%s" % str(d)[:19], _layer_opener(
                outer, byname, _blob_name(d, label), label, d, layer.get("mediaType", ""))))
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
        name = canonical(ref.split("@")[0].rsplit("/", 1)[-1])
        if valid_name(name):
            return name
    base = os.path.basename(archive)
    for ext in (".tar.gz", ".tar.xz", ".tar.bz2", ".tgz", ".txz", ".tar"):
        if base.endswith(ext):
            base = base[:-len(ext)]
            break
    name = "".join(c if c in NAME_CHARS else "-" for c in base).lstrip("-_.:")
    if not valid_name(name):
        raise PyctrError("cannot derive an image name from %s; give --name" % archive)
    return name


# --------------------------------------------------------------------------- layers

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


def _whiteout(rel, label):
    """(directory, name) a whiteout member hides; name None for an opaque directory."""
    parent, _, base = rel.rpartition("/")
    if base == OPAQUE:
        return parent, None
    hidden = base[len(WHITEOUT):]
    if hidden in ("", ".", ".."):
        # .wh.. would delete its own directory, .wh... the one above it
        raise PyctrError("%s: whiteout %r names no file in its directory" % (label, rel))
    return parent, hidden


def apply_layer(root, tf, label, layered):
    """Extract one layer onto root. Whiteouts (layered formats) apply to the layers below
    only, so they all run before this layer's files are written (OCI image spec)."""
    import tarfile
    import zlib
    entries, whiteouts = [], []
    for m in _members(tf, label):
        rel = _member_rel(m.name, label)
        base = rel.rpartition("/")[2]
        if base.startswith(WHITEOUT):
            if layered and (base == OPAQUE or not base.startswith(WHITEOUT + WHITEOUT)):
                whiteouts.append((rel, _whiteout(rel, label)))
            continue                    # other .wh..wh.* are aufs bookkeeping
        if m.islnk():
            _member_rel(m.linkname, label)
        entries.append((rel, m))
    for rel, (parent_rel, hidden) in whiteouts:
        try:
            parent = inroot.resolve(root, parent_rel, follow_last=True)
            if hidden is not None:
                inroot.remove(os.path.join(parent, hidden))
            elif os.path.isdir(parent) and not os.path.islink(parent):
                for child in os.listdir(parent):
                    inroot.remove(os.path.join(parent, child))
        except OSError as e:
            raise PyctrError("%s: cannot apply whiteout %s" % (label, rel), e.errno or 0) from e
    dirs = []
    for rel, m in entries:
        try:
            _extract(root, rel, m, tf, dirs, label)
        except OSError as e:
            raise PyctrError("%s: cannot extract %s" % (label, m.name), e.errno or 0) from e
        except (tarfile.TarError, EOFError, zlib.error) as e:
            raise PyctrError("%s: corrupt tar archive at %s (%s)"
                             % (label, m.name, _first_line(e))) from e
    # Directory times last: creating their contents changed them. A later member may have
    # replaced a directory (or one above it) with a link: only what is still that directory.
    for rel, path, mtime in reversed(dirs):
        try:
            if inroot.resolve(root, rel) == path:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
        except OSError:
            pass


def _extract(root, rel, m, tf, dirs, label):
    """Create one member at rel (resolved inside root), with owner, mode, times, xattrs.
    A device node without the right to make one is skipped (/dev is a tmpfs in a container)."""
    import stat
    if not rel:                         # "./": the root directory itself
        if m.isdir():
            _owner_mode(root, m)
            dirs.append((rel, root, m.mtime))
        return
    parent_rel, _, base = rel.rpartition("/")
    parent = inroot.resolve(root, parent_rel, follow_last=True)
    if not os.path.isdir(parent):
        os.makedirs(parent, 0o755)      # archives may omit parent directory entries
    path = os.path.join(parent, base)
    if m.isdir():
        if not (os.path.isdir(path) and not os.path.islink(path)):
            inroot.remove(path)
            os.mkdir(path, 0o700)
        _owner_mode(path, m)
        dirs.append((rel, path, m.mtime))
        return
    inroot.remove(path)
    if m.isreg():
        import shutil
        with inroot.create_file(path) as out:
            shutil.copyfileobj(tf.extractfile(m), out, 1 << 20)
            out.flush()
            _owner_mode(out.fileno(), m)
    elif m.issym():
        os.symlink(m.linkname, path)
        _owner_mode(path, m, link=True)
    elif m.islnk():
        target = inroot.resolve(root, _member_rel(m.linkname, label))
        if not os.path.lexists(target) or (os.path.isdir(target) and not os.path.islink(target)):
            raise PyctrError("%s: hard link %s -> %s: no such file in the image"
                             % (label, m.name, m.linkname))
        os.link(target, path, follow_symlinks=False)
    elif m.ischr() or m.isblk():
        kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
        try:
            os.mknod(path, kind | 0o600, os.makedev(m.devmajor, m.devminor))
        except PermissionError:         # not root (or in a user namespace)
            return
        _owner_mode(path, m)
    elif m.isfifo():
        os.mkfifo(path, 0o600)
        _owner_mode(path, m)
    # other types (GNU volume labels...): nothing to make


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
            attr = key[len("SCHILY.xattr."):]
            if attr.startswith(XATTR_SKIPPED):
                continue
            try:
                os.setxattr(target, attr, value.encode("utf-8", "surrogateescape"), **kw)
            except OSError:
                pass                    # e.g. a filesystem without that xattr namespace
    try:
        os.utime(target, (m.mtime, m.mtime), **kw)
    except OSError:
        pass
