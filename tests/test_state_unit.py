"""Records read in bulk: `pyctr ps` from raw records, statuses corrected
for processes that died unrecorded."""
import os
import subprocess
import sys

import pytest

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
