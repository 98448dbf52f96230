"""`pyctr cluster up|mpirun|ls|inspect|down`: the command line. It parses
and checks, then calls plan (what up will do), nodes (start and remove),
files (the cluster's record, hosts, hostfiles, agent) and launch (the
mpirun/mpiexec command line)."""
import json
import os
import sys

from pyctr.errors import PyctrError

LAUNCHERS = ("openmpi", "mpich", "any")


def command(paths, argv):
    if not argv or argv[0] in ("-h", "--help"):
        from pyctr import cluster
        print(cluster.__doc__.split("\n\n")[1])
        return 0
    verbs = {"up": up, "down": down, "rm": down, "ls": ls, "list": ls, "mpirun": mpirun,
             "inspect": inspect}
    fn = verbs.get(argv[0])
    if fn is None:
        raise PyctrError("cluster: unknown command %r (up, mpirun, ls, inspect, down)" % argv[0])
    return fn(paths, argv[1:])


# ----------------------------------------------------------------------- up

def up(paths, argv):
    from pyctr.cli import arg_parser
    from pyctr.cluster import plan
    p = arg_parser("cluster up", "Start N containers as the virtual nodes NAME-0..N-1, with "
                   "fixed addresses, /etc/hosts naming them all, MPI hostfiles, a remote "
                   "agent and the MPI settings for their interface.")
    p.add_argument("name")
    p.add_argument("--nodes", type=int, required=True, help="number of nodes (all hosts)")
    p.add_argument("--net", "--network", required=True, dest="net",
                   help="veth:BRIDGE, macvlan:LOWER or a network name (pyctr net ls)")
    p.add_argument("--subnet", help="CIDR for a bridge pyctr makes, or to check the network's")
    p.add_argument("--image", default="mpi", help="node image (default mpi)")
    p.add_argument("--slots", type=int, default=1, help="MPI ranks per node (default 1)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="any",
                   help="whose settings the nodes get: openmpi, mpich or any (default)")
    p.add_argument("--host-base", type=int, default=plan.HOST_BASE,
                   help="node i gets host number H+i of the subnet (default %d)"
                   % plan.HOST_BASE)
    p.add_argument("-v", "--volume", action="append", default=[], dest="volumes",
                   help="SRC:DST[:ro] bind mount in every node")
    p.add_argument("-e", "--env", action="append", default=[],
                   help="KEY=VALUE for every node (wins over the MPI settings)")
    p.add_argument("--here", help="nodes to start on this host, e.g. 0-1 (default all)")
    p.add_argument("--remote", action="append", default=[], metavar="LIST=COMMAND",
                   help="how the agent reaches nodes on other hosts: a command prefix, "
                   "{node} is the node's name, e.g. 2-3='ssh hostB pyctr exec {node}'")
    a = p.parse_args(argv)
    name = plan.check_name(a.name)
    if not 1 <= a.nodes <= 4096:
        raise PyctrError("cluster up: --nodes must be 1..4096")
    if not 1 <= a.slots <= 1024:
        raise PyctrError("cluster up: --slots must be 1..1024")
    if a.host_base < 1:
        raise PyctrError("cluster up: --host-base must be at least 1")
    for e in a.env:
        if "=" not in e or e.startswith("="):
            raise PyctrError("cluster up: -e %r: expected KEY=VALUE" % e)
    here = plan.parse_indices(a.here, a.nodes, "--here") if a.here else list(range(a.nodes))
    remote = plan.parse_remote(a.remote, a.nodes, name)
    both = sorted(set(here) & set(remote))
    if both:
        raise PyctrError("cluster up: node %s is both --here and --remote" % both[0])
    from pyctr import images
    if images.lookup(paths, a.image) is None:
        raise PyctrError("cluster up: image %r not found (pyctr image build %s)"
                         % (a.image, a.image))
    from pyctr.state import StateStore
    store = StateStore(paths)
    for i in here:
        if os.path.exists(store.dir(plan.node_name(name, i))):
            raise PyctrError("cluster up: container name %s is already in use"
                             % plan.node_name(name, i))
    net = plan.plan_network(paths, a.net, a.subnet)
    addrs = plan.node_addresses(net.subnet, a.host_base, a.nodes)
    from pyctr import mpi
    # Every node's eth0 is in the same subnet: one set of settings for all.
    env = mpi.mpi_env([mpi.Iface("eth0", addrs[0], net.subnet.prefix)], a.launcher,
                      shared_memory=a.slots > 1)
    env.update(e.split("=", 1) for e in a.env)

    from pyctr.cluster import files, nodes
    files.make_dir(paths, name)
    record = {
        "name": name, "nodes": [], "net": a.net, "kind": net.kind, "device": net.device,
        "uplink": net.uplink, "pool": net.pool, "subnet": str(net.subnet),
        "prefix": net.subnet.prefix, "host_side": net.host_side,
        # Whatever is there after the first node started, if nothing was before,
        # is ours to remove (unless someone else uses it by then); a user's
        # nodes are wired by the helper, whose host side is the administrator's.
        "made_host_side": not net.host_side_existed and not paths.rootless,
        "image": a.image, "slots": a.slots, "launcher": a.launcher, "host_base": a.host_base,
        "env": env, "volumes": a.volumes, "workdir": "/",
    }
    nodes.start(paths, record, net, addrs, here, remote)
    report(paths, record)
    return 0


def report(paths, record):
    from pyctr import mpi
    from pyctr.cluster import files, launch
    d = files.cluster_dir(paths, record["name"])
    here = sum(1 for n in record["nodes"] if n["here"])
    out = ["cluster %s: %d node%s (%d on this host) on %s, subnet %s, image %s, %d slot%s "
           "each" % (record["name"], len(record["nodes"]), "s"[:len(record["nodes"]) != 1],
                     here, record["net"], record["subnet"], record["image"], record["slots"],
                     "s"[:record["slots"] != 1])]
    for n in record["nodes"]:
        where = "this host" if n["here"] else (
            "via %s" % " ".join(n["exec"]) if n["exec"] else "elsewhere (no --remote)")
        out.append("  %-16s %-15s %s" % (n["name"], n["ip"], where))
    ifs = launch.host_ifaces(launch.subnet(record))
    out.append("host side: %s" % (", ".join("%s %s" % (i.ifname, i.ip) for i in ifs) or "none"))
    out.append("files: %s/{cluster.json,hosts,hostfile,hosts.mpich,agent}" % d)
    out.append("MPI settings in every node:")
    out += ["  " + line for line in mpi.describe(record["env"])]
    launchers = ("openmpi", "mpich") if record["launcher"] == "any" else (record["launcher"],)
    for launcher in launchers:
        if not ifs:
            break
        argv, env = launch.command(paths, record, launcher, ["CMD", "ARGS..."], ifs)
        out.append("%s (or: pyctr cluster mpirun %s%s -- CMD ARGS...):" % (
            "Open MPI" if launcher == "openmpi" else "MPICH", record["name"],
            " --launcher mpich" if launcher == "mpich" else ""))
        out.append("  " + launch.shell_line(argv, env))
        out += ["    %s" % line for line in mpi.describe(env)]
    print("\n".join(out))


# ------------------------------------------------------------------- mpirun

def mpirun(paths, argv):
    import argparse
    from pyctr.cli import arg_parser
    from pyctr.cluster import files, launch
    p = arg_parser("cluster mpirun", "Run an MPI job on a cluster: Open MPI's mpirun (or "
                   "MPICH's mpiexec) here, its daemons in the nodes via pyctr exec. ARGS go "
                   "to mpirun as they are; -np (all slots) and the working directory (the "
                   "image's) are added unless given.")
    p.add_argument("name")
    p.add_argument("--launcher", choices=("openmpi", "mpich"),
                   help="default: the cluster's, Open MPI for any")
    p.add_argument("--print", action="store_true", dest="dry",
                   help="print the command line instead of running it")
    if "--" in argv:
        k = argv.index("--")
        a = p.parse_args(argv[:k])
        a.args = argv[k + 1:]
    else:
        p.add_argument("args", nargs=argparse.REMAINDER)
        a = p.parse_args(argv)
    record = files.load(paths, a.name)
    launcher = a.launcher or ("mpich" if record["launcher"] == "mpich" else "openmpi")
    if record["launcher"] not in ("any", launcher):
        raise PyctrError("cluster %s was set up for %s (cluster up --launcher): its nodes lack "
                         "%s's settings" % (a.name, record["launcher"], launcher))
    if not a.args:
        raise PyctrError("cluster mpirun: no command given")
    lost = [n["name"] for n in record["nodes"] if not n["exec"]]
    if lost:
        raise PyctrError("cluster %s: no way to reach %s from here (cluster up --remote)"
                         % (a.name, ", ".join(lost)))
    ifs = launch.host_ifaces(launch.subnet(record))
    if not ifs:
        raise PyctrError("cluster %s: this host has no address in %s: mpirun here cannot "
                         "reach the nodes" % (a.name, record["subnet"]))
    job, env = launch.command(paths, record, launcher, a.args, ifs)
    if a.dry:
        print(launch.shell_line(job, env))
        return 0
    import shutil
    if not shutil.which(job[0]):
        raise PyctrError("cluster mpirun: %s is not installed here (apt-get install %s)"
                         % (job[0], "openmpi-bin" if launcher == "openmpi" else "mpich"))
    full = dict(os.environ)
    full.update(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(job[0], job, full)


# --------------------------------------------------------------- ls, inspect

def ls(paths, argv):
    from pyctr.cli import arg_parser, print_table
    from pyctr.cluster import files
    from pyctr.state import StateStore
    arg_parser("cluster ls", "List clusters.").parse_args(argv)
    store = StateStore(paths)
    rows = [("NAME", "NODES", "HERE", "RUNNING", "NETWORK", "SUBNET", "IMAGE")]
    for name in files.names(paths):
        try:
            r = files.load(paths, name)
        except PyctrError as e:
            rows.append((name, "?", "?", "?", str(e), "", ""))
            continue
        here = [n["name"] for n in r["nodes"] if n["here"]]
        running = 0
        for node in here:
            try:
                running += store.load(node).process_alive()
            except PyctrError:
                continue
        rows.append((name, str(len(r["nodes"])), str(len(here)), str(running), r["net"],
                     r["subnet"], r["image"]))
    print_table(rows)
    return 0


def inspect(paths, argv):
    from pyctr.cli import arg_parser
    from pyctr.cluster import files
    p = arg_parser("cluster inspect", "Show a cluster's record as JSON.")
    p.add_argument("name")
    a = p.parse_args(argv)
    print(json.dumps(files.load(paths, a.name), indent=2))
    return 0


# --------------------------------------------------------------------- down

def down(paths, argv):
    from pyctr.cli import arg_parser
    from pyctr.cluster import files, nodes
    p = arg_parser("cluster down", "Remove clusters: their nodes on this host, their files, "
                   "and the bridge or host shim that `cluster up` made.")
    p.add_argument("name", nargs="+")
    a = p.parse_args(argv)
    for name in a.name:
        record = files.load(paths, name)
        nodes.teardown(paths, record, [n["name"] for n in record["nodes"] if n["here"]])
        print(name)
    return 0
