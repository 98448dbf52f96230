"""`pyctr run` and `pyctr spec`: command line (over a -f TOML job, or an
OCI bundle) -> one frozen Spec -> a Container, attached or detached."""
from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError

RUN_OPTIONS = [
    Opt("-f --file", help="TOML job file with the same settings (flags override it)"),
    Opt("--bundle", help="OCI bundle directory: `pyctr run --bundle DIR [ID]` is runc's run"),
    Opt("--name", help="container name (default: its id)"),
    Opt("--rm", "bool", "remove the container when it exits", dest="remove"),
    Opt("-d --detach", "bool", "run in the background; `pyctr logs` shows its output"),
    Opt("-e --env", "list", "KEY=VALUE, or KEY to pass pyctr's own"),
    Opt("--env-file", "list", "file of KEY=VALUE lines"),
    Opt("-w --workdir", help="working directory inside"),
    Opt("-u --user", help="UID[:GID] or a name from the container's /etc/passwd"),
    Opt("--hostname"),
    Opt("-v --volume", "list", "SRC:DST[:ro] bind mount", dest="volumes"),
    Opt("--read-only", "bool", "mount the root filesystem read-only"),
    Opt("--tmpfs", "list", "DST[:OPTIONS] tmpfs mount"),
    Opt("--cap-add", "list", "add a capability (or ALL)"),
    Opt("--cap-drop", "list", "drop a capability (or ALL)"),
    Opt("--preserve-fds", "int", "pass fds 3..3+N-1 on to the workload"),
    Opt("--init", "bool", "run a reaper as PID 1 that forwards signals"),
    Opt("--userns", "bool", "map container root to an unprivileged host range"),
    Opt("--security-opt", "list", "seccomp=unconfined, or seccomp=FILE.json (OCI format)"),
    Opt("--pid", help="private (default), host or container:NAME"),
    Opt("--ipc", help="private (default), host or container:NAME"),
    Opt("--uts", help="private (default), host or container:NAME"),
    Opt("--net --network", "list",
        "none (default), host, container:NAME, veth:BRIDGE, macvlan:LOWER[:MODE], NAME",
        dest="net"),
    Opt("--ip", help="address for the first network, ADDR[/PREFIX]"),
    Opt("--mac", help="MAC address for the first network"),
    Opt("--mtu", "int", "MTU for the first network"),
    Opt("--cgroupns", help="private (default), host or container:NAME"),
    Opt("-m --memory", help="memory limit, e.g. 512m"),
    Opt("--memory-swap", help="memory plus swap limit (-1: unlimited swap)"),
    Opt("--cpus", help="CPU time, in CPUs (1.5)"),
    Opt("--cpu-shares", help="relative CPU weight (default 1024)"),
    Opt("--cpuset-cpus", help="CPUs the container may run on (0-3,6)"),
    Opt("--cpuset-mems", help="memory nodes the container may use"),
    Opt("--pids-limit", help="maximum number of processes (-1: unlimited)"),
    Opt("--device", "list", "HOST[:CONTAINER][:rwm] device node to add and allow"),
]
_NOT_SPEC_KEYS = ("file", "bundle", "target", "command")
# A foreground workload still running after this many seconds is left to
# pyctr-monitor (pyctr.monitor), which saves ~5 MiB per container but costs
# a second interpreter start (~40 ms) for the clean-up: short runs (the
# start-up benchmark's /bin/true, a quick command) end before it and never
# pay for that.
HANDOVER_AFTER = 1.0


def spec_from_args(paths, prog, argv):
    """run and spec: flags (over a -f TOML file, or an OCI bundle) -> Spec."""
    args = parse_options(prog, "Create and start a container running CMD in IMAGE or ROOTFS.",
                         RUN_OPTIONS, argv, positionals=("target",), rest="command")
    if args is None:
        return None
    if args["bundle"]:
        if prog == "run":  # runc's form is taken before this (cmd_run)
            raise PyctrError("run --bundle is runc's run: pyctr run [--detach] [--keep] "
                             "[--pid-file P] [--console-socket S] --bundle DIR [ID]; the "
                             "command and settings come from config.json")
        from pyctr import oci
        if args["target"]:
            args["command"].insert(0, args["target"])
            args["target"] = None
        return oci.load_bundle(args["bundle"], args, paths)
    from pyctr import specgen
    opts = specgen.load_toml(args["file"]) if args["file"] else {}
    for key, value in args.items():
        if key not in _NOT_SPEC_KEYS and value not in (None, []):
            opts[key] = value
    if args["target"]:
        opts["target"] = args["target"]
    if args["command"]:
        opts["command"] = args["command"]
    return specgen.build(paths, opts)


def cmd_run(paths, argv):
    """pyctr's run (IMAGE|ROOTFS CMD...), or runc's when -b/--bundle is
    given with runc's options only and at most one other word, the ID."""
    if any(a in ("-b", "--bundle") or a.startswith("--bundle=") for a in argv):
        from pyctr.oci import cli
        if cli.is_bundle_run(argv):
            return cli.cmd_run(paths, argv)
    from pyctr import cgroups
    layout, wait = cgroups.start_warm_up(paths)  # beside importing, building the spec
    try:
        spec = spec_from_args(paths, "run", argv)
    except BaseException:
        if wait:
            wait()
        raise
    if spec is None or spec.detach:
        if wait:
            wait()  # no container made by this process (a detached one's monitor forks)
        if spec is None:
            return 0
        from pyctr.monitor import start_detached
        print(start_detached(paths, spec))
        return 0
    from pyctr import container
    c = container.Container(paths, spec)
    c.cgroup_layout, c.warming = layout, wait
    c.create(start_follows=True)
    c.start()
    code = c.wait(HANDOVER_AFTER)
    if code is None:
        from pyctr.monitor import hand_over
        code = hand_over(c)  # pyctr-monitor waits in this process's place
    c.cleanup()
    return code


def cmd_spec(paths, argv):
    """pyctr's spec [OPTIONS] IMAGE|ROOTFS CMD... prints the config a run
    would use; with no image or rootfs (only -b/--bundle DIR at most) it is
    runc's: a starting DIR/config.json (default: here) for DIR/rootfs."""
    import json
    runc_form = _runc_spec_bundle(argv)
    if runc_form:
        from pyctr.oci import template
        template.write(runc_form)
        return 0
    spec = spec_from_args(paths, "spec", argv)
    if spec is None:
        return 0
    print(json.dumps(spec.to_oci(), indent=2))
    return 0


def _runc_spec_bundle(argv):
    """The bundle dir of runc's `spec [-b DIR]`, or None for pyctr's form."""
    if not argv:
        return "."
    flag, eq, value = argv[0].partition("=")
    if flag in ("-b", "--bundle") and (len(argv) == 1 + (not eq)) and (value or len(argv) > 1):
        return value or argv[1]
    return None
