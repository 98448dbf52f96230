"""Crash consistency: `pyctr run` killed with SIGKILL right after each stage
of creation (a deterministic point: the stage list is wrapped, no sleeps),
on a simulated node. Afterwards the node must keep working without `gc` -
the next container starts - and `gc` must return the node to exactly the
state it had before: links, addresses, routes, leases, records, mounts.

The baseline is taken after one successful `run --rm` on the same network,
so what normal use keeps (a bridge made on demand) is part of it."""
import json
import os
import signal
import subprocess
import sys

import pytest

from conftest import root_only
from pyctr import container
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
    links = {(l["ifname"], l.get("linkinfo", {}).get("info_kind"), l.get("master"))
             for l in ip_json("-d", "link", "show")}
    addrs = {(a["ifname"], i["local"], i["prefixlen"])
             for a in ip_json("addr", "show") for i in a.get("addr_info", [])}
    routes = {(r.get("dst"), r.get("dev"), r.get("gateway")) for r in ip_json("-4", "route")}
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
            "mounts": mounts}


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
    after = snapshot(node)
    for what in before:
        assert after[what] == before[what], "%s after kill at %s + gc: extra %s, missing %s" % (
            what, stage, sorted(after[what] - before[what], key=str),
            sorted(before[what] - after[what], key=str))
    # gc reports only what it removed; a second gc finds nothing.
    assert node.pyctr("gc", timeout=60, stdin=subprocess.DEVNULL).stdout == ""
