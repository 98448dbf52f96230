"""Issue 14: never hand a container an address someone on the wire already
uses. On simulated nodes (pyctr.testbed): two nodes (10.77.0.1, 10.77.0.2)
and a foreign host (10.77.0.3, a netns on the switch, no pyctr) share one
L2; a container's address comes from the NIC's subnet, so without probing
node A's first container would get 10.77.0.2, node B's own address."""
import json
import os
import subprocess

import pytest

from conftest import root_only
from test_network import CLEAN, fails, leftovers, ok, record

pytestmark = [root_only, pytest.mark.root]

FOREIGN = "10.77.0.3"
FIRST_FREE = "10.77.0.4"  # .1 node A, .2 node B, .3 the foreign host


@pytest.fixture
def tb(image_data):
    from pyctr.testbed import Testbed
    with Testbed(nodes=2, data=image_data) as t:
        t.add_host(FOREIGN)
        yield t


def eth0_ip(node, *nets):
    """The address `pyctr run --rm` gives eth0 on these networks."""
    out = ok(node, "run", "--rm", *["--net=" + n for n in nets], "busybox", "ip", "-o", "-4",
             "addr", "show", "eth0").stdout
    return out.split("inet ")[1].split("/")[0]


def conflicts(node, pool):
    d = os.path.join(node.paths.leases, pool)
    return sorted(f.split("-", 1)[1] for f in os.listdir(d) if f.startswith(".conflict-"))


def define(node, name, kind, **keys):
    """A network on the nodes' subnet with nic0 as uplink (lower device)."""
    from pyctr import tomlio
    os.makedirs(node.paths.networks, exist_ok=True)
    tomlio.save(os.path.join(node.paths.networks, name + ".toml"),
                dict(kind=kind, subnet="10.77.0.0/24", uplink="nic0", **keys))


@pytest.mark.parametrize("net", ["macvlan:nic0", "macvlan:nic0:private", "wire"])
def test_no_node_or_foreign_address_is_handed_out(tb, net):
    """Node A's own address is never tried; node B's and the foreign host's
    answer the probe and are skipped (and noted), on macvlan and on a veth
    network whose bridge holds the NIC; and the same from node B's side."""
    a, b = tb.nodes
    for node in (a, b):
        define(node, "wire", "veth")
    assert eth0_ip(a, net) == FIRST_FREE
    pool = record_pool(net)
    assert conflicts(a, pool) == ["10.77.0.2", FOREIGN]
    assert eth0_ip(b, net) == FIRST_FREE          # A's address answers B's probe
    assert conflicts(b, pool) == ["10.77.0.1", FOREIGN]
    assert leftovers(a)["leases"] == [] and leftovers(b)["leases"] == []


def record_pool(net):
    return "br-wire" if net == "wire" else "mv-nic0"


def test_probe_false_hands_out_what_the_wire_uses(tb):
    """The off switch works, and shows what the probe prevents."""
    a = tb.nodes[0]
    define(a, "quiet", "macvlan", probe=False)
    assert eth0_ip(a, "quiet") == "10.77.0.2"  # node B's: the bug of issue 14


def test_an_address_that_stops_answering_is_usable_again(tb):
    a = tb.nodes[0]
    foreign = tb.hosts[0]
    define(a, "lan", "macvlan", range="10.77.0.3-10.77.0.9", conflict_seconds=3600)
    assert eth0_ip(a, "lan") == FIRST_FREE
    assert conflicts(a, "mv-nic0") == [FOREIGN]
    assert json.loads(ok(a, "net", "inspect", "lan").stdout)["conflicts"] == [FOREIGN]
    foreign.forget()
    # still noted: not tried again while the note holds
    assert eth0_ip(a, "lan") == FIRST_FREE
    # the note expires (conflict_seconds 0: at once): probed again, free now
    define(a, "lan", "macvlan", range="10.77.0.3-10.77.0.9", conflict_seconds=0)
    assert eth0_ip(a, "lan") == FOREIGN
    assert conflicts(a, "mv-nic0") == []


@pytest.mark.parametrize("net", ["macvlan:nic0", "macvlan:nic0,host_shim=no", "wire"])
def test_ip_in_use_on_the_wire_is_refused_leaving_nothing(tb, net):
    a = tb.nodes[0]
    define(a, "wire", "veth")
    ok(a, "run", "--rm", "--net=" + net, "busybox", "true")  # the network's host side made
    before, noted = leftovers(a), conflicts(a, record_pool(net))
    for ip, words in ((FOREIGN, "address 10.77.0.3 is in use on the wire"),
                      ("10.77.0.2", "address 10.77.0.2 is in use on the wire"),
                      ("10.77.0.1", "address 10.77.0.1 is in use (network gateway or host")):
        fails(a, "run", "--rm", "--name", "x", "--net=" + net, "--ip", ip, "busybox", "true",
              words=words)
        assert leftovers(a) == before, ip
        assert conflicts(a, record_pool(net)) == noted  # a refused --ip notes nothing


@pytest.mark.parametrize("net", ["macvlan:nic0", "wire"])
def test_a_container_announces_its_address(tb, net):
    """A neighbour whose cache holds an old MAC for the address (its last
    owner's) learns the container's from the gratuitous ARP, before any
    traffic between them (the probes themselves teach nobody anything)."""
    a = tb.nodes[0]
    define(a, "wire", "veth")
    foreign = tb.hosts[0]
    ip = "10.77.0.20"

    def neighbour():
        return subprocess.run(["ip", "-n", foreign.netns, "neigh", "show", ip],
                              capture_output=True, text=True).stdout
    subprocess.run(["ip", "-n", foreign.netns, "neigh", "add", ip, "lladdr",
                    "02:00:00:00:00:99", "dev", "eth0", "nud", "stale"], check=True)
    assert "02:00:00:00:00:99" in neighbour()
    ok(a, "run", "-d", "--name", "c", "--net=" + net, "--ip", ip, "busybox", "sleep", "300")
    assert record(a, "c")["mac"] in neighbour()


@pytest.mark.parametrize("kind", ["macvlan", "veth"])
def test_thirty_concurrent_starts_get_distinct_free_addresses(tb, kind):
    a = tb.nodes[0]
    define(a, "lan", kind, range="10.77.0.2-10.77.0.40")
    procs = [a.pyctr_popen("run", "-d", "--name", "c%d" % i, "--net=lan", "busybox", "sleep",
                           "300", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True) for i in range(30)]
    try:
        for p in procs:
            _, err = p.communicate(timeout=240)
            assert p.returncode == 0, err
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    ips = [record(a, "c%d" % i)["ip"].split("/")[0] for i in range(30)]
    assert len(set(ips)) == 30
    assert not set(ips) & {"10.77.0.1", "10.77.0.2", FOREIGN}
    procs = [a.pyctr_popen("rm", "-f", "c%d" % i, stdin=subprocess.DEVNULL) for i in range(30)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    ok(a, "net", "rm", "lan")
    assert leftovers(a) == CLEAN
