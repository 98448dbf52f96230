"""Address conflict detection (RFC 5227) for a container's interface: ARP
probes for an address before it is set, gratuitous ARP once it is.

A Prober is a packet socket made inside the container's netns and bound to
the container's interface (eth0, ...), so every frame it sends leaves from
that interface: never from the node's own NIC, and never anything but ARP.

    probe(ip)      -> None, or Conflict(mac, how): someone on the wire uses ip
    announce(ip)   two gratuitous ARP requests (sender = target = ip)

A probe is an ARP request with sender IP 0.0.0.0 and target the candidate,
so no neighbour's cache learns anything from it. The address is in use when,
within the wait, the interface sees any ARP packet whose sender IP is the
candidate (its owner answering, or announcing), or another host's probe for
the same candidate (two hosts choosing at once: both step back, as the RFC
says).

Timing. RFC 5227's defaults wait a random 0-1 s (PROBE_WAIT), send 3 probes
(PROBE_NUM) 1-2 s apart (PROBE_MIN, PROBE_MAX) and listen 2 s more
(ANNOUNCE_WAIT): 3 to 7 s per address, made for hosts that join a network of
unknown reach and speed, with lost frames and sleeping hosts. A container's
start is counted in milliseconds, and the wire here is a LAN: an ARP reply
is made by the owner's kernel in softirq context (no process needs to run),
so it comes back within a millisecond on a switched segment, a few
milliseconds on a very busy one. pyctr therefore sends PROBES (2) probes
PROBE_GAP (20 ms) apart, with no initial random delay, and takes answers
until PROBE_WAIT (50 ms) after the first: a lost first probe still leaves
the second 30 ms for its answer. The wait overlaps with the container
building its root filesystem (the network is attached meanwhile), so a start
pays less than all of it: see `pyctr bench net`. Frames that arrive while
this process is not scheduled wait in the socket's buffer and are read
before deciding. On a busy node an answer can also wait before it gets
there, in the node's own receive path: the kernel hands its network work to
a thread (ksoftirqd) that waits for a CPU as this process does. So when
this process wakes up late, the wait goes on for as long again as it was
late (LATE_MAX in all), and the wire gets about the time it gets from an
idle node. (The tests once saw one of thirty starts at once on two CPUs
take the address of a simulated host on the same machine; an answer held
up there is the likely cause.) What is traded: an owner slower than 30-50
ms to answer (a host waking from sleep, an overloaded router, a lossy Wi-Fi
bridge, a link that drops both probes) goes unseen, where the RFC's 3-7 s
would catch it; and two hosts that start probing the same address within a
few milliseconds may both step back (then both try the next). Addresses
found taken are noted in the pool (ipam.Pool.note_conflict) and not probed
again for `conflict_seconds` (CONFLICT_SECONDS, 300, by default).

Which networks probe: those whose traffic reaches a wire (a network kind's
reaches_wire(): a bridge holding an uplink or any port that is not a
container's, macvlan in every mode). The node's own addresses are never
probed, just never handed out (wiring.Wire.node_ips). A network without
other hosts turns probing off: `probe = false` in its definition,
`pyctr net create --no-probe`. In macvlan source mode only frames from the
listed MACs come in, answers included.

Announcing: RFC 5227 sends ANNOUNCE_NUM (2) announcements ANNOUNCE_INTERVAL
(2 s) apart; pyctr sends its two back to back (the second covers a lost
first) and does not wait: the container's first packets refresh caches too.
"""
import select
import socket
import struct
import time

from pyctr.errors import PyctrError

PROBES = 2
PROBE_GAP = 0.02      # seconds between the probes
PROBE_WAIT = 0.05     # answers counted until this long after the first probe
LATE = 0.005          # a wake-up later than this: the node is busy (see _later)
LATE_MAX = 0.5        # at most this much added to one wait
ANNOUNCES = 2
CONFLICT_SECONDS = 300  # a conflict keeps its address out of allocation this long
MAX_CONFLICTS = 32    # addresses probed for one interface before giving up

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6
_ETH = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen op sha spa tha tpa
MIN_FRAME = 60  # an Ethernet frame without its FCS, padded as a NIC would


class Conflict:
    """Who showed that an address is taken: their MAC, and how."""
    __slots__ = ("mac", "how")

    def __init__(self, mac, how):
        self.mac, self.how = mac, how

    def __str__(self):
        return "%s %s" % (self.mac, self.how)


def frame(op, mac, sender_ip, target_ip):
    """An ARP request/reply frame from `mac`, broadcast (ips as 4 bytes)."""
    arp = _ARP.pack(1, ETH_P_IP, 6, 4, op, mac, sender_ip, b"\0" * 6, target_ip)
    out = _ETH.pack(BROADCAST, mac, ETH_P_ARP) + arp
    return out + b"\0" * (MIN_FRAME - len(out))


def conflict_in(data, mac, target):
    """A Conflict if the frame `data` shows `target` (4 bytes) taken by
    someone other than `mac`, else None."""
    if len(data) < _ETH.size + _ARP.size:
        return None
    _, _, ethertype = _ETH.unpack_from(data)
    if ethertype != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op, sha, spa, _, tpa = _ARP.unpack_from(data, _ETH.size)
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4) or sha == mac:
        return None
    who = ":".join("%02x" % b for b in sha)
    if spa == target:
        return Conflict(who, "answered" if op == ARP_REPLY else "announced it")
    if op == ARP_REQUEST and spa == b"\0\0\0\0" and tpa == target:
        return Conflict(who, "is probing for it too")
    return None


class Prober:
    """ARP on one interface of a container: call make_in(ns_fd, ifname)."""

    def __init__(self, sock):
        self.sock = sock
        self.mac = sock.getsockname()[4][:6]

    @classmethod
    def make_in(cls, ns_fd, ifname):
        from pyctr.network import netns

        def inside():
            # Protocol 0 until bound: no frame of another interface queues up.
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
            try:
                sock.bind((ifname, ETH_P_ARP))
            except OSError:
                sock.close()
                raise
            return sock
        try:
            return cls(netns.call_in(ns_fd, inside))
        except OSError as e:
            raise PyctrError("cannot probe addresses on %s (ARP socket in the container)"
                             % ifname, e.errno) from e

    def probe(self, ip):
        """Probe dotted `ip`: None if no one claimed it within the wait."""
        target = socket.inet_aton(ip)
        probe = frame(ARP_REQUEST, self.mac, b"\0\0\0\0", target)
        self._drain(None, target)  # whatever queued before is not an answer
        start = time.monotonic()
        for n in range(PROBES):
            self.sock.send(probe)
            until = start + (PROBE_GAP * (n + 1) if n + 1 < PROBES else PROBE_WAIT)
            found = self._listen(target, until)
            if found is not None:
                return found
        return self._drain(self.mac, target)

    def announce(self, ip):
        addr = socket.inet_aton(ip)
        for _ in range(ANNOUNCES):
            self.sock.send(frame(ARP_REQUEST, self.mac, addr, addr))

    def _listen(self, target, until):
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        added = 0.0
        while True:
            now = time.monotonic()
            left = until - now
            if left <= 0:
                later = _later(until, now, added)
                if later is None:
                    return None
                added += later - now
                until = later
                continue
            if poller.poll(left * 1000 + 1):
                found = self._drain(self.mac, target)
                if found is not None:
                    return found

    def _drain(self, mac, target):
        """Read every queued frame; the first conflict among them (mac None:
        just discard)."""
        found = None
        while True:
            try:
                data, addr = self.sock.recvfrom(2048, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return found
            if mac is None or found is not None or addr[2] == socket.PACKET_OUTGOING:
                continue
            found = conflict_in(data, mac, target)

    def close(self):
        self.sock.close()


def _later(until, now, added):
    """Past the deadline `until` at `now`: a new deadline as late again as
    this wake-up was, or None to decide now (on time, or LATE_MAX added
    already). `added`: what this wait was extended by so far."""
    late = now - until
    if late <= LATE or added + late > LATE_MAX:
        return None
    return now + late


def describe(ip, conflict):
    return "address %s is in use on the wire (%s)" % (ip, conflict)

