"""Helpers for the network tests (imported by tests/test_network*.py):

- FakeKernel / FakeNetlink / FakeProber: a recording stand-in for
  pyctr.network's kernel layer (wiring.Kernel + rtnl.Netlink + arp.Prober),
  with just enough link/address/route state for the attach/detach/gc logic
  to run without root; any method can be made to fail. kernel.wire maps
  addresses to the MAC of a host on the wire that answers ARP probes; a
  veth's host end drops frames until the kernel has activated it (after
  kernel.linkwatch_reads reads of it once its peer is up). Both mirror the
  real classes (see `mirrors`): a method or parameter the real class lacks
  is refused, so a misspelt call fails.
- stand_in(node): a process with its own netns, in place of a container,
  for exercising attach/detach directly.
"""
import errno
import inspect
import itertools
import subprocess
import sys
import time

from pyctr.network import arp, rtnl, wiring

IF_OPER_DOWN = 2


def mirrors(real, test_only=()):
    """Class decorator for a fake of `real`: each public method of the fake
    must be one of real's, with the same parameters (else TypeError at
    definition), and looking up any other public name on an instance -- a
    call the code under test misspelt -- raises AttributeError. test_only
    names what the tests themselves use to arrange and inspect the fake."""
    def shape(fn):
        return [(p.name, p.kind, p.default is p.empty)
                for p in inspect.signature(fn).parameters.values()]

    def wrap(fake):
        for name, fn in vars(fake).items():
            if name.startswith("_") or name in test_only or not callable(fn):
                continue
            mine = getattr(real, name, None)
            if mine is None:
                raise TypeError("fake %s.%s: %s has no such method"
                                % (fake.__name__, name, real.__name__))
            if shape(fn) != shape(mine):
                raise TypeError("fake %s.%s: parameters differ from %s.%s%s"
                                % (fake.__name__, name, real.__name__, name,
                                   inspect.signature(mine)))

        def __getattribute__(self, name):
            if not name.startswith("_") and name not in test_only and not hasattr(real, name):
                raise AttributeError("%s has no attribute %r (the fake mirrors it)"
                                     % (real.__name__, name))
            return object.__getattribute__(self, name)
        fake.__getattribute__ = __getattribute__
        return fake
    return wrap


class FakeLink(rtnl.Link):
    """An rtnl.Link made from values (its slots only: no other attribute)."""
    __slots__ = ()

    def __init__(self, index, name, link_type=None, master=0, mtu=1500, mac=None, link=0,
                 mode=None):
        self.index, self.name, self.link_type, self.master = index, name, link_type, master
        self.mtu, self.link, self.macvlan_mode = mtu, link, mode
        self.mac = mac or "02:00:00:00:%02x:%02x" % (index >> 8 & 255, index & 255)
        self.flags = 0
        self.link_netnsid = None
        self.alias = None
        self.operstate = rtnl.IF_OPER_UP


class FakeNs:
    def __init__(self, name):
        self.name = name
        self.links = {}
        self.addrs = []   # (index, ip, prefix)
        self.routes = []  # dicts like rtnl.Netlink.routes()
        self.sysctls = {}


@mirrors(rtnl.Netlink, test_only=("closed",))
class FakeNetlink:
    """rtnl.Netlink's interface over a FakeNs; calls go to kernel.calls."""

    def __init__(self, kernel, ns):
        self._kernel, self._ns = kernel, ns
        self.closed = False

    def _call(self, _op, *args, **kw):
        self._kernel.calls.append((self._ns.name, _op, args, kw))
        fail = self._kernel.fail.get(_op)
        if fail is not None:
            if callable(fail):
                fail = fail(*args, **kw)
            if fail is not None:
                raise fail

    def close(self):
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _find(self, name=None, index=0):
        for link in self._ns.links.values():
            if (name and link.name == name) or (index and link.index == index):
                return link
        return None

    def _add(self, ns, name, **kw):
        if any(l.name == name for l in ns.links.values()):
            raise OSError(errno.EEXIST, "exists")
        link = FakeLink(next(self._kernel.index), name, **kw)
        ns.links[link.index] = link
        return link

    # reads
    def link(self, name=None, index=0):
        link = self._find(name, index)
        left = self._kernel._activating.get(id(link))
        if left is not None:  # the kernel's link watcher, late
            if left <= 1:
                del self._kernel._activating[id(link)]
                link.operstate = rtnl.IF_OPER_UP
            else:
                self._kernel._activating[id(link)] = left - 1
        return link

    def links(self):
        return list(self._ns.links.values())

    def ports(self, master):
        return [link.name for link in self._ns.links.values() if link.master == master]

    def addrs(self, index=0):
        return [a for a in self._ns.addrs if not index or a[0] == index]

    def routes(self):
        return [dict(r) for r in self._ns.routes]

    # writes
    def create_veth(self, name, peer, peer_netns_fd=None, mtu=None, mac=None, peer_mac=None,
                    master=None, up=True):
        self._call("create_veth", name, peer, peer_netns_fd=peer_netns_fd, mtu=mtu,
                   peer_mac=peer_mac, master=master)
        if master:
            self._find(index=master)  # the bridge must exist
            ports = [l for l in self._ns.links.values() if l.master == master]
            if len(ports) >= self._kernel.bridge_max_ports:
                raise OSError(54, "Exchange full")
        peer_ns = self._kernel.ns_by_fd[peer_netns_fd] if peer_netns_fd is not None else self._ns
        if self._find(name):
            raise OSError(errno.EEXIST, "exists")
        host = self._add(self._ns, name, link_type="veth", master=master or 0, mtu=mtu or 1500)
        host.flags = 1 if up else 0
        host.operstate = IF_OPER_DOWN  # no carrier while the peer is down
        self._add(peer_ns, peer, link_type="veth", mtu=mtu or 1500, mac=peer_mac)
        self._kernel.pairs[(self._ns.name, name)] = (peer_ns.name, peer)

    def create_macvlan(self, name, lower_index, mode, netns_fd=None, mtu=None, mac=None,
                       source_macs=(), up=False):
        self._call("create_macvlan", name, lower_index, mode, netns_fd=netns_fd, mtu=mtu,
                   mac=mac, source_macs=tuple(source_macs))
        ns = self._kernel.ns_by_fd[netns_fd] if netns_fd is not None else self._ns
        link = self._add(ns, name, link_type="macvlan", mtu=mtu or 1500, mac=mac, link=lower_index,
                         mode=mode)
        link.flags = 1 if up else 0

    def create_bridge(self, name, mtu=None, mac=None, up=True):
        self._call("create_bridge", name, mtu=mtu, mac=mac)
        link = self._add(self._ns, name, link_type="bridge", mtu=mtu or 1500, mac=mac)
        link.flags = 1 if up else 0

    def set_link(self, index, up=None, master=None, mtu=None, mac=None, name=None, alias=None):
        self._call("set_link", index, up=up, master=master, mtu=mtu, name=name, alias=alias)
        link = self._find(index=index)
        if link is None:
            raise OSError(errno.ENODEV, "no device")
        if name is not None and name != link.name:
            if self._find(name):
                raise OSError(errno.EEXIST, "exists")
            link.name = name
        if up is not None:
            link.flags = 1 if up else 0
        host_end = self._kernel._host_end(self._ns, link)
        if up and host_end is not None and host_end.flags & 1:
            if self._kernel.linkwatch_reads:
                self._kernel._activating[id(host_end)] = self._kernel.linkwatch_reads
            else:
                host_end.operstate = rtnl.IF_OPER_UP
        if master is not None:
            link.master = master
        if alias is not None:
            link.alias = alias

    def delete_link(self, name=None, index=0, background=False):
        self._call("delete_link", name=name, index=index)
        link = self._find(name, index)
        if link is None:
            return False
        self._remove(self._ns, link)
        pair = self._kernel.pairs.pop((self._ns.name, link.name), None)
        if pair:  # a veth pair goes as one
            other_ns = self._kernel.namespaces[pair[0]]
            for l in list(other_ns.links.values()):
                if l.name == pair[1]:
                    self._remove(other_ns, l)
        return True

    def _remove(self, ns, link):
        del ns.links[link.index]
        for port in ns.links.values():  # a bridge's ports are released
            if port.master == link.index:
                port.master = 0
        ns.addrs = [a for a in ns.addrs if a[0] != link.index]
        ns.routes = [r for r in ns.routes if r["oif"] != link.index]

    def add_addr(self, index, ip, prefix):
        self._call("add_addr", index, ip, prefix)
        if (index, ip, prefix) in self._ns.addrs:
            raise OSError(errno.EEXIST, "exists")
        self._ns.addrs.append((index, ip, prefix))

    def del_addr(self, index, ip, prefix):
        self._call("del_addr", index, ip, prefix)
        if (index, ip, prefix) in self._ns.addrs:
            self._ns.addrs.remove((index, ip, prefix))

    def add_route(self, dst="0.0.0.0", dst_len=0, gateway=None, oif=0, src=None,
                  replace=False, protocol=4, metric=None):
        self._call("add_route", dst, dst_len, gateway=gateway, oif=oif, src=src)
        self._ns.routes = [r for r in self._ns.routes
                          if not (r["dst"] == dst and r["dst_len"] == dst_len)]
        self._ns.routes.append({"dst": dst, "dst_len": dst_len, "gateway": gateway, "oif": oif,
                               "src": src, "protocol": protocol, "scope": 0,
                               "metric": metric})

    def del_route(self, dst="0.0.0.0", dst_len=0, oif=0):
        self._call("del_route", dst, dst_len, oif=oif)
        before = len(self._ns.routes)
        self._ns.routes = [r for r in self._ns.routes
                          if not (r["dst"] == dst and r["dst_len"] == dst_len)]
        return len(self._ns.routes) != before


@mirrors(arp.Prober, test_only=("closed",))
class FakeProber:
    """arp.Prober on a fake container interface: a probe for an address in
    kernel.wire is answered; sending on a link that is down fails, as the
    kernel's ENETDOWN does."""

    def __init__(self, kernel, ns, ifname):
        self._kernel, self._ns, self._ifname = kernel, ns, ifname
        self.closed = False

    def _send(self, op, ip):
        self._kernel.calls.append((self._ns.name, op, (self._ifname, ip), {}))
        link = next((l for l in self._ns.links.values() if l.name == self._ifname), None)
        if link is None or not link.flags & 1:
            raise OSError(errno.ENETDOWN, "Network is down")

    def probe(self, ip):
        self._send("probe", ip)
        link = next(l for l in self._ns.links.values() if l.name == self._ifname)
        host_end = self._kernel._host_end(self._ns, link)
        if host_end is not None and host_end.operstate != rtnl.IF_OPER_UP:
            return None  # the answer was dropped on the way back
        mac = self._kernel.wire.get(ip)
        return arp.Conflict(mac, "answered") if mac else None

    def announce(self, ip):
        self._send("announce", ip)

    def close(self):
        self.closed = True


@mirrors(wiring.Kernel, test_only=(
    "calls", "fail", "index", "namespaces", "ns_by_fd", "pairs", "bridge_max_ports", "fds",
    "open_fds", "host_ns", "add_host_link", "container_ns", "names", "wire", "probers",
    "linkwatch_reads"))
class FakeKernel:
    """wiring.Kernel's interface. `host` is the host netns; each open_ns(pid)
    makes (once per pid) a container netns with only lo."""

    def __init__(self):
        self.calls = []
        self.fail = {}
        self.index = itertools.count(1)
        self.namespaces = {}
        self.ns_by_fd = {}
        self.pairs = {}
        self.bridge_max_ports = 1023
        self.fds = itertools.count(100)
        self.open_fds = set()
        self.host_ns = self._new_ns("host")
        self.wire = {}     # dotted address: MAC of the host on the wire holding it
        self.probers = []
        self.linkwatch_reads = 0  # reads of a host end until it passes frames
        self._activating = {}     # id(host end link): reads left

    def _new_ns(self, name):
        ns = FakeNs(name)
        lo = FakeLink(next(self.index), "lo", mac="00:00:00:00:00:00")
        lo.index = 1 if name != "host" else lo.index
        ns.links[lo.index] = lo
        self.namespaces[name] = ns
        return ns

    def add_host_link(self, name, link_type=None, **kw):
        link = FakeLink(next(self.index), name, link_type=link_type, **kw)
        self.host_ns.links[link.index] = link
        return link

    def host(self):
        return FakeNetlink(self, self.host_ns)

    def container_ns(self, pid):
        name = "pid%d" % pid
        return self.namespaces.get(name) or self._new_ns(name)

    def open_ns(self, pid):
        fd = next(self.fds)
        self.ns_by_fd[fd] = self.container_ns(pid)
        self.open_fds.add(fd)
        return fd

    def enter(self, ns_fd):
        self.calls.append((self.ns_by_fd[ns_fd].name, "enter", (), {}))
        return FakeNetlink(self, self.ns_by_fd[ns_fd])

    def close_ns(self, fd):
        self.open_fds.discard(fd)

    def prober(self, ns_fd, ifname):
        prober = FakeProber(self, self.ns_by_fd[ns_fd], ifname)
        prober._send("open", None)  # the kernel's packet socket on a down link is spoilt
        self.probers.append(prober)
        return prober

    def start_time(self, pid):
        from pyctr.network.ipam import start_time
        return start_time(pid)

    def _host_end(self, ns, link):
        """The host end of a veth whose peer is `link` in ns, or None."""
        for (host_ns, name), peer in self.pairs.items():
            if peer == (ns.name, link.name):
                return next((l for l in self.namespaces[host_ns].links.values()
                             if l.name == name), None)
        return None

    def names(self, ns="host"):
        return sorted(l.name for l in self.namespaces[ns].links.values())


def dead_pid():
    """The pid of a process that has exited (and been reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def stand_in(node, seconds=120):
    """A process in a netns of its own, started inside `node`, waiting to be
    wired like a container. Returns the Popen (its pid's netns is the new one)."""
    p = node.popen(["unshare", "--net", "sleep", str(seconds)])
    for _ in range(500):  # until unshare has made the netns and exec'd sleep
        try:
            if _comm(p.pid) == "sleep":
                return p
        except OSError:
            pass
        time.sleep(0.01)
    raise RuntimeError("stand-in container did not start")


def _comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()
