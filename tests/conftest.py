"""Shared fixtures. Integration tests run real containers as root; each test
gets its own pyctr world (state root) and everything it made is removed by
the fixture finalizers even when the test fails."""
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IS_ROOT = os.geteuid() == 0
root_only = pytest.mark.skipif(not IS_ROOT, reason="needs root and real namespaces")


# PYCTR_TEST_COMMAND=/path/to/pyctr runs the CLI through that command (an
# installed launcher, e.g. pyctr-front: pyctr.launcher) instead of
# `python -m pyctr`: the same tests then check the command users run.
COMMAND = [os.environ["PYCTR_TEST_COMMAND"]] if os.environ.get("PYCTR_TEST_COMMAND") \
    else [sys.executable, "-m", "pyctr"]


class Pyctr:
    """Runs the pyctr CLI in one world (its own --root, shared images)."""

    def __init__(self, root, data, config, command=None):
        self.root, self.data, self.config = root, data, config
        self.command = command or COMMAND

    def argv(self, *args):
        return [*self.command, "--root", self.root, "--data", self.data,
                "--config", self.config, *args]

    def __call__(self, *args, timeout=60, check=False, input=None, env=None):
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                           input=input, env=env)
        if check and p.returncode != 0:
            raise AssertionError("pyctr %s -> %d\n%s%s" % (" ".join(args), p.returncode,
                                                            p.stdout, p.stderr))
        return p

    def popen(self, *args, **kw):
        return subprocess.Popen(self.argv(*args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def containers(self):
        """Names on record. A `.new-PID-*` entry is a reservation on its way
        to its name (state.StateStore.reserve), gc's if its maker died."""
        d = os.path.join(self.root, "containers")
        return sorted(n for n in os.listdir(d) if not n.startswith(".")) \
            if os.path.isdir(d) else []

    def cleanup(self):
        for name in self.containers():
            self("rm", "-f", name, timeout=30)
        self("gc", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def image_data():
    """A data dir holding the busybox image, built once per test session.
    PYCTR_TEST_DATA names one to reuse (and keep) across sessions; otherwise
    a scratch dir is made and removed at the end, so the tests leave no
    images behind (the mpi image alone is 0.9 GB)."""
    if not IS_ROOT:
        pytest.skip("needs root")
    data = os.environ.get("PYCTR_TEST_DATA")
    keep = bool(data)
    if not data:
        import tempfile
        data = tempfile.mkdtemp(prefix="pyctr-test-data-", dir="/var/tmp")
        os.chmod(data, 0o755)  # an image's rootfs must be reachable from containers
    rootfs = os.path.join(data, "images", "busybox", "rootfs")
    if not os.path.isfile(os.path.join(rootfs, "bin", "busybox")):
        subprocess.run([sys.executable, "-m", "pyctr", "--data", data, "image", "build",
                        "busybox"], check=True, timeout=600)
    yield data
    if not keep:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def mpi_data(image_data):
    """The test data dir with the mpi image too: built once if missing or made
    before this pyctr's MPICH finalize fix (about a minute and 0.9 GB from the
    Debian mirror). A failed build fails the tests."""
    from pyctr.images.recipes import shipped_file
    rootfs = os.path.join(image_data, "images", "mpi", "rootfs")
    if not (os.path.exists(os.path.join(rootfs, "usr", "bin", "mpirun.openmpi")) and
            same_file_content(os.path.join(rootfs, FINALIZE_FIX_IN_IMAGE.lstrip("/")),
                              shipped_file("pyctr-ucx-finalize.so"))):
        p = subprocess.run([sys.executable, "-m", "pyctr", "--data", image_data, "image",
                            "build", "mpi"], capture_output=True, text=True, timeout=3600)
        assert p.returncode == 0, "pyctr image build mpi failed:\n%s" % p.stderr[-2000:]
    return image_data


# Where the mpi image (images/mpi.toml) keeps the MPICH finalize fix.
FINALIZE_FIX_IN_IMAGE = "/usr/local/lib/pyctr/pyctr-ucx-finalize.so"


def same_file_content(a, b):
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except FileNotFoundError:
        return False


@pytest.fixture
def work():
    """A scratch directory containers can read (0755, under /var/tmp)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="pyctr-test-", dir="/var/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def worlds_dir():
    """Parent of every test's pyctr world; gone when the session ends."""
    path = "/run/pyctr-test-%d" % os.getpid()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pyctr(image_data, worlds_dir):
    tag = uuid.uuid4().hex[:8]
    world = Pyctr(root="%s/%s" % (worlds_dir, tag), data=image_data,
                  config="%s/config-%s" % (worlds_dir, tag))
    yield world
    world.cleanup()
    shutil.rmtree(world.config, ignore_errors=True)


@pytest.fixture
def rootfs(image_data):
    return os.path.join(image_data, "images", "busybox", "rootfs")


def groups_of(world):
    """Every cgroup directory pyctr made for this world (in any hierarchy)."""
    from pyctr import cgroups
    from pyctr.paths import Paths
    groups = cgroups.world_groups(Paths(root=world.root), cgroups.detect())
    return sorted(d for dirs in groups.values() for d in dirs.values())


def cgroup_homes():
    """Where pyctr's default groups are, any world's: {directory: [the
    groups in it]} for each that holds one, and for a v1 cpuset
    hierarchy's pyctr/ whenever it exists (there every directory counts,
    a bucket's as "bXX/name"; an empty bucket is no group)."""
    from pyctr import cgroups
    found = {}
    for h in cgroups.detect().hierarchies:
        home = cgroups._home(h)
        if not os.path.isdir(home):
            continue
        ours = cgroups._v1_cpuset(h)  # pyctr/: made for the groups
        groups = []
        for above in cgroups._parents(h):
            groups += [os.path.relpath(os.path.join(above, n), home)
                       for n in os.listdir(above) if os.path.isdir(os.path.join(above, n))
                       and not cgroups._is_bucket(os.path.join(above, n))
                       and (ours or n.startswith(cgroups.PREFIX))]
        if groups or ours:
            found[home] = groups
    return found


def until(fact, what, timeout=60, why=lambda: ""):
    """Poll for a fact a process makes true in its own time (the deadline
    is only against a hang)."""
    deadline = time.monotonic() + timeout
    while not fact():
        assert time.monotonic() < deadline, "timed out waiting for %s %s" % (what, why())
        time.sleep(0.05)


def one_line_error(p):
    """A failure the way users must see it: one line, no traceback."""
    err = p.stderr.strip()
    assert err.startswith("pyctr: "), p.stderr
    assert len(err.splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return err


def host_leftovers(world):
    """What a container could leave on the host: mounts naming the world's
    state dir and processes whose cwd/root is inside it."""
    with open("/proc/self/mounts") as f:
        mounts = [line for line in f if world.root in line]
    return mounts


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """After pytest removed a passing session's temporary directory
    (tmp_path_retention_policy), remove what it keeps around it: the
    dangling pytest-current link, and /tmp/pytest-of-USER once empty."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None)
    if base is None or base.exists():
        return
    current = base.parent / "pytest-current"
    if current.is_symlink() and not current.exists():
        current.unlink()
    try:
        base.parent.rmdir()
    except OSError:
        pass  # another session's directories are in it
