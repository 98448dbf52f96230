"""Address leases on tmpfs, safe under concurrent starts, self-cleaning.

    <paths.leases>/<pool>/lock          flock()ed while allocating; holds the
                                        pool's hint: where the next search starts
                                        and addresses freed below it
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

Allocation costs the same with 1 or 1,000 leases: it never lists the pool.
The hint in the lock file says which addresses may be free (those freed
below `next`, then `next` onwards); each is claimed by creating its file
with O_EXCL, and only on EEXIST is that one lease read and its owner
checked. The hint is advice, never trusted for safety: a lost or stale
hint (a pyctr killed while writing it) costs one search of the whole range,
which also meets and reclaims the leases of owners that died without
releasing them.
"""
import fcntl
import os
import time

from pyctr import fileio
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
        if not (self.container or self.pid):
            return "no owner: a damaged lease"
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
        lock = os.path.join(self.dir, "lock")
        while True:
            try:
                os.makedirs(self.dir, mode=0o700, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # removed meanwhile (remove_if_empty, remove_root): again
            fcntl.flock(fd, fcntl.LOCK_EX)
            # The pool may have been removed while this waited for its lock:
            # then the file locked is no longer the pool's, and the lock is taken again.
            try:
                st, held = os.stat(lock), os.fstat(fd)
                if (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
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
        """The lease file `name`, or None if it is gone or is no lease file
        (a directory or a symlink put here: left alone, its address unused).
        Damaged text reads as a lease without an owner: a dead one."""
        p = os.path.join(self.dir, name)
        try:
            ip = ip_int(name)
            fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except (OSError, PyctrError):
            return None
        try:
            text = fileio.read_fd(fd).decode(errors="replace")
        except OSError:  # a directory
            return None
        finally:
            os.close(fd)
        fields = {}
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            fields[k] = v.strip()
        return Lease(ip, p, fields)

    # -- the hint (pool locked) ----------------------------------------
    def _hint(self):
        """(next, freed): every address >= next was free when the hint was
        written, and so were those in freed (a set of ints below next)."""
        try:
            text = os.pread(self._lock_fd, os.fstat(self._lock_fd).st_size, 0).decode()
            lines = dict(line.partition(" ")[::2] for line in text.splitlines())
            return (ip_int(lines["next"]),
                    {ip_int(word) for word in lines.get("freed", "").split()})
        except (KeyError, ValueError, UnicodeDecodeError, PyctrError):
            return None, set()  # no hint yet, or a torn one: search from the start

    def _save_hint(self, next_ip, freed):
        """A hint that cannot be written (a full disk) is dropped, never an
        allocation failed for it: with no hint the next one searches the
        range from its start, which a hint only shortens."""
        text = "next %s\nfreed %s\n" % (int_ip(next_ip),
                                         " ".join(int_ip(ip) for ip in sorted(freed)))
        data = text.encode()
        try:
            os.pwrite(self._lock_fd, data, 0)
            os.ftruncate(self._lock_fd, len(data))
        except OSError:
            os.ftruncate(self._lock_fd, 0)

    def _freed(self, ip):
        """ip may be free again: the next allocation tries it first."""
        if self._lock_fd is None:
            return  # an unlocked caller: the next full search finds it
        next_ip, freed = self._hint()
        if next_ip is not None and ip < next_ip and ip not in freed:
            freed.add(ip)
            self._save_hint(next_ip, freed)

    # -- changing (call with the pool locked) --------------------------
    def allocate(self, first, last, owner, want=None, subnet=None, exclude=()):
        """Lease `want` (an int) or the lowest free address in first..last
        that the hint knows of (see the module's doc); never one in exclude.
        owner: dict with pid+start or shim, container, ifname, host.
        Returns (ip_int, reclaimed leases)."""
        assert self._lock_fd is not None, "allocate() needs the pool locked"
        reclaimed = []
        if want is not None:
            if subnet is not None and not subnet.host(want):
                raise PyctrError("address %s is not a host address of subnet %s"
                                 % (int_ip(want), subnet))
            if want in exclude:
                raise PyctrError("address %s is in use (network gateway or host address)"
                                 % int_ip(want))
            if not self._claim(want, owner, reclaimed):
                holder = self.read(int_ip(want))
                raise PyctrError("address %s is in use by %s" % (
                    int_ip(want), holder.describe() if holder else "another pyctr"))
            self._freed_taken(want)
            return want, reclaimed
        next_ip, freed = self._hint()
        if next_ip is None or not first <= next_ip <= last + 1:
            next_ip, freed = first, set()
        # freed addresses first (lowest first), then onwards from next, then
        # the whole range once more (leases of owners that died unreleased)
        for ip in sorted(ip for ip in freed if first <= ip <= last):
            freed.discard(ip)
            if ip not in exclude and self._claim(ip, owner, reclaimed):
                self._save_hint(next_ip, freed)
                return ip, reclaimed
        for ip in range(next_ip, last + 1):
            if ip not in exclude and self._claim(ip, owner, reclaimed):
                self._save_hint(ip + 1, freed)
                return ip, reclaimed
        for ip in range(first, next_ip):
            if ip not in exclude and self._claim(ip, owner, reclaimed):
                self._save_hint(ip + 1, set())
                return ip, reclaimed
        self._save_hint(last + 1, set())
        raise PyctrError("no free address left in %s-%s (pool %s: %d leases)"
                         % (int_ip(first), int_ip(last), self.key, self._count()))

    def _claim(self, ip, owner, reclaimed):
        """Create ip's lease for owner; if it exists, reclaim it only from
        an owner that is gone. True if the lease is now owner's."""
        try:
            self._create(ip, owner)
            return True
        except FileExistsError:
            pass
        old = self.read(int_ip(ip))
        if old is not None:
            if old.alive():
                return False
            self._drop(old, hint=False)
            reclaimed.append(old)
        try:
            self._create(ip, owner)
        except FileExistsError:
            return False  # written by a pyctr that ignored the lock: skip it
        return True

    def _freed_taken(self, ip):
        """A requested address is taken: no longer a freed one in the hint."""
        next_ip, freed = self._hint()
        if ip in freed:
            freed.discard(ip)
            self._save_hint(next_ip, freed)

    def _count(self):
        try:
            return sum(1 for name in os.listdir(self.dir)
                       if name != "lock" and not name.startswith("."))
        except FileNotFoundError:
            return 0

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
        path = os.path.join(self.dir, int_ip(ip))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
        except BaseException:
            os.unlink(path)  # a full disk: no lease without its owner, holding the address
            raise
        finally:
            os.close(fd)

    def _drop(self, lease, hint=True):
        try:
            os.unlink(lease.path)
        except FileNotFoundError:
            return
        if hint:
            self._freed(lease.ip)

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
        older notes are dropped by a caller holding the lock (their
        addresses may be free again: the hint learns of them)."""
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
            elif self._lock_fd is not None:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    continue
                self._freed(ip)
        return out

    def forget_conflicts(self):
        """Drop every conflict note (the network is gone from this node),
        however recent: one noted this millisecond reads as noted later
        (its time is rounded), which conflicts(0) would keep."""
        self.conflicts(float("-inf"))

    def remove_if_empty(self):
        """(Pool locked.) Remove the pool if it holds nothing but its lock:
        no lease, no conflict note, no journal. True if it is gone. The lock
        file goes while still locked, so a process waiting for it finds it
        gone and locks the pool made again (__enter__)."""
        assert self._lock_fd is not None, "remove_if_empty() needs the pool locked"
        try:
            if os.listdir(self.dir) != ["lock"]:
                return False
            os.unlink(os.path.join(self.dir, "lock"))
            os.rmdir(self.dir)  # fails if a new lock file appeared: that pool is in use
        except OSError:
            return False
        return True

    def reap(self):
        """Drop every lease whose owner is gone; return them."""
        dead = [lease for lease in self.leases().values() if not lease.alive()]
        for lease in dead:
            self._drop(lease)
        return dead


SUBNETS_LOCK = ".subnets"  # a lock-only pool: choosing subnets for new bridges


def remove_root(paths):
    """Once no pool is left (the last network's removal): the lock for
    choosing subnets and the leases directory, so that nothing is left."""
    if pools(paths):
        return
    with Pool(paths, SUBNETS_LOCK) as subnets:
        subnets.remove_if_empty()
    try:
        os.rmdir(paths.leases)
    except OSError:
        pass  # a pool made meanwhile


def pools(paths):
    try:
        return sorted(p for p in os.listdir(paths.leases) if not p.startswith("."))
    except FileNotFoundError:
        return []
