"""The `pyctr` command that install.sh puts on PATH.

It is pyctr-front (csrc/front.c, built beside the package by setup.py): a
small static program that does engines' frequent calls (`start`, `state`,
`kill ID [NUMBER]`, `delete` of a stopped container) from the container's
record without Python's start-up, and execs the interpreter for everything
else. How to exec it is patched into the copy at `path`: MARKER below, at
front.c's CONFIG. Without a built pyctr-front (a source tree never built)
the command is a Python script doing the same as the exec'd code.
"""
import os
import sys

MARKER = b"pyctr-front-config-v1\0"
CONFIG_SIZE = 4096  # front.c's CONFIG, marker included

# -S skips site and the .pth hooks it runs; pip's own console script would
# also import re: both only add start-up time.
CODE = """import sys; %(path)s
try:  # an interrupt while importing: the exit code of an interrupt, no traceback
    import posix
    if posix.environ.pop(b"PYCTR_HELD_INT", None):  # held while Python started (pyctr-front)
        import _signal
        posix.unsetenv("PYCTR_HELD_INT")
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, (_signal.SIGINT,))
    %(pack)s
    from pyctr.cli import exit_with, main
except KeyboardInterrupt:
    raise SystemExit(130)
exit_with(main())
"""

SCRIPT = "#!%(python)s %(flag)s\n# The pyctr command (see pyctr.launcher).\n%(code)s"


def front_binary():
    """pyctr-front as built beside the package, or None."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyctr-front")
    return path if os.path.isfile(path) else None


def _installed():
    """The package's directory in a regular install, None in an editable
    one (the source tree's runtime/)."""
    here = os.path.dirname(os.path.abspath(__file__))
    return here if os.path.basename(here) == "pyctr" else None


def _python_argv(python):
    """(interpreter, flag, code) that run pyctr.cli for this install."""
    here = _installed()
    if here:
        flag, extra = "-S", "sys.path.append(%r)" % os.path.dirname(here)
        pack = "from pyctr import codepack; codepack.install(%r)" % here
    else:  # an editable install: only site's import hook finds runtime/ as pyctr
        flag, extra, pack = "-s", "pass", "pass"
    return python or sys.executable, flag, CODE % {"path": extra, "pack": pack}


def write(path, python=None):
    """Install the `pyctr` command at `path` for this interpreter and install
    (atomically: an engine may be running the old one)."""
    from pyctr.spec import OCI_VERSION
    python, flag, code = _python_argv(python)
    if _installed():  # its modules from one file
        from pyctr import codepack
        codepack.build(_installed())
    binary = front_binary()
    tmp = path + ".tmp"
    if binary:
        with open(binary, "rb") as f:
            image = bytearray(f.read())
        at = image.find(MARKER)
        # -P: no current directory on sys.path (-c would put it first): root's
        # pyctr must not import a module lying where it was started.
        strings = [OCI_VERSION, python, flag, "-P", "-c", code]
        config = MARKER + b"".join(s.encode() + b"\0" for s in strings) + b"\0"
        if at < 0 or image.find(MARKER, at + 1) >= 0 or len(config) > CONFIG_SIZE:
            raise RuntimeError("%s: no single configuration area of %d bytes" % (binary,
                                                                                  CONFIG_SIZE))
        image[at:at + len(config)] = config
        with open(tmp, "wb") as f:
            f.write(image)
    else:
        with open(tmp, "w") as f:
            f.write(SCRIPT % {"python": python, "flag": flag, "code": code})
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def interpreter(path):
    """The Python interpreter the command at `path` runs, or None if it is
    not a pyctr launcher (a script's #! line, or pyctr-front's CONFIG)."""
    with open(path, "rb") as f:
        image = f.read()
    if image.startswith(b"#!"):
        return image[2:].split(b"\n", 1)[0].decode().split()[0]
    at = image.find(MARKER)
    if at < 0:
        return None
    strings = image[at + len(MARKER):at + CONFIG_SIZE].split(b"\0")
    return strings[1].decode() if len(strings) > 2 and strings[1] else None
