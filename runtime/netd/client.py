"""What an unprivileged pyctr calls to get a network from the helper
(server.py, root). Each call is one connection: connect, one request, one
reply. Errors are the daemon's one line as a PyctrError (exit 125).

    socket_path(paths) -> str
    attach(paths, container_id, requests, pid, netns_fd) -> [record, ...]
    detach(paths, container_id, records) -> None      idempotent
    allowed(paths) -> [dict(network, kind, subnet, max_containers, used,
                            choose_ip, choose_mac)]
    available(paths) -> bool
"""
import errno
import os
import sys

from pyctr.errors import PyctrError
from pyctr.netd import protocol

DEFAULT_SOCKET = "/run/pyctr/netd.sock"
ENV_SOCKET = "PYCTR_NETD_SOCKET"
# An ATTACH may ARP-probe a few addresses (arp.py: ~1 s each at worst); the
# daemon bounds its own work, this bounds a daemon that stopped answering.
REPLY_SECONDS = 60
BUSY_SECONDS = 10
NOT_RUNNING = "network helper not running (socket %s; an administrator starts it: " \
              "pyctr netd serve --daemon)"


def socket_path(paths=None):
    """Where the daemon listens: $PYCTR_NETD_SOCKET, else /run/pyctr/netd.sock
    (root's state dir, whatever the user's own --root is)."""
    return os.environ.get(ENV_SOCKET) or DEFAULT_SOCKET


def attach(paths, container_id, requests, pid, netns_fd):
    message = protocol.Attach(container_id, pid,
                              [protocol.request_network(req) for req in requests])
    return _ask(paths, message, netns_fd)


def detach(paths, container_id, records):
    """Release what the daemon made for container_id. records are not sent:
    the daemon goes by its leases (the caller's only), so this is also what
    gc of a user's dead container calls."""
    if not records:
        return
    _ask(paths, protocol.Detach(container_id))


def allowed(paths):
    return _ask(paths, protocol.List())


def available(paths):
    try:
        allowed(paths)
    except PyctrError:
        return False
    return True


def _ask(paths, message, fd=-1):
    """The reply's value; a busy daemon (too many requests at once) is asked
    again for up to BUSY_SECONDS."""
    import time
    data = protocol.encode_request(message)
    deadline = time.monotonic() + BUSY_SECONDS
    pause = 0.02
    while True:
        try:
            return _exchange(socket_path(paths), data, fd)
        except PyctrError as e:
            if not str(e).startswith(protocol.BUSY) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.5)


def _exchange(path, data, fd):
    import _socket
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(REPLY_SECONDS)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise PyctrError(NOT_RUNNING % path) from e
        except PermissionError as e:
            raise PyctrError("network helper socket %s: permission denied" % path) from e
        except OSError as e:
            raise PyctrError("network helper socket %s" % path, e.errno or 0) from e
        # Only root's helper gets a container's netns: not a socket someone
        # else made where $PYCTR_NETD_SOCKET points.
        cred = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        owner = int.from_bytes(cred[4:8], sys.byteorder)
        if owner != 0:
            raise PyctrError("network helper socket %s is served by uid %d, not root"
                             % (path, owner))
        try:
            protocol.send(sock, data, fd)
            reply, extra, _ = protocol.recv(sock, protocol.MAX_REPLY)
        except _socket.timeout as e:
            raise PyctrError("network helper did not answer within %d s (socket %s)"
                             % (REPLY_SECONDS, path)) from e
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.ECONNRESET):
                raise PyctrError("network helper closed the connection (socket %s)"
                                 % path) from e
            raise PyctrError("network helper socket %s" % path, e.errno or 0) from e
        if extra >= 0:
            os.close(extra)  # the daemon never sends one
        if not reply:
            raise PyctrError("network helper closed the connection (socket %s)" % path)
        return protocol.decode_reply(reply)
    finally:
        sock.close()
