"""The network helper's messages: one request and one reply per
connection, each one SOCK_SEQPACKET datagram of JSON, a request at most
MAX_REQUEST bytes with at most one file descriptor (SCM_RIGHTS).

  request                                                   fd
  {"type": "attach", "container": ID, "pid": N,             the container's
   "networks": [{"network": NAME, "ip": .., "mac": .., ...}]}  netns
  {"type": "detach", "container": ID}                       none
  {"type": "list"}                                          none

  reply   {"ok": VALUE}  or  {"error": "one line"}

Who asks is never part of a message: the daemon asks the kernel
(SO_PEERCRED). decode_request() checks every field's type and size, so
the server only ever sees a well-formed Attach, Detach or List.
This module is imported by `pyctr run` as a user: no `json`, no `socket`
module (jsonio, _socket), as sync.py.
"""
import os
import sys
import _socket

from pyctr.errors import PyctrError

MAX_REQUEST = 4096
MAX_REPLY = 65536        # LIST of many networks; records of MAX_NETWORKS interfaces
MAX_NETWORKS = 8         # interfaces per ATTACH
MAX_ID = 128             # a container id (an engine's are 64 hex digits)
REQUEST_FIELDS = ("network", "ip", "mac", "mtu", "routes", "mode", "source_macs", "host_shim")
MAX_ROUTES = 16
BUSY = "network helper busy (too many requests at once)"  # the client asks again
_SOL_SOCKET = 1
_SCM_RIGHTS = 1
_INT = 4                 # SCM_RIGHTS carries C ints
MSG_TRUNC = 0x20
MSG_CTRUNC = 0x08


class ProtocolError(PyctrError):
    """A request or reply that is not what this protocol says."""


class Attach:
    type = "attach"
    __slots__ = ("container", "pid", "networks")

    def __init__(self, container, pid, networks):
        self.container, self.pid, self.networks = container, pid, networks

    def to_dict(self):
        return {"type": self.type, "container": self.container, "pid": self.pid,
                "networks": self.networks}


class Detach:
    type = "detach"
    __slots__ = ("container",)

    def __init__(self, container):
        self.container = container

    def to_dict(self):
        return {"type": self.type, "container": self.container}


class List:
    type = "list"
    __slots__ = ()

    def to_dict(self):
        return {"type": self.type}


TYPES = {cls.type: cls for cls in (Attach, Detach, List)}


# -- requests ----------------------------------------------------------------
def request_network(req):
    """A spec's NetworkRequest as it travels: the network's name and the
    options the user set (None/empty ones left out)."""
    out = {"form": req.form, "network": req.network}
    for key in REQUEST_FIELDS[1:]:
        value = getattr(req, key, None)
        if isinstance(value, (list, tuple)):  # a frozen spec's are tuples
            value = list(value) or None
        if value is None or (key == "host_shim" and value is True):
            continue
        out[key] = value
    return out


def encode_request(message):
    from pyctr import jsonio
    data = jsonio.dumps(message.to_dict()).encode()
    if len(data) > MAX_REQUEST:
        raise ProtocolError("network helper request too large (%d bytes, at most %d)"
                            % (len(data), MAX_REQUEST))
    return data


def decode_request(data):
    """bytes -> Attach | Detach | List, or ProtocolError (one line)."""
    from pyctr import jsonio
    if len(data) > MAX_REQUEST:
        raise ProtocolError("request too large (at most %d bytes)" % MAX_REQUEST)
    try:
        body = jsonio.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError("malformed request: not JSON") from e
    if not isinstance(body, dict):
        raise ProtocolError("malformed request: not a JSON object")
    kind = body.get("type")
    cls = TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("malformed request: type must be one of %s" % ", ".join(TYPES))
    allowed = {"type"} | set(cls.__slots__)
    extra = sorted(k for k in body if k not in allowed)
    if extra:
        raise ProtocolError("malformed %s request: unknown field %s" % (kind, show(extra[0])))
    if cls is List:
        return List()
    container = _container_id(body.get("container"))
    if cls is Detach:
        return Detach(container)
    pid = body.get("pid")
    if type(pid) is not int or not 0 < pid < 1 << 22:
        raise ProtocolError("malformed attach request: pid must be a process id")
    networks = body.get("networks")
    if not isinstance(networks, list) or not 0 < len(networks) <= MAX_NETWORKS:
        raise ProtocolError("malformed attach request: networks must be a list of 1 to %d"
                            % MAX_NETWORKS)
    return Attach(container, pid, [_network(n) for n in networks])


def _container_id(value):
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID \
            or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value) \
            or not any(c.isalnum() for c in value):
        raise ProtocolError("malformed request: container must be an id (letters, digits, "
                            "- _ ., at most %d)" % MAX_ID)
    return value


_NETWORK_TYPES = {"form": str, "network": str, "ip": str, "mac": str, "mtu": int,
                  "routes": list, "mode": str, "source_macs": list, "host_shim": bool}


def _network(value):
    """One network of an attach request, types checked (values are checked
    by the network code itself, as any --net value)."""
    if not isinstance(value, dict):
        raise ProtocolError("malformed attach request: a network must be an object")
    for key, item in value.items():
        want = _NETWORK_TYPES.get(key)
        if want is None:
            raise ProtocolError("malformed attach request: unknown network field %s"
                                % show(key))
        if type(item) is not want:
            raise ProtocolError("malformed attach request: network field %s must be a %s"
                                % (key, want.__name__))
        if want is str and len(item) > 256:
            raise ProtocolError("malformed attach request: network field %s too long" % key)
        if want is list and (len(item) > MAX_ROUTES
                             or not all(isinstance(x, str) and len(x) < 64 for x in item)):
            raise ProtocolError("malformed attach request: network field %s must be a list "
                                "of at most %d short strings" % (key, MAX_ROUTES))
    if not isinstance(value.get("network"), str):
        raise ProtocolError("malformed attach request: a network needs its name")
    return dict(value)


def show(text):
    """Client text quoted in an error line: short, printable."""
    text = str(text)[:40]
    return repr("".join(c if c.isprintable() else "?" for c in text))


# -- replies -----------------------------------------------------------------
def encode_reply(ok=None, error=None):
    from pyctr import jsonio
    if error is not None:
        line = " ".join(str(error).split())  # one line, whatever the cause said
        return jsonio.dumps({"error": line[:1000]}).encode()
    return jsonio.dumps({"ok": ok}).encode()


def decode_reply(data):
    """The value of an {"ok": ...} reply; PyctrError with the daemon's line
    for an {"error": ...} one."""
    from pyctr import jsonio
    try:
        body = jsonio.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError("network helper: malformed reply") from e
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        raise PyctrError(body["error"])
    if not isinstance(body, dict) or "ok" not in body:
        raise ProtocolError("network helper: malformed reply")
    return body["ok"]


# -- datagrams ---------------------------------------------------------------
def send(sock, data, fd=-1):
    """One datagram on a connected socket (a _socket.socket), with fd if >= 0."""
    ancillary = []
    if fd >= 0:
        ancillary = [(_SOL_SOCKET, _SCM_RIGHTS, fd.to_bytes(_INT, sys.byteorder, signed=True))]
    sock.sendmsg([data], ancillary)


def recv(sock, limit):
    """(data, fd or -1, truncated) of one datagram. Any fds beyond the first
    are closed at once; truncated is True if the datagram was longer than
    limit or carried more than one fd (the request is then refused)."""
    data, ancdata, flags, _ = sock.recvmsg(limit + 1, _socket.CMSG_SPACE(_INT))
    fds = []
    for level, kind, raw in ancdata:
        if level == _SOL_SOCKET and kind == _SCM_RIGHTS:
            fds += [int.from_bytes(raw[i:i + _INT], sys.byteorder, signed=True)
                    for i in range(0, len(raw) - len(raw) % _INT, _INT)]
    for extra in fds[1:]:
        os.close(extra)
    truncated = len(data) > limit or bool(flags & (MSG_TRUNC | MSG_CTRUNC)) or len(fds) > 1
    return data, fds[0] if fds else -1, truncated
