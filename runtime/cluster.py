"""`pyctr cluster`: a virtual cluster of long-lived containers, the study's
setting. Each virtual node is a container; `mpirun` (or MPICH's `mpiexec`)
runs on the host and starts its daemons in the nodes through `pyctr exec`,
the remote agent, so no node needs an sshd.

    pyctr cluster up NAME --nodes N --net=veth:BRIDGE|macvlan:LOWER|NETWORK
                     [--subnet CIDR] [--image mpi] [--slots K]
                     [--launcher openmpi|mpich|any] [--host-base H]
                     [-v SRC:DST[:ro]]... [-e KEY=VALUE]...
                     [--here LIST] [--remote LIST=COMMAND]...
    pyctr cluster mpirun NAME [--launcher openmpi|mpich] [--print] [--] [ARGS...]
    pyctr cluster ls
    pyctr cluster inspect NAME
    pyctr cluster down NAME...

Node i is the container NAME-i, with hostname NAME-i and the address
subnet + H + i (H: --host-base, default 10; a network's `range` does not
apply): the same on every host, so the nodes' /etc/hosts and the MPI
hostfiles are known before anything runs. The host needs an address in the
subnet (the bridge's, or the macvlan shim's) for mpirun's daemons to call
back; its Open MPI / MPICH must be the image's versions (both Debian 12).
A cluster may span machines on one segment: each runs `cluster up` with the
same NAME, --nodes and subnet, starting only its own nodes (--here); the
machine that launches jobs says how to reach the others' (--remote, e.g.
`--remote 2-3='ssh hostB pyctr exec {node}'`).

Files, in <state root>/clusters/NAME/ (tmpfs, like the containers):
  cluster.json   what `up` made (nodes, addresses, network, host side)
  hosts          every node's /etc/hosts (rewritten in place: it is a bind mount)
  hostfile       Open MPI's;  hosts.mpich  MPICH's (hydra)
  agent          the remote agent: AGENT [options] HOST COMMAND...
"""
import json
import os
import shlex
import subprocess
import sys

from pyctr.errors import PyctrError

LAUNCHERS = ("openmpi", "mpich", "any")
HOST_BASE = 10
# What a node runs; --init puts a reaper at PID 1, which reaps the orted
# daemons and ranks that mpirun starts in the node.
NODE_COMMAND = ["sleep", "infinity"]
RUN_TIMEOUT = 120
PROGRESS_FROM = 8   # nodes
OPENMPI = "mpirun.openmpi"
MPICH = "mpiexec.mpich"


def command(paths, argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1])
        return 0
    verbs = {"up": up, "down": down, "rm": down, "ls": ls, "list": ls, "mpirun": mpirun,
             "inspect": inspect}
    fn = verbs.get(argv[0])
    if fn is None:
        raise PyctrError("cluster: unknown command %r (up, mpirun, ls, inspect, down)" % argv[0])
    return fn(paths, argv[1:])


def clusters_dir(paths):
    return os.path.join(paths.root, "clusters")


def cluster_dir(paths, name):
    return os.path.join(clusters_dir(paths), name)


def pyctr_argv(paths):
    """This pyctr, in this world: the agent's and the nodes' way back to it."""
    return [sys.executable, "-m", "pyctr", "--root", paths.root, "--config", paths.config,
            "--data", paths.data]


# ------------------------------------------------------------------- parsing

def check_name(name):
    ok = name[:1].isalnum() and all(c.isalnum() or c in "_.-" for c in name)
    if not ok or len(name) > 40:
        raise PyctrError("cluster: invalid name %r: use letters, digits, _ . - (max 40)" % name)
    return name


def node_name(name, i):
    return "%s-%d" % (name, i)


def parse_indices(text, nodes, what):
    """"0,2-3" -> [0, 2, 3]; every index must be a node of the cluster."""
    out = []
    for part in text.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise PyctrError("cluster up: %s: malformed node list %r (e.g. 0,2-3)" % (what, text))
        lo, hi = int(lo), int(hi) if dash else int(lo)
        if lo > hi or hi >= nodes:
            raise PyctrError("cluster up: %s: nodes %s are not in 0..%d" % (what, part, nodes - 1))
        out += [i for i in range(lo, hi + 1) if i not in out]
    return sorted(out)


def parse_remote(items, nodes, name):
    """--remote LIST=COMMAND -> {index: argv prefix}; {node} in COMMAND
    becomes the node's container name."""
    routes = {}
    for item in items or []:
        spec, eq, cmd = item.partition("=")
        words = shlex.split(cmd) if eq else []
        if not words:
            raise PyctrError("cluster up: --remote %r: expected LIST=COMMAND, e.g. "
                             "1='ssh hostB pyctr exec {node}'" % item)
        for i in parse_indices(spec, nodes, "--remote"):
            routes[i] = [w.replace("{node}", node_name(name, i)) for w in words]
    return routes


class NetPlan:
    """What the nodes' --net resolves to, known before any node starts."""

    def __init__(self, text, kind, device, subnet, host_side, uplink=None):
        from pyctr.network import kinds
        self.text = text            # the --net value given to each node (plus ip=)
        self.kind = kind            # "veth" or "macvlan" (pyctr.network.kinds)
        self.device = device        # the bridge, or the lower device
        self.subnet = subnet        # network.addr.Subnet
        self.host_side = host_side  # the host's way in: the bridge, or the macvlan shim
        self.uplink = uplink        # a bridge network's NIC in the bridge
        self.pool = kinds.get(kind).pool(device)
        self.host_side_existed = True


def plan_network(paths, text, subnet_text):
    """Resolve --net (and --subnet) the way the nodes' attach will, so that
    addresses can be fixed in advance; refuse setups where this host could
    not reach its nodes (no bridge address, no macvlan shim)."""
    from pyctr import network
    from pyctr.network import config
    from pyctr.network.addr import Subnet, ip_int
    from pyctr.network.rtnl import Netlink
    from pyctr.network.kinds.macvlan import shim_ifname
    req = network.parse(text)
    if req.form in ("none", "host", "container"):
        raise PyctrError("cluster up: --net=%s: the nodes need a network of their own "
                         "(veth:BRIDGE, macvlan:LOWER or a network name)" % text)
    if req.ip:
        raise PyctrError("cluster up: --net=%s: no ip= here, node addresses are fixed "
                         "(subnet + --host-base + node index)" % text)
    want = Subnet.parse(subnet_text) if subnet_text else None

    def agree(found, where):
        if want is not None and (want.net, want.prefix) != (found.net, found.prefix):
            raise PyctrError("cluster up: --subnet %s does not match %s's %s"
                             % (want, where, found))
        return found

    with Netlink() as nl:
        if req.form == "network" or (req.form == "veth" and config.exists(paths, req.network)):
            net = config.load(paths, req.network)
            if req.form == "veth" and net.kind != "veth":
                raise PyctrError("network %s is a %s network, not a bridge" % (net.name, net.kind))
            subnet = agree(net.subnet, "network %s" % net.name)
            if net.kind == "macvlan":
                _need_shim(text, req.mode or net.options.get("mode"),
                           net.options.get("host_shim", True) and req.host_shim is not False)
                plan = NetPlan(text, "macvlan", net.device, subnet, shim_ifname(net.device))
                if nl.link(net.device) is None:
                    raise PyctrError("network %s: unknown lower device %s" % (net.name,
                                                                              net.device))
            else:
                plan = NetPlan(text, "veth", net.device, subnet, net.device, net.uplink)
        elif req.form == "veth":
            br = nl.link(req.network)
            if br is None:
                if want is None:
                    raise PyctrError("cluster up: bridge %s does not exist: give --subnet CIDR "
                                     "(pyctr makes %s with the subnet's first address)"
                                     % (req.network, req.network))
                subnet = want
            else:
                if br.link_type != "bridge":
                    raise PyctrError("%s is not a bridge (it is a %s device)"
                                     % (req.network, br.link_type or "physical"))
                addrs = nl.addrs(br.index)
                if not addrs:
                    raise PyctrError("cluster up: bridge %s has no IPv4 address: this host "
                                     "could not reach its nodes (give it one, or name a new "
                                     "bridge with --subnet)" % req.network)
                _, ip, prefix = addrs[0]
                subnet = agree(Subnet(ip_int(ip), prefix), "bridge %s" % req.network)
            plan = NetPlan(text, "veth", req.network, subnet, req.network)
        else:
            lower = nl.link(req.network)
            if lower is None:
                raise PyctrError("unknown lower device %s" % req.network)
            _need_shim(text, req.mode, req.host_shim is not False)
            addrs = nl.addrs(lower.index)
            if addrs:
                _, ip, prefix = addrs[0]
                subnet = agree(Subnet(ip_int(ip), prefix), "lower device %s" % req.network)
            elif want is None:
                raise PyctrError("cluster up: lower device %s has no IPv4 address: give "
                                 "--subnet CIDR" % req.network)
            else:
                subnet = want
            plan = NetPlan(text, "macvlan", req.network, subnet, shim_ifname(req.network))
        plan.host_side_existed = nl.link(plan.host_side) is not None
    return plan


def _need_shim(text, mode, shim):
    if (mode or "bridge") != "bridge":
        raise PyctrError("cluster up: --net=%s: macvlan mode %s: the host gets no shim, so "
                         "mpirun here could not reach the nodes (use bridge mode)" % (text, mode))
    if not shim:
        raise PyctrError("cluster up: --net=%s: without a host shim mpirun here could not "
                         "reach the nodes" % text)


def node_addresses(subnet, base, nodes):
    from pyctr.network.addr import int_ip
    out = []
    for i in range(nodes):
        ip = subnet.net + base + i
        if not subnet.host(ip):
            raise PyctrError("cluster up: subnet %s has no room for %d nodes from host "
                             "number %d (--host-base)" % (subnet, nodes, base))
        out.append(int_ip(ip))
    return out


# ----------------------------------------------------------------------- up

def up(paths, argv):
    from pyctr.cli import arg_parser
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
    p.add_argument("--host-base", type=int, default=HOST_BASE,
                   help="node i gets host number H+i of the subnet (default %d)" % HOST_BASE)
    p.add_argument("-v", "--volume", action="append", default=[], dest="volumes",
                   help="SRC:DST[:ro] bind mount in every node")
    p.add_argument("-e", "--env", action="append", default=[],
                   help="KEY=VALUE for every node (wins over the MPI settings)")
    p.add_argument("--here", help="nodes to start on this host, e.g. 0-1 (default all)")
    p.add_argument("--remote", action="append", default=[], metavar="LIST=COMMAND",
                   help="how the agent reaches nodes on other hosts: a command prefix, "
                   "{node} is the node's name, e.g. 2-3='ssh hostB pyctr exec {node}'")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        raise PyctrError("cluster up needs root (containers with their own network)")
    name = check_name(a.name)
    if not 1 <= a.nodes <= 4096:
        raise PyctrError("cluster up: --nodes must be 1..4096")
    if not 1 <= a.slots <= 1024:
        raise PyctrError("cluster up: --slots must be 1..1024")
    if a.host_base < 1:
        raise PyctrError("cluster up: --host-base must be at least 1")
    for e in a.env:
        if "=" not in e or e.startswith("="):
            raise PyctrError("cluster up: -e %r: expected KEY=VALUE" % e)
    here = parse_indices(a.here, a.nodes, "--here") if a.here else list(range(a.nodes))
    remote = parse_remote(a.remote, a.nodes, name)
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
        if os.path.exists(store.dir(node_name(name, i))):
            raise PyctrError("cluster up: container name %s is already in use"
                             % node_name(name, i))
    net = plan_network(paths, a.net, a.subnet)
    addrs = node_addresses(net.subnet, a.host_base, a.nodes)
    from pyctr import mpi
    # Every node's eth0 is in the same subnet: one set of settings for all.
    env = mpi.mpi_env([mpi.Iface("eth0", addrs[0], net.subnet.prefix)], a.launcher,
                      shared_memory=a.slots > 1)
    env.update(e.split("=", 1) for e in a.env)

    d = cluster_dir(paths, name)
    os.makedirs(clusters_dir(paths), mode=0o711, exist_ok=True)
    try:
        os.mkdir(d, 0o755)
    except FileExistsError:
        raise PyctrError("cluster %s already exists (pyctr cluster down %s)" % (name, name))
    record = {
        "name": name, "nodes": [], "net": a.net, "kind": net.kind, "device": net.device,
        "uplink": net.uplink, "pool": net.pool, "subnet": str(net.subnet),
        "prefix": net.subnet.prefix, "host_side": net.host_side,
        # Whatever is there after the first node started, if nothing was before,
        # is ours to remove (unless someone else uses it by then).
        "made_host_side": not net.host_side_existed,
        "image": a.image, "slots": a.slots, "launcher": a.launcher, "host_base": a.host_base,
        "env": env, "volumes": a.volumes, "workdir": "/",
    }
    started = []
    try:
        with _progress("cluster up %s" % name, len(here) + 1) as prog:
            for i in here:
                node = node_name(name, i)
                prog.step("starting %s (%s)" % (node, addrs[i]))
                start_node(paths, net, node, addrs[i], env, a.volumes, a.image)
                started.append(node)
            prog.step("writing hosts, hostfiles and the agent")
            for i in range(a.nodes):
                record["nodes"].append({
                    "index": i, "name": node_name(name, i), "ip": addrs[i], "here": i in here,
                    "exec": pyctr_argv(paths) + ["exec", node_name(name, i)] if i in here
                    else remote.get(i)})
            if here:
                config = json.loads(store.read_file(node_name(name, here[0]), "config.json"))
                record["workdir"] = config["process"].get("cwd") or "/"
                if not host_ifaces(net.subnet):
                    raise PyctrError("cluster up: this host has no address in %s after the "
                                     "nodes started; mpirun here could not reach them"
                                     % net.subnet)
            write_files(paths, record)
    except BaseException:
        teardown(paths, record, started)
        raise
    report(paths, record)
    return 0


class _Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def step(self, what):
        pass


def _progress(title, total):
    """Progress for big clusters only: a node starts in about 0.1 s, and a
    few lines of progress before an error would bury it."""
    if total <= PROGRESS_FROM:
        return _Quiet()
    from pyctr.progress import Progress
    return Progress(title, total)


def start_node(paths, net, node, ip, env, volumes, image):
    argv = pyctr_argv(paths) + ["run", "-d", "--init", "--name", node, "--hostname", node,
                                "--net=%s,ip=%s/%d" % (net.text, ip, net.subnet.prefix)]
    for k, v in sorted(env.items()):
        argv += ["-e", "%s=%s" % (k, v)]
    for v in volumes:
        argv += ["-v", v]
    argv += [image] + NODE_COMMAND
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        # Whatever got this far under our node's name is ours: remove it.
        teardown(paths, {"name": None}, [node])
        raise PyctrError("cluster up: node %s did not start in %d s" % (node, RUN_TIMEOUT))
    if r.returncode:
        lines = r.stderr.strip().splitlines() or ["pyctr run exited %d" % r.returncode]
        why = lines[-1]
        raise PyctrError("cluster up: node %s: %s" % (node, why[7:] if why.startswith(
            "pyctr: ") else why))


def hosts_text(record):
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += ["%s\t%s" % (n["ip"], n["name"]) for n in record["nodes"]]
    return "\n".join(lines) + "\n"


def write_files(paths, record):
    from pyctr.bench.paper import _write_agent
    from pyctr.state import StateStore
    d = cluster_dir(paths, record["name"])
    hosts = hosts_text(record)
    store = StateStore(paths)
    for n in record["nodes"]:
        if n["here"]:
            # The container's /etc/hosts is a bind mount of this file: rewrite
            # it in place (a new file would not be what the container sees).
            with open(os.path.join(store.dir(n["name"]), "etc", "hosts"), "r+") as f:
                f.write(hosts)
                f.truncate()
    files = {"hosts": hosts,
             "hostfile": "".join("%s slots=%d\n" % (n["name"], record["slots"])
                                 for n in record["nodes"]),
             "hosts.mpich": "".join("%s:%d\n" % (n["name"], record["slots"])
                                    for n in record["nodes"])}
    for fname, text in files.items():
        with open(os.path.join(d, fname), "w") as f:
            f.write(text)
    _write_agent(os.path.join(d, "agent"), {n["name"]: n["exec"] for n in record["nodes"]
                                            if n["exec"]})
    tmp = os.path.join(d, "cluster.json.tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.rename(tmp, os.path.join(d, "cluster.json"))


def host_ifaces(subnet):
    """[mpi.Iface] of this network namespace's addresses inside `subnet`
    (the bridge's, the macvlan shim's, the lower device's own), with the
    subnet's prefix (a shim holds its address as a /32)."""
    from pyctr import mpi
    from pyctr.network.addr import ip_int
    from pyctr.network.rtnl import Netlink
    with Netlink() as nl:
        names = {l.index: l.name for l in nl.links() if l.up}
        return [mpi.Iface(names[idx], ip, subnet.prefix) for idx, ip, _ in nl.addrs()
                if idx in names and ip_int(ip) in subnet]


def report(paths, record):
    from pyctr import mpi
    d = cluster_dir(paths, record["name"])
    here = sum(1 for n in record["nodes"] if n["here"])
    out = ["cluster %s: %d node%s (%d on this host) on %s, subnet %s, image %s, %d slot%s "
           "each" % (record["name"], len(record["nodes"]), "s"[:len(record["nodes"]) != 1],
                     here, record["net"], record["subnet"], record["image"], record["slots"],
                     "s"[:record["slots"] != 1])]
    for n in record["nodes"]:
        where = "this host" if n["here"] else (
            "via %s" % " ".join(n["exec"]) if n["exec"] else "elsewhere (no --remote)")
        out.append("  %-16s %-15s %s" % (n["name"], n["ip"], where))
    ifs = host_ifaces(_subnet(record))
    out.append("host side: %s" % (", ".join("%s %s" % (i.ifname, i.ip) for i in ifs) or "none"))
    out.append("files: %s/{cluster.json,hosts,hostfile,hosts.mpich,agent}" % d)
    out.append("MPI settings in every node:")
    out += ["  " + line for line in mpi.describe(record["env"])]
    launchers = ("openmpi", "mpich") if record["launcher"] == "any" else (record["launcher"],)
    for launcher in launchers:
        if not ifs:
            break
        argv, env = launch_command(paths, record, launcher, ["CMD", "ARGS..."], ifs)
        out.append("%s (or: pyctr cluster mpirun %s%s -- CMD ARGS...):" % (
            "Open MPI" if launcher == "openmpi" else "MPICH", record["name"],
            " --launcher mpich" if launcher == "mpich" else ""))
        out.append("  " + shell_line(argv, env))
        out += ["    %s" % line for line in mpi.describe(env)]
    print("\n".join(out))


def _subnet(record):
    from pyctr.network.addr import Subnet
    return Subnet.parse(record["subnet"])


# ------------------------------------------------------------------- mpirun

def launch_command(paths, record, launcher, args, ifs):
    """(argv, env) that run ARGS on the cluster: mpirun/mpiexec on this host,
    its daemons in the nodes through the agent. `env` holds only what pyctr
    adds to the caller's environment."""
    from pyctr import mpi
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


def load(paths, name):
    check_name(name)
    try:
        with open(os.path.join(cluster_dir(paths, name), "cluster.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        raise PyctrError("no such cluster: %s (pyctr cluster ls)" % name) from None
    except ValueError as e:
        raise PyctrError("cluster %s: damaged cluster.json (%s)" % (name, e)) from None


def mpirun(paths, argv):
    import argparse
    from pyctr.cli import arg_parser
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
    record = load(paths, a.name)
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
    ifs = host_ifaces(_subnet(record))
    if not ifs:
        raise PyctrError("cluster %s: this host has no address in %s: mpirun here cannot "
                         "reach the nodes" % (a.name, record["subnet"]))
    argv_, env = launch_command(paths, record, launcher, a.args, ifs)
    if a.dry:
        print(shell_line(argv_, env))
        return 0
    import shutil
    if not shutil.which(argv_[0]):
        raise PyctrError("cluster mpirun: %s is not installed here (apt-get install %s)"
                         % (argv_[0], "openmpi-bin" if launcher == "openmpi" else "mpich"))
    full = dict(os.environ)
    full.update(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv_[0], argv_, full)


# --------------------------------------------------------------- ls, inspect

def ls(paths, argv):
    from pyctr.cli import arg_parser, print_table
    from pyctr.state import StateStore
    arg_parser("cluster ls", "List clusters.").parse_args(argv)
    store = StateStore(paths)
    rows = [("NAME", "NODES", "HERE", "RUNNING", "NETWORK", "SUBNET", "IMAGE")]
    try:
        names = sorted(os.listdir(clusters_dir(paths)))
    except FileNotFoundError:
        names = []
    for name in names:
        try:
            r = load(paths, name)
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
    p = arg_parser("cluster inspect", "Show a cluster's record as JSON.")
    p.add_argument("name")
    a = p.parse_args(argv)
    print(json.dumps(load(paths, a.name), indent=2))
    return 0


# --------------------------------------------------------------------- down

def down(paths, argv):
    from pyctr.cli import arg_parser
    p = arg_parser("cluster down", "Remove clusters: their nodes on this host, their files, "
                   "and the bridge or host shim that `cluster up` made.")
    p.add_argument("name", nargs="+")
    a = p.parse_args(argv)
    for name in a.name:
        record = load(paths, name)
        teardown(paths, record, [n["name"] for n in record["nodes"] if n["here"]])
        print(name)
    return 0


def teardown(paths, record, nodes):
    """Remove the nodes (containers), the host side if `up` made it and
    nothing else uses it now, and the cluster's directory. Idempotent; used
    by `down` and to undo a failed `up`."""
    from pyctr.state import StateStore
    from pyctr.verbs.remove import remove
    store = StateStore(paths)
    ours, problems = set(), []
    for node in reversed(nodes):
        try:
            st = store.load(node)
        except PyctrError:
            continue  # never started, or already gone
        ours.update(r.get("host_ifname") for r in st.networks if r.get("host_ifname"))
        try:
            remove(paths, st, force=True)
        except PyctrError as e:
            problems.append("%s: %s" % (node, e))
    if record.get("made_host_side"):
        try:
            drop_host_side(paths, record, ours)
        except (OSError, PyctrError) as e:
            problems.append("%s: %s" % (record.get("host_side"), e))
    if record["name"]:
        import shutil
        shutil.rmtree(cluster_dir(paths, record["name"]), ignore_errors=True)
        try:
            os.rmdir(clusters_dir(paths))
        except OSError:
            pass  # other clusters
    if problems:
        raise PyctrError("cluster %s: teardown incomplete: %s" % (record["name"],
                                                                  "; ".join(problems)))


def drop_host_side(paths, record, our_ports):
    """The bridge or macvlan shim the nodes' first attach made, unless some
    other live container uses it (network.teardown)."""
    from pyctr import network
    network.teardown(paths, record["kind"], record["device"], record.get("uplink"), our_ports)
