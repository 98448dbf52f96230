"""The parent/child protocol of `create` + `start`.

Two pipes join pyctr (parent) and the cloned child (the container's PID 1
to be). The child blocks on `go` until the parent has done everything that
must happen from outside the container's namespaces; the `report` pipe is
close-on-exec in the child, so end-of-file with nothing written means the
exec succeeded (CPython's subprocess does the same).

  parent (pyctr, host namespaces)              child (new namespaces)
  ───────────────────────────────              ──────────────────────
  clone(NEWPID|NEWNS|NEWUTS|NEWIPC|NEWNET[|NEWUSER])
        │                                       PDEATHSIG=KILL
        │                                       read(go) ........ blocks
  write uid_map / gid_map (user ns)                 .
  state.json: created, pid                          .
  network: veth/macvlan into /proc/PID/ns/net       .
  write etc/hosts, resolv.conf                      .
  write(go, GO) ──────────────────────────────▶ join namespaces (setns)
        │                                       setuid(0) in the user ns
        │                                       hostname, mounts, pivot_root
        │                                       ids, capabilities, fds
  read(report) .................. blocks        execve(CMD)
        │  ◀──────────── EOF (exec worked) ───  (report closes on exec)
        │  ◀── "step\\0errno\\0message" ───────  or: any step failed, exit 125
  state.json: running
  wait, forwarding signals
  state.json: stopped, exit code; clean up

If the parent fails before GO it closes `go` without writing: the child
reads EOF and exits; the parent kills and reaps it anyway, then undoes
what it did. The order is checked on both sides: the child accepts only
GO as its first byte; the parent accepts only EOF or one well-formed report.
"""
import os

from pyctr.errors import EXIT_CANNOT_EXEC, EXIT_NOT_FOUND, EXIT_RUNTIME, PyctrError

GO = b"G"
SEP = b"\0"


class Channel:
    """Both pipes, created before clone. Each side closes the ends it does
    not use right after clone, so EOF means what the diagram says."""

    def __init__(self):
        self.go_r, self.go_w = os.pipe2(os.O_CLOEXEC)
        self.report_r, self.report_w = os.pipe2(os.O_CLOEXEC)

    # -- parent ---------------------------------------------------------
    def parent_side(self):
        os.close(self.go_r)
        os.close(self.report_w)

    def send_go(self):
        os.write(self.go_w, GO)
        os.close(self.go_w)
        self.go_w = -1

    def abort(self):
        """Close everything the parent holds (idempotent)."""
        for attr in ("go_w", "report_r"):
            fd = getattr(self, attr)
            if fd >= 0:
                os.close(fd)
                setattr(self, attr, -1)

    def wait_exec(self):
        """Block until the child exec'd (returns None) or reported a failure
        (returns a PyctrError with the exit code that failure deserves)."""
        chunks = []
        while True:
            data = os.read(self.report_r, 4096)
            if not data:
                break
            chunks.append(data)
        os.close(self.report_r)
        self.report_r = -1
        if not chunks:
            return None
        return decode_report(b"".join(chunks))

    # -- child ----------------------------------------------------------
    def child_side(self):
        os.close(self.go_w)
        os.close(self.report_r)

    def wait_go(self):
        got = os.read(self.go_r, 1)
        os.close(self.go_r)
        if got != GO:
            # Parent gave up (EOF) or spoke out of turn: nothing to report to.
            os._exit(EXIT_RUNTIME)

    def report(self, step, errno, message):
        os.write(self.report_w, encode_report(step, errno, message))


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
