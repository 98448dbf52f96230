"""Address leases on tmpfs, safe under concurrent starts, self-cleaning.

    <paths.leases>/<pool>/lock          flock()ed while allocating
    <paths.leases>/<pool>/10.77.0.101   one file per address, O_EXCL
    <paths.leases>/<pool>/.conflict-10.77.0.2   an address found in use on
                                        the wire (arp.py): when, by whom

A pool is one L2 device (br-BRIDGE, mv-LOWER). Each lease names its owner:
the container's init pid and that process's start time (field 22 of
/proc/PID/stat, so a recycled pid is not mistaken for the owner), or the
host shim interface it addresses. A lease whose owner is gone is reclaimed
by the next allocation that meets it; nothing keeps a list of what is valid.
Files are on tmpfs, so a reboot empties every pool, as it should.
A conflict note is not a lease: allocation skips its address until the note
is older than the network's conflict_seconds, then drops it.
"""
import fcntl
import os
import time

from pyctr.errors import PyctrError
from pyctr.network.addr import int_ip, ip_int


def start_time(pid):
    """Start time of pid in clock ticks since boot, or None if it is gone.
    A zombie counts as gone: its namespaces and devices are already freed,
    and its reaper may be slow (pyctr killed, orphan waits for PID 1)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm (field 2) may contain spaces and parentheses: split after the last ')'
    fields = stat[stat.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class Lease:
    __slots__ = ("ip", "path", "pid", "start", "shim", "container", "ifname", "host_ifname",
                 "mode", "uid")

    def __init__(self, ip, path, fields):
        self.ip, self.path = ip, path
        owner = fields.get("owner", "").split()
        self.shim = owner[1] if owner[:1] == ["shim"] and len(owner) > 1 else None
        self.pid = int(owner[0]) if owner[:1] and owner[0].isdigit() else 0
        self.start = int(owner[1]) if self.pid and len(owner) > 1 and owner[1].isdigit() else None
        self.container = fields.get("container")
        self.ifname = fields.get("ifname")
        self.host_ifname = fields.get("host") or None
        self.mode = fields.get("mode") or None  # macvlan mode
        uid = fields.get("uid", "")
        self.uid = int(uid) if uid.isdigit() else None  # a user's, through the helper (netd)

    @property
    def holder(self):
        """Who holds the address: a "container", or a host "shim" device."""
        return "shim" if self.shim else "container"

    def alive(self):
        """Is the owner still there? Shim leases live as long as the
        caller keeps the shim (see attach/gc); unreadable ones too."""
        if self.shim:
            return True
        if not self.pid:
            return False
        return start_time(self.pid) == self.start

    def describe(self):
        if self.shim:
            return "host shim %s" % self.shim
        return "container %s" % (self.container or "pid %d" % self.pid)


class _Unlocked:
    """In place of a Pool's lock where code locks only sometimes (a new
    ad-hoc bridge's subnet); contextlib.nullcontext would cost `pyctr run`
    6 ms of imports."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


UNLOCKED = _Unlocked()
CONFLICT_PREFIX = ".conflict-"


def now():
    """Seconds on a clock every process shares and nobody sets back."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Pool:
    def __init__(self, paths, key):
        self.key = key
        self.dir = os.path.join(paths.leases, key)
        self._lock_fd = None

    # -- locking -------------------------------------------------------
    def __enter__(self):
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self._lock_fd)  # closing drops the flock
        self._lock_fd = None

    # -- reading -------------------------------------------------------
    def leases(self):
        """{ip_int: Lease} of every lease file, live or not."""
        out = {}
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return out
        for name in names:
            if name == "lock" or name.startswith("."):
                continue
            lease = self.read(name)
            if lease:
                out[lease.ip] = lease
        return out

    def read(self, name):
        p = os.path.join(self.dir, name)
        try:
            with open(p) as f:
                text = f.read()
            ip = ip_int(name)
        except (FileNotFoundError, PyctrError):
            return None
        fields = {}
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            fields[k] = v.strip()
        return Lease(ip, p, fields)

    # -- changing (call with the pool locked) --------------------------
    def allocate(self, first, last, owner, want=None, subnet=None, exclude=()):
        """Lease `want` (an int) or the lowest free address in first..last.
        owner: dict with pid+start or shim, container, ifname, host.
        Returns (ip_int, reclaimed leases)."""
        assert self._lock_fd is not None, "allocate() needs the pool locked"
        leases = self.leases()
        reclaimed = []
        if want is not None:
            if subnet is not None and not subnet.host(want):
                raise PyctrError("address %s is not a host address of subnet %s"
                                 % (int_ip(want), subnet))
            if want in exclude:
                raise PyctrError("address %s is in use (network gateway or host address)"
                                 % int_ip(want))
            old = leases.get(want)
            if old is not None:
                if old.alive():
                    raise PyctrError("address %s is in use by %s" % (int_ip(want), old.describe()))
                self._drop(old)
                reclaimed.append(old)
            self._create(want, owner)
            return want, reclaimed
        for ip in range(first, last + 1):
            if ip in exclude:
                continue
            old = leases.get(ip)
            if old is not None:
                if old.alive():
                    continue
                self._drop(old)
                reclaimed.append(old)
            try:
                self._create(ip, owner)
            except FileExistsError:
                continue  # written by a pyctr that ignored the lock: skip it
            return ip, reclaimed
        raise PyctrError("no free address left in %s-%s (pool %s: %d leases)"
                         % (int_ip(first), int_ip(last), self.key, len(leases)))

    def _create(self, ip, owner):
        if owner.get("shim"):
            who = "shim %s" % owner["shim"]
        else:
            who = "%d %d" % (owner["pid"], owner["start"])
        text = "owner %s\ncontainer %s\nifname %s\nhost %s\nmode %s\n" % (
            who, owner.get("container", ""), owner.get("ifname", ""), owner.get("host") or "",
            owner.get("mode") or "")
        if owner.get("uid") is not None:  # a user's lease, made by the network helper
            text += "uid %d\n" % owner["uid"]
        fd = os.open(os.path.join(self.dir, int_ip(ip)),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)

    def _drop(self, lease):
        try:
            os.unlink(lease.path)
        except FileNotFoundError:
            pass

    def release(self, ip, container=None, shim=None):
        """Remove the lease of ip if it is still ours (it may have been
        reclaimed and handed to someone else since). True if removed."""
        lease = self.read(int_ip(ip) if isinstance(ip, int) else ip)
        if lease is None:
            return False
        if container is not None and lease.container != container:
            return False
        if shim is not None and lease.shim != shim:
            return False
        self._drop(lease)
        return True

    def note_conflict(self, ip, conflict):
        """Remember that ip (an int) is in use on the wire (arp.Conflict)."""
        text = "time %.3f\nby %s\n" % (now(), conflict)
        path = os.path.join(self.dir, CONFLICT_PREFIX + int_ip(ip))
        with open(path + ".new", "w") as f:
            f.write(text)
        os.replace(path + ".new", path)  # readers see all of it or none

    def conflicts(self, seconds):
        """{ip_int: time noted} of the conflicts noted within `seconds`;
        older notes are dropped (by whoever meets them first: no lock needed)."""
        out = {}
        try:
            names = [n for n in os.listdir(self.dir) if n.startswith(CONFLICT_PREFIX)
                     and not n.endswith(".new")]
        except FileNotFoundError:
            return out
        for name in names:
            path = os.path.join(self.dir, name)
            try:
                with open(path) as f:
                    when = float(f.readline().split()[1])
                ip = ip_int(name[len(CONFLICT_PREFIX):])
            except (OSError, ValueError, IndexError, PyctrError):
                continue
            if now() - when < seconds:
                out[ip] = when
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
        return out

    def forget_conflicts(self):
        """Drop every conflict note (the network is gone from this node)."""
        self.conflicts(0)

    def reap(self):
        """Drop every lease whose owner is gone; return them."""
        dead = [lease for lease in self.leases().values() if not lease.alive()]
        for lease in dead:
            self._drop(lease)
        return dead


SUBNETS_LOCK = ".subnets"  # a lock-only pool: choosing subnets for new bridges


def pools(paths):
    try:
        return sorted(p for p in os.listdir(paths.leases) if not p.startswith("."))
    except FileNotFoundError:
        return []
