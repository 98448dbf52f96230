"""Wiring a container's network while its first process waits.

For each request, in order (eth0, eth1, ...):

  1. resolve the network: a definition, or ad-hoc veth:BR / macvlan:LOWER
     (subnet and gateway then read from the bridge or lower device);
  2. check the devices (lower exists and is not a bridge port, a passthru
     holds its lower alone, ...), all before anything is made;
  3. under the pool's lock: lease an address, create the bridge or the host
     shim if missing;
  4. create the device directly in its final place: the veth pair with the
     host end on the bridge (one request: a full bridge refuses the whole
     pair) and the peer born in the container's netns as ethN; a macvlan
     born in the container's netns;
  5. inside the container (a netlink socket opened there): address, link up,
     default route, extra routes; lo up. The netns defaults set beforehand
     (netns.CONTAINER_SYSCTLS) give every new device DAD off, arp_notify on.

Every step pushes its undo; any failure runs them backwards and raises one
PyctrError, so a bad request leaves nothing behind. Records returned are
plain dicts, kept in the container's state and handed back to detach().

The host shim, once made, stays until `pyctr gc` or `pyctr net rm` finds it
unused: deleting a device costs an RCU grace period (~15 ms here), too much
to pay at every container exit.

Host-side names (at most 15 characters, each says what it belongs to):
  pyv<container id><n>   host end of the container's veth n
  pys-<lower>            the host's macvlan shim on that lower device
"""
import errno
import os

from pyctr.errors import PyctrError
from pyctr.network import ipam, netns
from pyctr.network.addr import Subnet, check_ifname, check_mac, check_mtu, int_ip, ip_int, \
    random_mac
from pyctr.network.config import Network

EXFULL = 54
BRIDGE_ALIAS = "pyctr network "  # ifalias of the bridges pyctr made
BR_MAX_PORTS = 1023  # the kernel's bridge port numbers are 1..1023
AUTO_SUBNETS = [(10 << 24) | (89 << 16) | (n << 8) for n in range(256)]  # 10.89.N.0/24


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


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


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


def host_ifname(container_id, n):
    tag = "".join(c for c in container_id if c.isalnum())
    suffix = str(n)
    return ("pyv" + tag)[:15 - len(suffix)] + suffix


def shim_ifname(lower):
    if len(lower) <= 11:
        return "pys-" + lower
    import zlib
    return "pys-%s%04x" % (lower[:7], zlib.crc32(lower.encode()) & 0xFFFF)


def attach(paths, container_id, requests, pid, kernel=None):
    kernel = kernel or Kernel()
    requests = [r for r in requests if r.kind not in ("none", "host", "container")]
    if not requests:
        return []
    start = kernel.start_time(pid)
    if start is None:
        raise PyctrError("container process %d is gone" % pid)
    undo = Undo()
    host = kernel.host()
    ns_fd = None
    cnl = None
    try:
        ns_fd = kernel.open_ns(pid)
        cnl = kernel.enter(ns_fd)
        cnl.set_link(1, up=True)  # lo
        records = []
        owner = {"pid": pid, "start": start, "container": container_id}
        for n, req in enumerate(requests):
            wiring = Wiring(paths, kernel, host, cnl, ns_fd, owner, undo)
            records.append(wiring.attach(req, n, default_route=not any(
                r.get("default_route") for r in records)))
        return records
    except BaseException as e:
        undo.run()
        if isinstance(e, OSError):
            raise PyctrError("network setup failed", e.errno or 0) from None
        raise
    finally:
        for sock in (cnl, host):
            if sock is not None:
                sock.close()
        if ns_fd is not None:
            kernel.close_ns(ns_fd)


class Wiring:
    """One request's worth of attach work."""

    def __init__(self, paths, kernel, host, cnl, ns_fd, owner, undo):
        self.paths, self.kernel, self.host, self.cnl = paths, kernel, host, cnl
        self.ns_fd, self.owner, self.undo = ns_fd, owner, undo

    def attach(self, req, n, default_route):
        from pyctr.network.request import validate
        validate(req)
        net = resolve(self.paths, req)
        ifname = "eth%d" % n
        owner = dict(self.owner, ifname=ifname)
        if net.kind == "bridge":
            rec = self._veth(req, net, ifname, n, owner)
        else:
            rec = self._macvlan(req, net, ifname, owner)
        rec.update(ifname=ifname, network=net.name, pool=net.pool)
        self._inside(req, net, rec, default_route)
        return rec

    # -- veth + bridge -------------------------------------------------
    def _veth(self, req, net, ifname, n, owner):
        host = self.host
        br = host.link(net.device)
        if br is not None and br.kind != "bridge":
            raise PyctrError("%s is not a bridge (it is a %s device)"
                             % (net.device, br.kind or "physical"))
        uplink = None
        if net.uplink:
            uplink = host.link(net.uplink)
            if uplink is None:
                raise PyctrError("network %s: unknown uplink device %s" % (net.name, net.uplink))
            if uplink.master and (br is None or uplink.master != br.index):
                raise PyctrError("network %s: uplink %s is already enslaved to another device"
                                 % (net.name, net.uplink))
        hname = host_ifname(owner["container"], n)
        owner["host"] = hname
        pool = ipam.Pool(self.paths, net.pool)
        # Two new ad-hoc bridges must not pick the same free subnet.
        auto = ipam.Pool(self.paths, ipam.SUBNETS_LOCK) if br is None and net.subnet is None \
            else _NoLock()
        with auto, pool:
            if br is None:
                br = host.link(net.device)  # made meanwhile by a concurrent start?
            if br is None:
                self._plan_new_bridge(req, net, uplink)
            else:
                self._learn_bridge(req, net, br)
            ip, prefix = self._lease(pool, req, net, owner, exclude=self._local_ips(br, uplink))
            if br is None:
                br = self._make_bridge(net, uplink)
        mtu = req.mtu or net.mtu or br.mtu or None
        try:
            host.create_veth(hname, ifname, peer_netns_fd=self.ns_fd, mtu=mtu, peer_mac=req.mac,
                             master=br.index, up=True)
        except OSError as e:
            if e.errno == EXFULL:
                raise PyctrError("bridge %s is full (%d ports)" % (net.device, BR_MAX_PORTS)) \
                    from None
            if e.errno == errno.EEXIST:
                raise PyctrError("cannot create veth %s: an interface of that name exists"
                                 % hname) from None
            raise PyctrError("cannot create veth %s on bridge %s" % (hname, net.device),
                             e.errno) from None
        self.undo.push(host.delete_link, name=hname)
        return {"kind": "veth", "ip": "%s/%d" % (int_ip(ip), prefix),
                "gateway": int_ip(net.gateway) if net.gateway else None,
                "host_ifname": hname, "bridge": net.device, "mtu": mtu,
                "lease": os.path.join(pool.dir, int_ip(ip))}

    def _plan_new_bridge(self, req, net, uplink):
        """Subnet and gateway of a bridge pyctr is about to make."""
        if net.subnet is None:  # ad-hoc veth:BR
            if req.ip and "/" in req.ip:
                ip, prefix = req.ip.split("/")
                net.subnet = Subnet(ip_int(ip), int(prefix))
            else:
                net.subnet = self._free_subnet()
            net.gateway = net.subnet.first
        if uplink is not None:
            # The bridge takes over the uplink's address: that is the gateway.
            for _, ip, prefix in self.host.addrs(uplink.index):
                if ip_int(ip) in net.subnet and net.gateway is None:
                    net.gateway = ip_int(ip)
        elif net.gateway is None:
            net.gateway = net.subnet.first

    def _learn_bridge(self, req, net, br):
        """Subnet and gateway of an existing bridge (ad-hoc: from its address)."""
        addrs = [(ip_int(ip), p) for _, ip, p in self.host.addrs(br.index)]
        if net.subnet is None:
            if addrs:
                ip, prefix = addrs[0]
                net.subnet, net.gateway = Subnet(ip, prefix), ip
            elif req.ip and "/" in req.ip:
                ip, prefix = req.ip.split("/")
                net.subnet = Subnet(ip_int(ip), int(prefix))
            else:
                raise PyctrError("bridge %s has no IPv4 address: give ip=A.B.C.D/P or define a "
                                 "network (pyctr net create)" % net.device)
        elif net.gateway is None:
            for ip, _ in addrs:
                if ip in net.subnet:
                    net.gateway = ip
                    break

    def _free_subnet(self):
        used = [Subnet(ip_int(ip), p) for _, ip, p in self.host.addrs()]
        used += [Subnet(ip_int(r["dst"]), r["dst_len"]) for r in self.host.routes()
                 if r["dst_len"]]
        for net in AUTO_SUBNETS:
            candidate = Subnet(net, 24)
            if not any(candidate.overlaps(u) for u in used):
                return candidate
        raise PyctrError("no free 10.89.N.0/24 subnet for a new bridge: define a network")

    def _make_bridge(self, net, uplink):
        host = self.host
        mtu = net.mtu or (uplink.mtu if uplink else None)
        # A pinned MAC: the uplink's own when there is one (unique on the
        # segment, and neighbours' ARP entries for the moved address stay right).
        mac = uplink.mac if uplink is not None else random_mac()
        try:
            host.create_bridge(net.device, mtu=mtu, mac=mac)
        except OSError as e:
            raise PyctrError("cannot create bridge %s" % net.device, e.errno) from None
        self.undo.push(_delete_new_bridge, self.paths, host, net, uplink, self.owner["container"])
        br = host.link(net.device)
        host.set_link(br.index, alias=BRIDGE_ALIAS + net.name)  # what `net rm` may remove
        if uplink is not None:
            _adopt_uplink(host, br, uplink)
        elif net.gateway is not None:
            host.add_addr(br.index, int_ip(net.gateway), net.subnet.prefix)
        return br

    def _local_ips(self, *links):
        out = set()
        for link in links:
            if link is not None:
                out.update(ip_int(ip) for _, ip, _ in self.host.addrs(link.index))
        return out

    def _lease(self, pool, req, net, owner, exclude=()):
        want = None
        if req.ip:
            ip, _, prefix = req.ip.partition("/")
            want = ip_int(ip)
            if prefix and int(prefix) != net.subnet.prefix:
                raise PyctrError("address %s does not match subnet %s of network %s"
                                 % (req.ip, net.subnet, net.name))
            if want not in net.subnet:
                raise PyctrError("address %s is outside subnet %s of network %s"
                                 % (ip, net.subnet, net.name))
        exclude = set(exclude)
        if net.gateway:
            exclude.add(net.gateway)
        first, last = net.candidates()
        got, reclaimed = pool.allocate(first, last, owner, want=want, subnet=net.subnet,
                                       exclude=exclude)
        self.undo.push(pool_release, pool, got, owner["container"])
        for old in reclaimed:  # a crashed owner's host end, if any is left
            if old.host_ifname:
                self.host.delete_link(name=old.host_ifname)
        return got, net.subnet.prefix

    # -- macvlan -------------------------------------------------------
    def _macvlan(self, req, net, ifname, owner):
        host = self.host
        lower = host.link(net.device)
        if lower is None:
            raise PyctrError("unknown lower device %s" % net.device)
        if lower.master:
            master = host.link(index=lower.master)
            raise PyctrError("lower device %s is a port of %s %s: a macvlan needs a device of "
                             "its own" % (net.device, master.kind if master else "device",
                                          master.name if master else lower.master))
        mode = req.mode or net.mode or "bridge"
        shim = net.host_shim and req.host_shim is not False and mode == "bridge"
        if net.subnet is None:
            self._learn_lower(req, net, lower)
        owner["mode"] = mode
        pool = ipam.Pool(self.paths, net.pool)
        shim_rec = None
        with pool:
            _check_passthru(pool, net.device, mode)
            exclude = self._local_ips(lower)
            ip, prefix = self._lease(pool, req, net, owner, exclude=exclude)
            if shim:
                shim_rec = self._ensure_shim(pool, net, lower, exclude | {ip})
        try:
            host.create_macvlan(ifname, lower.index, mode, netns_fd=self.ns_fd,
                                mtu=req.mtu or net.mtu, mac=req.mac,
                                source_macs=req.source_macs if mode == "source" else ())
        except OSError as e:
            if e.errno == errno.EINVAL and req.mtu and req.mtu > lower.mtu:
                raise PyctrError("mtu %d is larger than lower device %s's %d"
                                 % (req.mtu, net.device, lower.mtu)) from None
            if e.errno in (errno.EINVAL, errno.EBUSY):
                raise PyctrError("the kernel refused a %s macvlan on %s (held by a passthru "
                                 "macvlan, or not an Ethernet device?)" % (mode, net.device),
                                 e.errno) from None
            raise PyctrError("cannot create macvlan on %s" % net.device, e.errno) from None
        self.undo.push(self.cnl.delete_link, name=ifname)
        rec = {"kind": "macvlan", "ip": "%s/%d" % (int_ip(ip), prefix),
               "gateway": int_ip(net.gateway) if net.gateway else None,
               "host_ifname": None, "lower": net.device, "mode": mode, "mtu": req.mtu or net.mtu,
               "lease": os.path.join(pool.dir, int_ip(ip)), "shim": None}
        if shim_rec:
            name, shim_index, shim_ip = shim_rec
            host.add_route(int_ip(ip), 32, oif=shim_index, src=shim_ip, replace=True)
            self.undo.push(host.del_route, int_ip(ip), 32, oif=shim_index)
            rec.update(shim=name, shim_ip=shim_ip)
        return rec

    def _learn_lower(self, req, net, lower):
        """Ad-hoc macvlan: the lower device's subnet, its default gateway."""
        addrs = self.host.addrs(lower.index)
        if addrs:
            _, ip, prefix = addrs[0]
            net.subnet = Subnet(ip_int(ip), prefix)
        elif req.ip and "/" in req.ip:
            ip, prefix = req.ip.split("/")
            net.subnet = Subnet(ip_int(ip), int(prefix))
        else:
            raise PyctrError("lower device %s has no IPv4 address: give ip=A.B.C.D/P or define "
                             "a network (pyctr net create)" % net.device)
        for r in self.host.routes():
            if r["dst_len"] == 0 and r["gateway"] and r["oif"] == lower.index:
                gw = ip_int(r["gateway"])
                if gw in net.subnet:
                    net.gateway = gw
                    break

    def _ensure_shim(self, pool, net, lower, exclude):
        """The host's own macvlan (bridge mode) on the lower device: the
        lower itself never sees its macvlans' traffic, the shim does.
        Returns (name, index, address). Called with the pool locked."""
        host = self.host
        name = shim_ifname(net.device)
        link = host.link(name)
        if link is not None:
            addrs = host.addrs(link.index)
            if addrs:
                return name, link.index, addrs[0][1]
            host.delete_link(name=name)  # half made by a crashed pyctr
        for lease in pool.leases().values():
            if lease.shim == name:
                pool.release(lease.ip, shim=name)
        # The host's own address on the lower, as a /32, if it has one in the
        # subnet: no address taken from neighbours on a shared segment.
        own = [ip_int(a) for _, a, _ in host.addrs(lower.index) if ip_int(a) in net.subnet]
        if own:
            ip, leased = own[0], False
        else:
            ip, _ = pool.allocate(*net.candidates(), {"shim": name}, subnet=net.subnet,
                                  exclude=exclude | ({net.gateway} if net.gateway else set()))
            leased = True
        self.undo.push(_remove_shim_if_unused, self.paths, host, net.pool, name,
                       self.owner["container"])
        try:
            host.create_macvlan(name, lower.index, "bridge", up=True)
            link = host.link(name)
            # /32: only the per-container routes lead here, never the subnet.
            host.add_addr(link.index, int_ip(ip), 32)
        except OSError as e:
            host.delete_link(name=name)
            if leased:
                pool.release(ip, shim=name)
            raise PyctrError("cannot create host shim %s on %s" % (name, net.device),
                             e.errno) from None
        return name, link.index, int_ip(ip)

    # -- inside the container ------------------------------------------
    def _inside(self, req, net, rec, default_route):
        cnl, ifname = self.cnl, rec["ifname"]
        link = cnl.link(ifname)
        if link is None:
            raise PyctrError("%s did not appear in the container" % ifname)
        ip, prefix = rec["ip"].split("/")
        try:
            cnl.add_addr(link.index, ip, int(prefix))
            cnl.set_link(link.index, up=True)
            if net.gateway and default_route:
                cnl.add_route(gateway=int_ip(net.gateway), oif=link.index)
                rec["default_route"] = True
            for route in req.routes or []:
                dest, _, gw = route.partition("@")
                dst, dst_len = dest.split("/")
                gw = gw or (int_ip(net.gateway) if net.gateway else None)
                if dst_len == "0":
                    rec["default_route"] = True
                cnl.add_route(dst, int(dst_len), gateway=gw, oif=link.index, replace=True)
        except OSError as e:
            raise PyctrError("cannot configure %s in the container" % ifname, e.errno) from None
        link = cnl.link(ifname)
        rec["mac"], rec["mtu"] = link.mac, link.mtu


def resolve(paths, req):
    from pyctr.network import config
    if req.kind == "network":
        net = config.load(paths, req.network)
    elif req.kind == "veth":
        if config.exists(paths, req.network):
            net = config.load(paths, req.network)
            if net.kind != "bridge":
                raise PyctrError("network %s is a %s network, not a bridge" % (net.name, net.kind))
        else:
            net = Network(req.network, "bridge", check_ifname(req.network, "bridge"))
    elif req.kind == "macvlan":
        net = Network("macvlan:" + req.network, "macvlan",
                      check_ifname(req.network, "lower device"))
    else:
        raise PyctrError("unknown network kind %r" % req.kind)
    if net.kind == "bridge" and (req.mode or req.source_macs):
        raise PyctrError("network %s is a bridge network: mode and source_macs do not apply"
                         % net.name)
    return net


def _check_passthru(pool, lower, mode):
    """passthru takes the lower device alone: no second one, no other
    macvlan beside it (the kernel says only EINVAL)."""
    for lease in pool.leases().values():
        if not lease.alive() or lease.shim:
            continue
        if lease.mode == "passthru":
            raise PyctrError("lower device %s is held by a passthru macvlan (%s)"
                             % (lower, lease.describe()))
        if mode == "passthru":
            raise PyctrError("macvlan passthru needs %s alone, but %s has a macvlan on it"
                             % (lower, lease.describe()))


def pool_release(pool, ip, container):
    with pool:
        pool.release(ip, container=container)


def _adopt_uplink(host, br, uplink):
    """Put the uplink in the bridge and move its IPv4 addresses and routes
    to the bridge (a bridge port's own address no longer receives)."""
    from pyctr.network.rtnl import RTPROT_KERNEL
    addrs = host.addrs(uplink.index)
    routes = [r for r in host.routes() if r["oif"] == uplink.index
              and r["protocol"] != RTPROT_KERNEL and r["gateway"]]
    host.set_link(uplink.index, master=br.index, up=True)
    for _, ip, prefix in addrs:
        host.del_addr(uplink.index, ip, prefix)
        host.add_addr(br.index, ip, prefix)
    for r in routes:
        host.add_route(r["dst"], r["dst_len"], gateway=r["gateway"], oif=br.index, replace=True)


def _delete_new_bridge(paths, host, net, uplink, failed_container):
    """Undo _make_bridge, unless a concurrent start has joined the bridge
    meanwhile: give the uplink its addresses back, drop the bridge."""
    with ipam.Pool(paths, net.pool) as pool:
        if any(lease.alive() and lease.container != failed_container
               for lease in pool.leases().values()):
            return
        delete_bridge(host, net.device, uplink)


def delete_bridge(host, name, uplink):
    br = host.link(name)
    if br is None:
        return
    if uplink is not None:
        give_back(host, br, uplink)
    host.delete_link(name=name)


def give_back(host, br, uplink):
    """The uplink leaves the bridge with the addresses (and gateway routes)
    that the bridge had taken from it."""
    from pyctr.network.rtnl import RTPROT_KERNEL
    addrs = host.addrs(br.index)
    routes = [r for r in host.routes() if r["oif"] == br.index
              and r["protocol"] != RTPROT_KERNEL and r["gateway"]]
    host.set_link(uplink.index, master=0)
    for _, ip, prefix in addrs:
        host.del_addr(br.index, ip, prefix)
        try:
            host.add_addr(uplink.index, ip, prefix)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    for r in routes:
        host.add_route(r["dst"], r["dst_len"], gateway=r["gateway"], oif=uplink.index,
                       replace=True)


def _remove_shim_if_unused(paths, host, pool_key, name, failed_container):
    pool = ipam.Pool(paths, pool_key)
    with pool:
        remove_shim_if_unused(host, pool, name, ignore=failed_container)


def remove_shim_if_unused(host, pool, name, ignore=None):
    """Called with the pool locked. True if the shim was removed. The
    container `ignore` (one whose attach failed) does not count as a user."""
    leases = pool.leases().values()
    if any(not lease.shim and lease.alive() and lease.container != ignore for lease in leases):
        return False
    host.delete_link(name=name)
    for lease in leases:
        if lease.shim == name:
            pool.release(lease.ip, shim=name)
    return True


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
    pool_key = rec.get("pool")
    ip = rec.get("ip", "").split("/")[0]
    lease = None
    if pool_key and ip:
        lease = ipam.Pool(paths, pool_key).read(ip)
        if lease is not None and lease.container != container_id:
            lease = None  # passed on to another owner meanwhile: not ours
    if rec.get("host_ifname") and (lease is None or lease.alive()):
        # With the container gone, its netns is being dismantled and takes
        # the pair with it, in the background. Deleting it here would only
        # make us wait for an RCU grace period (~15 ms): so only while the
        # container still runs (rm -f, a failed start), or with no lease to say.
        host.delete_link(name=rec["host_ifname"])
    if lease is None:
        return
    with ipam.Pool(paths, pool_key) as pool:
        if rec.get("shim"):
            # The shim itself stays, like a bridge: the network's presence on
            # the host (gc or net rm remove it once unused).
            shim = host.link(rec["shim"])
            if shim is not None:
                host.del_route(ip, 32, oif=shim.index)
        pool.release(ip, container=container_id)
