"""IPv4 addresses, subnets, ranges, MACs and interface names: parsing with
one-line errors. Integers inside; no `ipaddress` import on the start path."""
import os
import socket
import struct

from pyctr.errors import PyctrError

IFNAMSIZ = 16  # the kernel's limit, with the trailing NUL: 15 characters


def ip_int(text, what="address"):
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 and int(p) < 256 for p in parts):
        raise PyctrError("malformed IPv4 %s %r" % (what, text))
    return struct.unpack("!I", socket.inet_aton(text))[0]


def int_ip(n):
    return socket.inet_ntoa(struct.pack("!I", n))


def mask(prefix):
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def parse_cidr(text, what="CIDR", need_prefix=True):
    """"A.B.C.D/P" -> (ip_int, prefix). Without /P: prefix None, unless required."""
    ip, slash, prefix = text.partition("/")
    if slash:
        if not prefix.isdigit() or not 0 <= int(prefix) <= 32:
            raise PyctrError("malformed %s %r (prefix must be 0..32)" % (what, text))
        p = int(prefix)
    elif need_prefix:
        raise PyctrError("malformed %s %r (expected A.B.C.D/PREFIX)" % (what, text))
    else:
        p = None
    return ip_int(ip, what), p


class Subnet:
    """An IPv4 subnet: network integer and prefix."""
    __slots__ = ("net", "prefix")

    def __init__(self, net, prefix):
        self.net = net & mask(prefix)
        self.prefix = prefix

    @classmethod
    def parse(cls, text):
        ip, prefix = parse_cidr(text, "subnet")
        if prefix > 30:
            raise PyctrError("subnet %s is too small (at most /30)" % text)
        return cls(ip, prefix)

    @property
    def broadcast(self):
        return self.net | (~mask(self.prefix) & 0xFFFFFFFF)

    @property
    def first(self):  # first usable host
        return self.net + 1

    @property
    def last(self):
        return self.broadcast - 1

    def __contains__(self, ip):
        return ip & mask(self.prefix) == self.net

    def overlaps(self, other):
        p = min(self.prefix, other.prefix)
        return self.net & mask(p) == other.net & mask(p)

    def host(self, ip):
        """True if ip is a usable host address (not network or broadcast)."""
        return ip in self and self.net < ip < self.broadcast

    def __str__(self):
        return "%s/%d" % (int_ip(self.net), self.prefix)

    def __eq__(self, other):
        return isinstance(other, Subnet) and (self.net, self.prefix) == (other.net, other.prefix)


def parse_range(text, subnet):
    """"A-B" inside subnet -> (first_int, last_int)."""
    lo, dash, hi = text.partition("-")
    if not dash:
        raise PyctrError("malformed range %r (expected A.B.C.D-A.B.C.E)" % text)
    a, b = ip_int(lo.strip(), "range start"), ip_int(hi.strip(), "range end")
    if a > b:
        raise PyctrError("range %s: start after end" % text)
    if not (subnet.host(a) and subnet.host(b)):
        raise PyctrError("range %s is not inside subnet %s" % (text, subnet))
    return a, b


def check_ifname(name, what="interface"):
    """Kernel rules (dev_valid_name): 1..15 chars, no '/', ':' or space."""
    if not name:
        raise PyctrError("empty %s name" % what)
    if len(name) >= IFNAMSIZ:
        raise PyctrError("%s name %r is too long (%d characters, at most 15)"
                         % (what, name, len(name)))
    if name in (".", "..") or any(c in name for c in "/: \t\n") or not name.isprintable():
        raise PyctrError("invalid %s name %r" % (what, name))
    return name


def check_mac(text):
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        raise PyctrError("malformed MAC address %r (expected xx:xx:xx:xx:xx:xx)" % text)
    if int(parts[0], 16) & 1:
        raise PyctrError("MAC address %s is a multicast address" % text)
    return text.lower()


def check_mtu(value):
    try:
        mtu = int(value)
    except (TypeError, ValueError) as e:
        raise PyctrError("malformed MTU %r" % (value,)) from e
    if not 68 <= mtu <= 65535:
        raise PyctrError("MTU %d out of range (68..65535)" % mtu)
    return mtu


def random_mac():
    """A random locally administered unicast MAC. Set explicitly on a
    bridge, it stays put as ports come and go (a bridge without one follows
    its lowest port's MAC, and neighbours' ARP caches go stale)."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFC) | 0x02
    return ":".join("%02x" % b for b in raw)
