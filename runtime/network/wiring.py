"""Wiring a container's network while its first process waits.

For each Prepared item (resolve.py), in order (eth0, eth1, ...):

  1. its kind checks the host's devices again and, under the pool's lock,
     leases an address and makes what the network needs on the host (a
     bridge, a host shim) if missing;
  2. its kind creates the device directly in its final place, born in the
     container's netns (a veth pair's peer, a macvlan);
  3. where the network reaches a wire (kinds: reaches_wire, and the
     network's `probe` not off), the link goes up without an address and,
     once frames pass to the wire (kinds: forwarding), the leased address
     is ARP-probed from it (arp.py); one that someone on the wire answers
     for is noted in the pool and the next free one is leased and probed
     (a requested --ip that answers is refused);
  4. the kind's host-side parts that need the final address (addressed());
  5. inside the container (a netlink socket opened there): address, link up,
     default route, extra routes; lo up first; a probed address is then
     announced (gratuitous ARP). The netns defaults set beforehand
     (netns.CONTAINER_SYSCTLS) give every new device DAD off, arp_notify on.

Every step pushes its undo; any failure runs them backwards and raises one
PyctrError, so a bad request leaves nothing behind. Records returned are
plain dicts, kept in the container's state and handed back to detach():
ifname, kind, network, pool, ip (CIDR), gateway, mac, mtu, default_route,
and the kind's own keys (kinds/veth.py, kinds/macvlan.py).
"""
import os

from pyctr.errors import PyctrError
from pyctr.network import arp, ipam, kinds, netns
from pyctr.network.addr import int_ip, ip_int
from pyctr.network.resolve import requested_ip


class Kernel:
    """The real kernel. Unit tests pass a recording fake with these methods."""

    def host(self):
        from pyctr.network.rtnl import Netlink
        return Netlink()

    def open_ns(self, pid):
        return netns.open_ns(pid)

    def enter(self, ns_fd):
        return netns.enter(ns_fd)

    def close_ns(self, fd):
        os.close(fd)

    def start_time(self, pid):
        return ipam.start_time(pid)

    def prober(self, ns_fd, ifname):
        return arp.Prober.make_in(ns_fd, ifname)


class Undo:
    def __init__(self):
        self.steps = []

    def push(self, fn, *args, **kw):
        self.steps.append((fn, args, kw))

    def run(self):
        while self.steps:
            fn, args, kw = self.steps.pop()
            try:
                fn(*args, **kw)
            except (OSError, PyctrError):
                pass  # best effort: keep undoing the rest


class Wire:
    """One container's attach in progress, as the kinds see it: the host's
    netlink (host), the container's (container) and its netns fd, the undo
    stack, and leasing."""

    def __init__(self, paths, host, container, ns_fd, undo):
        self.paths, self.host, self.container = paths, host, container
        self.ns_fd, self.undo = ns_fd, undo
        self.leasing = {}  # prep.index: (pool, owner), to lease again after a conflict

    def node_ips(self):
        """The node's own addresses, never handed out whatever the range:
        every IPv4 address it holds (NIC, bridge, host shim, ...) and every
        gateway its routes go through."""
        own = {ip_int(ip) for _, ip, _ in self.host.addrs()}
        return own | {ip_int(r["gateway"]) for r in self.host.routes() if r["gateway"]}

    def avoided(self, pool, net):
        """What an automatic choice skips (pool locked): the node's own
        addresses and those noted in use on the wire."""
        noted = pool.conflicts(conflict_seconds(net)) if net.probe else {}
        return self.node_ips() | set(noted)

    def lease(self, pool, prep, owner, exclude=()):
        """Lease the requested or the lowest free address of prep's network
        (pool locked by the caller), never the node's own nor, unless
        requested, one noted in use on the wire; returns (ip int, prefix)."""
        net = prep.network
        want = requested_ip(prep.request, net)
        exclude = set(exclude) | (self.node_ips() if want is not None
                                  else self.avoided(pool, net))
        if net.gateway:
            exclude.add(net.gateway)
        self.leasing[prep.index] = (pool, owner)
        first, last = net.candidates(self.host)
        got, reclaimed = pool.allocate(first, last, owner, want=want, subnet=net.subnet,
                                       exclude=exclude)
        self.undo.push(release_lease, pool, got, owner["container"])
        for old in reclaimed:  # a crashed owner's host end, if any is left
            if old.host_ifname:
                self.host.delete_link(name=old.host_ifname)
        return got, net.subnet.prefix


def attach(paths, container_id, prepared, pid, kernel=None, netns_fd=None, uid=None):
    """netns_fd, uid: the network helper's (netd): the netns the user
    passed, in place of /proc/PID/ns/net, and the user owning the leases."""
    if not prepared:
        return []
    kernel = kernel or Kernel()
    start = kernel.start_time(pid)
    if start is None:
        raise PyctrError("container process %d is gone" % pid)
    undo = Undo()
    host = kernel.host()
    ns_fd = None
    container = None
    try:
        ns_fd = kernel.open_ns(pid) if netns_fd is None else os.dup(netns_fd)
        container = kernel.enter(ns_fd)
        container.set_link(1, up=True)  # lo
        wire = Wire(paths, host, container, ns_fd, undo)
        owner = {"pid": pid, "start": start, "container": container_id}
        if uid is not None:
            owner["uid"] = uid
        records = []
        for prep in prepared:
            rec = prep.kind.attach(wire, prep, dict(owner, ifname=prep.ifname))
            rec.update(kind=prep.kind.name, ifname=prep.ifname, network=prep.network.name,
                       pool=prep.network.pool)
            prober = None
            try:
                if probes(prep, host):
                    prober = claim(kernel, wire, prep, rec)
                prep.kind.addressed(wire, prep, rec)
                _configure_inside(container, prep, rec, default_route=not any(
                    r.get("default_route") for r in records))
                if prober is not None:
                    prober.announce(rec["ip"].split("/")[0])
            finally:
                if prober is not None:
                    prober.close()
            records.append(rec)
        return records
    except BaseException as e:
        undo.run()
        if isinstance(e, OSError):
            raise PyctrError("network setup failed", e.errno or 0) from e
        raise
    finally:
        for sock in (container, host):
            if sock is not None:
                sock.close()
        if ns_fd is not None:
            kernel.close_ns(ns_fd)


def conflict_seconds(net):
    return arp.CONFLICT_SECONDS if net.conflict_seconds is None else net.conflict_seconds


def probes(prep, host):
    """Is prep's address ARP-probed before use?"""
    return prep.network.probe and prep.kind.reaches_wire(prep.network, host)


def claim(kernel, wire, prep, rec):
    """Probe the leased address from the container's interface (brought up,
    no address yet); while someone on the wire answers for it: note the
    conflict in the pool, lease the next free address instead, probe that.
    A requested address that answers is refused. rec follows the lease.
    Returns the prober (the caller announces the address and closes it)."""
    net, ifname = prep.network, rec["ifname"]
    link = wire.container.link(ifname)
    if link is None:
        raise PyctrError("%s did not appear in the container" % ifname)
    try:
        wire.container.set_link(link.index, up=True)
    except OSError as e:
        raise PyctrError("cannot bring %s up in the container" % ifname, e.errno) from e
    prep.kind.forwarding(wire, rec)
    # Made once the link is up: a packet socket bound to a link that is
    # down holds ENETDOWN for its next call.
    prober = kernel.prober(wire.ns_fd, ifname)
    try:
        _probe_until_free(wire, prep, rec, prober)
    except BaseException:
        prober.close()
        raise
    return prober


def _probe_until_free(wire, prep, rec, prober):
    net, ifname = prep.network, rec["ifname"]
    pool, owner = wire.leasing[prep.index]
    requested = requested_ip(prep.request, net) is not None
    for _ in range(arp.MAX_CONFLICTS):
        ip, prefix = rec["ip"].split("/")
        try:
            conflict = prober.probe(ip)
        except OSError as e:
            raise PyctrError("cannot probe address %s on %s" % (ip, ifname), e.errno) from e
        if conflict is None:
            return
        if requested:
            raise PyctrError("%s: choose another address" % arp.describe(ip, conflict))
        with pool:
            pool.note_conflict(ip_int(ip), conflict)
            new, _ = wire.lease(pool, prep, owner)
            pool.release(ip, container=owner["container"])
        rec["ip"] = "%s/%s" % (int_ip(new), prefix)
        rec["lease"] = os.path.join(pool.dir, int_ip(new))
    raise PyctrError("network %s: %d addresses in a row are in use on the wire (is its range "
                     "shared with other hosts? give each node its own range)"
                     % (net.name, arp.MAX_CONFLICTS))


def _configure_inside(container, prep, rec, default_route):
    """Address, link up, default route (the first network with a gateway
    gives it) and the request's routes, in the container's netns."""
    net, ifname = prep.network, rec["ifname"]
    link = container.link(ifname)
    if link is None:
        raise PyctrError("%s did not appear in the container" % ifname)
    ip, prefix = rec["ip"].split("/")
    gateway = int_ip(net.gateway) if net.gateway else None
    try:
        container.add_addr(link.index, ip, int(prefix))
        container.set_link(link.index, up=True)
        if gateway and default_route:
            container.add_route(gateway=gateway, oif=link.index)
            rec["default_route"] = True
        for route in prep.request.routes:
            dest, _, via = route.partition("@")
            dst, dst_len = dest.split("/")
            if dst_len == "0":
                rec["default_route"] = True
            container.add_route(dst, int(dst_len), gateway=via or gateway, oif=link.index,
                                replace=True)
    except OSError as e:
        raise PyctrError("cannot configure %s in the container" % ifname, e.errno) from e
    link = container.link(ifname)
    rec["mac"], rec["mtu"] = link.mac, link.mtu


def release_lease(pool, ip, container):
    with pool:
        pool.release(ip, container=container)


def detach(paths, container_id, records, kernel=None):
    """Undo attach. Idempotent: whatever is already gone is skipped, and a
    lease that has meanwhile passed to another owner is left alone."""
    if not records:
        return
    kernel = kernel or Kernel()
    host = kernel.host()
    problems = []
    try:
        for rec in reversed(records):
            try:
                _detach_one(paths, host, container_id, rec)
            except OSError as e:
                problems.append("%s: %s" % (rec.get("ifname"), os.strerror(e.errno or 0)))
    finally:
        host.close()
    if problems:
        raise PyctrError("network teardown incomplete: " + "; ".join(problems))


def _detach_one(paths, host, container_id, rec):
    kind = kinds.get(rec["kind"])
    pool_key = rec.get("pool")
    ip = rec.get("ip", "").split("/")[0]
    lease = None
    if pool_key and ip:
        lease = ipam.Pool(paths, pool_key).read(ip)
        if lease is not None and lease.container != container_id:
            lease = None  # passed on to another owner meanwhile: not ours
    if lease is None:
        kind.detach(host, rec, None)
        return
    with ipam.Pool(paths, pool_key) as pool:
        kind.detach(host, rec, lease)
        pool.release(ip, container=container_id)
