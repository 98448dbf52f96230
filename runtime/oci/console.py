"""--console-socket: the workload's terminal, as runc hands it to engines.

The runtime connects to the engine's unix socket (before clone, or before
exec joins the container's mount namespace: the path is the host's). The
container's process allocates the pty from the container's own /dev/pts,
sends the master over that connection (SCM_RIGHTS, with the pty's name as
the message, as runc does), keeps the slave as its controlling terminal
and stdio. The engine (conmon, containerd's shim) then owns the master.
Everything the process needs is imported here, before pivot_root.
"""
import fcntl
import os
import socket
import struct
import termios

from pyctr.errors import PyctrError


def connect(path):
    """The runtime's side: a connection to the engine's console socket (fd)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise PyctrError("cannot connect to console socket %s: %s" % (path, e.strerror)) from e
    return sock.detach()


def setup(sock_fd, size=None):
    """In the container's process: allocate the pty, send its master on
    sock_fd, make the slave the controlling terminal and fds 0, 1, 2."""
    master, slave = os.openpty()
    try:
        if size:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        sock = socket.socket(fileno=sock_fd)
        try:
            socket.send_fds(sock, [os.ttyname(slave).encode()], [master])
        finally:
            sock.close()
    finally:
        os.close(master)
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
