"""Fast tests of pyctr.network without root: parsing, IPAM on a temp dir,
and the attach/detach/gc logic against a recording fake of the kernel
layer. The real thing is exercised in test_network.py."""
import errno
import os
import struct
import subprocess
import sys
import threading
import time

import pytest

from conftest_net import FakeKernel, dead_pid, mirrors
from pyctr import network
from pyctr.errors import PyctrError
from pyctr.network import config, ipam, kinds, noderange, rtnl
from pyctr.network.addr import Subnet, int_ip, ip_int, parse_range, random_mac
from pyctr.network.kinds.macvlan import shim_ifname
from pyctr.network.kinds.veth import host_ifname
from pyctr.paths import Paths


@pytest.fixture
def paths(tmp_path):
    return Paths(root=str(tmp_path / "state"), config=str(tmp_path / "config"),
                 data=str(tmp_path / "data"))


@pytest.fixture
def owners():
    """Live processes to own leases (a lease is alive while its owner is)."""
    procs = []

    def make():
        p = subprocess.Popen(["sleep", "60"])
        procs.append(p)
        return p.pid
    yield make
    for p in procs:
        p.kill()
        p.wait()


def attach(paths, container_id, texts, pid, kernel):
    """What `pyctr run` does: prepare before clone, attach after."""
    prepared = network.prepare(paths, [network.parse(t) for t in texts], kernel=kernel)
    return network.attach(paths, container_id, prepared, pid, kernel=kernel)


def leases(paths, pool):
    d = os.path.join(paths.leases, pool)
    return sorted(f for f in os.listdir(d) if f != "lock") if os.path.isdir(d) else []


# -- parse ---------------------------------------------------------------------

def test_parse_forms():
    r = network.parse("veth:br0,ip=10.1.0.5/24,mac=02:AA:bb:cc:dd:ee,mtu=1400")
    assert (r.form, r.network, r.ip, r.mac, r.mtu) == ("veth", "br0", "10.1.0.5/24",
                                                       "02:aa:bb:cc:dd:ee", 1400)
    r = network.parse("macvlan:nic0:private")
    assert (r.form, r.network, r.mode) == ("macvlan", "nic0", "private")
    r = network.parse("macvlan:nic0:source,source_macs=02:00:00:00:00:01|02:00:00:00:00:02")
    assert r.source_macs == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
    r = network.parse("cluster,route=10.9.0.0/16@10.77.0.254,route=default,host_shim=no")
    assert (r.form, r.network, r.host_shim) == ("network", "cluster", False)
    assert r.routes == ["10.9.0.0/16@10.77.0.254", "0.0.0.0/0"]
    assert network.parse("none").form == "none"
    assert network.parse("host").form == "host"


@pytest.mark.parametrize("text, words", [
    ("veth:thisbridgenameistoolong", "too long"),
    ("macvlan:averyveryverylongnic", "too long"),
    ("veth:br/0", "invalid bridge name"),
    ("veth:", "empty bridge name"),
    ("macvlan:nic0:loopy", "unknown macvlan mode"),
    ("veth:br0,ip=10.0.0.300", "malformed IPv4"),
    ("veth:br0,ip=10.0.0.3/33", "prefix"),
    ("veth:br0,ip=10.0.0", "malformed IPv4"),
    ("veth:br0,mac=02:00:00:00:00", "malformed MAC"),
    ("veth:br0,mac=01:00:00:00:00:01", "multicast"),
    ("veth:br0,mtu=9x", "malformed MTU"),
    ("veth:br0,mtu=20", "out of range"),
    ("veth:br0,colour=blue", "unknown option"),
    ("veth:br0,ip", "needs a value"),
    ("macvlan:nic0:source", "needs source_macs"),
    ("macvlan:nic0,source_macs=02:00:00:00:00:01", "only apply to macvlan mode source"),
    ("veth:br0,mode=vepa", "mode does not apply"),
    ("veth:br0,host_shim=no", "host_shim does not apply"),
    ("vxlan:foo", "unknown kind"),
    ("", "empty"),
    ("cluster,route=10.0.0.0/8@nowhere", "malformed IPv4"),
])
def test_parse_rejects_bad_input_in_one_line(text, words):
    with pytest.raises(PyctrError) as e:
        network.parse(text)
    assert words in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_input_exits_125_with_one_line_via_the_cli(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pyctr", "--root", str(tmp_path), "--config",
                        str(tmp_path), "net", "create", "x", "--subnet", "10.0.0.0/40"],
                       capture_output=True, text=True)
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "malformed subnet" in p.stderr


# -- names, addresses ------------------------------------------------------------

def test_host_names_fit_and_say_whose():
    names = {host_ifname("0123456789abcdef", n) for n in range(12)}
    assert len(names) == 12 and all(len(n) <= 15 and n.startswith("pyv0123456") for n in names)
    assert shim_ifname("nic0") == "pys-nic0"
    assert len(shim_ifname("enp0s31f6longer")) <= 15


def test_subnet_and_range():
    s = Subnet.parse("10.77.0.0/24")
    assert ip_int("10.77.0.9") in s and ip_int("10.78.0.9") not in s
    assert not s.host(s.net) and not s.host(s.broadcast) and s.host(s.first)
    assert parse_range("10.77.0.10-10.77.0.20", s) == (ip_int("10.77.0.10"), ip_int("10.77.0.20"))
    for bad in ("10.77.0.20-10.77.0.10", "10.77.0.10-10.78.0.1", "10.77.0.10"):
        with pytest.raises(PyctrError):
            parse_range(bad, s)
    with pytest.raises(PyctrError, match="malformed subnet"):
        Subnet.parse("10.77.0.0")


def test_random_bridge_mac_is_local_unicast():
    macs = {random_mac() for _ in range(50)}
    assert len(macs) == 50
    for mac in macs:
        first = int(mac.split(":")[0], 16)
        assert first & 2 and not first & 1


# -- network definitions -----------------------------------------------------------

def test_definition_round_trip(paths):
    net = config.from_dict("cluster", {"kind": "bridge", "subnet": "10.77.0.0/24",
                                       "range": "10.77.0.100-10.77.0.149", "uplink": "nic0",
                                       "mtu": 1400})
    config.save(paths, net)
    back = config.load(paths, "cluster")
    assert back.to_dict() == net.to_dict()
    assert back.device == "cluster" and back.pool == "br-cluster"
    assert config.names(paths) == ["cluster"]


def test_older_definitions_say_bridge_for_veth(paths):
    os.makedirs(paths.networks)
    with open(config.path(paths, "old"), "w") as f:
        f.write('kind = "bridge"\nsubnet = "10.77.0.0/24"\n')
    net = config.load(paths, "old")
    assert (net.kind, net.device, net.pool) == ("veth", "old", "br-old")
    config.save(paths, net)
    with open(config.path(paths, "old")) as f:
        assert 'kind = "veth"' in f.read()


def test_a_new_kind_is_one_module_and_a_registry_line(paths, owners, monkeypatch):
    """Nothing outside the kind's module names veth or macvlan: a kind
    registered under another name is parsed, defined, attached, detached and
    swept by gc through the registry alone."""
    import types
    from pyctr.network.kinds.veth import Veth

    class Toy(Veth):
        name, pool_prefix = "toy", "toy-"
    module = types.ModuleType("toykind")
    module.KIND = Toy()
    monkeypatch.setitem(sys.modules, "toykind", module)
    monkeypatch.setitem(kinds.REGISTRY, "toy", "toykind")
    k = FakeKernel()
    p = subprocess.Popen(["sleep", "60"])
    recs = attach(paths, "c1", ["toy:br5,ip=10.5.5.9/24"], p.pid, k)
    assert (recs[0]["kind"], recs[0]["pool"], recs[0]["bridge"]) == ("toy", "toy-br5", "br5")
    assert leases(paths, "toy-br5") == ["10.5.5.9"]
    p.kill()
    p.wait()
    assert network.gc(paths, kernel=k) == ["lease 10.5.5.9 in toy-br5 (container c1)",
                                           "interface %s" % recs[0]["host_ifname"]]
    network.detach(paths, "c1", recs, kernel=k)  # idempotent after gc
    net = config.from_dict("lab", {"kind": "toy", "subnet": "10.6.0.0/24"})
    assert (net.kind, net.pool) == ("toy", "toy-lab")
    with pytest.raises(PyctrError, match="kind must be veth or macvlan or toy"):
        config.from_dict("lab", {"kind": "vxlan", "subnet": "10.6.0.0/24"})


def test_kinds_registry():
    assert kinds.names() == ("veth", "macvlan")
    assert [kinds.by_pool(k)[1] for k in ("br-x", "mv-nic0")] == ["x", "nic0"]
    assert kinds.by_pool("br-x")[0] is kinds.get("veth")
    assert kinds.by_pool(".subnets") == (None, None)
    with pytest.raises(PyctrError, match="unknown network kind 'vxlan'"):
        kinds.get("vxlan")


@pytest.mark.parametrize("data, words", [
    ({"kind": "bridge"}, "no subnet"),
    ({"subnet": "10.0.0.0/24", "gateway": "10.0.1.1"}, "not a host of subnet"),
    ({"subnet": "10.0.0.0/24", "kind": "macvlan"}, "needs an uplink"),
    ({"subnet": "10.0.0.0/24", "kind": "vxlan"}, "kind must be"),
    ({"subnet": "10.0.0.0/24", "colour": "red"}, "unknown key"),
    ({"subnet": "10.0.0.0/24", "mode": "vepa"}, "mode is a macvlan setting"),
    ({"subnet": "10.0.0.0/24", "kind": "macvlan", "uplink": "nic0", "mode": "loopy"},
     "unknown macvlan mode"),
    ({"subnet": "10.0.0.0/24", "host_shim": "yes", "kind": "macvlan", "uplink": "n"},
     "wrong type"),
    ({"subnet": "10.0.0.0/24", "mtu": "big"}, "wrong type"),
    ({"subnet": "10.0.0.0/24", "range": "10.0.0.9-10.0.0.2"}, "start after end"),
])
def test_definition_errors(data, words):
    with pytest.raises(PyctrError, match=words):
        config.from_dict("n", data)


def test_malformed_toml_is_one_line(paths):
    os.makedirs(paths.networks)
    with open(config.path(paths, "bad"), "w") as f:
        f.write("subnet = \n")
    with pytest.raises(PyctrError, match="invalid TOML"):
        config.load(paths, "bad")
    with pytest.raises(PyctrError, match="unknown network"):
        config.load(paths, "missing")


# -- IPAM --------------------------------------------------------------------------

def _owner(pid, cid="c1"):
    return {"pid": pid, "start": ipam.start_time(pid), "container": cid, "ifname": "eth0"}


def test_ipam_hands_out_lowest_free_and_distinct(paths, owners):
    s = Subnet.parse("10.5.0.0/24")
    got = []
    for i in range(5):
        with ipam.Pool(paths, "br-x") as pool:
            ip, _ = pool.allocate(s.first, s.last, _owner(owners(), "c%d" % i),
                                  exclude={s.first})
            got.append(ip)
    assert got == [s.first + 1 + i for i in range(5)]


def test_ipam_in_use_outside_and_exhausted(paths, owners):
    s = Subnet.parse("10.5.0.0/24")
    first, last = parse_range("10.5.0.10-10.5.0.11", s)
    with ipam.Pool(paths, "br-x") as pool:
        pool.allocate(first, last, _owner(owners(), "a"), want=ip_int("10.5.0.10"), subnet=s)
        with pytest.raises(PyctrError, match="in use by container a"):
            pool.allocate(first, last, _owner(owners(), "b"), want=ip_int("10.5.0.10"), subnet=s)
        with pytest.raises(PyctrError, match="not a host address"):
            pool.allocate(first, last, _owner(owners(), "b"), want=ip_int("10.5.0.255"), subnet=s)
        pool.allocate(first, last, _owner(owners(), "b"))
        with pytest.raises(PyctrError, match="no free address"):
            pool.allocate(first, last, _owner(owners(), "c"))
    assert leases(paths, "br-x") == ["10.5.0.10", "10.5.0.11"]


def test_an_empty_pool_goes_and_a_waiting_allocator_uses_the_new_one(paths, owners):
    """A network's removal takes its empty pool while an allocation waits
    for the pool's lock: the allocation then leases in the pool made again,
    not in the directory that is gone."""
    s = Subnet.parse("10.5.0.0/24")
    got = []

    def allocate():
        with ipam.Pool(paths, "br-x") as pool:
            got.append(pool.allocate(s.first, s.last, _owner(owners(), "late"),
                                     exclude={s.first})[0])
    with ipam.Pool(paths, "br-x") as pool:
        waiting = threading.Thread(target=allocate)
        waiting.start()
        time.sleep(0.2)  # it blocks on the lock this holds (its own open file)
        assert got == [] and pool.remove_if_empty()
        assert not os.path.exists(pool.dir)
    waiting.join(10)
    assert got == [s.first + 1] and leases(paths, "br-x") == ["10.5.0.2"]


def test_a_pool_with_a_lease_or_a_note_stays_and_the_root_goes_last(paths, owners):
    s = Subnet.parse("10.5.0.0/24")
    with ipam.Pool(paths, "br-x") as pool:
        pool.allocate(s.first, s.last, _owner(owners()), exclude={s.first})
        assert not pool.remove_if_empty()
    with ipam.Pool(paths, "br-x") as pool:
        pool.release(s.first + 1)
        pool.note_conflict(s.first + 2, {"mac": "02:00:00:00:00:01"})
        assert not pool.remove_if_empty()
        pool.forget_conflicts()
        assert pool.remove_if_empty()
    with ipam.Pool(paths, "br-y"):
        pass
    with ipam.Pool(paths, ipam.SUBNETS_LOCK):
        pass
    ipam.remove_root(paths)  # br-y is left: so is the rest
    assert sorted(os.listdir(paths.leases)) == [".subnets", "br-y"]
    with ipam.Pool(paths, "br-y") as pool:
        assert pool.remove_if_empty()
    ipam.remove_root(paths)
    assert not os.path.exists(paths.leases)


def test_ipam_reclaims_lease_of_dead_owner(paths, owners):
    s = Subnet.parse("10.5.0.0/24")
    pid = dead_pid()
    with ipam.Pool(paths, "br-x") as pool:
        pool._create(s.first, {"pid": pid, "start": 12345, "container": "gone"})
        ip, reclaimed = pool.allocate(s.first, s.first, _owner(owners(), "new"))
    assert ip == s.first and [r.container for r in reclaimed] == ["gone"]
    assert ipam.Pool(paths, "br-x").read("10.5.0.1").container == "new"


def test_ipam_recycled_pid_is_not_the_owner(paths):
    """Same pid, other start time: the owner is gone."""
    with ipam.Pool(paths, "br-x") as pool:
        pool._create(ip_int("10.5.0.1"), {"pid": os.getpid(), "start": 1, "container": "old"})
        assert [lease.container for lease in pool.reap()] == ["old"]


def test_damaged_leases_are_dead_and_what_is_no_lease_is_left_alone(paths, owners, tmp_path):
    """A lease file with garbage or bytes that are not UTF-8 (a crash, a
    disk) is one without an owner: its address is reclaimed, gc drops it.
    A directory or a symlink where a lease would be is no lease: its address
    is skipped and the entry, and what a symlink names, left as they are.
    gc, `net rm` and starts on the pool ended in a traceback on them."""
    target = tmp_path / "elsewhere"
    target.write_text("owner 1 1\n")
    with ipam.Pool(paths, "br-x") as pool:
        os.mkdir(os.path.join(pool.dir, "10.5.0.1"))
        os.symlink(target, os.path.join(pool.dir, "10.5.0.2"))
        with open(os.path.join(pool.dir, "10.5.0.3"), "wb") as f:
            f.write(b"\xff\xfe")
        with open(os.path.join(pool.dir, "10.5.0.4"), "w") as f:
            f.write("garbage\n")
        assert sorted(int_ip(ip) for ip in pool.leases()) == ["10.5.0.3", "10.5.0.4"]
        ip, reclaimed = pool.allocate(ip_int("10.5.0.1"), ip_int("10.5.0.9"), _owner(owners(), "a"))
        assert int_ip(ip) == "10.5.0.3" and [r.describe() for r in reclaimed] == [
            "no owner: a damaged lease"]
        assert [int_ip(lease.ip) for lease in pool.reap()] == ["10.5.0.4"]
        assert sorted(os.listdir(pool.dir)) == ["10.5.0.1", "10.5.0.2", "10.5.0.3", "lock"]
    assert target.read_text() == "owner 1 1\n"


def test_ipam_release_only_own_lease(paths, owners):
    with ipam.Pool(paths, "br-x") as pool:
        pool.allocate(ip_int("10.5.0.1"), ip_int("10.5.0.1"), _owner(owners(), "mine"))
        assert not pool.release(ip_int("10.5.0.1"), container="other")
        assert pool.release(ip_int("10.5.0.1"), container="mine")
        assert not pool.release(ip_int("10.5.0.1"), container="mine")


def test_ipam_allocation_reads_no_other_lease(paths, owners, monkeypatch):
    """With 300 live leases, the next allocation opens none of them: its
    cost does not grow with the containers already running."""
    s = Subnet.parse("10.5.0.0/22")
    pid = owners()
    with ipam.Pool(paths, "br-x") as pool:
        for i in range(300):
            pool.allocate(s.first, s.last, _owner(pid, "c%d" % i))
    reads = []
    monkeypatch.setattr(ipam.Pool, "read", lambda self, name: reads.append(name))
    with ipam.Pool(paths, "br-x") as pool:
        ip, _ = pool.allocate(s.first, s.last, _owner(pid, "new"))
    assert ip == s.first + 300 and reads == []


def test_ipam_reuses_the_lowest_released_address_first(paths, owners):
    s = Subnet.parse("10.5.0.0/24")
    pid = owners()
    with ipam.Pool(paths, "br-x") as pool:
        got = [pool.allocate(s.first, s.last, _owner(pid, "c%d" % i))[0] for i in range(6)]
        assert pool.release(got[4], container="c4") and pool.release(got[1], container="c1")
        assert pool.allocate(s.first, s.last, _owner(pid, "d1"))[0] == got[1]
        assert pool.allocate(s.first, s.last, _owner(pid, "d2"))[0] == got[4]
        assert pool.allocate(s.first, s.last, _owner(pid, "d3"))[0] == got[5] + 1


def test_ipam_torn_hint_still_gives_distinct_addresses(paths, owners):
    """A pyctr killed while writing the hint leaves garbage: the next
    allocation searches the range and still never hands out a taken address."""
    s = Subnet.parse("10.5.0.0/24")
    pid = owners()
    with ipam.Pool(paths, "br-x") as pool:
        pool.allocate(s.first, s.last, _owner(pid, "a"))
    with open(os.path.join(paths.leases, "br-x", "lock"), "w") as f:
        f.write("next 10.5.0.")
    with ipam.Pool(paths, "br-x") as pool:
        assert pool.allocate(s.first, s.last, _owner(pid, "b"))[0] == s.first + 1


def test_ipam_reclaims_a_dead_owners_lease_when_the_range_is_used_up(paths, owners):
    """A lease whose owner died without releasing it (kill -9) is not in the
    hint; the search meets it once the rest of the range is taken."""
    s = Subnet.parse("10.5.0.0/24")
    first, last = parse_range("10.5.0.10-10.5.0.12", s)
    pid = owners()
    with ipam.Pool(paths, "br-x") as pool:
        pool.allocate(first, last, {"pid": dead_pid(), "start": 12345, "container": "gone"})
        got = [pool.allocate(first, last, _owner(pid, "c%d" % i)) for i in range(3)]
    assert [ip for ip, _ in got] == [first + 1, first + 2, first]
    assert [old.container for old in got[2][1]] == ["gone"]


# -- attach / detach against the fake kernel ----------------------------------------

def test_veth_attach_plan(paths, owners):
    k = FakeKernel()
    pid = owners()
    recs = attach(paths, "abcdef012345", ["veth:br0,ip=10.9.0.7/24"], pid, k)
    (rec,) = recs
    assert rec["ip"] == "10.9.0.7/24" and rec["gateway"] == "10.9.0.1"
    assert rec["ifname"] == "eth0" and rec["host_ifname"] == "pyvabcdef012340"
    ops = [(ns, name) for ns, name, _, _ in k.calls]
    cns = "pid%d" % pid
    # lo up, bridge made under a temporary name with a pinned MAC, its alias
    # and gateway address, renamed br0 once complete; veth born with its peer
    # in the container's netns and its host end on the bridge, then address,
    # link up, default route inside.
    assert ops == [(cns, "enter"), (cns, "set_link"), ("host", "create_bridge"),
                   ("host", "set_link"), ("host", "add_addr"), ("host", "set_link"),
                   ("host", "create_veth"), (cns, "add_addr"), (cns, "set_link"),
                   (cns, "add_route")]
    br = k.host_ns.links[[l.index for l in k.host_ns.links.values() if l.name == "br0"][0]]
    made = [c for c in k.calls if c[1] == "create_bridge"][0]
    assert made[2] == ("pybabcdef012345",)  # only pyctr uses the prefix pyb
    assert made[3]["mac"] and br.mac == made[3]["mac"]  # pinned at creation
    assert br.alias == "pyctr network br0"
    veth = [c for c in k.calls if c[1] == "create_veth"][0]
    assert veth[3]["master"] == br.index and veth[3]["peer_netns_fd"] is not None
    assert k.names(cns) == ["eth0", "lo"]
    assert leases(paths, "br-br0") == ["10.9.0.7"]
    assert not k.open_fds
    network.detach(paths, "abcdef012345", recs, kernel=k)
    network.detach(paths, "abcdef012345", recs, kernel=k)  # idempotent
    assert k.names() == ["br0", "lo"] and leases(paths, "br-br0") == []


def test_uplinked_bridge_takes_the_uplink_address_and_mac(paths, owners):
    k = FakeKernel()
    nic = k.add_host_link("nic0", mac="52:54:00:00:00:01")
    k.host_ns.addrs.append((nic.index, "10.77.0.1", 24))
    config.save(paths, config.from_dict("cluster", {"subnet": "10.77.0.0/24", "uplink": "nic0",
                                                    "range": "10.77.0.100-10.77.0.149"}))
    recs = attach(paths, "c1", ["cluster"], owners(), k)
    br = [l for l in k.host_ns.links.values() if l.name == "cluster"][0]
    assert br.mac == nic.mac and nic.master == br.index
    assert k.host_ns.addrs == [(br.index, "10.77.0.1", 24)]
    assert recs[0]["ip"] == "10.77.0.100/24" and recs[0]["gateway"] == "10.77.0.1"
    network.detach(paths, "c1", recs, kernel=k)


def test_detach_after_the_container_died_deletes_the_veth_before_returning(paths):
    """Its netns would take the pair along, but in the background: a
    script's next `pyctr net rm BR` must find the bridge free."""
    k = FakeKernel()
    p = subprocess.Popen(["sleep", "60"])
    recs = attach(paths, "c1", ["veth:br0"], p.pid, k)
    p.kill()
    p.wait()
    k.calls.clear()
    network.detach(paths, "c1", recs, kernel=k)
    assert [c for c in k.calls if c[1] == "delete_link"]
    assert recs[0]["host_ifname"] not in k.names()
    assert leases(paths, "br-br0") == []


def test_failed_attach_gives_the_uplink_its_address_back(paths, owners):
    k = FakeKernel()
    nic = k.add_host_link("nic0", mac="52:54:00:00:00:01")
    k.host_ns.addrs.append((nic.index, "10.77.0.1", 24))
    k.host_ns.routes.append({"dst": "0.0.0.0", "dst_len": 0, "gateway": "10.77.0.254",
                             "oif": nic.index, "src": None, "protocol": 3, "scope": 0})
    config.save(paths, config.from_dict("cluster", {"subnet": "10.77.0.0/24", "uplink": "nic0"}))
    k.fail["create_veth"] = OSError(12, "Cannot allocate memory")
    with pytest.raises(PyctrError, match="cannot create veth"):
        attach(paths, "c1", ["cluster"], owners(), k)
    assert k.names() == ["lo", "nic0"] and nic.master == 0
    assert k.host_ns.addrs == [(nic.index, "10.77.0.1", 24)]
    assert [(r["gateway"], r["oif"]) for r in k.host_ns.routes] == [("10.77.0.254", nic.index)]
    assert leases(paths, "br-cluster") == []


def test_failure_inside_container_undoes_everything(paths, owners):
    k = FakeKernel()
    k.fail["add_route"] = OSError(101, "Network is unreachable")
    with pytest.raises(PyctrError, match="cannot configure eth0"):
        attach(paths, "c1", ["veth:br0"], owners(), k)
    assert k.names() == ["lo"]  # veth and the bridge it made are gone
    assert leases(paths, "br-br0") == []


def test_full_bridge_is_refused_cleanly(paths, owners):
    k = FakeKernel()
    k.bridge_max_ports = 2
    recs = [attach(paths, "c%d" % i, ["veth:br0"], owners(), k)
            for i in range(2)]
    with pytest.raises(PyctrError, match="bridge br0 is full"):
        attach(paths, "c9", ["veth:br0"], owners(), k)
    assert len(leases(paths, "br-br0")) == 2 and len(k.names()) == 4  # lo br0 + 2 veths
    for i, r in enumerate(recs):
        network.detach(paths, "c%d" % i, r, kernel=k)


def test_second_request_failing_undoes_the_first(paths, owners):
    k = FakeKernel()
    _macvlan_host(k)
    k.fail["create_macvlan"] = OSError(errno.ENOMEM, "Cannot allocate memory")
    with pytest.raises(PyctrError, match="cannot create macvlan on nic0"):
        attach(paths, "c1", ["veth:br0", "macvlan:nic0,host_shim=no"], owners(), k)
    assert ("host", "create_veth") in [(ns, op) for ns, op, _, _ in k.calls]
    assert k.names() == ["lo", "nic0"] and leases(paths, "br-br0") == []
    assert leases(paths, "mv-nic0") == []


def test_not_a_bridge(paths, owners):
    k = FakeKernel()
    k.add_host_link("nic0")
    with pytest.raises(PyctrError, match="nic0 is not a bridge"):
        attach(paths, "c1", ["veth:nic0"], owners(), k)


def _macvlan_host(k):
    nic = k.add_host_link("nic0")
    k.host_ns.addrs.append((nic.index, "10.77.0.1", 24))
    return nic


def test_macvlan_with_host_shim(paths, owners):
    k = FakeKernel()
    nic = _macvlan_host(k)
    a = attach(paths, "ca", ["macvlan:nic0,ip=10.77.0.50"], owners(), k)
    b = attach(paths, "cb", ["macvlan:nic0"], owners(), k)
    assert a[0]["ip"] == "10.77.0.50/24" and b[0]["ip"] == "10.77.0.2/24"
    assert a[0]["shim"] == "pys-nic0" and a[0]["shim_ip"] == "10.77.0.1"  # the host's own
    shim = [l for l in k.host_ns.links.values() if l.name == "pys-nic0"][0]
    assert shim.link == nic.index and shim.macvlan_mode == "bridge"
    assert (shim.index, "10.77.0.1", 32) in k.host_ns.addrs
    assert sorted(r["dst"] for r in k.host_ns.routes if r["oif"] == shim.index) == \
        ["10.77.0.2", "10.77.0.50"]
    mv = [c for c in k.calls if c[1] == "create_macvlan" and c[2][0] == "eth0"][0]
    assert mv[2][2] == "bridge" and mv[3]["netns_fd"] is not None
    network.detach(paths, "ca", a, kernel=k)
    assert "pys-nic0" in k.names()  # b still uses it
    network.detach(paths, "cb", b, kernel=k)
    assert leases(paths, "mv-nic0") == [] and not [r for r in k.host_ns.routes
                                                   if r["oif"] == shim.index]
    assert "pys-nic0" in k.names()  # stays, like a bridge: gc only repairs crashes
    assert network.gc(paths, kernel=k) == []
    assert network.teardown(paths, "macvlan", "nic0", kernel=k) is None  # net rm
    assert k.names() == ["lo", "nic0"]


@pytest.mark.parametrize("spec", ["macvlan:nic0:private", "macvlan:nic0,host_shim=no"])
def test_no_shim_when_it_could_not_help_or_is_refused(paths, owners, spec):
    k = FakeKernel()
    _macvlan_host(k)
    recs = attach(paths, "c1", [spec], owners(), k)
    assert recs[0]["shim"] is None and "pys-nic0" not in k.names()


def test_macvlan_bad_lower_devices(paths, owners):
    k = FakeKernel()
    br = k.add_host_link("br0", link_type="bridge")
    k.add_host_link("nic1", master=br.index)
    with pytest.raises(PyctrError, match="unknown lower device nic7"):
        attach(paths, "c1", ["macvlan:nic7"], owners(), k)
    with pytest.raises(PyctrError, match="nic1 is a port of bridge br0"):
        attach(paths, "c1", ["macvlan:nic1,ip=10.1.0.2/24"], owners(), k)
    k.add_host_link("nic2")
    with pytest.raises(PyctrError, match="no IPv4 address"):
        attach(paths, "c1", ["macvlan:nic2"], owners(), k)


def test_passthru_takes_the_lower_alone(paths, owners):
    k = FakeKernel()
    _macvlan_host(k)
    first = attach(paths, "c1", ["macvlan:nic0:passthru"], owners(), k)
    assert first[0]["shim"] is None
    with pytest.raises(PyctrError, match="held by a passthru macvlan"):
        attach(paths, "c2", ["macvlan:nic0:passthru"], owners(), k)
    with pytest.raises(PyctrError, match="held by a passthru macvlan"):
        attach(paths, "c3", ["macvlan:nic0"], owners(), k)
    network.detach(paths, "c1", first, kernel=k)
    other = attach(paths, "c4", ["macvlan:nic0"], owners(), k)
    with pytest.raises(PyctrError, match="passthru needs nic0 alone"):
        attach(paths, "c5", ["macvlan:nic0:passthru"], owners(), k)
    network.detach(paths, "c4", other, kernel=k)


def test_address_errors_leave_nothing(paths, owners):
    k = FakeKernel()
    net = config.from_dict("lab", {"subnet": "10.6.0.0/24", "range": "10.6.0.10-10.6.0.10"})
    config.save(paths, net)
    ok = attach(paths, "c1", ["lab"], owners(), k)
    assert ok[0]["ip"] == "10.6.0.10/24"
    for spec, words in [("lab", "no free address"),
                        ("lab,ip=10.7.0.3", "outside subnet"),
                        ("lab,ip=10.6.0.3/16", "does not match subnet"),
                        ("lab,ip=10.6.0.10", "in use by container c1"),
                        ("lab,ip=10.6.0.1", r"in use \(network gateway"),
                        ("nosuchnet", "unknown network")]:
        before = (k.names(), leases(paths, "br-lab"))
        with pytest.raises(PyctrError, match=words):
            attach(paths, "c2", [spec], owners(), k)
        assert (k.names(), leases(paths, "br-lab")) == before
    network.detach(paths, "c1", ok, kernel=k)


def test_gc_removes_dead_leases_and_their_routes_but_keeps_the_shim(paths, owners):
    k = FakeKernel()
    _macvlan_host(k)
    p = subprocess.Popen(["sleep", "60"])
    attach(paths, "c1", ["macvlan:nic0"], p.pid, k)
    assert network.gc(paths, kernel=k) == []  # owner alive: nothing to do
    p.kill()
    p.wait()
    removed = network.gc(paths, kernel=k)
    assert "lease 10.77.0.2 in mv-nic0 (container c1)" in removed
    assert "route 10.77.0.2/32 via host shim pys-nic0" in removed
    assert "pys-nic0" in k.names() and network.gc(paths, kernel=k) == []


# -- prepare: every check before clone -----------------------------------------------

def _request(text, **after_parse):
    """A request as the CLI makes it: parse(), then --ip/--mac/--mtu set on it."""
    req = network.parse(text)
    for key, value in after_parse.items():
        setattr(req, key, value)
    return req


@pytest.mark.parametrize("text, after_parse, words", [
    ("veth:br0", {"mac": "02:00:00:00:00:zz"}, "malformed MAC"),
    ("veth:br0", {"mac": "03:00:00:00:00:01"}, "multicast"),
    ("veth:br0", {"ip": "10.0.0.300"}, "malformed IPv4"),
    ("veth:br0", {"mtu": 20}, "out of range"),
    ("broken", {}, "invalid TOML"),
    ("wrongtype", {}, "wrong type"),
    ("nosuch", {}, "unknown network"),
    ("lab,mode=vepa", {}, "lab is a veth network: mode does not apply"),
    ("mvlab,mode=loopy", {}, "unknown macvlan mode"),
    ("mvlab,mode=private,source_macs=02:00:00:00:00:01", {}, "only apply to macvlan mode source"),
    ("lab,ip=10.6.1.3", {}, "outside subnet"),
    ("lab,ip=10.6.0.3/16", {}, "does not match subnet"),
    ("macvlan:nic7", {}, "unknown lower device nic7"),
    ("veth:nic0", {}, "nic0 is not a bridge"),
    ("macvlan:nic0,mtu=9000", {}, "mtu 9000 is larger than lower device nic0's 1500"),
    ("uplinked", {}, "unknown uplink device nic5"),
])
def test_prepare_refuses_before_anything_exists(paths, text, after_parse, words):
    """No device, no lease, no netns opened, no state: only reads."""
    k = FakeKernel()
    k.add_host_link("nic0")
    for name, data in (("lab", {"subnet": "10.6.0.0/24"}),
                       ("mvlab", {"kind": "macvlan", "subnet": "10.6.0.0/24", "uplink": "nic0"}),
                       ("uplinked", {"subnet": "10.6.0.0/24", "uplink": "nic5"})):
        config.save(paths, config.from_dict(name, data))
    with open(config.path(paths, "broken"), "w") as f:
        f.write("subnet = \n")
    with open(config.path(paths, "wrongtype"), "w") as f:
        f.write('subnet = "10.6.0.0/24"\nmtu = "big"\n')
    with pytest.raises(PyctrError) as e:
        network.prepare(paths, [_request(text, **after_parse)], kernel=k)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert k.calls == [] and not k.open_fds and not os.path.exists(paths.root)


def test_prepare_leaves_the_spec_as_given_and_numbers_interfaces(paths):
    k = FakeKernel()
    k.add_host_link("nic0")
    reqs = [network.parse("none"), _request("veth:br0", mac="02:AA:00:00:00:01", ip="10.1.0.9"),
            network.parse("macvlan:nic0:private,route=default@10.1.0.1")]
    prepared = network.prepare(paths, reqs, kernel=k)
    assert [(p.ifname, p.kind.name, p.network.name) for p in prepared] == [
        ("eth0", "veth", "br0"), ("eth1", "macvlan", "macvlan:nic0")]
    assert prepared[0].request.mac == "02:aa:00:00:00:01" and reqs[1].mac == "02:AA:00:00:00:01"
    assert prepared[1].request.routes == ["0.0.0.0/0@10.1.0.1"]
    assert network.prepare(paths, [network.parse("host")], kernel=k) == []


def test_a_bad_network_request_fails_before_clone(paths, tmp_path):
    """Container.create: no state entry is reserved, no clone is made."""
    from fakes import RecordingSyscalls
    from pyctr.container import Container
    from pyctr.spec import Process, Root, Spec
    os.makedirs(paths.networks)
    with open(config.path(paths, "broken"), "w") as f:
        f.write("subnet = [\n")
    for req in (_request("veth:br0", mac="02:00:00:00:00:zz"), network.parse("broken")):
        syscall = RecordingSyscalls()
        spec = Spec(id="0123456789ab", name="early", root=Root(path=str(tmp_path)),
                    process=Process(args=["true"]), networks=[req]).freeze()
        c = Container(paths, spec, syscall)
        with pytest.raises(PyctrError, match="malformed MAC|invalid TOML"):
            c.create()
        # the signals held from creation's start; nothing else
        assert syscall.calls == [("block_signals",)] and c.pid == 0
        assert not os.path.exists(paths.containers)


# -- teardown: a network's host side (net rm, cluster down) ----------------------------

def _uplinked_bridge(paths, k, owners):
    nic = k.add_host_link("nic0", mac="52:54:00:00:00:01")
    k.host_ns.addrs.append((nic.index, "10.77.0.1", 24))
    config.save(paths, config.from_dict("cluster", {"subnet": "10.77.0.0/24", "uplink": "nic0"}))
    recs = attach(paths, "c1", ["cluster"], owners(), k)
    return nic, recs


def test_teardown_gives_the_uplink_back_once_unused(paths, owners):
    k = FakeKernel()
    nic, recs = _uplinked_bridge(paths, k, owners)
    assert network.teardown(paths, "veth", "cluster", "nic0", kernel=k) == \
        "in use by container c1"
    assert "cluster" in k.names()
    network.detach(paths, "c1", recs, kernel=k)
    assert network.teardown(paths, "veth", "cluster", "nic0", kernel=k) is None
    assert k.names() == ["lo", "nic0"] and nic.master == 0
    assert k.host_ns.addrs == [(nic.index, "10.77.0.1", 24)]
    assert network.teardown(paths, "veth", "cluster", "nic0", kernel=k) is None  # idempotent


def test_teardown_deletes_the_callers_ports_and_keeps_a_bridge_with_others(paths, owners):
    k = FakeKernel()
    p = subprocess.Popen(["sleep", "60"])
    recs = attach(paths, "c1", ["veth:br0"], p.pid, k)
    p.kill()
    p.wait()
    network.detach(paths, "c1", recs, kernel=k)
    port = recs[0]["host_ifname"]
    br = [l for l in k.host_ns.links.values() if l.name == "br0"][0]
    k.add_host_link(port, master=br.index)  # a caller's port still there (cluster down)
    k.add_host_link("foreign0", master=br.index)
    assert network.teardown(paths, "bridge", "br0", own_ports=[port], kernel=k) == \
        "bridge br0 still has ports: foreign0"
    assert port not in k.names() and "br0" in k.names()


def test_teardown_leaves_a_bridge_pyctr_did_not_make(paths):
    k = FakeKernel()
    k.add_host_link("br9", link_type="bridge")
    assert network.teardown(paths, "veth", "br9", kernel=k) is None
    assert "br9" in k.names()


def test_teardown_removes_an_unused_host_shim(paths, owners):
    k = FakeKernel()
    _macvlan_host(k)
    recs = attach(paths, "c1", ["macvlan:nic0"], owners(), k)
    assert network.teardown(paths, "macvlan", "nic0", kernel=k) == "in use by container c1"
    network.detach(paths, "c1", recs, kernel=k)
    assert network.teardown(paths, "macvlan", "nic0", kernel=k) is None
    assert k.names() == ["lo", "nic0"] and leases(paths, "mv-nic0") == []


# -- the recording fake is held to the real classes -------------------------------

def test_the_fake_kernel_refuses_what_the_real_one_lacks():
    k = FakeKernel()
    host = k.host()
    with pytest.raises(AttributeError, match="dellink"):
        host.dellink(name="lo")  # rtnl.Netlink.delete_link
    with pytest.raises(AttributeError, match="open_netns"):
        k.open_netns(1)  # wiring.Kernel.open_ns
    with pytest.raises(AttributeError):
        host.link("lo").kind  # rtnl.Link.link_type
    assert k.calls == []
    # A fake that grew a method, or parameters, the real class lacks does not load.
    with pytest.raises(TypeError, match="create_vxlan"):
        mirrors(rtnl.Netlink)(type("Fake", (), {"create_vxlan": lambda self, name: None}))
    with pytest.raises(TypeError, match="parameters differ"):
        mirrors(rtnl.Netlink)(type("Fake", (), {"add_addr": lambda self, index, ip, p: None}))


# -- the netlink encoder, checked against pyroute2's decoder -------------------------

class _Capture:
    def __init__(self):
        self.sent = []

    def send(self, data):
        self.sent.append(data)

    def recv(self, n):  # an ACK for the last request
        length, kind, flags, seq, pid = struct.unpack_from("=IHHII", self.sent[-1])
        return struct.pack("=IHHIIi", 36, rtnl.NLMSG_ERROR, 0, seq, 0, 0) + self.sent[-1][:16]

    def close(self):
        pass


def _encoded(call):
    nl = rtnl.Netlink.__new__(rtnl.Netlink)
    nl.sock, nl.seq = _Capture(), 0
    call(nl)
    return nl.sock.sent[-1]


def test_veth_message_decodes_with_pyroute2():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    raw = _encoded(lambda nl: nl.create_veth("pyvx0", "eth0", peer_netns_fd=7, mtu=1400,
                                             peer_mac="02:00:00:00:00:09", master=5))
    msg = ifinfmsg(raw)
    msg.decode()
    assert msg["header"]["type"] == rtnl.RTM_NEWLINK
    assert msg.get_attr("IFLA_IFNAME") == "pyvx0" and msg.get_attr("IFLA_MASTER") == 5
    assert msg.get_attr("IFLA_MTU") == 1400 and msg["flags"] & 1
    info = msg.get_attr("IFLA_LINKINFO")
    assert info.get_attr("IFLA_INFO_KIND") == "veth"
    peer = info.get_attr("IFLA_INFO_DATA").get_attr("VETH_INFO_PEER")
    assert peer.get_attr("IFLA_IFNAME") == "eth0" and peer.get_attr("IFLA_NET_NS_FD") == 7
    assert peer.get_attr("IFLA_ADDRESS") == "02:00:00:00:00:09"


def test_macvlan_and_route_messages_decode_with_pyroute2():
    from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
    from pyroute2.netlink.rtnl.rtmsg import rtmsg
    raw = _encoded(lambda nl: nl.create_macvlan("eth0", 3, "source", netns_fd=9,
                                                source_macs=["02:00:00:00:00:01"]))
    msg = ifinfmsg(raw)
    msg.decode()
    assert msg.get_attr("IFLA_LINK") == 3 and msg.get_attr("IFLA_NET_NS_FD") == 9
    data = msg.get_attr("IFLA_LINKINFO").get_attr("IFLA_INFO_DATA")
    assert data.get_attr("IFLA_MACVLAN_MODE") == "source"
    assert data.get_attr("IFLA_MACVLAN_MACADDR_MODE") == "set"
    raw = _encoded(lambda nl: nl.add_route(gateway="10.0.0.1", oif=4))
    msg = rtmsg(raw)
    msg.decode()
    assert msg.get_attr("RTA_GATEWAY") == "10.0.0.1" and msg.get_attr("RTA_OIF") == 4
    assert msg["dst_len"] == 0 and msg["table"] == 254


# -- per-node slices (noderange.py) ----------------------------------------------------

def test_per_node_slice_follows_the_node_address_also_once_bridged(paths, owners):
    k = FakeKernel()
    nic = k.add_host_link("nic0")
    k.host_ns.addrs.append((nic.index, "10.77.0.3", 24))
    net = config.from_dict("cluster", {"subnet": "10.77.0.0/24", "uplink": "nic0", "slice": 16})
    config.save(paths, net)
    assert config.load(paths, "cluster").to_dict() == net.to_dict()
    assert noderange.node_slice(k.host(), net).to_dict() == {
        "node": "10.77.0.3", "index": 3, "range": "10.77.0.48-10.77.0.63"}
    recs = attach(paths, "c1", ["cluster"], owners(), k)
    # the bridge now holds the node's address: the slice stays the same
    assert recs[0]["ip"] == "10.77.0.48/24"
    assert net.candidates(k.host()) == (ip_int("10.77.0.48"), ip_int("10.77.0.63"))
    network.detach(paths, "c1", recs, kernel=k)


def test_last_per_node_slice_stops_before_broadcast():
    k = FakeKernel()
    nic = k.add_host_link("nic0")
    k.host_ns.addrs.append((nic.index, "10.77.0.15", 24))
    net = config.from_dict("n", {"subnet": "10.77.0.0/24", "uplink": "nic0", "slice": 16})
    assert noderange.node_slice(k.host(), net).to_dict()["range"] == "10.77.0.240-10.77.0.254"
    k.host_ns.addrs[:] = [(nic.index, "10.77.0.16", 24)]
    with pytest.raises(PyctrError, match="need node addresses of host 1..15"):
        noderange.node_slice(k.host(), net)
