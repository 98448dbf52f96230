"""`--net` values -> NetworkRequest. The request's `form` says which:

    none | host                     no devices (the runtime handles these)
    container:NAME                  share another container's netns (runtime)
    KIND:TARGET[,OPT...]            ad hoc, one of the network kinds (kinds/):
        veth:BRIDGE                   veth pair, host end on BRIDGE (made if missing)
        macvlan:LOWER[:MODE]          macvlan on LOWER; MODE bridge (default),
                                      private, vepa, passthru or source
    NAME[,OPT...]                   form "network": a network defined with
                                    `pyctr net create NAME`

    OPT: ip=A.B.C.D[/P]  mac=xx:xx:xx:xx:xx:xx  mtu=N  mode=MODE
         source_macs=M1|M2 (mode source)  route=DEST/P[@GW] (repeatable;
         DEST may be `default`)  host_shim=no (macvlan: no host shim)

A bare name that is also a bridge (`--net=br0`) is the network of that name;
`veth:br0` uses the definition called br0 if there is one.
"""
from pyctr.errors import PyctrError
from pyctr.network import kinds
from pyctr.network.addr import check_mac, check_mtu, int_ip, ip_int, parse_cidr
from pyctr.network.config import check_name
from pyctr.spec import NetworkRequest

NO_DEVICES = ("none", "host", "container")  # forms the runtime handles without us
OPTIONS = ("ip", "mac", "mtu", "route") + tuple(kinds.KIND_OPTIONS)
_TRUE = {"1", "yes", "true", "on"}
_FALSE = {"0", "no", "false", "off"}


def parse(text):
    if not isinstance(text, str) or not text.strip():
        raise PyctrError("--net: empty value")
    text = text.strip()
    if text in ("none", "host"):
        return NetworkRequest(form=text)
    head, *opts = text.split(",")
    form, colon, rest = head.partition(":")
    if form == "container":
        if not rest:
            raise PyctrError("--net=container:NAME needs a container name")
        return NetworkRequest(form="container", network=rest)
    if not colon:
        req = NetworkRequest(form="network", network=check_name(head))
    elif form in kinds.names():
        target, mode = kinds.get(form).parse_target(rest)
        req = NetworkRequest(form=form, network=target, mode=mode)
    else:
        raise PyctrError("--net=%s: unknown kind %r (none, host, container:NAME, %s or a "
                         "network name)" % (text, form, ", ".join(
                             "%s:..." % k for k in kinds.names())))
    for opt in opts:
        apply_option(req, opt, text)
    check(req)
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
        req.mode = value  # its kind checks it: a named network's is not known yet
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
        raise PyctrError("--net=%s: unknown option %r (%s)" % (text, key, ", ".join(OPTIONS)))


def check(req, net=None):
    """What can be checked of a request alone, or against its network when
    known; the kind refuses options it does not take."""
    if req.form == "network" and net is None:
        return
    kind = kinds.get(net.kind if net is not None else req.form)
    kind.check(req, net)


def normalised(req):
    """A copy of a request with its values checked and in canonical form:
    --ip/--mac/--mtu and TOML jobs set them after parse(), and the spec's
    own request stays as it was given."""
    fields = {name: getattr(req, name) for name in NetworkRequest.__slots__}
    if req.ip:
        fields["ip"] = check_ip(str(req.ip))
    if req.mac:
        fields["mac"] = check_mac(str(req.mac))
    if req.mtu:
        fields["mtu"] = check_mtu(req.mtu)
    fields["routes"] = [check_route(r) for r in req.routes or []]
    fields["source_macs"] = [check_mac(m) for m in req.source_macs or []]
    return NetworkRequest(**fields)


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
