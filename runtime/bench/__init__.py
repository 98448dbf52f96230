"""`pyctr bench startup|net|paper|engines|scale`: benchmarks shipped with pyctr.

Each sub-benchmark lives in its own module, imported only when asked for.
"""
import sys

from pyctr.errors import PyctrError

SUBCOMMANDS = {
    "startup": ("pyctr.bench.startup", "pyctr run --net=none vs runc, crun and bwrap"),
    "net": ("pyctr.bench.net",
            "pyctr networking vs runc and crun + CNI plugins; iperf3 throughput"),
    "paper": ("pyctr.bench.paper", "the study's experiments"),
    "engines": ("pyctr.bench.engines", "podman and containerd with pyctr vs runc and crun"),
    "scale": ("pyctr.bench.scale", "N = 1..1,000 detached containers: each start, memory, ps, rm"),
}

USAGE = """usage: pyctr bench {startup|net|paper|engines|scale} [OPTIONS]

%s
Run `pyctr bench SUB --help` for its options."""


def command(paths, argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE % "\n".join("  %-8s %s" % (k, h) for k, (_, h) in SUBCOMMANDS.items()))
        return 0
    sub, rest = argv[0], argv[1:]
    if sub not in SUBCOMMANDS:
        raise PyctrError("bench: unknown benchmark %r (choose from %s)"
                         % (sub, ", ".join(SUBCOMMANDS)))
    name = SUBCOMMANDS[sub][0]
    try:
        module = __import__(name, fromlist=["command"])
    except ModuleNotFoundError as e:
        if e.name != name:  # a real import error inside the module: show it
            raise
        raise PyctrError("bench %s is not available in this build (no %s)"
                         % (sub, name)) from e
    sys.stdout.flush()
    return module.command(paths, rest)
