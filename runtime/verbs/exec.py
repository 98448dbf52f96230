"""`pyctr exec NAME CMD...`: run a command in a running container."""
from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError


def cmd_exec(paths, argv):
    args = parse_options("exec", "Run CMD in a running container (joins all its namespaces).",
                         [Opt("-e --env", "list", "KEY=VALUE"), Opt("-w --workdir"),
                          Opt("-u --user", help="UID[:GID] or a name from the container's /etc/passwd")],
                         argv, positionals=("name",), rest="command")
    if args is None:
        return 0
    if not args["name"] or not args["command"]:
        raise PyctrError("exec: usage: pyctr exec [OPTIONS] NAME CMD...")
    from pyctr import enter, jsonio
    from pyctr.state import StateStore
    store = StateStore(paths)
    config = jsonio.loads(store.read_file(args["name"], "config.json"))
    root = "/proc/%d/root" % store.load(args["name"]).pid  # -u NAME is looked up there
    process = enter.process_from_config(config, args["command"], args["env"], args["workdir"],
                                        args["user"], root)
    from pyctr import seccomp
    return enter.enter(paths, args["name"], process, seccomp=seccomp.for_exec(paths, config))
