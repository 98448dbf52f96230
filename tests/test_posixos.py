"""pyctr.posixos, the os that pyctr's start-up path imports instead of os
(whose import was a run's costliest): the same answers as os and
posixpath, every name those modules use is there, and the installed
command's run, exec, ps, rm and an engine's create import no os at all."""
import ast
import glob
import os
import posixpath
import subprocess
import sys
import tempfile

import pytest

from conftest import root_only
from pyctr import launcher, posixos

PATHS = ["", "/", "//", "///", "a", "a/", "/a/b", "/a/b/", "a//b", "/a/./b/../c", "../x",
         "a/../..", "/..", "./", "//a//b", "///a", "a/b/c/../../d/.", ".."]


@pytest.mark.parametrize("p", PATHS)
def test_path_functions_answer_as_posixpath(p):
    for name in ("dirname", "basename", "normpath", "isabs"):
        assert getattr(posixos.path, name)(p) == getattr(posixpath, name)(p), (name, p)
    if p:
        assert posixos.path.abspath(p) == posixpath.abspath(p)
        assert posixos.path.relpath(p, "/a") == posixpath.relpath(p, "/a")
    for rest in (("b",), ("/b",), ("b/", "c"), ("", "c"), ("b", "")):
        assert posixos.path.join(p, *rest) == posixpath.join(p, *rest), (p, rest)


def test_file_tests_and_realpath_answer_as_os(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "f").write_text("x")
    (tmp_path / "to-d").symlink_to("d")
    (tmp_path / "dangling").symlink_to("nowhere")
    names = ["d", "d/e", "f", "to-d", "to-d/e", "dangling", "missing", "f/x", "d/../f"]
    for name in names:
        p = str(tmp_path / name)
        for test in ("exists", "lexists", "isdir", "isfile", "islink", "realpath"):
            assert getattr(posixos.path, test)(p) == getattr(os.path, test)(p), (test, name)


def test_makedirs_and_walk_as_os(tmp_path):
    top = str(tmp_path / "t")
    posixos.makedirs(top + "/a/b/c", 0o755)
    posixos.makedirs(top + "/a/b", exist_ok=True)
    with pytest.raises(FileExistsError):
        posixos.makedirs(top + "/a/b")
    os.mkdir(top + "/x")
    open(top + "/a/file", "w").close()
    os.symlink(top + "/a", top + "/link-to-a")

    def walked(walk, **kw):
        return [(t, sorted(d), sorted(f)) for t, d, f in walk(top, **kw)]
    for topdown in (True, False):
        assert walked(posixos.walk, topdown=topdown) == walked(os.walk, topdown=topdown)
    # topdown: removing a directory from the list prunes it, as os.walk
    pruned = []
    for t, dirs, _ in posixos.walk(top):
        pruned.append(t)
        dirs[:] = [d for d in dirs if d != "a"]
    assert pruned == [top, top + "/x"]  # and a symlink is listed, never entered


def test_environ_changes_reach_children_and_a_later_os():
    script = """
import sys
sys.path.insert(0, sys.argv[1])
from pyctr import posixos
assert "os" not in sys.modules
posixos.environ["PYCTR_T_SET"] = "1"
posixos.environ.pop("PYCTR_T_GONE")
assert posixos.environ.pop("PYCTR_T_GONE", "none") == "none"
import os, subprocess
print(os.environ.get("PYCTR_T_SET"), os.environ.get("PYCTR_T_GONE"))
print(subprocess.run(["sh", "-c", "echo $PYCTR_T_SET ${PYCTR_T_GONE:-unset}"],
                     capture_output=True, text=True, env=None).stdout.strip())
"""
    here = os.path.dirname(os.path.dirname(posixos.__file__))
    env = dict(os.environ, PYCTR_T_GONE="x")
    p = subprocess.run([sys.executable, "-S", "-c", script, here], capture_output=True,
                       text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["1 None", "1 unset"]


def _uses_of_os(source):
    """The os.X and os.path.X names a module that imports posixos as os uses."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "os":
            names.add(node.attr)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and isinstance(node.value.value, ast.Name) and node.value.value.id == "os" \
                and node.value.attr == "path":
            names.add("path." + node.attr)
    return names


def test_every_name_the_start_up_modules_use_is_there():
    """A module that imports posixos as os and names os.X that posixos has
    not fails on the first call, maybe on a rare path: found here, by
    reading the modules, not by running every path."""
    package = os.path.dirname(posixos.__file__)
    users, missing = [], []
    for path in sorted(glob.glob(package + "/**/*.py", recursive=True)):
        with open(path) as f:
            source = f.read()
        if "from pyctr import posixos as os" not in source:
            continue
        users.append(os.path.relpath(path, package))
        for name in sorted(_uses_of_os(source)):
            where = posixos.path if name.startswith("path.") else posixos
            if not hasattr(where, name.rpartition(".")[2]):
                missing.append("%s: os.%s" % (users[-1], name))
    assert "container.py" in users and "cli.py" in users
    assert missing == []


def _imports(stderr):
    """The modules PYTHONPROFILEIMPORTTIME's listing names."""
    imports = [line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
               if line.startswith("import time:") and "|" in line]
    assert "pyctr.cli" in imports, stderr  # the listing is there
    return set(imports)


@root_only
def test_the_installed_commands_start_path_imports_no_os(pyctr, rootfs, tmp_path):
    """PYTHONPROFILEIMPORTTIME makes Python list every import on stderr."""
    if launcher.front_binary() is None:
        pytest.skip("pyctr-front not built (pip install .)")
    command = str(tmp_path / "pyctr")
    launcher.write(command)
    from conftest import Pyctr
    world = Pyctr(pyctr.root, pyctr.data, pyctr.config, [command])
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    heavy = {"os", "_collections_abc", "posixpath"}
    world("run", "-d", "--name", "lean", "busybox", "sleep", "60", check=True)
    try:
        for verb in (("run", "--rm", "busybox", "true"), ("exec", "lean", "true"), ("ps",),
                     ("rm", "-f", "lean")):
            p = world(*verb, env=env, check=True)
            assert not heavy & _imports(p.stderr), verb
        # an engine's create: its init keeps create's stdio, so a file, not a pipe
        bundle = tmp_path / "bundle"
        bundle.mkdir()
        (bundle / "config.json").write_text(world("spec", rootfs, "true", check=True).stdout)
        with tempfile.TemporaryFile("w+") as err:
            p = subprocess.run(world.argv("create", "--bundle", str(bundle), "lean-oci"),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=err, env=env, timeout=60)
            err.seek(0)
            listing = err.read()
        assert p.returncode == 0, listing
        assert not heavy & _imports(listing), "create"
    finally:
        world("rm", "-f", "lean")
        world("delete", "--force", "lean-oci")
