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


def write_package(top, files):
    """pkgx, with a subpackage pkgx.sub: {path below pkgx/: text}."""
    os.makedirs(top / "pkgx" / "sub")
    for name, text in files.items():
        (top / "pkgx" / name).write_text(text)


def make_package(top):
    write_package(top, {"__init__.py": "", "alpha.py": "VALUE = 1\n", "sub/__init__.py": "",
                        "sub/beta.py": "from pkgx.alpha import VALUE\n"})


def output(script, top):
    """The lines `script` prints, run by this Python with pkgx's dir."""
    p = subprocess.run([sys.executable, "-c", script, str(top)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.splitlines()


def imported(top):
    return output(IMPORT, top)


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


LOW_LIMIT = """
import os, sys
sys.path.insert(0, sys.argv[1])
from pyctr import codepack
print(codepack.install(sys.argv[1] + "/pkgx"))
import pkgx.alpha
print(pkgx.alpha.VALUE, type(pkgx.alpha.__spec__.loader).__name__,
      sys.meta_path[0].fd < os.sysconf("SC_OPEN_MAX"))
"""


def test_the_pack_is_used_under_a_low_open_files_limit(tmp_path):
    """A batch system's `ulimit -n 512` (or less): every pyctr command
    ended in a traceback, the pack's fd asked for at 944."""
    import resource
    make_package(tmp_path)
    codepack.build(str(tmp_path / "pkgx"))
    for soft in (512, 64):
        p = subprocess.run([sys.executable, "-c", LOW_LIMIT, str(tmp_path)],
                           capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: resource.setrlimit(
                               resource.RLIMIT_NOFILE,
                               (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])))
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["True", "1", "_Finder", "True"], soft


# -- preloading a verb's modules ------------------------------------------------

PRELOADED = """
import sys
sys.path.insert(0, sys.argv[1])
from pyctr import codepack
codepack.install(sys.argv[1] + "/pkgx")
import pkgx  # as pyctr is, by the time the CLI knows its verb
before = set(sys.modules)
codepack.preload("go")
print(" ".join(m for m in sys.modules if m not in before) or "-")
import pkgx.first, pkgx.second, pkgx.sub.beta
for m in (pkgx.first, pkgx.second, pkgx.sub, pkgx.sub.beta):
    spec = m.__spec__
    print(m.__name__, getattr(m, "VALUE", "-"), type(m.__loader__).__name__,
          type(spec.loader).__name__, spec.name, spec.origin == m.__file__, m.__package__,
          getattr(m, "__path__", "-") == spec.submodule_search_locations)
"""


def make_verb_package(top, first="from pkgx.second import VALUE as V\nVALUE = V + 1\n"):
    """pkgx.first imports pkgx.second; pkgx.sub (a package) and its beta."""
    write_package(top, {"__init__.py": "", "first.py": first, "second.py": "VALUE = 1\n",
                        "other.py": "VALUE = 3\n", "sub/__init__.py": "from pkgx.sub import beta\n",
                        "sub/beta.py": "from pkgx.first import VALUE\n"})


def preloaded(top):
    return output(PRELOADED, top)


def test_a_verbs_modules_are_loaded_in_import_order_as_importlib_would(tmp_path):
    """Each after what its top level imports; the package's own modules
    only (pkgx.sub.beta is imported the usual way, by pkgx.sub); the same
    module attributes as from importlib."""
    make_verb_package(tmp_path)
    codepack.build(str(tmp_path / "pkgx"), preload={"go": ("pkgx.first", "pkgx.sub")})
    lines = preloaded(tmp_path)
    assert lines[0].split() == ["pkgx.second", "pkgx.first", "pkgx.sub", "pkgx.sub.beta"]
    assert lines[1:] == [
        "pkgx.first 2 _Finder _Finder pkgx.first True pkgx False",
        "pkgx.second 1 _Finder _Finder pkgx.second True pkgx False",
        "pkgx.sub - _Finder _Finder pkgx.sub True pkgx.sub True",
        "pkgx.sub.beta 2 _Finder _Finder pkgx.sub.beta True pkgx.sub False"]


def test_modules_that_import_each_other_are_not_preloaded(tmp_path):
    """A cycle's modules see each other half-run: only importlib's own
    order of the imports is right, so that verb gets no order (here the
    cycle goes through pkgx.sub.beta, a module preloading would not run)."""
    make_verb_package(tmp_path, first="VALUE = 2\nimport pkgx.sub\n")
    codepack.build(str(tmp_path / "pkgx"), preload={"go": ("pkgx.first",)})
    lines = preloaded(tmp_path)
    assert lines[0] == "-"
    assert lines[1].split()[:2] == ["pkgx.first", "2"]


def test_a_changed_module_stops_the_preload_and_is_imported_as_usual(tmp_path):
    make_verb_package(tmp_path)
    codepack.build(str(tmp_path / "pkgx"), preload={"go": ("pkgx.first",)})
    (tmp_path / "pkgx" / "second.py").write_text("VALUE = 10\n")
    lines = preloaded(tmp_path)
    assert lines[0] == "-"
    assert lines[1].split()[:3] == ["pkgx.first", "11", "_Finder"]
    assert lines[2].split()[:3] == ["pkgx.second", "10", "SourceFileLoader"]


def test_the_installed_verbs_have_their_orders():
    """A cycle added between pyctr's modules would silently end a verb's
    preloading: the installed pack has each order, every entry in it."""
    import pyctr
    package = os.path.dirname(os.path.abspath(pyctr.__file__))
    if not os.path.exists(codepack.path(package)):
        import pytest
        pytest.skip("pyctr is not a regular install: no pack")
    p = subprocess.run([sys.executable, "-S", "-c", (
        "import sys; sys.path.append(%r)\n"
        "from pyctr import codepack\n"
        "codepack.install(%r)\n"
        "for verb in codepack.PRELOAD:\n"
        "    print(verb + ':' + ' '.join(sys.meta_path[0].orders.get(verb, [])))") % (
            os.path.dirname(package), package)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    orders = dict(line.split(":") for line in p.stdout.splitlines())
    for verb, entries in codepack.PRELOAD.items():
        order = orders[verb].split()
        assert set(entries) <= set(order), verb
        assert order.index("pyctr.spec") < order.index("pyctr.container"), verb
