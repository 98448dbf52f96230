"""Fast tests of address conflict detection (issue 14) without root: the ARP
frames, and the attach logic around the probe against the recording fakes
(conftest_net: kernel.wire holds the addresses hosts on the wire answer
for). The real thing, on simulated nodes, is test_arp_probe.py."""
import socket
import subprocess

import pytest

from conftest_net import FakeKernel
from pyctr import network
from pyctr.errors import PyctrError
from pyctr.network import arp, config, ipam
from pyctr.network.addr import ip_int
from test_network_unit import attach, owners, paths  # noqa: F401 (fixtures)
from test_network_unit import leases as pool_files

MAC = bytes.fromhex("020000000001")
OTHER = bytes.fromhex("020000000002")
ANSWERING = "52:54:00:00:00:02"


def node(k, *addrs):
    """A fake node: NIC nic0 with 10.77.0.1/24 (and more addresses)."""
    nic = k.add_host_link("nic0", mac="52:54:00:00:00:01")
    for a in ("10.77.0.1",) + addrs:
        k.host_ns.addrs.append((nic.index, a, 24))
    return nic


def probed(k):
    return [c[2][1] for c in k.calls if c[1] == "probe"]


# -- frames ------------------------------------------------------------------------

def test_a_probe_is_an_arp_request_from_0_0_0_0_for_the_candidate():
    f = arp.frame(arp.ARP_REQUEST, MAC, b"\0\0\0\0", socket.inet_aton("10.77.0.4"))
    assert len(f) == arp.MIN_FRAME
    assert f[:6] == b"\xff" * 6 and f[6:12] == MAC and f[12:14] == b"\x08\x06"
    assert f[20:22] == b"\x00\x01"                      # request
    assert f[22:28] == MAC and f[28:32] == b"\0\0\0\0"  # sender: us, no address
    assert f[38:42] == socket.inet_aton("10.77.0.4")    # target: the candidate


def test_what_counts_as_a_conflict():
    target = socket.inet_aton("10.77.0.4")
    reply = arp.frame(arp.ARP_REPLY, OTHER, target, b"\0\0\0\0")
    assert str(arp.conflict_in(reply, MAC, target)) == "02:00:00:00:00:02 answered"
    announce = arp.frame(arp.ARP_REQUEST, OTHER, target, target)
    assert arp.conflict_in(announce, MAC, target).how == "announced it"
    their_probe = arp.frame(arp.ARP_REQUEST, OTHER, b"\0\0\0\0", target)
    assert arp.conflict_in(their_probe, MAC, target).how == "is probing for it too"
    # our own probe, someone else's address, a question about another address
    assert arp.conflict_in(arp.frame(arp.ARP_REQUEST, MAC, b"\0\0\0\0", target), MAC,
                           target) is None
    other_ip = socket.inet_aton("10.77.0.5")
    assert arp.conflict_in(arp.frame(arp.ARP_REPLY, OTHER, other_ip, target), MAC,
                           target) is None
    assert arp.conflict_in(arp.frame(arp.ARP_REQUEST, OTHER, other_ip, other_ip), MAC,
                           target) is None
    assert arp.conflict_in(reply[:30], MAC, target) is None  # truncated


def test_the_wait_is_short_and_bounded():
    assert arp.PROBES * arp.PROBE_GAP < arp.PROBE_WAIT <= 0.1
    assert arp.MAX_CONFLICTS * arp.PROBES <= 64  # packets per interface, at most
    assert arp.LATE_MAX <= 1


def test_a_late_wake_up_lengthens_the_wait_as_much_and_no_more_than_the_bound():
    """A busy node: this process woke up 30 ms after the deadline, so an
    answer may still wait in the node's own receive path: listen 30 ms more.
    On time (or less late than LATE), decide; never add more than LATE_MAX."""
    assert arp._later(until=1.0, now=1.030, added=0.0) == pytest.approx(1.060)
    assert arp._later(until=1.0, now=1.0 + arp.LATE / 2, added=0.0) is None
    assert arp._later(until=1.0, now=1.2, added=arp.LATE_MAX - 0.1) is None


# -- attach -------------------------------------------------------------------------

def test_macvlan_skips_addresses_the_wire_answers_for(paths, owners):
    k = FakeKernel()
    node(k)
    k.wire = {"10.77.0.2": ANSWERING, "10.77.0.3": ANSWERING}
    pid = owners()
    (rec,) = attach(paths, "c1", ["macvlan:nic0"], pid, k)
    assert rec["ip"] == "10.77.0.4/24"
    assert probed(k) == ["10.77.0.2", "10.77.0.3", "10.77.0.4"]
    assert pool_files(paths, "mv-nic0") == [".conflict-10.77.0.2", ".conflict-10.77.0.3",
                                            "10.77.0.4"]
    assert rec["lease"].endswith("/mv-nic0/10.77.0.4")
    # probed from the container, its link up and without an address; the
    # address set, then announced; the shim's route to the final address
    cns = "pid%d" % pid
    ops = [(ns, op) for ns, op, _, _ in k.calls if ns == cns]
    assert ops.index((cns, "open")) > ops.index((cns, "set_link"))
    assert ops.index((cns, "add_addr")) > ops.index((cns, "probe"))
    assert [c[2][1] for c in k.calls if c[1] == "announce"] == ["10.77.0.4"]
    assert [r["dst"] for r in k.host_ns.routes if r["dst_len"] == 32] == ["10.77.0.4"]
    assert all(p.closed for p in k.probers)
    # the next container does not probe the noted addresses again
    del k.calls[:]
    (rec2,) = attach(paths, "c2", ["macvlan:nic0"], owners(), k)
    assert rec2["ip"] == "10.77.0.5/24" and probed(k) == ["10.77.0.5"]


def veth_lan(paths):
    config.save(paths, config.from_dict("lan", {"kind": "veth", "subnet": "10.77.0.0/24",
                                                "uplink": "nic0"}))


def test_a_veth_probes_only_once_its_host_end_passes_frames(paths, owners):
    """The host end is activated by the kernel's link watcher, after its
    peer came up and asynchronously: until then the answers to the probes
    are dropped, and node B's address was handed out on a busy node."""
    k = FakeKernel()
    node(k)
    veth_lan(paths)
    k.linkwatch_reads = 4
    k.wire = {"10.77.0.2": ANSWERING}
    (rec,) = attach(paths, "c1", ["lan"], owners(), k)
    assert rec["ip"] == "10.77.0.3/24"
    assert probed(k) == ["10.77.0.2", "10.77.0.3"]


def test_a_veth_that_never_passes_frames_is_refused_leaving_nothing(paths, owners,
                                                                     monkeypatch):
    from pyctr.network.kinds import veth
    monkeypatch.setattr(veth, "FORWARDING_SECONDS", 0.05)
    k = FakeKernel()
    node(k)
    veth_lan(paths)
    attach(paths, "c0", ["lan"], owners(), k)  # the bridge, made and kept
    before = k.names()
    k.linkwatch_reads = 10 ** 6
    pid = owners()
    with pytest.raises(PyctrError, match=r"^veth pyvc10 on bridge lan does not pass frames "
                                         r"after 0.05 s"):
        attach(paths, "c1", ["lan"], pid, k)
    assert probed(k) == ["10.77.0.2"]  # c0's only
    assert k.names() == before and k.names("pid%d" % pid) == ["lo"]
    assert pool_files(paths, "br-lan") == ["10.77.0.2"]


def test_a_conflict_note_expires(paths, owners):
    k = FakeKernel()
    node(k)
    config.save(paths, config.from_dict("lan", {"kind": "macvlan", "subnet": "10.77.0.0/24",
                                                "uplink": "nic0", "conflict_seconds": 3600}))
    k.wire = {"10.77.0.2": ANSWERING}
    recs = attach(paths, "c1", ["lan"], owners(), k)
    assert recs[0]["ip"] == "10.77.0.3/24"
    network.detach(paths, "c1", recs, kernel=k)
    k.wire = {}  # it stops answering: still noted
    assert attach(paths, "c2", ["lan"], owners(), k)[0]["ip"] == "10.77.0.3/24"
    config.save(paths, config.from_dict("lan", {"kind": "macvlan", "subnet": "10.77.0.0/24",
                                                "uplink": "nic0", "conflict_seconds": 0}))
    assert attach(paths, "c3", ["lan"], owners(), k)[0]["ip"] == "10.77.0.2/24"
    assert ".conflict-10.77.0.2" not in pool_files(paths, "mv-nic0")


def test_requested_address_in_use_is_refused_and_nothing_is_left(paths, owners):
    k = FakeKernel()
    node(k)
    k.wire = {"10.77.0.9": ANSWERING}
    pid = owners()
    with pytest.raises(PyctrError) as e:
        attach(paths, "c1", ["macvlan:nic0,ip=10.77.0.9,host_shim=no"], pid, k)
    assert str(e.value) == ("address 10.77.0.9 is in use on the wire (52:54:00:00:00:02 "
                            "answered): choose another address")
    assert pool_files(paths, "mv-nic0") == []   # no lease, no note
    assert k.names("pid%d" % pid) == ["lo"] and k.names() == ["lo", "nic0"]
    assert all(p.closed for p in k.probers) and not k.open_fds


def test_a_wire_full_of_answers_is_given_up_on_with_nothing_left(paths, owners):
    k = FakeKernel()
    node(k)
    k.wire = {"10.77.0.%d" % i: ANSWERING for i in range(2, 255)}
    with pytest.raises(PyctrError, match="32 addresses in a row are in use on the wire"):
        attach(paths, "c1", ["macvlan:nic0,host_shim=no"], owners(), k)
    assert len(probed(k)) == arp.MAX_CONFLICTS
    assert [f for f in pool_files(paths, "mv-nic0") if not f.startswith(".")] == []


@pytest.mark.parametrize("definition, probes", [
    ({"kind": "veth", "uplink": "nic0"}, True),              # bridge holding the NIC
    ({"kind": "veth"}, False),                               # a bridge of containers only
    ({"kind": "macvlan", "uplink": "nic0"}, True),
    ({"kind": "macvlan", "uplink": "nic0", "mode": "private"}, True),
    ({"kind": "macvlan", "uplink": "nic0", "probe": False}, False),
    ({"kind": "veth", "uplink": "nic0", "probe": False}, False),
])
def test_which_networks_probe(paths, owners, definition, probes):
    k = FakeKernel()
    node(k)
    config.save(paths, config.from_dict("n", dict(definition, subnet="10.77.0.0/24")))
    attach(paths, "c1", ["n"], owners(), k)
    assert bool(probed(k)) == probes


def test_a_bridge_with_a_foreign_port_probes(paths, owners):
    """An ad-hoc veth:br0 whose bridge an admin gave a NIC reaches the wire."""
    k = FakeKernel()
    br = k.add_host_link("br0", link_type="bridge")
    k.host_ns.addrs.append((br.index, "10.8.0.1", 24))
    attach(paths, "c1", ["veth:br0"], owners(), k)
    assert probed(k) == []
    k.add_host_link("eth1", master=br.index)
    attach(paths, "c2", ["veth:br0"], owners(), k)
    assert probed(k) == ["10.8.0.3"]


def test_the_node_own_addresses_are_never_handed_out_whatever_the_range(paths, owners):
    """Every address the node holds (on any link: NIC, another device, a
    shim) and every gateway of its routes, even inside a network's range."""
    k = FakeKernel()
    nic = node(k)
    other = k.add_host_link("dummy0")
    k.host_ns.addrs.append((other.index, "10.77.0.10", 24))
    k.host_ns.routes.append({"dst": "0.0.0.0", "dst_len": 0, "gateway": "10.77.0.11",
                             "oif": nic.index, "src": None, "protocol": 4, "scope": 0})
    config.save(paths, config.from_dict("n", {"kind": "macvlan", "subnet": "10.77.0.0/24",
                                              "uplink": "nic0", "range": "10.77.0.10-10.77.0.12",
                                              "host_shim": False, "probe": False}))
    assert attach(paths, "c1", ["n"], owners(), k)[0]["ip"] == "10.77.0.12/24"
    for taken in ("10.77.0.1", "10.77.0.10", "10.77.0.11"):
        with pytest.raises(PyctrError, match="is in use .network gateway or host address"):
            attach(paths, "c2", ["macvlan:nic0,ip=%s" % taken], owners(), k)


def test_conflict_notes_are_not_leases_and_go_with_the_network(paths, owners):
    k = FakeKernel()
    node(k)
    k.wire = {"10.77.0.2": ANSWERING}
    recs = attach(paths, "c1", ["macvlan:nic0"], owners(), k)
    pool = ipam.Pool(paths, "mv-nic0")
    assert list(pool.leases()) == [ip_int("10.77.0.3")]
    network.detach(paths, "c1", recs, kernel=k)
    assert network.teardown(paths, "macvlan", "nic0", kernel=k) is None
    assert pool_files(paths, "mv-nic0") == []


def test_probe_settings_round_trip(paths):
    net = config.from_dict("n", {"kind": "macvlan", "subnet": "10.77.0.0/24", "uplink": "nic0",
                                 "probe": False, "conflict_seconds": 10})
    assert net.definition()["probe"] is False and net.to_dict()["conflict_seconds"] == 10
    assert "probe" not in config.from_dict("m", {"subnet": "10.1.0.0/24"}).definition()
    with pytest.raises(PyctrError, match="conflict_seconds must be 0 or more"):
        config.from_dict("n", {"subnet": "10.1.0.0/24", "conflict_seconds": -1})
    with pytest.raises(PyctrError, match="key probe has the wrong type"):
        config.from_dict("n", {"subnet": "10.1.0.0/24", "probe": "no"})


def test_net_create_no_probe(tmp_path):
    import sys
    r = subprocess.run([sys.executable, "-m", "pyctr", "--root", str(tmp_path / "s"),
                        "--config", str(tmp_path / "c"), "net", "create", "quiet", "--kind",
                        "macvlan", "--uplink", "nic0", "--subnet", "10.77.0.0/24", "--no-probe"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "c" / "networks" / "quiet.toml") as f:
        assert "probe = false" in f.read()
