"""--console-socket: the workload's terminal, as runc hands it to engines.

The container's process allocates the pty from the container's own
/dev/pts and keeps the slave as its controlling terminal and stdio. The
master reaches the engine's unix socket (SCM_RIGHTS, with the pty's name
as the message, as runc does): for a created container through the
runtime (the child sends it over the channel, pyctr create passes it on);
for `exec --tty` directly, over a connection the runtime made before it
joined the container's mount namespace (the socket path is the host's).
The engine (conmon, containerd's shim) then owns the master. Everything
the process needs is imported here, before pivot_root.
"""
import fcntl
import socket
import struct
import termios

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError

TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): a master's pts number (not in termios)


def connect(path):
    """A connection to the engine's console socket (an fd)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise PyctrError("cannot connect to console socket %s: %s" % (path, e.strerror)) from e
    return sock.detach()


def send(sock_fd, master):
    """The pty master to the engine, named as runc names it."""
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    sock = socket.socket(fileno=sock_fd)
    try:
        socket.send_fds(sock, [b"/dev/pts/%d" % number], [master])
    finally:
        sock.close()


def hand_over(path, master):
    """The runtime's side for a created container: master to the socket at path."""
    send(connect(path), master)


def open_pty(size=None):
    """(master, slave) from the /dev/ptmx of the mount namespace we are in."""
    master, slave = os.openpty()
    if size:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
    return master, slave


def make_stdio(slave):
    """The slave as controlling terminal (a new session) and fds 0, 1, 2."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)


def setup(sock_fd, size=None):
    """`pyctr exec --tty`: in the process, already in the container's mount
    namespace, with a connection the runtime made before joining it."""
    master, slave = open_pty(size)
    try:
        send(sock_fd, master)
    finally:
        os.close(master)
    make_stdio(slave)


def relay(master):
    """A foreground run's terminal (runc run without --console-socket):
    our stdin to the pty and the pty to our stdout, in a thread while the
    main one waits for the container (the wait releases the GIL). Our
    terminal, if stdin is one, is raw meanwhile and gives the pty its size.
    Returns finish(): output drained, terminal restored, master closed."""
    import select
    import threading
    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)
        raw = termios.tcgetattr(0)
        raw[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        raw[0] &= ~(termios.ICRNL | termios.IXON)
        termios.tcsetattr(0, termios.TCSANOW, raw)

    def pump():
        sources = [0, master]
        while master in sources:
            for fd in select.select(sources, [], [])[0]:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the last holder of the pty's slave is gone
                    data = b""
                if fd == master:
                    if not data:
                        sources.remove(master)
                        break
                    os.write(1, data)
                elif data:
                    os.write(master, data)
                else:
                    sources.remove(0)  # our stdin ended; the container's output goes on

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()

    def finish():
        thread.join(5)
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
    return finish
