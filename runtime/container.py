"""The parent side of a container's life: create, start, wait, clean up.

Creation is the ordered list STAGES below. Each stage acts on the one
Container object and registers how to undo what it did; if any stage
fails, the undo stack runs backwards (child killed, network detached,
record removed) before the error goes up, as crun does on every early
return. The Spec is frozen: stages read it, and what they learn goes into
the Container (paths, fds, pid) and its ContainerState record.

  networks_plan  every network check that needs no device (pyctr.network)
  cgroup_warm_up the kernel's wait before a cgroup move starts now, in a thread
  reserve        the name, with the first record (status creating)
  etc_files      hosts, hostname, resolv.conf in the state dir (not for a bundle)
  namespaces     open the namespaces to join (a pid one is entered now)
  cgroup         the container's own group: limits, device policy (cgroups.py)
  clone          the child: in C (childprog), or blocked until IDS (child.py);
                 run's with nothing to wait for runs alone to its exec (_alone)
  id_maps        uid_map/gid_map of a new user namespace
  user_namespaces  a user's container with networks: its namespaces opened for the helper
  cgroup_attach  the child into its group, before it does anything
  ids            the child builds its root meanwhile (a bundle's: after its hooks)
  record         status created, pid (for run: start() records it running)
  bundle         a bundle's record, exec FIFO, prestart/createRuntime hooks, IDS
  networks       devices into the child's netns (pyctr.network)
  mpi_rank       a launcher's rank: MPI settings, PMIx relay
  ready          the child waits at the exec barrier (READY); for run, GO first
  bundle_ready   a bundle's terminal to the engine, pyctr networks in its netns

start() sends GO and confirms the exec; wait() forwards signals and
records the exit; cleanup() and teardown() remove what the record lists.
"""
import errno

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import childprog, fileio, syscalls
from pyctr.child import Plan, child_main, exit_code
from pyctr.errors import PyctrError, from_oserror
from pyctr.spec import DEFAULT_UMASK, Mount
from pyctr.state import ContainerState, StateStore, now, process_start_time
from pyctr.sync import GO, IDS, Channel

SIGKILL = 9


class Undo:
    """A stack of (function, args): run() calls them newest first, each
    once, and keeps going past failures (the first one is raised last)."""

    def __init__(self):
        self._steps = []

    def push(self, fn, *args):
        self._steps.append((fn, args))

    def run(self):
        error = None
        while self._steps:
            fn, args = self._steps.pop()
            try:
                fn(*args)
            except Exception as e:  # keep undoing: a half-undone container is worse
                error = error or e
        if error:
            raise error


# -- the stages ------------------------------------------------------------

def networks_plan(c):
    """Network files, kinds, MAC/IP/MTU and host devices are checked before
    anything exists: a bad request leaves no record and makes no child."""
    if c.spec.networks and not c.paths.rootless:  # a user's: the helper checks them
        from pyctr import network
        c.prepared = network.prepare(c.paths, c.spec.networks)


def cgroup_warm_up(c):
    """The container's init is moved into its group right after clone, and
    the first cgroup move after a quiet spell waits for an RCU grace period
    (see cgroups.warm_up): let that wait run beside the next stages, unless
    `run` started it already, before it built the spec. The layout found
    here is the cgroup stage's; errors are left to it."""
    if not c.warming:
        from pyctr import cgroups
        c.cgroup_layout, c.warming = cgroups.start_warm_up(c.paths)
    c.undo.push(_warmed_up, c)


def reserve(c):
    c.store.reserve(c.state)
    c.dir = c.store.dir(c.state.name)
    c.undo.push(c.store.remove, c.state.name)
    if c.log:
        _redirect_to_log(c.dir)


def etc_files(c):
    """hosts, hostname and resolv.conf are the container's own files,
    bind-mounted from the state dir (the network stage rewrites hosts).
    A bundle's container has the files its config mounts, as with runc."""
    if c.spec.oci:
        return
    _write_hosts(c)
    fileio.write(os.path.join(c.dir, "hostname"), (c.spec.hostname + "\n").encode())
    try:
        resolv = fileio.read("/etc/resolv.conf")
    except OSError:
        resolv = b""
    fileio.write(os.path.join(c.dir, "resolv.conf"), resolv)
    root = c.spec.root
    # A missing file is created to mount on only in an image's overlay:
    # never in a plain rootfs (the user's files). Under a user namespace
    # the image's /etc belongs to an owner not mapped there, which the
    # overlay cannot copy up to create a file in it: the writable layer
    # then gets an /etc of its own first (rootfs.plan_root), if the image's
    # is a plain directory (not a symlink, which that /etc would hide).
    # Questions about the image's files are asked inside the root: an /etc
    # that is a symlink to a host directory is followed in the root, never
    # on the host.
    c.own_etc = bool(root.image and c.spec.uid_mappings and _plain_dir(root.path, "etc"))
    creatable = root.image and (c.own_etc or not c.spec.uid_mappings) and \
        c.syscall.exists_in_root(root.path, "/etc")
    for name in ("hosts", "hostname", "resolv.conf"):
        if not creatable and not c.syscall.exists_in_root(root.path, "/etc/" + name):
            continue
        c.etc_mounts.append(Mount(destination="/etc/" + name, type="bind",
                                  source=os.path.join(c.dir, name), options=("bind",)))


def namespaces(c):
    for ns in c.spec.namespaces:
        flag = syscalls.NAMESPACES[ns.type][0]
        if ns.type == "cgroup" and not ns.path:
            c.new_cgroupns = True  # unshared by the child once it is in its group
        elif not ns.path:
            c.clone_flags |= flag
        elif ns.type == "pid":
            # A pid namespace applies to children: enter it before clone.
            fd = _open_ns(ns.path)
            try:
                c.syscall.setns(fd, flag)
            except OSError as e:
                raise from_oserror("cannot join namespace %s" % ns.path, e) from e
            finally:
                os.close(fd)
        else:
            c.join.append((ns.type, _open_ns(ns.path)))
    c.undo.push(_close_joined, c)


def cgroup(c):
    """The container's own group (root only) with its limits and device
    policy, and what the child mounts at /sys/fs/cgroup."""
    from pyctr import cgroups
    try:
        layout = c.cgroup_layout or cgroups.detect()
    except (OSError, PyctrError):
        if not c.paths.rootless:
            raise
        return  # rootless where no cgroupfs is mounted: nothing to show either
    if not c.paths.rootless:
        group = cgroups.create(c.paths, c.spec.id, c.spec.resources, layout)
        c.state.cgroup = group.record()
        c.undo.push(release, c.paths, c.state)
        c.undo.push(_close_procs, c)
        v2 = next((group.process_dir(h.name) for h in layout.hierarchies if h.version == 2),
                  None)
        if v2:  # the child is born there (clone), where the kernel can
            try:
                c.clone_into = (os.open(v2, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), v2)
            except OSError as e:
                raise from_oserror("cannot open cgroup %s" % v2, e) from e
        c.procs = group.open_procs(skip=v2)  # for cgroup_attach (see cgroups.move_in)
        if c.spec.resources.path:
            # An engine's path: only the record names it. pyctr's own groups
            # carry the container's id, which `pyctr gc` finds them by, and
            # the record names them from the next save (record) on.
            c.store.save(c.state)
    c.cgroup_view = cgroups.view(layout, cgroups.Group.from_record(c.state.cgroup, reach=False),
                                 c.spec.namespace("cgroup") is not None)
    _warmed_up(c)  # no thread may run across clone


def _warmed_up(c):
    """Wait for cgroup_warm_up's thread to be gone, or end pyctr-front's
    warm-up process (once)."""
    wait, c.warming = c.warming, None
    if wait:
        wait()


def _plain_dir(root, name):
    """Is `name`, a child of directory `root`, a directory itself (lstat:
    a symlink is not)?"""
    import stat
    try:
        return stat.S_ISDIR(os.lstat(os.path.join(root, name)).st_mode)
    except OSError:
        return False


def clone(c):
    spec = c.spec
    rootfs, layers = spec.root.path, None
    if spec.root.image:
        # The image stays untouched: the container writes to an overlay
        # (see rootfs.plan_root) on a tmpfs the child mounts on this empty
        # directory in its own mount namespace; one for all containers (on
        # the host it stays empty), so no run makes and removes one.
        scratch = c.paths.scratch
        try:
            os.mkdir(scratch, 0o711)
        except FileExistsError:
            pass
        rootfs, layers = scratch + "/merged", (spec.root.path, scratch) + \
            (("/etc",) if c.own_etc else ())
    plan = Plan(spec, rootfs, layers, tuple(c.etc_mounts),
                bool(c.clone_flags & syscalls.CLONE_NEWUSER),
                bool(c.clone_flags & syscalls.CLONE_NEWNET), tuple(c.join), c.tie_to_parent,
                c.new_cgroupns, c.cgroup_view, c.oci)
    # None: the Python child (child_main), which the parent moves into its
    # groups (cgroup_attach) and then sends IDS; the C child joins them itself
    # where it builds before IDS.
    c.channel = Channel()
    try:
        if spec.process.init and childprog.wanted(plan):
            c.init = _load_init()  # the C child execs the parent's memfd of pyctr-init
            c.undo.push(_close_init, c)
        c.program = childprog.compile(plan, c.channel, c.procs, c.init)
    except PyctrError:
        c.channel.abort()
        raise
    alone = _alone(c)
    if alone:
        c.channel.send(GO)  # queued: the child finds it there
        c.go_sent = True
    into, v2 = c.clone_into or (-1, None)
    try:
        try:
            c.pid = c.syscall.clone(c.clone_flags, into, c.program, alone)
        except OSError as e:
            if into < 0 or e.errno not in (errno.ENOSYS, errno.E2BIG, errno.EINVAL):
                raise
            # a kernel (or seccomp filter) without clone3's CLONE_INTO_CGROUP:
            # the child is moved (or moves itself) there too
            from pyctr import cgroups
            c.procs += cgroups.open_procs_files([v2])
            c.program = childprog.compile(plan, c.channel, c.procs, c.init)
            c.pid = c.syscall.clone(c.clone_flags, -1, c.program, alone)
    except OSError as e:
        c.channel.abort()
        raise from_oserror("cannot create namespaces (clone)", e) from e
    if c.pid == 0:
        child_main(plan, c.channel, c.syscall)  # never returns
    if into >= 0:
        os.close(into)
        c.clone_into = None
    if c.program and not c.program.waits_for_ids:
        _close_procs(c)  # the child's copies are the ones it writes to
    _close_init(c)
    c.undo.push(_kill, c)
    c.channel.parent_side()
    _close_joined(c)


def _alone(c):
    """Does the child run to its exec without this process? run's C child
    that moves itself into its groups, with no network to wire and no
    bundle: every stage after clone leaves it alone, and GO can be queued
    before it (the environment gains nothing without networks, mpi_rank).
    It is then cloned sharing this process's memory (Syscalls.clone)."""
    return bool(c.start_follows and c.program and not c.program.waits_for_ids
                and not c.spec.networks and not c.spec.oci)


def _load_init():
    from pyctr import reaper
    try:
        return reaper.load()
    except OSError as e:
        raise from_oserror("load pyctr-init", e) from e


def _close_init(c):
    if c.init >= 0:
        os.close(c.init)
        c.init = -1


def id_maps(c):
    if c.clone_flags & syscalls.CLONE_NEWUSER:
        from pyctr.idmap import write_maps
        try:
            write_maps(c.pid, c.spec.uid_mappings, c.spec.gid_mappings)
        except OSError as e:
            raise from_oserror("cannot write uid/gid map", e) from e


def user_namespaces(c):
    """A user's container with networks: its user and network namespaces
    are opened now, before IDS, while the child still lets its owner in,
    for the network helper and the PMIx relay (network/rootless.py)."""
    if c.paths.rootless and c.spec.networks:
        from pyctr.network.rootless import Namespaces
        c.user_ns = Namespaces(c.pid)
        c.undo.push(c.user_ns.close)


def cgroup_attach(c):
    if c.procs:
        from pyctr import cgroups
        opened, c.procs = c.procs, []
        cgroups.move_in(opened, c.pid)


def _close_procs(c):
    """Close the cgroup.procs files opened for cgroup_attach, and the clone
    target."""
    from pyctr import cgroups
    opened, c.procs = c.procs, []
    cgroups.close(fd for fd, _ in opened)
    if c.clone_into:
        os.close(c.clone_into[0])
        c.clone_into = None


def record(c):
    """Status created, the child's pid and start time. For run (create
    then start at once) start() records them, status running, while the
    child execs: GO goes first (ready), so the child waits for nothing."""
    if not c.start_follows:
        _record(c, "created")


def _record(c, status):
    # config.json first: a record that names the pid has its config (exec reads it)
    c.store.write_file(c.state.name, "config.json", _oci_json(c.spec))
    c.state.status, c.state.pid = status, c.pid
    c.state.pid_start = process_start_time(c.pid)
    c.store.save(c.state)


def bundle(c):
    if c.spec.oci:
        from pyctr.oci.lifecycle import created
        created(c)
        c.channel.send(IDS)  # only now: the hooks run before the child pivots


def ids(c):
    """The child builds its root while the parent records it (~3 ms of
    state and config.json side by side); a bundle's waits for its hooks.
    The C child that moved itself into its groups waits for nothing
    before GO."""
    if not c.spec.oci and (not c.program or c.program.waits_for_ids):
        c.channel.send(IDS)


def networks(c):
    if not c.spec.networks:
        return
    # attach() undoes its own partial work on failure; on success its
    # records go into the state first, so a later failure can detach.
    if c.paths.rootless:  # the privileged helper wires a user's (network/rootless.py)
        from pyctr.network import rootless
        c.state.networks = rootless.attach(c.paths, c.spec.id, c.spec.networks, c.pid,
                                           c.user_ns)
    else:
        from pyctr import network
        c.state.networks = network.attach(c.paths, c.spec.id, c.prepared, c.pid)
    c.undo.push(_detach_networks, c)
    c.store.save(c.state)
    _write_hosts(c)


def mpi_rank(c):
    """A rank started by an MPI launcher: make its MPI use the container's
    own interface (see pyctr.mpi) and reach a launcher that serves PMIx on
    loopback (see pyctr.mpi.relay); settings the user made win. Rank 0 says
    what was set, and every rank records it in its state."""
    if "pyctr.mpi" not in c.spec.annotations or not c.state.networks:
        return
    from pyctr import mpi, slurm
    from pyctr.mpi import relay
    env = dict(e.split("=", 1) for e in c.spec.process.env)
    shared = bool(c.spec.slurm and c.spec.slurm.node_shared)
    wanted = mpi.mpi_env(c.state.networks, shared_memory=shared)
    added = {k: v for k, v in wanted.items() if k not in env}
    c.extra_env = ["%s=%s" % kv for kv in added.items()]
    c.state.mpi_env = added
    said = list(c.extra_env)
    servers = relay.loopback_servers(env)
    if servers:
        listeners = relay.listen_in_netns("/proc/%d/ns/net" % c.pid, servers, c.syscall,
                                          c.user_ns)
        relay.serve(listeners, servers)
        c.state.pmix_relay = ["%s:%d" % s for s in servers]
        said.append("PMIx server %s relayed into the container" % ", ".join(c.state.pmix_relay))
    if c.spec.slurm:
        said.append(slurm.describe(c.spec.slurm))
    c.store.save(c.state)
    if env.get("OMPI_COMM_WORLD_RANK", env.get("PMI_RANK", env.get("PMIX_RANK"))) == "0":
        import sys
        sys.stderr.write("pyctr: MPI rank in a container: %s\n" % ", ".join(said))


def ready(c):
    if c.start_follows and not c.go_sent:
        # run: nothing is held at the exec barrier (the devices and settings
        # are in place, the environment known), so the child need not wait
        # for this process to read READY and answer it.
        c.channel.send(GO, c.extra_env)
        c.go_sent = True
    c.fds = c.channel.wait_ready()


def bundle_ready(c):
    if c.spec.oci:
        from pyctr.oci.lifecycle import at_barrier
        at_barrier(c)


STAGES = (networks_plan, cgroup_warm_up, reserve, etc_files, namespaces, cgroup, clone, id_maps,
          user_namespaces, cgroup_attach, ids, record, bundle, networks, mpi_rank, ready,
          bundle_ready)


class Container:
    def __init__(self, paths, spec, syscall=None):
        self.paths = paths
        self.spec = spec
        self.syscall = syscall or syscalls.Syscalls()
        self.store = StateStore(paths)
        self.state = ContainerState(
            id=spec.id, name=spec.name, owner_pid=os.getpid(),
            owner_start=process_start_time(os.getpid()), rootfs=spec.root.path,
            image=spec.root.image, command=list(spec.process.args), created=now(),
            remove=spec.remove, detach=spec.detach)
        self.undo = Undo()
        self.log = False           # detached: stdio to <state>/log
        self.tie_to_parent = True  # the child dies with this process (PDEATHSIG)
        self.oci = None            # a bundle's pyctr.oci.barrier.ChildPlan (pyctr.oci.lifecycle)
        self.dir = None
        self.clone_flags = 0
        self.join = []             # (namespace type, fd) the child joins
        self.etc_mounts = []
        self.own_etc = False       # the overlay's writable layer has its own /etc (etc_files)
        self.new_cgroupns = False
        self.cgroup_view = None    # cgroups.view: the child's /sys/fs/cgroup
        self.cgroup_layout = None  # cgroups.detect(), from cgroup_warm_up
        self.procs = []            # its groups' cgroup.procs, open until cgroup_attach
        self.clone_into = None     # (fd, dir) of its cgroup v2 group: clone starts the child there
        self.warming = None        # cgroups.warm_up's wait(): returns when its thread is gone
        self.channel = None
        self.program = None        # the C child's childprog.Program, or None: the Python child
        self.init = -1             # --init with the C child: the memfd of pyctr-init, until clone
        self.pid = 0
        self.prepared = []         # network.prepare()'s, for the networks stage
        self.user_ns = None        # a user's: network.rootless.Namespaces, for the helper
        self.extra_env = []        # learnt before start, reaches the workload
        self.fds = {}              # sent by the child before READY ("pty")
        self.start_follows = False  # create(start_follows=True): run, not an OCI create
        self.go_sent = False

    @property
    def name(self):
        return self.state.name

    def create(self, log=False, start_follows=False):
        """Run the STAGES. start_follows: start() comes next, at once (run):
        GO goes with READY's wait, not after it."""
        self.log, self.start_follows = log, start_follows
        os.umask(DEFAULT_UMASK)  # for what the stages make; the child inherits it
        # The signals pyctr passes on are held from here, and passed on to the
        # container once it runs (as runc's handler does): a SIGTERM or SIGHUP
        # ended this process halfway through a stage, leaving its record and
        # groups to gc. SIGINT undoes creation, between stages only: raised
        # anywhere it could fall between a change and its undo's registration.
        self.syscall.block_signals()
        try:
            for stage in STAGES:
                stage(self)
                if _interrupted():
                    raise KeyboardInterrupt
        except Exception as e:
            # A stage that failed because the child is gone (it failed
            # building its root, say) gives the child's reason, not its own.
            cause = self.channel.report_waiting() if self.channel else None
            self.destroy()
            if cause is None and isinstance(e, OSError):
                # a file or call of a stage's without its own context (a full disk)
                cause = from_oserror("cannot create container %s (%s)" % (
                    self.name, stage.__name__.replace("_", " ")), e)
            if cause is None:
                raise
            raise cause from e
        except BaseException:
            self.destroy()
            raise

    def start(self):
        try:
            if not self.go_sent:
                self.channel.send(GO, self.extra_env)
            # Recorded while the child execs (one cloned alone has exec'd
            # by now); a failed exec removes the record with everything
            # else, in destroy.
            self.state.started = now()
            if self.start_follows:
                _record(self, "running")
            else:
                self.state.status = "running"
                self.store.save(self.state)
            error = self.channel.wait_exec()
        except OSError as e:  # the record's write (a full disk)
            self.destroy()
            raise from_oserror("cannot start container %s" % self.name, e) from e
        except BaseException:
            self.destroy()
            raise
        if error:
            self.destroy()
            raise error

    def wait(self, timeout=None):
        """Wait for the workload, forwarding signals; returns its exit code,
        or None if it still runs after `timeout` seconds."""
        status = self.syscall.supervise(self.pid, timeout=timeout)
        if status is None:
            return None
        self.pid = 0
        code = exit_code(status)
        self.state.exited(code)
        return code

    def cleanup(self):
        self.undo = Undo()
        if self.user_ns:
            self.user_ns.close()
        clean_up(self.paths, self.state)

    def destroy(self):
        """Undo everything after a failed create/start. Idempotent."""
        undo, self.undo = self.undo, Undo()
        undo.run()


def release(paths, state):
    """Give back what a container holds besides its record: its network
    devices and addresses, its cgroup. Idempotent; the record then lists
    nothing."""
    if state.networks:
        if paths.rootless:
            from pyctr.network import rootless
            rootless.detach(paths, state.id, state.networks)
        else:
            from pyctr import network
            network.detach(paths, state.id, state.networks)
        state.networks = []
    if state.cgroup:
        from pyctr import cgroups
        cgroups.remove(state)
        state.cgroup = None


def clean_up(paths, state):
    """After the workload's exit: the record says what to remove; it is
    kept (status stopped, nothing attached) unless --rm."""
    if state.remove:
        teardown(paths, state)
    else:
        release(paths, state)
        StateStore(paths).save(state)


def teardown(paths, state):
    """Remove a container that no longer runs, from its record alone (rm,
    gc, --rm, OCI delete)."""
    release(paths, state)
    StateStore(paths).remove(state.name)


def _kill(c):
    if c.pid:
        try:
            os.kill(c.pid, SIGKILL)
            os.waitpid(c.pid, 0)
        except (ChildProcessError, ProcessLookupError):
            pass
        c.pid = 0
    if c.channel:
        c.channel.abort()


def _detach_networks(c):
    release(c.paths, c.state)


def _close_joined(c):
    for _, fd in c.join:
        try:
            os.close(fd)
        except OSError:
            pass
    c.join = []


def _open_ns(path):
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise from_oserror("cannot open namespace %s" % path, e) from e


def _redirect_to_log(state_dir):
    """Detached: the workload's stdout/stderr go to <state>/log (pyctr logs)."""
    fd = os.open(os.path.join(state_dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def _write_hosts(c):
    spec = c.spec
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    names = spec.hostname if spec.hostname == spec.name else "%s %s" % (spec.hostname, spec.name)
    addresses = [r["ip"].split("/")[0] for r in c.state.networks if r.get("ip")]
    lines += ["%s\t%s" % (a, names) for a in addresses] or ["127.0.1.1\t" + names]
    fileio.write(os.path.join(c.dir, "hosts"), ("\n".join(lines) + "\n").encode())


def _interrupted():
    """A SIGINT held since creation began (Container.create)."""
    import _signal
    return _signal.SIGINT in _signal.sigpending()


def _oci_json(spec):
    from pyctr import jsonio
    return jsonio.dumps(spec.to_oci())


def load_running(paths, name):
    """The state of a container that must be running (kill, exec)."""
    state = StateStore(paths).load(name)
    if not state.process_alive():
        raise PyctrError("container %s is not running" % name)
    return state
