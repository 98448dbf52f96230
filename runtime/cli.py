"""Command line: global options, then a verb. Each verb's module is imported
only when that verb runs, so `pyctr run` pays for nothing else.

Exit codes (also in README): the workload's own; 128+N if it died of signal
N; 125 pyctr failed; 126 command cannot be executed; 127 command not found.
"""
import gc
import sys

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError

# Objects the collector may count before it runs (Python's default: 700).
# A command's start-up makes thousands that all live until it exits: the
# default made a `pyctr run` walk them six times before the workload ran,
# freeing nothing (and the cloned child copied the pages that touched).
# Long-lived verbs (netd, bench) still collect, less often.
GC_THRESHOLD = 50000

# verb -> (module, function, one-line help). function(paths, argv) -> int
VERBS = {
    "run": ("pyctr.verbs.run", "cmd_run", "create and start a container (runc's with --bundle)"),
    "exec": ("pyctr.verbs.exec", "cmd_exec", "run a command in a running container"),
    "ps": ("pyctr.verbs.show", "cmd_ps", "list containers; with an ID, its processes"),
    "inspect": ("pyctr.verbs.show", "cmd_inspect", "show a container's state as JSON"),
    "kill": ("pyctr.verbs.remove", "cmd_kill", "send a signal to a container"),
    "rm": ("pyctr.verbs.remove", "cmd_rm", "remove a container"),
    "logs": ("pyctr.verbs.show", "cmd_logs", "print a detached container's output"),
    "spec": ("pyctr.verbs.run", "cmd_spec", "print the OCI config a run would use (alone: write config.json)"),
    "gc": ("pyctr.verbs.remove", "cmd_gc", "remove whatever a crash left behind"),
    "image": ("pyctr.images.cli", "command", "build, import, list and remove images"),
    "net": ("pyctr.network.cli", "command", "create, list, inspect and remove networks"),
    "cluster": ("pyctr.cluster.cli", "command", "start and stop a virtual cluster of containers"),
    "mpi-doctor": ("pyctr.mpi.doctor", "command", "check a container setup for MPI pitfalls"),
    "bench": ("pyctr.bench", "command", "benchmarks: startup, net, paper, engines, scale"),
    "netd": ("pyctr.netd.cli", "command", "the network helper for unprivileged users (root)"),
    # runc's verbs, for engines (podman/conmon, containerd, Slurm): pyctr.oci
    "create": ("pyctr.oci.cli", "cmd_create", "create a container from an OCI bundle"),
    "start": ("pyctr.oci.cli", "cmd_start", "start a created container"),
    "state": ("pyctr.oci.cli", "cmd_state", "print a container's OCI state JSON"),
    "delete": ("pyctr.oci.cli", "cmd_delete", "delete a container (OCI)"),
    "pause": ("pyctr.oci.cli", "cmd_pause", "freeze a container"),
    "resume": ("pyctr.oci.cli", "cmd_resume", "thaw a paused container"),
    "list": ("pyctr.oci.cli", "cmd_list", "list containers as runc does"),
    "features": ("pyctr.oci.cli", "cmd_features", "print the OCI features pyctr supports"),
    # hidden (not in usage): pyctr-monitor's way back into pyctr (pyctr.monitor)
    "_finished": ("pyctr.monitor", "cmd_finished", "record a container's exit and clean up"),
}

USAGE = """usage: pyctr [--root DIR] [--config DIR] [--data DIR] [--log FILE]
             [--log-format text|json] [--systemd-cgroup] [--rootless X] [--debug]
             VERB [ARGS...]

verbs:
%s
Run `pyctr VERB --help` for a verb's options."""


def usage():
    return USAGE % "\n".join("  %-11s %s" % (v, h) for v, (_, _, h) in VERBS.items()
                             if not v.startswith("_"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    gc.set_threshold(GC_THRESHOLD)
    if None in (sys.stdin, sys.stdout, sys.stderr):
        _standard_fds()
    globals_ = dict(GLOBALS)
    try:
        if "PYCTR_WARM_FD" in os.environ:  # set by pyctr-front for run, create, exec
            from pyctr import cgroups
            cgroups.adopt_warm_up(os.environ.pop("PYCTR_WARM_FD"))
        return dispatch(argv, globals_)
    except PyctrError as e:
        _say(str(e), globals_)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # a bug: the engine reading --log must still see it
        if globals_["--log"]:
            _log(globals_, "error", "internal error: %s: %s" % (type(e).__name__, e))
        raise


def _standard_fds():
    """Python was started with a standard fd closed (not through pyctr-front,
    which opens /dev/null there itself: csrc/front.c says why): the same
    here, before pyctr opens a file that would take the number."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open("/dev/null", os.O_RDWR)  # the lowest free number: fd
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            os.set_inheritable(fd, True)  # the container's, as the caller's were
            setattr(sys, name, os.fdopen(fd, "w" if fd else "r", closefd=False))


def exit_with(code):
    """End the process with `code` (main()'s), skipping the interpreter's
    teardown when nothing needs it: freeing every module and object costs a
    short `pyctr run` 3-8 ms (measured), and the kernel frees it all at
    once. Python's own exit still runs where something waits for it: an
    atexit callback (logging, weakref.finalize, tempfile), a thread that is
    not the main one, or output that does not flush (a closed pipe: the
    usual exit then reports it as before)."""
    import _thread
    import atexit
    code = 0 if code is None else code
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: closed when Python started
                stream.flush()
    except (OSError, ValueError):
        raise SystemExit(code)
    if not isinstance(code, int) or _thread._count() or atexit._ncallbacks():
        raise SystemExit(code)
    os._exit(code & 0xFF)


def _say(message, globals_=None):
    """A failure: one line on stderr; with --log also there (runc's form);
    with --debug the whole cause chain."""
    # One line, whatever the message quotes from the input: line breaks and
    # other control characters (a terminal's escape sequences) are escaped.
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    sys.stderr.write("pyctr: %s\n" % message)
    if globals_ and globals_["--debug"]:
        import traceback
        traceback.print_exc()
    sys.stderr.flush()
    if globals_ and globals_["--log"]:
        _log(globals_, "error", message)


def _log(globals_, level, message):
    from pyctr.oci import errlog
    errlog.write(globals_["--log"], globals_["--log-format"] or "text", level, message)


# Global options: value ones (None until given) and flags (False). runc's
# --rootless (Slurm's oci.conf examples pass it) is accepted: pyctr runs
# rootless whenever it is not root.
GLOBALS = {"--root": None, "--config": None, "--data": None, "--log": None,
           "--log-format": None, "--rootless": None, "--systemd-cgroup": False,
           "--debug": False}
PATH_GLOBALS = ("--root", "--config", "--data", "--log")


def dispatch(argv, globals_=None):
    from pyctr.paths import Paths
    globals_ = dict(GLOBALS) if globals_ is None else globals_
    while argv and argv[0].startswith("-"):
        flag, _, value = argv[0].partition("=")
        if flag in ("-h", "--help"):
            print(usage())
            return 0
        if flag in ("-v", "--version"):
            from pyctr.spec import OCI_VERSION
            print("pyctr version 0.1.0\nspec: %s" % OCI_VERSION)
            return 0
        if flag not in globals_:
            raise PyctrError("unknown global option %s (see pyctr --help)" % flag)
        argv = argv[1:]
        if globals_[flag] is False:  # a flag
            globals_[flag] = True
            continue
        if not value:
            if not argv:
                raise PyctrError("%s needs a value" % flag)
            value, argv = argv[0], argv[1:]
        globals_[flag] = os.path.abspath(value) if flag in PATH_GLOBALS else value
    if globals_["--log-format"] not in (None, "text", "json"):
        raise PyctrError("--log-format is text or json, not %r" % globals_["--log-format"])
    if globals_["--systemd-cgroup"] and globals_["--log"]:
        _log(globals_, "warning", "--systemd-cgroup ignored: pyctr manages cgroupfs itself")
    # pyctr-front (pyctr.launcher) did this verb's work and had it fail in a
    # way only it saw (init's answer at the exec barrier): reported here, as
    # every failure is (stderr, --log).
    front_error = os.environ.pop("PYCTR_FRONT_ERROR", None)
    if front_error is not None:
        raise PyctrError(front_error.encode(errors="surrogateescape").decode(errors="replace"))
    if not argv:
        raise PyctrError("no verb given (see pyctr --help)")
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        raise PyctrError("unknown verb %r (see pyctr --help)" % verb)
    module, function, _ = VERBS[verb]
    paths = Paths(globals_["--root"], globals_["--config"], globals_["--data"])
    codepack = sys.modules.get("pyctr.codepack")
    if codepack:  # the installed command: the verb's modules straight from its pack
        codepack.preload(verb)
    mod = __import__(module, fromlist=[function])
    return getattr(mod, function)(paths, rest)


class Opt:
    """One option of a verb: kind is "bool", "str", "int" or "list" (repeatable)."""
    __slots__ = ("names", "dest", "kind", "help")

    def __init__(self, names, kind="str", help="", dest=None):
        self.names = names.split()
        self.kind = kind
        self.help = help
        self.dest = dest or self.names[-1].lstrip("-").replace("-", "_")


def parse_options(prog, summary, options, argv, positionals=(), rest=None):
    """A small getopt for the verbs on the start-up path (run, exec): argparse
    and the `re` it imports cost more than the rest of `pyctr run`.

    Options come first; the first non-option fills `positionals` in order,
    and with `rest` set everything after them (options too) belongs to the
    command. Returns a dict, or None after printing --help."""
    by_name = {n: o for o in options for n in o.names}
    values = {o.dest: ([] if o.kind == "list" else None) for o in options}
    values.update({p: None for p in positionals})
    if rest:
        values[rest] = []
    i, pos, options_done = 0, 0, False
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg in ("-h", "--help") and pos == 0:
            _print_help(prog, summary, options, positionals, rest)
            return None
        if arg == "--" and not options_done:
            options_done = True
            continue
        if arg.startswith("-") and arg != "-" and pos == 0 and not options_done:
            name, eq, value = arg.partition("=")
            opt = by_name.get(name)
            if opt is None:
                raise PyctrError("%s: unknown option %s (see pyctr %s --help)" % (prog, name, prog))
            if opt.kind == "bool":
                if eq:
                    raise PyctrError("%s: %s takes no value" % (prog, name))
                values[opt.dest] = True
                continue
            if not eq:
                if i >= len(argv):
                    raise PyctrError("%s: %s needs a value" % (prog, name))
                value = argv[i]
                i += 1
            if opt.kind == "int":
                try:
                    value = int(value)
                except ValueError:
                    raise PyctrError("%s: %s wants a number, not %r" % (prog, name, value))
            if opt.kind == "list":
                values[opt.dest].append(value)
            else:
                values[opt.dest] = value
            continue
        if pos < len(positionals):
            values[positionals[pos]] = arg
            pos += 1
            if pos == len(positionals) and rest:
                values[rest] = argv[i:]
                break
        elif rest:
            values[rest] = argv[i - 1:]
            break
        else:
            raise PyctrError("%s: unexpected argument %r" % (prog, arg))
    return values


def _print_help(prog, summary, options, positionals, rest):
    words = [p.upper() for p in positionals] + (["%s..." % rest.upper()] if rest else [])
    print("%s\n\n%s\n\noptions:" % (" ".join(["usage: pyctr", prog, "[OPTIONS]"] + words),
                                     summary))
    for o in options:
        arg = "" if o.kind == "bool" else " " + o.dest.upper()
        print("  %-28s %s" % (", ".join(o.names) + arg, o.help))


def arg_parser(prog, description):
    """An argparse parser whose errors are one line and exit 125, like every
    other pyctr failure (argparse would print usage and exit 2)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise PyctrError("%s: %s" % (self.prog, message))

    return Parser(prog="pyctr " + prog, description=description)


def print_table(rows):
    """rows[0] is the header; columns are as wide as their widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def write_launcher(path, python=None):
    """Install the `pyctr` command at `path` (pyctr.launcher)."""
    from pyctr import launcher
    launcher.write(path, python)


if __name__ == "__main__":
    exit_with(main())
