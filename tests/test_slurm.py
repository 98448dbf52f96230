"""Slurm places pyctr containers: `srun --mpi=pmix|pmi2 ... pyctr run ...` (the
hybrid form), for real, on a simulated Slurm cluster (pyctr.slurmbed: one
slurmd per simulated node, each node a network namespace with its own NIC
on a switch, hostname, /etc/hosts, TmpFS and pyctr state; nothing touches
the machine's interfaces).

A 2-node, 2-rank job with Open MPI (--mpi=pmix: slurmstepd's PMIx server on
the node's 127.0.0.1, relayed into each rank's netns) and with MPICH
(--mpi=pmi2: the PMI-2 fd passed through), each rank a container on veth
(a bridge holding the node's NIC) or macvlan (on the NIC). The ranks must
run in network namespaces of their own, their eth0 byte counters must grow
by the exchanged 10 MiB each way (examples/cluster/ring.c), as must node
A's NIC; and nothing may be left on any node afterwards. Every srun is
bounded by a timeout; when one expires, the test fails with what each
process of the job was waiting on (a hang is a finding, not a slow run).

Needs root, Debian's slurmctld, slurmd, slurm-client and munge, Open MPI and
MPICH with their compilers, and the mpi image (install.sh --test).
"""
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import root_only
from pyctr.slurmbed import SlurmCluster, SrunHang, define_network, missing_tools
from pyctr.testbed import Testbed
from test_cluster import SIZE, assert_crossed, links, nic_bytes, ranks, ring  # noqa: F401

pytestmark = [root_only, pytest.mark.root, pytest.mark.slow,
              pytest.mark.skipif(bool(missing_tools()), reason="needs %s (install.sh --test)"
                                 % ", ".join(missing_tools()))]

SRUN_TIMEOUT = 180    # a run takes seconds; this is the hang detector
MPI = {"openmpi": "--mpi=pmix", "mpich": "--mpi=pmi2"}


@pytest.fixture(scope="module", params=["veth", "macvlan"])
def cluster(request, mpi_data, ring):  # noqa: F811
    """Two Slurm nodes, each with network `seg` defined the same way on
    the node segment 10.77.0.0/24, but with its own address range."""
    kind = request.param
    with Testbed(prefix="psl", nodes=2, data=mpi_data) as tb:
        define_network(tb, "seg", kind)
        with SlurmCluster(tb) as slurm:
            yield kind, tb, slurm
            for node in tb.nodes:
                assert leftovers(slurm, node, kind) == []


def pyctr_run(slurm, *args):
    """The srun command's tail: pyctr with the node's own state and config
    (the same paths on every node, see pyctr.slurmbed)."""
    return [sys.executable, "-m", "pyctr", "--root", slurm.pyctr_root, "--config",
            slurm.pyctr_config, "--data", slurm.testbed.data, "run", "--rm", "--net=seg", *args]


def ring_rank(slurm, ring, program):  # noqa: F811
    return pyctr_run(slurm, "-v", "%s:/ring:ro" % ring, "mpi", "/ring/" + program)


def srun(slurm, args):
    """srun ARGS; a hang fails the test with what each process of the job was doing."""
    try:
        return slurm.srun(args, timeout=SRUN_TIMEOUT)
    except SrunHang as e:
        pytest.fail(str(e))


def leftovers(slurm, node, kind):
    """What a job could leave on a node: processes besides the node's
    daemons (slurmstepd ends a moment after srun returns: it is given a few
    seconds), containers, leases, interfaces, cgroups below the node's own."""
    deadline = time.monotonic() + 15
    while slurm.job_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    left = ["processes:\n%s" % slurm.job_report()] if slurm.job_pids() else []
    p = node.paths
    if os.path.isdir(p.containers) and os.listdir(p.containers):
        left.append("containers %s" % os.listdir(p.containers))
    for top, _, files in os.walk(p.leases):
        left += [os.path.join(top, f) for f in files if f != "lock"]
    expected = ["lo", "nic0"] + (["seg"] if kind == "veth" else [])
    if links(node) != sorted(expected):
        left.append("links %s" % links(node))
    for daemons in slurm.cgroups.get(node.name, []):
        for top, subdirs, _ in os.walk(os.path.dirname(daemons)):
            left += [os.path.join(top, d) for d in subdirs
                     if os.path.join(top, d) != daemons and d != "pyctr"]
    return left


# ------------------------------------------------------------- the hybrid form

@pytest.mark.parametrize("launcher", list(MPI))
def test_srun_two_ranks_in_two_containers_on_two_nodes(cluster, ring, launcher):  # noqa: F811
    kind, tb, slurm = cluster
    a, _ = tb.nodes
    wire = nic_bytes(a)
    r = srun(slurm, [MPI[launcher], "-N2", "-n2"]
             + ring_rank(slurm, ring, "ring." + launcher))
    assert r.returncode == 0, r.stdout + r.stderr
    found = ranks(r.stdout)
    assert_crossed(found, SIZE)
    # Not the nodes' own namespaces: each rank in a container of its own.
    assert not {f["netns"] for f in found.values()} & {
        slurm.node_netns(n) for n in tb.nodes}, found
    assert nic_bytes(a) - wire >= 2 * SIZE
    said = re.search(r"^pyctr: MPI rank in a container: (.*)$", r.stderr, re.M)
    assert said, r.stderr
    assert "Slurm task 0 of step " in said.group(1)
    assert "--mpi=%s" % MPI[launcher].split("=")[1] in said.group(1)
    if launcher == "openmpi":
        assert re.search(r"PMIx server 127\.0\.0\.1:\d+ relayed into the container",
                         said.group(1)), said.group(1)
    else:
        assert re.search(r"PMI-2 fd \d+ passed on", said.group(1)), said.group(1)
    assert "OMPI_MCA_btl=self,tcp" in said.group(1)


def test_srun_ranks_of_one_node_share_memory(cluster, ring):  # noqa: F811
    """Two tasks of one step on one node (-O: the node has one CPU): Open MPI
    uses shared memory between the two containers, so eth0 carries nothing
    of the exchange, and each still has its own network namespace."""
    kind, tb, slurm = cluster
    r = srun(slurm, ["--mpi=pmix", "-N1", "-n2", "-O", "-w", tb.nodes[1].name]
             + ring_rank(slurm, ring, "ring.openmpi"))
    assert r.returncode == 0, r.stdout + r.stderr
    found = ranks(r.stdout)
    assert sorted(found) == [0, 1] and found[0]["netns"] != found[1]["netns"], found
    assert all(f["bytes"] == SIZE and f["rx"] < SIZE and f["tx"] < SIZE
               for f in found.values()), found
    assert "OMPI_MCA_btl=self,vader,tcp" in r.stderr
    assert "the node's IPC, PID and /dev/shm shared by the step's 2 tasks here" in r.stderr


def test_scancel_ends_the_task_containers_and_leaves_nothing(cluster):
    """scancel sends SIGTERM, then SIGKILL after KillWait: the containers'
    workloads (sleep, which as a PID 1 would ignore SIGTERM) end at the
    SIGTERM, and each pyctr removes its container before Slurm's SIGKILL."""
    kind, tb, slurm = cluster
    proc = slurm.srun_popen(["-N2", "-n2", "-J", "cancel-hybrid"]
                            + pyctr_run(slurm, "busybox", "sleep", "600"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + SRUN_TIMEOUT
        while not all(os.path.isdir(n.paths.containers) and os.listdir(n.paths.containers)
                      for n in tb.nodes):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the containers never started"
            time.sleep(0.2)
        job = slurm.run_on(slurm.controller,
                           ["squeue", "-h", "-n", "cancel-hybrid", "-o", "%i"]).stdout.split()
        assert len(job) == 1, job
        slurm.run_on(slurm.controller, ["scancel", job[0]], check=True)
        _, err = proc.communicate(timeout=SRUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "CANCELLED" in err, err
    assert "exit code 143" in err, err   # SIGTERM, not Slurm's SIGKILL
    for node in tb.nodes:
        assert leftovers(slurm, node, kind) == []
