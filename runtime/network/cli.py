"""`pyctr net`: define, list, inspect and remove networks.

    pyctr net create NAME --subnet CIDR [--gateway A] [--range A-B]
                     [--uplink NIC] [--kind veth|macvlan] [--mode MODE]
                     [--mtu N] [--bridge DEV] [--no-host-shim] [--no-probe]
                     [--per-node [--slice N]]
    pyctr net ls
    pyctr net inspect NAME        (JSON)
    pyctr net rm NAME|KIND:TARGET   (KIND:TARGET: what an ad-hoc --net made;
                                   NAME alone also names an ad-hoc veth:NAME)

A definition is a TOML file in the networks directory (config.py); its
bridge (veth) is made on the first container start. `rm` refuses while a
live container uses the network, then removes its host side (cleanup.teardown:
the bridge pyctr made, giving the uplink its addresses back, or the macvlan
host shim) and the definition. `--per-node` gives each node of a cluster
its own slice of the subnet, picked by the node's address on the uplink
(noderange.py): the same command on every node is enough.
"""
import json
import os
import sys

from pyctr.cli import arg_parser, print_table
from pyctr.errors import PyctrError
from pyctr.network import config, ipam, kinds, noderange
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
    p.add_argument("--gateway", help="gateway address (veth: the bridge's own address)")
    p.add_argument("--range", help="addresses to hand out, A-B")
    p.add_argument("--uplink", help="veth: NIC to put in the bridge; macvlan: lower device")
    p.add_argument("--kind", choices=kinds.names(), default=config.DEFAULT_KIND)
    p.add_argument("--mode", help="macvlan mode (default bridge)")
    p.add_argument("--mtu", type=int)
    p.add_argument("--bridge", help="veth: bridge device name (default: NAME)")
    p.add_argument("--no-host-shim", action="store_true",
                   help="macvlan: do not give the host a shim to reach containers")
    p.add_argument("--no-probe", action="store_true",
                   help="do not ARP-probe addresses before use (a segment without other "
                   "hosts)")
    p.add_argument("--per-node", action="store_true",
                   help="each node hands out its own slice of the subnet, picked by its "
                   "address on the uplink (host k: addresses k*N..k*N+N-1)")
    p.add_argument("--slice", type=int, metavar="N",
                   help="with --per-node: addresses per node (default %d)"
                   % noderange.DEFAULT_SLICE)
    a = p.parse_args(argv)
    config.check_name(a.name)
    data = {"kind": a.kind, "subnet": a.subnet}
    for key in ("gateway", "range", "uplink", "mode", "bridge", "mtu"):
        if getattr(a, key):
            data[key] = getattr(a, key)
    if a.no_host_shim:
        data["host_shim"] = False
    if a.no_probe:
        data["probe"] = False
    if a.slice is not None and not a.per_node:
        raise PyctrError("net create: --slice is for --per-node")
    if a.per_node:
        data["slice"] = noderange.DEFAULT_SLICE if a.slice is None else a.slice
    net = config.from_dict(a.name, data, where="the command line")
    if net.slice:
        from pyctr.network.rtnl import Netlink
        with Netlink() as nl:
            noderange.node_slice(nl, net)  # this node has one, or one line now
    if config.exists(paths, a.name):
        raise PyctrError("network %s already exists" % a.name)
    if kinds.get(net.kind).exclusive_device:
        for other in config.names(paths):
            o = config.load(paths, other)
            if o.kind == net.kind and o.device == net.device:
                raise PyctrError("%s %s is already network %s"
                                 % (kinds.get(net.kind).device_key, net.device, other))
    config.save(paths, net)
    print(a.name)
    return 0


def ls(paths, argv):
    p = arg_parser("net ls", "List networks (a user: those the policy grants them).")
    p.parse_args(argv)
    if paths.rootless:
        from pyctr.network import rootless
        print_table(rootless.allowed_rows(paths))
        return 0
    rows = [("NAME", "KIND", "DEVICE", "SUBNET", "RANGE", "IN USE")]
    for name in config.names(paths):
        try:
            net = config.load(paths, name)
        except PyctrError as e:
            rows.append((name, "?", "?", str(e), "", ""))
            continue
        d = net.to_dict()
        live = [lease for lease in ipam.Pool(paths, net.pool).leases().values()
                if lease.holder == "container" and lease.alive()]
        rows.append((name, net.kind, net.device, d["subnet"],
                     d.get("range") or ("per node, %d" % net.slice if net.slice else "-"),
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
    from pyctr.network.wiring import conflict_seconds
    noted = ipam.Pool(paths, net.pool).conflicts(conflict_seconds(net))
    out["conflicts"] = [int_ip(ip) for ip in sorted(noted)]  # found in use on the wire
    from pyctr.network.rtnl import Netlink
    with Netlink() as nl:
        if net.slice:
            try:
                out["node_slice"] = noderange.node_slice(nl, net).to_dict()
            except PyctrError as e:
                out["node_slice"] = {"error": str(e)}
        link = nl.link(net.device)
        out["device"] = None if link is None else {
            "name": link.name, "link_type": link.link_type, "up": link.up, "mtu": link.mtu,
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
    """NAME: a definition and its host side. KIND:TARGET (veth:br0,
    macvlan:eth1): the host side an ad-hoc --net made on demand (a bridge,
    a host shim), which stays between containers, like a defined network's."""
    from pyctr.network import parse
    from pyctr.network.cleanup import teardown
    adhoc = ":" in name
    if not adhoc and not config.exists(paths, name) and os.path.isdir(
            ipam.Pool(paths, kinds.get("veth").pool(name)).dir):
        # No definition NAME, but this root has used the ad-hoc veth:NAME:
        # NAME is the bridge that --net=veth:NAME made.
        name, adhoc = "veth:" + name, True
    if adhoc:
        req = parse(name)
        if req.form not in kinds.names():
            raise PyctrError("net rm %s: not a network (NAME, or KIND:TARGET of %s)"
                             % (name, ", ".join(kinds.names())))
        net = kinds.get(req.form).adhoc(paths, req)
    else:
        net = config.load(paths, name)
    why = teardown(paths, net.kind, net.device, net.uplink)
    if why:
        raise PyctrError("network %s: %s" % (name, why))
    if not adhoc:
        os.unlink(config.path(paths, name))
