"""The container verbs: run, exec, ps, inspect, kill, rm, logs, spec, gc.
Each takes (paths, argv) and returns an exit code; failures are PyctrError."""
import os
import sys

from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError

# run/spec option -> specgen key, for the flags that map one to one
_RUN_KEYS = ("name", "hostname", "workdir", "user", "env", "env_file", "volumes", "tmpfs",
             "read_only", "remove", "detach", "init", "userns", "preserve_fds", "cap_add",
             "cap_drop", "pid", "ipc", "uts", "net", "ip", "mac", "mtu")


RUN_OPTIONS = [
    Opt("-f --file", help="TOML job file with the same settings (flags override it)"),
    Opt("--bundle", help="OCI bundle directory (`pyctr spec`; for run see below)"),
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
    Opt("--pid", help="private (default), host or container:NAME"),
    Opt("--ipc", help="private (default), host or container:NAME"),
    Opt("--uts", help="private (default), host or container:NAME"),
    Opt("--net --network", "list",
        "none (default), host, container:NAME, veth:BRIDGE, macvlan:LOWER[:MODE], NAME",
        dest="net"),
    Opt("--ip", help="address for the first network, ADDR[/PREFIX]"),
    Opt("--mac", help="MAC address for the first network"),
    Opt("--mtu", "int", "MTU for the first network"),
]
_NOT_SPEC_KEYS = ("file", "bundle", "target", "command")


def _spec_from_args(paths, prog, argv):
    """run and spec: flags (over a -f TOML file, or an OCI bundle) -> Spec."""
    args = parse_options(prog, "Create and start a container running CMD in IMAGE or ROOTFS.",
                         RUN_OPTIONS, argv, positionals=("target",), rest="command")
    if args is None:
        return None
    if args["bundle"]:
        if prog == "run":  # a runc-form run is taken before this (cmd_run)
            raise PyctrError("run --bundle is runc's run: pyctr run [--detach] [--keep] "
                             "[--pid-file P] [--console-socket S] --bundle DIR [ID]; the "
                             "command comes from config.json")
        from pyctr.oci.bundle import load_bundle
        if args["target"]:
            args["command"].insert(0, args["target"])
        return load_bundle(args["bundle"], args)
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
    spec = _spec_from_args(paths, "run", argv)
    if spec is None:
        return 0
    if spec.detach:
        return _run_detached(paths, spec)
    from pyctr.container import Container
    c = Container(paths, spec)
    c.create()
    if "pyctr.mpi" in spec.annotations and c.networks:
        try:
            _mpi_rank(c)
        except BaseException:
            c.destroy()
            raise
    c.start()
    code = c.wait()
    c.cleanup()
    return code


def _mpi_rank(c):
    """A rank started by an MPI launcher: make its MPI use the container's
    own interface (see pyctr.mpi) and reach a launcher that serves PMIx on
    loopback (see pyctr.pmix_relay); settings the user made win. Rank 0 says
    what was set, and every rank records it in its state."""
    from pyctr import mpi, pmix_relay
    env = dict(e.split("=", 1) for e in c.spec.process.env)
    added = {k: v for k, v in mpi.mpi_env(c.networks).items() if k not in env}
    c.extra_env = ["%s=%s" % kv for kv in added.items()]
    c.state["mpi_env"] = added
    said = ["%s=%s" % kv for kv in added.items()]
    servers = pmix_relay.loopback_servers(env)
    if servers:
        listeners = pmix_relay.listen_in_netns("/proc/%d/ns/net" % c.pid, servers, c.sys)
        pmix_relay.serve(listeners, servers)
        c.state["pmix_relay"] = ["%s:%d" % s for s in servers]
        said.append("PMIx server %s relayed into the container" % ", ".join(
            c.state["pmix_relay"]))
    c.store.write(c.name, c.state)
    if env.get("OMPI_COMM_WORLD_RANK", env.get("PMI_RANK", env.get("PMIX_RANK"))) == "0":
        sys.stderr.write("pyctr: MPI rank in a container: %s\n" % ", ".join(said))


def _run_detached(paths, spec):
    """Fork a monitor that owns the container (its parent: it waits, records
    the exit and cleans up, like conmon); report its start, print the name."""
    from pyctr.container import Container
    r, w = os.pipe2(os.O_CLOEXEC)
    monitor = os.fork()
    if monitor == 0:
        os.close(r)
        os.setsid()
        code = 125
        try:
            c = Container(paths, spec)
            c.create(log=True)
            c.start()
            os.write(w, b"ok " + c.name.encode())
            os.close(w)
            code = c.wait()
            c.cleanup()
        except PyctrError as e:
            os.write(w, ("err %d %s" % (e.exit_code, e)).encode())
        except BaseException as e:
            os.write(w, ("err 125 %s" % e).encode())
        os._exit(code)
    os.close(w)
    from pyctr.sync import read_all
    msg = read_all(r).decode(errors="replace")
    if msg.startswith("ok "):
        print(msg[3:])
        return 0
    os.waitpid(monitor, 0)
    if msg.startswith("err "):
        code, _, text = msg[4:].partition(" ")
        raise PyctrError(text, exit_code=int(code))
    raise PyctrError("container monitor died before the container started")


def cmd_spec(paths, argv):
    import json
    spec = _spec_from_args(paths, "spec", argv)
    if spec is None:
        return 0
    print(json.dumps(spec.to_oci(), indent=2))
    return 0


def list_containers(paths, quiet):
    """`pyctr ps` without an ID (pyctr.oci.cli.cmd_ps takes the verb)."""
    from pyctr.state import StateStore
    store = StateStore(paths)
    rows = []
    for name in store.names():
        try:
            st = store.read(name)
        except PyctrError:
            continue
        rows.append((st.get("id", "?"), name, store.status(st), str(st.get("pid") or "-"),
                     st.get("created", "?"), " ".join(st.get("command") or [])[:40]))
    if quiet:
        print("\n".join(r[1] for r in rows))
        return 0
    fmt = "%-12s  %-20s  %-8s  %-7s  %-20s  %s"
    print(fmt % ("ID", "NAME", "STATUS", "PID", "CREATED", "COMMAND"))
    for row in rows:
        print(fmt % row)
    return 0


def cmd_inspect(paths, argv):
    import json
    args = _names_verb("inspect", "Show containers' state (and OCI config) as JSON.", [], argv)
    if args is None:
        return 0
    from pyctr.state import StateStore
    store = StateStore(paths)
    out = []
    for name in args["names"]:
        st = store.read(name)
        st["status"] = store.status(st)
        st["bundle"] = store.dir(name)
        st["config"] = store.read(name, "config.json")
        out.append(st)
    print(json.dumps(out, indent=2))
    return 0


def _names_verb(prog, summary, options, argv):
    args = parse_options(prog, summary, options, argv, rest="names")
    if args is not None and not args["names"]:
        raise PyctrError("%s: name at least one container" % prog)
    return args


def cmd_rm(paths, argv):
    args = _names_verb("rm", "Remove containers.",
                       [Opt("-f --force", "bool", "kill them first if running")], argv)
    if args is None:
        return 0
    from pyctr.state import StateStore
    store = StateStore(paths)
    for name in args["names"]:
        record = store.read(name)
        if record.get("oci"):  # an engine's container: as its `delete` would
            from pyctr.oci.lifecycle import delete
            delete(paths, name, args["force"])
            continue
        remove(paths, store, name, record, args["force"])
    return 0


def remove(paths, store, name, st, force):
    """Kill (if forced) and remove one container, its network and record."""
    from pyctr.state import is_alive
    if is_alive(st.get("pid"), st.get("pid_start")):
        if not force:
            raise PyctrError("container %s is running (stop it or use rm -f)" % name)
        os.kill(st["pid"], 9)
        _wait_gone(st["pid"], st["pid_start"])
        # Let the container's owner (run or the -d monitor) finish its own
        # cleanup first, so the two never remove the same things at once.
        if st.get("owner_pid") != os.getpid():
            _wait_gone(st.get("owner_pid"), st.get("owner_start"))
    if st.get("networks"):
        from pyctr import network
        network.detach(paths, st["id"], st["networks"])
    store.remove(name)


def _wait_gone(pid, start, timeout=5.0):
    import time
    from pyctr.state import is_alive
    deadline = time.monotonic() + timeout
    while is_alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.01)


def cmd_logs(paths, argv):
    args = parse_options("logs", "Print the output of a detached container.", [], argv,
                         positionals=("name",))
    if args is None:
        return 0
    if not args["name"]:
        raise PyctrError("logs: usage: pyctr logs NAME")
    from pyctr.state import StateStore
    store = StateStore(paths)
    store.read(args["name"])
    try:
        with open(os.path.join(store.dir(args["name"]), "log"), "rb") as f:
            sys.stdout.buffer.write(f.read())
    except FileNotFoundError:
        raise PyctrError("container %s has no log (only detached containers keep one)"
                         % args["name"])
    return 0


def cmd_gc(paths, argv):
    if parse_options("gc", "Remove what crashed pyctr processes left behind. Idempotent.",
                     [], argv) is None:
        return 0
    from pyctr.state import StateStore, is_alive
    store = StateStore(paths)
    removed = []
    for name in store.names():
        try:
            st = store.read(name)
        except PyctrError:
            store.remove(name)  # damaged record: nothing can use it
            removed.append("container %s (damaged record)" % name)
            continue
        if st.get("engine"):
            continue  # an engine's container: stopped ones wait for its `delete`
        crashed = st.get("status") != "stopped" and not is_alive(
            st.get("owner_pid"), st.get("owner_start")) and not is_alive(
            st.get("pid"), st.get("pid_start"))
        if crashed:
            remove(paths, store, name, st, force=True)
            removed.append("container %s" % name)
    from pyctr import images, network
    removed += network.gc(paths)
    removed += images.gc(paths)
    for item in removed:
        print("removed " + item)
    return 0
