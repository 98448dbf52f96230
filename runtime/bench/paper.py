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
MPI settings of pyctr.mpi.mpi_env for the node subnet. Results: median and
spread of --repeat runs, beside the study's Table 1, as Markdown, CSV, JSON
and a chart like the study's Fig. 3 (performance relative to nic).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from pyctr.bench import workloads as wl
from pyctr.bench.net import write_pyctr_network
from pyctr.cluster.files import write_agent
from pyctr.errors import PyctrError
from pyctr.progress import Progress

CONFIGS = ("nic", "veth", "macvlan")
LABELS = {"nic": "NIC", "veth": "veth", "macvlan": "macvlan"}
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
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help="comma-separated subset of nic,veth,macvlan (default all)")
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
    args.configs = _subset(args.configs, CONFIGS, "configuration")
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


class NicConfig:
    """Workloads straight in the nodes' namespaces."""
    name = "nic"
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
                        self.workdir, _mpi_settings("nic0"), self.note, expect,
                        _wire_counter(a.netns))

    def down(self):
        pass


class ContainerConfig:
    """One long-lived container per node, made by `pyctr run -d` in the node
    (its own pyctr state/config), the workdir bind-mounted at the same path.
    Commands run in it through `pyctr exec`."""
    kind = ""
    note = ""
    net_name = ""      # the network each node defines for its container
    net_keys = {}      # its definition, besides subnet, uplink and range
    first = 0          # node n's addresses: 10.77.0.(first + 10 n) and the 9 after

    def __init__(self, tb, workdir, args, paths):
        self.tb, self.workdir, self.args, self.paths = tb, workdir, args, paths
        self.started = []

    def network(self, node, n):
        """Write the node's network definition; return its name and the
        address of the node's container."""
        lo = self.first + 10 * n
        write_pyctr_network(node.paths, self.net_name, subnet=SUBNET, uplink="nic0",
                       range="10.77.0.%d-10.77.0.%d" % (lo, lo + 9), **self.net_keys)
        return self.net_name, "10.77.0.%d" % lo

    def up(self):
        a, b = self.tb.nodes
        nodes, routes, expect = [], {}, {}
        for n, (node, host) in enumerate(((a, "nodeA"), (b, "nodeB"))):
            net, ip = self.network(node, n)
            name = "paper-%s-%s" % (self.kind, host)
            env = _mpi_settings("eth0")
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
                        _mpi_settings("eth0"), self.note, expect, _wire_counter(a.netns))

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


def _wire_counter(netns):
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
    def __init__(self, configs, workloads):
        self.configs = configs
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

    def relative(self, metric, config, value=None):
        """Performance relative to nic's median, in % (higher is better): value/nic
        for throughputs, nic/value for times."""
        nic = self.median("nic", metric.key)
        v = self.median(config, metric.key) if value is None else value
        if not nic or not v:
            return None
        return 100.0 * (v / nic if metric.higher_is_better else nic / v)


def run_all(args, setups, workloads, results, logs):
    total = args.repeat * len(workloads) * len(setups)
    with Progress("bench paper", total=total) as p:
        for r in range(args.repeat):
            for w in workloads:
                order = list(setups)
                k = r % len(order)
                for name in order[k:] + order[:k]:
                    p.step("%s on %s (run %d/%d)" % (w.key, name, r + 1, args.repeat))
                    setup = setups[name]
                    before = setup.wire() if setup.wire else None
                    try:
                        try:
                            results.add(name, w.run(setup))
                        finally:
                            w.keep_logs(os.path.join(logs, "%s-%s-%d" % (w.key, name, r + 1)))
                        after = setup.wire() if setup.wire else None
                        if before is not None and after is not None:
                            results.wire[name].setdefault(w.key, []).append(after - before)
                    except wl.WorkloadFailed as e:
                        results.fail(name, w, str(e))
                        sys.stderr.write("bench paper: %s on %s failed: %s\n"
                                         % (w.key, name, e))


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
    containers = [c for c in args.configs if c != "nic"]
    if containers:
        _ensure_image(paths, args.image)
    out = args.out or _default_out()
    from pyctr.testbed import Testbed
    workdir = tempfile.mkdtemp(prefix="pyctr-paper-", dir="/var/tmp")
    os.chmod(workdir, 0o755)
    beds, configs = [], {}
    results = Results(args.configs, workloads)
    t0 = time.monotonic()
    _stop_on_signals()
    try:
        with Progress("bench paper: setting up", total=len(workloads) + len(args.configs)) as p:
            for w in workloads:
                p.step("preparing %s" % w.key)
                w.prepare(workdir)
            setups = {}
            for name in args.configs:
                p.step("testbed and %s configuration" % name)
                tb = Testbed(prefix="ppr", nodes=2, rate_mbit=args.rate_mbit, data=paths.data)
                beds.append(tb)
                tb.up()
                cfg = BUILDERS[name](tb, workdir, args, paths)
                configs[name] = cfg
                try:
                    setups[name] = cfg.up()
                    setups[name].verify()
                except (PyctrError, OSError, wl.WorkloadFailed) as e:
                    if not args.keep_going:
                        raise
                    results.setup_failed[name] = str(e)
                    for w in workloads:
                        results.fail(name, w, "setup failed: %s" % e)
        try:
            run_all(args, setups, workloads, results, os.path.join(out, "logs"))
        except KeyboardInterrupt:
            # Keep what was measured: a long run stopped late is still worth its table.
            results.interrupted = True
    finally:
        for cfg in configs.values():
            cfg.down()
        for tb in beds:
            tb.down()
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


def study_relative(metric, config):
    st = STUDY.get(metric.key)
    if not st:
        return None
    if st["unit"] == "% of NIC":
        return st[config]
    return 100.0 * (st[config] / st["nic"] if metric.higher_is_better else st["nic"] / st[config])


def markdown(args, workloads, results, elapsed, facts):
    cfgs = results.configs
    head = ["workload", "unit"] + [LABELS[c] for c in cfgs] + \
        ["%s %% of NIC" % LABELS[c] for c in cfgs if c != "nic"] + \
        ["study NIC / veth / macvlan", "study veth / macvlan % of NIC"]
    lines = ["## pyctr bench paper: NIC vs veth vs macvlan on two simulated nodes", "",
             "| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    for m in results.metrics:
        row = [m.label, m.unit]
        row += [cell(results, c, m) for c in cfgs]
        for c in cfgs:
            if c == "nic":
                continue
            r = results.relative(m, c)
            row.append("%.1f %%" % r if r is not None else "-")
        st = STUDY.get(m.key)
        if st:
            unit = " %" if st["unit"] == "% of NIC" else " " + st["unit"]
            row.append(" / ".join("%g" % st[c] for c in CONFIGS) + unit)
            row.append(" / ".join("%.1f %%" % study_relative(m, c) for c in ("veth", "macvlan")))
        else:
            row += ["-", "-"]
        lines.append("| " + " | ".join(row) + " |")
    rate = "%d Mbit/s (tbf on both ends of each node link)" % args.rate_mbit \
        if args.rate_mbit else "unshaped (veth speed, bound by CPU)"
    if results.interrupted:
        lines += ["", "**Interrupted**: fewer runs than planned in some cells."]
    lines += ["",
              "Cells: median [min-max] of %d runs%s. %% of NIC is relative performance: "
              "value/NIC for throughput, NIC/value for times (100 %% = as fast as NIC). "
              "Wire: %s. Total time %.0f s." % (
                  args.repeat, " (quick sizes)" if args.quick else "", rate, elapsed), ""]
    for w in workloads:
        lines.append("- **%s**: %s" % (w.title, w.describe()))
    for c in cfgs:
        lines.append("- **%s**: %s" % (LABELS[c], {
            "nic": NicConfig.note, "veth": VethConfig.note, "macvlan": MacvlanConfig.note}[c]))
    lines.append("- MPI: Open MPI, 2 ranks (one per node), mpirun on node A starting an "
                 "orted per node through a remote agent; --bind-to none; settings from "
                 "pyctr.mpi (for the containers' eth0; nic0 on NIC): %s" % ", ".join(
                     "%s=%s" % kv for kv in sorted(_mpi_settings("eth0").items())))
    wire = []
    for w in workloads:
        per = []
        for c in cfgs:
            vals = sorted(results.wire[c].get(w.key, []))
            if vals:
                per.append("%s %.1f" % (LABELS[c], vals[len(vals) // 2] / 1e6))
        if per:
            wire.append("%s: %s" % (w.key, ", ".join(per)))
    if wire:
        lines.append("- Traffic through node A's NIC per run (MB, median), the proof it "
                     "crossed the wire: " + "; ".join(wire))
    lines.append("- Study: Table 1 of the study (iperf in Mbit/s, LINPACK in % of NIC, "
                 "GROMACS in s), measured on real Fast Ethernet; shown for comparison only.")
    for c in cfgs:
        if c in results.setup_failed:
            lines.append("- **%s could not be set up**: %s" % (LABELS[c], results.setup_failed[c]))
        for key, reasons in results.failures[c].items():
            if c not in results.setup_failed:
                lines.append("- %s on %s failed %d time%s: %s" % (
                    key, LABELS[c], len(reasons), "" if len(reasons) == 1 else "s", reasons[0]))
    if facts:
        lines += ["", "Machine: %s, %s CPUs, %s MiB RAM, kernel %s; %s" % (
            facts["cpu"], facts["nproc"], facts["memory_mib"], facts["kernel"], facts["date"]),
            "Versions: " + ", ".join("%s %s" % (k, v) for k, v in facts["versions"].items()
                                     if v)]
    return "\n".join(lines) + "\n"


def write_results(out, args, workloads, results, elapsed):
    import csv
    from pyctr.bench import harness
    facts = harness.machine_facts({
        "openmpi": _deb_version("openmpi-bin"), "hpcc": _deb_version("hpcc"),
        "gromacs": _deb_version("gromacs"), "openfoam": _deb_version("openfoam"),
        "iperf3": _deb_version("iperf3"), "mpi4py": _deb_version("python3-mpi4py")})
    os.makedirs(out, exist_ok=True)
    base = os.path.join(out, "paper")
    files = []
    with open(base + ".md", "w") as f:
        f.write(markdown(args, workloads, results, elapsed, facts))
    files.append(base + ".md")
    with open(base + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "unit", "config", "runs", "median", "min", "max", "q1", "q3",
                    "percent_of_nic", "study_value", "study_percent_of_nic", "failed",
                    "samples"])
        for m in results.metrics:
            st = STUDY.get(m.key, {})
            for c in results.configs:
                s = results.stats(c, m.key) or {}
                rel = results.relative(m, c)
                srel = study_relative(m, c)
                w.writerow([m.key, m.unit, c, s.get("n", 0)] +
                           ["%.6g" % s[k] if k in s else "" for k in
                            ("median", "min", "max", "q1", "q3")] +
                           ["%.4g" % rel if rel is not None else "",
                            "%g" % st[c] if c in st else "",
                            "%.4g" % srel if srel is not None else "",
                            " / ".join(results.failures[c].get(m.key, [])),
                            ";".join("%.6g" % x for x in results.samples[c][m.key])])
    files.append(base + ".csv")
    with open(base + ".json", "w") as f:
        json.dump({
            "quick": args.quick, "repeat": args.repeat, "rate_mbit": args.rate_mbit,
            "elapsed_s": elapsed, "machine": facts,
            "workloads": {w.key: w.describe() for w in workloads},
            "metrics": [{"key": m.key, "label": m.label, "unit": m.unit,
                         "higher_is_better": m.higher_is_better,
                         "configs": {c: {"stats": results.stats(c, m.key),
                                         "samples": results.samples[c][m.key],
                                         "percent_of_nic": results.relative(m, c),
                                         "failed": results.failures[c].get(m.key)}
                                     for c in results.configs},
                         "study": STUDY.get(m.key)} for m in results.metrics],
            "wire_bytes_node_a_nic0": results.wire, "interrupted": results.interrupted,
            "setup_failed": results.setup_failed}, f, indent=2)
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
    performance relative to NIC (median; whiskers: min-max of the runs),
    with the study's own ratios as markers where it has them."""
    from pyctr.bench.harness import pyplot
    plt = pyplot("pyctr bench paper")
    if plt is None:
        return None
    metrics = results.metrics
    cfgs = results.configs
    colors = {"nic": "#4c72b0", "veth": "#dd8452", "macvlan": "#55a868"}
    width = 0.8 / len(cfgs)
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(metrics) + 2), 4.8))
    for j, c in enumerate(cfgs):
        xs, ys, lo, hi = [], [], [], []
        for i, m in enumerate(metrics):
            rel = results.relative(m, c)
            if rel is None:
                continue
            vals = [results.relative(m, c, v) for v in results.samples[c][m.key]]
            vals = [v for v in vals if v is not None]
            xs.append(i + (j - (len(cfgs) - 1) / 2) * width)
            ys.append(rel)
            lo.append(max(0.0, rel - min(vals)) if vals else 0)
            hi.append(max(0.0, max(vals) - rel) if vals else 0)
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=LABELS[c], color=colors[c])
        sx, sy = [], []
        for i, m in enumerate(metrics):
            srel = study_relative(m, c)
            if srel is not None:
                sx.append(i + (j - (len(cfgs) - 1) / 2) * width)
                sy.append(srel)
        if sx:
            ax.plot(sx, sy, linestyle="none", marker="D", markersize=5, markerfacecolor="white",
                    markeredgecolor="black", label="study (Table 1)" if c == cfgs[0] else None)
    ax.axhline(100, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels(["%s\n(%s)" % (m.short, m.unit) for m in metrics], fontsize="small")
    ax.set_ylabel("performance relative to NIC (%)")
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
    title = "pyctr bench paper: NIC vs veth vs macvlan, 2 simulated nodes, %s%s" % (
        rate, ", quick" if args.quick else "")
    if facts:
        title += "\n%s, %s CPUs, kernel %s; bars: median of %d runs, whiskers: min-max" % (
            facts["cpu"], facts["nproc"], facts["kernel"], args.repeat)
    ax.set_title(title, fontsize="small")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4,
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
