"""The network helper (pyctr netd) as its users meet it: a real daemon, run
as root inside a simulated node (pyctr.testbed) with its own socket, config
and state; clients are the unprivileged user nobody (and a uid with no
name), each with its own user+network namespace made by `unshare -U -n -r`
(a holder: the container's stand-in). What counts is what the kernel then
holds: interfaces in the holder's netns, lease files, host-side devices.
Nothing here touches the machine's own interfaces; every ping is bounded."""
import base64
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, root_only
from conftest_netd import Helper
from pyctr.testbed import Testbed

pytestmark = [root_only, pytest.mark.root]

USER = 65534          # nobody
OTHER = 54321         # an unprivileged uid without a passwd entry
USER_SCRIPT = os.path.join(REPO, "tests", "netd_user.py")
LAN = "10.88.0.0/24"  # veth network on bridge brlan, node-local
WIRE_RANGE = "10.77.0.100-10.77.0.119"  # macvlan network on nic0 (the testbed's subnet)


@pytest.fixture(scope="module")
def bed():
    data = os.environ.get("PYCTR_TEST_DATA") or "/var/lib/pyctr"
    with Testbed(prefix="pyctr-netd", nodes=2, data=data) as tb:
        node = tb.nodes[0]
        for args in (("lan", "--subnet", LAN, "--bridge", "brlan"),
                     ("wire", "--kind", "macvlan", "--uplink", "nic0", "--subnet",
                      tb.subnet, "--range", WIRE_RANGE),
                     ("closed", "--subnet", "10.89.5.0/24", "--bridge", "brclosed")):
            r = node.pyctr("net", "create", *args)
            assert r.returncode == 0, r.stderr
        helper = Helper(node)
        helper.start()
        try:
            yield tb, helper
        finally:
            helper.stop()


@pytest.fixture
def world(bed):
    """The daemon (restarted if a test killed it), a policy writer, and the
    holders a test made, killed afterwards with what they held collected."""
    tb, helper = bed
    if helper.proc.poll() is not None:
        helper.start()
    w = World(tb, helper)
    w.policy('[network.lan]\nusers = ["nobody"]\n[network.wire]\nusers = ["nobody"]\n')
    yield w
    w.close()


class World:
    def __init__(self, tb, helper):
        self.tb, self.helper, self.node = tb, helper, tb.nodes[0]
        self.holders = []

    def policy(self, text):
        with open(os.path.join(self.node.paths.config, "policy.toml"), "w") as f:
            f.write(text)

    def holder(self, uid=USER):
        """A process in a new user+network namespace of uid's: a container's stand-in."""
        p = subprocess.Popen(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                              "--clear-groups", "unshare", "-U", "-n", "-r", "sleep", "600"])
        self.holders.append(p)
        deadline = time.monotonic() + 30
        while _comm(p.pid) != "sleep":
            assert p.poll() is None and time.monotonic() < deadline, "holder did not start"
            time.sleep(0.01)
        return p.pid

    def root_process_in(self, pid):
        """A root process that joined holder pid's netns."""
        p = subprocess.Popen(["nsenter", "-t", str(pid), "-n", "sleep", "600"])
        self.holders.append(p)
        while _comm(p.pid) != "sleep":
            time.sleep(0.01)
        return p.pid

    def ask(self, job, uid=USER, pass_fds=(), groups=()):
        """Run netd_user.py as uid (gid uid, supplementary groups) inside node
        n1: {"ok": ...} or {"error": ...}."""
        argv = self.node.argv(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                               "--groups=%s" % ",".join(map(str, groups)) if groups
                               else "--clear-groups", sys.executable, USER_SCRIPT,
                               json.dumps(job)])
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                           env=self.helper.env(), pass_fds=pass_fds)
        assert r.returncode == 0 and not r.stderr, (r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def attach(self, pid, container="c1", networks=({"network": "lan"},), netns=None, uid=USER,
               pass_fds=(), groups=()):
        return self.ask({"op": "attach", "container": container, "pid": pid,
                         "netns": netns or "pid:%d" % pid, "networks": list(networks)},
                        uid, pass_fds, groups)

    def raw(self, data, fds=(), hang_up=False, repeat=1):
        """data * repeat sent as is, with fds: what came back."""
        return self.ask({"op": "raw", "data": base64.b64encode(data).decode(), "repeat": repeat,
                         "fds": list(fds), "hang_up": hang_up})["ok"]

    def leases(self):
        """{pool/address: text} of every lease file of the node's state."""
        out = {}
        base = self.node.paths.leases
        for pool in sorted(os.listdir(base)) if os.path.isdir(base) else ():
            for name in os.listdir(os.path.join(base, pool)):
                if name != "lock" and not name.startswith("."):
                    with open(os.path.join(base, pool, name)) as f:
                        out["%s/%s" % (pool, name)] = f.read()
        return out

    def links_in(self, pid):
        r = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "link"],
                           capture_output=True, text=True, check=True)
        return sorted(line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines())

    def addrs_in(self, pid, ifname="eth0"):
        r = subprocess.run(["nsenter", "-t", str(pid), "-n", "ip", "-o", "-4", "addr", "show",
                            "dev", ifname], capture_output=True, text=True)
        return [line.split()[3] for line in r.stdout.splitlines()]

    def node_links(self):
        r = self.node.ip_cmd("-o", "link")
        return sorted(line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines())

    def snapshot(self, *pids):
        return self.leases(), self.node_links(), [self.links_in(p) for p in pids]

    def settled_fds(self, want=None):
        """The daemon's open fds once its workers are done (they close theirs
        just after replying); with want, waits until there are that many."""
        deadline = time.monotonic() + 30
        while True:
            count = len(os.listdir("/proc/%d/fd" % self.helper.proc.pid))
            if want is None or count == want or time.monotonic() > deadline:
                return count
            time.sleep(0.05)

    def serving(self):
        """The daemon still answers a well-formed request."""
        return "ok" in self.ask({"op": "list"})

    def gc(self):
        r = self.node.pyctr("gc")
        assert r.returncode == 0, r.stderr
        return r.stdout

    def close(self):
        for p in self.holders:
            p.kill()
            p.wait()
        self.gc()


def _comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def pings(pid, ip):
    r = subprocess.run(["nsenter", "-t", str(pid), "-n", "busybox", "ping", "-c", "2", "-W", "3",
                        ip], capture_output=True, text=True, timeout=30)
    return r.returncode == 0


def one_line(reply, words):
    """A refusal: one line naming the reason."""
    assert "error" in reply, reply
    assert "\n" not in reply["error"] and words in reply["error"], reply["error"]
    return reply["error"]


# -- what a granted user gets ------------------------------------------------------

def test_granted_user_gets_a_veth_in_its_own_namespace_with_its_lease(world):
    pid = world.holder()
    reply = world.attach(pid)
    rec = reply["ok"][0]
    assert rec["ifname"] == "eth0" and rec["network"] == "lan" and rec["kind"] == "veth"
    assert world.addrs_in(pid) == [rec["ip"]]
    assert rec["ip"].startswith("10.88.0.")
    lease = world.leases()["br-brlan/" + rec["ip"].split("/")[0]]
    assert "uid %d" % USER in lease and "container c1" in lease
    assert rec["host_ifname"] in world.node_links()
    # the container reaches the bridge's address (the network's gateway) through it
    assert pings(pid, "10.88.0.1")


def test_granted_user_gets_a_macvlan_that_reaches_another_node(world):
    pid = world.holder()
    rec = world.attach(pid, networks=[{"network": "wire"}])["ok"][0]
    assert rec["kind"] == "macvlan" and rec["lower"] == "nic0"
    assert world.addrs_in(pid) == [rec["ip"]]
    other = world.tb.nodes[1]
    assert pings(pid, other.ip)


def test_list_shows_what_the_user_may_use_and_holds(world):
    world.policy('[network.lan]\nusers = ["nobody"]\nmax_containers = 3\nchoose_ip = true\n'
                 '[network.closed]\nusers = ["someone-else"]\n')
    pid = world.holder()
    assert "ok" in world.attach(pid)
    listed = world.ask({"op": "list"})["ok"]
    assert listed == [{"network": "lan", "kind": "veth", "subnet": LAN, "max_containers": 3,
                       "used": 1, "choose_ip": True, "choose_mac": False}]


def test_a_group_grant_admits_its_members(world):
    world.policy('[network.lan]\ngroups = ["nogroup"]\n')  # nobody's primary group
    pid = world.holder()
    assert "ok" in world.attach(pid, container="c1")
    world.policy('[network.lan]\ngroups = ["staff"]\n')  # a supplementary group
    second = world.holder()
    one_line(world.attach(second, container="c2"), "may not attach")
    assert "ok" in world.attach(second, container="c2", groups=[50])


def test_detach_releases_the_lease_and_the_devices(world):
    pid = world.holder()
    rec = world.attach(pid)["ok"][0]
    # another user naming the same container releases nothing of ours
    assert world.ask({"op": "detach", "container": "c1"}, uid=OTHER) == {"ok": None}
    assert any("container c1" in t for t in world.leases().values())
    assert world.ask({"op": "detach", "container": "c1"}) == {"ok": None}
    assert not any("container c1" in t for t in world.leases().values())
    assert rec["host_ifname"] not in world.node_links()
    assert "eth0" not in world.links_in(pid)


def test_policy_changes_apply_without_restart(world):
    world.policy("")
    pid = world.holder()
    one_line(world.attach(pid), "may not attach")
    world.policy('[network.lan]\nusers = ["nobody"]\n')
    assert "ok" in world.attach(pid)


# -- what the policy refuses: one line, nothing changed ------------------------------

def test_a_network_not_granted_is_refused(world):
    pid = world.holder()
    before = world.snapshot(pid)
    err = one_line(world.attach(pid, networks=[{"network": "closed"}]), "may not attach")
    assert err == "network closed: user nobody may not attach (policy %s)" % os.path.join(
        world.node.paths.config, "policy.toml")
    # a network granted beside one that is not: neither is attached
    one_line(world.attach(pid, networks=[{"network": "lan"}, {"network": "closed"}]),
             "may not attach")
    assert world.snapshot(pid) == before


def test_quota_exceeded_is_refused(world):
    world.policy('[network.lan]\nusers = ["nobody"]\nmax_containers = 1\n')
    first, second = world.holder(), world.holder()
    assert "ok" in world.attach(first, container="c1")
    before = world.snapshot(first, second)
    one_line(world.attach(second, container="c2"), "holds 1 of the 1 containers allowed")
    # the same container id again does not get around it
    one_line(world.attach(second, container="c1"), "holds 1 of the 1 containers allowed")
    assert world.snapshot(first, second) == before


def test_concurrent_attaches_keep_to_the_quota(world):
    """Ten attaches of one user at once, five allowed: five get distinct
    addresses, five are refused, whatever the order."""
    world.policy('[network.lan]\nusers = ["nobody"]\nmax_containers = 5\n')
    pids = [world.holder() for _ in range(10)]
    clients = [subprocess.Popen(world.node.argv(
        ["setpriv", "--reuid=%d" % USER, "--regid=%d" % USER, "--clear-groups",
         sys.executable, USER_SCRIPT, json.dumps({
             "op": "attach", "container": "q%d" % i, "pid": pid, "netns": "pid:%d" % pid,
             "networks": [{"network": "lan"}]})]),
        env=world.helper.env(), stdout=subprocess.PIPE, text=True)
        for i, pid in enumerate(pids)]
    replies = [json.loads(c.communicate(timeout=120)[0]) for c in clients]
    got = [r["ok"][0]["ip"] for r in replies if "ok" in r]
    refused = [r["error"] for r in replies if "error" in r]
    assert len(got) == 5 and len(set(got)) == 5, replies
    assert len(refused) == 5 and all("holds 5 of the 5" in e for e in refused), refused
    assert len(world.leases()) == 5


def test_choosing_an_address_or_mac_needs_the_policy(world):
    pid = world.holder()
    before = world.snapshot(pid)
    one_line(world.attach(pid, networks=[{"network": "lan", "ip": "10.88.0.50"}]),
             "may not choose its address")
    one_line(world.attach(pid, networks=[{"network": "lan", "mac": "02:00:00:00:00:42"}]),
             "may not choose its MAC address")
    assert world.snapshot(pid) == before
    world.policy('[network.lan]\nusers = ["nobody"]\nchoose_ip = true\n')
    rec = world.attach(pid, networks=[{"network": "lan", "ip": "10.88.0.50"}])["ok"][0]
    assert rec["ip"] == "10.88.0.50/24" and world.addrs_in(pid) == ["10.88.0.50/24"]


def test_ad_hoc_networks_and_macvlan_modes_are_refused(world):
    pid = world.holder()
    before = world.snapshot(pid)
    one_line(world.attach(pid, networks=[{"form": "veth", "network": "brlan"}]),
             "only to a defined network")
    one_line(world.attach(pid, networks=[{"network": "wire", "mode": "passthru"}]),
             "sets the macvlan mode")
    assert world.snapshot(pid) == before


def test_a_broken_policy_refuses_with_its_reason(world):
    world.policy('[network.lan]\nusers = "nobody"\n')
    pid = world.holder()
    one_line(world.attach(pid), "users must be a list")


# -- hostile clients: an error, nothing changed, the daemon keeps serving -------------

def test_garbage_and_malformed_requests(world):
    pid = world.holder()
    before = world.snapshot(pid)
    for data, words in ((b"\xff\x00garbage", "not JSON"), (b"[1, 2]", "not a JSON object"),
                        (b'{"type": "format-disk"}', "type must be"),
                        (b'{"type": "attach", "container": "../x", "pid": 1, "networks": []}',
                         "container must be an id"),
                        (b'{"type": "list", "uid": 0}', "unknown field")):
        reply = world.raw(data)["reply"]
        one_line(reply, words)
    assert world.serving()
    assert world.snapshot(pid) == before


def test_a_huge_message_is_refused(world):
    out = world.raw(b"x", repeat=1 << 20)
    assert out["sent"] > 4096  # the largest datagram the kernel took
    one_line(out["reply"], "request too large")
    assert world.serving()


def test_fds_that_are_not_the_callers_network_namespace(world):
    pid = world.holder()
    others = world.holder(uid=OTHER)
    root_ns = subprocess.Popen(world.node.argv(["unshare", "-n", "sleep", "600"]))
    world.holders.append(root_ns)
    while _comm(root_ns.pid) != "sleep":
        time.sleep(0.01)
    before = world.snapshot(pid, others)
    fds = world.settled_fds()
    for netns, words in (("none", "needs the container's network namespace"),
                         ("file:/etc/hostname", "not a network namespace"),
                         ("socket", "not a network namespace"),
                         ("self", "the host's network namespace")):
        one_line(world.attach(pid, netns=netns), words)
    # a uid-owned user namespace's, a root namespace's: both opened by root, passed on
    for holder in (others, root_ns.pid):
        fd = os.open("/proc/%d/ns/net" % holder, os.O_RDONLY)
        try:
            one_line(world.attach(holder, netns="fd:%d" % fd, pass_fds=(fd,)),
                     "not owned by user nobody")
        finally:
            os.close(fd)
    # a namespace that is not a netns (our own user namespace)
    fd = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY)
    try:
        one_line(world.attach(pid, netns="fd:%d" % fd, pass_fds=(fd,)),
                 "not a network namespace")
    finally:
        os.close(fd)
    # two fds in one request
    request = json.dumps({"type": "attach", "container": "c1", "pid": pid,
                          "networks": [{"network": "lan"}]}).encode()
    one_line(world.raw(request, fds=["pid:%d" % pid, "pid:%d" % pid])["reply"], "one fd")
    assert world.serving()
    assert world.snapshot(pid, others) == before
    assert world.settled_fds(fds) == fds  # every fd passed was closed


def test_a_pid_that_is_not_the_callers(world):
    pid = world.holder()
    others = world.holder(uid=OTHER)
    intruder = world.root_process_in(pid)
    before = world.snapshot(pid, others)
    one_line(world.attach(others, netns="pid:%d" % pid), "not in the network namespace")
    one_line(world.attach(os.getpid(), netns="pid:%d" % pid), "not in the network namespace")
    one_line(world.attach(intruder, netns="pid:%d" % pid), "is not user nobody's")
    one_line(world.attach(4000000, netns="pid:%d" % pid), "process 4000000 is gone")
    assert world.snapshot(pid, others) == before


def test_hanging_up_mid_request_leaves_nothing(world):
    pid = world.holder()
    before = world.snapshot(pid)
    request = json.dumps({"type": "attach", "container": "gone", "pid": pid,
                          "networks": [{"network": "lan"}]}).encode()
    world.raw(request, fds=["pid:%d" % pid], hang_up=True)
    deadline = time.monotonic() + 60
    while "not delivered" not in world.helper.log():
        assert time.monotonic() < deadline, world.helper.log()
        time.sleep(0.05)
    assert world.serving()
    assert world.snapshot(pid) == before


def test_idle_connections_do_not_stop_the_service(world):
    # Idle connections of another user, more than one user may hold
    # (server.MAX_PER_USER): the rest are told the daemon is busy; nobody's
    # requests are still served.
    idle = []
    script = ("import socket, sys, time\n"
              "s = [socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(80)]\n"
              "[x.connect(sys.argv[1]) for x in s]\n"
              "print('connected', flush=True)\n"
              "time.sleep(30)\n")
    p = subprocess.Popen(["setpriv", "--reuid=%d" % OTHER, "--regid=%d" % OTHER,
                          "--clear-groups", sys.executable, "-c", script, world.helper.socket],
                         stdout=subprocess.PIPE, text=True)
    idle.append(p)
    try:
        assert p.stdout.readline().strip() == "connected"
        assert world.serving()
        pid = world.holder()
        assert "ok" in world.attach(pid)
    finally:
        for q in idle:
            q.kill()
            q.wait()


# -- the daemon dying: leases survive a restart, gc cleans -----------------------------

def test_kill_9_of_the_daemon_loses_no_lease_and_gc_cleans(world):
    pid = world.holder()
    rec = world.attach(pid)["ok"][0]
    held = world.leases()
    world.helper.kill9()
    world.helper.start()
    assert world.leases() == held
    assert world.ask({"op": "list"})["ok"][0]["used"] == 1
    assert world.addrs_in(pid) == [rec["ip"]]
    # the container dies: root's gc removes its lease and host end
    world.holders.remove(next(p for p in world.holders if p.pid == pid))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    world.gc()
    assert world.leases() == {}
    assert not [n for n in world.node_links() if n.startswith("pyv")]


def test_kill_9_of_the_daemon_mid_attach_leaves_only_what_gc_removes(world):
    """The daemon dies at points of an attach of two networks (lan, then
    wire): once the first lease file exists (lan's devices under way, wire's
    not begun), once the second exists, once the lan's host end exists. The
    client gets an error; once its holder is gone, root's gc leaves nothing."""
    lan_lease = lambda leases: any(k.startswith("br-") for k in leases)
    wire_lease = lambda leases: any(k.startswith("mv-") and "container" in t
                                    for k, t in leases.items())
    for point, reached in (("lan leased", lambda: lan_lease(world.leases())),
                           ("wire leased", lambda: wire_lease(world.leases())),
                           ("lan host end made",
                            lambda: any(n.startswith("pyv") for n in world.node_links()))):
        pid = world.holder()
        job = {"op": "attach", "container": "k1", "pid": pid, "netns": "pid:%d" % pid,
               "networks": [{"network": "lan"}, {"network": "wire"}]}
        client = subprocess.Popen(world.node.argv(
            ["setpriv", "--reuid=%d" % USER, "--regid=%d" % USER, "--clear-groups",
             sys.executable, USER_SCRIPT, json.dumps(job)]),
            env=world.helper.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not reached() and client.poll() is None:
            assert time.monotonic() < deadline, point
        world.helper.kill9()
        out, _ = client.communicate(timeout=120)
        world.helper.start()
        for p in world.holders:
            p.kill()
            p.wait()
        world.holders.clear()
        world.gc()
        assert world.leases() == {}, (point, out)
        assert not [n for n in world.node_links() if n.startswith("pyv")], (point, out)


def test_kill_9_of_the_client_mid_attach_the_daemon_undoes_or_gc_cleans(world):
    pid = world.holder()
    job = {"op": "attach", "container": "k2", "pid": pid, "netns": "pid:%d" % pid,
           "networks": [{"network": "lan"}, {"network": "wire"}]}
    client = subprocess.Popen(world.node.argv(
        ["setpriv", "--reuid=%d" % USER, "--regid=%d" % USER, "--clear-groups",
         sys.executable, USER_SCRIPT, json.dumps(job)]),
        env=world.helper.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(k.startswith("br-") for k in world.leases()) and client.poll() is None:
        assert time.monotonic() < deadline
    client.kill()
    client.communicate(timeout=60)
    assert world.serving()
    # the daemon's reply went nowhere: it undid the attach (or, had it been
    # delivered just before, the lease is the holder's until it dies)
    for p in world.holders:
        p.kill()
        p.wait()
    world.holders.clear()
    world.gc()
    assert world.leases() == {}
    assert not [n for n in world.node_links() if n.startswith("pyv")]


# -- starting and stopping ------------------------------------------------------------

def test_serve_as_a_user_and_a_second_daemon_are_refused(world):
    r = subprocess.run(["setpriv", "--reuid=%d" % USER, "--regid=%d" % USER, "--clear-groups",
                        sys.executable, "-m", "pyctr", "netd", "serve", "--socket",
                        "/tmp/never.sock"], capture_output=True, text=True)
    assert r.returncode == 125 and r.stderr == "pyctr: netd serve: the network helper runs as " \
        "root\n", r.stderr
    r = world.node.pyctr("netd", "serve", "--socket", world.helper.socket)
    assert r.returncode == 125, r.stderr
    assert r.stderr.startswith("pyctr: network helper already running on %s (pid %d)"
                               % (world.helper.socket, world.helper.proc.pid)), r.stderr
    assert world.serving()


def test_daemon_mode_status_and_stop(world):
    # not made beforehand, as /run/pyctr on a fresh machine: the daemon makes it,
    # with its log in it
    directory = os.path.join(world.node.base, "netd-daemon")
    sock = os.path.join(directory, "netd.sock")
    # a pipe the starter inherited, as a CI runner's: the daemon must not keep it
    read_end, write_end = os.pipe()
    try:
        r = world.node.pyctr("netd", "serve", "--daemon", "--socket", sock,
                             pass_fds=(write_end,))
    finally:
        os.close(write_end)
    try:
        assert r.returncode == 0 and "listening on %s" % sock in r.stdout, r.stderr
        assert os.path.isfile(sock + ".log")
        os.set_blocking(read_end, False)
        assert os.read(read_end, 1) == b""  # end of file (not EAGAIN): nobody holds it
        assert world.node.pyctr("netd", "status", "--socket", sock).returncode == 0
        os.chmod(directory, 0o777)  # a directory anyone could swap the socket in
        r = world.node.pyctr("netd", "serve", "--socket", os.path.join(directory, "b.sock"))
        assert r.returncode == 125 and "writable by nobody else" in r.stderr, r.stderr
    finally:
        os.close(read_end)
        os.chmod(directory, 0o755)
        stopped = world.node.pyctr("netd", "stop", "--socket", sock)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
    assert not os.path.exists(sock)
    assert world.node.pyctr("netd", "status", "--socket", sock).returncode == 1
