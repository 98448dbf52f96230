"""`--net` values -> NetworkRequest.

    none | host                     no devices (the runtime handles these)
    container:NAME                  share another container's netns (runtime)
    veth:BRIDGE[,OPT...]            veth pair, host end on BRIDGE (made if missing)
    macvlan:LOWER[:MODE][,OPT...]   macvlan on LOWER; MODE bridge (default),
                                    private, vepa, passthru or source
    NAME[,OPT...]                   a network defined with `pyctr net create NAME`

    OPT: ip=A.B.C.D[/P]  mac=xx:xx:xx:xx:xx:xx  mtu=N  mode=MODE
         source_macs=M1|M2 (mode source)  route=DEST/P[@GW] (repeatable;
         DEST may be `default`)  host_shim=no (macvlan: no host shim)

A bare name that is also a bridge (`--net=br0`) means veth:br0 only if no
network of that name exists; that is decided at attach time.
"""
from pyctr.errors import PyctrError
from pyctr.spec import NetworkRequest
from pyctr.network.addr import check_ifname, check_mac, check_mtu, parse_cidr, int_ip, ip_int

MODES = ("bridge", "private", "vepa", "passthru", "source")
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def parse(text):
    if not isinstance(text, str) or not text.strip():
        raise PyctrError("--net: empty value")
    text = text.strip()
    if text in ("none", "host"):
        return NetworkRequest(kind=text)
    head, *opts = text.split(",")
    kind, colon, rest = head.partition(":")
    if kind == "container":
        if not rest:
            raise PyctrError("--net=container:NAME needs a container name")
        return NetworkRequest(kind="container", network=rest)
    if not colon:  # a named network
        name = head
        _check_network_name(name)
        req = NetworkRequest(kind="network", network=name)
    elif kind == "veth":
        req = NetworkRequest(kind="veth", network=check_ifname(rest, "bridge"))
    elif kind == "macvlan":
        lower, _, mode = rest.partition(":")
        req = NetworkRequest(kind="macvlan", network=check_ifname(lower, "lower device"),
                             mode=_mode(mode) if mode else None)
    else:
        raise PyctrError("--net=%s: unknown kind %r (none, host, veth:BRIDGE, "
                         "macvlan:LOWER[:MODE], container:NAME or a network name)" % (text, kind))
    for opt in opts:
        apply_option(req, opt, text)
    validate(req)
    return req


def apply_option(req, opt, text=""):
    key, eq, value = opt.partition("=")
    key = key.strip()
    if not eq or not value:
        raise PyctrError("--net=%s: option %r needs a value (KEY=VALUE)" % (text, opt))
    if key == "ip":
        req.ip = check_ip(value)
    elif key == "mac":
        req.mac = check_mac(value)
    elif key == "mtu":
        req.mtu = check_mtu(value)
    elif key == "mode":
        req.mode = _mode(value)
    elif key == "source_macs":
        req.source_macs = [check_mac(m) for m in value.split("|") if m]
    elif key == "route":
        req.routes = list(req.routes or []) + [check_route(value)]
    elif key == "host_shim":
        v = value.lower()
        if v not in _TRUE | _FALSE:
            raise PyctrError("--net=%s: host_shim must be yes or no" % text)
        req.host_shim = v in _TRUE
    else:
        raise PyctrError("--net=%s: unknown option %r (ip, mac, mtu, mode, source_macs, "
                         "route, host_shim)" % (text, key))


def validate(req):
    """Checks that need the whole request (also after --ip/--mac/--mtu)."""
    if req.kind == "veth" and (req.mode or req.source_macs):
        raise PyctrError("--net=veth:%s: mode and source_macs are macvlan options" % req.network)
    if req.mode == "source" and not req.source_macs:
        raise PyctrError("macvlan mode source needs source_macs=MAC1|MAC2")
    if req.source_macs and req.mode not in ("source", None):
        raise PyctrError("source_macs only apply to macvlan mode source")
    if req.kind == "macvlan" and req.source_macs and req.mode is None:
        raise PyctrError("source_macs only apply to macvlan mode source")


def check_ip(value):
    """"A.B.C.D" or "A.B.C.D/P", normalised."""
    ip, prefix = parse_cidr(value, "address", need_prefix=False)
    if prefix is not None and not 1 <= prefix <= 32:
        raise PyctrError("malformed address %r (prefix 1..32)" % value)
    return int_ip(ip) + ("/%d" % prefix if prefix is not None else "")


def check_route(value):
    """"DEST/P[@GW]" or "default[@GW]" -> normalised text."""
    dest, at, gw = value.partition("@")
    if dest == "default":
        dest = "0.0.0.0/0"
    ip, prefix = parse_cidr(dest, "route destination")
    out = "%s/%d" % (int_ip(ip), prefix)
    if at:
        out += "@" + int_ip(ip_int(gw, "route gateway"))
    return out


def _mode(mode):
    if mode not in MODES:
        raise PyctrError("unknown macvlan mode %r (bridge, private, vepa, passthru, source)" % mode)
    return mode


def _check_network_name(name):
    if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name) \
            or name.startswith("."):
        raise PyctrError("invalid network name %r (letters, digits, - _ .)" % name)
    return name
