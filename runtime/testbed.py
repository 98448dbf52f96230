"""A simulated cluster for tests and benchmarks, entirely inside network
namespaces made here (the machine's own eth0 is never touched):

          switch netns  [ sw0 bridge: p1  p2  ... ]
                           |   |
          node netns n1: nic0   n2: nic0  ...     (veth pairs, born in place)
                      10.77.0.1   10.77.0.2

    with Testbed(nodes=2, rate_mbit=100) as tb:
        a, b = tb.nodes
        a.pyctr("run", "--rm", "--net=veth:br0", "busybox", "/bin/true")
        b.run(["ping", "-c1", "-W2", a.ip])

Each node has its own pyctr worlds (state, config; images shared) and runs
commands in its netns with `ip netns exec`, which also gives the command a
/sys of that netns. `add_host(ip)` puts a foreign host on the switch (a netns holding one
address, no pyctr): someone else on the wire. `rate_mbit` shapes both directions of every node link
with tbf, to mimic the Fast Ethernet of the study. `hairpin=True` turns on
hairpin on the switch ports (what macvlan VEPA needs from its switch).
Names carry the pid and a counter, so parallel runs never clash; down()
removes everything, also after failures, and may be called twice.
"""
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time

from pyctr.paths import Paths

_counter = itertools.count()
TB_ROOT = "/run/pyctr-tb"


def _ip(*args, check=True, netns=None):
    cmd = ["ip"] + (["-n", netns] if netns else []) + list(args)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


def _tc(netns, *args):
    r = subprocess.run(["ip", "netns", "exec", netns, "tc"] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        raise RuntimeError("tc %s: %s" % (" ".join(args), r.stderr.strip()))


def _subnet_host(subnet, n):
    """The n-th host address of an IPv4 subnet "A.B.C.D/P" (n=1: .1)."""
    import ipaddress
    net = ipaddress.ip_network(subnet, strict=False)
    return str(net.network_address + n), net.prefixlen


class Node:
    """One simulated machine: a netns with one NIC `nic0`."""

    def __init__(self, testbed, index):
        self.testbed = testbed
        self.index = index
        self.name = "n%d" % index
        self.netns = "%s-%s" % (testbed.tag, self.name)
        self.ip, self.prefix = _subnet_host(testbed.subnet, index)
        self.port = "p%d" % index  # its port on the switch bridge
        base = os.path.join(TB_ROOT, testbed.tag, self.name)
        self.paths = Paths(root=os.path.join(base, "state"), config=os.path.join(base, "config"),
                           data=testbed.data)
        self.base = base

    # -- running things in the node ------------------------------------
    def argv(self, argv):
        return ["ip", "netns", "exec", self.netns] + [str(a) for a in argv]

    def run(self, argv, check=False, timeout=120, **kw):
        """subprocess.run inside the node; text output captured unless told otherwise."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.run(self.argv(argv), check=check, timeout=timeout, **kw)

    def popen(self, argv, **kw):
        return subprocess.Popen(self.argv(argv), **kw)

    def pyctr_argv(self, *args):
        p = self.paths
        return [sys.executable, "-m", "pyctr", "--root", p.root, "--config", p.config,
                "--data", p.data] + list(args)

    def pyctr(self, *args, **kw):
        return self.run(self.pyctr_argv(*args), **kw)

    def pyctr_popen(self, *args, **kw):
        return self.popen(self.pyctr_argv(*args), **kw)

    def sh(self, command, **kw):
        return self.run(["sh", "-c", command], **kw)

    def ip_cmd(self, *args, check=True):
        return _ip(*args, check=check, netns=self.netns)

    def __repr__(self):
        return "Node(%s %s)" % (self.netns, self.ip)


class Host:
    """A foreign machine on the switch: a netns whose NIC `eth0` holds one
    address. It answers ARP for it until forget()."""

    def __init__(self, testbed, index, ip, prefix):
        self.netns = "%s-h%d" % (testbed.tag, index)
        self.port = "h%d" % index
        self.ip, self.prefix = ip, prefix

    def forget(self):
        """Drop the address: from now on nobody answers for it."""
        _ip("addr", "del", "%s/%d" % (self.ip, self.prefix), "dev", "eth0", netns=self.netns)

    def __repr__(self):
        return "Host(%s %s)" % (self.netns, self.ip)


class UpDown:
    """A context manager over up() and down(): down() also after a failed
    up(), so a half-made bed is removed as well."""

    def __enter__(self):
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc):
        self.down()


class Testbed(UpDown):
    __test__ = False  # not a pytest test class, despite the name
    def __init__(self, prefix="pyctr-tb", nodes=2, subnet="10.77.0.0/24", rate_mbit=None,
                 hairpin=False, data=None):
        self.tag = "%s-%d-%d" % (prefix, os.getpid(), next(_counter))
        self.subnet = subnet
        self.rate_mbit = rate_mbit
        self.hairpin = hairpin
        self.data = data or os.environ.get("PYCTR_DATA") or "/var/lib/pyctr"
        self.switch = "%s-sw" % self.tag
        self.nodes = [Node(self, i + 1) for i in range(nodes)]
        self.hosts = []  # foreign hosts (add_host)
        self._made = []  # netns names created, for down()

    def up(self):
        self._add_netns(self.switch)
        sw = self.switch
        _ip("link", "set", "lo", "up", netns=sw)
        _ip("link", "add", "sw0", "type", "bridge", "stp_state", "0", netns=sw)
        _ip("link", "set", "sw0", "up", netns=sw)
        for node in self.nodes:
            self._add_node(node)

    def _add_netns(self, name):
        _ip("netns", "add", name)
        self._made.append(name)

    def _add_node(self, node):
        self._add_netns(node.netns)
        ns, sw = node.netns, self.switch
        # Both ends born in their namespaces: nothing ever appears in ours.
        _ip("link", "add", "nic0", "netns", ns, "type", "veth", "peer", "name", node.port,
            "netns", sw)
        _ip("link", "set", node.port, "master", "sw0", "up", netns=sw)
        if self.hairpin:
            _ip("link", "set", node.port, "type", "bridge_slave", "hairpin", "on", netns=sw)
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("addr", "add", "%s/%d" % (node.ip, node.prefix), "dev", "nic0", netns=ns)
        _ip("link", "set", "nic0", "up", netns=ns)
        if self.rate_mbit:
            for where, dev in ((ns, "nic0"), (sw, node.port)):
                _tc(where, "qdisc", "add", "dev", dev, "root", "tbf", "rate",
                    "%dmbit" % self.rate_mbit, "burst", "32kbit", "latency", "50ms")
        os.makedirs(node.paths.root, exist_ok=True)
        os.makedirs(node.paths.config, exist_ok=True)

    def add_host(self, ip):
        """A foreign host on the switch holding `ip` (in the testbed's subnet)."""
        _, prefix = _subnet_host(self.subnet, 0)
        host = Host(self, len(self.hosts) + 1, ip, prefix)
        self._add_netns(host.netns)
        self.hosts.append(host)
        _ip("link", "add", "eth0", "netns", host.netns, "type", "veth", "peer", "name",
            host.port, "netns", self.switch)
        _ip("link", "set", host.port, "master", "sw0", "up", netns=self.switch)
        _ip("addr", "add", "%s/%d" % (ip, prefix), "dev", "eth0", netns=host.netns)
        _ip("link", "set", "eth0", "up", netns=host.netns)
        return host

    def node(self, name):
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def down(self):
        """Remove the nodes' containers, kill what runs in our namespaces,
        drop them and our directories."""
        for node in self.nodes:
            if node.netns in self._made:
                _remove_containers(node)
        for name in reversed(self._made):
            _kill_netns_processes(name)
        for node in self.nodes:
            _unmount_under(node.base)
        for name in reversed(self._made):
            _ip("netns", "del", name, check=False)
        self._made = []
        shutil.rmtree(os.path.join(TB_ROOT, self.tag), ignore_errors=True)
        try:
            os.rmdir(TB_ROOT)
        except OSError:
            pass


def _remove_containers(node):
    try:
        names = os.listdir(node.paths.containers)
    except OSError:
        return
    for name in names:
        try:
            node.pyctr("rm", "-f", name, timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        node.pyctr("gc", timeout=30)
    except subprocess.TimeoutExpired:
        pass


def _kill_netns_processes(name):
    def pids():
        r = _ip("netns", "pids", name, check=False)
        return [int(p) for p in r.stdout.split()] if r.returncode == 0 else []
    kill_until_gone(pids)


def kill_until_gone(pids):
    """SIGKILL what pids() lists until it lists nothing (bounded: 50 rounds)."""
    for _ in range(50):
        pids_now = pids()
        if not pids_now:
            return
        for pid in pids_now:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _unmount_under(base):
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return
    for point in sorted((p for p in points if p.startswith(base + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
