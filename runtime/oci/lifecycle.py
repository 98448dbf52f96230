"""A bundle's lifecycle, as runc runs it and engines expect:

  create  clone the container's init; it builds its root and waits at the
          exec barrier (oci/barrier.py): READY, then blocked on the exec
          FIFO in the state dir. create returns; init is then the engine's
          child (pyctr is not in between and no death signal ties them).
  start   from any process: open the FIFO, read init's byte; init execs.
  delete  from the records alone: processes, network, hooks, state.
  run     create + start + wait + delete in one pyctr process, which stays
          init's parent (so killing it kills the container, as with runc).

State is pyctr's (state.json under --root) plus: oci, bundle, annotations,
hooks (poststart and poststop, for start and delete), netns (an engine's netns path, when
pyctr's own network was attached inside it).
"""
import os
import select

from pyctr import jsonio
from pyctr.errors import PyctrError, from_oserror
from pyctr.oci import barrier, hooks
from pyctr.state import StateStore, is_alive, now

FIFO = barrier.FIFO
NET_ANNOTATION = "run.pyctr.net"


def check_id(cid):
    """runc's rule for ids (letters, digits, _ + - .), kept a single path part."""
    if not cid or cid[0] == "." or len(cid) > 200 or not all(
            c.isalnum() or c in "_+-." for c in cid):
        raise PyctrError("invalid container id %r: use letters, digits, _ + - . (max 200)" % cid)


def load(paths, cid):
    """(store, record) of an existing container, or 'does not exist'
    (the words containerd's shim looks for)."""
    store = StateStore(paths)
    check_id(cid)
    if not os.path.isdir(store.dir(cid)):
        raise PyctrError("container %s does not exist" % cid)
    return store, store.read(cid)


def status(store, record):
    """created | running | paused | stopped (| creating, before init exists)."""
    if not record.get("pid"):
        return "creating" if record.get("status") == "creating" else "stopped"
    if not is_alive(record.get("pid"), record.get("pid_start")):
        return "stopped"
    if not record.get("oci"):
        return store.status(record)
    if os.path.exists(os.path.join(store.dir(record["name"]), FIFO)):
        return "created"
    return "paused" if record.get("paused") else "running"


def state_json(store, record):
    state = barrier.oci_state(record, status(store, record))
    state.update(rootfs=record.get("rootfs") or "", created=record.get("created"))
    return state


# -- create ---------------------------------------------------------------
def create(paths, bundle, cid, pid_file=None, console_socket=None, preserve_fds=0,
           no_pivot=False, detached=True):
    """A container at its exec barrier (a Container; its init is our child
    until this process exits)."""
    from pyctr.container import Container
    from pyctr.oci.bundle import load_bundle
    check_id(cid)
    spec = load_bundle(bundle)
    spec.name = cid
    spec.process.preserve_fds = preserve_fds
    for fd in range(3, 3 + preserve_fds):
        try:
            os.fstat(fd)
        except OSError as e:
            raise PyctrError("--preserve-fds %d: fd %d is not open" % (preserve_fds, fd)) from e
    requests = _networks(spec)
    terminal = bool(spec.process.oci and spec.process.oci.terminal)
    if terminal and not console_socket:
        raise PyctrError("process.terminal is true but no --console-socket was given "
                         "(pyctr hands the terminal to the engine, it does not relay it)")
    store = StateStore(paths)
    pid_file = PidFile(pid_file) if pid_file else None
    console_fd = -1
    if terminal:
        from pyctr.oci import console
        console_fd = console.connect(console_socket)
    c = Container(paths, spec)
    c.oci = barrier.ChildPlan(detached, os.path.join(store.dir(cid), "state.json"),
                              console_fd=console_fd, no_pivot=no_pivot)
    try:
        c.create()
    finally:
        c.oci.close()
    try:
        _wait_ready(c)
        if requests:
            _attach(c, requests)
        if pid_file:
            pid_file.write(c.pid)
    except BaseException:
        c.destroy()
        raise
    return c


def _networks(spec):
    """run.pyctr.net=veth:br0 | macvlan:nic0 | NAME (several: space-separated):
    pyctr's own networks, attached inside the container's netns (new, or the
    engine's) once init is ready."""
    value = spec.annotations.get(NET_ANNOTATION, "").split()
    if not value:
        return []
    if not spec.namespace("network"):
        raise PyctrError("annotation %s needs a network namespace in linux.namespaces"
                         % NET_ANNOTATION)
    from pyctr import network
    return [network.parse(v) for v in value]


def created(c):
    """Container._create's hook for a bundle, init cloned and waiting for
    IDS: its record, the exec FIFO, then prestart and createRuntime hooks
    (the container's namespaces exist, its root is not pivoted yet)."""
    spec = c.spec
    later = {name: [hooks.to_json(h) for h in spec.oci.hooks.get(name, [])]
             for name in ("poststart", "poststop")}
    # engine: a `create`d container, whose stopped record waits for `delete`
    # (pyctr gc leaves it alone); a run's belongs to the run.
    c.state.update(oci=True, engine=c.oci.detached, bundle=spec.oci.bundle,
                   annotations=dict(spec.annotations), hooks=later)
    path = os.path.join(c.dir, FIFO)
    os.mkfifo(path, 0o600)
    # Writable by whatever uid the container's root is (a user namespace).
    os.chmod(path, 0o622)
    c.store.write(c.name, c.state)
    state = jsonio.dumps(barrier.oci_state(c.state, "creating"))
    for name in ("prestart", "createRuntime"):
        hooks.run(name, spec.oci.hooks.get(name, []), state, c.sys)


def _wait_ready(c):
    from pyctr.sync import decode_report, read_all
    raw = read_all(c.channel.report_r)
    c.channel.report_r = -1
    if raw != barrier.READY:
        raise decode_report(raw) if raw else PyctrError(
            "container init exited before it was ready")


def _attach(c, requests):
    from pyctr import network
    c.networks = network.attach(c.paths, c.id, requests, c.pid)
    ns = c.spec.namespace("network")
    c.state.update(networks=c.networks, netns=ns.path if ns and ns.path else None)
    c.store.write(c.name, c.state)


class PidFile:
    """--pid-file, written atomically (an engine may read it the moment it
    exists). The directory is held open from the start, so the file lands
    in the right place even after the writer joined a container's mount
    namespace (exec)."""

    def __init__(self, path):
        path = os.path.abspath(path)
        self.path, self.name = path, os.path.basename(path)
        try:
            self.dir_fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("cannot write pid file %s" % path, e) from e

    def write(self, pid):
        tmp = ".%s.%d.tmp" % (self.name, os.getpid())
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644,
                         dir_fd=self.dir_fd)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
            os.rename(tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as e:
            raise from_oserror("cannot write pid file %s" % self.path, e) from e
        finally:
            os.close(self.dir_fd)


# -- start ----------------------------------------------------------------
def start(paths, cid):
    store, record = load(paths, cid)
    now_status = status(store, record)
    if now_status != "created":
        raise PyctrError("cannot start a container in the %s state" % now_status)
    _open_barrier(store, record)
    record.update(status="running", started=now())
    store.write(cid, record)
    _hooks_warn("poststart", record, store)


def _open_barrier(store, record):
    """Open the exec FIFO and read init's answer (oci.barrier): "0" and init
    execs, or "1" and why its startContainer hooks failed. Init dying first
    is an error, not a hang."""
    path = os.path.join(store.dir(record["name"]), FIFO)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise PyctrError("container %s was started already" % record["name"]) from e
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100):
                answer = os.read(fd, 4096)
                if answer == b"0":
                    break
                if answer.startswith(b"1"):
                    raise PyctrError(answer[1:].decode(errors="replace"))
                raise PyctrError("container init exited before it could start")
            if not is_alive(record["pid"], record.get("pid_start")):
                raise PyctrError("container init exited before it could start")
    finally:
        os.close(fd)
    os.unlink(path)


def _hooks_warn(name, record, store, state_status=None):
    """poststart/poststop: a failure is reported, the operation goes on."""
    entries = hooks.from_json((record.get("hooks") or {}).get(name) or [])
    if not entries:
        return
    state = barrier.oci_state(record, state_status or status(store, record))
    from pyctr.syscalls import Syscalls
    try:
        hooks.run(name, entries, jsonio.dumps(state), Syscalls())
    except PyctrError as e:
        import sys
        sys.stderr.write("pyctr: warning: %s\n" % e)


# -- delete ---------------------------------------------------------------
def delete(paths, cid, force=False):
    """runc delete: a created or stopped container always; a running one with
    force (killed first). force also succeeds for an unknown id."""
    try:
        store, record = load(paths, cid)
    except PyctrError:
        if force:
            return
        raise
    if not record.get("oci"):
        from pyctr.commands import remove
        remove(paths, store, cid, record, force)
        return
    now_status = status(store, record)
    if now_status in ("running", "paused") and not force:
        raise PyctrError("cannot delete container %s that is not stopped: %s"
                         % (cid, now_status))
    if now_status != "stopped":
        from pyctr.oci.control import kill_all
        kill_all(record, 9)
    teardown(paths, store, record)


def teardown(paths, store, record):
    """Everything a container's records name, once its processes are gone."""
    from pyctr.oci.control import wait_gone
    wait_gone(record)
    problems = []
    if record.get("networks"):
        from pyctr import network
        try:
            if record.get("netns"):
                _remove_devices(record["netns"], record["networks"])
            network.detach(paths, record["id"], record["networks"])
        except PyctrError as e:
            problems.append(str(e))
    from pyctr.oci.control import remove_groups
    remove_groups(record)
    _hooks_warn("poststop", record, store, "stopped")
    store.remove(record["name"])
    if problems:
        raise PyctrError("; ".join(problems))


def _remove_devices(netns_path, records):
    """An engine's netns outlives the container: pyctr's devices in it go
    now (in a netns of pyctr's own they die with it)."""
    from pyctr.network import netns
    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # the engine removed it already, and the devices with it
    try:
        link = netns.enter(fd, ())
    finally:
        os.close(fd)
    try:
        for rec in records:
            link.delete_link(name=rec["ifname"])
    finally:
        link.close()


# -- run ------------------------------------------------------------------
def run(paths, bundle, cid, pid_file=None, console_socket=None, preserve_fds=0,
        no_pivot=False, detach=False, keep=False):
    """runc run: create and start; unless detached, wait as init's parent
    (signals forwarded), then delete unless keep. Returns the exit code."""
    from pyctr.child import exit_code
    c = create(paths, bundle, cid, pid_file, console_socket, preserve_fds, no_pivot,
               detached=detach)
    try:
        _open_barrier(c.store, c.state)
    except BaseException:
        c.destroy()
        raise
    c.state.update(status="running", started=now())
    c.store.write(c.name, c.state)
    _hooks_warn("poststart", c.state, c.store)
    if detach:
        return 0
    code = exit_code(c.sys.supervise(c.pid))
    c.pid = 0
    c.state.update(status="stopped", exit_code=code, finished=now())
    c.store.write(c.name, c.state)
    if not keep:
        teardown(paths, c.store, c.state)
    return code
