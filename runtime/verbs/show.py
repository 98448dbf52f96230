"""`pyctr ps`, `pyctr inspect`, `pyctr logs`: what pyctr knows of its
containers, read from their records."""
import sys

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError


def cmd_ps(paths, argv):
    """pyctr's ps [-q] (containers), and runc's ps [--format table|json] ID
    (that container's processes)."""
    args = parse_options("ps", "List containers; with an ID, that container's processes.", [
        Opt("-q --quiet", "bool", "names only (container list)"),
        Opt("-f --format", help="table (default) or json (with an ID)"),
    ], argv, positionals=("id",), rest="ps_args")
    if args is None:
        return 0
    if args["id"]:
        return _processes(paths, args["id"], args["format"] or "table")
    from pyctr.state import StateStore, live_status
    store = StateStore(paths)
    rows = []
    # Each record read once, as raw JSON, and one /proc read per live
    # container: 1,000 containers list in well under a second.
    for name in store.names():
        rec = store.peek(name)
        if rec is None:
            continue  # removed meanwhile, or damaged (gc says so)
        status = live_status(rec.get("status"), rec.get("pid"), rec.get("pid_start"),
                             rec.get("owner_pid"), rec.get("owner_start"))
        rows.append((rec.get("id") or "?", name, status, str(rec.get("pid") or "-"),
                     rec.get("created") or "?", " ".join(rec.get("command") or ())[:40]))
    if args["quiet"]:
        for row in rows:
            print(row[1])
        return 0
    fmt = "%-12s  %-20s  %-8s  %-7s  %-20s  %s"
    print(fmt % ("ID", "NAME", "STATUS", "PID", "CREATED", "COMMAND"))
    for row in rows:
        print(fmt % row)
    return 0


def _processes(paths, name, form):
    import json
    from pyctr.oci import control, lifecycle
    if form not in ("table", "json"):
        raise PyctrError("ps: --format is table or json")
    pids = control.processes(lifecycle.load(paths, name)[1])
    if form == "json":
        print(json.dumps(pids))
        return 0
    print("PID    CMD")
    for pid in pids:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # exited meanwhile
        print("%-6d %s" % (pid, cmd))
    return 0


def names_verb(prog, summary, options, argv):
    """Options, then one or more container names."""
    args = parse_options(prog, summary, options, argv, rest="names")
    if args is not None and not args["names"]:
        raise PyctrError("%s: name at least one container" % prog)
    return args


def cmd_inspect(paths, argv):
    import json
    args = names_verb("inspect", "Show containers' state (and OCI config) as JSON.", [], argv)
    if args is None:
        return 0
    from pyctr.state import StateStore
    store = StateStore(paths)
    out = []
    for name in args["names"]:
        st = store.load(name)
        record = st.to_json()
        record["status"] = st.live_status()
        record["bundle"] = store.dir(name)
        record["config"] = json.loads(store.read_file(name, "config.json"))
        out.append(record)
    print(json.dumps(out, indent=2))
    return 0


def cmd_logs(paths, argv):
    args = parse_options("logs", "Print the output of a detached container.", [], argv,
                         positionals=("name",))
    if args is None:
        return 0
    if not args["name"]:
        raise PyctrError("logs: usage: pyctr logs NAME")
    from pyctr.state import StateStore
    store = StateStore(paths)
    store.load(args["name"])
    try:
        fd = os.open(os.path.join(store.dir(args["name"]), "log"), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as e:
        raise PyctrError("container %s has no log (only detached containers keep one)"
                         % args["name"]) from e
    with os.fdopen(fd, "rb") as f:
        sys.stdout.buffer.write(f.read())
    return 0
