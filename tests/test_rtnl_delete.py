"""Netlink.delete_link(background=True): the link is gone when the call
returns (no longer listed, no longer a bridge port), the kernel's barrier
after that is paid by pyctr-netlink-send, and nothing is left as the
caller's child. Real links in a network namespace made for the test."""
import errno
import json
import os
import subprocess
import sys
import uuid

import pytest

from conftest import root_only

pytestmark = [root_only, pytest.mark.root]

SCRIPT = r"""
import json, os, sys
from pyctr.network import rtnl
nl = rtnl.Netlink()
out = {}
br = nl.link("tbr0")
out["helper"] = os.access(rtnl.SEND_HELPER, os.X_OK)
out["port_before"] = [l.name for l in nl.links() if l.master == br.index]
out["deleted"] = nl.delete_link(name="tveth0", background=True)
me = os.stat("/proc/self/ns/net").st_ino
out["others_in_netns"] = []
for pid in os.listdir("/proc"):
    try:
        if pid.isdigit() and int(pid) != os.getpid() and \
                os.stat("/proc/%s/ns/net" % pid).st_ino == me:
            out["others_in_netns"].append(pid)
    except OSError:
        pass
out["listed_after"] = nl.link("tveth0") is not None
out["peer_listed_after"] = nl.link("tveth1") is not None
out["port_after"] = [l.name for l in nl.links() if l.master == br.index]
try:
    os.waitpid(-1, os.WNOHANG)
    out["children"] = "some"
except ChildProcessError:
    out["children"] = "none"
out["missing"] = nl.delete_link(name="tnothere", background=True)
try:
    nl.delete_link(name="lo", background=True)
    out["lo"] = "deleted"
except OSError as e:
    out["lo"] = e.errno
out["lo_listed"] = nl.link("lo") is not None
print(json.dumps(out))
"""


@pytest.fixture
def ns():
    name = "pyctr-rtnl-%s" % uuid.uuid4().hex[:8]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for cmd in ("link add tbr0 type bridge", "link add tveth0 type veth peer name tveth1",
                    "link set tveth0 master tbr0", "link set tveth0 up", "link set tbr0 up"):
            subprocess.run(["ip", "-n", name] + cmd.split(), check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def test_a_background_delete_returns_with_the_link_gone(ns):
    r = subprocess.run(["nsenter", "--net=/run/netns/" + ns, sys.executable, "-c", SCRIPT],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=""))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["helper"], "pyctr-netlink-send is not built beside the package"
    assert out["port_before"] == ["tveth0"]
    assert out["deleted"] is True
    # gone at once, its peer with it; the bridge is free for `pyctr net rm`
    assert (out["listed_after"], out["peer_listed_after"], out["port_after"]) == \
        (False, False, [])
    assert out["children"] == "none"  # the helper was reaped; its fork is not ours
    # nor is that fork found in the namespace (it may still be in the kernel's barrier)
    assert out["others_in_netns"] == []
    assert out["missing"] is False
    # the kernel's refusal reaches the caller, and nothing was deleted
    assert out["lo"] == errno.EOPNOTSUPP and out["lo_listed"]
