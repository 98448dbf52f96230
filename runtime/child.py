"""What the cloned child does, from clone() to execve(). Runs inside the
new namespaces; see sync.py for the protocol with the parent. Where
childprog.compile covers the container (all but a bundle's), the same
steps run in C instead (csrc/child.c); a change here goes there too, and
test_the_c_child_builds_the_container_the_python_child_builds compares.

Every step is named; a failing step is reported to the parent as
(step, errno, message) and the child exits 125. Nothing here may return
into the parent's code path: child_main() always ends in exec or _exit.
"""
from errno import ENOSYS, EPERM

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import reaper
from pyctr import rootfs
from pyctr import syscalls
from pyctr.errors import EXIT_RUNTIME
from pyctr.spec import CAPABILITIES
from pyctr.sync import GO, IDS

SIGKILL = 9


class Plan:
    """Everything the child needs, computed by the parent before clone so
    that the child does as little as possible after it. etc_mounts: the
    state dir's hosts/hostname/resolv.conf, mounted after spec.mounts.
    tie_to_parent: die with the parent (PDEATHSIG); off for an OCI create,
    whose init must outlive the `pyctr create` process. oci: a bundle's
    pyctr.oci.barrier.ChildPlan (exec FIFO, hooks, terminal) or None."""
    __slots__ = ("spec", "rootfs", "layers", "etc_mounts", "new_userns", "new_netns", "join",
                 "tie_to_parent", "new_cgroupns", "cgroup_view", "oci")

    def __init__(self, spec, rootfs, layers, etc_mounts, new_userns, new_netns, join,
                 tie_to_parent=True, new_cgroupns=False, cgroup_view=None, oci=None):
        self.spec, self.rootfs, self.layers, self.etc_mounts = spec, rootfs, layers, etc_mounts
        self.new_userns, self.new_netns, self.join = new_userns, new_netns, join
        self.tie_to_parent, self.oci = tie_to_parent, oci
        # cgroups: unshare the cgroup namespace after IDS (the parent has put
        # the child in its group by then); what to mount at /sys/fs/cgroup
        self.new_cgroupns, self.cgroup_view = new_cgroupns, cgroup_view


def first_ids(spec):
    """(uid, gid, groups) the child takes in its new user namespace."""
    ids = [min((m.container_id for m in maps), default=0)
           for maps in (spec.uid_mappings, spec.gid_mappings)]
    return ids[0], ids[1], []


def builds_before_ids(plan):
    """May the child build its root before IDS? Only where IDS brings
    nothing that building needs: no user namespace (no maps yet, no root),
    no namespace to join first, not a bundle (its hooks run before the
    child mounts). It still waits for IDS before its cgroup namespace: by
    then the parent has moved it into its groups (cgroup_attach), which
    overlaps this work instead of preceding it."""
    return not (plan.new_userns or plan.join or plan.oci)


def child_main(plan, channel, syscall):
    """Entry point right after clone() returned 0 in the child."""
    step = "start"
    oci = plan.oci
    if oci:  # imported by the runtime before clone: nothing is imported here
        from pyctr.oci import barrier

    def after_ids():
        """IDS, then what needs it: the namespaces to join, root in a new
        user namespace, the cgroup namespace (rooted at the groups the
        parent moved this process into)."""
        nonlocal step
        channel.expect(IDS)
        # Already so from clone() on, but for a rootless parent, which had to
        # write our uid_map first (Syscalls.clone).
        syscall.set_dumpable(False)
        step = "join namespaces"
        for ns_type, fd in plan.join:
            syscall.setns(fd, syscalls.NAMESPACES[ns_type][0])
            os.close(fd)
        if plan.new_userns:
            # Its root; or, where root is not mapped (idmap.keep_id), the
            # first mapped ids: the capabilities the namespace gave stay.
            step = "become root in the user namespace"
            syscall.set_ids(*first_ids(plan.spec))
        if plan.new_cgroupns:
            step = "unshare the cgroup namespace"
            syscall.unshare(syscalls.CLONE_NEWCGROUP)

    try:
        channel.child_side()
        if plan.tie_to_parent:
            syscall.set_pdeathsig(SIGKILL)
        early = builds_before_ids(plan)
        if not early:
            after_ids()
        spec = plan.spec
        init = -1
        if spec.process.init:
            step = "load pyctr-init"  # the host's file: before pivot_root
            init = reaper.load()
        uts = spec.namespace("uts")
        if spec.hostname and uts and not uts.path:  # never rename the host
            step = "sethostname"
            syscall.sethostname(spec.hostname)
        step = "prepare root filesystem"
        rootfs.apply(rootfs.plan_root(spec, plan.rootfs, plan.layers), syscall)
        step = "mount"
        syscall.hold_roots(True)
        mounts = rootfs.plan_mounts(spec, plan.rootfs, plan.etc_mounts, plan.cgroup_view,
                                    pivot=False)
        if early:  # up to the cgroup mount, which needs the cgroup namespace
            cut = next((i for i, m in enumerate(mounts) if m[0] == "mount_cgroup"), len(mounts))
            rootfs.apply(mounts[:cut], syscall)
            mounts = mounts[cut:]
            after_ids()
            step = "mount"
        rootfs.apply(mounts, syscall)
        syscall.hold_roots(False)
        if not oci:
            rootfs.apply(rootfs.plan_pivot(plan.rootfs), syscall)
        if oci:
            step = "createContainer hooks"
            barrier.before_pivot(spec, oci, syscall)
            step = "pivot_root"
            rootfs.apply(rootfs.plan_pivot(plan.rootfs, oci.no_pivot), syscall)
            step = "sysctl and terminal"
            barrier.after_pivot(spec, channel)
        step = "mask and protect paths"
        rootfs.apply(rootfs.plan_finish(spec), syscall)
        if plan.new_netns:
            step = "bring up lo"
            syscall.loopback_up()
        step = "wait at the exec barrier"
        proc = spec.process
        if oci:  # READY, then the exec FIFO: `pyctr start`, from any process
            barrier.barrier(spec, oci, channel, syscall)
            env = proc.env
        else:
            channel.ready()
            extra_env = channel.expect(GO)  # the exec barrier: `start`
            env = merge_env(proc.env, extra_env) if extra_env else proc.env
        step = "set up the process (ids, capabilities, fds)"
        prepare_process(proc, syscall, plan.tie_to_parent, spec.seccomp)
        step = "exec"
        exec_workload(proc, env, syscall, channel, spec.seccomp, init)
    except OSError as e:
        channel.report(step, e.errno or 0, "%s: %s" % (step, e.strerror or e))
    except BaseException as e:  # never unwind into the parent's code
        channel.report(step, 0, "%s: %s" % (step, e))
    os._exit(EXIT_RUNTIME)


def prepare_process(proc, syscall, tie_to_parent=True, seccomp=None):
    """Identity, privileges and descriptors, in the order the kernel needs:
    rlimits and the like while privileged; the bounding set while we still
    have CAP_SETPCAP; ids with keepcaps so root keeps its capabilities; the
    three thread sets, then ambient (which setuid clears and which needs
    permitted and inheritable); pdeathsig again since setuid clears it
    (unless nothing may tie the process to pyctr: a created container, exec
    --detach)."""
    try:
        syscall.join_session_keyring()
    except OSError as e:
        # No keyrings in this kernel, or keyctl already filtered out around
        # pyctr (the workload inherits that filter): nothing to hide.
        if e.errno not in (ENOSYS, EPERM):
            raise
    # fds 3 .. 3+N-1 and pass_fds go on to the workload (an MPI launcher's
    # PMI_FD); every other one closes at exec. Marked before a filter can be
    # loaded below: a profile need not allow close_range (runtime-tools' and
    # older Docker defaults deny it).
    first = 3
    for fd in kept_fds(proc):
        os.set_inheritable(fd, True)
        if fd > first:
            syscall.close_range(first, fd - 1, syscalls.CLOSE_RANGE_CLOEXEC)
        first = max(first, fd + 1)
    syscall.close_range(first, 0xFFFFFFFF, syscalls.CLOSE_RANGE_CLOEXEC)
    if seccomp and not proc.no_new_privileges:
        # Without no_new_privs only a CAP_SYS_ADMIN holder may load a filter:
        # load it before the capabilities go (as runc does); the steps below
        # then run under it.
        syscall.seccomp_load(seccomp.program)
    if proc.oci:  # imported with the Process it parsed, before clone or setns
        from pyctr.oci import process
        process.apply(proc.oci)
    caps = proc.capabilities
    numbers = lambda names: [CAPABILITIES[c] for c in names]
    syscall.drop_bounding(numbers(caps.bounding))
    syscall.set_keepcaps(True)
    syscall.set_ids(proc.uid, proc.gid, proc.additional_gids)
    syscall.set_capabilities(numbers(caps.effective), numbers(caps.permitted),
                         numbers(caps.inheritable))
    syscall.set_ambient(numbers(caps.ambient))
    if proc.no_new_privileges:
        syscall.set_no_new_privs()
    if tie_to_parent:
        syscall.set_pdeathsig(SIGKILL)
    try:
        syscall.chdir(proc.cwd)
    except OSError as e:
        raise OSError(e.errno, "workdir %s: %s" % (proc.cwd, e.strerror)) from e
    syscall.reset_signals()


def kept_fds(proc):
    """The fds the workload gets, ascending: 3 .. 3+preserve_fds-1 and pass_fds."""
    return sorted(set(range(3, 3 + proc.preserve_fds)) | set(proc.pass_fds))


def exec_workload(proc, env_list, syscall, channel, seccomp=None, init=-1):
    """execve the workload, or with `init` (a memfd of pyctr-init) exec that
    as PID 1 with the workload's command: it reports the workload's exec
    failure on the same channel. The seccomp filter is loaded in the same C
    call, right before execve (unless prepare_process loaded it already)."""
    env = dict(e.split("=", 1) for e in env_list if "=" in e)
    path = resolve(proc.args[0], env.get("PATH", ""))
    argv, step = proc.args, "exec"
    if init >= 0:
        os.set_inheritable(channel.child_fd, True)
        (argv, env), step = reaper.command(channel.child_fd, path, proc.args, env), \
            "start pyctr-init"
    program = seccomp.program if seccomp and proc.no_new_privileges else b""
    try:
        syscall.execve(path, argv, env, program, init)
    except OSError as e:
        why = "executable file not found in $PATH" if e.errno == 2 else e.strerror
        channel.report(step, e.errno or 0, "%s: %s" % (argv[0], why))
        os._exit(EXIT_RUNTIME)


def merge_env(env, extra):
    """KEY=VALUE lists: `extra` wins over `env` for the same KEY."""
    merged = dict(e.split("=", 1) for e in env if "=" in e)
    merged.update(e.split("=", 1) for e in extra if "=" in e)
    return ["%s=%s" % kv for kv in merged.items()]


def resolve(cmd, search_path):
    if "/" in cmd:
        return cmd
    for d in search_path.split(":"):
        candidate = os.path.join(d or ".", cmd)
        if os.path.isfile(candidate):
            return candidate
    return cmd  # execve then fails with ENOENT: reported as "not found"


def exit_code(status):
    """A wait status as a shell would show it: the code, or 128+signal."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)
