"""macvlan: a macvlan on the node's NIC (the lower device), born in the
container's netns, in one of the kernel's modes (rtnl.MACVLAN_MODES):

    bridge    macvlans on one lower reach each other directly (the default)
    private   they never reach each other
    vepa      they reach each other only through a switch that hairpins
    passthru  one macvlan takes the lower alone (and may set its MAC)
    source    only frames from the listed source MACs come in

The lower device itself never sees its macvlans' traffic. In bridge mode
the host therefore gets its own macvlan on the lower, the host shim
(pys-<lower>), with a /32 address and a /32 route to each container, so
that the node reaches its containers. Once made, the shim stays, like a
bridge made on demand, until `pyctr net rm NAME` (or `macvlan:LOWER`) finds
it unused: deleting a device costs an RCU grace period (~15 ms here), too
much to pay at every container exit. `pyctr gc` removes only what a crash
left: routes to containers that are gone.

Record keys: lower, mode, shim, shim_ip, host_ifname (None).
"""
import errno
import os

from pyctr.errors import PyctrError
from pyctr.network import ipam
from pyctr.network.addr import check_ifname, int_ip, ip_int
from pyctr.network.kinds import Kind, device_subnet
from pyctr.network.rtnl import MACVLAN_MODES

MODES = tuple(MACVLAN_MODES)  # the default, bridge, first
DEFAULT_MODE = MODES[0]


def check_mode(mode):
    if mode not in MODES:
        raise PyctrError("unknown macvlan mode %r (%s)" % (mode, ", ".join(MODES)))
    return mode


def shim_ifname(lower):
    if len(lower) <= 11:
        return "pys-" + lower
    import zlib
    return "pys-%s%04x" % (lower[:7], zlib.crc32(lower.encode()) & 0xFFFF)


class Macvlan(Kind):
    name = "macvlan"
    pool_prefix = "mv-"
    device_key = "lower"
    options = ("mode", "source_macs", "host_shim")
    definition_keys = {"mode": str, "host_shim": bool}

    # -- before clone ------------------------------------------------------
    def parse_target(self, text):
        lower, _, mode = text.partition(":")
        return check_ifname(lower, "lower device"), check_mode(mode) if mode else None

    def define(self, name, data):
        if not data.get("uplink"):
            raise PyctrError("network %s: a macvlan network needs an uplink (its lower device)"
                             % name)
        mode = data.get("mode")
        if mode is not None:
            check_mode(mode)
        return data["uplink"], {"mode": mode, "host_shim": data.get("host_shim", True)}

    def definition(self, net):
        d = {"mode": net.options["mode"]} if net.options.get("mode") else {}
        d["host_shim"] = net.options.get("host_shim", True)
        return d

    def describe(self, net):
        return {"mode": net.options.get("mode") or DEFAULT_MODE,
                "host_shim": net.options.get("host_shim", True)}

    def adhoc(self, paths, req):
        from pyctr.network.config import Network
        return Network("macvlan:" + req.network, self.name, req.network)

    def check(self, req, net):
        super().check(req, net)
        if req.mode is not None:
            check_mode(req.mode)
        mode = self.mode(req, net)
        if mode == "source" and not req.source_macs:
            raise PyctrError("macvlan mode source needs source_macs=MAC1|MAC2")
        if req.source_macs and mode != "source":
            raise PyctrError("source_macs only apply to macvlan mode source")

    def check_host(self, host, net, req):
        too_large = _mtu_too_large(_lower(host, net), req.mtu or net.mtu)
        if too_large:
            raise PyctrError(too_large)

    def mode(self, req, net):
        """The request's mode, else its network's, else the default."""
        return req.mode or (net.options.get("mode") if net is not None else None) \
            or DEFAULT_MODE

    # -- after clone -------------------------------------------------------
    def attach(self, wire, prep, owner):
        host, net, req = wire.host, prep.network, prep.request
        lower = _lower(host, net)
        mode = self.mode(req, net)
        shim = net.options.get("host_shim", True) and req.host_shim is not False \
            and mode == "bridge"
        if net.subnet is None:
            _learn_lower(host, req, net, lower)
        owner["mode"] = mode
        pool = ipam.Pool(wire.paths, net.pool)
        shim_rec = None
        with pool:
            _check_passthru(pool, net.device, mode)
            ip, prefix = wire.lease(pool, prep, owner)
            if mode == "passthru":
                _note_passthru(pool, ip)
            if shim:
                shim_rec = _ensure_shim(wire, pool, net, lower, wire.avoided(pool, net) | {ip},
                                        owner["container"])
        try:
            host.create_macvlan(prep.ifname, lower.index, mode, netns_fd=wire.ns_fd,
                                mtu=req.mtu or net.mtu, mac=req.mac,
                                source_macs=req.source_macs if mode == "source" else ())
        except OSError as e:
            too_large = _mtu_too_large(lower, req.mtu or net.mtu)
            if e.errno == errno.EINVAL and too_large:
                raise PyctrError(too_large) from e
            if e.errno in (errno.EINVAL, errno.EBUSY):
                raise PyctrError("the kernel refused a %s macvlan on %s (held by a passthru "
                                 "macvlan, or not an Ethernet device?)" % (mode, net.device),
                                 e.errno) from e
            raise PyctrError("cannot create macvlan on %s" % net.device, e.errno) from e
        wire.undo.push(wire.container.delete_link, name=prep.ifname)
        rec = {"ip": "%s/%d" % (int_ip(ip), prefix),
               "gateway": int_ip(net.gateway) if net.gateway else None,
               "host_ifname": None, "lower": net.device, "mode": mode, "mtu": req.mtu or net.mtu,
               "lease": os.path.join(pool.dir, int_ip(ip)), "shim": None}
        if shim_rec:
            name, shim_ip = shim_rec
            rec.update(shim=name, shim_ip=shim_ip)
        return rec

    def addressed(self, wire, prep, rec):
        """The host's /32 route to the container through the shim."""
        if rec.get("shim"):
            ip = rec["ip"].split("/")[0]
            shim = wire.host.link(rec["shim"])
            if shim is None:
                raise PyctrError("host shim %s vanished" % rec["shim"])
            wire.host.add_route(ip, 32, oif=shim.index, src=rec["shim_ip"], replace=True)
            wire.undo.push(wire.host.del_route, ip, 32, oif=shim.index)

    def detach(self, host, rec, lease):
        if lease is not None and rec.get("shim"):
            # The shim itself stays, like a bridge: the network's presence on
            # the host (gc or net rm remove it once unused).
            shim = host.link(rec["shim"])
            if shim is not None:
                host.del_route(rec["ip"].split("/")[0], 32, oif=shim.index)

    def gc(self, host, pool, device):
        """A shim a crash left without its address, and routes via the shim
        to containers that are gone (a whole shim is the network's presence
        on the host, kept as a normal exit keeps it)."""
        removed = []
        name = shim_ifname(device)
        link = host.link(name)
        if link is None:
            return removed
        if not host.addrs(link.index):  # made under this lock, so its maker died
            if remove_shim_if_unused(host, pool, name):
                removed.append("unfinished host shim %s" % name)
            return removed
        live = {ip for ip, lease in pool.leases().items() if lease.holder == "container"}
        for r in host.routes():
            if r["oif"] == link.index and r["dst_len"] == 32 and ip_int(r["dst"]) not in live:
                if host.del_route(r["dst"], 32, oif=link.index):
                    removed.append("route %s/32 via host shim %s" % (r["dst"], link.name))
        return removed

    def host_side(self, host, device):
        return host.link(shim_ifname(device)) is not None

    def teardown(self, host, pool, net, own_ports=()):
        remove_shim_if_unused(host, pool, shim_ifname(net.device))
        return None


KIND = Macvlan()


def _lower(host, net):
    """The lower device, refused if missing or a port of another device."""
    lower = host.link(net.device)
    if lower is None:
        raise PyctrError("unknown lower device %s" % net.device)
    if lower.master:
        master = host.link(index=lower.master)
        raise PyctrError("lower device %s is a port of %s %s: a macvlan needs a device of "
                         "its own" % (net.device, master.link_type if master else "device",
                                      master.name if master else lower.master))
    return lower


def _mtu_too_large(lower, mtu):
    """Why a macvlan cannot have this MTU on lower (the kernel says EINVAL), or None."""
    if mtu and lower.mtu and mtu > lower.mtu:
        return "mtu %d is larger than lower device %s's %d" % (mtu, lower.name, lower.mtu)
    return None


def _learn_lower(host, req, net, lower):
    """Ad-hoc macvlan: the lower device's subnet, its default gateway."""
    net.subnet, _ = device_subnet(host, lower, req, "lower device")
    for r in host.routes():
        if r["dst_len"] == 0 and r["gateway"] and r["oif"] == lower.index:
            gw = ip_int(r["gateway"])
            if gw in net.subnet:
                net.gateway = gw
                break


PASSTHRU_NOTE = ".passthru"  # in a macvlan pool: the address its passthru container holds


def _check_passthru(pool, lower, mode):
    """passthru takes the lower device alone: no second one, no other
    macvlan beside it (the kernel says only EINVAL). Every macvlan start
    asks, so the passthru holder is found through a note, not by reading
    every lease; only a passthru start reads them all."""
    note = os.path.join(pool.dir, PASSTHRU_NOTE)
    try:
        with open(note) as f:
            holder = pool.read(f.read().strip())
    except FileNotFoundError:
        holder = None
    if holder is not None and holder.alive() and holder.mode == "passthru":
        raise PyctrError("lower device %s is held by a passthru macvlan (%s)"
                         % (lower, holder.describe()))
    if mode != "passthru":
        return
    for lease in pool.leases().values():
        if lease.alive() and lease.holder == "container":
            raise PyctrError("macvlan passthru needs %s alone, but %s has a macvlan on it"
                             % (lower, lease.describe()))


def _note_passthru(pool, ip):
    with open(os.path.join(pool.dir, PASSTHRU_NOTE), "w") as f:
        f.write(int_ip(ip))


def _ensure_shim(wire, pool, net, lower, exclude, container_id):
    """The host's own macvlan (bridge mode) on the lower device: the
    lower itself never sees its macvlans' traffic, the shim does.
    Returns (name, address). Called with the pool locked."""
    host = wire.host
    name = shim_ifname(net.device)
    link = host.link(name)
    if link is not None:
        addrs = host.addrs(link.index)
        if addrs:
            return name, addrs[0][1]
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
        ip, _ = pool.allocate(*net.candidates(host), {"shim": name}, subnet=net.subnet,
                              exclude=exclude | ({net.gateway} if net.gateway else set()))
        leased = True
    wire.undo.push(_remove_shim_if_unused, wire.paths, host, net.pool, name, container_id)
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
                         e.errno) from e
    return name, int_ip(ip)


def _remove_shim_if_unused(paths, host, pool_key, name, failed_container):
    with ipam.Pool(paths, pool_key) as pool:
        remove_shim_if_unused(host, pool, name, ignore=failed_container)


def remove_shim_if_unused(host, pool, name, ignore=None):
    """Called with the pool locked. True if the shim was removed. The
    container `ignore` (one whose attach failed) does not count as a user."""
    leases = pool.leases().values()
    if any(lease.holder == "container" and lease.alive() and lease.container != ignore
           for lease in leases):
        return False
    host.delete_link(name=name, background=True)
    for lease in leases:
        if lease.shim == name:
            pool.release(lease.ip, shim=name)
    return True
