"""`pyctr exec`: pyctr's own options and runc's, one verb.

  pyctr exec [OPTIONS] ID CMD...            the container's process settings + CMD
  pyctr exec [OPTIONS] --process FILE ID    a runtime-spec process object (engines)

runc's options (--detach, --pid-file, --tty, --console-socket, --cwd, --cap,
--preserve-fds, ...) work with either form; see runtime/enter.py for how
the process gets into the container.
"""
from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError

OPTIONS = [
    Opt("-p --process", help="runtime-spec process JSON file (instead of CMD)"),
    Opt("-e --env", "list", "KEY=VALUE"),
    Opt("-w --workdir --cwd", help="working directory inside", dest="cwd"),
    Opt("-u --user", help="UID[:GID] or a name from the container's /etc/passwd"),
    Opt("-g --additional-gids", "list", "an additional group id"),
    Opt("-c --cap", "list", "add a capability"),
    Opt("--no-new-privs", "bool", "set no_new_privileges"),
    Opt("-d --detach", "bool", "return once the command started"),
    Opt("--pid-file", help="write the process's pid here"),
    Opt("-t --tty", "bool", "give the process a pty (needs --console-socket)"),
    Opt("--console-socket", help="unix socket that receives the pty master"),
    Opt("--preserve-fds", "int", "pass fds 3..3+N-1 on to the command"),
    Opt("--process-label", help="SELinux label (refused unless empty)"),
    Opt("--apparmor", help="AppArmor profile (refused unless empty)"),
    Opt("--ignore-paused", "bool", "accepted (runc's)"),
    Opt("--cgroup", "list", "refused unless empty: pyctr places no process in a sub-cgroup"),
]


def cmd_exec(paths, argv):
    args = parse_options("exec", "Run a command in a running container (joins all its "
                         "namespaces).", OPTIONS, argv, positionals=("name",), rest="command")
    if args is None:
        return 0
    if not args["name"] or not (args["command"] or args["process"]):
        raise PyctrError("exec: usage: pyctr exec [OPTIONS] ID CMD... "
                         "(or --process FILE ID)")
    for flag in ("process_label", "apparmor"):
        if args[flag]:
            raise PyctrError("exec: --%s: pyctr supports no LSM labels" % flag.replace("_", "-"))
    if any(args["cgroup"]):
        raise PyctrError("exec: --cgroup: pyctr places no exec'd process in a sub-cgroup")
    from pyctr import enter, jsonio
    from pyctr.state import StateStore
    store = StateStore(paths)
    config = jsonio.loads(store.read_file(args["name"], "config.json"))
    if args["process"]:
        process = process_from_file(args["process"])
        if args["command"]:
            raise PyctrError("exec: give either --process or a command, not both")
    else:
        root = "/proc/%d/root" % store.load(args["name"]).pid  # -u NAME is looked up there
        process = enter.process_from_config(config, args["command"], args["env"], args["cwd"],
                                            args["user"], root)
    try:
        _apply_flags(process, args)
    except ValueError as e:
        raise PyctrError("exec: %s" % e) from e
    terminal = bool(process.oci and process.oci.terminal)
    console_fd = -1
    if terminal:
        if not args["console_socket"]:
            raise PyctrError("exec: a terminal needs --console-socket (pyctr hands the pty "
                             "to the caller, it does not relay it)")
        from pyctr.oci import console
        console_fd = console.connect(args["console_socket"])
    pid_file = None
    if args["pid_file"]:
        from pyctr.oci.lifecycle import PidFile
        pid_file = PidFile(args["pid_file"])
    from pyctr import seccomp
    return enter.enter(paths, args["name"], process, seccomp=seccomp.for_exec(paths, config),
                       detach=bool(args["detach"]), pid_file=pid_file, console_fd=console_fd)


def _apply_flags(process, args):
    """runc's flags over the process (from the config or --process); a
    number that is none raises ValueError."""
    from pyctr.spec import CAPABILITIES
    if args["process"]:
        from pyctr.child import merge_env
        process.env = merge_env(process.env, args["env"])
        if args["cwd"]:
            process.cwd = args["cwd"]
        if args["user"]:
            uid, _, gid = args["user"].partition(":")
            process.uid, process.gid = int(uid), int(gid or uid)
    for cap in args["cap"]:
        name = cap.lower()
        name = name[4:] if name.startswith("cap_") else name
        if name not in CAPABILITIES:
            raise PyctrError("exec: unknown capability %r" % cap)
        caps = process.capabilities
        for kind in ("bounding", "effective", "permitted"):  # as runc exec --cap
            if name not in getattr(caps, kind):
                getattr(caps, kind).append(name)
    process.additional_gids += [int(g) for g in args["additional_gids"]]
    if args["no_new_privs"]:
        process.no_new_privileges = True
    if args["preserve_fds"]:
        process.preserve_fds = args["preserve_fds"]
    if args["tty"]:
        from pyctr.oci.process import OciProcess
        process.oci = process.oci or OciProcess()
        process.oci.terminal = True
    if not process.cwd.startswith("/"):
        raise PyctrError("exec: the working directory must be absolute: %s" % process.cwd)


def process_from_file(path):
    """A runtime-spec process object (runc exec --process) -> Process."""
    import json
    from pyctr import identity
    from pyctr.oci import process
    from pyctr.spec import Process
    try:
        with open(path) as f:
            data = json.load(f)
        user = data.get("user") or {}
        if not data.get("args"):
            raise ValueError("args is empty")
        return Process(
            args=[str(a) for a in data["args"]], env=[str(e) for e in data.get("env") or []],
            cwd=data.get("cwd") or "/", uid=int(user.get("uid", 0)),
            gid=int(user.get("gid", 0)),
            additional_gids=[int(g) for g in user.get("additionalGids") or []],
            capabilities=identity.capabilities_from_oci(data.get("capabilities")),
            no_new_privileges=bool(data.get("noNewPrivileges", False)),
            oci=process.parse(data))
    except OSError as e:
        raise PyctrError("exec: cannot read %s: %s" % (path, e.strerror)) from e
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise PyctrError("exec: %s: %s" % (path, e)) from e
