"""Per-node slices of a network's addresses: the same `pyctr net create
NAME --subnet CIDR --uplink NIC --per-node` on every node of a cluster, and
no two nodes on the wire hand out the same address, with no server.

The node's own address on the uplink (in the subnet) picks its slice: with
slices of N addresses, host indices 1..N-1 of the subnet are the nodes'
own addresses (and gateways), and the node with host index k hands out
host indices k*N .. k*N+N-1 (the broadcast address excepted). A /24 with
N = 16 serves nodes .1-.15 with 16 addresses each (.16-.31 for node .1,
.32-.47 for node .2, ...). The slice is worked out where it is used, from
the node's addresses at that moment, so one definition file fits every
node. The ARP probe (arp.py) stays the safety net against hosts that do
not follow the scheme.
"""
from pyctr.errors import PyctrError
from pyctr.network.addr import int_ip, ip_int

DEFAULT_SLICE = 16


class Slice:
    """One node's part of a network: its address, host index and range."""
    __slots__ = ("node_ip", "index", "first", "last")

    def __init__(self, node_ip, index, first, last):
        self.node_ip, self.index, self.first, self.last = node_ip, index, first, last

    def to_dict(self):
        return {"node": int_ip(self.node_ip), "index": self.index,
                "range": "%s-%s" % (int_ip(self.first), int_ip(self.last))}


def check_size(name, size, subnet, where):
    """A slice size the subnet can hold at least one node's slice of."""
    total = subnet.broadcast - subnet.net + 1
    if size < 2 or 2 * size > total:
        raise PyctrError("network %s: slice must be 2..%d for subnet %s, not %d in %s"
                         % (name, total // 2, subnet, size, where))
    return size


def node_address(host, net):
    """The node's own address in net's subnet: on the uplink, or on the
    device (a veth network's bridge holds the uplink's address once made)."""
    found = set()
    for device in {net.uplink, net.device} - {None}:
        link = host.link(device)
        if link is None:
            continue
        found |= {ip_int(ip) for _, ip, _ in host.addrs(link.index)
                  if ip_int(ip) in net.subnet}
    if not found:
        raise PyctrError("network %s: this node has no address in %s on %s, which picks its "
                         "per-node slice" % (net.name, net.subnet, net.uplink))
    return min(found)  # several: the lowest, so the choice does not change by order


def node_slice(host, net):
    """This node's Slice of net (net.slice addresses)."""
    size, subnet = net.slice, net.subnet
    ip = node_address(host, net)
    index = ip - subnet.net
    if index >= size:
        raise PyctrError("network %s: node address %s is host %d of %s; per-node slices of %d "
                         "need node addresses of host 1..%d"
                         % (net.name, int_ip(ip), index, subnet, size, size - 1))
    first = subnet.net + index * size
    last = min(first + size - 1, subnet.last)
    if first > last:
        raise PyctrError("network %s: the slice of node %s (host %d, %d addresses each) falls "
                         "outside %s" % (net.name, int_ip(ip), index, size, subnet))
    return Slice(ip, index, first, last)
