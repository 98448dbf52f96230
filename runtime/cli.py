"""Command line: global options, then a verb. Each verb's module is imported
only when that verb runs, so `pyctr run` pays for nothing else.

Exit codes (also in README): the workload's own; 128+N if it died of signal
N; 125 pyctr failed; 126 command cannot be executed; 127 command not found.
"""
import os
import sys

from pyctr.errors import EXIT_RUNTIME, PyctrError

# verb -> (module, function, one-line help). function(paths, argv) -> int
VERBS = {
    "run": ("pyctr.commands", "cmd_run", "create and start a container"),
    "exec": ("pyctr.commands", "cmd_exec", "run a command in a running container"),
    "ps": ("pyctr.commands", "cmd_ps", "list containers"),
    "inspect": ("pyctr.commands", "cmd_inspect", "show a container's state as JSON"),
    "kill": ("pyctr.commands", "cmd_kill", "send a signal to a container"),
    "rm": ("pyctr.commands", "cmd_rm", "remove a container"),
    "logs": ("pyctr.commands", "cmd_logs", "print a detached container's output"),
    "spec": ("pyctr.commands", "cmd_spec", "print the OCI config a run would use"),
    "gc": ("pyctr.commands", "cmd_gc", "remove whatever a crash left behind"),
    "image": ("pyctr.images", "command", "build, import, list and remove images"),
    "net": ("pyctr.network.cli", "command", "create, list, inspect and remove networks"),
    "cluster": ("pyctr.cluster", "command", "start and stop a virtual cluster of containers"),
    "mpi-doctor": ("pyctr.mpi", "doctor_command", "check a container setup for MPI pitfalls"),
    "bench": ("pyctr.bench", "command", "benchmarks: startup, net, paper"),
}

USAGE = """usage: pyctr [--root DIR] [--config DIR] [--data DIR] VERB [ARGS...]

verbs:
%s
Run `pyctr VERB --help` for a verb's options."""


def usage():
    return USAGE % "\n".join("  %-11s %s" % (v, h) for v, (_, _, h) in VERBS.items())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return dispatch(argv)
    except PyctrError as e:
        _say(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


def _say(message):
    sys.stderr.write("pyctr: %s\n" % message)
    sys.stderr.flush()


def dispatch(argv):
    from pyctr.paths import Paths
    globals_ = {"--root": None, "--config": None, "--data": None}
    while argv and argv[0].startswith("-"):
        flag, _, value = argv[0].partition("=")
        if flag in ("-h", "--help"):
            print(usage())
            return 0
        if flag == "--version":
            print("pyctr 0.1.0")
            return 0
        if flag not in globals_:
            raise PyctrError("unknown global option %s (see pyctr --help)" % flag)
        if not value:
            if len(argv) < 2:
                raise PyctrError("%s needs a value" % flag)
            value = argv[1]
            argv = argv[1:]
        globals_[flag] = os.path.abspath(value)
        argv = argv[1:]
    if not argv:
        raise PyctrError("no verb given (see pyctr --help)")
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        raise PyctrError("unknown verb %r (see pyctr --help)" % verb)
    module, function, _ = VERBS[verb]
    paths = Paths(globals_["--root"], globals_["--config"], globals_["--data"])
    mod = __import__(module, fromlist=[function])
    return getattr(mod, function)(paths, rest)


def arg_parser(prog, description):
    """An argparse parser whose errors are one line and exit 125, like every
    other pyctr failure (argparse would print usage and exit 2)."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise PyctrError("%s: %s" % (self.prog, message))

    return Parser(prog="pyctr " + prog, description=description)


if __name__ == "__main__":
    sys.exit(main())
