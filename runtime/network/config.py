"""Network definitions: TOML files, one per network, in paths.networks
(default /etc/pyctr/networks/NAME.toml), so a site defines them once:

    kind = "veth"                       # or "macvlan" (kinds/); "bridge" is
                                        # the older name of veth
    subnet = "10.77.0.0/24"
    gateway = "10.77.0.1"               # optional (veth: the bridge's address)
    range = "10.77.0.100-10.77.0.149"   # optional: addresses handed out
    slice = 16                          # instead of range: per-node slices
                                        # of 16, picked by the node's own
                                        # address (noderange.py)
    uplink = "nic0"                     # veth: NIC put in the bridge;
                                        # macvlan: the lower device (required)
    mtu = 1500                          # optional (default: the uplink's)
    bridge = "br0"                      # veth: bridge device (default NAME)
    mode = "bridge"                     # macvlan: its mode
    host_shim = true                    # macvlan: give the host a way in
    probe = true                        # ARP-probe each address before use
                                        # where the network reaches a wire
    conflict_seconds = 300              # how long an address found in use
                                        # on the wire is not tried again

A veth network with an uplink takes the uplink's address in the subnet
as its bridge's own (the NIC, once a bridge port, can no longer hold it) and
uses it as the containers' gateway unless `gateway` says otherwise. Several
nodes of a cluster sharing one L2 segment each need their own `range`, or
one `slice` that gives each node its own part of the subnet.
Where a network reaches a wire (kinds: reaches_wire), each address is
probed before a container gets it (arp.py), so one taken by another host
is skipped; `probe = false` is for segments without other hosts.
"""
import os

from pyctr import tomlio
from pyctr.errors import PyctrError
from pyctr.network import kinds
from pyctr.network.addr import Subnet, check_ifname, check_mtu, int_ip, ip_int, parse_range

COMMON_KEYS = {"kind": str, "subnet": str, "gateway": str, "range": str, "uplink": str,
               "mtu": int, "probe": bool, "conflict_seconds": int, "slice": int}
OLDER_KIND_NAMES = {"bridge": "veth"}  # definitions written before kinds had one name
DEFAULT_KIND = "veth"


class Network:
    """A resolved network: a definition, or an ad-hoc `--net=KIND:DEVICE`.
    kind is a kinds.REGISTRY name; device is what the kind's pool is on (the
    bridge, the lower device); options are the kind's own settings."""
    __slots__ = ("name", "kind", "device", "subnet", "gateway", "range", "uplink", "mtu",
                 "options", "defined", "probe", "conflict_seconds", "slice")

    def __init__(self, name, kind, device, subnet=None, gateway=None, range=None, uplink=None,
                 mtu=None, options=None, defined=False, probe=True, conflict_seconds=None,
                 slice=None):
        self.name, self.kind, self.device = name, kind, device
        self.subnet, self.gateway, self.range = subnet, gateway, range
        self.uplink, self.mtu = uplink, mtu
        self.options = dict(options or {})
        self.defined = defined
        self.probe = probe  # False: never ARP-probe (kinds.reaches_wire aside)
        self.conflict_seconds = conflict_seconds  # None: arp.CONFLICT_SECONDS
        self.slice = slice  # per-node slice size (noderange.py), None: range or subnet

    @property
    def pool(self):
        """IPAM pool: one per L2 device, whichever name reaches it."""
        return kinds.get(self.kind).pool(self.device)

    def candidates(self, host):
        """(first, last) of the addresses IPAM may hand out on this node
        (host: its netlink, which per-node slices need)."""
        if self.slice:
            from pyctr.network.noderange import node_slice
            found = node_slice(host, self)
            return found.first, found.last
        if self.range:
            return self.range
        return self.subnet.first, self.subnet.last

    def _probing(self):
        """The probe settings that differ from the defaults."""
        d = {} if self.probe else {"probe": False}
        if self.conflict_seconds is not None:
            d["conflict_seconds"] = self.conflict_seconds
        return d

    def _addressing(self):
        """gateway, range, slice and mtu, those that are set."""
        d = {}
        if self.gateway:
            d["gateway"] = int_ip(self.gateway)
        if self.range:
            d["range"] = "%s-%s" % (int_ip(self.range[0]), int_ip(self.range[1]))
        if self.slice:
            d["slice"] = self.slice
        if self.mtu:
            d["mtu"] = self.mtu
        return d

    def to_dict(self):
        kind = kinds.get(self.kind)
        d = {"name": self.name, "kind": self.kind, kind.device_key: self.device}
        if self.subnet:
            d["subnet"] = str(self.subnet)
        d.update(self._addressing())
        if self.uplink and self.uplink != self.device:
            d["uplink"] = self.uplink
        d.update(self._probing())
        d.update(kind.describe(self))
        return d

    def definition(self):
        """The table of its TOML file."""
        d = {"kind": self.kind, "subnet": str(self.subnet)}
        d.update(self._addressing())
        if self.uplink:
            d["uplink"] = self.uplink
        d.update(self._probing())
        d.update(kinds.get(self.kind).definition(self))
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


def check_name(name):
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) \
            or name.startswith("."):
        raise PyctrError("invalid network name %r (letters, digits, - _ .)" % name)
    return name


def load(paths, name):
    p = path(paths, name)
    try:
        with open(p, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise PyctrError("unknown network %r (see pyctr net ls)" % name) from e
    except OSError as e:
        raise PyctrError("cannot read network %s: %s" % (p, e.strerror)) from e
    return from_dict(name, tomlio.loads(raw, "network %s: %s" % (name, p)), where=p)


def from_dict(name, data, where=None):
    where = where or name
    kind_name = data.get("kind", DEFAULT_KIND)
    kind_name = OLDER_KIND_NAMES.get(kind_name, kind_name)
    if kind_name not in kinds.names():
        raise PyctrError("network %s: kind must be %s, not %r in %s"
                         % (name, " or ".join(kinds.names()), kind_name, where))
    kind = kinds.get(kind_name)
    types = dict(COMMON_KEYS, **kind.definition_keys)
    for key, value in data.items():
        if key not in types:
            others = [k for k in kinds.names() if key in kinds.get(k).definition_keys]
            if others:
                raise PyctrError("network %s: key %s is a %s setting, not for a %s network "
                                 "(in %s)" % (name, key, others[0], kind_name, where))
            raise PyctrError("network %s: unknown key %s in %s" % (name, key, where))
        if type(value) is not types[key]:
            raise PyctrError("network %s: key %s has the wrong type in %s (%s, not %s)"
                             % (name, key, where, types[key].__name__, type(value).__name__))
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
    size = data.get("slice")
    if size is not None:
        _check_slice(name, data, size, subnet, where)
    uplink = check_ifname(data["uplink"], "uplink") if data.get("uplink") else None
    mtu = check_mtu(data["mtu"]) if data.get("mtu") else None
    conflict_seconds = data.get("conflict_seconds")
    if conflict_seconds is not None and conflict_seconds < 0:
        raise PyctrError("network %s: conflict_seconds must be 0 or more in %s" % (name, where))
    device, options = kind.define(name, data)
    return Network(name, kind_name, device, subnet, gateway, rng, uplink, mtu, options,
                   defined=True, probe=data.get("probe", True),
                   conflict_seconds=conflict_seconds, slice=size)


def _check_slice(name, data, size, subnet, where):
    from pyctr.network.noderange import check_size
    if data.get("range"):
        raise PyctrError("network %s: range and slice exclude each other in %s" % (name, where))
    if not data.get("uplink"):
        raise PyctrError("network %s: slice needs an uplink (the node's address on it picks "
                         "the slice) in %s" % (name, where))
    check_size(name, size, subnet, where)


def save(paths, net):
    """Write a definition (atomically: other pyctr processes may read it)."""
    os.makedirs(paths.networks, exist_ok=True)
    tomlio.save(path(paths, net.name), net.definition())
