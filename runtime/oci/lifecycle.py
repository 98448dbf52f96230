"""A bundle's lifecycle, as runc runs it and engines expect:

  create  pyctr.container's stages, with two of a bundle's own: `bundle`
          (created(): record, exec FIFO, prestart/createRuntime hooks) and
          `bundle_ready` (at_barrier(): the terminal to the engine, pyctr
          networks in the netns). Init then waits at the exec barrier
          (oci/barrier.py), blocked on the exec FIFO in the state dir, and
          create returns: init is the engine's child (no pyctr process in
          between, no death signal tying them).
  start   from any process: open the FIFO, read init's answer; init execs.
  delete  from the records alone: processes, network, cgroups, hooks, state.
  run     create + start + wait + delete in one pyctr process, which stays
          init's parent (so killing it kills the container, as with runc).

ContainerState.oci holds what only a bundle's container has: engine (made
by `create`: its stopped record waits for the engine's delete), hooks
(poststart, poststop), netns (the engine's, when pyctr attached a network
inside it), freezer (made by pause when there is no cgroup).
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import jsonio
from pyctr.errors import PyctrError, from_oserror
from pyctr.spec import OCI_VERSION
from pyctr.state import StateStore, check_name, now

# Each verb is its own process, started by the engine: state, start, kill
# and delete import only what their record says they need (the container's
# side, pyctr.oci.barrier, and hooks come with create or a hook to run).

FIFO = "exec.fifo"  # in the container's state dir (oci.barrier's exec barrier)


def oci_state(state, status):
    """A container's runtime-spec state, from its ContainerState."""
    return {"ociVersion": OCI_VERSION, "id": state.name, "status": status,
            "pid": state.pid or 0, "bundle": state.bundle or "",
            "annotations": dict(state.annotations or {})}


def load(paths, cid):
    """(store, state) of an existing container, or 'does not exist' (the
    words containerd's shim looks for)."""
    store = StateStore(paths)
    check_name(cid)
    if not os.path.isdir(store.dir(cid)):
        raise PyctrError("container %s does not exist" % cid)
    return store, store.load(cid)


def state_json(state):
    """runc's `state` output: the runtime-spec state plus rootfs, created."""
    out = oci_state(state, state.live_status())
    out.update(rootfs=state.rootfs or "", created=state.created)
    return out


# -- create ---------------------------------------------------------------
def create(paths, bundle, cid, pid_file=None, console_socket=None, preserve_fds=0,
           no_pivot=False, detached=True, relay=False):
    """A container at its exec barrier (a Container; its init is our child
    until this process exits). relay: a terminal without a console socket
    stays with this process (c.fds["pty"]), which relays it (run)."""
    from pyctr.container import Container
    from pyctr.oci import barrier
    from pyctr.oci.bundle import load_bundle
    spec = load_bundle(bundle, {"name": cid, "preserve_fds": preserve_fds}, paths)
    terminal = bool(spec.process.oci and spec.process.oci.terminal)
    if terminal and not console_socket and not relay:
        raise PyctrError("process.terminal is true but no --console-socket was given "
                         "(only a foreground `pyctr run` relays a terminal itself)")
    prepared = ()
    if spec.oci.networks:  # checked before anything exists, as run --net's are
        from pyctr import network
        prepared = network.prepare(paths, spec.oci.networks)
    pid_file = PidFile(pid_file) if pid_file else None
    c = Container(paths, spec)
    c.tie_to_parent = not detached
    c.oci = barrier.ChildPlan(os.path.join(StateStore(paths).dir(cid), "state.json"), no_pivot,
                              console_socket if terminal else None, prepared)
    c.create()
    if pid_file:
        try:
            pid_file.write(c.pid)
        except BaseException:
            c.destroy()
            raise
    return c


def created(c):
    """The `bundle` stage, init cloned and waiting for IDS: the record,
    the exec FIFO, then prestart and createRuntime hooks (the container's
    namespaces exist, its root is not pivoted yet)."""
    from pyctr.oci import hooks
    spec, state = c.spec, c.state
    later = {name: [hooks.to_json(h) for h in spec.oci.hooks.get(name, ())]
             for name in ("poststart", "poststop")}
    state.bundle, state.annotations = spec.oci.bundle, dict(spec.annotations)
    state.oci = {"engine": not c.tie_to_parent, "hooks": later}
    path = os.path.join(c.dir, FIFO)
    os.mkfifo(path, 0o600)
    # Writable by whatever uid the container's root is (a user namespace).
    os.chmod(path, 0o622)
    c.store.save(state)
    text = jsonio.dumps(oci_state(state, "creating"))
    for name in ("prestart", "createRuntime"):
        hooks.run(name, spec.oci.hooks.get(name, ()), text, c.syscall)


def at_barrier(c):
    """The `bundle_ready` stage, init at its barrier: its pty master to the
    engine's console socket; pyctr's networks (run.pyctr.net) into its
    netns, which init has joined by now (an engine's, maybe)."""
    pty = c.fds.get("pty", -1)
    if pty >= 0 and c.oci.console_socket:
        from pyctr.oci import console
        del c.fds["pty"]
        try:
            console.hand_over(c.oci.console_socket, pty)
        finally:
            os.close(pty)
    if c.oci.networks:
        from pyctr import network
        c.state.networks = network.attach(c.paths, c.spec.id, c.oci.networks, c.pid)
        c.undo.push(_release, c)
        ns = c.spec.namespace("network")
        c.state.oci = dict(c.state.oci, netns=ns.path if ns.path else None)
        c.store.save(c.state)


def _release(c):
    from pyctr.container import release
    if c.state.oci.get("netns"):
        _remove_devices(c.state.oci["netns"], c.state.networks)
    release(c.paths, c.state)


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
            try:
                os.unlink(tmp, dir_fd=self.dir_fd)  # a full disk: not left to fill it further
            except OSError:
                pass
            raise from_oserror("cannot write pid file %s" % self.path, e) from e
        finally:
            os.close(self.dir_fd)


# -- start ----------------------------------------------------------------
def start(paths, cid):
    store, state = load(paths, cid)
    status = state.live_status()
    if status != "created":
        raise PyctrError("cannot start a container in the %s state" % status)
    _open_barrier(store, state)
    state.status, state.started = "running", now()
    store.save(state)
    _hooks_warn("poststart", state)


def _open_barrier(store, state):
    """Open the exec FIFO and read init's answer (oci.barrier): "0" and init
    execs, or "1" and why its startContainer hooks failed. Init dying first
    is an error, not a hang."""
    path = os.path.join(store.dir(state.name), FIFO)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise PyctrError("container %s was started already" % state.name) from e
    import select
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            if poller.poll(100):
                try:
                    answer = os.read(fd, 4096)
                except BlockingIOError:
                    # Ready but no data, and a writer there (else EOF): the
                    # kernel reports a hang-up whenever no writer holds the
                    # FIFO, e.g. between two attempts of init's open, and
                    # one may be back by the read (seen once in the suite).
                    continue
                if answer == b"0":
                    break
                if answer.startswith(b"1"):
                    raise PyctrError(answer[1:].decode(errors="replace"))
                raise PyctrError("container init exited before it could start")
            if not state.process_alive():
                raise PyctrError("container init exited before it could start")
    finally:
        os.close(fd)
    os.unlink(path)


def _hooks_warn(name, state, status=None):
    """poststart/poststop: a failure is reported, the operation goes on."""
    recorded = ((state.oci or {}).get("hooks") or {}).get(name)
    if not recorded:
        return
    from pyctr.oci import hooks
    from pyctr.syscalls import Syscalls
    entries = hooks.from_json(recorded)
    text = jsonio.dumps(oci_state(state, status or state.live_status()))
    try:
        hooks.run(name, entries, text, Syscalls())
    except PyctrError as e:
        import sys
        sys.stderr.write("pyctr: warning: %s\n" % e)


# -- delete ---------------------------------------------------------------
def delete(paths, cid, force=False):
    """runc delete: a created or stopped container always; a running one with
    force (killed first). force also succeeds for an unknown id."""
    try:
        store, state = load(paths, cid)
    except PyctrError:
        if force:
            return
        raise
    if state.oci is None:  # one of pyctr's own (run, run -d)
        from pyctr.verbs.remove import remove
        remove(paths, state, force)
        return
    status = state.live_status()
    if status in ("running", "paused", "creating") and not force:
        raise PyctrError("cannot delete container %s that is not stopped: %s" % (cid, status))
    from pyctr.oci.control import kill_all, wait_gone
    if status == "creating":  # let its creator finish (or undo) first, then look again
        wait_gone(state, alive=state.owner_alive)
        return delete(paths, cid, force)
    if status != "stopped":
        kill_all(state, 9)
    teardown(paths, state)


def teardown(paths, state):
    """Everything a container's record names, once its processes are gone."""
    from pyctr.oci.control import remove_groups, wait_gone
    wait_gone(state)
    problems = []
    netns = (state.oci or {}).get("netns")
    if netns and state.networks:
        _remove_devices(netns, state.networks)
    try:
        remove_groups(state)
        state.cgroup = None  # gone: not looked for again below
    except PyctrError as e:
        problems.append(str(e))
    _hooks_warn("poststop", state, "stopped")
    if state.networks or state.cgroup:  # pyctr.container's release: network, then the record
        from pyctr.container import teardown as remove_record
        remove_record(paths, state)
    else:  # the engine's usual container: only the record (no import of the create path)
        StateStore(paths).remove(state.name)
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
    c = create(paths, bundle, cid, pid_file, console_socket, preserve_fds, no_pivot,
               detached=detach, relay=not detach)
    finish = None
    try:
        if "pty" in c.fds:  # runc's own terminal: ours <-> the container's pty
            from pyctr.oci import console
            finish = console.relay(c.fds.pop("pty"))
        _open_barrier(c.store, c.state)
    except BaseException:
        if finish:
            finish()
        c.destroy()
        raise
    c.state.status, c.state.started = "running", now()
    c.store.save(c.state)
    _hooks_warn("poststart", c.state)
    if detach:
        return 0
    try:
        code = c.wait()
    finally:
        if finish:
            finish()
    c.store.save(c.state)
    if not keep:
        teardown(paths, c.state)
    return code
