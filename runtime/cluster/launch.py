"""How a job reaches the nodes: mpirun (Open MPI) or mpiexec (MPICH's
hydra) on this host, their daemons started in the nodes by the agent
(files.write_agent) through `pyctr exec`, and the launcher's own MPI
settings for this host's address in the cluster's subnet."""
import os
import shlex
import sys

OPENMPI = "mpirun.openmpi"
MPICH = "mpiexec.mpich"


def pyctr_argv(paths):
    """This pyctr, in this world: the agent's way back to it. -P: the
    launcher's current directory is not a place to import pyctr from."""
    return [sys.executable, "-P", "-m", "pyctr", "--root", paths.root, "--config", paths.config,
            "--data", paths.data]


def exec_route(paths, node):
    """The agent's argv prefix for a node on this host."""
    return pyctr_argv(paths) + ["exec", node]


def host_ifaces(subnet):
    """[mpi.Iface] of this network namespace's addresses inside `subnet`
    (the bridge's, the macvlan shim's, the lower device's own), with the
    subnet's prefix (a shim holds its address as a /32)."""
    from pyctr import mpi
    from pyctr.network.addr import ip_int
    from pyctr.network.rtnl import Netlink
    with Netlink() as nl:
        names = {link.index: link.name for link in nl.links() if link.up}
        return [mpi.Iface(names[idx], ip, subnet.prefix) for idx, ip, _ in nl.addrs()
                if idx in names and ip_int(ip) in subnet]


def subnet(record):
    from pyctr.network.addr import Subnet
    return Subnet.parse(record["subnet"])


def command(paths, record, launcher, args, ifs):
    """(argv, env) that run ARGS on the cluster: mpirun/mpiexec on this host,
    its daemons in the nodes through the agent. `env` holds only what pyctr
    adds to the caller's environment."""
    from pyctr import mpi
    from pyctr.cluster.files import cluster_dir
    d = cluster_dir(paths, record["name"])
    env = mpi.launcher_env(ifs, launcher)
    total = len(record["nodes"]) * record["slots"]
    if launcher == "openmpi":
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        argv = [OPENMPI, "--hostfile", os.path.join(d, "hostfile"),
                # orted, too, insists on finding the agent (though it never runs
                # it): `sh` is found in every node, the agent's path need not be.
                "--mca", "plm_rsh_agent", "sh " + os.path.join(d, "agent"),
                # every orted reports to mpirun itself, so none ever has to start
                # another one (the agent cannot run inside a node)
                "--mca", "routed", "direct",
                # each orted would bind its ranks to the same cores of one machine
                "--bind-to", "none"]
        if not _has(args, ("-np", "-n", "--np", "-c")):
            argv += ["-np", str(total)]
        if not _has(args, ("--wdir", "-wdir", "-wd", "--wd")):
            argv += ["--wdir", record["workdir"]]
    else:
        iface = env.pop("HYDRA_IFACE")
        argv = [MPICH, "-launcher", "ssh", "-launcher-exec", os.path.join(d, "agent"),
                # proxies connect back to this interface's address, not our hostname
                "-iface", iface, "-f", os.path.join(d, "hosts.mpich"),
                # ranks take the node's environment, not this host's
                "-genvnone"]
        if not _has(args, ("-n", "-np")):
            argv += ["-n", str(total)]
        if not _has(args, ("-wdir", "--wdir")):
            argv += ["-wdir", record["workdir"]]
    return argv + list(args), env


def _has(args, flags):
    return any(a in flags or a.split("=", 1)[0] in flags for a in args)


def shell_line(argv, env):
    return " ".join(["%s=%s" % (k, shlex.quote(v)) for k, v in sorted(env.items())] +
                    [shlex.quote(a) for a in argv])
