"""Crash consistency: `pyctr run` killed with SIGKILL right after each stage
of creation (a deterministic point: the stage list is wrapped, no sleeps),
and after each change that the network stage makes to the host (a netlink
request, a lease, the bridge journal: the host's netlink is wrapped), on a
simulated node. Afterwards the node must keep working without `gc` - the
next container starts, gets a free address and reaches its peer - and `gc`
must return the node to exactly the state it had before: links, addresses,
routes, leases, records, mounts, cgroups.

The baseline is taken after one successful `run --rm` on the same network,
so what normal use keeps (a bridge made on demand) is part of it. Where the
killed run itself makes the network's host side (a new bridge, an uplinked
bridge, a host shim), `gc` returns the node to its state before that run if
the kill came before that host side was complete, else to the state that a
normal run leaves (the host side kept); `pyctr net rm` then removes it."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import root_only
from pyctr import container
from pyctr.network import ipam
from pyctr.testbed import Testbed

pytestmark = [root_only, pytest.mark.root]

STAGES = [stage.__name__ for stage in container.STAGES]
NETS = ["none", "veth:brc", "macvlan:nic0"]

# Runs pyctr's CLI with the stage list wrapped: after the stage named in
# argv[1] has done its work (and registered its undo), the process kills
# itself with SIGKILL, which runs no undo and no cleanup.
KILL_AFTER = """
import os, signal, sys
from pyctr import container
def after(stage):
    def run(c):
        stage(c)
        if stage.__name__ == sys.argv[1]:
            os.kill(os.getpid(), signal.SIGKILL)
    return run
container.STAGES = tuple(after(s) for s in container.STAGES)
from pyctr.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture
def node(image_data):
    with Testbed(prefix="pyctr-crash", nodes=1, data=image_data) as tb:
        yield tb.nodes[0]


def snapshot(node):
    """What a crash could leave on the node, as comparable sets."""
    def ip_json(*args):
        out = node.ip_cmd("-j", *args).stdout
        return json.loads(out or "[]")
    links = {(l["ifname"], l.get("linkinfo", {}).get("info_kind"), l.get("master"),
              "UP" in l.get("flags", ()), l.get("ifalias"))
             for l in ip_json("-d", "link", "show")}
    # IPv6 link-local addresses follow a link's MAC, which a new ad-hoc
    # bridge picks at random: they say nothing about what a crash left.
    addrs = {(a["ifname"], i["local"], i["prefixlen"])
             for a in ip_json("addr", "show") for i in a.get("addr_info", [])
             if not (i.get("family") == "inet6" and i.get("scope") == "link")}
    routes = {(r.get("dst"), r.get("dev"), r.get("gateway"), r.get("protocol"),
               r.get("prefsrc"), r.get("metric")) for r in ip_json("-4", "route")}
    files = set()
    for top in (node.paths.root,):
        for root, dirs, names in os.walk(top):
            for n in dirs + names:
                path = os.path.relpath(os.path.join(root, n), top)
                if not n.endswith(".lock") and n != "lock":
                    files.add(path)
    with open("/proc/self/mounts") as f:
        mounts = {line.split()[1] for line in f if node.paths.root in line}
    return {"links": links, "addresses": addrs, "routes": routes, "files": files,
            "mounts": mounts, "cgroups": cgroup_dirs(node)}


def cgroup_dirs(node):
    """The node's pyctr world's cgroups, in every hierarchy."""
    from pyctr import cgroups
    groups = cgroups.world_groups(node.paths, cgroups.detect())
    return {(h, name) for name, dirs in groups.items() for h in dirs}


def same(after, before, when):
    for what in before:
        assert after[what] == before[what], "%s %s: extra %s, missing %s" % (
            what, when, sorted(after[what] - before[what], key=str),
            sorted(before[what] - after[what], key=str))


def run_rm(node, net):
    return node.pyctr("run", "--rm", "--net=" + net, "busybox", "true", timeout=120,
                      stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("stage", STAGES)
def test_kill_after_each_stage_leaves_a_working_node_that_gc_restores(node, net, stage):
    first = run_rm(node, net)
    assert first.returncode == 0, first.stderr
    before = snapshot(node)
    host_routes = {r for r in before["routes"] if r[0] and "/" not in r[0]}  # /32: no prefix
    assert not host_routes, "a normal exit left routes to its container: %s" % host_routes
    host_ends = {link for link in before["links"] if link[0].startswith("pyv")}
    assert not host_ends, "run --rm returned before its veth was gone: %s" % host_ends

    killed = node.run([sys.executable, "-c", KILL_AFTER, stage] +
                      node.pyctr_argv("run", "--rm", "--net=" + net, "busybox", "sleep", "30")[3:],
                      timeout=120, stdin=subprocess.DEVNULL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    again = run_rm(node, net)  # no gc in between
    assert again.returncode == 0, "after a kill at %s: %s" % (stage, again.stderr)

    gc = node.pyctr("gc", timeout=120, stdin=subprocess.DEVNULL)
    assert gc.returncode == 0, gc.stderr
    same(snapshot(node), before, "after kill at %s + gc" % stage)
    # gc reports only what it removed; a second gc finds nothing.
    assert node.pyctr("gc", timeout=60, stdin=subprocess.DEVNULL).stdout == ""


# The same wrapper with a signal pyctr can catch, named in argv[2]: SIGTERM
# (a scheduler cancelling the job), SIGHUP (a closed terminal).
SIGNAL_AFTER = """
import os, signal, sys
from pyctr import container
def after(stage):
    def run(c):
        stage(c)
        if stage.__name__ == sys.argv[1]:
            os.kill(os.getpid(), getattr(signal, sys.argv[2]))
    return run
container.STAGES = tuple(after(s) for s in container.STAGES)
from pyctr.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("net", NETS[:2])
def test_a_term_or_hup_during_creation_is_passed_on_and_leaves_nothing(node, net):
    """SIGTERM or SIGHUP right after each stage is held until the container
    runs, then passed on to it (as runc's signal handler does): the run
    ends as any other and the node is as before, without gc. Their default
    action ended pyctr halfway through creation, its record and groups
    left for gc."""
    first = run_rm(node, net)
    assert first.returncode == 0, first.stderr
    before = snapshot(node)
    for stage in STAGES:
        for name in ("SIGTERM", "SIGHUP"):
            p = node.run([sys.executable, "-c", SIGNAL_AFTER, stage, name] +
                         node.pyctr_argv("run", "--rm", "--net=" + net, "busybox", "true")[3:],
                         timeout=120, stdin=subprocess.DEVNULL)
            assert p.returncode in (0, 128 + getattr(signal, name)), (stage, name, p.stderr)
            same(snapshot(node), before, "after %s at %s" % (name, stage))


def test_an_interrupt_during_creation_undoes_it_whole(node):
    """SIGINT right after each stage: creation is undone and the run exits
    with 130, the node as before without gc. Raised wherever it came, an
    interrupt could fall between a change and its undo's registration (a
    cgroup left in 3 of 150 random interrupts)."""
    first = run_rm(node, "veth:brc")
    assert first.returncode == 0, first.stderr
    before = snapshot(node)
    for stage in STAGES:
        p = node.run([sys.executable, "-c", SIGNAL_AFTER, stage, "SIGINT"] +
                     node.pyctr_argv("run", "--rm", "--net=veth:brc", "busybox", "true")[3:],
                     timeout=120, stdin=subprocess.DEVNULL)
        assert (p.returncode, p.stderr) == (130, ""), stage
        same(snapshot(node), before, "after SIGINT at %s" % stage)


# -- inside the network stage ------------------------------------------------------
#
# Runs pyctr's CLI with every change that network attach (or, with
# PYCTR_CRASH_IN=detach, a container's detach; =teardown, a network's
# teardown: `pyctr net rm`) makes to the host watched: each request of the
# host's netlink socket that changes something, each lease written or
# released, the bridge journal written and removed (bridge.py). After the change named in argv[1] ("add_addr", or
# "add_addr#2" for the second one) the process kills itself with SIGKILL.
# With PYCTR_CRASH_RECORD set, the names of the changes are appended to
# that file.
KILL_INSIDE = """
import os, signal, sys
from pyctr.network import bridge, cleanup, ipam, wiring
point, record = sys.argv[1], os.environ.get("PYCTR_CRASH_RECORD")
where = os.environ.get("PYCTR_CRASH_IN", "attach")
module = cleanup if where == "teardown" else wiring
watched = getattr(module, where)
seen, inside = {}, []
def reached(what):
    if not inside:
        return
    seen[what] = seen.get(what, 0) + 1
    name = what if seen[what] == 1 else "%s#%d" % (what, seen[what])
    if record:
        with open(record, "a") as f:
            f.write(name + "\\n")
    if name == point:
        os.kill(os.getpid(), signal.SIGKILL)
def after(what, fn):
    def run(*args, **kw):
        result = fn(*args, **kw)
        reached(what)
        return result
    return run
CHANGES = ("create_veth", "create_macvlan", "create_bridge", "set_link", "delete_link",
           "add_addr", "del_addr", "add_route", "del_route")
host = wiring.Kernel.host
def watched_host(self):
    netlink = host(self)
    for name in CHANGES:
        setattr(netlink, name, after(name, getattr(netlink, name)))
    return netlink
wiring.Kernel.host = watched_host
def watching(*args, **kw):
    inside.append(True)
    try:
        return watched(*args, **kw)
    finally:
        inside.pop()
setattr(module, watched.__name__, watching)
ipam.Pool._create = after("lease", ipam.Pool._create)
ipam.Pool.release = after("release", ipam.Pool.release)
bridge._journal = after("journal", bridge._journal)
bridge._forget = after("journal done", bridge._forget)
from pyctr.cli import main
sys.exit(main(sys.argv[2:]))
"""


class Case:
    """A network whose attach is killed at each of `points` (the host
    changes of one attach, in order). setup: commands before the baseline
    run (("ip", ...) in the node, else pyctr's); live: pyctr commands after
    it. made_by_run: the first run on it makes its host side, removed by
    `pyctr net rm RM`; complete_at: the first point from which that host
    side is whole (kept, as after a normal exit). probe: run in the next
    container, must print its address and "1 packets received"."""

    def __init__(self, name, net, points, probe, made_by_run=False, complete_at=None, rm=None,
                 setup=(), live=()):
        self.name, self.net, self.points, self.probe = name, net, points, probe
        self.made_by_run, self.complete_at, self.rm = made_by_run, complete_at, rm
        self.setup, self.live = setup, live

    def complete(self, point):
        return self.points.index(point) >= self.points.index(self.complete_at)


PING = "ip -o -4 addr show eth0; ping -c 1 -W 3 %s"
CASES = [
    # a veth on a bridge that exists (made by the baseline run); a live
    # neighbour holds an address the next container must not get
    Case("bridge", "veth:brc", ["lease", "create_veth"], PING % "10.89.0.1",
         live=[("run", "-d", "--name", "neighbour", "--net=veth:brc", "busybox",
                "sleep", "600")]),
    # the killed run makes the ad-hoc bridge: temporary name, alias, gateway
    # address, renamed; `pyctr net rm BR` removes it
    Case("new bridge", "veth:brn",
         ["lease", "journal", "create_bridge", "set_link", "add_addr", "set_link#2",
          "journal done", "create_veth"], PING % "10.89.0.1",
         made_by_run=True, complete_at="set_link#2", rm="brn"),
    # a defined network whose bridge takes the node's NIC, its address and
    # its default route (protocol, source and metric as DHCP sets them);
    # the container reaches the other node through it
    Case("uplink", "up0",
         ["lease", "journal", "create_bridge", "set_link", "set_link#2", "del_addr",
          "add_addr", "add_route", "set_link#3", "journal done", "create_veth"],
         PING % "10.77.0.2", made_by_run=True, complete_at="set_link#3", rm="veth:up0",
         setup=[("ip", "route", "add", "default", "via", "10.77.0.254", "dev", "nic0",
                 "proto", "dhcp", "src", "10.77.0.1", "metric", "100"),
                ("net", "create", "up0", "--subnet", "10.77.0.0/24", "--uplink", "nic0",
                 "--range", "10.77.0.100-10.77.0.149")]),
    # a macvlan whose host shim the killed run makes: the shim, its /32
    # address (the node's own on the NIC: no lease), the container's
    # macvlan, the /32 route to it; the container reaches the node through
    # the shim
    Case("host shim", "mv0",
         ["lease", "create_macvlan", "add_addr", "create_macvlan#2", "add_route"],
         PING % "10.77.0.1", made_by_run=True, complete_at="add_addr", rm="macvlan:nic0",
         setup=[("net", "create", "mv0", "--kind", "macvlan", "--subnet", "10.77.0.0/24",
                 "--uplink", "nic0", "--range", "10.77.0.100-10.77.0.149")]),
]
POINTS = [(case, point) for case in CASES for point in case.points]


@pytest.fixture
def pair(image_data):
    """Two simulated nodes: the first runs the containers, the second is
    the peer that an uplinked container and the node itself must reach."""
    with Testbed(prefix="pyctr-crashnet", nodes=2, data=image_data) as tb:
        yield tb.nodes


def kill_inside(node, net, point, command=("sleep", "30"), record=None, argv=None,
                where="attach"):
    """pyctr run --rm --net=NET busybox COMMAND (or pyctr ARGV) killed at point."""
    env = dict(os.environ, PYCTR_CRASH_IN=where)
    if record:
        env["PYCTR_CRASH_RECORD"] = record
    argv = argv or ["run", "--rm", "--net=" + net, "busybox", *command]
    return node.run([sys.executable, "-c", KILL_INSIDE, point] + node.pyctr_argv(*argv)[3:],
                    timeout=120, stdin=subprocess.DEVNULL, env=env)


def killed_at(node, net, point, **kw):
    killed = kill_inside(node, net, point, **kw)
    assert killed.returncode == -signal.SIGKILL, "point %s not reached: rc %s %s" % (
        point, killed.returncode, killed.stderr)


def ok(node, *args):
    r = node.pyctr(*args, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "pyctr %s: %s" % (" ".join(args), r.stderr)
    return r.stdout


def prepare(node, case):
    """The node with the network known and, unless the run makes it, its
    host side there; returns the snapshot before anything was made."""
    for cmd in case.setup:
        if cmd[0] == "ip":
            node.ip_cmd(*cmd[1:])
        else:
            ok(node, *cmd)
    original = snapshot(node)
    ok(node, "run", "--rm", "--net=" + case.net, "busybox", "true")
    if case.made_by_run:
        ok(node, "net", "rm", case.rm)
        now = snapshot(node)
        for what in ("links", "addresses", "routes"):  # net rm gave everything back
            assert now[what] == original[what], (what, now[what] ^ original[what])
    for cmd in case.live:
        ok(node, *cmd)


def leased(node):
    """Addresses with a lease file, in every pool of the node."""
    out = set()
    for pool in ipam.pools(node.paths):  # none, and no directory, once no network is left
        out |= {n for n in os.listdir(os.path.join(node.paths.leases, pool)) if n[0].isdigit()}
    return out


def reaches(node, peer):
    """Does the node itself reach its peer? (busybox's ping: the node may have none)"""
    busybox = os.path.join(node.paths.data, "images", "busybox", "rootfs", "bin", "busybox")
    return node.run([busybox, "ping", "-c", "1", "-W", "3", peer.ip]).returncode == 0


def next_container_works(node, case, point, taken):
    """The next container starts without gc, gets an address no live
    container holds, and reaches its peer."""
    again = node.pyctr("run", "--rm", "--net=" + case.net, "busybox", "sh", "-c", case.probe,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert again.returncode == 0 and "1 packets received" in again.stdout, \
        "after a kill at %s: %s%s" % (point, again.stdout, again.stderr)
    ip = again.stdout.split(" inet ")[1].split("/")[0]
    assert ip not in taken, "after a kill at %s: %s given again" % (point, ip)


@pytest.mark.parametrize("case,point", POINTS,
                         ids=["%s-%s" % (c.name.replace(" ", "_"), p) for c, p in POINTS])
def test_kill_inside_the_network_stage_leaves_a_node_that_works_and_gc_restores(
        pair, case, point):
    node, peer = pair
    prepare(node, case)
    before = snapshot(node)
    taken = leased(node)

    killed_at(node, case.net, point)
    next_container_works(node, case, point, taken)
    ok(node, "gc")
    after_next = snapshot(node)
    if not case.made_by_run:
        same(after_next, before, "after a kill at %s, the next run and gc" % point)
        killed_at(node, case.net, point)
        ok(node, "gc")
        same(snapshot(node), before, "after a kill at %s and gc" % point)
    else:
        ok(node, "net", "rm", case.rm)
        same(snapshot(node), before, "after a kill at %s, the next run, gc and net rm" % point)
        killed_at(node, case.net, point)
        ok(node, "gc")
        after_gc = snapshot(node)
        assert ok(node, "gc") == ""  # gc reports only what it did
        rm = node.pyctr("net", "rm", case.rm, timeout=120, stdin=subprocess.DEVNULL)
        # gc took all of a network the kill left unfinished: then no network
        # is left to name, and net rm says so
        assert rm.returncode == 0 or not case.complete(point) and \
            rm.stderr == "pyctr: unknown network '%s' (see pyctr net ls)\n" % case.rm, rm.stderr
        same(snapshot(node), before, "after a kill at %s, gc and net rm" % point)
        ok(node, "run", "--rm", "--net=" + case.net, "busybox", "true")
        clean = snapshot(node)  # what a normal run leaves
        same(after_next, clean, "after a kill at %s, the next run and gc" % point)
        same(after_gc, clean if case.complete(point) else before,
             "after a kill at %s and gc" % point)
    assert ok(node, "gc") == ""
    assert reaches(node, peer)  # the node itself


@pytest.mark.parametrize("case", CASES, ids=[c.name.replace(" ", "_") for c in CASES])
def test_kill_points_are_every_host_change_of_attach(pair, case, tmp_path):
    """The points above are all the host changes one attach makes: a new
    step in attach must get its kill point."""
    node, _ = pair
    prepare(node, case)
    record = str(tmp_path / "points")
    done = kill_inside(node, case.net, "none", command=("true",), record=record)
    assert done.returncode == 0, done.stderr
    with open(record) as f:
        assert f.read().split("\n")[:-1] == case.points


UPLINK = CASES[2]
RM_POINTS = ["journal", "delete_link", "add_addr", "add_route", "journal done"]


@pytest.mark.parametrize("point", RM_POINTS)
def test_kill_inside_net_rm_of_an_uplinked_bridge_gc_gives_the_node_its_nic_back(
        pair, point):
    """`pyctr net rm` killed while the bridge gives the NIC back its
    address and default route: gc finishes the removal, exactly."""
    node, peer = pair
    prepare(node, UPLINK)
    before = snapshot(node)
    ok(node, "run", "--rm", "--net=" + UPLINK.net, "busybox", "true")
    killed_at(node, None, point, argv=["net", "rm", UPLINK.rm], where="teardown")
    out = ok(node, "gc")
    if RM_POINTS.index(point) < RM_POINTS.index("add_addr"):  # gc says what it gave back
        assert "restored address 10.77.0.1/24 of nic0\n" in out, out
    same(snapshot(node), before, "after a kill of net rm at %s and gc" % point)
    assert reaches(node, peer)
    ok(node, "net", "rm", UPLINK.rm)
    same(snapshot(node), before, "after a kill of net rm at %s, gc and net rm" % point)
    next_container_works(node, UPLINK, point, set())


def test_kill_points_of_net_rm_are_every_host_change(pair, tmp_path):
    node, _ = pair
    prepare(node, UPLINK)
    ok(node, "run", "--rm", "--net=" + UPLINK.net, "busybox", "true")
    record = str(tmp_path / "points")
    done = kill_inside(node, None, "none", record=record, argv=["net", "rm", UPLINK.rm],
                       where="teardown")
    assert done.returncode == 0, done.stderr
    with open(record) as f:
        assert f.read().split("\n")[:-1] == RM_POINTS


DETACH_POINTS = {"bridge": ["delete_link", "release"], "uplink": ["delete_link", "release"],
                 "host shim": ["del_route", "release"]}
DETACHES = [(case, point) for case in CASES for point in DETACH_POINTS.get(case.name, ())]


@pytest.mark.parametrize("case,point", DETACHES,
                         ids=["%s-%s" % (c.name.replace(" ", "_"), p) for c, p in DETACHES])
def test_kill_inside_detach_leaves_a_node_that_works_and_gc_restores(pair, case, point):
    """`run --rm` killed while its container's network is taken down."""
    node, peer = pair
    prepare(node, case)
    ok(node, "run", "--rm", "--net=" + case.net, "busybox", "true")  # the host side made
    before = snapshot(node)
    taken = leased(node)
    killed_at(node, case.net, point, command=("true",), where="detach")
    next_container_works(node, case, point, taken)
    ok(node, "gc")
    same(snapshot(node), before, "after a kill in detach at %s, the next run and gc" % point)
    assert ok(node, "gc") == ""
    assert reaches(node, peer)


@pytest.mark.parametrize("case", [c for c in CASES if c.name in DETACH_POINTS],
                         ids=[c.name.replace(" ", "_") for c in CASES if c.name in DETACH_POINTS])
def test_kill_points_of_detach_are_every_host_change(pair, case, tmp_path):
    node, _ = pair
    prepare(node, case)
    record = str(tmp_path / "points")
    done = kill_inside(node, case.net, "none", command=("true",), record=record,
                       where="detach")
    assert done.returncode == 0, done.stderr
    with open(record) as f:
        assert f.read().split("\n")[:-1] == DETACH_POINTS[case.name]
