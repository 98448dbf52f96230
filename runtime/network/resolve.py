"""Resolving a container's network requests before clone: what can be known
without any device or child.

prepare() turns the spec's requests into Prepared items: each request
checked and normalised (a copy: the spec stays as given), its network
resolved (a definition file read, or the ad-hoc `KIND:TARGET`), its kind's
checks of the request against the network, the requested address against a
defined subnet, and read-only looks at the host's devices (the lower device
exists, the bridge's name is not a device of another type). A bad MAC,
a malformed network file or a missing NIC thus fails with one line before
any device, state entry or child exists. attach() (wiring.py) takes the
Prepared items; it checks the host again, since devices may change between
the two.
"""
from pyctr.errors import PyctrError
from pyctr.network import config, kinds
from pyctr.network.addr import int_ip, ip_int


class Prepared:
    """One request ready to attach as the container's interface number
    `index` (ifname eth0, eth1, ...)."""
    __slots__ = ("request", "network", "kind", "index")

    def __init__(self, request, network, kind, index):
        self.request, self.network, self.kind, self.index = request, network, kind, index

    @property
    def ifname(self):
        return "eth%d" % self.index

    def __repr__(self):
        return "Prepared(%s %s %s)" % (self.ifname, self.kind.name, self.network.name)


def prepare(paths, requests, kernel=None):
    from pyctr.network.request import NO_DEVICES, check, normalised
    out = []
    for given in requests:
        if given.form in NO_DEVICES:
            continue
        req = normalised(given)
        net = resolve(paths, req)
        check(req, net)
        if net.subnet is not None:
            requested_ip(req, net)
        out.append(Prepared(req, net, kinds.get(net.kind), len(out)))
    if out:
        if kernel is None:
            from pyctr.network.wiring import Kernel
            kernel = Kernel()
        host = kernel.host()
        try:
            for prep in out:
                prep.kind.check_host(host, prep.network, prep.request)
        finally:
            host.close()
    return out


def resolve(paths, req):
    """The Network a request names: a definition, or its kind's ad-hoc one."""
    if req.form == "network":
        return config.load(paths, req.network)
    return kinds.get(req.form).adhoc(paths, req)


def requested_ip(req, net):
    """The address a request asks for (an int) once net.subnet is known, or None."""
    if not req.ip:
        return None
    ip, _, prefix = req.ip.partition("/")
    want = ip_int(ip)
    if prefix and int(prefix) != net.subnet.prefix:
        raise PyctrError("address %s does not match subnet %s of network %s"
                         % (req.ip, net.subnet, net.name))
    if want not in net.subnet:
        raise PyctrError("address %s is outside subnet %s of network %s"
                         % (int_ip(want), net.subnet, net.name))
    return want
