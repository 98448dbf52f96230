"""What `cluster up` decides before any node starts: names, which nodes
run here and how the others are reached, the network the nodes' --net
resolves to and the node addresses in it."""
import shlex

from pyctr.errors import PyctrError

HOST_BASE = 10


def check_name(name):
    ok = name[:1].isalnum() and all(c.isalnum() or c in "_.-" for c in name)
    if not ok or len(name) > 40:
        raise PyctrError("cluster: invalid name %r: use letters, digits, _ . - (max 40)" % name)
    return name


def node_name(name, i):
    return "%s-%d" % (name, i)


def parse_indices(text, nodes, what):
    """"0,2-3" -> [0, 2, 3]; every index must be a node of the cluster."""
    out = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise PyctrError("cluster up: %s: malformed node list %r (e.g. 0,2-3)" % (what, text))
        lo, hi = int(lo), int(hi) if dash else int(lo)
        if lo > hi or hi >= nodes:
            raise PyctrError("cluster up: %s: nodes %s are not in 0..%d" % (what, part, nodes - 1))
        out += [i for i in range(lo, hi + 1) if i not in out]
    return sorted(out)


def parse_remote(items, nodes, name):
    """--remote LIST=COMMAND -> {index: argv prefix}; {node} in COMMAND
    becomes the node's container name."""
    routes = {}
    for item in items or []:
        spec, eq, cmd = item.partition("=")
        words = shlex.split(cmd) if eq else []
        if not words:
            raise PyctrError("cluster up: --remote %r: expected LIST=COMMAND, e.g. "
                             "1='ssh hostB pyctr exec {node}'" % item)
        for i in parse_indices(spec, nodes, "--remote"):
            routes[i] = [w.replace("{node}", node_name(name, i)) for w in words]
    return routes


class NetPlan:
    """What the nodes' --net resolves to, known before any node starts."""

    def __init__(self, text, net, subnet, host_side):
        self.text = text            # the --net value given to each node (plus ip=)
        self.kind = net.kind        # "veth" or "macvlan" (pyctr.network.kinds)
        self.device = net.device    # the bridge, or the lower device
        self.subnet = subnet        # network.addr.Subnet
        self.host_side = host_side  # the host's way in: the bridge, or the macvlan shim
        self.uplink = net.uplink if net.kind == "veth" else None  # the NIC in the bridge
        self.pool = net.pool
        self.host_side_existed = True


def prepare_network(paths, req):
    """The network a --net request names (a definition, or ad-hoc
    veth:BRIDGE / macvlan:LOWER), resolved and checked as each node's
    attach will (network.prepare: the kind's checks of the request and of
    the host's devices). The one call into the network resolver."""
    from pyctr import network
    return network.prepare(paths, [req])[0]


def plan_network(paths, text, subnet_text):
    """Resolve --net (and --subnet) the way the nodes' attach will, so that
    addresses can be fixed in advance; refuse setups where this host could
    not reach its nodes (no bridge address, no macvlan shim). Reads the
    host's devices, creates nothing."""
    from pyctr import network
    from pyctr.network.addr import Subnet
    from pyctr.network.request import NO_DEVICES
    from pyctr.network.rtnl import Netlink
    req = network.parse(text)
    if req.form in NO_DEVICES:
        raise PyctrError("cluster up: --net=%s: the nodes need a network of their own "
                         "(veth:BRIDGE, macvlan:LOWER or a network name)" % text)
    if req.ip:
        raise PyctrError("cluster up: --net=%s: no ip= here, node addresses are fixed "
                         "(subnet + --host-base + node index)" % text)
    if paths.rootless:  # a user's nodes: on networks the administrator granted
        from pyctr.network import rootless
        rootless.check([req])
    want = Subnet.parse(subnet_text) if subnet_text else None
    prepared = prepare_network(paths, req)
    net, req = prepared.network, prepared.request
    if net.kind == "macvlan":
        from pyctr.network.kinds.macvlan import shim_ifname
        _need_shim(text, req.mode or net.options.get("mode"),
                   net.options.get("host_shim", True) and req.host_shim is not False)
        host_side, what = shim_ifname(net.device), "lower device"
    elif net.kind == "veth":
        host_side, what = net.device, "bridge"
    else:
        raise PyctrError("cluster up: --net=%s: a %s network gives this host no way to its "
                         "nodes (use veth or macvlan)" % (text, net.kind))
    with Netlink() as nl:
        if net.subnet is not None:
            subnet = _agree(want, net.subnet, "network %s" % net.name)
        else:
            subnet = _subnet_of(nl, nl.link(net.device), "%s %s" % (what, net.device),
                                net.device, want)
        plan = NetPlan(text, net, subnet, host_side)
        plan.host_side_existed = nl.link(host_side) is not None
    return plan


def _subnet_of(nl, device, what, name, want):
    """An ad-hoc network's subnet: the bridge's or lower device's address,
    or --subnet for a bridge pyctr will make (or a lower device without one)."""
    from pyctr.network.addr import Subnet, ip_int
    addrs = nl.addrs(device.index) if device is not None else []
    if addrs:
        _, ip, prefix = addrs[0]
        return _agree(want, Subnet(ip_int(ip), prefix), what)
    bridge = device is not None and device.link_type == "bridge"
    if want is not None and not bridge:
        return want
    if device is None:
        raise PyctrError("cluster up: %s does not exist: give --subnet CIDR (pyctr makes %s "
                         "with the subnet's first address)" % (what, name))
    if bridge:
        raise PyctrError("cluster up: %s has no IPv4 address: this host could not reach its "
                         "nodes (give it one, or name a new bridge with --subnet)" % what)
    raise PyctrError("cluster up: %s has no IPv4 address: give --subnet CIDR" % what)


def _agree(want, found, where):
    if want is not None and (want.net, want.prefix) != (found.net, found.prefix):
        raise PyctrError("cluster up: --subnet %s does not match %s's %s" % (want, where, found))
    return found


def _need_shim(text, mode, shim):
    if (mode or "bridge") != "bridge":
        raise PyctrError("cluster up: --net=%s: macvlan mode %s: the host gets no shim, so "
                         "mpirun here could not reach the nodes (use bridge mode)" % (text, mode))
    if not shim:
        raise PyctrError("cluster up: --net=%s: without a host shim mpirun here could not "
                         "reach the nodes" % text)


def node_addresses(subnet, base, nodes):
    from pyctr.network.addr import int_ip
    out = []
    for i in range(nodes):
        ip = subnet.net + base + i
        if not subnet.host(ip):
            raise PyctrError("cluster up: subnet %s has no room for %d nodes from host "
                             "number %d (--host-base)" % (subnet, nodes, base))
        out.append(int_ip(ip))
    return out
