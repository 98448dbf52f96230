"""`pyctr bench net`: what pyctr's built-in networking costs, against what a
runtime stack pays for the same with runc or crun and the CNI reference plugins, and
what the container datapaths carry compared with the NIC under them.

Everything happens in simulated nodes (pyctr.testbed: network namespaces
each with a NIC `nic0`, a veth to a switch bridge in another namespace); the
machine's own interfaces are never touched.

1. Start-up with networking (`net-start`), in one node:
     pyctr veth      pyctr run --rm --net=veth:pbbr0 IMAGE /bin/true
     runc+cni-bridge ip netns add NS; CNI bridge ADD; runc run (netns = NS);
                     CNI bridge DEL; ip netns del NS
     crun+cni-bridge the same with crun, the fastest OCI runtime here: the
                     named peer when installed (see crun_stacks)
     pyctr macvlan   pyctr run --rm --net=macvlan:nic0 IMAGE /bin/true
                     (and again with host_shim=no: the CNI plugin makes no shim;
                     and on a network defined with probe = false: what the ARP
                     probe for a free address, arp.py, costs. Nothing else is
                     on this node's wire, so every probe waits its full
                     PROBE_WAIT: the cost of the usual case, a free address)
     runc+cni-macvlan  same as runc+cni-bridge with the CNI macvlan plugin
     crun+cni-macvlan  and with crun
   This is how CRI runtimes do it (cri-o even execs `pinns` for the netns):
   netns first, CNI ADD into it, the OCI runtime joins it, CNI DEL, netns
   gone. CNI is called the standard way: CNI_COMMAND, CNI_CONTAINERID,
   CNI_NETNS, CNI_IFNAME, CNI_PATH in the environment, the network config on
   stdin; host-local IPAM with its data dir on tmpfs. The CNI stack does not
   bring `lo` up in the container (pyctr does): in the peer's favour.
   All commands are timed by a runner started once with `nsenter --net` into
   the node (netns only: runc needs the host's cgroup mounts, which `ip netns
   exec`'s fresh /sys would hide).
2. Throughput (`net-iperf`): iperf3 between two nodes, for the nodes' NICs,
   for a veth+bridge container on each (NIC in the bridge), and for a macvlan
   container on each (on the NIC). A bridge port cannot also be a macvlan
   lower device, so each datapath gets its own identical 2-node testbed, all
   up at once so their runs can interleave. iperf3 runs in the container's
   netns via nsenter (the busybox image has no iperf3; the datapath is what
   is measured).
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from pyctr.bench import harness
from pyctr.bench.startup import (Runners, crun_runner_prefix, install_copy, install_kind,
                                 launcher_and_interpreter, precompile, resolve_rootfs,
                                 timed_env, timing_parser)
from pyctr.errors import PyctrError
from pyctr.network.arp import PROBE_WAIT

CNI_PATH = "/usr/lib/cni"
NODE_SUBNET = "10.77.0.0/24"    # testbed's default: nodes are .1, .2, ...


def parse(argv):
    p = timing_parser("bench net", "Time pyctr run with veth/macvlan networking against "
                      "runc + CNI plugins; measure iperf3 throughput of the datapaths.", "net")
    p.add_argument("--iperf-runs", type=int, default=5,
                   help="iperf3 runs per datapath (5)")
    p.add_argument("--iperf-seconds", type=int, default=3,
                   help="length of one iperf3 run, 1..30 s (3)")
    p.add_argument("--iperf-rate", type=int, metavar="MBIT",
                   help="shape every node link to MBIT (e.g. 100: the study's Fast "
                   "Ethernet); default unshaped")
    p.add_argument("--only", choices=("start", "iperf"), help="run only one part")
    p.add_argument("--rootless", action="store_true",
                   help="a user's networks through the helper (pyctr netd) vs root's, and "
                   "vs podman rootless with slirp4netns and pasta (bench/rootless_net.py)")
    args = p.parse_args(argv)
    if not 1 <= args.iperf_seconds <= 30:
        raise PyctrError("bench net: --iperf-seconds must be 1..30")
    if args.iperf_rate is not None and args.iperf_rate < 1:
        raise PyctrError("bench net: --iperf-rate must be a positive number of Mbit/s")
    if args.iperf_runs < 1:
        raise PyctrError("bench net: --iperf-runs must be >= 1")
    return args


def check_tools(parts):
    need = ["ip", "nsenter"]
    if "start" in parts:
        need += ["runc"]
        for plugin in ("bridge", "macvlan", "host-local"):
            if not os.access(os.path.join(CNI_PATH, plugin), os.X_OK):
                raise PyctrError("CNI plugin %s/%s missing (apt-get install "
                                 "containernetworking-plugins)" % (CNI_PATH, plugin))
    if "iperf" in parts:
        need += ["iperf3"]
    for tool in need:
        if not shutil.which(tool):
            raise PyctrError("%s is not installed" % tool)


def command(paths, argv):
    args = parse(argv)
    if os.geteuid() != 0:
        raise PyctrError("bench net needs root (namespaces, runc, CNI)")
    parts = [args.only] if args.only else ["start", "iperf"]
    check_tools(parts)
    label, rootfs = resolve_rootfs(paths, args.image)
    if args.venv:
        if args.pyctr:
            raise PyctrError("bench net: give --venv or --pyctr, not both")
        args.pyctr = install_copy(args.venv)
    launcher, interp = launcher_and_interpreter(args.pyctr)
    args.installed = "pyctr timed from %s (%s)" % (launcher, install_kind(precompile(interp)))
    out = args.out or harness.default_out_dir("net")
    facts = harness.machine_facts({  # before the runs: their load, their date
        "pyctr (timed)": harness.tool_version(launcher),
        "python (timed)": harness.tool_version(interp),
        "cni-plugins": _deb_version("containernetworking-plugins"),
        "iperf3": harness.tool_version("iperf3", ["--version"])})
    if args.rootless:
        from pyctr.bench import rootless_net
        return rootless_net.command(args, paths, label, rootfs, launcher, out, facts)
    from pyctr.testbed import Testbed
    results = []
    if "start" in parts:
        with Testbed(prefix="pbn", nodes=1, data=paths.data) as tb:
            results.append(start_bench(args, tb.nodes[0], label, rootfs, launcher))
        harness.emit(results[-1], out, facts)  # now: kept even if iperf is interrupted
    if "iperf" in parts:
        kw = dict(prefix="pbn", nodes=2, data=paths.data, rate_mbit=args.iperf_rate)
        with Testbed(**kw) as nic_tb, Testbed(**kw) as br_tb, Testbed(**kw) as mv_tb:
            results.append(iperf_bench(args, nic_tb, br_tb, mv_tb, label))
        harness.emit(results[-1], out, facts)
    return 1 if any(r.failed for r in results) else 0


def _deb_version(package):
    line = harness._first_line(["dpkg-query", "-W", "-f", "${Version}", package])
    return line or None


# ------------------------------------------------------ 1. start-up cost

def cni_config(name, plugin, ipam_dir, **settings):
    conf = {"cniVersion": "1.0.0", "name": name, "type": plugin}
    conf.update(settings)
    conf["ipam"]["dataDir"] = ipam_dir
    return conf


def write_net_bundle(bundle, rootfs, netns_path):
    """runc spec bundle running /bin/true in an existing netns."""
    from pyctr.bench.startup import write_bundle
    write_bundle(bundle, rootfs)
    config_path = os.path.join(bundle, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    for ns in config["linux"]["namespaces"]:
        if ns["type"] == "network":
            ns["path"] = netns_path
    with open(config_path, "w") as f:
        json.dump(config, f, indent=1)


def write_pyctr_network(node_paths, name, **keys):
    """A network definition in the node's own pyctr config (the TOML format
    of pyctr.network.config), as a site would define it once."""
    from pyctr import tomlio
    os.makedirs(node_paths.networks, exist_ok=True)
    tomlio.save(os.path.join(node_paths.networks, name + ".toml"), keys)


def start_bench(args, node, label, rootfs, launcher):
    work = tempfile.mkdtemp(prefix="pyctr-bench-net-", dir="/run")
    runners = Runners()
    tag = "pbn%d" % os.getpid()
    netns = tag + "-c"           # one at a time: each run makes and removes it
    netns_path = "/run/netns/" + netns
    try:
        bundle = os.path.join(work, "bundle")
        write_net_bundle(bundle, rootfs, netns_path)
        ipam = os.path.join(work, "cni-ipam")
        confs = {
            "bridge": cni_config("pbcni-bridge", "bridge", ipam, bridge="pbcni0",
                                 isGateway=True, ipam={
                                     "type": "host-local",
                                     "ranges": [[{"subnet": "10.88.0.0/24"}]],
                                     "routes": [{"dst": "0.0.0.0/0"}]}),
            "macvlan": cni_config("pbcni-macvlan", "macvlan", ipam, master="nic0",
                                  mode="bridge", ipam={
                                      "type": "host-local",
                                      "ranges": [[{"subnet": NODE_SUBNET,
                                                   "rangeStart": "10.77.0.100",
                                                   "rangeEnd": "10.77.0.149"}]]}),
        }
        conf_files = {}
        for plugin, conf in confs.items():
            conf_files[plugin] = os.path.join(work, plugin + ".conf")
            with open(conf_files[plugin], "w") as f:
                json.dump(conf, f)

        # pyctr's side, defined once like the CNI configs above; the ad-hoc
        # macvlan:nic0 takes its subnet from nic0's address.
        p = node.paths
        write_pyctr_network(p, "pbbr0", kind="bridge", subnet="10.89.0.0/24")
        write_pyctr_network(p, "pbmvq", kind="macvlan", uplink="nic0", subnet=NODE_SUBNET,
                            probe=False)

        runner = runners.add(harness.Runner(
            "node", prefix=["nsenter", "--net=/run/netns/" + node.netns], env=timed_env()))
        step = harness.step

        def cni_stack(plugin, runtime="runc"):
            state = os.path.join(work, runtime + "-state")

            def request(i):
                cid = "%s-%s-%s-%d" % (tag, runtime, plugin, i + 1000)
                env = {"CNI_CONTAINERID": cid, "CNI_NETNS": netns_path, "CNI_IFNAME": "eth0",
                       "CNI_PATH": CNI_PATH}
                exe = os.path.join(CNI_PATH, plugin)
                return {"steps": [
                    step(["ip", "netns", "add", netns]),
                    step([exe], env=dict(env, CNI_COMMAND="ADD"), stdin=conf_files[plugin]),
                    step([runtime, "--root", state, "run", "--bundle", bundle, cid]),
                    step([exe], env=dict(env, CNI_COMMAND="DEL"), stdin=conf_files[plugin],
                         always=True),
                    step(["ip", "netns", "del", netns], always=True)],
                    "on_fail": [step([runtime, "--root", state, "delete", "--force", cid])]}
            return request

        def pyctr(net):
            argv = [launcher, "--root", p.root, "--config", p.config, "--data", p.data,
                    "run", "--rm", "--net=" + net, label, "/bin/true"]
            return lambda i: {"steps": [step(argv)]}

        crun = crun_stacks(runners, node, cni_stack)
        # The fastest peer doing the same work names each ratio: crun's stack
        # when installed (issue 13), else runc's.
        bridge_peer = "crun+cni-bridge" if crun else "runc+cni-bridge"
        macvlan_peer = "crun+cni-macvlan" if crun else "runc+cni-macvlan"
        contenders = [
            harness.CommandContender(
                "pyctr veth", runner, pyctr("veth:pbbr0"), peer=bridge_peer,
                note="`pyctr run --rm --net=veth:pbbr0 %s /bin/true` (network pbbr0: "
                "10.89.0.0/24, no uplink)" % label),
            harness.CommandContender(
                "runc+cni-bridge", runner, cni_stack("bridge"), peer=bridge_peer,
                note="ip netns add; CNI bridge ADD (isGateway, host-local 10.88.0.0/24); "
                "runc run in that netns; CNI DEL; ip netns del"),
            harness.CommandContender(
                "pyctr macvlan", runner, pyctr("macvlan:nic0"), peer=macvlan_peer,
                note="`pyctr run --rm --net=macvlan:nic0 %s /bin/true`: mode bridge, with "
                "pyctr's default host shim (a host macvlan made for the first container on "
                "nic0 and kept, like a bridge: here, made by the first run)" % label),
            harness.CommandContender(
                "pyctr macvlan no-shim", runner, pyctr("macvlan:nic0,host_shim=no"),
                peer=macvlan_peer,
                note="`--net=macvlan:nic0,host_shim=no`: no host shim, as the CNI plugin "
                "makes none; it still probes each address, which the plugin does not"),
            harness.CommandContender(
                "pyctr macvlan no-probe", runner, pyctr("pbmvq"), peer=macvlan_peer,
                note="`--net=pbmvq`: macvlan:nic0 with the host shim, defined with probe = "
                "false (no ARP probe, no announcement: the address is set at once)"),
            harness.CommandContender(
                "runc+cni-macvlan", runner, cni_stack("macvlan"), peer=macvlan_peer,
                note="as runc+cni-bridge with the CNI macvlan plugin (master nic0, "
                "mode bridge, host-local 10.77.0.100-149)"),
        ] + crun
        # Targets only where pyctr does none of the work the CNI plugin skips:
        # the ARP probe is such work. (The no-probe contender's route to the
        # host shim is more work too, and it is held to the target anyway.)
        comparisons = [("pyctr veth", "runc+cni-bridge", 1.0),
                       ("pyctr macvlan no-probe", "runc+cni-macvlan", 1.0),
                       ("pyctr macvlan", "runc+cni-macvlan", None),
                       ("pyctr macvlan no-shim", "runc+cni-macvlan", None),
                       ("pyctr macvlan", "pyctr macvlan no-probe", None)]
        if crun:
            comparisons += crun_comparisons()
        bench = harness.Benchmark(
            "net-start", "pyctr run with networking vs runc/crun + CNI: %s /bin/true" % label,
            "ms", contenders, peer=bridge_peer, runs=args.runs, warmup=args.warmup,
            comparisons=comparisons,
            notes=["all in simulated node %s (a netns whose NIC nic0 is a veth to a switch "
                   "netns); timed from inside it by one runner" % node.netns,
                   "runc and crun state on tmpfs, CNI host-local IPAM data dir on tmpfs",
                   "pyctr macvlan probes each address (2 ARP probes, answers taken for "
                   "%d ms) where pyctr macvlan no-probe does not; the CNI plugin does not "
                   "probe" % round(PROBE_WAIT * 1000),
                   args.installed] + ([] if crun else [
                       "crun not installed: runc's stack is the peer (apt-get install crun)"]))
        result = bench.run()
    finally:
        runners.close()
        subprocess.run(["ip", "netns", "del", netns], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return result


def crun_stacks(runners, node, cni_stack):
    """crun + the CNI plugins, the same steps as runc's stack (cni_stack(
    plugin, runtime)), timed by a runner of its own in the node; [] when
    crun is not installed. On a hybrid cgroup host the runner lives in a
    mount namespace without /sys/fs/cgroup/unified (crun 1.8.1 refuses
    hybrid cgroups: see bench/startup.py); the netns that `ip netns add`
    mounts there stays in that namespace, where CNI and crun use it."""
    if not shutil.which("crun"):
        return []
    prefix = crun_runner_prefix()
    runner = runners.add(harness.Runner(
        "node-crun", prefix=prefix + ["nsenter", "--net=/run/netns/" + node.netns],
        env=timed_env()))
    where = "; timed from a mount namespace without /sys/fs/cgroup/unified (crun 1.8.1 " \
        "refuses hybrid cgroups)" if prefix else ""
    return [
        harness.CommandContender(
            "crun+cni-bridge", runner, cni_stack("bridge", "crun"),
            note="as runc+cni-bridge with `crun run`, the same bundle" + where),
        harness.CommandContender(
            "crun+cni-macvlan", runner, cni_stack("macvlan", "crun"), peer="crun+cni-macvlan",
            note="as runc+cni-macvlan with `crun run`" + where)]


def crun_comparisons():
    """issue 13: pyctr's networked starts at or below crun + CNI doing the
    same work."""
    return [("pyctr veth", "crun+cni-bridge", 1.0),
            ("pyctr macvlan no-probe", "crun+cni-macvlan", 1.0),
            ("pyctr macvlan no-shim", "crun+cni-macvlan", None),
            ("pyctr macvlan", "crun+cni-macvlan", None),
            ("crun+cni-bridge", "runc+cni-bridge", None)]


# ------------------------------------------------------- 2. throughput

class IperfPath:
    """One datapath: an iperf3 server in one netns, clients from another."""

    def __init__(self, name, client_ns, server_ns, server_ip):
        self.name, self.client_ns, self.server_ns, self.server_ip = \
            name, client_ns, server_ns, server_ip
        self.server = None

    def start(self):
        self.server = subprocess.Popen(
            ["nsenter", "--net=" + self.server_ns, "iperf3", "--server", "--bind",
             self.server_ip], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def measure(self, seconds):
        argv = ["nsenter", "--net=" + self.client_ns, "iperf3", "--client", self.server_ip,
                "--time", str(seconds), "--json", "--connect-timeout", "3000"]
        for attempt in range(20):   # the server may need a moment to listen
            try:
                r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 20)
            except subprocess.TimeoutExpired:
                raise harness.ContenderFailed("iperf3 did not finish in %d s" % (seconds + 20))
            try:
                data = json.loads(r.stdout)
            except ValueError:
                data = {"error": (r.stderr or r.stdout).strip()}
            if "error" not in data:
                return data["end"]["sum_received"]["bits_per_second"] / 1e6
            if attempt < 19 and "connect" in data["error"] and self.server.poll() is None:
                time.sleep(0.1)
                continue
            raise harness.ContenderFailed("iperf3 to %s: %s" % (self.server_ip, data["error"]))

    def stop(self):
        if self.server and self.server.poll() is None:
            self.server.kill()
            self.server.wait()


def start_container(node, net, ip, label):
    """A detached container on `node` with one interface; its netns path."""
    name = "pbn-" + net
    r = node.pyctr("run", "-d", "--name", name, "--net=%s,ip=%s" % (net, ip), label,
                   "sleep", "3600", timeout=60)
    if r.returncode:
        raise harness.ContenderFailed("pyctr run --net=%s on %s: %s"
                                      % (net, node.name, r.stderr.strip()))
    r = node.pyctr("inspect", name, timeout=30)
    if r.returncode:
        raise harness.ContenderFailed("pyctr inspect %s: %s" % (name, r.stderr.strip()))
    state = json.loads(r.stdout)
    state = state[0] if isinstance(state, list) else state
    return "/proc/%d/ns/net" % state["pid"]


def measurer(paths, fails, seconds):
    """name -> a Contender's measure(i): iperf3 over paths[name], or the
    failure fails[name] of setting that path up, at every run."""
    def measure(name):
        if name in fails:
            def failing(i):
                raise harness.ContenderFailed(fails[name])
            return failing
        return lambda i: paths[name].measure(seconds)
    return measure


def run_over(bench, paths):
    """bench.run() with every path's iperf3 server up, and down after."""
    try:
        for path in paths.values():
            path.start()
        return bench.run()
    finally:
        for path in paths.values():
            path.stop()


def iperf_bench(args, nic_tb, br_tb, mv_tb, label):
    seconds = args.iperf_seconds
    notes = ["each datapath has its own 2-node testbed (identical: netns nodes, veth NICs "
             "to a switch bridge); iperf3 %d s TCP, client on node 1, server on node 2, "
             "in the containers' netns via nsenter" % seconds,
             "node links shaped to %d Mbit/s (tbf)" % args.iperf_rate if args.iperf_rate
             else "node links unshaped: veth speed, bound by CPU (%d CPUs)" % os.cpu_count()]
    a, b = nic_tb.nodes
    paths = {"nic": IperfPath("nic", "/run/netns/" + a.netns, "/run/netns/" + b.netns, b.ip)}
    fails = {}
    # Containers on the nodes' own segment, fixed addresses, each node its
    # own range (IPAM is per node). With veth+bridge the node's NIC goes into
    # the bridge (which takes over the NIC's address); macvlan sits on it.
    setups = (("veth+bridge", br_tb, "pbbr0", dict(kind="bridge", uplink="nic0"), 100),
              ("macvlan", mv_tb, "pbmv", dict(kind="macvlan", uplink="nic0", mode="bridge"),
               150))
    try:
        for name, tb, net, keys, base in setups:
            try:
                ends = []
                for n, node in enumerate(tb.nodes):
                    first = base + 10 * n
                    write_pyctr_network(node.paths, net, subnet=NODE_SUBNET,
                                        range="10.77.0.%d-10.77.0.%d" % (first, first + 9),
                                        **keys)
                    ends.append(start_container(node, net, "10.77.0.%d/24" % first, label))
                paths[name] = IperfPath(name, ends[0], ends[1], "10.77.0.%d" % (base + 10))
            except harness.ContenderFailed as e:
                fails[name] = str(e)

        measure = measurer(paths, fails, seconds)

        contenders = [harness.Contender(name, measure(name), note=note) for name, note in (
            ("nic", "node to node over their NICs (veth to the switch netns)"),
            ("veth+bridge", "container to container: veth, node bridge with nic0 as uplink"),
            ("macvlan", "container to container: macvlan (bridge mode) on nic0"))]
        bench = harness.Benchmark(
            "net-iperf", "iperf3 TCP throughput between two simulated nodes", "Mbit/s",
            contenders, peer="nic", runs=args.iperf_runs, warmup=1, higher_is_better=True,
            comparisons=[("veth+bridge", "nic", None), ("macvlan", "nic", None)], notes=notes)
        return run_over(bench, paths)
    finally:
        for name, tb, net, _, _ in setups:
            for node in tb.nodes:
                node.pyctr("rm", "-f", "pbn-" + net, timeout=30)
