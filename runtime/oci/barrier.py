"""The container side of a bundle's life, from clone to exec: what the
child does beyond a plain `pyctr run` (child.py calls these, one line each).

A bundle's container waits at the exec barrier without depending on the
process that created it: the child sends READY on the channel, closes
its end, and blocks opening the exec FIFO in the state dir for writing.
`pyctr start`, from any process, opens it for reading and reads the
child's answer; the child execs. The FIFO is reached through an O_PATH fd
opened before pivot_root and re-opened by /proc/self/fd after it (as runc
does). For `pyctr create` no parent-death signal ties this child to pyctr
(Plan.tie_to_parent): when create exits, it is the engine's (its
subreaper's) child.
"""
import _signal

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import jsonio
from pyctr.child import resolve
from pyctr.oci import hooks, settings
from pyctr.oci.lifecycle import FIFO, oci_state
from pyctr.state import ContainerState


class ChildPlan:
    """What a bundle's container needs besides the Spec. state_path: its
    state.json, beside the exec FIFO, read before pivot_root; no_pivot:
    MS_MOVE + chroot instead of pivot_root; console_socket: where the
    runtime sends the pty master; networks: the run.pyctr.net requests,
    network.prepare()d before clone, attached once init is ready. The
    child sets fifo_fd (O_PATH) and state (for the hooks)."""
    __slots__ = ("state_path", "no_pivot", "console_socket", "networks", "fifo_fd", "state")

    def __init__(self, state_path, no_pivot=False, console_socket=None, networks=()):
        self.state_path, self.no_pivot, self.console_socket = state_path, no_pivot, console_socket
        self.networks = networks
        self.fifo_fd = -1
        self.state = None


def before_pivot(spec, plan, syscall):
    """After the container's mounts, before pivot_root, while the state dir
    is still in reach: hold the exec FIFO (O_PATH), read the state for the
    hooks, run createContainer hooks (container namespaces, the runtime's
    paths)."""
    if spec.process.oci and spec.process.oci.terminal:
        # For after_pivot: pyctr's files are out of reach in the new root.
        from pyctr.oci import console  # noqa: F401 (socket, termios: only for a terminal)
    state_dir = os.path.dirname(plan.state_path)
    plan.fifo_fd = os.open(os.path.join(state_dir, FIFO), os.O_PATH | os.O_CLOEXEC)
    with open(plan.state_path) as f:
        plan.state = oci_state(ContainerState.from_json(jsonio.loads(f.read())), "created")
    entries = spec.oci.hooks.get("createContainer")
    if entries:
        hooks.run("createContainer", entries, jsonio.dumps(plan.state), syscall)


def after_pivot(spec, channel):
    """Inside the new root: sysctls (before /proc/sys turns read-only); the
    terminal, from the container's own /dev/pts: its master goes to the
    runtime (FD "pty", for the engine's console socket), the slave becomes
    the controlling terminal and stdio."""
    settings.apply_sysctl(spec.oci.sysctl)
    oci = spec.process.oci
    if oci and oci.terminal:
        from pyctr.oci import console  # imported by before_pivot
        master, slave = console.open_pty(oci.console_size)
        try:
            channel.send_fd("pty", master)
        finally:
            os.close(master)
        console.make_stdio(slave)
    else:
        # A session of its own, as runc's init has with a terminal or not:
        # a caller that ends its process group once `create` returns does
        # not take the container along (under Slurm's RunTimeCreate it was
        # gone by the first RunTimeQuery).
        os.setsid()


def barrier(spec, plan, channel, syscall):
    """The exec barrier: READY, then wait for `start` on the FIFO. Once
    start has opened it, startContainer hooks run (so they come before
    start's poststart ones), and their outcome is the message: "0", or "1"
    and why. The channel is closed by then: later failures go to the
    container's stderr."""
    check_executable(spec.process, channel)
    channel.ready()
    channel.close_child_side()  # its REPORTs go to stderr from now on
    # Nothing of the runtime's (or of its caller's, e.g. a shim's socket)
    # stays open in a waiting init but stdio, preserved fds and the FIFO.
    keep = sorted({0, 1, 2, plan.fifo_fd} | set(range(3, 3 + spec.process.preserve_fds)))
    for low, high in zip(keep, keep[1:] + [0x100000000]):
        if high > low + 1:
            syscall.close_range(low + 1, high - 1, 0)
    syscall.reset_signals()
    # A pid namespace's init gets only the signals it handles: so that `kill
    # ID 15` ends a created container, as it ends runc's, they are handled.
    for number in _ENDING_SIGNALS:
        _signal.signal(number, _end)
    fd = os.open("/proc/self/fd/%d" % plan.fifo_fd, os.O_WRONLY | os.O_CLOEXEC)  # blocks
    os.close(plan.fifo_fd)
    try:
        entries = spec.oci.hooks.get("startContainer")
        if entries:
            hooks.run("startContainer", entries, jsonio.dumps(plan.state), syscall)
    except BaseException as e:
        os.write(fd, b"1" + str(e).encode(errors="replace"))
        os._exit(125)
    os.write(fd, b"0")
    os.close(fd)


_ENDING_SIGNALS = (1, 2, 3, 10, 12, 14, 15)  # HUP INT QUIT USR1 USR2 ALRM TERM


def _end(number, frame):
    os._exit(128 + number)


def check_executable(proc, channel):
    """runc's rule: a missing or non-executable command fails `create`,
    not the `start` that nobody could report it to."""
    env = dict(e.split("=", 1) for e in proc.env if "=" in e)
    path = os.path.join(proc.cwd, resolve(proc.args[0], env.get("PATH", "")))
    if not os.path.isfile(path):
        channel.report("exec", 2, "%s: executable file not found in $PATH" % proc.args[0])
        os._exit(125)
    if not os.access(path, os.X_OK):
        channel.report("exec", 13, "%s: permission denied" % proc.args[0])
        os._exit(125)
