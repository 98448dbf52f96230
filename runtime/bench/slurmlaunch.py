"""`pyctr bench paper --launcher slurm`: srun places the study's ranks.

Each testbed of the benchmark (one per datapath) also becomes a Slurm
cluster (pyctr.slurmbed: munged, slurmctld and one slurmd per node, inside
the nodes' namespaces), and every command of a workload is an srun on node
A, the login node:

  nic      srun --mpi=pmix -N2 -n2 APP                 the nodes' own namespaces
  veth     srun --mpi=pmix -N2 -n2 pyctr run --rm --net=paperbr IMAGE APP
  macvlan  srun --mpi=pmix -N2 -n2 pyctr run --rm --net=papermv IMAGE APP

The container forms are pyctr's hybrid launch: each task is a container
made by `pyctr run`, which relays slurmstepd's PMIx server into it and sets
the MPI variables for its eth0 itself. Open MPI throughout (MPICH 4.0.2's
ch4:ucx can hang in MPI_Finalize, see pyctr.mpi.env). iperf3's server and
client are one-task steps on node B and node A. The containers use the
network each node defines for the mpirun configuration (pyctr.bench.paper):
an MPI task takes the lowest free address of its node's range, an iperf3
container the range's last one, which no mpirun container takes.
"""
import sys

from pyctr.bench import workloads as wl
from pyctr.bench.paper import PREFIX, wire_counter
from pyctr.errors import PyctrError

SRUN_MPI = "--mpi=pmix"
TIME_LIMIT = "30"     # minutes: Slurm ends a step the benchmark lost track of


class SrunNode(wl.Node):
    """A Node whose commands are srun steps with `placement` (which nodes,
    how many tasks), in a container with address `ip` if the step's tasks
    are containers. A step that does not end in time is cancelled, so that
    the next srun does not wait behind it."""

    def __init__(self, name, host, step, placement, ip=None):
        super().__init__(name, host, None, environ=step.cluster.env())
        self.step, self.placement, self.ip = step, placement, ip

    def run(self, argv, env=None, timeout=600, cwd=None):
        full = self.step.argv(self.placement, [str(a) for a in argv], env or {}, cwd, self.ip)
        try:
            return self.execute(full, argv[0], timeout)
        except wl.WorkloadFailed:
            self.step.cancel()
            raise

    def start(self, argv, env=None):
        return self.start_argv(self.step.argv(self.placement, [str(a) for a in argv],
                                              env or {}, None, self.ip))


class SlurmSetup(wl.Setup):
    """A Setup whose MPI jobs srun starts (no mpirun, no agent)."""
    launch_word = "srun"

    def __init__(self, name, launcher, a, b, workdir, env, note, expect_netns, wire,
                 node_netns):
        super().__init__(name, a, b, launcher, None, workdir, env, note, expect_netns, wire)
        self.node_netns = node_netns

    def mpirun(self, argv, cwd, env=None, timeout=900):
        """The workloads' MPI job, one rank per node; `env` goes to the ranks."""
        full = dict(self.env)
        full.update(env or {})
        return self.launcher.run(argv, env=full, timeout=timeout, cwd=cwd)

    def netns_problem(self, seen):
        if self.expect_netns is not None:
            return super().netns_problem(seen)
        # Containers: one netns per rank, made by pyctr run, none a node's own.
        if sorted(seen) != [0, 1] or len(set(seen.values())) != 2:
            return "ranks ran in network namespaces %s, expected one each" % seen
        if set(seen.values()) & set(self.node_netns):
            return "ranks ran in network namespaces %s, which include a node's own %s" % (
                seen, self.node_netns)
        return None


class SlurmConfig:
    """One datapath of the benchmark with srun as the launcher, on a
    testbed of its own or one an mpirun configuration also uses. builder:
    the datapath's mpirun configuration class (its MPI settings, network)."""

    def __init__(self, datapath, builder, tb, workdir, args, paths):
        self.datapath, self.builder = datapath, builder
        self.tb, self.workdir, self.args, self.paths = tb, workdir, args, paths
        self.cluster = None
        self.note = NOTES[datapath]

    def up(self):
        from pyctr.slurmbed import SlurmCluster, SlurmError
        tb = self.tb
        self.cluster = cluster = SlurmCluster(tb, cluster_name="paper" + self.datapath)
        try:
            cluster.up()
        except SlurmError as e:
            raise PyctrError("bench paper: Slurm on the %s testbed: %s" % (self.datapath, e)) \
                from e
        a, b = tb.nodes
        node_netns = [cluster.node_netns(n) for n in tb.nodes]
        if self.datapath == "nic":
            # A /tmp of each node's own for Open MPI's session directory, as
            # real nodes have.
            env = dict(self.builder.mpi_settings(), OMPI_MCA_orte_tmpdir_base=cluster.local)
            net, hosts, ips = None, [a.ip, b.ip], [None, None]
            expect = dict(enumerate(node_netns))
        else:
            # pyctr run sets the MPI variables for the container's eth0.
            env, expect = {}, None
            for n, node in enumerate(tb.nodes):
                net, _ = self.builder.network(node, n)
            hosts = ips = [self.builder.spare(n) for n in range(len(tb.nodes))]
        step = Step(cluster, self.workdir, self.args.image, self.paths.data, net)
        nodes = [SrunNode("AB"[n], hosts[n], step, ["-w", node.name, "-N1", "-n1"], ips[n])
                 for n, node in enumerate(tb.nodes)]
        launcher = SrunNode("A", a.ip, step, [SRUN_MPI, "-N2", "-n2"])
        return SlurmSetup("%s with srun" % self.datapath, launcher, nodes[0], nodes[1],
                          self.workdir, env, self.note, expect, wire_counter(a.netns),
                          node_netns)

    def down(self):
        if self.cluster is not None:
            self.cluster.down()
            self.cluster = None


class Step:
    """How a command becomes an srun step on the cluster, from node A (the
    login node): plainly on the nodes (net None), or in a container per
    task on network `net`, the workdir mounted at its own path."""

    def __init__(self, cluster, workdir, image, data, net):
        self.cluster, self.workdir, self.image, self.data, self.net = \
            cluster, workdir, image, data, net

    def argv(self, placement, argv, env, cwd, ip):
        """The host argv: srun PLACEMENT ... ARGV with `env`, in `cwd` (the
        workdir if None); `ip`: the container's fixed address, or None."""
        cwd = cwd or self.workdir
        srun = ["srun"] + placement + ["--time", TIME_LIMIT, "--kill-on-bad-exit=1",
                                       "--chdir", cwd]
        if self.net is None:
            return self.cluster.node_argv(self.cluster.controller,
                                          wl.env_argv(env) + srun + argv)
        net = "--net=%s" % self.net + (",ip=%s/%d" % (ip, PREFIX) if ip else "")
        run = [sys.executable, "-m", "pyctr", "--root", self.cluster.pyctr_root,
               "--config", self.cluster.pyctr_config, "--data", self.data,
               "run", "--rm", net, "-v", "%s:%s" % (self.workdir, self.workdir), "-w", cwd]
        for key, value in sorted(env.items()):
            run += ["-e", "%s=%s" % (key, value)]
        return self.cluster.node_argv(self.cluster.controller, srun + run + [self.image] + argv)

    def cancel(self):
        """Every job of the cluster: a step that outlived its srun."""
        self.cluster.run_on(self.cluster.controller, ["scancel", "--full", "-u", "root"],
                            timeout=30)


NOTES = {
    "nic": "no container: srun %s -N2 -n2 starts the ranks in the nodes' own network "
           "namespaces (slurmd per node)" % SRUN_MPI,
    "veth": "srun %s -N2 -n2 pyctr run --net=NET: each task a container on a bridge "
            "holding the node's NIC" % SRUN_MPI,
    "macvlan": "srun %s -N2 -n2 pyctr run --net=NET: each task a container with a macvlan "
               "(bridge mode) on the node's NIC" % SRUN_MPI,
}
