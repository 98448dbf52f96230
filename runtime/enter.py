"""`pyctr exec`: run a command inside a running container.

pyctr joins the container's namespaces itself (user first, so it holds the
rights for the rest; mount last, since it changes what paths mean), then
forks: the new process lands in the container's pid namespace, takes the
container's process settings and execs, reporting failure through the same
close-on-exec report pipe `run` uses.
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import identity
from pyctr import syscalls
from pyctr.child import exec_workload, exit_code, merge_env, prepare_process
from pyctr.errors import PyctrError, from_oserror
from pyctr.spec import DEFAULT_UMASK, Capabilities, IdMapping, Process
from pyctr.sync import Channel


def process_from_config(config, args, env=(), cwd=None, user=None, root=None):
    """The exec'd process: the container's settings, changed by exec's -e,
    -w and -u. -u NAME is looked up in the container's files below `root`
    (its /proc/PID/root). Another user gets capabilities the way `podman
    run` gives them: root its bounding set, anyone else only the
    container's ambient set (what --cap-add granted a non-root user)."""
    p = config["process"]
    caps = identity.capabilities_from_oci(p.get("capabilities"))
    uid, gid = p["user"]["uid"], p["user"]["gid"]
    if user:
        uid, gid = identity.resolve_user(user, root or "/nonexistent")
        if uid == 0:
            caps = Capabilities(bounding=caps.bounding, effective=caps.bounding,
                                permitted=caps.bounding)
        else:
            granted = caps.ambient
            caps = Capabilities(bounding=caps.bounding, effective=granted, permitted=granted,
                                inheritable=granted, ambient=granted)
    process = Process(args=list(args), env=merge_env(p["env"], env),
                      cwd=cwd or p["cwd"], uid=uid, gid=gid, capabilities=caps,
                      no_new_privileges=bool(p.get("noNewPrivileges", False)))
    linux = config.get("linux") or {}
    mappings = [[IdMapping(container_id=m["containerID"], host_id=m["hostID"], size=m["size"])
                 for m in linux.get(key) or []] for key in ("uidMappings", "gidMappings")]
    identity.check_ids(process, *mappings)
    return process


def enter(paths, name, process, syscall=None, seccomp=None, detach=False, pid_file=None,
          console_fd=-1):
    """Run `process` in container `name`, under the container's seccomp
    profile (compiled, or None). detach: return once it exec'd (the
    caller's subreaper, e.g. conmon, becomes its parent), else wait and
    return its exit code. console_fd: a connection to an engine's console
    socket, which gets the process's pty (pyctr.oci.console)."""
    syscall = syscall or syscalls.Syscalls()
    from pyctr import cgroups
    from pyctr.container import load_running
    state = load_running(paths, name)
    pid = state.pid
    cgroup = cgroups.open_procs(state)  # cgroups: opened here, in the host's namespaces
    fds = []
    for ns_type, (flag, proc_name) in syscalls.NAMESPACES.items():
        target = "/proc/%d/ns/%s" % (pid, proc_name)
        try:
            if os.readlink(target) == os.readlink("/proc/self/ns/" + proc_name):
                continue  # shared with the host (e.g. --net=host): nothing to join
            fds.append((ns_type, flag, os.open(target, os.O_RDONLY | os.O_CLOEXEC)))
        except FileNotFoundError:
            continue
        except OSError as e:
            raise from_oserror("cannot open %s" % target, e)
    for ns_type, flag, fd in fds:
        try:
            syscall.setns(fd, flag)
        except OSError as e:
            raise from_oserror("cannot join the %s namespace of %s" % (ns_type, name), e)
        finally:
            os.close(fd)

    channel = Channel()
    os.umask(DEFAULT_UMASK)  # the process's, as the container's init has it (OCI: its own)
    syscall.block_signals()
    cgroups.end_front_warm_up()  # the child's join comes next (cgroups.adopt_warm_up)
    child = syscall.fork()  # not dumpable: it appears in the container at once
    if child == 0:
        try:
            channel.child_side()
            cgroups.join(cgroup)
            if console_fd >= 0:
                from pyctr.oci.console import setup  # imported before setns by the caller
                setup(console_fd, process.oci.console_size if process.oci else None)
            prepare_process(process, syscall, tie_to_parent=not detach, seccomp=seccomp)
            exec_workload(process, process.env, syscall, channel, seccomp)
        except OSError as e:
            channel.report("exec setup", e.errno or 0, "exec setup: %s" % (e.strerror or e))
        except BaseException as e:
            channel.report("exec setup", 0, "exec setup: %s" % e)
        os._exit(125)
    channel.parent_side()
    cgroups.close(cgroup)
    if console_fd >= 0:
        os.close(console_fd)
    error = channel.wait_exec()
    if error:
        os.waitpid(child, 0)
        raise error
    if pid_file:  # a pyctr.oci.lifecycle.PidFile, opened before setns
        pid_file.write(child)
    if detach:
        return 0
    return exit_code(syscall.supervise(child))
