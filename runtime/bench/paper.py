"""`pyctr bench paper`: the study's experiment on one machine.

Two simulated nodes (pyctr.testbed: each a network namespace with its own
NIC `nic0`, a veth to a switch bridge in a third namespace; the wire
optionally shaped to 100 Mbit/s with tbf, the study's Fast Ethernet) run the
study's workloads (pyctr.bench.workloads) in three configurations:

  nic      the workload runs in the node's namespace directly, no container
  veth     one container per node on a bridge that holds the node's NIC
  macvlan  one container per node with a macvlan (bridge mode) on the NIC

A bridge port cannot also be a macvlan lower device, so every configuration
gets its own identical 2-node testbed; all are up at once, and each workload
runs in every configuration before the next workload starts (the order of
configurations rotates each round), so slow drifts of the machine hit all
three alike. MPI jobs are started the same way everywhere: mpirun on node A's
host side starts one orted per node through a remote agent (`ip netns exec`
for nic, `pyctr exec` into the node's container otherwise; no sshd), with the
MPI settings of pyctr.mpi.mpi_env for the node subnet. With --launcher slurm
(or both) srun places the ranks instead (pyctr.bench.slurmlaunch: a slurmd
on each node of the same testbeds, each task a container of `pyctr run`).
A configuration is a launcher and a datapath; Results: median and spread of
--repeat runs, beside the study's Table 1, as Markdown, CSV, JSON and a chart
like the study's Fig. 3 (performance relative to the same launcher's nic).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

from pyctr.bench import workloads as wl
from pyctr.bench.net import write_pyctr_network
from pyctr.cluster.files import write_agent
from pyctr.errors import PyctrError
from pyctr.progress import Progress

DATAPATHS = ("nic", "veth", "macvlan")
LABELS = {"nic": "NIC", "veth": "veth", "macvlan": "macvlan"}
LAUNCHERS = ("mpirun", "slurm")
LAUNCHER_LABELS = {"mpirun": "mpirun", "slurm": "srun"}


class Config(namedtuple("Config", "launcher datapath")):
    """What one column of figures was measured with: who started the ranks
    (mpirun, slurm) and how they reached the wire (nic, veth, macvlan)."""
    __slots__ = ()

    @property
    def label(self):
        return "%s (%s)" % (LABELS[self.datapath], LAUNCHER_LABELS[self.launcher])


def configs(launchers, datapaths):
    return [Config(launcher, datapath) for launcher in launchers for datapath in datapaths]


SUBNET = "10.77.0.0/24"     # the testbed's node segment: nodes .1 and .2
PREFIX = 24

# The study's Table 1, as published; shown beside our figures, never used in them.
STUDY = {
    "iperf3": {"unit": "Mbit/s", "nic": 94.1, "veth": 94.016, "macvlan": 94.033},
    "hpl": {"unit": "% of NIC", "nic": 100.0, "veth": 99.1, "macvlan": 99.7},
    "gromacs": {"unit": "s", "nic": 242.364, "veth": 242.452, "macvlan": 242.944},
}


def parse(argv):
    from pyctr.cli import arg_parser
    p = arg_parser("bench paper", "Recreate the study's two-node experiment (iperf3, HPL, "
                   "GROMACS, OpenFOAM, MPI ping-pong) on NIC, veth and macvlan.")
    p.add_argument("--quick", action="store_true",
                   help="small problem sizes, 2 runs, unshaped wire unless --rate says "
                   "otherwise: under 10 minutes on 2 cores")
    p.add_argument("--rate", metavar="MBIT|none",
                   help="shape the wire to MBIT Mbit/s (default 100, the study's Fast "
                   "Ethernet; with --quick: none) or leave it unshaped (none). On 100 "
                   "Mbit/s hpcc alone takes minutes a run: its fixed-size ring "
                   "bandwidth test moves ~1.5 GB before HPL starts")
    p.add_argument("--repeat", type=int, metavar="N",
                   help="runs per workload and configuration (default 3, --quick 2)")
    p.add_argument("--out", metavar="DIR", help="results directory (default results/paper-DATE)")
    p.add_argument("--configs", default=",".join(DATAPATHS),
                   help="comma-separated subset of nic,veth,macvlan (default all)")
    p.add_argument("--launcher", default="mpirun", choices=("mpirun", "slurm", "both"),
                   help="who starts the ranks: mpirun (default), slurm (srun on a "
                   "simulated Slurm cluster on the same nodes, each task a container of "
                   "`pyctr run`), or both, side by side")
    p.add_argument("--workloads", default=",".join(w.key for w in wl.ALL),
                   help="comma-separated subset of %s" % ",".join(w.key for w in wl.ALL))
    p.add_argument("--image", default="mpi",
                   help="image for the containers (default mpi, built from its recipe "
                   "first if missing)")
    p.add_argument("--keep-going", action="store_true",
                   help="when a configuration cannot be set up, report it and go on")
    args = p.parse_args(argv)
    if args.rate is None:
        args.rate = "none" if args.quick else "100"
    if args.rate == "none":
        args.rate_mbit = None
    elif args.rate.isdigit() and int(args.rate) > 0:
        args.rate_mbit = int(args.rate)
    else:
        raise PyctrError("bench paper: --rate must be a positive number of Mbit/s or 'none'")
    if args.repeat is None:
        args.repeat = 2 if args.quick else 3
    if not 1 <= args.repeat <= 100:
        raise PyctrError("bench paper: --repeat must be 1..100")
    args.configs = _subset(args.configs, DATAPATHS, "configuration")
    args.launchers = list(LAUNCHERS) if args.launcher == "both" else [args.launcher]
    if "nic" not in args.configs:
        raise PyctrError("bench paper: nic is the peer every figure is relative to; keep it")
    args.workload_keys = _subset(args.workloads, [w.key for w in wl.ALL], "workload")
    return args


def _subset(text, allowed, what):
    items = [x.strip() for x in text.split(",") if x.strip()]
    for x in items:
        if x not in allowed:
            raise PyctrError("bench paper: unknown %s %r (choose from %s)"
                             % (what, x, ", ".join(allowed)))
    if not items:
        raise PyctrError("bench paper: no %s given" % what)
    return [x for x in allowed if x in items]


# ------------------------------------------------------------ configurations

def _netns_wrap(netns):
    def wrap(argv, env):
        return ["ip", "netns", "exec", netns] + wl.env_argv(env) + argv
    return wrap


def _mpi_settings(ifname):
    from pyctr import mpi
    # Node and container addresses all lie in the node segment: one subnet.
    env = mpi.mpi_env([mpi.Iface(ifname, SUBNET.split("/")[0], PREFIX)], "openmpi")
    return env


class Datapath:
    """How the ranks of one configuration reach the wire; iface: the
    interface their MPI settings name."""
    iface = ""

    @classmethod
    def mpi_settings(cls):
        return _mpi_settings(cls.iface)


class NicConfig(Datapath):
    """Workloads straight in the nodes' namespaces."""
    name = "nic"
    iface = "nic0"
    note = "no container: commands run in each node's network namespace (ip netns exec)"

    def __init__(self, tb, workdir, args, paths):
        self.tb, self.workdir = tb, workdir

    def up(self):
        a, b = self.tb.nodes
        routes = {}
        for node, host in ((a, "nodeA"), (b, "nodeB")):
            # Real nodes have a /tmp each; orteds of two simulated nodes sharing one
            # (same host name, same job) collide in their session directory and
            # crash in hwloc_shmem_topology_write.
            tmp = os.path.join(self.workdir, "tmp-nic-" + host)
            os.makedirs(tmp, exist_ok=True)
            routes[host] = ["ip", "netns", "exec", node.netns, "env",
                            "OMPI_MCA_orte_tmpdir_base=" + tmp]
        agent = write_agent(os.path.join(self.workdir, "agent-nic.sh"), routes)
        launcher = wl.Node("A", a.ip, _netns_wrap(a.netns))
        expect = {0: os.stat("/run/netns/" + a.netns).st_ino,
                  1: os.stat("/run/netns/" + b.netns).st_ino}
        return wl.Setup("nic", wl.Node("A", a.ip, _netns_wrap(a.netns)),
                        wl.Node("B", b.ip, _netns_wrap(b.netns)), launcher, agent,
                        self.workdir, self.mpi_settings(), self.note, expect,
                        wire_counter(a.netns))

    def down(self):
        pass


class ContainerConfig(Datapath):
    """One long-lived container per node, made by `pyctr run -d` in the node
    (its own pyctr state/config), the workdir bind-mounted at the same path.
    Commands run in it through `pyctr exec`."""
    kind = ""
    note = ""
    iface = "eth0"
    net_name = ""      # the network each node defines for its container
    net_keys = {}      # its definition, besides subnet, uplink and range
    first = 0          # node n's addresses: 10.77.0.(first + 10 n) and the 9 after

    def __init__(self, tb, workdir, args, paths):
        self.tb, self.workdir, self.args, self.paths = tb, workdir, args, paths
        self.started = []

    @classmethod
    def network(cls, node, n):
        """Write the node's network definition; return its name and the
        address of the node's container."""
        lo = cls.first + 10 * n
        write_pyctr_network(node.paths, cls.net_name, subnet=SUBNET, uplink="nic0",
                            range="10.77.0.%d-10.77.0.%d" % (lo, lo + 9), **cls.net_keys)
        return cls.net_name, "10.77.0.%d" % lo

    @classmethod
    def spare(cls, n):
        """An address of node n's range that the node's container never takes."""
        return "10.77.0.%d" % (cls.first + 10 * n + 9)

    def up(self):
        a, b = self.tb.nodes
        nodes, routes, expect = [], {}, {}
        for n, (node, host) in enumerate(((a, "nodeA"), (b, "nodeB"))):
            net, ip = self.network(node, n)
            name = "paper-%s-%s" % (self.kind, host)
            env = self.mpi_settings()
            argv = ["run", "-d", "--name", name, "--net=%s,ip=%s/%d" % (net, ip, PREFIX),
                    "-v", "%s:%s" % (self.workdir, self.workdir)]
            for k, v in sorted(env.items()):
                argv += ["-e", "%s=%s" % (k, v)]
            r = node.pyctr(*(argv + [self.args.image, "sleep", "infinity"]), timeout=120)
            if r.returncode:
                raise PyctrError("%s: pyctr run on node %s failed: %s" % (
                    self.kind, node.name, (r.stderr.strip().splitlines() or ["?"])[-1]))
            self.started.append((node, name))
            expect[n] = _container_netns(node, name)
            exec_prefix = node.argv(node.pyctr_argv("exec", name))
            routes[host] = exec_prefix
            nodes.append(wl.Node("AB"[n], ip, self._exec_wrap(node, name)))
        agent = write_agent(os.path.join(self.workdir, "agent-%s.sh" % self.kind), routes)
        # mpirun itself runs on node A's host side: it reaches its orteds over
        # the bridge (veth) or the macvlan shim the node got from pyctr.
        launcher = wl.Node("A", a.ip, _netns_wrap(a.netns))
        return wl.Setup(self.kind, nodes[0], nodes[1], launcher, agent, self.workdir,
                        self.mpi_settings(), self.note, expect, wire_counter(a.netns))

    @staticmethod
    def _exec_wrap(node, name):
        def wrap(argv, env):
            extra = []
            for k, v in sorted(env.items()):
                extra += ["-e", "%s=%s" % (k, v)]
            return node.argv(node.pyctr_argv("exec", *extra, name, *argv))
        return wrap

    def down(self):
        for node, name in reversed(self.started):
            node.pyctr("rm", "-f", name, timeout=60)
        self.started = []


def _container_netns(node, name):
    r = node.pyctr("inspect", name, timeout=30)
    if r.returncode:
        raise PyctrError("pyctr inspect %s: %s" % (name, r.stderr.strip()))
    state = json.loads(r.stdout)
    state = state[0] if isinstance(state, list) else state
    return os.stat("/proc/%d/ns/net" % state["pid"]).st_ino


def wire_counter(netns):
    """Bytes node A's NIC has sent plus received: every configuration's
    traffic between the nodes crosses it (bridge port, macvlan lower, or the
    node's own interface)."""
    def read():
        r = subprocess.run(["ip", "-n", netns, "-s", "-j", "link", "show", "nic0"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode:
            return None
        st = json.loads(r.stdout)[0]["stats64"]
        return st["rx"]["bytes"] + st["tx"]["bytes"]
    return read


class VethConfig(ContainerConfig):
    kind = "veth"
    note = ("a container per node on a bridge holding the node's NIC (veth pair), "
            "started with pyctr run, commands through pyctr exec")
    net_name, net_keys, first = "paperbr", {"kind": "bridge"}, 100


class MacvlanConfig(ContainerConfig):
    kind = "macvlan"
    note = ("a container per node with a macvlan (bridge mode) on the node's NIC, "
            "started with pyctr run, commands through pyctr exec")
    net_name, net_keys, first = "papermv", {"kind": "macvlan", "mode": "bridge"}, 150


BUILDERS = {"nic": NicConfig, "veth": VethConfig, "macvlan": MacvlanConfig}


# ------------------------------------------------------------------- running

class Results:
    """Samples and failures per Config (launcher, datapath) and metric."""

    def __init__(self, configs, workloads):
        self.configs = configs
        self.launchers = [x for x in LAUNCHERS if any(c.launcher == x for c in configs)]
        self.datapaths = [x for x in DATAPATHS if any(c.datapath == x for c in configs)]
        self.workloads = workloads
        self.metrics = [m for w in workloads for m in w.metrics]
        self.samples = {c: {m.key: [] for m in self.metrics} for c in configs}
        self.failures = {c: {} for c in configs}   # config -> {metric key: [reasons]}
        self.setup_failed = {}                       # config -> reason
        self.wire = {c: {} for c in configs}         # config -> {workload: [bytes]}
        self.interrupted = False

    def add(self, config, values):
        for k, v in values.items():
            self.samples[config][k].append(v)

    def fail(self, config, workload, reason):
        for m in workload.metrics:
            self.failures[config].setdefault(m.key, []).append(reason)

    def stats(self, config, key):
        from pyctr.bench.harness import summarize
        return summarize(self.samples[config][key])

    def median(self, config, key):
        s = self.stats(config, key)
        return s["median"] if s else None

    def relative(self, metric, config, value=None, peer=None):
        """Performance relative to the median of `peer` (default: the same
        launcher's nic), in % (higher is better): value/peer for
        throughputs, peer/value for times."""
        peer = peer or Config(config.launcher, "nic")
        base = self.median(peer, metric.key) if peer in self.samples else None
        v = self.median(config, metric.key) if value is None else value
        if not base or not v:
            return None
        return 100.0 * (v / base if metric.higher_is_better else base / v)


def run_all(args, setups, workloads, results, logs):
    total = args.repeat * len(workloads) * len(setups)
    with Progress("bench paper", total=total) as p:
        for r in range(args.repeat):
            for w in workloads:
                order = list(setups)
                k = r % len(order)
                for name in order[k:] + order[:k]:
                    p.step("%s on %s (run %d/%d)" % (w.key, name.label, r + 1, args.repeat))
                    setup = setups[name]
                    before = setup.wire() if setup.wire else None
                    try:
                        try:
                            results.add(name, w.run(setup))
                        finally:
                            w.keep_logs(os.path.join(logs, "%s-%s-%s-%d" % (
                                w.key, name.datapath, name.launcher, r + 1)))
                        after = setup.wire() if setup.wire else None
                        if before is not None and after is not None:
                            results.wire[name].setdefault(w.key, []).append(after - before)
                    except wl.WorkloadFailed as e:
                        results.fail(name, w, str(e))
                        sys.stderr.write("bench paper: %s on %s failed: %s\n"
                                         % (w.key, name.label, e))


def _stop_on_signals():
    """kill, a closed terminal, or `kill -INT` of a background run (where INT
    starts out ignored) stop the run as Ctrl-C does: testbeds torn down, the
    table of what was measured written. Later signals are ignored so that
    the clean-up itself is not cut short."""
    import signal
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def stop(signum, frame):
        for sig in sigs:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    for sig in sigs:
        signal.signal(sig, stop)


def _ensure_image(paths, name):
    """The containers' image; one that a shipped recipe makes (mpi: about a
    minute, with progress) is built when missing, so the experiment stays
    one command on a fresh machine."""
    from pyctr import images
    if images.lookup(paths, name) is not None:
        return
    if name not in images.recipe_names():
        raise PyctrError("bench paper: no image %r for the containers (import or build it; "
                         "or run --configs nic)" % name)
    sys.stderr.write("bench paper: image %s is not built yet; building it first\n" % name)
    images.build(paths, name)


def command(paths, argv):
    args = parse(argv)
    if os.geteuid() != 0:
        raise PyctrError("bench paper needs root (network namespaces, containers)")
    workloads = wl.by_key(args.workload_keys, args.quick)
    missing = wl.missing_tools(workloads)
    if missing:
        raise PyctrError("bench paper: missing on this host: %s (apt-get install openmpi-bin "
                         "hpcc gromacs openfoam openfoam-examples python3-mpi4py iperf3)"
                         % ", ".join(missing))
    if "slurm" in args.launchers:
        from pyctr import slurmbed
        missing = slurmbed.missing_tools()
        if missing:
            raise PyctrError("bench paper --launcher %s: missing on this host: %s (apt-get "
                             "install slurmctld slurmd slurm-client munge)"
                             % (args.launcher, ", ".join(missing)))
    containers = [c for c in args.configs if c != "nic"]
    if containers:
        _ensure_image(paths, args.image)
    out = args.out or _default_out()
    from pyctr.testbed import Testbed
    workdir = tempfile.mkdtemp(prefix="pyctr-paper-", dir="/var/tmp")
    os.chmod(workdir, 0o755)
    made = []     # testbeds and configurations, each with down(), in the order made
    results = Results(configs(args.launchers, args.configs), workloads)
    t0 = time.monotonic()
    _stop_on_signals()
    try:
        total = len(workloads) + len(args.configs) * (1 + len(args.launchers))
        with Progress("bench paper: setting up", total=total) as p:
            for w in workloads:
                p.step("preparing %s" % w.key)
                w.prepare(workdir)
            setups = {}
            for datapath in args.configs:
                p.step("testbed for %s" % LABELS[datapath])
                tb = Testbed(prefix="ppr", nodes=2, rate_mbit=args.rate_mbit, data=paths.data)
                made.append(tb)
                tb.up()
                for launcher in args.launchers:
                    config = Config(launcher, datapath)
                    p.step("%s configuration" % config.label)
                    cfg = _builder(config, tb, workdir, args, paths)
                    made.append(cfg)
                    try:
                        setups[config] = cfg.up()
                        setups[config].verify()
                    except (PyctrError, OSError, wl.WorkloadFailed) as e:
                        setups.pop(config, None)
                        if not args.keep_going:
                            raise
                        results.setup_failed[config] = str(e)
                        for w in workloads:
                            results.fail(config, w, "setup failed: %s" % e)
        try:
            run_all(args, setups, workloads, results, os.path.join(out, "logs"))
        except KeyboardInterrupt:
            # Keep what was measured: a long run stopped late is still worth its table.
            results.interrupted = True
    finally:
        _down(reversed(made))
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - t0
    files = write_results(out, args, workloads, results, elapsed)
    sys.stdout.write(markdown(args, workloads, results, elapsed, facts=None))
    sys.stdout.write("Wrote %s; logs of every run in %s\n"
                     % (", ".join(files), os.path.join(out, "logs")))
    if results.interrupted:
        sys.stderr.write("pyctr bench paper: interrupted; the table has the runs done so far\n")
        return 130
    failed = any(results.failures[c] for c in results.configs)
    return 1 if failed else 0


def _builder(config, tb, workdir, args, paths):
    if config.launcher == "slurm":
        from pyctr.bench.slurmlaunch import SlurmConfig
        return SlurmConfig(config.datapath, BUILDERS[config.datapath], tb, workdir, args, paths)
    return BUILDERS[config.datapath](tb, workdir, args, paths)


def _down(things):
    """down() on each of `things`, every one even if an earlier one failed;
    the first failure is raised at the end."""
    first = None
    for thing in things:
        try:
            thing.down()
        except Exception as e:   # the rest must still be stopped and removed
            first = first or e
    if first is not None:
        raise first


def _default_out():
    return os.path.join("results", "paper-%s" % time.strftime("%Y%m%d-%H%M%S", time.gmtime()))


# ------------------------------------------------------------------- reports

def _fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.1f" % v
    if abs(v) >= 10:
        return "%.2f" % v
    return "%.3f" % v


def cell(results, config, metric):
    reasons = results.failures[config].get(metric.key)
    s = results.stats(config, metric.key)
    if s is None:
        return "failed" if reasons else "-"
    text = "%s [%s-%s]" % (_fmt(s["median"]), _fmt(s["min"]), _fmt(s["max"]))
    if reasons:
        text += " (%d failed)" % len(reasons)
    return text


def study_relative(metric, datapath):
    st = STUDY.get(metric.key)
    if not st:
        return None
    if st["unit"] == "% of NIC":
        return st[datapath]
    return 100.0 * (st[datapath] / st["nic"] if metric.higher_is_better
                    else st["nic"] / st[datapath])


def _notes(launcher):
    """What each datapath means with this launcher."""
    if launcher == "slurm":
        from pyctr.bench.slurmlaunch import NOTES
        return NOTES
    return {"nic": NicConfig.note, "veth": VethConfig.note, "macvlan": MacvlanConfig.note}


def markdown(args, workloads, results, elapsed, facts):
    paths = results.datapaths
    head = ["workload", "unit", "launcher"] + [LABELS[d] for d in paths] + \
        ["%s %% of NIC" % LABELS[d] for d in paths if d != "nic"] + \
        ["study NIC / veth / macvlan", "study veth / macvlan % of NIC"]
    lines = ["## pyctr bench paper: NIC vs veth vs macvlan on two simulated nodes", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    for m in results.metrics:
        for launcher in results.launchers:
            row = [m.label, m.unit, LAUNCHER_LABELS[launcher]]
            row += [cell(results, Config(launcher, d), m) for d in paths]
            for d in paths:
                if d == "nic":
                    continue
                r = results.relative(m, Config(launcher, d))
                row.append("%.1f %%" % r if r is not None else "-")
            st = STUDY.get(m.key)
            if st and launcher == results.launchers[0]:
                unit = " %" if st["unit"] == "% of NIC" else " " + st["unit"]
                row.append(" / ".join("%g" % st[d] for d in DATAPATHS) + unit)
                row.append(" / ".join("%.1f %%" % study_relative(m, d)
                                      for d in ("veth", "macvlan")))
            else:
                row += ["-", "-"]
            lines.append("| " + " | ".join(row) + " |")
    rate = "%d Mbit/s (tbf on both ends of each node link)" % args.rate_mbit \
        if args.rate_mbit else "unshaped (veth speed, bound by CPU)"
    if results.interrupted:
        lines += ["", "**Interrupted**: fewer runs than planned in some cells."]
    lines += ["",
              "Cells: median [min-max] of %d runs%s. %% of NIC is relative performance "
              "against the NIC of the same launcher: value/NIC for throughput, NIC/value "
              "for times (100 %% = as fast as NIC). Wire: %s. Total time %.0f s." % (
                  args.repeat, " (quick sizes)" if args.quick else "", rate, elapsed), ""]
    for w in workloads:
        lines.append("- **%s**: %s" % (w.title, w.describe()))
    for launcher in results.launchers:
        notes = _notes(launcher)
        for d in paths:
            lines.append("- **%s**: %s" % (Config(launcher, d).label, notes[d]))
    if "mpirun" in results.launchers:
        lines.append("- MPI with mpirun: Open MPI, 2 ranks (one per node), mpirun on node A "
                     "starting an orted per node through a remote agent; --bind-to none; "
                     "settings from pyctr.mpi (for the containers' eth0; nic0 on NIC): %s"
                     % ", ".join("%s=%s" % kv for kv in sorted(_mpi_settings("eth0").items())))
    if "slurm" in results.launchers:
        lines.append("- MPI with srun: Open MPI, 2 tasks (one per node) of one srun step on "
                     "a simulated Slurm cluster (slurmctld, a slurmd per node, "
                     "proctrack/linuxproc, task/none, CPUs=1 per node); PMIx from "
                     "slurmstepd. In the containers pyctr run sets the same MPI settings "
                     "for eth0 and relays slurmstepd's PMIx server; on NIC srun passes "
                     "them for nic0. MPICH is not used (its 4.0.2 can hang in "
                     "MPI_Finalize)")
    versus = _versus(results)
    if versus:
        lines.append("- srun against mpirun, same datapath (% of mpirun's performance): "
                     + "; ".join(versus))
    wire = []
    for w in workloads:
        per = []
        for c in results.configs:
            vals = sorted(results.wire[c].get(w.key, []))
            if vals:
                per.append("%s %.1f" % (c.label, vals[len(vals) // 2] / 1e6))
        if per:
            wire.append("%s: %s" % (w.key, ", ".join(per)))
    if wire:
        lines.append("- Traffic through node A's NIC per run (MB, median), the proof it "
                     "crossed the wire: " + "; ".join(wire))
    lines.append("- Study: Table 1 of the study (iperf in Mbit/s, LINPACK in % of NIC, "
                 "GROMACS in s), measured on real Fast Ethernet; shown for comparison only.")
    for c in results.configs:
        if c in results.setup_failed:
            lines.append("- **%s could not be set up**: %s" % (c.label, results.setup_failed[c]))
        for key, reasons in results.failures[c].items():
            if c not in results.setup_failed:
                lines.append("- %s on %s failed %d time%s: %s" % (
                    key, c.label, len(reasons), "" if len(reasons) == 1 else "s", reasons[0]))
    if facts:
        lines += ["", "Machine: %s, %s CPUs, %s MiB RAM, kernel %s; %s" % (
            facts["cpu"], facts["nproc"], facts["memory_mib"], facts["kernel"], facts["date"]),
            "Versions: " + ", ".join("%s %s" % (k, v) for k, v in facts["versions"].items()
                                     if v)]
    return "\n".join(lines) + "\n"


def _versus(results):
    """srun's median as % of mpirun's on the same datapath, per metric."""
    if results.launchers != list(LAUNCHERS):
        return []
    out = []
    for m in results.metrics:
        per = []
        for d in results.datapaths:
            r = results.relative(m, Config("slurm", d), peer=Config("mpirun", d))
            if r is not None:
                per.append("%s %.1f" % (LABELS[d], r))
        if per:
            out.append("%s: %s" % (m.key, ", ".join(per)))
    return out


def write_results(out, args, workloads, results, elapsed):
    import csv
    from pyctr.bench import harness
    versions = {
        "openmpi": _deb_version("openmpi-bin"), "hpcc": _deb_version("hpcc"),
        "gromacs": _deb_version("gromacs"), "openfoam": _deb_version("openfoam"),
        "iperf3": _deb_version("iperf3"), "mpi4py": _deb_version("python3-mpi4py")}
    if "slurm" in results.launchers:
        versions.update(slurm=_deb_version("slurmd"), munge=_deb_version("munge"))
    facts = harness.machine_facts(versions)
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, "paper")
    files = []
    with open(base + ".md", "w") as f:
        f.write(markdown(args, workloads, results, elapsed, facts))
    files.append(base + ".md")
    with open(base + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "unit", "launcher", "config", "runs", "median", "min", "max",
                    "q1", "q3", "percent_of_nic", "percent_of_mpirun", "study_value",
                    "study_percent_of_nic", "failed", "samples"])
        for m in results.metrics:
            st = STUDY.get(m.key, {})
            for c in results.configs:
                s = results.stats(c, m.key) or {}
                rel = results.relative(m, c)
                mpirun = results.relative(m, c, peer=Config("mpirun", c.datapath)) \
                    if c.launcher != "mpirun" else None
                srel = study_relative(m, c.datapath)
                w.writerow([m.key, m.unit, c.launcher, c.datapath, s.get("n", 0)] +
                           ["%.6g" % s[k] if k in s else "" for k in
                            ("median", "min", "max", "q1", "q3")] +
                           ["%.4g" % rel if rel is not None else "",
                            "%.4g" % mpirun if mpirun is not None else "",
                            "%g" % st[c.datapath] if c.datapath in st else "",
                            "%.4g" % srel if srel is not None else "",
                            " / ".join(results.failures[c].get(m.key, [])),
                            ";".join("%.6g" % x for x in results.samples[c][m.key])])
    files.append(base + ".csv")

    def by_config(value):
        """{launcher: {datapath: value(config)}}"""
        return {x: {c.datapath: value(c) for c in results.configs if c.launcher == x}
                for x in results.launchers}

    with open(base + ".json", "w") as f:
        json.dump({
            "quick": args.quick, "repeat": args.repeat, "rate_mbit": args.rate_mbit,
            "launchers": results.launchers, "elapsed_s": elapsed, "machine": facts,
            "workloads": {w.key: w.describe() for w in workloads},
            "metrics": [{"key": m.key, "label": m.label, "unit": m.unit,
                         "higher_is_better": m.higher_is_better,
                         "configs": by_config(lambda c: {
                             "stats": results.stats(c, m.key),
                             "samples": results.samples[c][m.key],
                             "percent_of_nic": results.relative(m, c),
                             "failed": results.failures[c].get(m.key)}),
                         "study": STUDY.get(m.key)} for m in results.metrics],
            "wire_bytes_node_a_nic0": by_config(lambda c: results.wire[c]),
            "interrupted": results.interrupted,
            "setup_failed": by_config(lambda c: results.setup_failed.get(c))}, f, indent=2)
        f.write("\n")
    files.append(base + ".json")
    png = chart(results, base + ".png", args, facts)
    if png:
        files.append(png)
    return files


def _deb_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None


def chart(results, path, args, facts):
    """Grouped bars like the study's Fig. 3: per metric, each configuration's
    performance relative to the same launcher's NIC (median; whiskers:
    min-max of the runs), srun's bars hatched beside mpirun's, with the
    study's own ratios as markers where it has them."""
    from pyctr.bench.harness import pyplot
    plt = pyplot("pyctr bench paper")
    if plt is None:
        return None
    metrics = results.metrics
    cfgs = results.configs
    colors = {"nic": "#4c72b0", "veth": "#dd8452", "macvlan": "#55a868"}
    hatches = {"mpirun": None, "slurm": "//"}
    width = 0.8 / len(cfgs)
    per_metric = 1.4 + 0.1 * max(0, len(cfgs) - 3)     # inches: room for each bar group
    fig, ax = plt.subplots(figsize=(max(7, per_metric * len(metrics) + 2),
                                    4.8 if len(cfgs) <= 3 else 5.6))
    for j, c in enumerate(cfgs):
        offset = (j - (len(cfgs) - 1) / 2) * width
        xs, ys, lo, hi = [], [], [], []
        for i, m in enumerate(metrics):
            rel = results.relative(m, c)
            if rel is None:
                continue
            vals = [results.relative(m, c, v) for v in results.samples[c][m.key]]
            vals = [v for v in vals if v is not None]
            xs.append(i + offset)
            ys.append(rel)
            lo.append(max(0.0, rel - min(vals)) if vals else 0)
            hi.append(max(0.0, max(vals) - rel) if vals else 0)
        label = c.label if len(results.launchers) > 1 else LABELS[c.datapath]
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=label, color=colors[c.datapath],
               hatch=hatches[c.launcher], edgecolor="white" if hatches[c.launcher] else None)
        if c.launcher != results.launchers[0]:
            continue
        sx, sy = [], []
        for i, m in enumerate(metrics):
            srel = study_relative(m, c.datapath)
            if srel is not None:
                sx.append(i + offset)
                sy.append(srel)
        if sx:
            ax.plot(sx, sy, linestyle="none", marker="D", markersize=5, markerfacecolor="white",
                    markeredgecolor="black", label="study (Table 1)" if j == 0 else None)
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(["%s\n(%s)" % (m.short, m.unit) for m in metrics], fontsize="small")
    ax.set_ylabel("performance relative to NIC, same launcher (%)")
    medians = [results.relative(m, c) for m in metrics for c in cfgs]
    medians = [y for y in medians if y is not None] + [100.0]
    runs = [results.relative(m, c, v) for m in metrics for c in cfgs
            for v in results.samples[c][m.key]]
    runs = [y for y in runs if y is not None] + medians
    # Show every run, unless one outlier would squash the bars: then clip it.
    lo = max(min(runs), min(medians) - 30)
    hi = min(max(runs), max(medians) + 30)
    ax.set_ylim(max(0, lo - 5), hi + 5)
    rate = "%d Mbit/s wire" % args.rate_mbit if args.rate_mbit else "unshaped wire"
    launched = " and ".join(LAUNCHER_LABELS[x] for x in results.launchers)
    title = "pyctr bench paper: NIC vs veth vs macvlan, ranks started by %s, " \
        "2 simulated nodes, %s%s" % (launched, rate, ", quick" if args.quick else "")
    if facts:
        title += "\n%s, %s CPUs, kernel %s; bars: median of %d runs, whiskers: min-max" % (
            facts["cpu"], facts["nproc"], facts["kernel"], args.repeat)
    ax.set_title(title, fontsize="small")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16),
              ncol=min(4, len(cfgs) + 1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
