"""Network kinds: how a container's interface reaches beyond its netns.

    veth      a veth pair, the host end on a Linux bridge (which may hold the
              node's NIC as its uplink)
    macvlan   a macvlan on the node's NIC in one of the kernel's five modes,
              with a host shim so that the node reaches its containers

A kind's name is the one word for it everywhere: the --net form
(`--net=veth:br0`), the `kind` of a network definition, the "kind" of an
attach record. Each kind is one module that defines KIND, an instance of a
Kind subclass; REGISTRY maps the name to the module, imported on first use.
A new kind (vxlan, ipvlan) is one new module and one line in REGISTRY.

What a kind answers, in the order of a container's life:

    parse_target(text)        -> (device, mode)  the text after `KIND:`
    define(name, data)        -> (device, options)  a definition file's keys
                              (definition(net), describe(net): the way back)
    adhoc(paths, req)         -> Network  for `--net=KIND:...` (no definition)
    check(req, net)           pure checks of a request against its network
    check_host(host, net, req)  read-only checks of the host's devices
      (the five above run in network.prepare(), before clone)
    attach(wire, prep, owner) -> record  devices made in the container's
                              netns, each step's undo pushed on wire.undo;
                              the address leased with wire.lease()
    reaches_wire(net, host)   does traffic of this network leave the node
                              (then each address is ARP-probed first: arp.py)
    forwarding(wire, rec)     returns once frames pass between the container's
                              interface, just brought up, and the wire (the
                              probe's answer must not be dropped on the way)
    addressed(wire, prep, rec)  host-side parts that need the final address
                              (it may change while probing)
    detach(host, rec, lease)  host-side parts of one record, when it ends
                              (lease: None if the address is no longer ours)
    gc(host, pool, device)    -> [removed]  host-side leftovers of one pool
    host_side(host, device)   is pyctr's host side of the pool's network there
                              (a bridge it made, a host shim)? If not, gc
                              removes the pool once it holds no lease
    teardown(host, pool, net, own_ports) -> None, or why it stays
      (the host side of a network: `pyctr net rm`, `pyctr cluster down`)
"""
from pyctr.errors import PyctrError

REGISTRY = {
    "veth": "pyctr.network.kinds.veth",
    "macvlan": "pyctr.network.kinds.macvlan",
}
# Request options beyond ip, mac, mtu and route, and how a request shows it
# set them (NetworkRequest defaults: mode None, source_macs [], host_shim True).
KIND_OPTIONS = {"mode": lambda req: req.mode is not None,
                "source_macs": lambda req: bool(req.source_macs),
                "host_shim": lambda req: req.host_shim is False}


def names():
    return tuple(REGISTRY)


def get(name):
    """The Kind called `name`; PyctrError for an unknown one."""
    module = REGISTRY.get(name)
    if module is None:
        raise PyctrError("unknown network kind %r (%s)" % (name, ", ".join(REGISTRY)))
    import importlib
    return importlib.import_module(module).KIND


def by_pool(key):
    """(Kind, device) of an IPAM pool key, or (None, None)."""
    for name in REGISTRY:
        kind = get(name)
        if key.startswith(kind.pool_prefix):
            return kind, key[len(kind.pool_prefix):]
    return None, None


def request_subnet(req):
    """The subnet of a request's ip=A.B.C.D/P, or None."""
    if req.ip and "/" in req.ip:
        from pyctr.network.addr import Subnet, ip_int
        ip, prefix = req.ip.split("/")
        return Subnet(ip_int(ip), int(prefix))
    return None


def device_subnet(host, link, req, what):
    """An ad-hoc network's subnet: that of the device's first IPv4 address
    (returned too, as an int), else the request's ip=A.B.C.D/P."""
    from pyctr.network.addr import Subnet, ip_int
    addrs = host.addrs(link.index)
    if addrs:
        _, ip, prefix = addrs[0]
        return Subnet(ip_int(ip), prefix), ip_int(ip)
    subnet = request_subnet(req)
    if subnet is None:
        raise PyctrError("%s %s has no IPv4 address: give ip=A.B.C.D/P or define a network "
                         "(pyctr net create)" % (what, link.name))
    return subnet, None


class Kind:
    name = None          # the registry key
    pool_prefix = None   # an IPAM pool is one L2 device: pool_prefix + device
    device_key = None    # the key that names the device in to_dict() and records
    exclusive_device = False  # True: the device belongs to one network (a bridge)
    options = ()         # which KIND_OPTIONS apply to this kind
    definition_keys = {}  # {key: type} of a definition file beyond the common ones

    def pool(self, device):
        return self.pool_prefix + device

    # -- before clone ------------------------------------------------------
    def parse_target(self, text):
        raise NotImplementedError

    def define(self, name, data):
        raise NotImplementedError

    def adhoc(self, paths, req):
        raise NotImplementedError

    def check(self, req, net):
        """Options the request set that this kind does not take are refused.
        net is None while parsing `--net=KIND:...` (no definition read yet)."""
        given = [opt for opt, is_set in KIND_OPTIONS.items()
                 if is_set(req) and opt not in self.options]
        if given:
            what = net.name if net is not None else "%s:%s" % (req.form, req.network)
            raise PyctrError("network %s is a %s network: %s %s not apply" % (
                what, self.name, " and ".join(given), "do" if len(given) > 1 else "does"))

    def check_host(self, host, net, req):
        pass

    def describe(self, net):
        """The kind's own entries of Network.to_dict()."""
        return {}

    def definition(self, net):
        """The kind's own keys of the network's TOML file."""
        return {}

    # -- after clone -------------------------------------------------------
    def attach(self, wire, prep, owner):
        raise NotImplementedError

    def reaches_wire(self, net, host):
        """Can other hosts hold addresses of net's subnet? A kind that does
        not know says yes: a needless probe costs milliseconds, a taken
        address costs both hosts their traffic."""
        return True

    def forwarding(self, wire, rec):
        pass

    def addressed(self, wire, prep, rec):
        pass

    def detach(self, host, rec, alive):
        pass

    def gc(self, host, pool, device):
        return []

    def host_side(self, host, device):
        raise NotImplementedError

    def teardown(self, host, pool, net, own_ports=()):
        raise NotImplementedError
