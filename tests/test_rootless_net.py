"""A non-root user on networks the administrator defined and granted
(issue 11), for real: a user made here, two simulated nodes, the privileged
helper (`pyctr netd serve`) as root in each, and `pyctr run --net=lan` as
that user in each node. Denials are one line, exit 125, and leave nothing;
a killed `pyctr run` leaves nothing root's `pyctr gc` cannot remove.

The end-to-end tests wait for netd's daemon (pyctr.netd.server): they are
skipped, saying so, until it exists, and run once it does."""
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import IS_ROOT, one_line_error
from test_cluster import ring  # noqa: F401 (a fixture: ring.c built with both MPIs)
from pyctr import userbed
from pyctr.testbed import Testbed

pytestmark = pytest.mark.skipif(not IS_ROOT, reason="makes a user and namespaces: needs root")
QUOTA = 2


@pytest.fixture(scope="module")
def user():
    with userbed.TestUser() as u:
        if not u.userns_works():
            pytest.skip("unprivileged user namespaces are off here "
                        "(kernel.unprivileged_userns_clone / user.max_user_namespaces)")
        yield u


def root_ok(node, *args):
    p = node.pyctr(*args, timeout=60)
    assert p.returncode == 0, "pyctr %s -> %d: %s" % (" ".join(args), p.returncode, p.stderr)
    return p


@pytest.fixture(scope="module", params=["veth", "macvlan"])
def bed(request, user, image_data):
    """Two nodes; root defines `lan` (the kind of the test) on each node's
    NIC, each node handing out its own slice, and `closed`, which nobody
    is granted; the policy grants `lan` to the user."""
    kind = request.param
    with Testbed(prefix="prl", nodes=2, data=image_data) as tb:
        for node in tb.nodes:
            root_ok(node, "net", "create", "lan", "--kind", kind, "--subnet", "10.77.0.0/24",
                    "--uplink", "nic0", "--per-node")
            root_ok(node, "net", "create", "closed", "--subnet", "10.78.0.0/24")
            userbed.write_policy(node, {"lan": {"users": [user.name],
                                                "max_containers": QUOTA}})
        helpers = userbed.Helpers(tb)
        try:
            helpers.up()
            yield Bed(kind, tb, user, helpers)
        finally:
            user.kill_processes()
            for node in tb.nodes:  # while its helper is up: it releases their leases
                user.on(node, helpers).clean()
            helpers.down()


class Bed:
    def __init__(self, kind, tb, user, helpers):
        self.kind, self.tb, self.user, self.helpers = kind, tb, user, helpers
        self.a, self.b = tb.nodes

    def me(self, node):
        return self.user.on(node, self.helpers)


def leases(node):
    """Root's leases held by containers on the node (the helper's pools)."""
    out = []
    ipam = os.path.join(node.paths.root, "ipam")
    for pool in sorted(os.listdir(ipam)) if os.path.isdir(ipam) else []:
        for name in sorted(os.listdir(os.path.join(ipam, pool))):
            path = os.path.join(ipam, pool, name)
            if os.path.isfile(path) and name[0].isdigit():
                with open(path) as f:
                    if "owner shim" not in f.read():
                        out.append("%s/%s" % (pool, name))
    return out


def interfaces(node):
    """The node's interfaces that are a container's host side (veth ends)."""
    links = json.loads(node.run(["ip", "-j", "link"], check=True).stdout)
    return [link["ifname"] for link in links if link["ifname"].startswith("pyv")]


def nothing_left(bed, node):
    me = bed.me(node)
    return {"containers": me.containers(), "leases": leases(node),
            "interfaces": interfaces(node), "processes": bed.user.pids()}


NOTHING = {"containers": [], "leases": [], "interfaces": [], "processes": []}


def refused(bed, node, *args):
    p = bed.me(node).pyctr("run", "--rm", *args, "busybox", "true", timeout=120)
    assert p.returncode == 125, p.stdout + p.stderr
    return one_line_error(p)


# -- what needs no helper ---------------------------------------------------------------

def test_ad_hoc_networks_stay_roots(bed):
    """veth:BR and macvlan:NIC make host devices of the user's choosing."""
    for net in ("veth:br0", "macvlan:nic0"):
        line = refused(bed, bed.a, "--net=" + net)
        assert "rootless containers use networks an administrator defined" in line
        assert "--net=%s needs root" % net in line
    assert nothing_left(bed, bed.a) == NOTHING


def test_user_without_network_is_unchanged(bed):
    p = bed.me(bed.a).pyctr("run", "--rm", "busybox", "sh", "-c", "id -u; ls /sys/class/net")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["0", "lo"]


# -- through the helper ------------------------------------------------------------------

SERVER = ("ip -o -4 addr show eth0; r0=$(cat /sys/class/net/eth0/statistics/rx_bytes); "
          "timeout 60 nc -l -p 5000 -e sh -c 'wc -c > /tmp/n'; cat /tmp/n; "
          "echo rx $(( $(cat /sys/class/net/eth0/statistics/rx_bytes) - r0 ))")
CLIENT = ("t0=$(cat /sys/class/net/eth0/statistics/tx_bytes); ping -c 2 -W 3 %s >&2 || exit 3; "
          "for i in $(seq 50); do dd if=/dev/zero bs=64k count=16 2>/dev/null | nc %s 5000 "
          "&& break; sleep 0.2; done; "
          "echo tx $(( $(cat /sys/class/net/eth0/statistics/tx_bytes) - t0 ))")


def test_user_containers_talk_across_nodes_over_their_eth0(bed):
    """A user's container on each node, on the granted network: 1 MiB goes
    out of one's eth0 and into the other's, across the simulated wire."""
    # /tmp a tmpfs: the image's own /tmp belongs to (host) root, unmapped here
    server = bed.me(bed.b).pyctr_popen("run", "--rm", "--net=lan", "--tmpfs", "/tmp",
                                       "busybox", "sh", "-c",
                                       SERVER, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
    try:
        first = server.stdout.readline()
        match = re.search(r"inet (10\.77\.0\.\d+)/24", first)
        assert match, first + server.stderr.read()
        ip = match.group(1)
        p = bed.me(bed.a).pyctr("run", "--rm", "--net=lan", "busybox", "sh", "-c",
                                CLIENT % (ip, ip), timeout=120)
        assert p.returncode == 0, p.stderr
        out, err = server.communicate(timeout=90)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    received, rx = int(out.split()[0]), int(out.split()[-1])
    tx = int(p.stdout.split()[-1])
    assert received == 1 << 20, out + err
    assert tx >= 1 << 20 and rx >= 1 << 20
    for node in (bed.a, bed.b):
        assert nothing_left(bed, node) == NOTHING


# a container that holds its lease until pyctr run forwards it a SIGTERM
HOLD = ("sh", "-c", "trap 'exit 0' TERM; echo ready; sleep 60 & wait")


def holder(me):
    """Returns once the container can take its SIGTERM: a container's init
    ignores a signal it has no handler for yet (the kernel protects a pid
    namespace's init), so one sent before its trap is set would be lost."""
    proc = me.pyctr_popen("run", "--rm", "--net=lan", "busybox", *HOLD,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError("holder did not start: %r %s" % (line, err))
    return proc


def stop(proc):
    """SIGTERM to pyctr run: its container exits, pyctr releases the network."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert proc.returncode == 0, err


def test_net_ls_shows_the_user_what_they_may_use(bed):
    sleeper = holder(bed.me(bed.a))
    try:
        _wait_for(lambda: len(leases(bed.a)) == 1, sleeper)
        p = bed.me(bed.a).pyctr("net", "ls")
        assert p.returncode == 0, p.stderr
        rows = [line.split() for line in p.stdout.splitlines()]
        assert rows[0] == ["NAME", "KIND", "SUBNET", "USED", "QUOTA", "CHOOSE"]
        assert rows[1:] == [["lan", bed.kind, "10.77.0.0/24", "1", str(QUOTA), "-"]]
    finally:
        stop(sleeper)
    assert nothing_left(bed, bed.a) == NOTHING
    root = root_ok(bed.a, "net", "ls").stdout  # root's view is every network
    assert "closed" in root and "lan" in root


def test_refused_on_a_network_not_granted(bed):
    line = refused(bed, bed.a, "--net=closed")
    assert line == "pyctr: network closed: user %s may not attach (policy %s)" % (
        bed.user.name, os.path.join(bed.a.paths.config, "policy.toml"))
    assert nothing_left(bed, bed.a) == NOTHING


def test_refused_an_address_of_their_choosing(bed):
    line = refused(bed, bed.a, "--net=lan", "--ip", "10.77.0.20")
    assert line.startswith("pyctr: network lan: user %s may not choose its address"
                           % bed.user.name), line
    assert nothing_left(bed, bed.a) == NOTHING


def test_refused_beyond_the_quota(bed):
    me = bed.me(bed.a)
    sleepers = [holder(me) for _ in range(QUOTA)]
    try:
        for s in sleepers:
            _wait_for(lambda: len(leases(bed.a)) == QUOTA, s)
        line = refused(bed, bed.a, "--net=lan")
        assert line.startswith("pyctr: network lan: user %s holds %d of the %d containers "
                               "allowed" % (bed.user.name, QUOTA, QUOTA)), line
        assert len(me.containers()) == QUOTA  # the refused one left no record
    finally:
        for s in sleepers:
            stop(s)
    assert nothing_left(bed, bed.a) == NOTHING


def _wait_for(condition, proc=None, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("exited %d: %s" % (proc.returncode, proc.stderr.read()))
        if time.monotonic() > deadline:
            raise AssertionError("not true after %d s" % timeout)
        time.sleep(0.05)


# kill -9 of the user's `pyctr run` at a few points of its life
POINTS = {
    "record": lambda bed, me: me.containers(),           # reserved, not attached yet
    "lease": lambda bed, me: leases(bed.a),              # the helper wired it
    "running": lambda bed, me: _running(me),             # the workload runs
}


def _running(me):
    for name in me.containers():
        try:
            with open(os.path.join(me.state_root, "containers", name, "state.json")) as f:
                if json.load(f).get("status") == "running":
                    return True
        except (OSError, ValueError):
            pass
    return False


@pytest.mark.parametrize("point", sorted(POINTS))
def test_kill_9_of_a_users_run_leaves_nothing_root_gc_cannot_remove(bed, point):
    me = bed.me(bed.a)
    run = me.pyctr_popen("run", "--net=lan", "busybox", "sleep", "60",
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: POINTS[point](bed, me), run)
    finally:
        # nsenter, setpriv and env each exec the next: this pid is pyctr's
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
    _wait_for(lambda: not bed.user.pids())  # the container died with its pyctr
    root_ok(bed.a, "gc")  # root's leases: the helper's pools
    me.pyctr("gc")        # the user's own records
    assert nothing_left(bed, bed.a) == NOTHING



# -- the user's side against a recording stand-in for the helper -----------------------

class FakeHelper:
    """Answers on a socket as the helper would, without wiring anything:
    records each request with the netns its fd is, and refuses attach
    when told to."""

    def __init__(self, path, refuse=None, refuse_detach=None):
        import socket
        import threading
        self.path, self.refuse, self.seen = path, refuse, []
        self.refuse_detach = refuse_detach
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        os.chmod(path, 0o666)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        from pyctr.netd import protocol
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data, fd, _ = protocol.recv(conn, protocol.MAX_REQUEST)
                message = protocol.decode_request(data)
                seen = {"type": message.type}
                if message.type == "attach":
                    seen.update(container=message.container, networks=message.networks,
                                fd_netns=os.fstat(fd).st_ino,
                                pid_netns=os.stat("/proc/%d/ns/net" % message.pid).st_ino)
                    os.close(fd)
                self.seen.append(seen)
                if message.type == "attach" and self.refuse:
                    protocol.send(conn, protocol.encode_reply(error=self.refuse))
                elif message.type == "attach":
                    protocol.send(conn, protocol.encode_reply(ok=[
                        {"ifname": "eth0", "kind": "veth", "network": "lan",
                         "ip": "10.77.0.99/24"}]))
                elif message.type == "detach" and self.refuse_detach:
                    protocol.send(conn, protocol.encode_reply(error=self.refuse_detach))
                elif message.type == "list":
                    protocol.send(conn, protocol.encode_reply(ok=[
                        {"network": "lan", "kind": "veth", "subnet": "10.77.0.0/24",
                         "max_containers": 8, "used": 3, "choose_ip": True,
                         "choose_mac": False}]))
                else:
                    protocol.send(conn, protocol.encode_reply(ok=None))

    def close(self):
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def fake_helper(bed):
    helpers = []

    def start(**kw):
        h = FakeHelper(os.path.join(bed.a.base, "fake-netd-%d.sock" % len(helpers)), **kw)
        helpers.append(h)
        return h
    yield start
    for h in helpers:
        h.close()


def as_user_with(bed, helper):
    me = bed.user.on(bed.a)
    me.socket = helper.path
    return me


def test_a_refusal_is_the_helpers_line_and_leaves_nothing(bed, fake_helper):
    why = "network lan: user %s may not attach (policy /etc/pyctr/policy.toml)" % bed.user.name
    helper = fake_helper(refuse=why)
    me = as_user_with(bed, helper)
    p = me.pyctr("run", "--rm", "--net=lan,mac=02:00:00:00:00:07", "busybox", "true")
    assert p.returncode == 125 and one_line_error(p) == "pyctr: " + why
    (attach,) = helper.seen
    # the helper got the container's own netns, made with its user namespace
    assert attach["fd_netns"] == attach["pid_netns"]
    assert attach["fd_netns"] != os.stat("/run/netns/" + bed.a.netns).st_ino
    (asked,) = attach["networks"]
    assert {k: v for k, v in asked.items() if v != []} == {
        "form": "network", "network": "lan", "mac": "02:00:00:00:00:07"}
    assert me.containers() == [] and bed.user.pids() == []


def test_the_helpers_records_are_the_containers_and_released_at_exit(bed, fake_helper):
    helper = fake_helper()
    me = as_user_with(bed, helper)
    p = me.pyctr("run", "--rm", "--net=lan", "busybox", "cat", "/etc/hosts")
    assert p.returncode == 0, p.stderr
    assert "10.77.0.99\t" in p.stdout  # /etc/hosts from the helper's record
    assert [s["type"] for s in helper.seen] == ["attach", "detach"]
    assert me.containers() == []


def test_a_helper_failing_at_release_is_a_warning_not_the_exit_code(bed, fake_helper):
    helper = fake_helper(refuse_detach="network helper is restarting")
    me = as_user_with(bed, helper)
    p = me.pyctr("run", "--rm", "--net=lan", "busybox", "sh", "-c", "exit 3")
    assert p.returncode == 3
    assert p.stderr.strip().splitlines() == [
        "pyctr: warning: container %s: its network is released when the helper reclaims it "
        "(network helper is restarting)" % helper.seen[0]["container"]]
    assert me.containers() == []


def test_net_ls_as_a_user_is_the_helpers_list(bed, fake_helper):
    me = as_user_with(bed, fake_helper())
    p = me.pyctr("net", "ls")
    assert p.returncode == 0, p.stderr
    assert [line.split() for line in p.stdout.splitlines()] == [
        ["NAME", "KIND", "SUBNET", "USED", "QUOTA", "CHOOSE"],
        ["lan", "veth", "10.77.0.0/24", "3", "8", "ip"]]


def test_no_helper_is_one_line(bed):
    me = bed.user.on(bed.a)
    me.socket = os.path.join(bed.a.base, "nobody.sock")
    p = me.pyctr("run", "--rm", "--net=lan", "busybox", "true")
    assert p.returncode == 125
    assert "network helper not running" in one_line_error(p)
    assert me.containers() == [] and bed.user.pids() == []


# -- MPI: a user's hybrid launch ----------------------------------------------------------

LAUNCH = {"openmpi": ("mpirun.openmpi", "-np"), "mpich": ("mpiexec.mpich", "-n")}


def _users_ranks(bed, ring, mpi):
    """LAUNCHER -n 2 pyctr run --net=lan mpi ring, all as the user: each rank
    in its own container, the token over each eth0."""
    from test_cluster import SIZE, assert_crossed, ranks
    launcher, count = LAUNCH[mpi]
    me = bed.me(bed.a)
    rank = me.pyctr_argv("run", "--rm", "--net=lan", "-v", "%s:/ring:ro" % ring, "mpi",
                         "/ring/ring." + mpi)
    p = me.run(["timeout", "-s", "KILL", "60", launcher, count, "2"] + rank, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    found = ranks(p.stdout)
    assert_crossed(found, SIZE)
    assert os.stat("/run/netns/" + bed.a.netns).st_ino not in {
        f["netns"] for f in found.values()}
    assert nothing_left(bed, bed.a) == NOTHING
    return p


def test_a_users_mpich_ranks_each_in_its_own_container_on_the_network(bed, mpi_data,
                                                                      ring):
    """hydra's PMI_FD goes on into each rank's container."""
    _users_ranks(bed, ring, "mpich")


def test_a_users_open_mpi_ranks_each_in_its_own_container_on_the_network(bed, mpi_data,
                                                                         ring):
    """mpirun's PMIx server on its 127.0.0.1 is relayed into each rank's
    netns, and takes the ranks: they run as the user (idmap.keep_id)."""
    p = _users_ranks(bed, ring, "openmpi")
    assert re.search(r"PMIx server 127\.0\.0\.1:\d+ relayed into the container", p.stderr)


# -- pyctr bench net --rootless -------------------------------------------------------------

@pytest.mark.slow
def test_bench_net_rootless_runs_end_to_end_and_leaves_nothing(image_data, tmp_path):
    """...and never asks the machine's own helper (install.sh's, if it runs)
    to act for its user: its nodes' helpers release the user's leases."""
    import sys
    from pyctr.netd import client
    machine_log = client.DEFAULT_SOCKET + ".log"
    seen = os.path.getsize(machine_log) if os.path.exists(machine_log) else 0
    out = tmp_path / "out"
    launcher = os.path.join(os.path.dirname(sys.executable), "pyctr")
    p = subprocess.run([sys.executable, "-m", "pyctr", "--data", image_data, "bench", "net",
                        "--rootless", "--runs", "2", "--warmup", "1", "--iperf-runs", "1",
                        "--iperf-seconds", "1", "--pyctr", launcher, "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd="/")
    assert p.returncode == 0, p.stdout + p.stderr
    start = json.load(open(out / "net-start-rootless.json"))
    assert {c["name"]: len(c["samples"]) for c in start["contenders"]} == {
        "root veth": 2, "user veth": 2, "root macvlan": 2, "user macvlan": 2}
    iperf = json.load(open(out / "net-iperf-rootless.json"))
    assert {c["name"] for c in iperf["contenders"] if c["samples"] and c["samples"][0] > 0} \
        == {"nic", "pyctr user macvlan", "podman slirp4netns", "podman pasta"}
    assert "user veth / root veth = " in p.stdout
    assert "pyctr user macvlan / podman pasta = " in p.stdout
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert [n for n in netns.split() if n.startswith("pbnr-")] == []
    with open("/etc/passwd") as f:
        assert [line for line in f if line.startswith("pbnu")] == []
    if os.path.exists(machine_log):
        with open(machine_log) as f:
            f.seek(seen)
            assert [line for line in f if " user pbnu" in line] == []


# -- pyctr cluster as a user ----------------------------------------------------------------

@pytest.fixture
def cluster_node(user, mpi_data):
    """One node where root defines `cl` (a bridge of its own, 10.92.0.0/24)
    and grants it to the user with fixed addresses allowed, as a cluster's
    nodes need."""
    with Testbed(prefix="prc", nodes=1, data=mpi_data) as tb:
        node = tb.nodes[0]
        root_ok(node, "net", "create", "cl", "--subnet", "10.92.0.0/24")
        userbed.write_policy(node, {"cl": {"users": [user.name], "max_containers": 4,
                                           "choose_ip": True}})
        with userbed.Helpers(tb) as helpers:
            me = user.on(node, helpers)
            try:
                yield node, me
            finally:
                user.kill_processes()
                me.clean()


def _users_cluster_job(cluster_node, ring, launcher):
    """cluster up / mpirun / down, all as the user."""
    from test_cluster import SIZE, assert_crossed, ranks
    node, me = cluster_node

    def ok(*args):
        p = me.pyctr("--config", node.paths.config, "cluster", *args, timeout=120)
        assert p.returncode == 0, " ".join(args) + "\n" + p.stdout + p.stderr
        return p.stdout

    out = ok("up", "c", "--nodes", "2", "--net=cl", "-v", "%s:/ring:ro" % ring)
    assert re.search(r"^  c-0\s+10\.92\.0\.10\s+this host$", out, re.M), out
    assert re.search(r"^  c-1\s+10\.92\.0\.11\s+this host$", out, re.M), out
    found = ranks(ok("mpirun", "c", "--launcher", launcher, "--", "/ring/ring." + launcher))
    assert_crossed(found, SIZE)
    assert {f["host"] for f in found.values()} == {"c-0", "c-1"}
    ok("down", "c")
    assert me.containers() == [] and leases(node) == []
    assert not os.path.exists(os.path.join(me.state_root, "clusters", "c"))


def test_a_user_runs_an_open_mpi_job_on_a_virtual_cluster(cluster_node, ring):
    _users_cluster_job(cluster_node, ring, "openmpi")


def test_a_user_runs_an_mpich_job_on_a_virtual_cluster(cluster_node, ring):
    _users_cluster_job(cluster_node, ring, "mpich")
