"""pyctr's networking on a simulated cluster (pyctr.testbed): every node is
a network namespace with its own NIC `nic0` on a switch bridge in another
namespace, and its own pyctr state. Nothing here touches the machine's own
interfaces. Every ping is bounded (-c/-W), every transfer has a timeout."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import groups_of, root_only
from conftest_net import stand_in
from pyctr.network import ipam
from pyctr.testbed import Testbed

pytestmark = [root_only, pytest.mark.root]


@pytest.fixture
def tb(image_data):
    with Testbed(nodes=2, data=image_data) as t:
        yield t


@pytest.fixture
def tb_hairpin(image_data):
    with Testbed(nodes=1, data=image_data, hairpin=True) as t:
        yield t


# -- helpers -----------------------------------------------------------------------

def ok(node, *args, timeout=120):
    r = node.pyctr(*args, timeout=timeout, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "pyctr %s -> %d\n%s%s" % (" ".join(args), r.returncode, r.stdout,
                                                        r.stderr)
    return r


def fails(node, *args, words, timeout=120):
    """A bad request: exit 125, one line naming the problem, no traceback."""
    r = node.pyctr(*args, timeout=timeout, stdin=subprocess.DEVNULL)
    err = r.stderr.strip()
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert err.startswith("pyctr: ") and len(err.splitlines()) == 1, r.stderr
    assert words in err, err
    return err


def start(node, name, *nets, opts=(), cmd=("sleep", "300")):
    """A detached container; returns its first address."""
    ok(node, "run", "-d", "--name", name, *["--net=" + n for n in nets], *opts, "busybox", *cmd)
    return address(node, name)


def record(node, name, i=0):
    st = json.loads(ok(node, "inspect", name).stdout)
    st = st[0] if isinstance(st, list) else st
    return st["networks"][i]


def address(node, name, i=0):
    return record(node, name, i)["ip"].split("/")[0]


def pings(node, name, ip):
    """Does container `name` on node get an answer from ip?"""
    r = node.pyctr("exec", name, "ping", "-c", "2", "-W", "3", ip, timeout=30,
                   stdin=subprocess.DEVNULL)
    return r.returncode == 0


def node_pings(node, ip):
    return node.run(["busybox", "ping", "-c", "2", "-W", "3", ip], timeout=30).returncode == 0


def links(node):
    out = node.run(["ip", "-o", "link"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def leases(node):
    out = []
    for dirpath, _, files in os.walk(node.paths.leases):
        out += [os.path.join(os.path.basename(dirpath), f) for f in files
                if f != "lock" and not f.startswith(".")]  # .conflict-*: notes, not leases
    return sorted(out)


def leftovers(node):
    """What pyctr could leave behind on a node once its containers are gone.
    A departed container's host veth end goes with its netns, which the
    kernel dismantles in the background: give that a bounded moment."""
    for _ in range(100):
        if not [l for l in links(node) if l.startswith("pyv")]:
            break
        time.sleep(0.05)
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if node.paths.root in line]
    try:
        containers = os.listdir(node.paths.containers)
    except FileNotFoundError:
        containers = []
    return {"interfaces": [l for l in links(node) if l.startswith(("pyv", "pys"))],
            "leases": leases(node), "containers": containers, "mounts": mounts}


CLEAN = {"interfaces": [], "leases": [], "containers": [], "mounts": []}


def cluster_networks(tb, kind):
    """The same `net create` on every node: node k (10.77.0.k) hands out
    its own slice, 10.77.0.16k-10.77.0.16k+15 (noderange.py)."""
    for node in tb.nodes:
        extra = ["--kind", "macvlan"] if kind == "macvlan" else []
        ok(node, "net", "create", "cluster", "--subnet", "10.77.0.0/24", "--uplink", "nic0",
           "--per-node", *extra)


def tcp_stream(sender, receiver, net, ip, nbytes=4 << 20):
    """Push nbytes from a container on `sender` to one on `receiver` (at ip)
    over TCP; returns the count the receiver saw."""
    srv = receiver.pyctr_popen(
        "run", "--rm", "--net=" + net, "--ip", ip, "busybox", "sh", "-c",
        "timeout 30 nc -l -p 5000 -e sh -c 'wc -c > /tmp/n'; cat /tmp/n",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        # the receiver may not listen yet: retry, bounded (50 x 0.2 s)
        ok(sender, "run", "--rm", "--net=" + net, "busybox", "sh", "-c",
           "for i in $(seq 50); do dd if=/dev/zero bs=64k count=%d 2>/dev/null | "
           "nc %s 5000 && exit 0; sleep 0.2; done; exit 1" % (nbytes >> 16, ip), timeout=60)
        out, err = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait()
    assert srv.returncode == 0, err
    return int(out.split()[-1])


# -- veth + bridge ---------------------------------------------------------------------

def test_veth_container_is_wired_before_its_command_starts(tb):
    a = tb.nodes[0]
    out = ok(a, "run", "--rm", "--net=veth:br0", "busybox", "sh", "-c",
             "ip -o -4 addr show eth0; ip route; ip -o link show lo; "
             "cat /proc/sys/net/ipv6/conf/eth0/accept_dad /proc/sys/net/ipv4/conf/eth0/arp_notify;"
             " ping -c 1 -W 3 10.89.0.1").stdout
    assert "inet 10.89.0.2/24" in out
    assert "default via 10.89.0.1 dev eth0" in out
    assert "UP" in out.split("lo:")[1].splitlines()[0]
    assert "0\n1\n" in out  # DAD off, ARP notify on
    assert "1 packets received" in out
    br = a.run(["ip", "-d", "link", "show", "br0"]).stdout
    assert "alias pyctr network br0" in br
    assert leftovers(a) == CLEAN


def test_veth_options_mac_mtu_ip_and_two_interfaces(tb):
    a = tb.nodes[0]
    out = ok(a, "run", "--rm", "--net=veth:br0", "--net=veth:br1,ip=10.5.0.9/24",
             "--ip", "10.89.0.42", "--mac", "02:00:00:00:00:42", "--mtu", "1400",
             "busybox", "sh", "-c", "ip -o link; ip -o -4 addr; ip route").stdout
    assert "02:00:00:00:00:42" in out and "mtu 1400" in out
    assert "inet 10.89.0.42/24" in out and "inet 10.5.0.9/24" in out
    assert "eth1" in out and out.count("default via") == 1
    assert "default via 10.89.0.1 dev eth0" in out
    assert leftovers(a) == CLEAN


def test_veth_bridge_across_nodes(tb):
    """Fig. 1 of the study: the node NIC in the bridge; containers sit on
    the NIC's segment and reach each other across nodes."""
    a, b = tb.nodes
    cluster_networks(tb, "bridge")
    ip_a1 = start(a, "a1", "cluster")
    ip_a2 = start(a, "a2", "cluster")
    ip_b1 = start(b, "b1", "cluster")
    assert ip_a1 == "10.77.0.16" and ip_b1 == "10.77.0.32"
    assert pings(a, "a1", ip_b1) and pings(b, "b1", ip_a1)  # across nodes
    assert pings(a, "a1", ip_a2)                            # locally
    assert pings(b, "b1", b.ip) and pings(b, "b1", a.ip)    # the nodes themselves
    assert node_pings(a, ip_b1)                             # node to a remote container
    assert tcp_stream(a, b, "cluster", "10.77.0.40") == 4 << 20
    # the bridge took the NIC's address and MAC; the NIC is its port
    assert "10.77.0.1/24" in a.run(["ip", "-o", "-4", "addr", "show", "cluster"]).stdout
    assert "master cluster" in a.run(["ip", "-o", "link", "show", "nic0"]).stdout
    for node, names in ((a, ("a1", "a2")), (b, ("b1",))):
        for n in names:
            ok(node, "rm", "-f", n)
        assert leftovers(node) == CLEAN
    # net rm gives the NIC its address back
    ok(a, "net", "rm", "cluster")
    assert "10.77.0.1/24" in a.run(["ip", "-o", "-4", "addr", "show", "nic0"]).stdout
    assert "cluster" not in links(a)
    assert node_pings(a, b.ip)


# -- macvlan -----------------------------------------------------------------------------

def test_macvlan_across_nodes_and_host_shim(tb):
    a, b = tb.nodes
    cluster_networks(tb, "macvlan")
    ip_a1 = start(a, "a1", "cluster")
    ip_a2 = start(a, "a2", "cluster")
    ip_b1 = start(b, "b1", "cluster")
    assert pings(a, "a1", ip_b1) and pings(b, "b1", ip_a1)  # across nodes
    assert pings(a, "a1", ip_a2)                            # locally (bridge mode)
    # the node reaches its own macvlan containers only through the shim
    assert "pys-nic0" in links(a)
    assert node_pings(a, ip_a1) and node_pings(b, ip_b1)
    assert pings(a, "a1", a.ip)
    assert node_pings(a, ip_b1)  # and remote ones over the wire
    assert tcp_stream(a, b, "cluster", "10.77.0.40") == 4 << 20
    ok(a, "rm", "-f", "a1")
    assert node_pings(a, ip_a2)
    ok(a, "rm", "-f", "a2")
    ok(b, "rm", "-f", "b1")
    # the shim stays with the network, like a bridge: gc (crash repair) keeps
    # it, `net rm` removes it with the network
    assert leftovers(a)["interfaces"] == ["pys-nic0"] and leftovers(a)["leases"] == []
    assert ok(a, "gc").stdout == ""
    assert leftovers(a)["interfaces"] == ["pys-nic0"]
    ok(a, "net", "rm", "cluster")
    assert leftovers(a) == CLEAN


def test_macvlan_without_shim_the_node_cannot_reach_its_containers(tb):
    a, b = tb.nodes
    ip = start(a, "a1", "macvlan:nic0,host_shim=no", opts=("--ip", "10.77.0.120"))
    assert "pys-nic0" not in links(a)
    assert not node_pings(a, ip)   # the problem the shim solves
    assert node_pings(b, ip)       # while the wire reaches it


def test_macvlan_bridge_mode_talks_locally(tb):
    a = tb.nodes[0]
    start(a, "m1", "macvlan:nic0:bridge", opts=("--ip", "10.77.0.121"))
    start(a, "m2", "macvlan:nic0:bridge", opts=("--ip", "10.77.0.122"))
    assert record(a, "m1")["mode"] == "bridge"
    assert pings(a, "m1", "10.77.0.122")


def test_macvlan_private_mode_talks_to_no_sibling(tb):
    a, b = tb.nodes
    start(a, "m1", "macvlan:nic0:private", opts=("--ip", "10.77.0.121"))
    start(a, "m2", "macvlan:nic0:private", opts=("--ip", "10.77.0.122"))
    assert not pings(a, "m1", "10.77.0.122")
    assert pings(a, "m1", b.ip)  # the wire still works


def test_macvlan_vepa_mode_needs_a_hairpin_switch(tb, tb_hairpin):
    a = tb.nodes[0]
    start(a, "m1", "macvlan:nic0:vepa", opts=("--ip", "10.77.0.121"))
    start(a, "m2", "macvlan:nic0:vepa", opts=("--ip", "10.77.0.122"))
    assert not pings(a, "m1", "10.77.0.122")  # the switch never sends it back
    h = tb_hairpin.nodes[0]
    start(h, "m1", "macvlan:nic0:vepa", opts=("--ip", "10.77.0.121"))
    start(h, "m2", "macvlan:nic0:vepa", opts=("--ip", "10.77.0.122"))
    assert pings(h, "m1", "10.77.0.122")      # hairpin port: it comes back


def test_macvlan_passthru_one_per_device_with_its_mac(tb):
    a, b = tb.nodes
    nic_mac = a.run(["cat", "/sys/class/net/nic0/address"]).stdout.strip()
    start(a, "p1", "macvlan:nic0:passthru", opts=("--ip", "10.77.0.121"))
    out = ok(a, "exec", "p1", "cat", "/sys/class/net/eth0/address").stdout.strip()
    assert out == nic_mac
    assert pings(a, "p1", b.ip)
    fails(a, "run", "--rm", "--net=macvlan:nic0:passthru", "--ip", "10.77.0.122", "busybox",
          "true", words="held by a passthru macvlan")
    fails(a, "run", "--rm", "--net=macvlan:nic0", "--ip", "10.77.0.123", "busybox",
          "true", words="held by a passthru macvlan")
    ok(a, "rm", "-f", "p1")
    assert leftovers(a) == CLEAN


def test_macvlan_source_mode_lets_only_listed_macs_in(tb):
    a, b = tb.nodes
    start(b, "listed", "macvlan:nic0", opts=("--ip", "10.77.0.201", "--mac", "02:00:00:00:02:01"))
    start(b, "other", "macvlan:nic0", opts=("--ip", "10.77.0.202", "--mac", "02:00:00:00:02:02"))
    start(a, "src", "macvlan:nic0:source,source_macs=02:00:00:00:02:01",
          opts=("--ip", "10.77.0.101"))
    assert record(a, "src")["mode"] == "source"
    assert pings(b, "listed", "10.77.0.101")
    assert not pings(b, "other", "10.77.0.101")


# -- bad input: one line, nothing left -----------------------------------------------------

def test_bad_requests_leave_nothing(tb):
    a = tb.nodes[0]
    ok(a, "net", "create", "small", "--subnet", "10.6.0.0/24", "--range", "10.6.0.10-10.6.0.10")
    start(a, "holder", "small")
    start(a, "fixed", "veth:br0", opts=("--ip", "10.89.0.50"))
    before = leftovers(a)
    cases = [
        (["--net=macvlan:nic9"], "unknown lower device nic9"),
        (["--net=veth:averyveryverylongname"], "too long"),
        (["--net=veth:br/0"], "invalid bridge name"),
        (["--net=veth:nic0"], "nic0 is not a bridge"),
        (["--net=veth:br0", "--ip", "10.89.0.300"], "malformed IPv4"),
        (["--net=veth:br0", "--ip", "10.90.0.5"], "outside subnet"),
        (["--net=veth:br0", "--ip", "10.89.0.50"], "in use by container"),
        (["--net=small"], "no free address"),
        (["--net=nosuch"], "unknown network"),
        (["--net=macvlan:nic0:source"], "needs source_macs"),
    ]
    for flags, words in cases:
        fails(a, "run", "--rm", *flags, "busybox", "true", words=words)
        assert leftovers(a) == before, flags
    fails(a, "net", "create", "bad", "--subnet", "10.6.0.0/33", words="malformed subnet")
    fails(a, "net", "create", "small", "--subnet", "10.6.0.0/24", words="already exists")
    fails(a, "net", "rm", "small", words="in use by container")


def test_bad_mac_or_network_file_fails_before_the_container_exists(tb):
    """Checked before the state entry is made (and so before clone): with
    the state directory made impossible, the network error is still the one
    reported, and nothing appears on the node."""
    a = tb.nodes[0]
    os.makedirs(a.paths.networks, exist_ok=True)
    with open(os.path.join(a.paths.networks, "broken.toml"), "w") as f:
        f.write('subnet = "10.6.0.0/24"\nmtu = "big"\n')
    os.makedirs(a.paths.root, exist_ok=True)
    with open(a.paths.containers, "w"):
        pass  # a file where the containers' directory would be made
    try:
        before = links(a)
        fails(a, "run", "--rm", "--name", "early", "--net=veth:br0", "--mac", "02:00:00:00:00:zz",
              "busybox", "true", words="malformed MAC")
        fails(a, "run", "--rm", "--net=broken", "busybox", "true", words="wrong type")
        fails(a, "run", "--rm", "--net=veth:br0", "--net=macvlan:nic9", "busybox", "true",
              words="unknown lower device nic9")
        assert links(a) == before and leases(a) == []
    finally:
        os.unlink(a.paths.containers)


def test_lower_device_that_is_a_bridge_port_is_refused(tb):
    a = tb.nodes[0]
    cluster_networks(tb, "bridge")
    start(a, "c1", "cluster")
    fails(a, "run", "--rm", "--net=macvlan:nic0", "busybox", "true",
          words="nic0 is a port of bridge cluster")


FILL_BRIDGE = textwrap.dedent("""
    import sys
    from pyctr.network.rtnl import Netlink
    with Netlink() as nl:
        nl.create_bridge("full")
        br = nl.link("full").index
        for i in range(int(sys.argv[1])):
            nl.create_veth("d%d" % i, "e%d" % i, master=br, up=False)
""")


def test_full_bridge_is_refused_and_leaves_nothing(tb):
    a = tb.nodes[0]
    # 1023 ports is all a Linux bridge takes (port numbers are 10 bits, 0 unused)
    r = a.run([sys.executable, "-c", FILL_BRIDGE, "1023"], timeout=300)
    assert r.returncode == 0, r.stderr
    a.run(["ip", "addr", "add", "10.88.0.1/24", "dev", "full"], check=True)
    before = len(links(a))
    fails(a, "run", "--rm", "--net=veth:full", "busybox", "true", words="bridge full is full")
    assert len(links(a)) == before and leftovers(a) == CLEAN


# -- many at once, and cleanup after failures -------------------------------------------------

def test_thirty_concurrent_starts_on_one_bridge(tb):
    a = tb.nodes[0]
    ok(a, "net", "create", "many", "--subnet", "10.60.0.0/24")
    procs = [a.pyctr_popen("run", "-d", "--name", "c%d" % i, "--net=many", "busybox", "sleep",
                           "300", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True) for i in range(30)]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    ips = [address(a, "c%d" % i) for i in range(30)]
    assert len(set(ips)) == 30
    for ip in ips:
        assert node_pings(a, ip), ip
    assert pings(a, "c0", ips[-1])
    assert len(leases(a)) == 30
    procs = [a.pyctr_popen("rm", "-f", "c%d" % i, stdin=subprocess.DEVNULL) for i in range(30)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    assert leftovers(a) == CLEAN


def test_failed_start_leaves_nothing(tb):
    a = tb.nodes[0]
    r = a.pyctr("run", "--rm", "--net=veth:br0", "--net=macvlan:nic0", "busybox",
                "/no/such/command", timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 127, r.stderr
    assert leftovers(a)["interfaces"] == ["pys-nic0"]  # the network's, not the container's
    assert leftovers(a)["leases"] == [] and leftovers(a)["containers"] == []
    ok(a, "net", "rm", "macvlan:nic0", "veth:br0")  # what the ad-hoc networks made
    assert leftovers(a) == CLEAN
    assert "br0" not in links(a)
    # nor their address pools (the lock files that outlived every lease)
    assert not {"br-br0", "mv-nic0"} & set(ipam.pools(a.paths))


FULL = "pyctr-test-full"  # the source of the small tmpfs below, to tell its mount apart


def test_a_full_state_disk_fails_in_one_line_and_leaves_nothing(tb):
    """The state root full at each point of a start with a network: a tmpfs
    of a few pages as the node's root, 4 KiB more each time until a start
    fits. Each failure is one line with exit 125, and leaves no lease,
    record, half-written file, interface or cgroup. A lease whose pool hint
    could not be written stayed taken for good, and a raw OSError from a
    stage or from the running record was a traceback."""
    a = tb.nodes[0]
    root = a.paths.root
    os.makedirs(root, exist_ok=True)
    failed = 0
    for kib in range(8, 200, 4):
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk" % kib, FULL, root], check=True)
        try:
            r = a.pyctr("run", "--rm", "--net=veth:br0", "busybox", "true", timeout=60,
                        stdin=subprocess.DEVNULL)
            if r.returncode == 0:
                break
            failed += 1
            err = r.stderr.strip()
            assert (r.returncode, len(err.splitlines())) == (125, 1), (kib, r.stderr)
            assert err.startswith("pyctr: ") and "No space left on device" in err, (kib, err)
            left = leftovers(a)
            left["mounts"] = [m for m in left["mounts"] if FULL not in m]
            assert left == CLEAN, (kib, err, left)
            made = [os.path.relpath(os.path.join(d, f), root)
                    for d, _, files in os.walk(root) for f in files]
            assert [f for f in made if f.endswith((".tmp", ".new"))
                    or not (f.startswith("seccomp/") or f.endswith("/lock"))] == [], (kib, made)
            assert groups_of(a.paths) == [], kib
        finally:
            a.pyctr("net", "rm", "veth:br0", timeout=60, stdin=subprocess.DEVNULL)
            subprocess.run(["umount", root], check=True)
            if "br0" in links(a):  # made by a start whose network record the tmpfs took along
                a.ip_cmd("link", "del", "br0")
    else:
        pytest.fail("no start fitted in %d KiB" % kib)
    assert failed >= 5  # the sizes went through several stages, not straight to success


def test_a_root_that_fails_is_reported_as_such_when_it_has_a_network(tb, rootfs, tmp_path):
    """The child fails building its root (here /proc is a symlink) while the
    parent wires its network into a netns that is gone with it: the user
    reads the child's reason, not that its process is gone, and nothing of
    the network is left."""
    bad = tmp_path / "bad"
    shutil.copytree(rootfs, bad, symlinks=True)
    shutil.rmtree(bad / "proc")
    os.symlink("/tmp", bad / "proc")
    a = tb.nodes[0]
    for _ in range(4):
        fails(a, "run", "--rm", "--net=veth:br0", str(bad), "true", words="needs a directory")
    assert leftovers(a)["leases"] == [] and leftovers(a)["containers"] == []
    ok(a, "net", "rm", "veth:br0")
    assert leftovers(a) == CLEAN


def test_kill_9_of_pyctr_then_lease_reclaimed_and_gc_clean(tb):
    a = tb.nodes[0]
    start(a, "keep", "veth:br0")  # the bridge and its subnet exist before
    p = a.pyctr_popen("run", "--name", "victim", "--net=veth:br0", "--ip", "10.89.0.77",
                      "busybox", "sleep", "300", stdin=subprocess.DEVNULL)
    try:
        for _ in range(300):  # until it is wired (bounded: 30 s)
            if "br-br0/10.89.0.77" in leases(a) and len(
                    [l for l in links(a) if l.startswith("pyv")]) == 2:
                break
            time.sleep(0.1)
        else:
            pytest.fail("container did not come up")
        p.kill()  # SIGKILL: pyctr gets no chance to clean up
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    for _ in range(100):  # the container dies with its parent; its host end with it
        if len([l for l in links(a) if l.startswith("pyv")]) == 1:
            break
        time.sleep(0.1)
    assert len([l for l in links(a) if l.startswith("pyv")]) == 1
    # the dead owner's lease is reclaimed by the next start that wants it
    out = ok(a, "run", "--rm", "--net=veth:br0", "--ip", "10.89.0.77", "busybox", "ip", "-o",
             "-4", "addr", "show", "eth0").stdout
    assert "10.89.0.77/24" in out
    ok(a, "rm", "-f", "keep")
    ok(a, "gc")
    assert leftovers(a) == CLEAN
    assert ok(a, "gc").stdout == ""  # idempotent


def test_gc_removes_a_crashed_attach_leftovers(tb):
    """A stand-in container wired by attach, whose owner then dies without
    detach: gc removes its lease and the host shim no one uses any more."""
    a = tb.nodes[0]
    p = stand_in(a)
    script = ("import json, sys; from pyctr import network; from pyctr.paths import Paths; "
              "p = Paths(%r, %r); "
              "ready = network.prepare(p, [network.parse('macvlan:nic0,ip=10.77.0.130')]); "
              "print(json.dumps(network.attach(p, 'standin0001', ready, %d)))"
              % (a.paths.root, a.paths.config, p.pid))
    r = a.run([sys.executable, "-c", script])
    assert r.returncode == 0, r.stderr
    assert "pys-nic0" in links(a) and leases(a) == ["mv-nic0/10.77.0.130"]
    p.kill()
    p.wait()
    out = ok(a, "gc").stdout
    assert "lease 10.77.0.130" in out and "route 10.77.0.130/32 via host shim pys-nic0" in out
    assert leftovers(a)["interfaces"] == ["pys-nic0"]  # the network's presence, kept
    ok(a, "net", "rm", "macvlan:nic0")
    assert leftovers(a) == CLEAN


def test_a_bridges_ports_are_listed_the_same_by_the_kernels_filtered_dump(tb):
    """veth's probe decision lists the bridge's ports (sysfs, else the
    kernel's dump filtered by master): both see exactly the bridge's ports."""
    a = tb.nodes[0]
    start(a, "p1", "veth:br0")
    start(a, "p2", "veth:br0")
    a.ip_cmd("link", "add", "other0", "type", "bridge")
    a.ip_cmd("link", "add", "elsewhere", "master", "other0", "type", "veth", "peer", "name",
             "elsewhere1")
    code = ("import json, os; from pyctr.network.rtnl import Netlink; h = Netlink(); "
            "print(json.dumps([sorted(h.ports(h.link('br0').index)), "
            "sorted(os.listdir('/sys/class/net/br0/brif'))]))")
    dumped, listed = json.loads(a.run([sys.executable, "-c", code], check=True).stdout)
    assert dumped == listed and len(dumped) == 2 and all(n.startswith("pyv") for n in dumped)
    a.ip_cmd("link", "del", "elsewhere")
    a.ip_cmd("link", "del", "other0")
    ok(a, "rm", "-f", "p1", "p2")
