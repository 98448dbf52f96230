"""The MPI facts pyctr.mpi is built on, checked with real MPI libraries in
real network namespaces (no containers needed): two simulated nodes from
pyctr.testbed, Open MPI and MPICH ranks started on them through a remote
agent that does `ip netns exec` (no sshd), a trap interface like docker0 on
both nodes, PMIx across namespaces, CMA across user namespaces.

Every job is bounded by a timeout; a hang is a failure, never a measurement.
"""
import json
import os
import shutil
import subprocess

import pytest

from conftest import root_only
from pyctr import mpi

pytestmark = [root_only, pytest.mark.root]

RING_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
/* A token of 1 MiB goes once around the ring; each rank says where it ran. */
int main(int argc, char **argv) {
    int rank, size, n = 1 << 20;
    char *buf = calloc(n, 1);
    struct stat st;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) {
        buf[0] = 1;
        MPI_Send(buf, n, MPI_CHAR, 1 % size, 0, MPI_COMM_WORLD);
        MPI_Recv(buf, n, MPI_CHAR, size - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(buf, n, MPI_CHAR, rank - 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        buf[0]++;
        MPI_Send(buf, n, MPI_CHAR, (rank + 1) % size, 0, MPI_COMM_WORLD);
    }
    stat("/proc/self/ns/net", &st);
    printf("rank %d/%d netns %lu token %d\n", rank, size, (unsigned long)st.st_ino, buf[0]);
    MPI_Finalize();
    return 0;
}
"""
# Rank 1 answers rank 0's disconnect from inside MPI_Iprobe, and only then
# starts its own: rank 0 has finished its disconnects and waits in MPICH
# 4.0's PMI barrier when rank 1's request arrives (see pyctr.mpi.env).
LATE_C = r"""
#include <mpi.h>
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
    int rank, flag, token = 1;
    struct timespec t0, t;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank == 0) {
        MPI_Send(&token, 1, MPI_INT, 1, 0, MPI_COMM_WORLD);
    } else {
        MPI_Recv(&token, 1, MPI_INT, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            MPI_Iprobe(MPI_ANY_SOURCE, 1, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while (t.tv_sec - t0.tv_sec < 2);
    }
    printf("rank %d finalizing\n", rank);
    fflush(stdout);
    MPI_Finalize();
    return 0;
}
"""
RUN_AS_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def mpich_finalize_fix():
    """hydra's arguments that preload pyctr's MPICH finalize fix into ranks
    running on the host's MPICH (the mpi image preloads it itself)."""
    from pyctr.images.recipes import shipped_file
    return ["-genv", "LD_PRELOAD", shipped_file("pyctr-ucx-finalize.so")]


def compile_ring(tmp, compiler, source=RING_C, name="ring"):
    if not shutil.which(compiler):
        pytest.skip("%s not installed" % compiler)
    src = os.path.join(tmp, name + ".c")
    with open(src, "w") as f:
        f.write(source)
    out = os.path.join(tmp, name + "." + compiler.split(".")[-1])
    subprocess.run([compiler, "-O2", "-o", out, src], check=True, timeout=120)
    return out




@pytest.fixture
def bed():
    from pyctr.testbed import Testbed
    with Testbed(prefix="tmpi", nodes=2) as tb:
        extra = []
        tb.extra_netns = extra
        try:
            yield tb
        finally:
            for ns in extra:
                subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def agent(work, bed):
    """Open MPI / hydra remote agent: HOST is nodeA/nodeB -> that node's netns.
    Each simulated node gets its own Open MPI session directory, as a real node
    would (two orteds sharing one /tmp and host name crash in hwloc)."""
    path = os.path.join(work, "agent.sh")
    lines = ["#!/bin/sh",
             'while [ $# -gt 0 ]; do case $1 in -*) shift;; *) break;; esac; done',
             'host=$1; shift', 'case $host in']
    for host, node in zip(("nodeA", "nodeB"), bed.nodes):
        tmp = os.path.join(work, "tmp-" + host)
        os.makedirs(tmp, exist_ok=True)
        lines.append('  %s) exec ip netns exec %s env OMPI_MCA_orte_tmpdir_base=%s sh -c "$*";;'
                     % (host, node.netns, tmp))
    lines += ["esac", "exit 255", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    os.chmod(path, 0o755)
    return path


def netns_ino(name):
    return os.stat("/run/netns/" + name).st_ino


def nic_bytes(netns, dev="nic0"):
    r = subprocess.run(["ip", "-n", netns, "-s", "-j", "link", "show", dev],
                       capture_output=True, text=True, check=True)
    st = json.loads(r.stdout)[0]["stats64"]
    return st["rx"]["bytes"], st["tx"]["bytes"]


def add_trap(bed):
    """docker0 on every node, same address everywhere: a rank that offers it
    makes its peer connect to itself."""
    for node in bed.nodes:
        node.ip_cmd("link", "add", "docker0", "type", "bridge")
        node.ip_cmd("addr", "add", "172.17.0.1/16", "dev", "docker0")
        node.ip_cmd("link", "set", "docker0", "up")


def ranks(output):
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] == "rank":
            out[int(parts[1].split("/")[0])] = (int(parts[3]), int(parts[5]))
    return out


def run(argv, env=None, timeout=120):
    full = dict(os.environ)
    full.update(RUN_AS_ROOT)
    full.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, env=full, timeout=timeout)


def test_open_mpi_ranks_run_on_both_nodes_and_cross_the_wire(work, bed):
    ring = compile_ring(work, "mpicc.openmpi")
    add_trap(bed)
    a, b = bed.nodes
    env = mpi.mpi_env([mpi.Iface("nic0", a.ip, a.prefix)], "openmpi")
    before = nic_bytes(a.netns)
    p = run(a.argv(["mpirun.openmpi", "-np", "2", "--host", "nodeA:1,nodeB:1", "--bind-to",
                    "none", "--mca", "plm_rsh_agent", agent(work, bed), ring]), env)
    assert p.returncode == 0, p.stderr[-2000:]
    got = ranks(p.stdout)
    assert got == {0: (netns_ino(a.netns), 2), 1: (netns_ino(b.netns), 2)}, p.stdout
    after = nic_bytes(a.netns)
    # the 1 MiB token left node A and came back through its NIC
    assert after[1] - before[1] >= 1 << 20 and after[0] - before[0] >= 1 << 20


def test_mpich_ranks_run_on_both_nodes_and_cross_the_wire(work, bed):
    ring = compile_ring(work, "mpicc.mpich")
    add_trap(bed)
    a, b = bed.nodes
    env = mpi.mpi_env([mpi.Iface("nic0", a.ip, a.prefix)], "mpich")
    genv = []
    for k, v in sorted(env.items()):
        genv += ["-genv", k, v]
    before = nic_bytes(a.netns)
    p = run(a.argv(["mpiexec.hydra", "-iface", "nic0", "-launcher", "rsh", "-launcher-exec",
                    agent(work, bed), "-hosts", "nodeA,nodeB", "-n", "2"] + genv +
                   mpich_finalize_fix() + [ring]))
    assert p.returncode == 0, p.stderr[-2000:]
    assert ranks(p.stdout) == {0: (netns_ino(a.netns), 2), 1: (netns_ino(b.netns), 2)}
    after = nic_bytes(a.netns)
    assert after[1] - before[1] >= 1 << 20 and after[0] - before[0] >= 1 << 20


def test_mpich_rank_waiting_in_finalize_still_answers_a_late_peers_disconnect(work, bed):
    """Without pyctr-ucx-finalize.so this job hangs every time: rank 0 waits
    in the PMI barrier for rank 1, rank 1 for rank 0's answer to its
    disconnect, which sits unread in rank 0's socket."""
    late = compile_ring(work, "mpicc.mpich", LATE_C, "late")
    a, b = bed.nodes
    env = mpi.mpi_env([mpi.Iface("nic0", a.ip, a.prefix)], "mpich")
    genv = []
    for k, v in sorted(env.items()):
        genv += ["-genv", k, v]
    p = run(a.argv(["mpiexec.hydra", "-iface", "nic0", "-launcher", "rsh", "-launcher-exec",
                    agent(work, bed), "-hosts", "nodeA,nodeB", "-n", "2"] + genv +
                   mpich_finalize_fix() + [late]), timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert sorted(p.stdout.split("\n")) == ["", "rank 0 finalizing", "rank 1 finalizing"]


def test_ucx_without_tls_setting_bypasses_the_wire_between_namespaces(work, bed):
    """Why mpi_env sets UCX_TLS: the same MPICH job with UCX's defaults moves
    its 1 MiB through shared memory, though the ranks are in different
    network namespaces."""
    ring = compile_ring(work, "mpicc.mpich")
    a, b = bed.nodes
    before = nic_bytes(a.netns)
    p = run(a.argv(["mpiexec.hydra", "-iface", "nic0", "-launcher", "rsh", "-launcher-exec",
                    agent(work, bed), "-hosts", "nodeA,nodeB", "-n", "2"] +
                   mpich_finalize_fix() + [ring]))
    assert p.returncode == 0, p.stderr[-2000:]
    assert ranks(p.stdout) == {0: (netns_ino(a.netns), 2), 1: (netns_ino(b.netns), 2)}
    after = nic_bytes(a.netns)
    assert after[1] - before[1] < 1 << 20


def child_netns(bed, node, n, ip):
    """A private netns hanging off a bridge `cbr` in `node`: a rank's
    container, without the container."""
    name = "%s-c%d" % (bed.tag, n)
    subprocess.run(["ip", "netns", "add", name], check=True)
    bed.extra_netns.append(name)
    if node.ip_cmd("link", "show", "cbr", check=False).returncode:
        node.ip_cmd("link", "add", "cbr", "type", "bridge")
        node.ip_cmd("link", "set", "cbr", "up")
    node.ip_cmd("link", "add", "hv%d" % n, "type", "veth", "peer", "name", "eth0", "netns", name)
    node.ip_cmd("link", "set", "hv%d" % n, "master", "cbr", "up")
    for args in (("link", "set", "lo", "up"), ("link", "set", "eth0", "up"),
                 ("addr", "add", ip, "dev", "eth0")):
        subprocess.run(["ip", "-n", name] + list(args), check=True)
    return name


def test_pmix_on_loopback_is_unreachable_from_a_private_netns_until_the_launcher_listens_on_the_bridge(work, bed):
    ring = compile_ring(work, "mpicc.openmpi")
    a = bed.nodes[0]
    kids = [child_netns(bed, a, n, "10.88.0.%d/24" % (n + 1)) for n in (0, 1)]
    wrapper = os.path.join(work, "in-child.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\ncase $OMPI_COMM_WORLD_RANK in 0) ns=%s;; *) ns=%s;; esac\n"
                'exec ip netns exec $ns "$@"\n' % tuple(kids))
    os.chmod(wrapper, 0o755)
    rank_env = mpi.mpi_env([mpi.Iface("eth0", "10.88.0.1", 24)], "openmpi")
    argv = a.argv(["mpirun.openmpi", "-np", "2", "--bind-to", "none", wrapper, ring])
    p = run(argv, rank_env)
    assert p.returncode != 0
    assert "Unreachable" in p.stderr       # PMIx at tcp4://127.0.0.1 from another netns
    a.ip_cmd("addr", "add", "10.88.0.254/24", "dev", "cbr")
    host = mpi.launcher_env([{"ifname": "cbr", "ip": "10.88.0.254/24"}], "openmpi")
    assert host["PMIX_MCA_ptl_tcp_if_include"] == "10.88.0.0/24"
    p = run(argv, dict(rank_env, **host))
    assert p.returncode == 0, p.stderr[-2000:]
    assert ranks(p.stdout) == {0: (netns_ino(kids[0]), 2), 1: (netns_ino(kids[1]), 2)}


def test_cma_single_copy_is_refused_across_user_namespaces_and_none_works(work):
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    ring = compile_ring(work, "mpicc.openmpi")
    argv = ["mpirun.openmpi", "-np", "2", "--bind-to", "none", "--mca", "btl", "vader,self",
            "unshare", "--user", "--map-root-user", ring]
    forced = run(argv, {"OMPI_MCA_btl_vader_single_copy_mechanism": "cma"})
    # Forced CMA must fail. Its explanation ("different user namespaces") is
    # usually printed, but Open MPI's help system sometimes loses it under load
    # ("ORTE_ERROR_LOG: Out of resource in show_help.c"), so only the outcome counts.
    assert forced.returncode != 0, forced.stdout
    env = mpi.mpi_env([mpi.Iface("lo", "127.0.0.1", 8)], "openmpi", shared_memory=True)
    ok = run(argv, {"OMPI_MCA_btl_vader_single_copy_mechanism":
                    env["OMPI_MCA_btl_vader_single_copy_mechanism"]})
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "different user namespaces" not in ok.stdout + ok.stderr, ok.stderr[-2000:]
    assert sorted(ranks(ok.stdout)) == [0, 1], ok.stdout


def test_two_virtual_nodes_pin_their_ranks_to_the_same_core_unless_told_not_to(work, bed):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs")
    a = bed.nodes[0]
    show = ["sh", "-c", 'echo "cpus $OMPI_COMM_WORLD_RANK $(grep Cpus_allowed_list '
            '/proc/self/status | cut -f2)"']
    argv = a.argv(["mpirun.openmpi", "-np", "2", "--host", "nodeA:1,nodeB:1", "--mca",
                   "plm_rsh_agent", agent(work, bed)] + show)

    def cpus(p):
        assert p.returncode == 0, p.stderr[-2000:]
        return sorted(l.split()[2] for l in p.stdout.splitlines() if l.startswith("cpus "))

    pinned = cpus(run(argv))
    assert len(pinned) == 2 and pinned[0] == pinned[1] and "-" not in pinned[0]
    env = mpi.mpi_env([mpi.Iface("nic0", a.ip, a.prefix)], "openmpi")
    free = cpus(run(argv, {"OMPI_MCA_hwloc_base_binding_policy":
                           env["OMPI_MCA_hwloc_base_binding_policy"]}))
    assert all(c != pinned[0] for c in free)
