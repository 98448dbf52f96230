"""One error type, crun-style: what failed, the errno if the kernel said no,
and the exit code the CLI turns it into (one line on stderr, no traceback)."""
from pyctr import posixos as os  # os without its import cost: see posixos


EXIT_RUNTIME = 125      # pyctr itself failed (bad flags, bad config, a syscall)
EXIT_CANNOT_EXEC = 126  # the command exists but cannot be executed
EXIT_NOT_FOUND = 127    # the command does not exist in the container


class PyctrError(Exception):
    def __init__(self, message, errno=0, exit_code=EXIT_RUNTIME):
        super().__init__(message)
        self.message = message
        self.errno = errno
        self.exit_code = exit_code
        self._explain = bool(errno)  # append strerror only if asked to

    def __str__(self):
        if self._explain:
            return "%s: %s" % (self.message, os.strerror(self.errno))
        return self.message


def from_oserror(what, err):
    """Wrap an OSError from `what` (e.g. "mount /proc") as a PyctrError."""
    return PyctrError(what, err.errno or 0)
