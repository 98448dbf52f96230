"""runc's verbs that pyctr had no verb for (argv -> pyctr.oci.lifecycle /
control), and runc's form of `run`. Where pyctr already had a verb of the
same name (kill, ps, exec, run), pyctr.verbs takes both forms.

  create [-b B] [--pid-file P] [--console-socket S] [--preserve-fds N] [--no-pivot] ID
  start ID          state ID          delete [-f] ID        features
  pause ID          resume ID         list [--format table|json] [-q]
  run [-d] [--keep] ... --bundle B [ID]   (from pyctr.verbs.run)
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import jsonio
from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError
from pyctr.oci import lifecycle


def _one_id(prog, summary, options, argv):
    # runc also takes the ID before the options: `create ID -b BUNDLE` is
    # how Slurm's oci.conf examples write it.
    if len(argv) > 1 and not argv[0].startswith("-"):
        argv = list(argv[1:]) + [argv[0]]
    args = parse_options(prog, summary, options, argv, positionals=("id",))
    if args is not None and not args["id"]:
        raise PyctrError("%s: usage: pyctr %s [OPTIONS] ID" % (prog, prog))
    return args


CREATE_OPTIONS = [
    Opt("-b --bundle", help="bundle directory (default: the current one)"),
    Opt("--pid-file", help="write init's pid here"),
    Opt("--console-socket", help="unix socket that receives the pty master"),
    Opt("--preserve-fds", "int", "pass fds 3..3+N-1 on to the container"),
    Opt("--no-pivot", "bool", "MS_MOVE + chroot instead of pivot_root"),
    Opt("--no-new-keyring", "bool", "accepted: pyctr makes no session keyring"),
]


def cmd_create(paths, argv):
    args = _one_id("create", "Create a container from an OCI bundle; it waits for `start`.",
                   CREATE_OPTIONS, argv)
    if args is None:
        return 0
    lifecycle.create(paths, args["bundle"] or ".", args["id"], args["pid_file"],
                     args["console_socket"], args["preserve_fds"] or 0, args["no_pivot"])
    return 0


def cmd_start(paths, argv):
    args = _one_id("start", "Start a created container.", [], argv)
    if args is None:
        return 0
    lifecycle.start(paths, args["id"])
    return 0


def cmd_state(paths, argv):
    args = _one_id("state", "Print a container's runtime-spec state JSON.", [], argv)
    if args is None:
        return 0
    _, state = lifecycle.load(paths, args["id"])
    print(_indented(lifecycle.state_json(state)))
    return 0


def _indented(fields):
    """runc's layout of `state`, a key per line, without importing json
    (and the re it needs): the values are flat but for annotations."""
    return "{\n%s\n}" % ",\n".join("  %s: %s" % (jsonio.dumps(k), jsonio.dumps(v))
                                     for k, v in fields.items())


def cmd_delete(paths, argv):
    args = _one_id("delete", "Delete a container (running ones only with --force).",
                   [Opt("-f --force", "bool", "kill it first; an unknown ID is no error")], argv)
    if args is None:
        return 0
    lifecycle.delete(paths, args["id"], args["force"])
    return 0


def cmd_pause(paths, argv):
    return _freeze_verb(paths, "pause", "Freeze every process of a container.", argv)


def cmd_resume(paths, argv):
    return _freeze_verb(paths, "resume", "Thaw a paused container.", argv)


def _freeze_verb(paths, prog, summary, argv):
    args = _one_id(prog, summary, [], argv)
    if args is None:
        return 0
    from pyctr.oci import control
    store, state = lifecycle.load(paths, args["id"])
    getattr(control, prog)(store, state)
    return 0


def cmd_list(paths, argv):
    args = parse_options("list", "List containers (runc's columns).", [
        Opt("-f --format", help="table (default) or json"),
        Opt("-q --quiet", "bool", "ids only"),
    ], argv)
    if args is None:
        return 0
    from pyctr.state import StateStore
    store = StateStore(paths)
    states = []
    for name in store.names():
        try:
            states.append(lifecycle.state_json(store.load(name)))
        except PyctrError:
            continue  # removed meanwhile, or damaged (gc says so)
    if args["quiet"]:
        print("\n".join(s["id"] for s in states))
    elif args["format"] == "json":
        print(jsonio.dumps(states))
    else:
        from pyctr.cli import print_table
        print_table([("ID", "PID", "STATUS", "BUNDLE", "CREATED")] + [
            (s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"] or "")
            for s in states])
    return 0


def cmd_features(paths, argv):
    if parse_options("features", "Print what pyctr supports (runtime-spec features JSON).",
                     [], argv) is None:
        return 0
    from pyctr.oci.features import features
    import json
    print(json.dumps(features(), indent=2))
    return 0


RUN_OPTIONS = CREATE_OPTIONS + [
    Opt("-d --detach", "bool", "return once started (create + start)"),
    Opt("--keep", "bool", "keep the container's record after it exits"),
    Opt("--rm", "bool", "accepted: removing at exit is the default", dest="remove"),
]


def is_bundle_run(argv):
    """`pyctr run` in runc's form: -b/--bundle given, among options that are
    all runc run's, and at most one positional (the ID) before or after
    them (Slurm writes `run ID -b BUNDLE`)."""
    names = {n: o for o in RUN_OPTIONS for n in o.names}
    positionals, bundle, i = 0, False, 0
    while i < len(argv):
        name = argv[i].partition("=")[0]
        if argv[i].startswith("-") and argv[i] != "-":
            opt = names.get(name)
            if opt is None:
                return False
            bundle = bundle or "bundle" == opt.dest
            if opt.kind != "bool" and "=" not in argv[i]:
                i += 1
        else:
            positionals += 1
        i += 1
    return bundle and positionals <= 1


def cmd_run(paths, argv):
    """runc run: [OPTIONS] --bundle B [ID] in any order (see is_bundle_run)."""
    options, ids, i = [], [], 0
    names = {n: o for o in RUN_OPTIONS for n in o.names}
    while i < len(argv):  # the ID may come first: move it behind the options
        opt = names.get(argv[i].partition("=")[0])
        if opt is None:
            ids.append(argv[i])
        else:
            options.append(argv[i])
            if opt.kind != "bool" and "=" not in argv[i]:
                options.append(argv[i + 1])
                i += 1
        i += 1
    args = parse_options("run", "Create, start and wait for a container from an OCI bundle.",
                         RUN_OPTIONS, options + ids, positionals=("id",))
    if args is None:
        return 0
    cid = args["id"] or os.urandom(6).hex()
    return lifecycle.run(paths, args["bundle"] or ".", cid, args["pid_file"],
                         args["console_socket"], args["preserve_fds"] or 0, args["no_pivot"],
                         args["detach"], args["keep"])
