"""`pyctr netd`: start, look at and stop the network helper (server.py).

    pyctr [--root DIR] [--config DIR] netd serve [--socket PATH] [--daemon]
                                                 [--log-file FILE]
    pyctr netd status [--socket PATH]     exit 0 if a helper answers
    pyctr netd stop [--socket PATH]       SIGTERM to the helper, wait for it

--root and --config are pyctr's own: the helper's leases are ROOT/ipam (root's
pools), its policy CONFIG/policy.toml beside CONFIG/networks. In the
foreground (systemd's unit, pyctr-netd.service) it logs to stderr; --daemon
detaches once the socket listens (a start-up error is still the caller's
one line, exit 125) and logs to --log-file (default PATH.log).
"""
import os
import signal
import time

from pyctr.errors import PyctrError
from pyctr.netd import client
from pyctr.netd.server import STOP_SECONDS, Server, running_pid, socket_directory


def command(paths, argv):
    from pyctr.cli import arg_parser
    p = arg_parser("netd", "The network helper: networks for unprivileged users (root).")
    sub = p.add_subparsers(dest="verb", required=True)
    serve = sub.add_parser("serve", help="run the helper")
    serve.add_argument("--daemon", action="store_true",
                       help="detach once listening (log: --log-file)")
    serve.add_argument("--log-file", help="with --daemon (default: SOCKET.log)")
    for each in (serve, sub.add_parser("status", help="exit 0 if a helper answers"),
                 sub.add_parser("stop", help="stop the helper and wait for it")):
        each.add_argument("--socket", help="default $%s or %s"
                          % (client.ENV_SOCKET, client.DEFAULT_SOCKET))
    opts = p.parse_args(argv)
    path = os.path.abspath(opts.socket or client.socket_path(paths))
    if opts.verb == "status":
        os.environ[client.ENV_SOCKET] = path
        if client.available(paths):
            print("network helper answering on %s (pid %s)" % (path, running_pid(path) or "?"))
            return 0
        print("no network helper on %s" % path)
        return 1
    if opts.verb == "stop":
        return stop(path)
    if os.geteuid() != 0:
        raise PyctrError("netd serve: the network helper runs as root")
    if opts.daemon:
        return daemonize(paths, path, opts.log_file or path + ".log")
    server = Server(paths, path)
    server.open()
    server.serve()
    return 0


def daemonize(paths, path, log_path):
    """Fork the helper into the background; return once it listens (0), or
    raise its start-up error here."""
    socket_directory(path)  # before the log, which by default lives in it
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child:
        os.close(ready_w)
        os.waitpid(child, 0)
        with os.fdopen(ready_r, "rb") as ready:
            said = ready.read().decode(errors="replace")
        if said.startswith("ok "):
            print("network helper listening on %s (pid %s, log %s)"
                  % (path, said.split()[1], log_path))
            return 0
        raise PyctrError(said or "network helper failed to start (see %s)" % log_path)
    os.close(ready_r)
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        os.chdir("/")
        # Whatever the starter inherited (a CI runner's pipes) is not held open
        # for the daemon's life: its reader would wait for it.
        os.closerange(3, ready_w)
        os.closerange(ready_w + 1, os.sysconf("SC_OPEN_MAX"))
        log = open(log_path, "a", buffering=1)
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        os.close(null)
        server = Server(paths, path, log)
        server.open()
    except BaseException as e:
        os.write(ready_w, str(e).encode())
        os._exit(125)
    os.write(ready_w, b"ok %d" % os.getpid())
    os.close(ready_w)
    try:
        server.serve()
    finally:
        os._exit(0)


def stop(path):
    pid = running_pid(path)
    if pid is None:
        print("no network helper on %s" % path)
        return 0
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + STOP_SECONDS + 5
    while running_pid(path) == pid:
        if time.monotonic() > deadline:
            raise PyctrError("network helper pid %d did not stop within %d s"
                             % (pid, STOP_SECONDS + 5))
        time.sleep(0.05)
    print("network helper on %s stopped" % path)
    return 0
