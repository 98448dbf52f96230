"""The parent/child protocol of `create` + `start`.

One SOCK_SEQPACKET socketpair joins pyctr (parent) and the cloned child
(the container's PID 1 to be). Every message is one datagram: a one-byte
tag, a payload, and, for FD, a file descriptor passed with SCM_RIGHTS.
The child's end is close-on-exec, so end-of-file with no REPORT means the
exec succeeded (CPython's subprocess does the same with a pipe).

  parent (pyctr, host namespaces)              child (new namespaces)
  ───────────────────────────────              ──────────────────────
  clone3(NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET[|NEWUSER])
    into its cgroup v2 group                    not dumpable; PDEATHSIG=KILL
  write uid_map / gid_map (user ns)             [all new namespaces, no user
  cgroup.procs: the child into its v1 groups     one, no bundle: hostname and
        │                                        mounts up to the cgroup one]
  send IDS ───────────────────────────────────▶ recv IDS (blocks until then)
  state.json: created, pid                      join namespaces (setns)
        │                                       setuid(0) in the user ns
        │                                       unshare the cgroup ns
  network: veth/macvlan into /proc/PID/ns/net   hostname, (the other) mounts, pivot_root
  MPI settings (a launcher's rank)              lo up
  recv ........................... blocks       [FD "pty": terminal master]
        │  ◀────────────────────────────────── READY (at the exec barrier)
  create returns; `start`:                      recv ............ blocks
  send GO + env ──────────────────────────────▶ ids, capabilities, fds
  recv ........................... blocks       execve(CMD)
        │  ◀──────────── EOF (exec worked) ───  (its end closes on exec)
        │  ◀── REPORT step\0errno\0message ───  or: any step failed, exit 125
  state.json: running
  wait, forwarding signals
  state.json: stopped, exit code; clean up

`run` starts what it creates at once: it sends GO before it waits for
READY (nothing is held at the barrier then), so the child finds GO queued
and goes on without waiting for the parent to be scheduled.

The C child (csrc/child.c, running the op list childprog.compile wrote)
speaks as the Python child above, but where all its namespaces are new
and none is a user one: it takes no IDS then. It writes itself into its
v1 groups ("0" to the cgroup.procs files the parent opened), unshares
its cgroup namespace and builds everything while the parent records it,
and speaks the rest of the protocol as above:

  parent                                        C child
  ──────                                        ───────
  clone3(... INTO_CGROUP) with the op list      not dumpable; PDEATHSIG=KILL
        │                                       "0" to each v1 cgroup.procs
  state.json: created, pid                      unshare the cgroup ns; hostname,
  network: into /proc/PID/ns/net                mounts, pivot_root, lo up
  send GO + env ──────────────────────────────▶ (queued)
  recv ........................... blocks       │
        │  ◀────────────────────────────────── READY; recv GO
        │                                       ids, capabilities, fds; execve(CMD)
        │  ◀────────────── EOF | REPORT ──────

Where the parent has nothing to do between clone and GO (`run` of a C
child with no network to wire), GO is queued before clone, and the child
is cloned sharing the parent's memory (CLONE_VM|CLONE_VFORK, child.c):
the parent sleeps in clone until the child has exec'd or exited, then
finds READY and EOF (or a REPORT) queued, and reads them as above.

If the parent fails before GO it closes its end without sending: the child
reads EOF and exits; the parent kills and reaps it anyway, then undoes
what it did. Order is checked on both sides: the child accepts exactly IDS
then GO (the C child: GO); the parent accepts a REPORT (or EOF: the child
died) wherever it waits, FDs then READY, and after READY only EOF or
REPORT. A parent stage that fails because the child is gone (its netns,
its /proc entry) gives the REPORT waiting unread, if any
(report_waiting): the child's reason, not the stage's.
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import fileio
from pyctr.errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_RUNTIME, PyctrError

# parent -> child
IDS = b"I"      # uid/gid maps written: act as root in the namespaces
GO = b"G"       # start: exec the workload; payload "KEY=VALUE\0..." added to its env
# child -> parent
READY = b"Y"    # root filesystem done, waiting at the exec barrier
FD = b"F"       # payload: what the fd is ("pty"); the fd rides along
REPORT = b"R"   # payload: step\0errno\0message; the child exits 125 next

SEP = b"\0"
MAX_MESSAGE = 1 << 20   # a GO with a launcher's whole environment fits easily
_MSG_DONTWAIT = 0x40    # Linux's, on every architecture (no _socket to ask)


class Channel:
    """Both ends, made before clone. Each side closes the end it does not
    use right after clone, so EOF means what the diagram says."""

    def __init__(self):
        # Raw fds, not socket objects: the child runs after pivot_root and
        # across fork/exec boundaries where only numbers make sense. The
        # shim (loaded now: the Python child cannot import after pivot_root)
        # makes and speaks them.
        global _ffi, _lib
        if _lib is None:
            from pyctr._shim import ffi as _ffi, lib as _lib
        pair = _ffi.new("int[2]")
        if _lib.pyctr_channel_pair(pair) < 0:
            _raise("socketpair")
        self.parent_fd, self.child_fd = pair[0], pair[1]

    # -- parent ---------------------------------------------------------
    def parent_side(self):
        _close(self.child_fd)
        self.child_fd = -1

    def send(self, tag, env=()):
        """IDS, or GO with the environment the parent learnt while the child
        waited (e.g. MPI settings for the container's interface). A child
        that already failed has closed its end: its REPORT, read next, says
        why, so a broken pipe is not an error here."""
        try:
            _send(self.parent_fd, tag + SEP.join(e.encode() for e in env))
        except (BrokenPipeError, ConnectionResetError):
            pass

    def wait_ready(self):
        """Until READY; returns {name: fd} of the FDs the child sent first.
        A failed or dead child raises its PyctrError here."""
        fds = {}
        while True:
            tag, payload, fd = _recv(self.parent_fd)
            if tag == READY:
                return fds
            if tag == FD and fd >= 0:
                fds[payload.decode(errors="replace")] = fd
                continue
            _close(fd)
            raise _failure(tag, payload, "before it was ready")

    def wait_exec(self):
        """After GO: None once the child exec'd (EOF), else the PyctrError
        (with the exit code that failure deserves) from its REPORT."""
        tag, payload, fd = _recv(self.parent_fd)
        _close(fd)
        self.abort()
        if not tag:
            return None
        return _failure(tag, payload, "at exec")

    def report_waiting(self):
        """The PyctrError of a REPORT the child sent and the parent has not
        read yet, else None; never blocks. When a parent stage fails
        because the child is gone (its netns, its /proc entry), this is
        why the child went: the error to give the user."""
        if self.parent_fd < 0:
            return None
        try:
            while True:
                tag, payload, fd = _recv(self.parent_fd, _MSG_DONTWAIT)
                _close(fd)
                if tag != FD:
                    return _failure(tag, payload, "") if tag == REPORT else None
        except BlockingIOError:
            return None

    def abort(self):
        """Close everything the parent holds (idempotent)."""
        _close(self.parent_fd)
        self.parent_fd = -1

    # -- child ----------------------------------------------------------
    def child_side(self):
        _close(self.parent_fd)
        self.parent_fd = -1

    def expect(self, tag):
        """Block for `tag`; for GO, return the environment that came with it."""
        try:
            got, payload, fd = _recv(self.child_fd)
        except OSError:
            got, payload, fd = b"", b"", -1
        _close(fd)
        if got != tag:
            # Parent gave up (EOF) or spoke out of turn: nothing to report to.
            os._exit(EXIT_RUNTIME)
        if tag != GO:
            return None
        return [e.decode(errors="replace") for e in payload.split(SEP)] if payload else []

    def ready(self):
        _send(self.child_fd, READY)

    def send_fd(self, name, fd):
        _send(self.child_fd, FD + name.encode(), fd)

    def close_child_side(self):
        """A bundle's child past READY: no one listens any more (oci.barrier)."""
        _close(self.child_fd)
        self.child_fd = -1

    def report(self, step, errno, message):
        if self.child_fd < 0:  # past a bundle's barrier: the container's stderr
            os.write(2, ("pyctr: %s\n" % message).encode(errors="replace"))
            return
        try:
            _send(self.child_fd, REPORT + encode_report(step, errno, message))
        except OSError:
            pass  # the parent is gone: nobody to tell


_ffi = _lib = None  # the shim, from the first Channel on
_buffer = None      # where messages are received: MAX_MESSAGE, never cleared


def _send(sock_fd, data, fd=-1):
    if _lib.pyctr_channel_send(sock_fd, data, len(data), fd) < 0:
        _raise("sendmsg")


def _recv(sock_fd, flags=0):
    """(tag, payload, fd or -1); (b"", b"", -1) at end-of-file."""
    global _buffer
    if _buffer is None:  # malloc'd, not zeroed: only what a message fills is touched
        _buffer = _ffi.new_allocator(should_clear_after_alloc=False)("char[]", MAX_MESSAGE)
    fd = _ffi.new("int *")
    n = _lib.pyctr_channel_recv(sock_fd, _buffer, MAX_MESSAGE, flags, fd)
    if n < 0:
        _raise("recvmsg")
    data = _ffi.buffer(_buffer, n)[:]
    return data[:1], data[1:], fd[0]


def _raise(what):
    """The OSError subclass Python's own socket calls raise for errno."""
    err = _ffi.errno
    raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _close(fd):
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _failure(tag, payload, when):
    if tag == REPORT:
        return decode_report(payload)
    if not tag:
        return PyctrError("the container's process died %s" % when)
    return PyctrError("container start failed (unexpected message %r from child)" % tag)


def encode_report(step, errno, message):
    return SEP.join((step.encode(), str(errno).encode(), message.encode(errors="replace")))


def decode_report(raw):
    parts = raw.split(SEP, 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return PyctrError("container start failed (garbled report from child: %r)" % raw[:80])
    step, errno, message = parts[0].decode(), int(parts[1]), parts[2].decode(errors="replace")
    code = EXIT_RUNTIME
    if step == "exec":
        code = EXIT_NOT_FOUND if errno in (2, 20) else EXIT_CANNOT_EXEC  # ENOENT/ENOTDIR
    error = PyctrError(message, exit_code=code)  # the child already said why
    error.errno = errno
    return error


def read_all(fd):
    """Everything until end-of-file; closes `fd` (the -d monitor's pipe)."""
    try:
        return fileio.read_fd(fd)
    finally:
        os.close(fd)
