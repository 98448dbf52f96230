"""`pyctr bench net --rootless`: what a user's network costs when the
privileged helper (pyctr.netd) wires it, against root's pyctr on the same
network, and against what an unprivileged user has without such a helper:
podman rootless over a user-mode TCP/IP stack (slirp4netns, pasta).

Everything runs in simulated nodes (pyctr.testbed), as a user made for the
run (pyctr.userbed.TestUser: no home, no login; removed with its processes
at the end); the machine's own interfaces are never touched.

1. Start-up (`net-start-rootless`), one node, the networks defined by root
   and granted to the user (policy.toml), one helper (`pyctr netd serve`):
     root veth      pyctr run --rm --net=pbveth IMAGE /bin/true   (as root)
     user veth      the same as the user: user+net namespaces, the helper wires
     root macvlan   pyctr run --rm --net=pbmv IMAGE /bin/true     (on nic0)
     user macvlan   the same as the user
   Each side is timed by a runner started once in the node (nsenter --net),
   the user's under setpriv with the user's ids and a clean environment.
   Target: the user's median <= 1.2x root's.
2. Throughput (`net-iperf-rootless`): iperf3 between two nodes:
     nic                  node to node over the NICs
     pyctr user macvlan   a user's container on each node (macvlan on nic0)
     podman slirp4netns   podman rootless, --network slirp4netns, the server's
                          port published (-p, podman's default port handler)
     podman pasta         podman rootless --network none, then pasta attached
                          to the container's namespaces (--config-net, -t
                          PORT): what `--network pasta` does in podman >= 4.4
                          (Debian 12 has 4.3)
   iperf3 runs in each container's netns via nsenter, as in `bench net`; the
   client on node 1 connects to the server container's address (pyctr) or
   to node 2's published port (podman: user-mode stacks are NATed).
   Podman runs as the user with its storage, runtime dir and config in
   directories of the run (vfs, --rootfs of a copy of the image, cgroups
   disabled). Two host facts it needs are given to it in a mount namespace of
   its own: /dev/net/tun readable by the user (here 0600: a node of the
   same device, 0666, bind-mounted on it) and no cgroup v2 hierarchy beside
   v1 (crun 1.8 refuses a hybrid layout).
"""
import json
import os
import shutil
import subprocess
import tempfile

from pyctr.bench import harness
from pyctr.errors import PyctrError

NODE_SUBNET = "10.77.0.0/24"
IPERF_PORT = 5201
PASTA_GATEWAY = "10.77.0.254"   # on NODE_SUBNET, held by no node
TUN = (10, 200)  # /dev/net/tun's major, minor


def command(args, paths, label, rootfs, launcher, out, facts):
    """`bench net --rootless`; returns the exit code."""
    from pyctr import userbed
    from pyctr.testbed import Testbed
    parts = [args.only] if args.only else ["start", "iperf"]
    if "iperf" in parts:
        for tool in ("podman", "slirp4netns", "pasta", "crun", "iperf3", "setpriv"):
            if not shutil.which(tool):
                raise PyctrError("bench net --rootless: %s is not installed "
                                 "(install.sh --test)" % tool)
    facts = dict(facts)
    results = []
    with userbed.TestUser(prefix="pbnu") as user:
        if not user.userns_works():
            raise PyctrError("bench net --rootless: unprivileged user namespaces are off")
        if "start" in parts:
            with Testbed(prefix="pbnr", nodes=1, data=paths.data) as tb:
                results.append(start_bench(args, tb, user, label, launcher))
            harness.emit(results[-1], out, facts)
        if "iperf" in parts:
            kw = dict(prefix="pbnr", nodes=2, data=paths.data, rate_mbit=args.iperf_rate)
            with Testbed(**kw) as nic_tb, Testbed(**kw) as mv_tb, Testbed(**kw) as sl_tb, \
                    Testbed(**kw) as pa_tb:
                results.append(iperf_bench(args, user, label, rootfs, nic_tb, mv_tb, sl_tb, pa_tb))
            harness.emit(results[-1], out, facts)
    return 1 if any(r.failed for r in results) else 0


def grant(tb, user, networks, **rules):
    """Root defines `networks` ({name: keys}) on every node and grants them
    to the user."""
    from pyctr import userbed
    from pyctr.bench.net import write_pyctr_network
    for node in tb.nodes:
        for name, keys in networks.items():
            write_pyctr_network(node.paths, name, **keys(node) if callable(keys) else keys)
        userbed.write_policy(node, {name: dict({"users": [user.name]}, **rules)
                                    for name in networks})


# ------------------------------------------------------ 1. start-up cost

def start_bench(args, tb, user, label, launcher):
    from pyctr import userbed
    node = tb.nodes[0]
    grant(tb, user, {
        "pbveth": dict(kind="veth", subnet="10.89.0.0/24"),
        "pbmv": dict(kind="macvlan", uplink="nic0", subnet=NODE_SUBNET,
                     range="10.77.0.100-10.77.0.149", probe=False)}, max_containers=4)
    from pyctr.bench.startup import Runners
    runners = Runners()
    with userbed.Helpers(tb) as helpers:  # no runner nor user process before it is up
        me = user.on(node, helpers)
        try:
            return _start_bench(args, label, launcher, node, me, runners)
        finally:
            runners.close()
            user.kill_processes()
            me.clean()  # while the helper is up: it releases their leases


def _start_bench(args, label, launcher, node, me, runners):
    """The timed runs, root's and the user's, in node (its helper up)."""
    from pyctr.bench.startup import timed_env
    root = runners.add(harness.Runner(
        "root", prefix=["nsenter", "--net=/run/netns/" + node.netns], env=timed_env()))
    # The user's runner: nsenter, setpriv (the user's ids), env -i.
    mine = runners.add(harness.Runner("user", prefix=me.argv([])))
    p = node.paths
    as_root = [launcher, "--root", p.root, "--config", p.config, "--data", p.data]
    as_user = [launcher, "--data", p.data]

    def run(base, net):
        argv = base + ["run", "--rm", "--net=" + net, label, "/bin/true"]
        return lambda i: {"steps": [harness.step(argv)]}

    contenders = [
        harness.CommandContender("root veth", root, run(as_root, "pbveth"),
                                 note="`pyctr run --rm --net=pbveth %s /bin/true` as "
                                 "root (veth on bridge pbveth, 10.89.0.0/24)" % label),
        harness.CommandContender("user veth", mine, run(as_user, "pbveth"),
                                 peer="root veth",
                                 note="the same as the user: the helper wires it"),
        harness.CommandContender("root macvlan", root, run(as_root, "pbmv"),
                                 peer="root macvlan",
                                 note="`--net=pbmv`: macvlan on nic0, host shim, "
                                 "probe = false, as root"),
        harness.CommandContender("user macvlan", mine, run(as_user, "pbmv"),
                                 peer="root macvlan", note="the same as the user"),
    ]
    bench = harness.Benchmark(
        "net-start-rootless", "pyctr run with a network: a user (through the "
        "helper) vs root: %s /bin/true" % label, "ms", contenders, peer="root veth",
        runs=args.runs, warmup=args.warmup,
        comparisons=[("user veth", "root veth", 1.2),
                     ("user macvlan", "root macvlan", 1.2)],
        notes=["all in simulated node %s; networks defined by root, granted to the "
               "user in policy.toml; one `pyctr netd serve` in the node" % node.netns,
               "the user's pyctr: state root in its XDG_RUNTIME_DIR (tmpfs), a user "
               "namespace mapping the user to root, the netns fd sent to the "
               "helper, which checks it and the policy and wires the container",
               "macvlan defined with probe = false: the ARP probe's fixed wait "
               "(arp.py) is the same for both and would only dilute the ratio",
               args.installed])
    return bench.run()


# ------------------------------------------------------- 2. throughput

class Podman:
    """podman rootless as `user` in one node, everything under `base`."""

    def __init__(self, user, node, base, rootfs):
        self.user, self.node, self.base = user, node, base
        self.dirs = {k: os.path.join(base, k) for k in ("home", "run", "root", "runroot",
                                                        "tmp", "rootfs")}
        for d in self.dirs.values():
            if d != self.dirs["rootfs"]:
                os.makedirs(d, mode=0o700, exist_ok=True)
        # the container's root: a copy of the image the user owns (--rootfs)
        subprocess.run(["cp", "-a", rootfs, self.dirs["rootfs"]], check=True)
        self.tun = os.path.join(base, "tun")
        os.mknod(self.tun, 0o20666, os.makedev(*TUN))
        os.chmod(self.tun, 0o666)
        self.storage = os.path.join(base, "storage.conf")
        with open(self.storage, "w") as f:
            f.write('[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n'
                    % (self.dirs["root"], self.dirs["runroot"]))
        self.conf = os.path.join(base, "containers.conf")
        with open(self.conf, "w") as f:
            f.write('[containers]\ncgroups = "disabled"\n[engine]\ncgroup_manager = '
                    '"cgroupfs"\nevents_logger = "file"\nevents_logfile_path = "%s"\n'
                    'tmp_dir = "%s"\n[network]\nnetwork_config_dir = "%s"\n'
                    % (os.path.join(base, "events.log"), self.dirs["tmp"],
                       os.path.join(base, "networks")))
        subprocess.run(["chown", "-R", "%d:%d" % (user.uid, user.gid), base], check=True)

    def argv(self, argv):
        """argv as the user in the node, in a mount namespace where the tun
        node is the user's and cgroup v2 is not mounted beside v1."""
        env = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + self.dirs["home"],
               "XDG_RUNTIME_DIR=" + self.dirs["run"], "TMPDIR=" + self.dirs["tmp"],
               "CONTAINERS_STORAGE_CONF=" + self.storage, "CONTAINERS_CONF=" + self.conf]
        setup = "mount --bind %s /dev/net/tun" % self.tun
        from pyctr.bench.startup import hybrid_cgroups
        if hybrid_cgroups():
            setup += " && umount /sys/fs/cgroup/unified"
        return (["nsenter", "--net=/run/netns/" + self.node.netns, "unshare", "--mount",
                 "--propagation", "private", "sh", "-c", setup + ' && exec "$@"', "sh"]
                + self.user.as_user(["env", "-i"] + env + list(argv)))

    def run(self, argv, timeout=120):
        return subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                              cwd="/", stdin=subprocess.DEVNULL)

    def start(self, name, network, publish=None):
        """A detached container sleeping; its pid."""
        argv = ["podman", "--runtime", "crun", "run", "-d", "--name", name,
                "--network", network]
        if publish:
            argv += ["-p", "%d:%d" % (publish, publish)]
        r = self.run(argv + ["--rootfs", self.dirs["rootfs"], "sleep", "3600"])
        if r.returncode:
            raise harness.ContenderFailed("podman run --network %s on %s: %s"
                                          % (network, self.node.name, _last(r.stderr)))
        r = self.run(["podman", "inspect", "--format", "{{.State.Pid}}", name])
        if r.returncode or not r.stdout.strip().isdigit():
            raise harness.ContenderFailed("podman inspect %s: %s" % (name, _last(r.stderr)))
        return int(r.stdout.strip())

    def pasta(self, pid, ports=()):
        """pasta attached to the namespaces of container process `pid`."""
        # IPv4 only; a node has no default route, which pasta wants for the
        # one it gives the namespace: a gateway nobody holds is named
        argv = ["pasta", "--config-net", "-i", "nic0", "-4", "-g", PASTA_GATEWAY, "-P",
                os.path.join(self.base, "pasta.pid")]
        argv += ["-t", ",".join(str(p) for p in ports)] if ports else ["-t", "none"]
        argv += ["-u", "none", "-T", "none", "-U", "none", "--userns",
                 "/proc/%d/ns/user" % pid, "--netns", "/proc/%d/ns/net" % pid]
        r = self.run(argv, timeout=30)
        if r.returncode:
            raise harness.ContenderFailed("pasta on %s: %s" % (self.node.name,
                                                               _last(r.stderr)))

    def close(self):
        self.run(["podman", "rm", "-f", "-a", "-t", "0"], timeout=60)


def _last(text):
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else "no message"


def user_container(user, node, helpers, net, ip, label):
    """A user's detached container on `net` at `ip`; its netns path."""
    me = user.on(node, helpers)
    name = "pbn-user"
    r = me.pyctr("run", "-d", "--name", name, "--net=%s,ip=%s" % (net, ip), label,
                 "sleep", "3600", timeout=60)
    if r.returncode:
        raise harness.ContenderFailed("pyctr run --net=%s as the user on %s: %s"
                                      % (net, node.name, _last(r.stderr)))
    r = me.pyctr("inspect", name, timeout=30)
    if r.returncode:
        raise harness.ContenderFailed("pyctr inspect %s: %s" % (name, _last(r.stderr)))
    state = json.loads(r.stdout)
    state = state[0] if isinstance(state, list) else state
    return "/proc/%d/ns/net" % state["pid"]


def iperf_bench(args, user, label, rootfs, nic_tb, mv_tb, sl_tb, pa_tb):
    from pyctr import userbed
    from pyctr.bench.net import IperfPath, measurer, run_over
    seconds = args.iperf_seconds
    a, b = nic_tb.nodes
    paths = {"nic": IperfPath("nic", "/run/netns/" + a.netns, "/run/netns/" + b.netns, b.ip)}
    fails = {}
    podmans = []
    work = tempfile.mkdtemp(prefix="pbnr-", dir="/var/tmp")
    os.chmod(work, 0o755)
    helpers = userbed.Helpers(mv_tb)
    try:
        try:  # pyctr: the user's containers, fixed addresses on the nodes' segment
            grant(mv_tb, user, {"pbmv": lambda node: dict(
                kind="macvlan", uplink="nic0", mode="bridge", subnet=NODE_SUBNET,
                range="10.77.0.%d-10.77.0.%d" % (150 + 10 * node.index,
                                                 159 + 10 * node.index))},
                  max_containers=2, choose_ip=True)
            helpers.up()
            ends = [user_container(user, node, helpers, "pbmv",
                                   "10.77.0.%d/24" % (150 + 10 * node.index), label)
                    for node in mv_tb.nodes]
            paths["pyctr user macvlan"] = IperfPath("pyctr user macvlan", ends[0], ends[1],
                                                    "10.77.0.%d" % (150 + 20))
        except (harness.ContenderFailed, RuntimeError) as e:
            fails["pyctr user macvlan"] = str(e)
        for name, tb, network in (("podman slirp4netns", sl_tb, "slirp4netns"),
                                  ("podman pasta", pa_tb, "none")):
            try:
                pids = []
                for node in tb.nodes:
                    podman = Podman(user, node, os.path.join(work, "%s-%s" % (
                        network, node.name)), rootfs)
                    podmans.append(podman)
                    server = node is tb.nodes[1]
                    publish = IPERF_PORT if server and network != "none" else None
                    pids.append(podman.start("pbn-" + node.name, network, publish))
                    if network == "none":
                        podman.pasta(pids[-1], [IPERF_PORT] if server else ())
                paths[name] = NattedPath(name, "/proc/%d/ns/net" % pids[0],
                                         "/proc/%d/ns/net" % pids[1], tb.nodes[1].ip)
            except (harness.ContenderFailed, OSError, subprocess.SubprocessError) as e:
                fails[name] = str(e)

        measure = measurer(paths, fails, seconds)

        contenders = [harness.Contender(name, measure(name), note=note) for name, note in (
            ("nic", "node to node over their NICs (veth to the switch netns)"),
            ("pyctr user macvlan", "a user's pyctr containers, macvlan (bridge) on nic0, "
             "wired by the helper"),
            ("podman slirp4netns", "podman %s rootless, --network slirp4netns, server's "
             "port published with -p (rootlessport)" % _version("podman")),
            ("podman pasta", "podman rootless --network none + pasta --config-net "
             "(-t %d on the server's node), as podman >= 4.4's --network pasta" % IPERF_PORT))]
        bench = harness.Benchmark(
            "net-iperf-rootless", "iperf3 TCP throughput between two simulated nodes, "
            "unprivileged containers", "Mbit/s", contenders, peer="nic",
            runs=args.iperf_runs, warmup=1, higher_is_better=True,
            comparisons=[("pyctr user macvlan", "nic", None),
                         ("pyctr user macvlan", "podman slirp4netns", None),
                         ("pyctr user macvlan", "podman pasta", None)],
            notes=["each datapath has its own identical 2-node testbed; iperf3 %d s TCP, "
                   "client on node 1, server on node 2, in the containers' netns via "
                   "nsenter; podman's client connects to node 2's published port" % seconds,
                   "node links shaped to %d Mbit/s (tbf)" % args.iperf_rate
                   if args.iperf_rate else
                   "node links unshaped: veth speed, bound by CPU (%d CPUs)" % os.cpu_count(),
                   "all containers run as an unprivileged user made for the run"])
        return run_over(bench, paths)
    finally:
        for podman in podmans:
            podman.close()
        user.kill_processes()
        for node in mv_tb.nodes:  # while its helper is up: it releases their leases
            user.on(node, helpers).clean()
        helpers.down()
        shutil.rmtree(work, ignore_errors=True)


def _version(tool):
    line = harness.tool_version(tool)
    return (line or "").split()[-1] if line else "?"


class NattedPath:
    """An iperf3 path into a user-mode stack: the server listens on every
    address of its container's netns, the client connects to the server
    node's address, whose published port leads there."""

    def __init__(self, name, client_ns, server_ns, node_ip):
        from pyctr.bench.net import IperfPath
        self.path = IperfPath(name, client_ns, server_ns, node_ip)
        self.name = name

    def start(self):
        path = self.path
        path.server = subprocess.Popen(
            ["nsenter", "--net=" + path.server_ns, "iperf3", "--server", "--port",
             str(IPERF_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self  # measure() retries while the server comes up

    def measure(self, seconds):
        return self.path.measure(seconds)

    def stop(self):
        self.path.stop()
