"""The image store: building from recipes, importing archives, listing, removing.

Everything happens under pytest's tmp dirs (`pyctr --data TMP`), never in /var/lib/pyctr.
CLI tests run the real command in a subprocess; building the busybox image downloads Debian's
busybox-static (or falls back to this host's static busybox), and `chroot ROOTFS /bin/sh`
checks that what was built actually runs.
"""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time

import pytest

try:
    from hypothesis import HealthCheck, event, given, settings, strategies
except ImportError:         # the property test below is skipped without it
    given = None

from pyctr import images
from pyctr.images import archive as image_archive
from pyctr.errors import PyctrError
from pyctr.paths import Paths

PY = sys.executable
PROGRESS = re.compile(r"^building image \S+: ")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, chown, mknod)")


def pyctr(data, *args, timeout=600):
    return subprocess.run([PY, "-m", "pyctr", "--root", str(data / "run"), "--config",
                           str(data / "etc"), "--data", str(data), *args],
                          capture_output=True, text=True, timeout=timeout)


def fails_cleanly(r, *words, after_progress=False):
    """Exit 125, exactly one line on stderr (no traceback) that names the problem. Only a
    build that failed on its way may have shown its progress before that line."""
    assert r.returncode == 125, r.stderr
    lines = r.stderr.splitlines()
    if after_progress:
        lines = [line for line in lines if not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("pyctr: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def store_entries(data):
    """What is in the store besides its lock file: a failed command must add nothing."""
    d = data / "images"
    return sorted(n for n in os.listdir(d) if n != ".lock") if d.exists() else []


def chroot_sh(rootfs, script):
    return subprocess.run(["chroot", str(rootfs), "/bin/sh", "-c", script],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One busybox image built through the CLI, shared by the read-only checks below."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    data = tmp_path_factory.mktemp("store")
    r = pyctr(data, "image", "build", "busybox")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "busybox"
    return data


# --------------------------------------------------------------------------- build

@pytest.mark.parametrize("raw", [b"{broken", b'{"cmd": ["\xff\xfe"]}'])
def test_a_damaged_image_json_is_one_line_not_a_traceback(tmp_path, raw):
    """An image whose image.json is not JSON, or not UTF-8, stops `run`
    with the image named, before anything is made."""
    image = tmp_path / "images" / "broken"
    (image / "rootfs").mkdir(parents=True)
    (image / "image.json").write_bytes(raw)
    fails_cleanly(pyctr(tmp_path, "run", "--rm", "broken", "/bin/true"),
                  "image broken", "malformed image.json")
    assert not (tmp_path / "run" / "containers").exists() or \
        os.listdir(tmp_path / "run" / "containers") == []


@root_only
def test_built_busybox_runs_a_shell(built):
    rootfs = built / "images" / "busybox" / "rootfs"
    assert (rootfs / "bin" / "sh").exists()
    r = chroot_sh(rootfs, "echo ok; ls /usr/bin/wc; id -un; cat /etc/group")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "ok"
    assert "/usr/bin/wc" in out            # applet links are made from `busybox --list-full`
    assert "root" in out                   # /etc/passwd names uid 0
    assert "nobody:x:65534:" in out


@root_only
def test_built_busybox_layout_and_metadata(built):
    img = images.lookup(Paths(data=str(built)), "busybox")
    assert img is not None
    assert img.cmd == ["/bin/sh"]
    assert any(e.startswith("PATH=") for e in img.env)
    assert img.workdir == "/" and img.user == ""
    rootfs = img.rootfs
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "run", "var/tmp"):
        assert os.path.isdir(os.path.join(rootfs, d)), d
    assert stat.S_IMODE(os.stat(os.path.join(rootfs, "tmp")).st_mode) == 0o1777
    assert "nobody:x:65534:65534" in open(os.path.join(rootfs, "etc/passwd")).read()
    assert "localhost" in open(os.path.join(rootfs, "etc/hosts")).read()
    # Applet links are relative, so they resolve the same inside the container and from here.
    link = os.readlink(os.path.join(rootfs, "usr/bin/wc"))
    assert not link.startswith("/")
    assert os.path.samefile(os.path.join(rootfs, "usr/bin/wc"), os.path.join(rootfs, "bin/busybox"))
    assert not os.path.lexists(os.path.join(rootfs, "linuxrc"))      # skipped by the recipe
    assert not os.path.exists(os.path.join(rootfs, "usr/share/doc"))  # excluded by the recipe
    assert images.is_static_elf(os.path.join(rootfs, "bin/busybox"))
    assert store_entries(built) == ["busybox"]


@root_only
def test_image_ls_shows_the_image(built):
    r = pyctr(built, "image", "ls")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "SIZE", "CREATED", "SOURCE"]
    row = [l for l in lines[1:] if l.split()[0] == "busybox"]
    assert len(row) == 1
    assert "busybox" in row[0].split(None, 1)[1]       # the source names the package/binary
    r = pyctr(built, "image", "ls", "-q")
    assert r.stdout.split() == ["busybox"]


@root_only
def test_rebuild_replaces_the_image_and_leaves_nothing_beside(tmp_path):
    r = pyctr(tmp_path, "image", "build", "busybox")
    assert r.returncode == 0, r.stderr
    marker = tmp_path / "images" / "busybox" / "rootfs" / "marker"
    marker.write_text("from the first build")
    r = pyctr(tmp_path, "image", "build", "busybox")
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert chroot_sh(tmp_path / "images/busybox/rootfs", "echo ok").stdout == "ok\n"
    assert store_entries(tmp_path) == ["busybox"]


@root_only
def test_build_falls_back_to_the_hosts_static_busybox(tmp_path):
    host = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if images.is_static_elf(p)), None)
    if host is None:
        pytest.skip("no static busybox on this host")
    recipe = tmp_path / "bb.toml"
    original = open(os.path.join(os.path.dirname(images.find_recipe("busybox")), "busybox.toml")).read()
    # Same recipe, but apt cannot deliver the package: the host's binary must be used.
    recipe.write_text(original.replace('name = "busybox"', 'name = "bbhost"')
                      .replace('packages = ["busybox-static"]',
                               'packages = ["pyctr-no-such-package-x"]'))
    r = pyctr(tmp_path, "image", "build", str(recipe))
    assert r.returncode == 0, r.stderr
    assert "falling back to host" in r.stderr
    img = images.lookup(Paths(data=str(tmp_path)), "bbhost")
    assert img.source.startswith("host ")
    assert chroot_sh(img.rootfs, "echo ok").stdout == "ok\n"


def test_build_refuses_a_dynamic_host_binary(tmp_path):
    recipe = tmp_path / "dyn.toml"
    recipe.write_text('name = "dyn"\n[base]\nkind = "host"\n'
                      'files = [{ path = "/bin/sh", from = ["/bin/ls"], static = true }]\n')
    r = pyctr(tmp_path, "image", "build", str(recipe))
    fails_cleanly(r, "not a static executable", "/bin/ls", after_progress=True)
    assert store_entries(tmp_path) == []


def test_build_unknown_recipe(tmp_path):
    r = pyctr(tmp_path, "image", "build", "no-such-recipe")
    fails_cleanly(r, "unknown image recipe", "no-such-recipe", "busybox")
    assert store_entries(tmp_path) == []


def test_build_malformed_toml_names_file_and_line(tmp_path):
    recipe = tmp_path / "broken.toml"
    recipe.write_text('name = "broken"\n[base]\nkind = \n')
    line = fails_cleanly(pyctr(tmp_path, "image", "build", str(recipe)), str(recipe), "line 3")
    assert "Traceback" not in line
    assert store_entries(tmp_path) == []


@pytest.mark.parametrize("text,words", [
    ('name = "x"\n[base]\nkind = "empty"\n[config]\ncmdd = ["/bin/sh"]\n', ["unknown key", "cmdd"]),
    ('name = "x"\n[base]\nkind = "rpm"\n', ["kind must be one of"]),
    ('name = "x"\n', ["missing", "base"]),
    ('name = "x"\n[base]\nkind = "empty"\n[[file]]\npath = "/../etc/x"\ncontent = ""\n', [".."]),
    ('name = "x"\n[base]\nkind = "empty"\n[config]\nenv = ["NOEQUALS"]\n', ["NAME=VALUE"]),
    ('name = "x"\n[base]\nkind = "empty"\n[[file]]\npath = "/x"\nshipped = "../setup.py"\n',
     ["shipped", "not a file pyctr installs"]),
    ('name = "x"\n[base]\nkind = "empty"\n[[file]]\npath = "/x"\nshipped = "pyctr-init"\n'
     'content = ""\n', ["either content or shipped"]),
])
def test_build_rejects_bad_recipes(tmp_path, text, words):
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    fails_cleanly(pyctr(tmp_path, "image", "build", str(recipe)), str(recipe), *words)
    assert store_entries(tmp_path) == []


@root_only
def test_interrupted_build_leaves_nothing(tmp_path):
    # A "busybox" that hangs when asked for its applet list gives a moment to send SIGTERM.
    started = tmp_path / "started"
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\necho $$ > %s.tmp && mv %s.tmp %s\nexec sleep 120\n"
                    % (started, started, started))
    hang.chmod(0o755)
    recipe = tmp_path / "hang.toml"
    recipe.write_text('name = "hang"\n[base]\nkind = "host"\n'
                      'files = [{ path = "/bin/busybox", from = ["%s"] }]\n'
                      '[applets]\nbinary = "/bin/busybox"\n' % hang)
    proc = subprocess.Popen([PY, "-m", "pyctr", "--data", str(tmp_path), "image", "build",
                             str(recipe)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(600):                    # bounded: 60 s at most
            if started.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert started.exists(), "the build never reached its slow step"
        assert any(n.startswith(".tmp-hang-") for n in os.listdir(tmp_path / "images"))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sleeper = int(started.read_text()) if started.exists() else None
        alive = sleeper and os.path.exists("/proc/%d" % sleeper)
        if alive:
            os.kill(sleeper, signal.SIGKILL)
    assert proc.returncode == 130
    assert not alive, "the build's child process was left running"
    assert store_entries(tmp_path) == []


@root_only
def test_build_clears_what_a_killed_build_left(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / "images" / (".tmp-old-%d-abcdef" % dead.pid)
    (stale / "rootfs" / "etc").mkdir(parents=True)
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('name = "tiny"\n[base]\nkind = "empty"\n[[file]]\npath = "/etc/motd"\n'
                      'content = "hi"\n')
    r = pyctr(tmp_path, "image", "build", str(recipe))
    assert r.returncode == 0, r.stderr
    assert store_entries(tmp_path) == ["tiny"]
    assert (tmp_path / "images/tiny/rootfs/etc/motd").read_text() == "hi"


@root_only
def test_build_copies_a_file_pyctr_ships(tmp_path):
    from pyctr.images.recipes import shipped_file
    recipe = tmp_path / "fix.toml"
    recipe.write_text('name = "fix"\n[base]\nkind = "empty"\n[[file]]\n'
                      'path = "/usr/local/lib/fix.so"\nshipped = "pyctr-ucx-finalize.so"\n')
    r = pyctr(tmp_path, "image", "build", str(recipe))
    assert r.returncode == 0, r.stderr
    with open(shipped_file("pyctr-ucx-finalize.so"), "rb") as f:
        assert (tmp_path / "images/fix/rootfs/usr/local/lib/fix.so").read_bytes() == f.read()


# --------------------------------------------------------------------------- archives

def _info(name, kind=tarfile.REGTYPE, mode=0o644, uid=0, gid=0, **kw):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def make_tar(entries, gz=False):
    """entries: (name, kind, extra) tuples -> tar bytes. kind: file/dir/sym/link/chr/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            opts = e[2] if len(e) > 2 else {}
            if kind == "file":
                data = opts.get("data", b"")
                ti = _info(name, mode=opts.get("mode", 0o644), uid=opts.get("uid", 0),
                           gid=opts.get("gid", 0), size=len(data))
                if "xattrs" in opts:
                    ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in opts["xattrs"].items()}
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "dir":
                tf.addfile(_info(name, tarfile.DIRTYPE, mode=opts.get("mode", 0o755)))
            elif kind == "sym":
                tf.addfile(_info(name, tarfile.SYMTYPE, mode=0o777, linkname=opts["to"]))
            elif kind == "link":
                tf.addfile(_info(name, tarfile.LNKTYPE, linkname=opts["to"]))
            elif kind == "chr":
                tf.addfile(_info(name, tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3))
            elif kind == "fifo":
                tf.addfile(_info(name, tarfile.FIFOTYPE, mode=0o600))
    data = buf.getvalue()
    return gzip.compress(data) if gz else data


# Two layers. The second deletes a file (whiteout), makes /opt/dir opaque, and adds files:
# opt/dir/c is listed *before* the opaque marker, and must survive it (whiteouts only ever
# hide lower layers).
LAYER1 = [
    ("etc", "dir"), ("etc/keep", "file", {"data": b"keep\n"}),
    ("etc/gone", "file", {"data": b"gone\n"}),
    ("opt", "dir"), ("opt/dir", "dir"),
    ("opt/dir/a", "file", {"data": b"a"}), ("opt/dir/sub", "dir"),
    ("opt/dir/sub/b", "file", {"data": b"b"}),
    ("usr", "dir"), ("usr/bin", "dir"),
    ("usr/bin/tool", "file", {"data": b"v1", "mode": 0o755}),
]
LAYER2 = [
    ("etc/.wh.gone", "file"),
    ("opt/dir/c", "file", {"data": b"c"}),
    ("opt/dir/.wh..wh..opq", "file"),
    ("usr/bin/tool", "file", {"data": b"v2", "mode": 0o755}),
    ("usr/bin/.wh.nothing-here", "file"),
]
CONFIG = {"architecture": "amd64", "os": "linux",
          "config": {"Env": ["PATH=/usr/bin:/bin", "GREETING=hi"], "Cmd": ["/usr/bin/tool", "-v"],
                     "WorkingDir": "/opt", "User": "1000:1000"},
          "rootfs": {"type": "layers", "diff_ids": []}}


def make_docker_save(path, layers, tag="example.com/team/app:1.0"):
    with tarfile.open(path, "w") as out:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
        names = []
        for i, layer in enumerate(layers):
            tar = make_tar(layer)
            name = "%064x/layer.tar" % (i + 1)
            put(name, tar)
            names.append(name)
        cfg = json.dumps(CONFIG).encode()
        cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
        put(cfg_name, cfg)
        put("manifest.json", json.dumps([{"Config": cfg_name, "RepoTags": [tag],
                                          "Layers": names}]).encode())


def make_oci(path, layers, ref="registry.local/lib/app:2.0", corrupt=False):
    blobs = {}

    def blob(data, media):
        d = hashlib.sha256(data).hexdigest()
        blobs[d] = data
        return {"mediaType": media, "digest": "sha256:" + d, "size": len(data)}
    descs = [blob(make_tar(l, gz=True), "application/vnd.oci.image.layer.v1.tar+gzip")
             for l in layers]
    cfg = blob(json.dumps(CONFIG).encode(), "application/vnd.oci.image.config.v1+json")
    man = blob(json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": cfg, "layers": descs}).encode(),
               "application/vnd.oci.image.manifest.v1+json")
    man["annotations"] = {"org.opencontainers.image.ref.name": ref}
    man["platform"] = {"os": "linux", "architecture": image_archive.ARCH.get(os.uname().machine)}
    index = {"schemaVersion": 2, "manifests": [man]}
    if corrupt:
        first = descs[0]["digest"].split(":")[1]
        blobs[first] = blobs[first][:-8] + b"garbage!"
    with tarfile.open(path, "w") as out:
        def put(name, data):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            out.addfile(ti, io.BytesIO(data))
        put("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        put("index.json", json.dumps(index).encode())
        for d, data in blobs.items():
            put("blobs/sha256/" + d, data)


def check_layered_result(rootfs):
    r = str(rootfs)
    assert open(os.path.join(r, "etc/keep")).read() == "keep\n"
    assert not os.path.lexists(os.path.join(r, "etc/gone"))             # whiteout
    assert sorted(os.listdir(os.path.join(r, "opt/dir"))) == ["c"]        # opaque dir
    assert open(os.path.join(r, "usr/bin/tool")).read() == "v2"           # upper layer wins
    for dirpath, dirnames, filenames in os.walk(r):                      # markers not copied
        assert not [n for n in dirnames + filenames if n.startswith(".wh.")]


def check_layered_config(img):
    assert img.env == ["PATH=/usr/bin:/bin", "GREETING=hi"]
    assert img.cmd == ["/usr/bin/tool", "-v"]
    assert img.workdir == "/opt"
    assert img.user == "1000:1000"


@root_only
def test_import_plain_tarball_keeps_metadata(tmp_path):
    tar = tmp_path / "rootfs.tar.gz"
    tar.write_bytes(make_tar([
        ("./", "dir", {"mode": 0o755}),
        ("./etc/", "dir"),
        ("./etc/hello", "file", {"data": b"hello\n", "mode": 0o640, "uid": 1000, "gid": 1001}),
        ("./bin", "dir"),
        ("./bin/su", "file", {"data": b"x", "mode": 0o4755}),
        ("./bin/ping", "file", {"data": b"p", "mode": 0o755,
                                "xattrs": {"user.pyctr": "cap"}}),
        ("./etc/hello.link", "link", {"to": "./etc/hello"}),
        ("./etc/greeting", "sym", {"to": "hello"}),
        ("./dev", "dir"), ("./dev/null", "chr"), ("./run", "dir"), ("./run/fifo", "fifo"),
        ("./deep/er/file", "file", {"data": b"parents made"}),   # no entries for its parents
    ], gz=True))
    r = pyctr(tmp_path, "image", "import", str(tar))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "rootfs"          # named after the file
    root = tmp_path / "images" / "rootfs" / "rootfs"
    st = os.stat(root / "etc/hello")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o640)
    assert stat.S_IMODE(os.stat(root / "bin/su").st_mode) == 0o4755
    assert os.stat(root / "etc/hello.link").st_ino == st.st_ino
    assert os.readlink(root / "etc/greeting") == "hello"
    assert stat.S_ISCHR(os.stat(root / "dev/null").st_mode)
    assert os.major(os.stat(root / "dev/null").st_rdev) == 1
    assert stat.S_ISFIFO(os.stat(root / "run/fifo").st_mode)
    assert (root / "deep/er/file").read_text() == "parents made"
    assert os.stat(root / "etc/hello").st_mtime == 1700000000
    try:
        assert os.getxattr(root / "bin/ping", "user.pyctr") == b"cap"
    except OSError:
        pass                                       # filesystem without user xattrs
    img = images.lookup(Paths(data=str(tmp_path)), "rootfs")
    assert img.source.startswith("tar ") and img.cmd == []


@root_only
def test_import_a_rootfs_tarball_of_busybox_runs(built, tmp_path):
    tar = tmp_path / "bb.tar"
    subprocess.run(["tar", "-C", str(built / "images/busybox/rootfs"), "-cf", str(tar), "."],
                   check=True)
    r = pyctr(tmp_path, "image", "import", "--name", "bb2", str(tar))
    assert r.returncode == 0, r.stderr
    assert chroot_sh(tmp_path / "images/bb2/rootfs", "echo ok").stdout == "ok\n"


@root_only
def test_import_docker_save_applies_layers_and_whiteouts(tmp_path):
    archive = tmp_path / "app.tar"
    make_docker_save(archive, [LAYER1, LAYER2])
    r = pyctr(tmp_path, "image", "import", str(archive))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app:1.0"             # from RepoTags
    img = images.lookup(Paths(data=str(tmp_path)), "app:1.0")
    check_layered_result(img.rootfs)
    check_layered_config(img)
    assert img.source.startswith("docker-save ")
    assert "layer 2/2" in r.stderr                   # progress per layer


@root_only
def test_import_oci_layout_applies_layers_and_whiteouts(tmp_path):
    archive = tmp_path / "app-oci.tar"
    make_oci(archive, [LAYER1, LAYER2])
    r = pyctr(tmp_path, "image", "import", str(archive))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app:2.0"
    img = images.lookup(Paths(data=str(tmp_path)), "app:2.0")
    check_layered_result(img.rootfs)
    check_layered_config(img)
    assert img.source.startswith("oci ")
    # Imported twice under another name: both listed.
    assert pyctr(tmp_path, "image", "import", "--name", "copy", str(archive)).returncode == 0
    assert pyctr(tmp_path, "image", "ls", "-q").stdout.split() == ["app:2.0", "copy"]


@root_only
def test_import_symlinks_cannot_lead_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    # A layer plants links towards the host; the next one writes through them.
    layer1 = [("etc", "dir"), ("etc/abs", "sym", {"to": str(outside)}),
              ("etc/rel", "sym", {"to": "../../../../../../../../" + str(outside)})]
    layer2 = [("etc/abs/pwned", "file", {"data": b"x"}), ("etc/rel/pwned2", "file", {"data": b"x"})]
    archive = tmp_path / "evil.tar"
    make_docker_save(archive, [layer1, layer2], tag="evil:latest")
    r = pyctr(tmp_path, "image", "import", str(archive))
    assert r.returncode == 0, r.stderr
    assert os.listdir(outside) == []
    root = tmp_path / "images" / "evil" / "rootfs"
    # Both links resolve inside the rootfs, as they would in the container.
    assert (root / str(outside).lstrip("/") / "pwned").read_bytes() == b"x"
    assert (root / str(outside).lstrip("/") / "pwned2").read_bytes() == b"x"


def test_import_rejects_dotdot_paths(tmp_path):
    archive = tmp_path / "dotdot.tar"
    archive.write_bytes(make_tar([("etc", "dir"), ("etc/../../escape", "file", {"data": b"x"})]))
    fails_cleanly(pyctr(tmp_path, "image", "import", str(archive)), "points outside")
    assert store_entries(tmp_path) == []
    assert not (tmp_path / "escape").exists() and not (tmp_path / "images" / "escape").exists()


def test_import_rejects_dotdot_hardlink_target(tmp_path):
    archive = tmp_path / "dotdot-link.tar"
    archive.write_bytes(make_tar([("passwd", "link", {"to": "../../../../etc/passwd"})]))
    fails_cleanly(pyctr(tmp_path, "image", "import", str(archive)), "points outside")
    assert store_entries(tmp_path) == []


# --------------------------------------------------------------------------- hostile archives
# Each archive tries to make the import write, link, delete or touch something outside the
# image's rootfs: in `host`, a directory beside the store standing for the host's files.

def snapshot(top):
    """Every path under top with what a write, link, delete or touch would change."""
    seen = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in [""] + dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, n))
            seen[os.path.relpath(os.path.join(dirpath, n), top)] = (
                st.st_mode, st.st_size, st.st_mtime_ns, st.st_nlink, st.st_ino)
    return seen


def import_hostile(tmp_path, layers_of, *args):
    """Import the archive layers_of(host) describes (one layer: a plain rootfs tarball;
    more: a `docker save` archive). -> (the CLI's result, whether `host` is unchanged)."""
    host = tmp_path / "host"
    (host / "b").mkdir(parents=True)
    (host / "victim").write_text("the host's file\n")
    before = snapshot(host)
    layers = layers_of(host)
    archive = tmp_path / "hostile.tar"
    if len(layers) == 1:
        archive.write_bytes(make_tar(layers[0]))
    else:
        make_docker_save(archive, layers, tag="hostile:1")
    r = pyctr(tmp_path, "image", "import", *args, str(archive))
    return r, snapshot(host) == before


REFUSED = {
    "symlink to itself, then written through": (lambda host: [[
        ("etc", "sym", {"to": "/etc"}), ("etc/passwd", "file", {"data": b"x"})]],
        ["etc/passwd", "symbolic links"]),
    "name climbing out with ..": (lambda host: [[
        ("etc", "dir"), ("etc/../../../host/victim", "file", {"data": b"x"})]],
        ["points outside"]),
    "hard link climbing out with ..": (lambda host: [[
        ("pw", "link", {"to": "../../../host/victim"})]], ["points outside"]),
    "hard link to a host file by absolute name": (lambda host: [[
        ("pw", "link", {"to": str(host / "victim")})]], ["no such file in the image"]),
    "hard link through a symlink out": (lambda host: [[
        ("out", "sym", {"to": str(host)}), ("pw", "link", {"to": "out/victim"})]],
        ["no such file in the image"]),
    "whiteout of the directory above": (lambda host: [
        [("etc", "dir")], [("etc/.wh...", "file")]], ["whiteout", "names no file"]),
    "whiteout of the rootfs's parent": (lambda host: [
        [("etc", "dir")], [(".wh...", "file")]], ["whiteout", "names no file"]),
    "whiteout of its own directory": (lambda host: [
        [("etc", "dir"), ("etc/x", "file")], [("etc/.wh..", "file")]], ["names no file"]),
    "whiteout naming nothing": (lambda host: [
        [("etc", "dir")], [("etc/.wh.", "file")]], ["names no file"]),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_import_refuses_a_hostile_archive(tmp_path, case):
    layers_of, words = REFUSED[case]
    r, host_unchanged = import_hostile(tmp_path, layers_of)
    fails_cleanly(r, *words)
    assert store_entries(tmp_path) == []            # no half image
    assert host_unchanged                           # nothing written, linked or removed


# Archives that aim outside but whose members all land inside, where the container sees them.
CONFINED = {
    "absolute member name": (lambda host: [[
        (str(host / "abs"), "file", {"data": b"x"})]], ["host/abs"]),
    "absolute symlink out, then written through": (lambda host: [[
        ("etc", "sym", {"to": str(host)}), ("etc/victim", "file", {"data": b"x"})]],
        ["host/victim"]),
    "relative symlink climbing out, then written through": (lambda host: [[
        ("up", "sym", {"to": "../" * 12 + str(host).lstrip("/")}),
        ("up/new", "file", {"data": b"x"})]], ["host/new"]),
    "whiteouts through a symlink out": (lambda host: [
        [("out", "sym", {"to": str(host)})],
        [("out/.wh.victim", "file"), ("out/b/.wh..wh..opq", "file")]], []),
    "directory replaced by a symlink out before its times are set": (lambda host: [[
        ("a", "dir"), ("a/b", "dir"), ("a", "sym", {"to": str(host)})]], []),
}


@pytest.mark.parametrize("case", sorted(CONFINED))
def test_import_keeps_a_hostile_archive_inside(tmp_path, case):
    layers_of, inside = CONFINED[case]
    r, host_unchanged = import_hostile(tmp_path, layers_of, "--name", "confined")
    assert r.returncode == 0, r.stderr
    assert host_unchanged
    root = tmp_path / "images" / "confined" / "rootfs"
    for rel in inside:                              # where the container finds the member
        assert (root / str(tmp_path).lstrip("/") / rel).read_bytes() == b"x"


@root_only
def test_import_drops_trusted_xattrs(tmp_path):
    """trusted.overlay.* on a lower layer would steer the overlay `pyctr run` builds."""
    probe = tmp_path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "trusted.overlay.opaque", b"y")
    except OSError:
        pytest.skip("this filesystem keeps no trusted xattrs")
    archive = tmp_path / "xattrs.tar"
    archive.write_bytes(make_tar([("f", "file", {"data": b"x", "xattrs": {
        "trusted.overlay.redirect": "/etc", "user.kept": "yes"}})]))
    assert pyctr(tmp_path, "image", "import", str(archive)).returncode == 0
    f = tmp_path / "images" / "xattrs" / "rootfs" / "f"
    assert "trusted.overlay.redirect" not in os.listxattr(f)
    try:
        assert os.getxattr(f, "user.kept") == b"yes"
    except OSError:
        pass                                        # filesystem without user xattrs


if given:
    HOST = "/HOST"          # stands for the host directory; put in when the archive is made
    _COMPONENT = strategies.sampled_from(
        ["etc", "a", "b", "victim", "..", ".", ".wh.a", ".wh.victim", ".wh..wh..opq", ".wh..",
         ".wh...", ".wh.", "HOST"])
    _NAME = strategies.tuples(strategies.sampled_from(["", "/", "./"]),
                              strategies.lists(_COMPONENT, min_size=1, max_size=4)).map(
        lambda t: t[0] + "/".join(t[1]))
    _MEMBER = strategies.tuples(_NAME, strategies.sampled_from(["file", "dir", "sym", "link"]),
                                _NAME)
    _LAYERS = strategies.lists(strategies.lists(_MEMBER, max_size=6), min_size=1, max_size=2)

    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(layers=_LAYERS)
    def test_import_of_generated_archives_stays_inside(tmp_path, layers):
        """Whatever names, links and whiteouts an archive has: it is imported or refused with
        one PyctrError, nothing outside the store changes, and a refusal leaves nothing."""
        import tempfile
        work = tempfile.mkdtemp(dir=tmp_path)
        try:
            host = os.path.join(work, "host")
            os.makedirs(os.path.join(host, "b"))
            with open(os.path.join(host, "victim"), "w") as f:
                f.write("the host's file\n")
            before = snapshot(host)

            def placed(name):
                return name.replace("HOST", host.lstrip("/"))
            layers = [[(placed(n), kind, {"to": placed(to), "data": b"x"})
                       for n, kind, to in layer] for layer in layers]
            archive = os.path.join(work, "gen.tar")
            if len(layers) == 1:
                with open(archive, "wb") as f:
                    f.write(make_tar(layers[0]))
            else:
                make_docker_save(archive, layers, tag="gen:1")
            paths = Paths(data=os.path.join(work, "data"))
            try:
                image_archive.import_archive(paths, archive, "gen")
                refused = False
            except PyctrError as e:
                assert "\n" not in str(e)
                refused = True
            event("refused" if refused else "imported")    # both must be common
            assert snapshot(host) == before
            left = sorted(os.listdir(paths.images)) if os.path.isdir(paths.images) else []
            assert [n for n in left if n != ".lock"] == ([] if refused else ["gen"])
        finally:
            shutil.rmtree(work)
else:
    def test_import_of_generated_archives_stays_inside():
        pytest.skip("needs hypothesis")


def test_failed_import_on_a_terminal_leaves_only_its_error(tmp_path):
    """On a terminal the progress line is rewritten in place; a failure clears it."""
    import pty
    archive = tmp_path / "dotdot.tar"
    archive.write_bytes(make_tar([("etc", "dir"), ("etc/../../escape", "file")]))
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen([PY, "-m", "pyctr", "--data", str(tmp_path), "image", "import",
                                 str(archive)], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=secondary)
        os.close(secondary)
        secondary = None
        assert proc.wait(timeout=120) == 125
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:                         # EIO: the writer is gone
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        if secondary is not None:
            os.close(secondary)
    # What stays on the screen: the line after the last clear.
    screen = seen.decode().rsplit("\r\x1b[K", 1)[-1]
    assert screen.startswith("pyctr: ") and "points outside" in screen, seen
    assert screen.count("\n") == 1 and screen.endswith("\n"), seen


def test_import_not_a_tarball(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_text("this is not a tar archive\n" * 50)
    fails_cleanly(pyctr(tmp_path, "image", "import", str(junk)), "not a tar archive")
    assert store_entries(tmp_path) == []


@pytest.mark.parametrize("gz", [False, True])
def test_import_truncated_tarball(tmp_path, gz):
    whole = make_tar([("big%d" % i, "file", {"data": os.urandom(100000)}) for i in range(4)], gz=gz)
    archive = tmp_path / ("cut.tar.gz" if gz else "cut.tar")
    archive.write_bytes(whole[:len(whole) // 2])
    fails_cleanly(pyctr(tmp_path, "image", "import", str(archive)), "corrupt tar archive")
    assert store_entries(tmp_path) == []


@pytest.mark.parametrize("files,words", [
    ({"manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]),
      "c.json": '{"config": {"Env": "PATH=/bin"}}', "l.tar": ""}, ["malformed image metadata"]),
    ({"oci-layout": "{}", "index.json": '{"manifests": ["nonsense"]}'},
     ["malformed image metadata"]),
    ({"oci-layout": "{}", "index.json": "{broken"}, ["malformed index.json"]),
    ({"manifest.json": json.dumps([{"Config": "c.json", "Layers": ["l.tar"]}]),
      "c.json": "{}", "l.tar": "x" * 2048}, ["layer l.tar is not a tar archive"]),
])
def test_import_malformed_image_archives(tmp_path, files, words):
    archive = tmp_path / "bad.tar"
    with tarfile.open(archive, "w") as out:
        for name, text in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(text)
            out.addfile(ti, io.BytesIO(text.encode()))
    fails_cleanly(pyctr(tmp_path, "image", "import", str(archive)), *words)
    assert store_entries(tmp_path) == []


def test_import_missing_file(tmp_path):
    fails_cleanly(pyctr(tmp_path, "image", "import", str(tmp_path / "nope.tar")), "no such file")
    assert store_entries(tmp_path) == []


@root_only
def test_import_corrupt_oci_blob(tmp_path):
    archive = tmp_path / "corrupt.tar"
    make_oci(archive, [LAYER1, LAYER2], corrupt=True)
    fails_cleanly(pyctr(tmp_path, "image", "import", str(archive)), "digest mismatch")
    assert store_entries(tmp_path) == []


# --------------------------------------------------------------------------- rm, API

@root_only
def test_rm_removes_and_missing_is_an_error(tmp_path):
    archive = tmp_path / "small.tar"
    archive.write_bytes(make_tar([("etc", "dir"), ("etc/x", "file", {"data": b"x"})]))
    assert pyctr(tmp_path, "image", "import", str(archive)).returncode == 0
    assert store_entries(tmp_path) == ["small"]
    # One missing name: nothing at all is removed.
    fails_cleanly(pyctr(tmp_path, "image", "rm", "small", "ghost"), "no such image", "ghost")
    assert store_entries(tmp_path) == ["small"]
    r = pyctr(tmp_path, "image", "rm", "small")
    assert r.returncode == 0, r.stderr
    assert store_entries(tmp_path) == []
    assert pyctr(tmp_path, "image", "ls", "-q").stdout == ""
    fails_cleanly(pyctr(tmp_path, "image", "rm", "small"), "no such image")


@root_only
def test_rm_refuses_an_image_in_use(tmp_path, built):
    r = pyctr(tmp_path, "image", "import", "--name", "busy", str(_tar_of(built, tmp_path)))
    assert r.returncode == 0, r.stderr
    rootfs = tmp_path / "images/busy/rootfs"
    # A process whose root is the image, as a container's is.
    proc = subprocess.Popen(["chroot", str(rootfs), "/bin/sleep", "60"])
    try:
        fails_cleanly(pyctr(tmp_path, "image", "rm", "busy"), "in use", str(proc.pid))
        assert (rootfs / "bin/busybox").exists()
    finally:
        proc.kill()
        proc.wait()
    assert pyctr(tmp_path, "image", "rm", "busy").returncode == 0


@root_only
def test_image_under_a_containers_overlay_survives_rm_and_rebuild(tmp_path):
    """`pyctr run` stacks an overlay on the image in the container's own mount namespace.
    While it runs: rm refuses, and a rebuild swaps the new image in but keeps the old files
    the container is using until it is gone."""
    assert pyctr(tmp_path, "image", "build", "busybox").returncode == 0
    lower = tmp_path / "images/busybox/rootfs"
    (lower / "marker").write_text("old")
    ovl, ready = tmp_path / "ovl", tmp_path / "ready"
    ovl.mkdir()
    script = ("mount -t tmpfs tmpfs {o} && mkdir {o}/u {o}/w {o}/m && "
              "mount -t overlay overlay -o lowerdir={l},upperdir={o}/u,workdir={o}/w {o}/m && "
              "touch {r} && exec sleep 120").format(o=ovl, l=lower, r=ready)
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
    try:
        for _ in range(300):                    # bounded: 30 s at most
            if ready.exists() or holder.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), "could not set up the overlay"
        fails_cleanly(pyctr(tmp_path, "image", "rm", "busybox"), "in use")
        r = pyctr(tmp_path, "image", "build", "busybox")
        assert r.returncode == 0, r.stderr
        assert not (lower / "marker").exists()                  # the store has the new image
        parked = [n for n in store_entries(tmp_path) if n.startswith(".old-busybox-")]
        assert len(parked) == 1                                 # the old one waits...
        seen = subprocess.run(["nsenter", "-t", str(holder.pid), "-m", "cat",
                               str(ovl / "m/marker")], capture_output=True, text=True)
        assert seen.stdout == "old"                             # ...and is still in use
        # Other store operations clear leftovers, but not a copy still in use.
        recipe = tmp_path / "tiny.toml"
        recipe.write_text('name = "tiny"\n[base]\nkind = "empty"\n')
        assert pyctr(tmp_path, "image", "build", str(recipe)).returncode == 0
        assert [n for n in store_entries(tmp_path) if n.startswith(".old-")] == parked
    finally:
        holder.kill()
        holder.wait()
    # Once the container is gone, the next store operation clears the parked copy.
    assert pyctr(tmp_path, "image", "build", str(recipe)).returncode == 0
    assert store_entries(tmp_path) == ["busybox", "tiny"]
    assert pyctr(tmp_path, "image", "rm", "busybox", "tiny").returncode == 0
    assert store_entries(tmp_path) == []


def _tar_of(built, tmp_path):
    tar = tmp_path / "bb.tar"
    subprocess.run(["tar", "-C", str(built / "images/busybox/rootfs"), "-cf", str(tar), "."],
                   check=True)
    return tar


def test_lookup_returns_none_for_absent_or_invalid_names(tmp_path):
    paths = Paths(root=str(tmp_path / "run"), config=str(tmp_path / "etc"), data=str(tmp_path))
    assert images.lookup(paths, "busybox") is None
    assert images.lookup(paths, "../etc") is None
    assert images.lookup(paths, "/some/rootfs") is None
    assert images.lookup(paths, "") is None


def test_lookup_reads_image_json(tmp_path):
    d = tmp_path / "images" / "demo"
    (d / "rootfs").mkdir(parents=True)
    (d / "image.json").write_text(json.dumps({"name": "demo", "env": ["A=1"], "cmd": ["/x"],
                                              "workdir": "/w", "user": "5"}))
    img = images.lookup(Paths(data=str(tmp_path)), "demo:latest")
    assert (img.name, img.rootfs, img.env, img.cmd, img.workdir, img.user) == \
        ("demo", str(d / "rootfs"), ["A=1"], ["/x"], "/w", "5")
    (d / "image.json").write_text("{broken")
    with pytest.raises(PyctrError, match="malformed image.json"):
        images.lookup(Paths(data=str(tmp_path)), "demo")


def test_module_import_is_cheap():
    """`pyctr run` imports pyctr.images for lookup(): none of what building or importing
    needs may come with it."""
    code = ("import sys, pyctr.images; "
            "print(' '.join(m for m in ('tarfile', 'toml', 'tomllib', 'json', 'subprocess', "
            "'argparse', 'shutil', 'pyctr.images.recipes', 'pyctr.images.archive', "
            "'pyctr.images.cli') if m in sys.modules))")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == ""


def test_package_names_resolve_on_first_use():
    from pyctr.images import recipes
    assert images.build is recipes.build
    assert images.import_archive is image_archive.import_archive
    with pytest.raises(AttributeError):
        images.no_such_name


@pytest.fixture(scope="module")
def elves(tmp_path_factory):
    """The same tiny C program linked statically and dynamically."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    d = tmp_path_factory.mktemp("elf")
    (d / "hello.c").write_text("int main(void) { return 0; }\n")
    for kind, flags in (("static", ["-static"]), ("dynamic", [])):
        r = subprocess.run(["gcc", "-O0", *flags, "-o", str(d / kind), str(d / "hello.c")],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pytest.skip("gcc cannot link %s here: %s" % (kind, r.stderr.strip()[-200:]))
        assert subprocess.run([str(d / kind)]).returncode == 0
    return d


def test_is_static_elf(elves, tmp_path):
    assert images.is_static_elf(str(elves / "static"))
    assert not images.is_static_elf(str(elves / "dynamic"))
    # A static binary cut short is not one (its program headers are gone).
    cut = tmp_path / "cut"
    cut.write_bytes((elves / "static").read_bytes()[:40])
    assert not images.is_static_elf(str(cut))
    assert not images.is_static_elf("/etc/passwd")
    assert not images.is_static_elf("/nonexistent")


def test_is_static_elf_knows_debians_busybox():
    owner = subprocess.run(["dpkg-query", "-S", "/bin/busybox"], capture_output=True, text=True)
    if not owner.stdout.startswith("busybox-static:"):
        pytest.skip("Debian's busybox-static is not installed")
    assert images.is_static_elf("/bin/busybox")


@root_only
def test_ensure_default_builds_once(tmp_path):
    paths = Paths(root=str(tmp_path / "run"), config=str(tmp_path / "etc"), data=str(tmp_path))
    img = images.ensure_default(paths)
    assert img.name == "busybox" and os.path.exists(os.path.join(img.rootfs, "bin/sh"))
    created = open(os.path.join(img.path, "image.json")).read()
    assert images.ensure_default(paths).rootfs == img.rootfs
    assert open(os.path.join(img.path, "image.json")).read() == created   # not rebuilt


# --------------------------------------------------------------------------- slow

@pytest.mark.slow
@root_only
def test_debootstrap_base(tmp_path):
    if not (shutil.which("mmdebstrap") or shutil.which("debootstrap")):
        pytest.skip("needs mmdebstrap or debootstrap")
    recipe = tmp_path / "deb.toml"
    recipe.write_text('name = "debmin"\n[base]\nkind = "debootstrap"\nsuite = "bookworm"\n'
                      'variant = "minbase"\npackages = ["iproute2"]\n'
                      'exclude = ["/var/cache/apt/archives", "/usr/share/doc"]\n'
                      '[config]\ncmd = ["/bin/bash"]\n')
    r = pyctr(tmp_path, "image", "build", str(recipe), timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    img = images.lookup(Paths(data=str(tmp_path)), "debmin")
    out = subprocess.run(["chroot", img.rootfs, "/bin/sh", "-c", "ip -V && cat /etc/debian_version"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "iproute2" in out.stdout
    assert store_entries(tmp_path) == ["debmin"]
    # The tool's /proc, /sys... mounts lived in a private namespace: none leaked here.
    assert str(tmp_path) not in open("/proc/self/mountinfo").read()
