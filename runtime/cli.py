"""Command line: global options, then a verb. Each verb's module is imported
only when that verb runs, so `pyctr run` pays for nothing else.

Exit codes (also in README): the workload's own; 128+N if it died of signal
N; 125 pyctr failed; 126 command cannot be executed; 127 command not found.
"""
import os
import sys

from pyctr.errors import PyctrError

# verb -> (module, function, one-line help). function(paths, argv) -> int
VERBS = {
    "run": ("pyctr.verbs.run", "cmd_run", "create and start a container"),
    "exec": ("pyctr.verbs.exec", "cmd_exec", "run a command in a running container"),
    "ps": ("pyctr.verbs.show", "cmd_ps", "list containers"),
    "inspect": ("pyctr.verbs.show", "cmd_inspect", "show a container's state as JSON"),
    "kill": ("pyctr.verbs.remove", "cmd_kill", "send a signal to a container"),
    "rm": ("pyctr.verbs.remove", "cmd_rm", "remove a container"),
    "logs": ("pyctr.verbs.show", "cmd_logs", "print a detached container's output"),
    "spec": ("pyctr.verbs.run", "cmd_spec", "print the OCI config a run would use"),
    "gc": ("pyctr.verbs.remove", "cmd_gc", "remove whatever a crash left behind"),
    "image": ("pyctr.images.cli", "command", "build, import, list and remove images"),
    "net": ("pyctr.network.cli", "command", "create, list, inspect and remove networks"),
    "cluster": ("pyctr.cluster.cli", "command", "start and stop a virtual cluster of containers"),
    "mpi-doctor": ("pyctr.mpi.doctor", "command", "check a container setup for MPI pitfalls"),
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
    # One line, whatever the message quotes from the input: line breaks and
    # other control characters (a terminal's escape sequences) are escaped.
    message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
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
    words = " ".join(p.upper() for p in positionals)
    print("usage: pyctr %s [OPTIONS] %s%s\n\n%s\n\noptions:" % (
        prog, words, " %s..." % rest.upper() if rest else "", summary))
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


LAUNCHER = """#!%(python)s %(flag)s
# The pyctr command. -S skips site and the .pth hooks it runs; pip's own
# console script would also import re: both only add start-up time.
import sys; %(path)s
from pyctr.cli import main; raise SystemExit(main())
"""


def print_table(rows):
    """rows[0] is the header; columns are as wide as their widest cell."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def write_launcher(path, python=None):
    """Install the `pyctr` command at `path` for this interpreter and install."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.basename(here) == "pyctr":
        flag, extra = "-S", "sys.path.append(%r)" % os.path.dirname(here)
    else:  # an editable install: only site's import hook finds runtime/ as pyctr
        flag, extra = "-s", "pass"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(LAUNCHER % {"python": python or sys.executable, "flag": flag, "path": extra})
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
