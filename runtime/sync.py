"""The parent/child protocol of `create` + `start`.

Two pipes join pyctr (parent) and the cloned child (the container's PID 1
to be). `ctl` carries the parent's two messages, in this order: IDS (the
uid/gid maps are written, the child may act as root in its namespaces)
and GO (start: exec the workload). Between them the child builds its root
filesystem while the parent wires the network: the two run side by side,
and the child then waits at the exec barrier, as an OCI `create`d
container does until `start`. The `report` pipe is close-on-exec in the
child, so end-of-file with nothing written means the exec succeeded
(CPython's subprocess does the same).

  parent (pyctr, host namespaces)              child (new namespaces)
  ───────────────────────────────              ──────────────────────
  clone(NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET[|NEWUSER])
        │                                       PDEATHSIG=KILL
  write uid_map / gid_map (user ns)             read(ctl) ....... blocks
  state.json: created, pid                          .
  write(ctl, IDS) ────────────────────────────▶ join namespaces (setns)
        │                                       setuid(0) in the user ns
  network: veth/macvlan into /proc/PID/ns/net   hostname, mounts, pivot_root
  etc/hosts rewritten in place (bind-mounted)   read(ctl) ....... blocks
  write(ctl, GO + env) ───────────────────────▶ ids, capabilities, fds
  read(report) .................. blocks        execve(CMD)
        │  ◀──────────── EOF (exec worked) ───  (report closes on exec)
        │  ◀── "step\0errno\0message" ───────  or: any step failed, exit 125
  state.json: running
  wait, forwarding signals
  state.json: stopped, exit code; clean up

If the parent fails before GO it closes `ctl` without writing: the child
reads EOF and exits; the parent kills and reaps it anyway, then undoes
what it did. Order is checked on both sides: the child accepts exactly
IDS then GO; the parent accepts only EOF or one well-formed report (a
child that failed early is found there, even if GO could not be sent).
"""
import os

from pyctr.errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_RUNTIME, PyctrError

IDS = b"I"
GO = b"G"  # followed by environment additions, "KEY=VALUE\0..." up to EOF
SEP = b"\0"


class Channel:
    """Both pipes, created before clone. Each side closes the ends it does
    not use right after clone, so EOF means what the diagram says."""

    def __init__(self, ctl=True):
        # `pyctr exec` needs only the report pipe: its process does not wait.
        self.ctl_r, self.ctl_w = os.pipe2(os.O_CLOEXEC) if ctl else (-1, -1)
        self.report_r, self.report_w = os.pipe2(os.O_CLOEXEC)

    # -- parent ---------------------------------------------------------
    def parent_side(self):
        _close(self.ctl_r)
        os.close(self.report_w)

    def send(self, message, env=()):
        """IDS, or GO with the environment the parent learnt while the child
        waited (e.g. MPI settings for the container's interface). A child
        that already failed has closed its end: its report, read next, says
        why, so a broken pipe is not an error here."""
        data = message + SEP.join(e.encode() for e in env)
        try:
            while data:
                data = data[os.write(self.ctl_w, data):]
        except BrokenPipeError:
            pass
        if message == GO:
            os.close(self.ctl_w)
            self.ctl_w = -1

    def abort(self):
        """Close everything the parent holds (idempotent)."""
        for attr in ("ctl_w", "report_r"):
            _close(getattr(self, attr))
            setattr(self, attr, -1)

    def wait_exec(self):
        """Block until the child exec'd (returns None) or reported a failure
        (returns a PyctrError with the exit code that failure deserves)."""
        raw = read_all(self.report_r)
        self.report_r = -1
        return decode_report(raw) if raw else None

    # -- child ----------------------------------------------------------
    def child_side(self):
        _close(self.ctl_w)
        os.close(self.report_r)

    def expect(self, message):
        """Block for `message`; for GO, return the environment that came with it."""
        got = os.read(self.ctl_r, 1)
        if got != message:
            # Parent gave up (EOF) or spoke out of turn: nothing to report to.
            os._exit(EXIT_RUNTIME)
        if message != GO:
            return None
        raw = read_all(self.ctl_r)
        return [e.decode(errors="replace") for e in raw.split(SEP)] if raw else []

    def report(self, step, errno, message):
        if self.report_w < 0:  # a created container past its barrier: no one listens
            os.write(2, ("pyctr: %s\n" % message).encode(errors="replace"))
            return
        os.write(self.report_w, encode_report(step, errno, message))


def read_all(fd):
    """Everything until end-of-file; closes `fd`."""
    chunks = []
    while True:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks)


def _close(fd):
    if fd >= 0:
        os.close(fd)


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
