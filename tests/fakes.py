"""A recording double of pyctr.syscalls.Syscalls, for unit tests without
root: every call is appended to .calls as a tuple, and the questions the
rootfs steps ask (exists? directory?) are answered from .dirs/.files (a
path inside a root is looked up as the plain string root + path).

Like youki's test double of its Syscall trait, it has exactly the real
class's methods: a name Syscalls lacks raises AttributeError, so a
misspelt call fails the unit test instead of being recorded."""
from pyctr.syscalls import Syscalls

_ANSWERS = ("exists", "is_dir", "locked_flags", "exists_in_root", "locked_flags_in_root")


class RecordingSyscalls:
    def __init__(self, dirs=(), files=()):
        self.calls = []
        self.dirs = set(dirs)
        self.files = set(files)

    def __getattr__(self, name):
        if name.startswith("_") or not callable(getattr(Syscalls, name, None)):
            raise AttributeError("Syscalls has no method %r" % name)

        def record(*args):
            self.calls.append((name, *args))
            return 0
        return record

    def exists(self, path):
        return path in self.dirs or path in self.files

    def is_dir(self, path):
        return path in self.dirs

    def exists_in_root(self, root, path):
        return self.exists(root + path)

    def locked_flags(self, path):
        return 0

    def locked_flags_in_root(self, root, path):
        return 0

    def names(self):
        return [c[0] for c in self.calls]


assert all(callable(getattr(Syscalls, n, None)) for n in _ANSWERS), "fake answers a lost method"
