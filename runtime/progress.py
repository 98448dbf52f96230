"""Progress for anything that takes more than a few seconds.

    with Progress("building image busybox", total=4) as p:
        p.step("downloading busybox-static")
        ...

On a terminal the current line is rewritten in place; otherwise (CI logs)
each step is one line. Always on stderr, so stdout stays machine-readable.

With held=True a failure shows nothing of the progress: its error is the one line
the user sees. On a terminal the live line is cleared; otherwise the lines wait
until the work is done.
"""
import sys
import time


class Progress:
    def __init__(self, title, total=None, stream=None, held=False, quiet=False):
        self.quiet = quiet  # says nothing (work too short to report)
        self.title = title
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.held = held
        self.lines = []
        self.t0 = time.monotonic()

    def __enter__(self):
        self._emit("started")
        return self

    def step(self, what):
        """Announce the step that starts now."""
        self.done += 1
        self._emit(what)

    def _emit(self, what):
        if self.quiet:
            return
        count = "[%d/%d] " % (self.done, self.total) if self.total else ""
        line = "%s: %s%s (%.1fs)" % (self.title, count, what, time.monotonic() - self.t0)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        elif self.held:
            self.lines.append(line + "\n")
            return
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def __exit__(self, exc_type, exc, tb):
        if self.quiet:
            return False
        outcome = "failed" if exc_type else "done"
        if self.tty:
            self.stream.write("\r\033[K")
        if self.held and exc_type:
            self.stream.flush()
            return False
        self.stream.write("".join(self.lines))
        self.stream.write("%s: %s in %.1fs\n" % (self.title, outcome, time.monotonic() - self.t0))
        self.stream.flush()
        return False
