"""veth: a veth pair per container, its host end on a Linux bridge.

The bridge is made on first use if missing (pinned MAC, STP off, alias
`pyctr network NAME` so that only bridges pyctr made are ever removed). A
network with an uplink puts the node's NIC in the bridge, which takes over
the NIC's addresses and gateway routes (a bridge port's own address no
longer receives) and gives them back when the bridge goes. An ad-hoc bridge
without an address gets the first free 10.89.N.0/24. Making and removing a
bridge is journaled (bridge.py): a crash half-way is undone by the next
start on the network, `pyctr gc` or `pyctr net rm`.

The pair is made in one request, host end already on the bridge and peer
born in the container's netns: a full bridge refuses the whole pair and
leaves nothing. When the container's netns goes, the pair goes with it.

Record keys: host_ifname (pyv<container id><n>), bridge.
"""
import errno
import os
import time

from pyctr.errors import PyctrError
from pyctr.network import bridge, ipam
from pyctr.network.addr import Subnet, check_ifname, int_ip, ip_int, random_mac
from pyctr.network.kinds import Kind, device_subnet, request_subnet
from pyctr.network.rtnl import IF_OPER_UP

EXFULL = 54
BR_MAX_PORTS = 1023  # the kernel's bridge port numbers are 1..1023
HOST_END_PREFIX = "pyv"
FORWARDING_SECONDS = 10  # a host end not passing frames by then is refused
AUTO_SUBNETS = [(10 << 24) | (89 << 16) | (n << 8) for n in range(256)]  # 10.89.N.0/24


def host_ifname(container_id, n):
    """Host end of a container's veth n: at most 15 characters, says whose."""
    tag = "".join(c for c in container_id if c.isalnum())
    suffix = str(n)
    return (HOST_END_PREFIX + tag)[:15 - len(suffix)] + suffix


class Veth(Kind):
    name = "veth"
    pool_prefix = "br-"
    device_key = "bridge"
    exclusive_device = True
    definition_keys = {"bridge": str}

    # -- before clone ------------------------------------------------------
    def parse_target(self, text):
        return check_ifname(text, "bridge"), None

    def define(self, name, data):
        return check_ifname(data.get("bridge") or name, "bridge"), {}

    def definition(self, net):
        return {"bridge": net.device} if net.device != net.name else {}

    def adhoc(self, paths, req):
        from pyctr.network import config
        if config.exists(paths, req.network):  # veth:NAME of a defined network
            net = config.load(paths, req.network)
            if net.kind != self.name:
                raise PyctrError("network %s is a %s network, not a veth (bridge) network"
                                 % (net.name, net.kind))
            return net
        return config.Network(req.network, self.name, req.network)

    def check_host(self, host, net, req):
        self._devices(host, net)

    def _devices(self, host, net):
        """(bridge or None, uplink or None), refusing what cannot work."""
        br = host.link(net.device)
        if br is not None and br.link_type != "bridge":
            raise PyctrError("%s is not a bridge (it is a %s device)"
                             % (net.device, br.link_type or "physical"))
        uplink = None
        if net.uplink:
            uplink = host.link(net.uplink)
            if uplink is None:
                raise PyctrError("network %s: unknown uplink device %s" % (net.name, net.uplink))
            if uplink.master and (br is None or uplink.master != br.index) \
                    and not _bridge_in_the_making(host, uplink.master, net):
                raise PyctrError("network %s: uplink %s is already enslaved to another device"
                                 % (net.name, net.uplink))
        return br, uplink

    # -- after clone -------------------------------------------------------
    def attach(self, wire, prep, owner):
        host, net, req = wire.host, prep.network, prep.request
        pool = ipam.Pool(wire.paths, net.pool)
        if bridge.pending(pool):  # a crash while making or removing the bridge
            with pool:
                bridge.recover(host, pool)
        br, uplink = self._devices(host, net)
        hname = host_ifname(owner["container"], prep.index)
        owner["host"] = hname
        # Two new ad-hoc bridges must not pick the same free subnet.
        subnets = ipam.Pool(wire.paths, ipam.SUBNETS_LOCK) if br is None and net.subnet is None \
            else ipam.UNLOCKED
        with subnets, pool:
            if br is None:
                br = host.link(net.device)  # made meanwhile by a concurrent start?
            if br is None:
                _plan_new_bridge(host, req, net, uplink)
            else:
                _learn_bridge(host, req, net, br)
            ip, prefix = wire.lease(pool, prep, owner)
            if br is None:
                br = _make_bridge(wire, pool, net, uplink, owner["container"])
        mtu = req.mtu or net.mtu or br.mtu or None
        try:
            host.create_veth(hname, prep.ifname, peer_netns_fd=wire.ns_fd, mtu=mtu,
                             peer_mac=req.mac, master=br.index, up=True)
        except OSError as e:
            if e.errno == EXFULL:
                raise PyctrError("bridge %s is full (%d ports)" % (net.device, BR_MAX_PORTS)) \
                    from e
            if e.errno == errno.EEXIST:
                raise PyctrError("cannot create veth %s: an interface of that name exists"
                                 % hname) from e
            raise PyctrError("cannot create veth %s on bridge %s" % (hname, net.device),
                             e.errno) from e
        wire.undo.push(host.delete_link, name=hname)
        return {"ip": "%s/%d" % (int_ip(ip), prefix),
                "gateway": int_ip(net.gateway) if net.gateway else None,
                "host_ifname": hname, "bridge": net.device, "mtu": mtu,
                "lease": os.path.join(pool.dir, int_ip(ip))}

    def reaches_wire(self, net, host):
        """With an uplink, or any bridge port that is not a pyctr
        container's host end (a NIC an admin put there, a VM's tap)."""
        if net.uplink:
            return True
        br = host.link(net.device)
        return br is not None and any(not name.startswith(HOST_END_PREFIX)
                                      for name in _port_names(host, br))

    def forwarding(self, wire, rec):
        """The host end came up before its peer, without carrier; the
        kernel activates its transmit queue (dropping until then) only when
        its link watcher sees the carrier, later and asynchronously: on a
        busy node more than the probe's wait (answers to both probes were
        dropped so, and the address of a host on the wire was handed out).
        Its operstate turns up in the same step. Reading it usually costs
        one request: the kernel brings a link's state up to date when asked."""
        name, delay = rec["host_ifname"], 0.001
        deadline = time.monotonic() + FORWARDING_SECONDS
        while True:
            link = wire.host.link(name=name)
            if link is None:
                raise PyctrError("veth %s vanished from bridge %s" % (name, rec["bridge"]))
            if link.operstate == IF_OPER_UP:
                return
            if time.monotonic() > deadline:
                raise PyctrError("veth %s on bridge %s does not pass frames after %g s"
                                 % (name, rec["bridge"], FORWARDING_SECONDS))
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def detach(self, host, rec, lease):
        if rec.get("host_ifname"):
            # Even with the container gone, whose netns takes the pair with it:
            # that happens in the background, and a script's next command
            # (`pyctr net rm BR`) must find the bridge free. Gone is enough:
            # the kernel's barrier after it is not waited for (rtnl.py).
            host.delete_link(name=rec["host_ifname"], background=True)

    def gc(self, host, pool, device):
        """A bridge a crash left half made or half removed."""
        return bridge.recover(host, pool)

    def host_side(self, host, device):
        # Only a bridge pyctr made (its alias says so) is pyctr's.
        br = host.link(device)
        return br is not None and br.link_type == "bridge" \
            and (br.alias or "").startswith(bridge.ALIAS)

    def teardown(self, host, pool, net, own_ports=()):
        bridge.recover(host, pool)
        if not self.host_side(host, net.device):
            return None
        br = host.link(net.device)
        uplink = host.link(net.uplink) if net.uplink else None
        others = []
        for port in host.links():
            if port.master != br.index or uplink is not None and port.index == uplink.index:
                continue
            if port.name in own_ports:
                # The caller's container is gone but its netns still being
                # dismantled: no need to wait for the kernel.
                host.delete_link(name=port.name)
            else:
                others.append(port.name)
        if others:
            return "bridge %s still has ports: %s" % (net.device, ", ".join(sorted(others)))
        bridge.delete(host, pool, net.device, uplink)
        return None


KIND = Veth()


def _bridge_in_the_making(host, index, net):
    """Is link `index` a bridge pyctr is making, or was making when it
    crashed (its journal gives the uplink back, under the pool's lock)?
    Under its temporary name, or already under net's own: a concurrent
    start may rename it between the lookup of the bridge and this one
    (two first starts on one network with an uplink failed so)."""
    link = host.link(index=index)
    return link is not None and link.link_type == "bridge" and (
        bridge.is_temp(link.name) or link.name == net.device)


def _plan_new_bridge(host, req, net, uplink):
    """Subnet and gateway of a bridge pyctr is about to make."""
    if net.subnet is None:  # ad-hoc veth:BR
        net.subnet = request_subnet(req) or _free_subnet(host)
        net.gateway = net.subnet.first
    if uplink is not None:
        # The bridge takes over the uplink's address: that is the gateway.
        for _, ip, prefix in host.addrs(uplink.index):
            if ip_int(ip) in net.subnet and net.gateway is None:
                net.gateway = ip_int(ip)
    elif net.gateway is None:
        net.gateway = net.subnet.first


def _learn_bridge(host, req, net, br):
    """Subnet and gateway of an existing bridge (ad-hoc: from its address)."""
    if net.subnet is None:
        net.subnet, net.gateway = device_subnet(host, br, req, "bridge")
    elif net.gateway is None:
        for _, ip, _ in host.addrs(br.index):
            if ip_int(ip) in net.subnet:
                net.gateway = ip_int(ip)
                break


def _free_subnet(host):
    used = [Subnet(ip_int(ip), p) for _, ip, p in host.addrs()]
    used += [Subnet(ip_int(r["dst"]), r["dst_len"]) for r in host.routes() if r["dst_len"]]
    for net in AUTO_SUBNETS:
        candidate = Subnet(net, 24)
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise PyctrError("no free 10.89.N.0/24 subnet for a new bridge: define a network")


def _make_bridge(wire, pool, net, uplink, container_id):
    mtu = net.mtu or (uplink.mtu if uplink else None)
    # A pinned MAC: the uplink's own when there is one (unique on the
    # segment, and neighbours' ARP entries for the moved address stay right).
    mac = uplink.mac if uplink is not None else random_mac()
    try:
        br = bridge.make(wire.host, pool, net, uplink, container_id, mac, mtu)
    except OSError as e:
        raise PyctrError("cannot create bridge %s" % net.device, e.errno) from e
    wire.undo.push(_delete_new_bridge, wire.paths, wire.host, net, uplink, container_id)
    return br


def _delete_new_bridge(paths, host, net, uplink, failed_container):
    """Undo _make_bridge, unless a concurrent start has joined the bridge
    meanwhile: give the uplink its addresses back, drop the bridge."""
    with ipam.Pool(paths, net.pool) as pool:
        if any(lease.alive() and lease.container != failed_container
               for lease in pool.leases().values()):
            return
        bridge.delete(host, pool, net.device, uplink)


def _port_names(host, br):
    """Names of the bridge's ports, on every start of a probing network: so
    at no cost per port where possible. /sys/class/net/BR/brif lists them
    when this /sys shows our network namespace (the same bridge: index and
    MAC); otherwise the kernel's filtered link dump (60 ms at 1,000 ports,
    where a dump of every link took 185)."""
    base = "/sys/class/net/%s/" % br.name
    try:
        with open(base + "ifindex") as f:
            index = int(f.read())
        with open(base + "address") as f:
            mac = f.read().strip()
        if index == br.index and mac == br.mac:
            return os.listdir(base + "brif")
    except (OSError, ValueError):
        pass
    return host.ports(br.index)
