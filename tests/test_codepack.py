"""The code pack the installed `pyctr` command imports pyctr's modules from
(pyctr.codepack): modules come from it, a changed source is imported the
usual way (stale, never wrong), a pack of another Python is ignored."""
import os
import subprocess
import sys

from pyctr import codepack

IMPORT = """
import sys
sys.path.insert(0, sys.argv[1])
from pyctr import codepack
print(codepack.install(sys.argv[1] + "/pkgx"))
import pkgx.alpha, pkgx.sub.beta
for m in (pkgx.alpha, pkgx.sub.beta):
    print(m.VALUE, type(m.__spec__.loader).__name__, m.__file__)
"""


def make_package(top):
    os.makedirs(top / "pkgx" / "sub")
    for name, text in (("__init__.py", ""), ("alpha.py", "VALUE = 1\n"),
                       ("sub/__init__.py", ""), ("sub/beta.py", "from pkgx.alpha import VALUE\n")):
        (top / "pkgx" / name).write_text(text)


def imported(top):
    p = subprocess.run([sys.executable, "-c", IMPORT, str(top)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def test_modules_come_from_the_pack(tmp_path):
    make_package(tmp_path)
    codepack.build(str(tmp_path / "pkgx"))
    assert imported(tmp_path) == ["True",
                                  "1 _Finder %s" % (tmp_path / "pkgx" / "alpha.py"),
                                  "1 _Finder %s" % (tmp_path / "pkgx" / "sub" / "beta.py")]


def test_a_changed_source_is_imported_as_usual(tmp_path):
    make_package(tmp_path)
    codepack.build(str(tmp_path / "pkgx"))
    (tmp_path / "pkgx" / "alpha.py").write_text("VALUE = 22\n")
    lines = imported(tmp_path)
    assert lines[1].split()[:2] == ["22", "SourceFileLoader"]
    assert lines[2].split()[:2] == ["22", "_Finder"]


def test_a_pack_of_another_python_is_ignored(tmp_path):
    make_package(tmp_path)
    pack = codepack.build(str(tmp_path / "pkgx"))
    with open(pack, "r+b") as f:
        f.write(b"\0\0\0\0")
    lines = imported(tmp_path)
    assert lines[0] == "False" and "_Finder" not in "".join(lines)


CLOSED = """
import os, sys
sys.path.insert(0, sys.argv[1])
from pyctr import codepack
codepack.install(sys.argv[1] + "/pkgx")
finder = sys.meta_path[0]
os.close(finder.fd)                      # as a daemon closes what it inherited
reused = os.open(os.devnull, os.O_RDONLY)
os.dup2(reused, finder.fd)               # and the number now names another file
import pkgx.alpha
print(pkgx.alpha.VALUE, type(pkgx.alpha.__spec__.loader).__name__)
"""


def test_imports_go_on_after_the_process_closed_the_packs_fd(tmp_path):
    """`pyctr netd serve --daemon` closes every inherited fd, the pack's
    too, then imports lazily: it died at its first request."""
    make_package(tmp_path)
    codepack.build(str(tmp_path / "pkgx"))
    p = subprocess.run([sys.executable, "-c", CLOSED, str(tmp_path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "_Finder"]
