"""Per-node slices (noderange.py): the same `pyctr net create --per-node`
on every node of a shared segment, and no two nodes hand out one address."""
import json
import subprocess

import pytest

from conftest import root_only
from pyctr.testbed import Testbed
from test_network import CLEAN, address, fails, leftovers, ok, pings

pytestmark = [root_only, pytest.mark.root]

SUBNET = "10.77.0.0/24"  # the testbed's: node k is 10.77.0.k
KIND_ARGS = {"veth": [], "macvlan": ["--kind", "macvlan", "--no-host-shim"]}


def create_everywhere(tb, kind, *extra):
    for node in tb.nodes:
        ok(node, "net", "create", "seg", "--subnet", SUBNET, "--uplink", "nic0", "--per-node",
           *KIND_ARGS[kind], *extra)


def node_slice(node):
    return json.loads(ok(node, "net", "inspect", "seg").stdout)["node_slice"]


def in_range(ip, rng):
    def last_octet(text):
        return int(text.rsplit(".", 1)[1])
    first, last = rng.split("-")
    return last_octet(first) <= last_octet(ip) <= last_octet(last)


def start_everywhere(tb, per_node):
    """per_node detached containers on every node, all started at once;
    returns {node: [addresses]}."""
    procs = [(node, "c%d" % i, node.pyctr_popen(
        "run", "-d", "--name", "c%d" % i, "--net=seg", "busybox", "sleep", "300",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True))
        for i in range(per_node) for node in tb.nodes]
    for node, name, proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, "%s %s: %s" % (node, name, err)
    return {node: [address(node, name) for n, name, _ in procs if n is node]
            for node in tb.nodes}


@pytest.mark.parametrize("nodes", [2, 3])
@pytest.mark.parametrize("kind", ["veth", "macvlan"])
def test_same_net_create_on_every_node_never_gives_one_address_twice(image_data, kind, nodes):
    with Testbed(nodes=nodes, data=image_data) as tb:
        create_everywhere(tb, kind)
        slices = [node_slice(node) for node in tb.nodes]
        # node k (10.77.0.k) hands out .16k-.16k+15: disjoint by construction
        assert slices == [{"node": "10.77.0.%d" % k, "index": k,
                           "range": "10.77.0.%d-10.77.0.%d" % (16 * k, 16 * k + 15)}
                          for k in range(1, nodes + 1)]
        got = start_everywhere(tb, per_node=2)
        everything = [ip for ips in got.values() for ip in ips]
        assert len(set(everything)) == len(everything), got
        for node, rng in zip(tb.nodes, slices):
            assert all(in_range(ip, rng["range"]) for ip in got[node]), (got, slices)
        # inspect still says so once containers run (veth: the bridge holds the address)
        assert [node_slice(node) for node in tb.nodes] == slices
        a, b = tb.nodes[:2]
        assert pings(a, "c0", got[b][0])  # the addresses work across the wire
        for node in tb.nodes:
            ok(node, "rm", "-f", "c0", "c1")
            assert leftovers(node) == CLEAN
            ok(node, "net", "rm", "seg")


def test_bad_per_node_requests_are_one_line(image_data):
    with Testbed(nodes=2, data=image_data) as tb:
        a, b = tb.nodes
        base = ("net", "create", "seg", "--uplink", "nic0")
        fails(a, *base, "--subnet", SUBNET, "--per-node", "--uplink", "lo",
              words="this node has no address in 10.77.0.0/24 on lo")
        fails(a, *base, "--subnet", "10.78.0.0/24", "--per-node",
              words="this node has no address in 10.78.0.0/24 on nic0")
        # node 10.77.0.2 is host 2: slices of 2 serve host 1 only
        fails(b, *base, "--subnet", SUBNET, "--per-node", "--slice", "2",
              words="node address 10.77.0.2 is host 2 of 10.77.0.0/24")
        # /27 holds 32 addresses: node .2's slice of 16 would be .32-.47
        fails(b, *base, "--subnet", "10.77.0.0/27", "--per-node",
              words="falls outside 10.77.0.0/27")
        fails(a, *base, "--subnet", SUBNET, "--per-node", "--slice", "200",
              words="slice must be 2..128")
        fails(a, *base, "--subnet", SUBNET, "--per-node", "--range", "10.77.0.20-10.77.0.30",
              words="range and slice exclude each other")
        fails(a, *base, "--subnet", SUBNET, "--slice", "8", words="--slice is for --per-node")
        for node in tb.nodes:
            assert ok(node, "net", "ls").stdout.count("\n") == 1  # nothing defined
        # a small slice on a node that fits: host 1 with slices of 8 gets .8-.15
        ok(a, *base, "--subnet", SUBNET, "--per-node", "--slice", "8")
        assert node_slice(a)["range"] == "10.77.0.8-10.77.0.15"
        assert "per node, 8" in ok(a, "net", "ls").stdout
        ok(a, "net", "rm", "seg")
