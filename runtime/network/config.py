"""Network definitions: TOML files, one per network, in paths.networks
(default /etc/pyctr/networks/NAME.toml), so a site defines them once:

    kind = "bridge"                     # or "macvlan"
    subnet = "10.77.0.0/24"
    gateway = "10.77.0.1"               # optional (bridge: its address)
    range = "10.77.0.100-10.77.0.149"   # optional: addresses handed out
    uplink = "nic0"                     # bridge: NIC put in the bridge;
                                        # macvlan: the lower device (required)
    bridge = "br0"                      # optional bridge device name (default NAME)
    mode = "bridge"                     # macvlan mode
    mtu = 1500                          # optional (default: the uplink's)
    host_shim = true                    # macvlan: give the host a way in

A bridge network with an uplink takes the uplink's address in the subnet
as its own (the NIC, once a bridge port, can no longer hold it) and uses it
as the containers' gateway unless `gateway` says otherwise. Several nodes of
a cluster sharing one L2 segment each need their own `range`.
"""
import os

from pyctr.errors import PyctrError
from pyctr.network.addr import (Subnet, check_ifname, check_mtu, int_ip, ip_int, parse_range)

KINDS = ("bridge", "macvlan")
MODES = ("bridge", "private", "vepa", "passthru", "source")
KEYS = ("kind", "subnet", "gateway", "range", "uplink", "bridge", "mode", "mtu", "host_shim")


class Network:
    """A resolved network: a definition or an ad-hoc veth:BR / macvlan:LOWER."""
    __slots__ = ("name", "kind", "device", "subnet", "gateway", "range", "uplink", "mode",
                 "mtu", "host_shim", "defined")

    def __init__(self, name, kind, device, subnet=None, gateway=None, range=None, uplink=None,
                 mode=None, mtu=None, host_shim=True, defined=False):
        self.name, self.kind, self.device = name, kind, device
        self.subnet, self.gateway, self.range = subnet, gateway, range
        self.uplink, self.mode, self.mtu = uplink, mode, mtu
        self.host_shim, self.defined = host_shim, defined

    @property
    def pool(self):
        """IPAM pool: one per L2 device, whichever name reaches it."""
        return ("br-" if self.kind == "bridge" else "mv-") + self.device

    def candidates(self):
        """(first, last) of the addresses IPAM may hand out."""
        if self.range:
            return self.range
        return self.subnet.first, self.subnet.last

    def to_dict(self):
        d = {"name": self.name, "kind": self.kind,
             ("bridge" if self.kind == "bridge" else "lower"): self.device}
        if self.subnet:
            d["subnet"] = str(self.subnet)
        if self.gateway:
            d["gateway"] = int_ip(self.gateway)
        if self.range:
            d["range"] = "%s-%s" % (int_ip(self.range[0]), int_ip(self.range[1]))
        if self.uplink and self.kind == "bridge":
            d["uplink"] = self.uplink
        if self.kind == "macvlan":
            d["mode"] = self.mode or "bridge"
            d["host_shim"] = self.host_shim
        if self.mtu:
            d["mtu"] = self.mtu
        return d


def path(paths, name):
    return os.path.join(paths.networks, name + ".toml")


def exists(paths, name):
    return os.path.exists(path(paths, name))


def names(paths):
    try:
        return sorted(f[:-5] for f in os.listdir(paths.networks) if f.endswith(".toml"))
    except FileNotFoundError:
        return []


def load(paths, name):
    p = path(paths, name)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise PyctrError("unknown network %r (see pyctr net ls)" % name) from None
    import tomllib
    try:
        data = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PyctrError("network %s: malformed TOML in %s: %s" % (name, p, e)) from None
    return from_dict(name, data, where=p)


def from_dict(name, data, where=None):
    where = where or name
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise PyctrError("network %s: unknown key %s in %s" % (name, unknown[0], where))
    for k, v in data.items():
        if k == "mtu" and not isinstance(v, int) or k == "host_shim" and not isinstance(v, bool) \
                or k not in ("mtu", "host_shim") and not isinstance(v, str):
            raise PyctrError("network %s: key %s has the wrong type in %s" % (name, k, where))
    kind = data.get("kind", "bridge")
    if kind not in KINDS:
        raise PyctrError("network %s: kind must be bridge or macvlan, not %r" % (name, kind))
    if "subnet" not in data:
        raise PyctrError("network %s: no subnet in %s" % (name, where))
    subnet = Subnet.parse(data["subnet"])
    gateway = None
    if data.get("gateway"):
        gateway = ip_int(data["gateway"], "gateway")
        if not subnet.host(gateway):
            raise PyctrError("network %s: gateway %s is not a host of subnet %s"
                             % (name, data["gateway"], subnet))
    rng = parse_range(data["range"], subnet) if data.get("range") else None
    uplink = data.get("uplink")
    if uplink:
        check_ifname(uplink, "uplink")
    mode = data.get("mode")
    if mode is not None and mode not in MODES:
        raise PyctrError("network %s: unknown macvlan mode %r" % (name, mode))
    if kind == "bridge":
        device = check_ifname(data.get("bridge") or name, "bridge")
        if mode:
            raise PyctrError("network %s: mode is a macvlan setting" % name)
    else:
        if not uplink:
            raise PyctrError("network %s: a macvlan network needs an uplink (its lower device)"
                             % name)
        device = uplink
    mtu = check_mtu(data["mtu"]) if data.get("mtu") else None
    return Network(name, kind, device, subnet, gateway, rng, uplink, mode, mtu,
                   data.get("host_shim", True), defined=True)


def save(paths, net):
    """Write a definition (atomically: other pyctr processes may read it)."""
    d = net.to_dict()
    lines = ["# pyctr network %s" % net.name, 'kind = "%s"' % net.kind]
    for key in ("subnet", "gateway", "range", "uplink", "mode"):
        if key in d:
            lines.append('%s = "%s"' % (key, d[key]))
    if net.kind == "bridge" and net.device != net.name:
        lines.append('bridge = "%s"' % net.device)
    if net.kind == "macvlan" and "uplink" not in d:
        lines.append('uplink = "%s"' % net.device)
    if net.mtu:
        lines.append("mtu = %d" % net.mtu)
    if net.kind == "macvlan":
        lines.append("host_shim = %s" % ("true" if net.host_shim else "false"))
    os.makedirs(paths.networks, exist_ok=True)
    p = path(paths, net.name)
    tmp = p + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.rename(tmp, p)
