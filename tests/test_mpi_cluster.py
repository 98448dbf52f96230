"""MPI across containers on two simulated nodes, the way the study ran it:
one long-lived container per node (pyctr run -d, image `mpi`), once on a
bridge holding the node's NIC (veth) and once on a macvlan on it; mpirun /
mpiexec on node A's host side start the ranks through `pyctr exec` as the
remote agent (no sshd). Asserted: the ranks ran in the two containers'
network namespaces (not the nodes', not one), and their traffic crossed the
containers' interfaces (counters). Also `pyctr mpi-doctor` on such
containers (`pyctr bench paper --quick` itself: tests/test_paper.py).

Needs root, the MPI libraries on the host (openmpi-bin, libopenmpi-dev,
mpich, libmpich-dev) and the `mpi` image (built here once if missing:
mmdebstrap, about a minute with a good mirror)."""
import json
import os
import subprocess
import sys
import types

import pytest

from conftest import root_only
from test_mpi_netns import RUN_AS_ROOT, compile_ring, ranks

pytestmark = [root_only, pytest.mark.root, pytest.mark.slow]

PYCTR = [sys.executable, "-m", "pyctr"]






@pytest.fixture(params=["veth", "macvlan"])
def cluster(request, mpi_data, work):
    """Two nodes, one container each, as `pyctr bench paper` makes them."""
    from pyctr.bench import paper
    from pyctr.paths import Paths
    from pyctr.testbed import Testbed
    with Testbed(prefix="tmcl", nodes=2, data=mpi_data) as tb:
        cfg = paper.BUILDERS[request.param](tb, work, types.SimpleNamespace(image="mpi"),
                                            Paths(data=mpi_data))
        try:
            setup = cfg.up()
            yield types.SimpleNamespace(kind=request.param, tb=tb, cfg=cfg, setup=setup,
                                        work=work)
        finally:
            cfg.down()


def container_pid(node, name):
    r = node.pyctr("inspect", name, timeout=30)
    assert r.returncode == 0, r.stderr
    state = json.loads(r.stdout)
    return (state[0] if isinstance(state, list) else state)["pid"]


def eth0_bytes(pid):
    r = subprocess.run(["nsenter", "--net=/proc/%d/ns/net" % pid, "ip", "-s", "-j", "link",
                        "show", "eth0"], capture_output=True, text=True, check=True)
    st = json.loads(r.stdout)[0]["stats64"]
    return st["rx"]["bytes"] + st["tx"]["bytes"]


def containers(c):
    out = []
    for node, name in c.cfg.started:
        pid = container_pid(node, name)
        out.append((node, name, pid, os.stat("/proc/%d/ns/net" % pid).st_ino))
    return out


def check_job(c, output, before):
    got = ranks(output)
    cts = containers(c)
    assert got == {0: (cts[0][3], 2), 1: (cts[1][3], 2)}, output
    node_netns = {os.stat("/run/netns/" + n.netns).st_ino for n in c.tb.nodes}
    assert not node_netns & {v[0] for v in got.values()}
    for (_, name, pid, _), b in zip(cts, before):
        # the 1 MiB token went out of and into each container's own interface
        assert eth0_bytes(pid) - b >= 2 << 20, name


def test_open_mpi_job_runs_in_both_containers_over_their_interfaces(cluster):
    c = cluster
    ring = compile_ring(c.work, "mpicc.openmpi")
    before = [eth0_bytes(pid) for _, _, pid, _ in containers(c)]
    out = c.setup.mpirun([ring], cwd=c.work, timeout=120)
    assert out.rc == 0, out.err[-2000:]
    check_job(c, out.out, before)


def test_mpich_job_runs_in_both_containers_over_their_interfaces(cluster):
    c = cluster
    ring = compile_ring(c.work, "mpicc.mpich")
    a = c.tb.nodes[0]
    # hydra's proxies call back to the address of -iface: node A's own, which
    # sits on the bridge (veth) or stays on nic0 (macvlan).
    addrs = json.loads(a.run(["ip", "-j", "addr"]).stdout)
    iface = next(l["ifname"] for l in addrs for x in l.get("addr_info", [])
                 if x.get("local") == a.ip and x.get("prefixlen") == a.prefix)
    before = [eth0_bytes(pid) for _, _, pid, _ in containers(c)]
    p = a.run(["mpiexec.hydra", "-iface", iface, "-launcher", "rsh", "-launcher-exec",
               c.setup.agent, "-hosts", "nodeA,nodeB", "-n", "2", "-wdir", c.work,
               "-genv", "UCX_NET_DEVICES", "eth0", "-genv", "UCX_TLS", "tcp,self", ring],
              timeout=120, env=dict(os.environ, **RUN_AS_ROOT))
    assert p.returncode == 0, p.stderr[-2000:]
    check_job(c, p.stdout, before)


def test_doctor_finds_nothing_wrong_with_the_benchmarks_containers(cluster):
    c = cluster
    node, name = c.cfg.started[0]
    p = node.pyctr("mpi-doctor", name, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok       %s: eth0 10.77.0." % name in p.stdout
    assert p.stdout.strip().endswith("0 problems found")


def test_doctor_says_what_is_wrong_with_a_container_without_network(mpi_data):
    from pyctr.testbed import Testbed
    with Testbed(prefix="tmdr", nodes=1, data=mpi_data) as tb:
        node = tb.nodes[0]
        r = node.pyctr("run", "-d", "--name", "nonet", "--net=none", "mpi", "sleep",
                       "infinity", timeout=120)
        assert r.returncode == 0, r.stderr
        try:
            p = node.pyctr("mpi-doctor", "nonet", timeout=120)
            assert p.returncode == 1
            assert "PROBLEM  nonet has no IPv4 interface that is up" in p.stdout
        finally:
            node.pyctr("rm", "-f", "nonet", timeout=60)
