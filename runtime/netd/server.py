"""The network helper daemon (root): one Server per socket.

It listens on a SOCK_SEQPACKET unix socket (default /run/pyctr/netd.sock,
$PYCTR_NETD_SOCKET), which anyone may connect to: the policy decides
(policy.py, reread at each request). Its directory must be root's and
writable by nobody else, so nobody can put another socket in its place.
One instance per socket: PATH.lock is flock()ed for the daemon's life and
holds its pid. The log is one line per request (stderr, or the --daemon
log file: cli.py).

The daemon keeps no state of its own: leases are the files they are for
root's containers (ipam.py), with the user's uid added, so a restart
loses nothing and `pyctr gc` (root) removes what a killed daemon left.
"""
import errno
import fcntl
import os
import signal
import socket
import sys
import threading
import time

from pyctr import network
from pyctr.errors import PyctrError
from pyctr.netd import peer, policy, protocol
from pyctr.netd.peer import Refused

# Threaded, one thread per connection, rather than one request at a time:
# a client that connects and sends nothing (or reads no reply) would then
# hold every other user up for REQUEST_SECONDS each time. Threads are capped
# in all and per user, so one user cannot take all of them; the work of one
# user's requests is serialized by that user's lock (its quota is counted
# and spent atomically), and different users' attaches run side by side as
# root's `pyctr run`s do, the pool locks (flock) making allocation safe.
REQUEST_SECONDS = 5      # to receive a request, to send its reply
MAX_CONNECTIONS = 256
MAX_PER_USER = 64        # an MPI job's ranks on one node start at once
STOP_SECONDS = 30        # requests in progress finish (or undo) before exit


class Stop(Exception):
    """SIGTERM/SIGINT: stop accepting, let requests in progress finish."""


def socket_directory(path):
    """Make (on a fresh machine /run/pyctr is not there yet) and check the
    directory the socket lives in; return it."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, exist_ok=True)
        os.chmod(directory, 0o755)  # users reach the socket, whatever the umask
    st = os.stat(directory)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PyctrError("socket directory %s must be owned by uid %d and writable by "
                         "nobody else" % (directory, os.geteuid()))
    return directory


class Server:
    def __init__(self, paths, socket_path, log=None):
        self.paths, self.path = paths, socket_path
        self.log_file = log or sys.stderr
        self.listener = None
        self.lock_fd = None
        self.bound = None            # (st_dev, st_ino) of the socket we made
        self.guard = threading.Lock()  # the counts and the per-user locks below
        self.connections = 0
        self.per_user = {}           # uid -> connections in progress
        self.user_locks = {}         # uid -> Lock: one user's requests one at a time
        self.workers = set()

    # -- start and stop ------------------------------------------------------
    def open(self):
        """Take the instance lock, check the directory, listen."""
        socket_directory(self.path)
        self.lock_fd = os.open(self.path + ".lock",
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise PyctrError("network helper already running on %s (pid %s)"
                             % (self.path, running_pid(self.path) or "?")) from e
        os.ftruncate(self.lock_fd, 0)
        os.write(self.lock_fd, b"%d\n" % os.getpid())
        try:
            os.unlink(self.path)  # a dead daemon's: nobody holds the lock
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old = os.umask(0o111)  # born 0666 (srw-rw-rw-): anyone connects, the policy decides
        try:
            listener.bind(self.path)
        except OSError as e:
            listener.close()
            raise PyctrError("cannot listen on %s" % self.path, e.errno) from e
        finally:
            os.umask(old)
        listener.listen(64)
        st = os.stat(self.path)
        self.bound = (st.st_dev, st.st_ino)
        self.listener = listener

    def close(self):
        if self.listener is not None:
            self.listener.close()
            self.listener = None
            try:
                st = os.stat(self.path)
                if (st.st_dev, st.st_ino) == self.bound:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
        if self.lock_fd is not None:
            os.ftruncate(self.lock_fd, 0)
            os.close(self.lock_fd)  # the lock goes with it: the next daemon may start
            self.lock_fd = None

    def serve(self):
        """Accept until SIGTERM/SIGINT; then wait for requests in progress."""
        def stop(signum, frame):
            raise Stop()
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.say("listening on %s (policy %s, leases %s)"
                 % (self.path, policy.path(self.paths), self.paths.leases))
        try:
            warm_up()
            try:  # what a daemon killed mid-request left: leases of dead owners
                for line in network.gc(self.paths):
                    self.say("gc: " + network.gc_line(line))
            except PyctrError as e:
                self.say("gc: %s" % e)
            while True:
                try:
                    conn, _ = self.listener.accept()
                except OSError as e:
                    if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        time.sleep(0.1)  # out of fds: let the workers close theirs
                        continue
                    if e.errno == errno.ECONNABORTED:
                        continue
                    raise
                self.start(conn)
        except Stop:
            self.say("stopping")
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if self.listener is not None:
                self.listener.close()
            deadline = time.monotonic() + STOP_SECONDS
            for worker in list(self.workers):
                worker.join(max(0, deadline - time.monotonic()))
            self.close()

    def start(self, conn):
        """A thread for the connection, within the caps; else a busy reply."""
        try:
            who = peer.of(conn)
        except (OSError, PyctrError):
            conn.close()
            return
        with self.guard:
            busy = self.connections >= MAX_CONNECTIONS \
                or self.per_user.get(who.uid, 0) >= MAX_PER_USER
            if not busy:
                self.connections += 1
                self.per_user[who.uid] = self.per_user.get(who.uid, 0) + 1
        if busy:
            try:
                conn.settimeout(0)
                conn.send(protocol.encode_reply(error=protocol.BUSY))
            except OSError:
                pass
            conn.close()
            return
        worker = threading.Thread(target=self.connection, args=(conn, who), daemon=True)
        with self.guard:
            self.workers.add(worker)
        worker.start()

    # -- one connection ------------------------------------------------------
    def connection(self, conn, who):
        fd = -1
        try:
            conn.settimeout(REQUEST_SECONDS)
            try:
                data, fd, truncated = protocol.recv(conn, protocol.MAX_REQUEST)
            except OSError:
                return  # timed out, reset: nothing was asked
            if not data and fd < 0:
                return  # connected and left
            self.answer(conn, who, data, fd, truncated)
        except Exception as e:  # a bug must not take the daemon down
            self.say("%s: internal error: %s: %s" % (who, type(e).__name__, e))
        finally:
            if fd >= 0:
                os.close(fd)
            conn.close()
            with self.guard:
                self.connections -= 1
                self.per_user[who.uid] -= 1
                if not self.per_user[who.uid]:
                    del self.per_user[who.uid]
                self.workers.discard(threading.current_thread())

    def answer(self, conn, who, data, fd, truncated):
        what = "request"
        records = None
        try:
            if truncated:
                raise protocol.ProtocolError(
                    "request too large (at most %d bytes and one fd)" % protocol.MAX_REQUEST)
            message = protocol.decode_request(data)
            what = message.type
            if fd >= 0 and not isinstance(message, protocol.Attach):
                raise Refused("a %s request takes no fd" % message.type)
            with self.user_lock(who.uid):
                if isinstance(message, protocol.Attach):
                    result = records = self.attach(who, message, fd)
                elif isinstance(message, protocol.Detach):
                    result = self.detach(who, message)
                else:
                    result = self.list(who)
            reply = protocol.encode_reply(ok=result)
            outcome = "ok"
            if records:
                outcome += ": container %s %s" % (message.container, ", ".join(
                    "%s %s on %s" % (r["ifname"], r["ip"], r["network"]) for r in records))
        except PyctrError as e:
            reply = protocol.encode_reply(error=str(e))
            outcome = "refused: %s" % e
        except Exception as e:  # a bug: the attach undid itself; the client hears of it
            reply = protocol.encode_reply(error="network helper: internal error (see its log)")
            outcome = "internal error: %s: %s" % (type(e).__name__, e)
        self.say("%s pid %d: %s: %s" % (who, who.pid, what, outcome))
        try:
            conn.sendmsg([reply])
        except OSError as e:
            if records:  # nobody will know of them: undo
                self.say("%s: attach reply not delivered (%s): undone" % (who, e))
                with self.user_lock(who.uid):
                    self.undo_attach(message.container, records, fd)

    def user_lock(self, uid):
        with self.guard:
            return self.user_locks.setdefault(uid, threading.Lock())

    # -- the requests --------------------------------------------------------
    def attach(self, who, message, fd):
        from pyctr.network import ipam
        if fd < 0:
            raise Refused("attach needs the container's network namespace as its fd")
        peer.check_netns(fd, who)
        start = ipam.start_time(message.pid)
        if start is None:
            raise Refused("process %d is gone" % message.pid)
        peer.check_pid(message.pid, fd, who)
        rules = policy.load(self.paths)
        requests, grants = [], {}
        for given in message.networks:
            req, grant = self.request(rules, who, given)
            requests.append(req)
            grants[req.network] = grant
        prepared = network.prepare(self.paths, requests)
        wanted = {}
        for prep in prepared:
            wanted.setdefault(prep.network.pool, []).append(prep.network.name)
        for pool, names in wanted.items():
            grant = grants[names[0]]
            used = len(self.held(pool, who.uid))
            if used + len(names) > grant.max_containers:
                raise Refused("network %s: %s holds %d of the %d containers allowed "
                              "(max_containers, policy %s)"
                              % (names[0], who, used, grant.max_containers, rules.path))
        if ipam.start_time(message.pid) != start:
            raise Refused("process %d is gone" % message.pid)
        return network.attach(self.paths, message.container, prepared, message.pid,
                              netns_fd=fd, uid=who.uid)

    def request(self, rules, who, given):
        """A NetworkRequest from one network of an ATTACH, and its Grant;
        Refused for what the policy does not allow."""
        from pyctr.network.config import check_name
        from pyctr.spec import NetworkRequest
        fields = dict(given)
        form = fields.pop("form", "network")
        name = fields.pop("network")
        if form != "network":
            raise Refused("--net=%s: a user may attach only to a defined network granted by "
                          "the policy (%s)" % (protocol.show("%s:%s" % (form, name)), rules.path))
        check_name(name)
        grant = rules.grant(name, who.name, who.groups)
        if grant is None:
            raise Refused("network %s: %s may not attach (policy %s)" % (name, who, rules.path))
        if fields.get("ip") and not grant.choose_ip:
            raise Refused("network %s: %s may not choose its address (choose_ip, policy %s)"
                          % (name, who, rules.path))
        if fields.get("mac") and not grant.choose_mac:
            raise Refused("network %s: %s may not choose its MAC address (choose_mac, policy "
                          "%s)" % (name, who, rules.path))
        if fields.get("mode") or fields.get("source_macs"):
            raise Refused("network %s: its definition sets the macvlan mode, not the user"
                          % name)
        return NetworkRequest(form="network", network=name, **fields), grant

    def held(self, pool_key, uid):
        """The live leases of uid in a pool."""
        from pyctr.network import ipam
        return [lease for lease in ipam.Pool(self.paths, pool_key).leases().values()
                if lease.uid == uid and lease.holder == "container" and lease.alive()]

    def detach(self, who, message):
        """Release the caller's leases of message.container, and the parts
        made for them: the host side and, while the owner lives, the device
        in its netns (the address may go to someone else next)."""
        from pyctr.network import ipam
        records = []
        for key in ipam.pools(self.paths):
            for lease in ipam.Pool(self.paths, key).leases().values():
                if lease.container == message.container and lease.uid == who.uid \
                        and lease.holder == "container":
                    records.append((lease, record_of(key, lease)))
        for lease, rec in records:
            if lease.alive():
                self.remove_device(lease, who)
        network.detach(self.paths, message.container, [rec for _, rec in records])
        return {"released": len(records)}

    def remove_device(self, lease, who):
        from pyctr.network import netns
        try:
            fd = netns.open_ns(lease.pid)
        except PyctrError:
            return  # gone meanwhile, its devices with it
        try:
            if peer.netns_owner(fd) != who.uid:
                return  # it moved to a netns that is not the caller's: not ours to touch
            inside = netns.enter(fd, sysctls=())
            try:
                inside.delete_link(name=lease.ifname)
            finally:
                inside.close()
        except (OSError, PyctrError) as e:
            self.say("%s: cannot remove %s of container %s: %s"
                     % (who, lease.ifname, lease.container, e))
        finally:
            os.close(fd)

    def undo_attach(self, container, records, fd):
        from pyctr.network import netns
        try:
            inside = netns.enter(fd, sysctls=())
            try:
                for rec in records:
                    inside.delete_link(name=rec["ifname"])
            finally:
                inside.close()
        except (OSError, PyctrError):
            pass  # the netns is gone, its devices with it
        try:
            network.detach(self.paths, container, records)
        except PyctrError as e:
            self.say("undo of container %s incomplete: %s" % (container, e))

    def list(self, who):
        from pyctr.network import config
        rules = policy.load(self.paths)
        out = []
        for grant in rules.granted(who.name, who.groups):
            try:
                net = config.load(self.paths, grant.network)
            except PyctrError:
                continue  # granted but not defined (yet): nothing to use
            out.append({"network": grant.network, "kind": net.kind,
                        "subnet": str(net.subnet) if net.subnet else None,
                        "max_containers": grant.max_containers,
                        "used": len(self.held(net.pool, who.uid)),
                        "choose_ip": grant.choose_ip, "choose_mac": grant.choose_mac})
        return out

    def say(self, line):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        # One line per entry, whatever a client's text in it holds.
        if not line.isprintable():
            line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
        try:
            self.log_file.write("%s pyctr-netd: %s\n" % (stamp, line))
            self.log_file.flush()
        except (OSError, ValueError):
            pass  # a log that went away must not stop the service


def record_of(pool_key, lease):
    """What detach needs of a lease, as attach recorded it."""
    from pyctr.network import kinds
    from pyctr.network.addr import int_ip
    kind, device = kinds.by_pool(pool_key)
    rec = {"kind": kind.name, "pool": pool_key, "ip": int_ip(lease.ip),
           "ifname": lease.ifname, "host_ifname": lease.host_ifname}
    if kind.name == "macvlan":
        from pyctr.network.kinds.macvlan import shim_ifname
        rec["shim"] = shim_ifname(device)
    return rec


def warm_up():
    """Import now what every request uses: the first user's container does
    not wait for it."""
    import importlib
    for module in ("tomllib", "pwd", "grp", "pyctr.spec", "pyctr.network.config",
                   "pyctr.network.wiring", "pyctr.network.resolve", "pyctr.network.request",
                   "pyctr.network.rtnl", "pyctr.network.arp", "pyctr.syscalls"):
        importlib.import_module(module)
    from pyctr.network import kinds
    for name in kinds.names():
        kinds.get(name)


def running_pid(path):
    """The pid in PATH.lock if a helper holds that lock, else None."""
    try:
        fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it
        except BlockingIOError:
            pass
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    finally:
        os.close(fd)
