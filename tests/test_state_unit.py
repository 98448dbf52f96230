"""Records read in bulk: `pyctr ps` from raw records, statuses corrected
for processes that died unrecorded."""
import os
import subprocess
import sys

import pytest

from pyctr import fileio
from pyctr.paths import Paths
from pyctr.state import ContainerState, StateStore, process_start_time

PYCTR = [sys.executable, "-m", "pyctr"]


@pytest.fixture
def store(tmp_path):
    paths = Paths(root=str(tmp_path / "state"), config=str(tmp_path / "config"),
                  data=str(tmp_path / "data"))
    return paths, StateStore(paths)


def _dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_ps_shows_each_record_once_with_its_live_status(store, tmp_path):
    paths, states = store
    me, start = os.getpid(), process_start_time(os.getpid())
    dead = _dead_pid()
    for name, status, pid, owner in (("alive", "running", me, me), ("died", "running", dead, me),
                                     ("orphan", "creating", 0, dead)):
        states.reserve(ContainerState(
            id=name + "-id", name=name, status=status, pid=pid, owner_pid=owner,
            pid_start=start if pid == me else 1, owner_start=start if owner == me else 1,
            command=["sleep", "9"], created="2026-01-01T00:00:00Z"))
    os.makedirs(os.path.join(paths.containers, "damaged"))
    with open(os.path.join(paths.containers, "damaged", "state.json"), "w") as f:
        f.write("{not json")
    out = subprocess.run(PYCTR + ["--root", paths.root, "ps"], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    rows = {line.split()[1]: line.split()[2] for line in out[1:]}
    assert rows == {"alive": "running", "died": "stopped", "orphan": "stopped"}
    quiet = subprocess.run(PYCTR + ["--root", paths.root, "ps", "-q"], capture_output=True,
                           text=True, check=True).stdout.split()
    assert quiet == ["alive", "died", "orphan"]


def test_peek_gives_none_for_gone_or_damaged_records(store):
    _, states = store
    states.reserve(ContainerState(id="x", name="x"))
    assert states.peek("x")["status"] == "creating"
    assert states.peek("missing") is None
    with open(os.path.join(states.dir("x"), "state.json"), "w") as f:
        f.write("[1, 2")
    assert states.peek("x") is None


@pytest.fixture
def owner():
    """A live process standing for a container's owner (pyctr-monitor)."""
    p = subprocess.Popen(["sleep", "60"])
    yield p.pid, process_start_time(p.pid)
    p.kill()
    p.wait()


def _ended_unrecorded(states, name, owner_pid, owner_start):
    """A record saying `running` for a workload that has exited, its exit
    code not yet recorded: the moment between the owner reaping it and
    writing the code."""
    states.reserve(ContainerState(id=name, name=name, status="running", pid=_dead_pid(),
                                  pid_start=1, owner_pid=owner_pid, owner_start=owner_start))


def test_load_of_an_ended_workload_waits_for_the_code_its_live_owner_records(
        store, owner, monkeypatch):
    _, states = store
    _ended_unrecorded(states, "web", *owner)
    polls = []

    def owner_records(seconds):  # the owner writes the code while load polls
        polls.append(seconds)
        with open(os.path.join(states.dir("web"), "exit"), "w") as f:
            f.write("42\n")
    monkeypatch.setattr("pyctr.state.time.sleep", owner_records)
    state = states.load("web")
    assert (state.live_status(), state.exit_code) == ("stopped", 42) and len(polls) == 1


def test_load_does_not_wait_when_the_owner_is_gone_or_never_records(store, owner, monkeypatch):
    _, states = store
    _ended_unrecorded(states, "crashed", _dead_pid(), 1)
    monkeypatch.setattr("pyctr.state.time.sleep", lambda s: pytest.fail("waited for a dead owner"))
    state = states.load("crashed")
    assert (state.live_status(), state.exit_code) == ("stopped", None)
    monkeypatch.undo()
    _ended_unrecorded(states, "hung", *owner)  # an owner that is stopped, say
    monkeypatch.setattr("pyctr.state.OWNER_RECORDS_WITHIN", 0.05)
    state = states.load("hung")
    assert (state.live_status(), state.exit_code) == ("stopped", None)


def test_removing_a_record_never_follows_a_symlink_out_of_it(store, tmp_path):
    """A container's directory goes whole, nested directories and all; a
    symlink in it (to a directory or a file elsewhere) goes, never what it
    points to."""
    paths, states = store
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    (outside / "file").write_text("x")
    states.reserve(ContainerState(id="a1", name="web", owner_pid=os.getpid(),
                                  owner_start=process_start_time(os.getpid())))
    top = states.dir("web")
    os.makedirs(os.path.join(top, "rootfs", "deep", "er"))
    with open(os.path.join(top, "rootfs", "deep", "er", "f"), "w") as f:
        f.write("x")
    os.symlink(str(outside), os.path.join(top, "link-dir"))
    os.symlink(str(outside / "file"), os.path.join(top, "rootfs", "link-file"))
    states.remove("web")
    assert not os.path.lexists(top)
    assert (outside / "keep").is_dir() and (outside / "file").read_text() == "x"


def test_a_replaced_record_is_the_old_or_the_new_whole_and_no_temporary_stays(tmp_path):
    """fileio.replace, which every record update goes through: a reader
    that opened the old file reads all of it; the directory holds the one
    file afterwards (the exchange's old file and its own name are gone)."""
    target = str(tmp_path / "state.json")
    fileio.replace(target, b'{"status": "creating"}')  # not there yet: made
    with open(target, "rb") as reader:
        fileio.replace(target, b'{"status": "running", "pid": 42}')
        assert reader.read() == b'{"status": "creating"}'
    with open(target, "rb") as f:
        assert f.read() == b'{"status": "running", "pid": 42}'
    assert os.listdir(tmp_path) == ["state.json"]


def test_an_update_never_brings_back_a_removed_containers_directory(store):
    paths, states = store
    states.write_file("gone", "state.json", "{}")
    assert not os.path.exists(states.dir("gone"))


def test_rm_f_and_gc_remove_a_damaged_record_and_leave_what_is_not_one(store, tmp_path):
    """A torn, foreign or binary state.json: `rm -f NAME` removes it, as its
    error says (that same error came back instead), and so does gc. A file
    or a symlink beside the records is no container: gc ended in a
    traceback on the file; neither is listed, followed or removed."""
    paths, _ = store
    base = paths.containers
    for name, data in (("torn", b"{not json"), ("foreign", b'{"id": 5}'), ("binary", b"\xff\xfe")):
        os.makedirs(os.path.join(base, name))
        with open(os.path.join(base, name, "state.json"), "wb") as f:
            f.write(data)
    with open(os.path.join(base, "afile"), "w") as f:
        f.write("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "state.json").write_text("{not json")
    os.symlink(elsewhere, os.path.join(base, "evil"))

    def pyctr(*args):
        return subprocess.run(PYCTR + ["--root", paths.root, *args], capture_output=True,
                              text=True, timeout=60)
    p = pyctr("ps")
    assert (p.returncode, p.stdout.splitlines()[1:], p.stderr) == (0, [], "")
    p = pyctr("rm", "torn")
    assert p.returncode == 125 and "`pyctr rm -f torn` removes it" in p.stderr, p.stderr
    p = pyctr("rm", "-f", "torn")
    assert (p.returncode, p.stderr) == (0, "") and not os.path.exists(os.path.join(base, "torn"))
    p = pyctr("gc")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    assert "container binary (damaged record)" in p.stdout
    assert "container foreign (damaged record)" in p.stdout
    assert sorted(os.listdir(base)) == ["afile", "evil"]
    assert os.listdir(elsewhere) == ["state.json"]
    for name in ("afile", "evil"):
        p = pyctr("rm", "-f", name)
        assert p.returncode == 125 and p.stderr == "pyctr: no such container: %s\n" % name
