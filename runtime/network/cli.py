"""`pyctr net`: define, list, inspect and remove networks.

    pyctr net create NAME --subnet CIDR [--gateway A] [--range A-B]
                     [--uplink NIC] [--kind bridge|macvlan] [--mode MODE]
                     [--mtu N] [--bridge DEV] [--no-host-shim]
    pyctr net ls
    pyctr net inspect NAME        (JSON)
    pyctr net rm NAME

A definition is a TOML file in the networks directory (config.py); its
bridge is made on the first container start. `rm` refuses while a live
container uses the network, then removes the bridge pyctr made (giving the
uplink its addresses back) or the host shim, and the definition.
"""
import json
import os
import sys

from pyctr.cli import arg_parser, print_table
from pyctr.errors import PyctrError
from pyctr.network import config, ipam
from pyctr.network.addr import int_ip

USAGE = "usage: pyctr net {create,ls,inspect,rm} ..."


def command(paths, argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE + "\n\n" + __doc__.split("\n\n")[1])
        return 0
    verb, rest = argv[0], argv[1:]
    fn = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm,
          "remove": rm}.get(verb)
    if fn is None:
        raise PyctrError("net: unknown command %r (create, ls, inspect, rm)" % verb)
    return fn(paths, rest)


def create(paths, argv):
    p = arg_parser("net create", "Define a network (a TOML file in %s)." % paths.networks)
    p.add_argument("name")
    p.add_argument("--subnet", required=True, help="CIDR, e.g. 10.77.0.0/24")
    p.add_argument("--gateway", help="gateway address (bridge: its own address)")
    p.add_argument("--range", help="addresses to hand out, A-B")
    p.add_argument("--uplink", help="bridge: NIC to put in the bridge; macvlan: lower device")
    p.add_argument("--kind", choices=config.KINDS, default="bridge")
    p.add_argument("--mode", choices=config.MODES, help="macvlan mode (default bridge)")
    p.add_argument("--mtu", type=int)
    p.add_argument("--bridge", help="bridge device name (default: NAME)")
    p.add_argument("--no-host-shim", action="store_true",
                   help="macvlan: do not give the host a shim to reach containers")
    a = p.parse_args(argv)
    from pyctr.network.request import _check_network_name
    _check_network_name(a.name)
    data = {"kind": a.kind, "subnet": a.subnet}
    for key in ("gateway", "range", "uplink", "mode", "bridge"):
        if getattr(a, key):
            data[key] = getattr(a, key)
    if a.mtu:
        data["mtu"] = a.mtu
    if a.kind == "macvlan":
        data["host_shim"] = not a.no_host_shim
        if a.bridge:
            raise PyctrError("net create: --bridge is for bridge networks")
    elif a.no_host_shim:
        raise PyctrError("net create: --no-host-shim is for macvlan networks")
    net = config.from_dict(a.name, data, where="the command line")
    if config.exists(paths, a.name):
        raise PyctrError("network %s already exists" % a.name)
    for other in config.names(paths):
        o = config.load(paths, other)
        if o.kind == net.kind and o.device == net.device and net.kind == "bridge":
            raise PyctrError("bridge %s is already network %s" % (net.device, other))
    config.save(paths, net)
    print(a.name)
    return 0


def ls(paths, argv):
    p = arg_parser("net ls", "List networks.")
    p.parse_args(argv)
    rows = [("NAME", "KIND", "DEVICE", "SUBNET", "RANGE", "IN USE")]
    for name in config.names(paths):
        try:
            net = config.load(paths, name)
        except PyctrError as e:
            rows.append((name, "?", "?", str(e), "", ""))
            continue
        d = net.to_dict()
        live = [lease for lease in ipam.Pool(paths, net.pool).leases().values()
                if lease.alive() and not lease.shim]
        rows.append((name, net.kind, net.device, d["subnet"], d.get("range", "-"),
                     str(len(live))))
    print_table(rows)
    return 0


def inspect(paths, argv):
    p = arg_parser("net inspect", "Show a network as JSON.")
    p.add_argument("name")
    a = p.parse_args(argv)
    net = config.load(paths, a.name)
    out = net.to_dict()
    out["file"] = config.path(paths, a.name)
    out["pool"] = net.pool
    out["leases"] = [
        {"ip": int_ip(ip), "owner": lease.describe(), "alive": lease.alive(),
         "ifname": lease.ifname, "host_ifname": lease.host_ifname}
        for ip, lease in sorted(ipam.Pool(paths, net.pool).leases().items())]
    from pyctr.network.rtnl import Netlink
    with Netlink() as nl:
        link = nl.link(net.device)
        out["device"] = None if link is None else {
            "name": link.name, "kind": link.kind, "up": link.up, "mtu": link.mtu,
            "mac": link.mac, "addresses": ["%s/%d" % (ip, pfx)
                                           for _, ip, pfx in nl.addrs(link.index)]}
    json.dump(out, sys.stdout, indent=2)
    print()
    return 0


def rm(paths, argv):
    p = arg_parser("net rm", "Remove a network: its definition, and the bridge or host shim "
                   "pyctr made for it.")
    p.add_argument("name", nargs="+")
    a = p.parse_args(argv)
    for name in a.name:
        _rm(paths, name)
        print(name)
    return 0


def _rm(paths, name):
    from pyctr.network.wiring import BRIDGE_ALIAS, delete_bridge, remove_shim_if_unused, \
        shim_ifname
    from pyctr.network.rtnl import Netlink
    net = config.load(paths, name)
    with ipam.Pool(paths, net.pool) as pool, Netlink() as nl:
        live = [lease for lease in pool.leases().values() if lease.alive() and not lease.shim]
        if live:
            raise PyctrError("network %s is in use by %s" % (
                name, ", ".join(sorted({lease.describe() for lease in live}))))
        pool.reap()
        if net.kind == "bridge":
            br = nl.link(net.device)
            # Only a bridge pyctr made (its alias says so) is pyctr's to remove.
            if br is not None and br.kind == "bridge" \
                    and (br.alias or "").startswith(BRIDGE_ALIAS):
                ports = [l for l in nl.links() if l.master == br.index]
                uplink = nl.link(net.uplink) if net.uplink else None
                others = [l.name for l in ports if uplink is None or l.index != uplink.index]
                if others:
                    raise PyctrError("bridge %s still has ports: %s" % (net.device,
                                                                        ", ".join(others)))
                delete_bridge(nl, net.device, uplink)
        else:
            remove_shim_if_unused(nl, pool, shim_ifname(net.device))
    os.unlink(config.path(paths, name))
