"""A crash at every step of making or removing a bridge (network/bridge.py),
against the recording fake of the kernel: the process "dies" before the
next change reaches the kernel, and no undo runs (as after SIGKILL). Then
gc, the next start and teardown must leave the host exactly as it was
before, or, once the bridge was complete, as a normal run leaves it. The
real kernel's side of this is tests/test_crash.py."""
import subprocess

import pytest

from conftest_net import FakeKernel
from pyctr import network
from pyctr.network import bridge, config, wiring
from test_network_unit import attach, owners, paths  # noqa: F401 (fixtures)

CHANGES = ("create_veth", "create_macvlan", "create_bridge", "set_link", "delete_link",
           "add_addr", "del_addr", "add_route", "del_route")


class Crash(BaseException):
    """SIGKILL, as the code under test sees it: nothing catches it."""


def crash_after(kernel, n):
    """Let n changes through, then die before the next."""
    count = [0]

    def maybe(*args, **kw):
        count[0] += 1
        if count[0] > n:
            raise Crash()
    for op in CHANGES:
        kernel.fail[op] = maybe


def survive(kernel):
    kernel.fail.clear()


def killed(action):
    """action(pid) crashes; its container, pid, dies with the crash."""
    container = subprocess.Popen(["sleep", "60"])
    try:
        with pytest.raises(Crash):
            action(container.pid)
    finally:
        container.kill()
        container.wait()


def node():
    """A fake node: nic0 up with its address and a default route as DHCP
    sets them, and a network whose bridge takes nic0."""
    k = FakeKernel()
    nic = k.add_host_link("nic0", mac="52:54:00:00:00:01")
    nic.flags = 1
    k.host_ns.addrs.append((nic.index, "10.77.0.1", 24))
    k.host_ns.routes.append({"dst": "0.0.0.0", "dst_len": 0, "gateway": "10.77.0.254",
                             "oif": nic.index, "src": "10.77.0.1", "protocol": 16,
                             "scope": 0, "metric": 100})
    return k


def host(k):
    """The host's links, addresses and routes, by name."""
    ns = k.host_ns
    name = {i: l.name for i, l in ns.links.items()}
    return (sorted((l.name, l.link_type, name.get(l.master), l.up, l.alias)
                   for l in ns.links.values()),
            sorted((name[i], ip, prefix) for i, ip, prefix in ns.addrs),
            sorted((r["dst"], r["dst_len"], r["gateway"], name[r["oif"]], r["src"],
                    r["protocol"], r["metric"]) for r in ns.routes))


def changes(k, action):
    """How many changes action() makes on kernel k."""
    count = len(k.calls)
    action()
    return len([c for c in k.calls[count:] if c[1] in CHANGES])


@pytest.fixture
def uplinked(paths):
    config.save(paths, config.from_dict("cluster", {"subnet": "10.77.0.0/24", "uplink": "nic0",
                                                    "range": "10.77.0.100-10.77.0.149"}))
    return paths


def run(paths, k, owners, name):
    """A whole container life on the network: attach, then detach."""
    recs = attach(paths, name, ["cluster"], owners(), k)
    network.detach(paths, name, recs, kernel=k)


def test_a_crash_at_every_step_of_making_an_uplinked_bridge_is_undone(
        uplinked, owners, monkeypatch):
    paths = uplinked
    k, made = node(), []
    steps = changes(k, lambda: made.append(attach(paths, "first", ["cluster"], owners(), k)))
    network.detach(paths, "first", made[0], kernel=k)
    monkeypatch.setattr(wiring.Undo, "run", lambda self: None)  # SIGKILL runs no undo
    for n in range(steps):
        k = node()
        before = host(k)
        crash_after(k, n)
        killed(lambda pid: attach(paths, "killed%d" % n, ["cluster"], pid, k))
        survive(k)
        renamed = any(l.name == "cluster" for l in k.host_ns.links.values())
        network.gc(paths, kernel=k)
        after_gc = host(k)
        assert network.gc(paths, kernel=k) == []
        run(paths, k, owners, "next%d" % n)  # the next start works
        normal = host(k)  # what a normal run leaves: the bridge kept
        assert after_gc == (normal if renamed else before), "crash after %d changes" % n
        assert network.teardown(paths, "veth", "cluster", "nic0", kernel=k) is None
        assert host(k) == before, "crash after %d changes, then net rm" % n


def test_a_crash_at_every_step_of_removing_an_uplinked_bridge_is_finished(
        uplinked, owners):
    paths = uplinked
    k = node()
    before = host(k)
    run(paths, k, owners, "first")
    steps = changes(k, lambda: network.teardown(paths, "veth", "cluster", "nic0", kernel=k))
    assert host(k) == before
    for n in range(steps):
        k = node()
        run(paths, k, owners, "c%d" % n)
        crash_after(k, n)
        with pytest.raises(Crash):
            network.teardown(paths, "veth", "cluster", "nic0", kernel=k)
        survive(k)
        network.gc(paths, kernel=k)  # the removal had begun: gc finishes it
        assert host(k) == before, "crash after %d changes of the removal, then gc" % n
        assert network.teardown(paths, "veth", "cluster", "nic0", kernel=k) is None
        assert host(k) == before


def test_next_start_repairs_a_half_made_bridge_without_gc(uplinked, owners, monkeypatch):
    paths = uplinked
    k = node()
    before = host(k)
    monkeypatch.setattr(wiring.Undo, "run", lambda self: None)
    crash_after(k, 3)  # bridge made, alias set, nic0 in it: its address not moved yet
    killed(lambda pid: attach(paths, "killed", ["cluster"], pid, k))
    survive(k)
    monkeypatch.undo()
    assert bridge.pending(network.ipam.Pool(paths, "br-cluster"))
    recs = attach(paths, "next", ["cluster"], owners(), k)
    assert recs[0]["gateway"] == "10.77.0.1"  # the node's address, moved to the bridge
    network.detach(paths, "next", recs, kernel=k)
    assert network.teardown(paths, "veth", "cluster", "nic0", kernel=k) is None
    assert host(k) == before


def test_a_bridge_renamed_by_a_concurrent_start_is_no_foreign_master():
    """Two first starts on a network with an uplink: one makes the bridge
    under its temporary name and renames it last. If the rename falls
    between the other's lookup of the bridge (not there yet) and its look
    at the uplink's master (the bridge, now under its own name), the
    uplink is enslaved to the network's own bridge, not to another device."""
    from pyctr.network.kinds.veth import Veth
    from pyctr.errors import PyctrError
    k = node()
    (nic,) = [link for link in k.host_ns.links.values() if link.name == "nic0"]
    br = k.add_host_link("seg0", link_type="bridge")
    nic.master = br.index  # in the finished bridge
    host = k.host()
    real_link = host.link
    lookups = []

    def link(name=None, index=0):
        lookups.append(name or index)
        if name == "seg0" and len(lookups) == 1:
            return None  # looked up before the rename
        return real_link(name, index)
    host.link = link
    net = config.Network("seg", "veth", "seg0", uplink="nic0")
    found, uplink = Veth()._devices(host, net)
    assert found is None and uplink.name == "nic0"
    # a bridge of another name that holds the uplink is refused, as before
    other = k.add_host_link("other0", link_type="bridge")
    nic.master = other.index
    with pytest.raises(PyctrError, match="already enslaved"):
        Veth()._devices(k.host(), net)
