"""The container verbs: run, exec, ps, inspect, kill, rm, logs, spec, gc.
Each takes (paths, argv) and returns an exit code; failures are PyctrError."""
import os
import sys

from pyctr.cli import arg_parser
from pyctr.errors import PyctrError

# run/spec option -> specgen key, for the flags that map one to one
_RUN_KEYS = ("name", "hostname", "workdir", "user", "env", "env_file", "volumes", "tmpfs",
             "read_only", "remove", "detach", "init", "userns", "preserve_fds", "cap_add",
             "cap_drop", "pid", "ipc", "uts", "net", "ip", "mac", "mtu")


def _run_parser(prog):
    p = arg_parser(prog, "Create and start a container running CMD in IMAGE or ROOTFS.")
    a = p.add_argument
    a("-f", "--file", help="TOML job file with the same settings (flags override it)")
    a("--bundle", help="OCI bundle directory (config.json + rootfs)")
    a("--name")
    a("--rm", dest="remove", action="store_true", default=None,
      help="remove the container when it exits")
    a("-d", "--detach", action="store_true", default=None, help="run in the background")
    a("-e", "--env", action="append", help="KEY=VALUE, or KEY to pass pyctr's own")
    a("--env-file", action="append")
    a("-w", "--workdir")
    a("-u", "--user", help="UID[:GID] or a name from the container's /etc/passwd")
    a("--hostname")
    a("-v", "--volume", dest="volumes", action="append", help="SRC:DST[:ro]")
    a("--read-only", action="store_true", default=None)
    a("--tmpfs", action="append", help="DST[:OPTIONS]")
    a("--cap-add", action="append")
    a("--cap-drop", action="append")
    a("--preserve-fds", type=int, help="pass fds 3..3+N-1 to the workload")
    a("--init", action="store_true", default=None, help="run a reaper as PID 1")
    a("--userns", action="store_true", default=None,
      help="map container root to an unprivileged host range")
    a("--pid", help="private (default), host or container:NAME")
    a("--ipc", help="private (default), host or container:NAME")
    a("--uts", help="private (default), host or container:NAME")
    a("--net", "--network", dest="net", action="append",
      help="none (default), host, container:NAME, veth:BRIDGE, macvlan:LOWER[:MODE], NAME")
    a("--ip", help="address for the first network (ADDR[/PREFIX])")
    a("--mac", help="MAC address for the first network")
    a("--mtu", type=int, help="MTU for the first network")
    a("target", nargs="?", metavar="IMAGE|ROOTFS")
    a("command", nargs="...", metavar="CMD")
    return p


def _spec_from_args(paths, prog, argv):
    args = _run_parser(prog).parse_args(argv)
    from pyctr import specgen
    if args.bundle:
        from pyctr import oci
        if args.target:
            args.command.insert(0, args.target)
        return oci.load_bundle(args.bundle, args)
    opts = specgen.load_toml(args.file) if args.file else {}
    for key in _RUN_KEYS:
        value = getattr(args, key)
        if value is not None:
            opts[key] = value
    if args.target:
        opts["target"] = args.target
    if args.command:
        opts["command"] = args.command
    return specgen.build(paths, opts)


def cmd_run(paths, argv):
    spec = _spec_from_args(paths, "run", argv)
    if spec.detach:
        return _run_detached(paths, spec)
    from pyctr.container import Container
    c = Container(paths, spec)
    c.create()
    c.start()
    code = c.wait()
    c.cleanup()
    return code


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
    chunks = []
    while True:
        data = os.read(r, 4096)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    msg = b"".join(chunks).decode(errors="replace")
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
    print(json.dumps(spec.to_oci(), indent=2))
    return 0


def cmd_exec(paths, argv):
    p = arg_parser("exec", "Run a command in a running container (joins all its namespaces).")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user", help="UID[:GID]")
    p.add_argument("name")
    p.add_argument("command", nargs="...")
    args = p.parse_args(argv)
    if not args.command:
        raise PyctrError("exec: no command given")
    from pyctr import enter
    from pyctr.state import StateStore
    config = StateStore(paths).read(args.name, "config.json")
    process = enter.process_from_config(config, args.command, args.env, args.workdir, args.user)
    return enter.enter(paths, args.name, process)


def cmd_ps(paths, argv):
    p = arg_parser("ps", "List containers.")
    p.add_argument("-q", "--quiet", action="store_true", help="names only")
    args = p.parse_args(argv)
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
    if args.quiet:
        print("\n".join(r[1] for r in rows))
        return 0
    fmt = "%-12s  %-20s  %-8s  %-7s  %-20s  %s"
    print(fmt % ("ID", "NAME", "STATUS", "PID", "CREATED", "COMMAND"))
    for row in rows:
        print(fmt % row)
    return 0


def cmd_inspect(paths, argv):
    import json
    p = arg_parser("inspect", "Show a container's state (and its OCI config) as JSON.")
    p.add_argument("names", nargs="+", metavar="NAME")
    args = p.parse_args(argv)
    from pyctr.state import StateStore
    store = StateStore(paths)
    out = []
    for name in args.names:
        st = store.read(name)
        st["status"] = store.status(st)
        st["bundle"] = store.dir(name)
        st["config"] = store.read(name, "config.json")
        out.append(st)
    print(json.dumps(out, indent=2))
    return 0


def _signal_number(text):
    import signal
    if text.isdigit():
        return int(text)
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signal, name))
    except AttributeError:
        raise PyctrError("unknown signal %r" % text)


def cmd_kill(paths, argv):
    p = arg_parser("kill", "Send a signal (default TERM) to a container's PID 1.")
    p.add_argument("-s", "--signal", default="TERM")
    p.add_argument("name")
    args = p.parse_args(argv)
    from pyctr.state import StateStore, is_alive
    st = StateStore(paths).read(args.name)
    sig = _signal_number(args.signal)
    if not is_alive(st.get("pid"), st.get("pid_start")):
        raise PyctrError("container %s is not running" % args.name)
    os.kill(st["pid"], sig)
    return 0


def cmd_rm(paths, argv):
    p = arg_parser("rm", "Remove containers (-f: kill them first if running).")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("names", nargs="+", metavar="NAME")
    args = p.parse_args(argv)
    from pyctr.state import StateStore
    store = StateStore(paths)
    for name in args.names:
        remove(paths, store, name, store.read(name), args.force)
    return 0


def remove(paths, store, name, st, force):
    """Kill (if forced) and remove one container, its network and record."""
    from pyctr.state import is_alive
    if is_alive(st.get("pid"), st.get("pid_start")):
        if not force:
            raise PyctrError("container %s is running (stop it or use rm -f)" % name)
        os.kill(st["pid"], 9)
        _wait_gone(st["pid"], st["pid_start"])
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
    p = arg_parser("logs", "Print the output of a detached container.")
    p.add_argument("name")
    args = p.parse_args(argv)
    from pyctr.state import StateStore
    store = StateStore(paths)
    store.read(args.name)
    try:
        with open(os.path.join(store.dir(args.name), "log"), "rb") as f:
            sys.stdout.buffer.write(f.read())
    except FileNotFoundError:
        raise PyctrError("container %s has no log (only detached containers keep one)"
                         % args.name)
    return 0


def cmd_gc(paths, argv):
    p = arg_parser("gc", "Remove what crashed pyctr processes left behind. Idempotent.")
    p.parse_args(argv)
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
        crashed = st.get("status") != "stopped" and not is_alive(
            st.get("owner_pid"), st.get("owner_start")) and not is_alive(
            st.get("pid"), st.get("pid_start"))
        if crashed:
            remove(paths, store, name, st, force=True)
            removed.append("container %s" % name)
    try:
        from pyctr import network
        gc_network = network.gc
    except (ImportError, AttributeError):
        gc_network = None
    if gc_network:
        removed += gc_network(paths)
    for item in removed:
        print("removed " + item)
    return 0
