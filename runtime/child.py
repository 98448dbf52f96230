"""What the cloned child does, from clone() to execve(). Runs inside the
new namespaces; see sync.py for the protocol with the parent.

Every step is named; a failing step is reported to the parent as
(step, errno, message) and the child exits 125. Nothing here may return
into the parent's code path: child_main() always ends in exec or _exit.
"""
import os

from pyctr import rootfs as R
from pyctr import syscalls as S
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
                 "tie_to_parent", "oci")

    def __init__(self, spec, rootfs, layers, etc_mounts, new_userns, new_netns, join,
                 tie_to_parent=True, oci=None):
        self.spec, self.rootfs, self.layers, self.etc_mounts = spec, rootfs, layers, etc_mounts
        self.new_userns, self.new_netns, self.join = new_userns, new_netns, join
        self.tie_to_parent, self.oci = tie_to_parent, oci


def child_main(plan, channel, sys):
    """Entry point right after clone() returned 0 in the child."""
    step = "start"
    oci = plan.oci
    if oci:  # imported by the runtime before clone: nothing is imported here
        from pyctr.oci import barrier
    try:
        channel.child_side()
        if plan.tie_to_parent:
            sys.set_pdeathsig(SIGKILL)
        channel.expect(IDS)
        step = "join namespaces"
        for ns_type, fd in plan.join:
            sys.setns(fd, S.NAMESPACES[ns_type][0])
            os.close(fd)
        if plan.new_userns:
            step = "become root in the user namespace"
            sys.set_ids(0, 0, [])
        spec = plan.spec
        uts = spec.namespace("uts")
        if spec.hostname and uts and not uts.path:  # never rename the host
            step = "sethostname"
            sys.sethostname(spec.hostname)
        step = "prepare root filesystem"
        R.apply(R.plan_root(spec, plan.rootfs, plan.layers), sys)
        step = "mount"
        R.apply(R.plan_mounts(spec, plan.rootfs, plan.etc_mounts, pivot=not oci), sys)
        if oci:
            step = "createContainer hooks"
            barrier.before_pivot(spec, oci, sys)
            step = "pivot_root"
            R.apply(R.plan_pivot(plan.rootfs, oci.no_pivot), sys)
            step = "sysctl and terminal"
            barrier.after_pivot(spec, channel)
        step = "mask and protect paths"
        R.apply(R.plan_finish(spec), sys)
        if plan.new_netns:
            step = "bring up lo"
            sys.loopback_up()
        step = "wait at the exec barrier"
        proc = spec.process
        if oci:  # READY, then the exec FIFO: `pyctr start`, from any process
            barrier.barrier(spec, oci, channel, sys)
            env = proc.env
        else:
            channel.ready()
            extra_env = channel.expect(GO)  # the exec barrier: `start`
            env = merge_env(proc.env, extra_env) if extra_env else proc.env
        step = "set up the process (ids, capabilities, fds)"
        prepare_process(proc, sys, plan.tie_to_parent)
        if proc.init:
            step = "start init"
            run_init(proc, env, channel, sys)
        step = "exec"
        exec_workload(proc, env, sys, channel)
    except OSError as e:
        channel.report(step, e.errno or 0, "%s: %s" % (step, e.strerror or e))
    except BaseException as e:  # never unwind into the parent's code
        channel.report(step, 0, "%s: %s" % (step, e))
    os._exit(EXIT_RUNTIME)


def prepare_process(proc, sys, tie_to_parent=True):
    """Identity, privileges and descriptors, in the order the kernel needs:
    rlimits and the like while privileged; the bounding set while we still
    have CAP_SETPCAP; ids with keepcaps so root keeps its capabilities;
    pdeathsig again since setuid clears it (unless nothing may tie the
    process to pyctr: a created container, exec --detach)."""
    if proc.oci:  # imported with the Process it parsed, before clone or setns
        from pyctr.oci import process
        process.apply(proc.oci)
    caps = [CAPABILITIES[c] for c in proc.capabilities]
    sys.drop_bounding(caps)
    sys.set_keepcaps(True)
    sys.set_ids(proc.uid, proc.gid, proc.additional_gids)
    sys.set_capabilities(caps)
    if proc.no_new_privileges:
        sys.set_no_new_privs()
    if tie_to_parent:
        sys.set_pdeathsig(SIGKILL)
    sys.chdir(proc.cwd)
    # fds 3 .. 3+N-1 and pass_fds go on to the workload (an MPI launcher's
    # PMI_FD); every other one closes at exec.
    keep = sorted(set(range(3, 3 + proc.preserve_fds)) | set(proc.pass_fds))
    first = 3
    for fd in keep:
        os.set_inheritable(fd, True)
        if fd > first:
            sys.close_range(first, fd - 1, S.CLOSE_RANGE_CLOEXEC)
        first = max(first, fd + 1)
    sys.close_range(first, 0xFFFFFFFF, S.CLOSE_RANGE_CLOEXEC)
    sys.reset_signals()


def run_init(proc, env, channel, sys):
    """--init: stay as PID 1, reaping zombies and forwarding signals to the
    workload, and exit with its status. The workload's exec failure still
    reaches the parent: the forked process inherits the report pipe."""
    sys.block_signals()
    pid = os.fork()
    if pid == 0:
        sys.reset_signals()
        exec_workload(proc, env, sys, channel)  # reports and _exits on failure
        os._exit(EXIT_RUNTIME)
    # PID 1 never execs, so close-on-exec never closes what it inherited:
    # the report pipe and, with -d, the pipe `pyctr run` waits on.
    sys.close_range(3, 0xFFFFFFFF, 0)
    status = sys.supervise(pid, reap_all=True)
    os._exit(exit_code(status))


def exec_workload(proc, env_list, sys, channel):
    env = dict(e.split("=", 1) for e in env_list if "=" in e)
    path = resolve(proc.args[0], env.get("PATH", ""))
    try:
        sys.execve(path, proc.args, env)
    except OSError as e:
        why = "executable file not found in $PATH" if e.errno == 2 else e.strerror
        channel.report("exec", e.errno or 0, "%s: %s" % (proc.args[0], why))
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
