"""A Slurm task in a container: `srun [--mpi=pmix|pmi2] ... pyctr run --net=NET IMAGE CMD`.

srun's slurmstepd starts one `pyctr run` per task, which makes the task's
container. What the task needs from Slurm reaches it as follows (each fact
seen with Debian 12's Slurm 22.05, Open MPI 4.1.4 + PMIx 4.2.2, MPICH 4.0.2):

- The task's SLURM_* variables are passed on. Open MPI decides from
  SLURM_JOB_ID/SLURM_STEP_ID that srun launched it directly; with only the
  PMIX_* variables it starts as a singleton (MPI_ERR_RANK in a 2-rank job).
- --mpi=pmi2: slurmstepd hands each task a connected socket (PMI_FD); pyctr
  passes that fd on (specgen._mpi_launch), as for hydra.
- --mpi=pmix: slurmstepd's PMIx 4 server advertises tcp4://127.0.0.1:PORT in
  PMIX_SERVER_URI*, which is the container's own loopback; pyctr relays it
  into the container's netns (pyctr.mpi.relay), as for mpirun. Its
  PMIX_SERVER_TMPDIR (under SlurmdSpoolDir) holds only the shared-memory
  datastores (gds ds12/ds21), no rendezvous socket, and the step's directory
  in the node's TmpFS (spmix_appdir_UID_JOB.STEP) stays empty: the rank uses
  PMIX_MCA_gds=hash instead, so nothing of the node is mounted in.
- Ranks of one step on one node share memory as uncontained ranks (and
  Apptainer's) do: when the step has more than one task on this node and
  neither --ipc nor --pid was given, the container stays in the node's IPC
  and PID namespaces (slurmstepd's) and sees the node's /dev/shm, where Open
  MPI's vader puts its segments. Sharing IPC and /dev/shm alone was not
  enough: with a PID namespace each, vader segfaulted in mca_btl_vader_sendi
  (likely because every container's first process is pid 1, and Open MPI
  tells a segment's creator by its pid); in the node's PID namespace it works.
  MPICH's UCX was seen to keep to TCP between two such containers (their
  eth0 counters carried the exchange); MPICH's own shared memory works.
  With one task on the node the container is isolated as usual, with
  pyctr-init as its PID 1 (as --init), so that scancel's SIGTERM ends the
  workload and pyctr cleans up before Slurm's SIGKILL. Sharing is
  what --ipc=host --pid=host give: the task sees the node's processes and, as
  their user, may signal them, as an uncontained rank could; a task that
  must not gets --ipc=private (its peers on the node then talk TCP).
"""
from pyctr.errors import PyctrError
from pyctr.spec import Mount, Record

ENV_PREFIXES = ("SLURM_", "SLURMD_")


class SlurmTask(Record):
    """One srun task, from its environment. mpi: "pmix", "pmi2" or None;
    pmi_fd: the PMI-2 socket slurmstepd handed over (passed on), or None;
    node_shared: the container shares the node's IPC and PID namespaces and
    /dev/shm with the step's other tasks on this node."""
    __slots__ = ("job", "step", "rank", "local_rank", "node_index", "tasks_on_node", "mpi",
                 "pmi_fd", "node_shared")
    DEFAULTS = {"node_shared": False}


def task(environ):
    """The SlurmTask that `environ` describes, or None if srun did not start us."""
    keys = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NODEID")
    if not all(k in environ for k in keys):
        return None
    try:
        node_index = int(environ["SLURM_NODEID"])
        per_node = tasks_per_node(environ.get("SLURM_STEP_TASKS_PER_NODE", "1"))
        mpi = "pmix" if "PMIX_RANK" in environ else "pmi2" if "PMI_FD" in environ else None
        return SlurmTask(job=environ["SLURM_JOB_ID"], step=environ["SLURM_STEP_ID"],
                         rank=int(environ["SLURM_PROCID"]),
                         local_rank=int(environ.get("SLURM_LOCALID", "0")),
                         node_index=node_index,
                         tasks_on_node=per_node[node_index] if node_index < len(per_node) else 1,
                         mpi=mpi, pmi_fd=int(environ["PMI_FD"]) if mpi == "pmi2" else None)
    except ValueError as e:
        raise PyctrError("malformed Slurm task environment (SLURM_PROCID %r, SLURM_NODEID %r,"
                         " SLURM_STEP_TASKS_PER_NODE %r): %s" % (
                             environ.get("SLURM_PROCID"), environ.get("SLURM_NODEID"),
                             environ.get("SLURM_STEP_TASKS_PER_NODE"), e)) from e


def tasks_per_node(value):
    """Slurm's compressed count list, "2(x3),1" -> [2, 2, 2, 1]."""
    out = []
    for item in value.split(","):
        count, _, repeat = item.partition("(x")
        out += [int(count)] * (int(repeat.rstrip(")")) if repeat else 1)
    return out


def apply(spec, opts, environ):
    """Make `spec` (not frozen yet) a container for the srun task that
    `environ` describes; nothing if it is not one. opts: the run options
    (an explicit --ipc wins over sharing the node's)."""
    slurm_task = task(environ)
    if slurm_task is None:
        return
    from pyctr.specgen import inherit_env
    inherit_env(spec, environ, ENV_PREFIXES)
    if "pyctr.mpi" in spec.annotations:
        spec.annotations["pyctr.mpi"] = "launched by srun --mpi=%s" % (slurm_task.mpi or "none")
    if slurm_task.tasks_on_node > 1 and not opts.get("ipc") and not opts.get("pid"):
        slurm_task.node_shared = True
        _share_node(spec)
    elif spec.namespace("pid") and not spec.namespace("pid").path:
        # scancel: SIGTERM, then SIGKILL after KillWait to every process of
        # the task. A workload that is its PID namespace's init ignores the
        # SIGTERM, so pyctr was killed too and left its record and cgroup;
        # under pyctr-init the workload ends and pyctr cleans up.
        spec.process.init = True
    spec.slurm = slurm_task


def _share_node(spec):
    spec.namespaces = [ns for ns in spec.namespaces if ns.type not in ("ipc", "pid")]
    spec.mounts = [m for m in spec.mounts if m.destination != "/dev/shm"] + [
        Mount(destination="/dev/shm", type="bind", source="/dev/shm",
              options=["rbind", "nosuid", "nodev"])]


def describe(slurm_task):
    """What rank 0 says about its Slurm side."""
    what = "Slurm task %d of step %s.%s (--mpi=%s)" % (
        slurm_task.rank, slurm_task.job, slurm_task.step, slurm_task.mpi or "none")
    if slurm_task.pmi_fd is not None:
        what += ", PMI-2 fd %d passed on" % slurm_task.pmi_fd
    if slurm_task.node_shared:
        what += ", the node's IPC, PID and /dev/shm shared by the step's %d tasks here" \
            % slurm_task.tasks_on_node
    return what
