"""pyctr.slurm without root or Slurm: what a container of an srun task gets
from the task's environment (the real thing is tests/test_slurm.py)."""
import os

import pytest

from pyctr import slurm, specgen
from pyctr.errors import PyctrError
from pyctr.paths import Paths

# What slurmstepd gives task 1 of a 2-node, 3-task --mpi=pmi2 step (Slurm 22.05).
TASK_ENV = {"SLURM_JOB_ID": "7", "SLURM_STEP_ID": "0", "SLURM_PROCID": "1",
            "SLURM_LOCALID": "1", "SLURM_NODEID": "0", "SLURM_STEP_TASKS_PER_NODE": "2,1",
            "SLURM_STEP_NODELIST": "n[1-2]", "PMI_FD": "11", "PMI_RANK": "1", "PMI_SIZE": "3"}


@pytest.fixture
def pmi_env():
    """TASK_ENV with PMI_FD naming a real socket (pyctr passes only a socket
    or pipe on), as slurmstepd hands one to each --mpi=pmi2 task."""
    import socket
    ours, theirs = socket.socketpair()
    yield dict(TASK_ENV, PMI_FD=str(theirs.fileno()))
    ours.close()
    theirs.close()


def build(tmp_path, monkeypatch, environ, **opts):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    for key in [k for k in os.environ if k.startswith(("SLURM", "PMI"))]:
        monkeypatch.delenv(key)
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    opts = dict({"target": str(rootfs), "command": ["true"]}, **opts)
    return specgen.build(Paths(root=str(tmp_path / "state"), config=str(tmp_path / "cfg"),
                               data=str(tmp_path / "data")), opts)


def test_tasks_per_node_reads_slurms_compressed_counts():
    assert slurm.tasks_per_node("1(x2)") == [1, 1]
    assert slurm.tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert slurm.tasks_per_node("4") == [4]


def test_not_an_srun_task_is_none():
    assert slurm.task({}) is None
    assert slurm.task({"SLURM_JOB_ID": "7"}) is None  # a batch script, not a step's task


def test_task_from_environment():
    t = slurm.task(TASK_ENV)
    assert (t.job, t.step, t.rank, t.local_rank, t.node_index, t.tasks_on_node, t.mpi,
            t.pmi_fd) == ("7", "0", 1, 1, 0, 2, "pmi2", 11)
    assert slurm.task(dict(TASK_ENV, SLURM_NODEID="1")).tasks_on_node == 1
    pmix = {k: v for k, v in TASK_ENV.items() if not k.startswith("PMI_")}
    assert slurm.task(dict(pmix, PMIX_RANK="1")).mpi == "pmix"
    assert slurm.task(pmix).mpi is None


def test_malformed_task_environment_is_one_error():
    with pytest.raises(PyctrError, match="malformed Slurm task environment"):
        slurm.task(dict(TASK_ENV, SLURM_STEP_TASKS_PER_NODE="2(xx)"))


def test_container_of_a_task_gets_slurm_variables_and_shares_the_node(tmp_path, monkeypatch,
                                                                       pmi_env):
    spec = build(tmp_path, monkeypatch, pmi_env)
    fd = int(pmi_env["PMI_FD"])
    env = dict(e.split("=", 1) for e in spec.process.env)
    assert env["SLURM_PROCID"] == "1" and env["SLURM_JOB_ID"] == "7" and env["PMI_FD"] == str(fd)
    assert fd in spec.process.pass_fds
    assert spec.slurm.node_shared
    assert spec.annotations["pyctr.mpi"] == "launched by srun --mpi=pmi2"
    types = [ns.type for ns in spec.namespaces]
    assert "ipc" not in types and "pid" not in types and "network" in types
    assert not spec.process.init  # not PID 1 anyway
    shm = [m for m in spec.mounts if m.destination == "/dev/shm"]
    assert [(m.type, m.source) for m in shm] == [("bind", "/dev/shm")]
    assert slurm.describe(spec.slurm) == (
        "Slurm task 1 of step 7.0 (--mpi=pmi2), PMI-2 fd %d passed on, the node's IPC, PID "
        "and /dev/shm shared by the step's 2 tasks here" % fd)


def test_alone_on_its_node_or_told_otherwise_the_task_is_isolated(tmp_path, monkeypatch,
                                                                  pmi_env):
    alone = build(tmp_path, monkeypatch, dict(pmi_env, SLURM_NODEID="1"))
    told = build(tmp_path, monkeypatch, pmi_env, ipc="private")
    for spec in (alone, told):
        assert not spec.slurm.node_shared
        assert spec.process.init  # pyctr-init as PID 1: scancel's SIGTERM ends the task
        assert {"ipc", "pid"} <= {ns.type for ns in spec.namespaces}
        assert [m.type for m in spec.mounts if m.destination == "/dev/shm"] == ["tmpfs"]


def test_outside_slurm_nothing_changes(tmp_path, monkeypatch):
    spec = build(tmp_path, monkeypatch, {})
    assert spec.slurm is None
    assert not any(e.startswith("SLURM_") for e in spec.process.env)


def test_oci_verbs_take_the_id_before_the_options_as_slurm_writes_them(tmp_path):
    """oci.conf's `create %n.%u.%j.%s.%t -b %b`: the bundle option is read
    after the ID too (here it names no bundle, which is the error)."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "pyctr", "--root=%s" % (tmp_path / "state"),
                        "create", "n1.root.7.0.0", "-b", str(tmp_path / "nosuch")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 125, r.stderr
    assert "unexpected argument" not in r.stderr and str(tmp_path / "nosuch") in r.stderr, \
        r.stderr
