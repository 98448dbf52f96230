"""`pyctr mpi-doctor`: checks running containers (and the launcher's
environment) for the ways MPI breaks across network namespaces, and says
so in words, with the fix. What it checks follows the facts in env.py.

It reads each container's interfaces with pyctr's own rtnetlink client
opened inside the container's network namespace, and tests TCP between
containers with sockets made in their namespaces: no helper process, and
nothing is written into the containers.
"""
import os

from pyctr.errors import PyctrError, from_oserror
from pyctr.mpi.env import LAUNCHERS, Iface, mpi_env, pmix_uris, unique

# ------------------------------------------------------------------ doctor

LOOPBACK_URI_NOTE = (
    "ranks that `pyctr run` starts reach it through pyctr's relay in their own network "
    "namespace; ranks started any other way cannot reach 127.0.0.1 of the launcher's, and "
    "need mpirun started with PMIX_MCA_ptl_tcp_if_include=%s (and a host address there: "
    "the bridge's, or the macvlan shim's)")


class Report:
    """Findings in words; problems make the exit status 1."""

    def __init__(self, out=None):
        import sys
        self.out = out or sys.stdout
        self.problems = 0

    def ok(self, text):
        self.out.write("ok       %s\n" % text)

    def info(self, text):
        self.out.write("info     %s\n" % text)

    def problem(self, text, fix=None):
        self.problems += 1
        self.out.write("PROBLEM  %s\n" % text)
        if fix:
            self.out.write("         fix: %s\n" % fix)


class Probe:
    """What the doctor knows about one running container: its state, the
    environment its processes get, its /proc entry and network namespace."""

    def __init__(self, name, state, env=None):
        self.name = name
        self.state = state
        self.pid = state.pid
        self.networks = state.networks
        self.env = env or {}

    @classmethod
    def load(cls, paths, name):
        """The environment is the configured one plus what pyctr added for a
        launcher's rank: what `pyctr exec` (an MPI agent) and the workload
        get. /proc/PID/environ would be pyctr's own for an --init container."""
        from pyctr import jsonio
        from pyctr.state import StateStore
        store = StateStore(paths)
        state = store.load(name)
        config = jsonio.loads(store.read_file(name, "config.json"))
        env = dict(e.split("=", 1) for e in config["process"].get("env", []) if "=" in e)
        env.update(state.mpi_env)
        return cls(name, state, env)

    def alive(self):
        return self.state.process_alive()

    def ns(self, kind):
        try:
            return os.stat("/proc/%d/ns/%s" % (self.pid, kind)).st_ino
        except OSError:
            return None

    def environ(self):
        return self.env

    def ifaces(self):
        """[{ifname, ip, prefix, mtu, up}] of the container's netns (IPv4, not lo)."""
        return netns_ifaces("/proc/%d/ns/net" % self.pid)


def netns_ifaces(netns_path):
    """[{ifname, ip, prefix, mtu, up}] of the IPv4 addresses in a network
    namespace (not lo), read by pyctr's rtnetlink client opened inside it;
    nothing is written there."""
    from pyctr.network import netns
    from pyctr.network.rtnl import Netlink
    fd = _open_netns(netns_path)
    try:
        with netns.call_in(fd, Netlink) as nl:
            links = {link.index: link for link in nl.links()}
            addrs = nl.addrs()
    except OSError as e:
        raise from_oserror("mpi-doctor: cannot list interfaces in %s" % netns_path, e) from e
    finally:
        os.close(fd)
    return [{"ifname": links[index].name, "ip": ip, "prefix": prefix,
             "mtu": links[index].mtu, "up": links[index].up}
            for index, ip, prefix in addrs if index in links and links[index].name != "lo"]


def _in_subnet(ip, subnet):
    import ipaddress
    return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet, strict=False)


def tcp_reachable(from_netns, ip, to_netns, timeout=2.0):
    """Can a process in `from_netns` open a TCP connection to `ip` served from
    `to_netns`? A listener on an ephemeral port made in to_netns, one bounded
    connect from a socket made in from_netns (the kernel completes the
    handshake without accept). Returns None when it worked, else the error."""
    import socket
    from pyctr.network.netns import call_in
    to_fd, from_fd = _open_netns(to_netns), _open_netns(from_netns)
    try:
        try:
            listener = call_in(to_fd, lambda: socket.create_server((ip, 0)))
        except OSError as e:
            return "cannot listen on %s: %s" % (ip, e.strerror or e)
        with listener, call_in(from_fd, socket.socket) as client:
            port = listener.getsockname()[1]
            client.settimeout(timeout)
            try:
                client.connect((ip, port))
            except socket.timeout:
                return "no answer in %.0f s" % timeout
            except OSError as e:
                return "%s:%d: %s" % (ip, port, e.strerror or e)
        return None
    finally:
        os.close(to_fd)
        os.close(from_fd)


def _open_netns(path):
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise from_oserror("mpi-doctor: cannot open %s" % path, e) from e


def command(paths, argv):
    from pyctr.cli import arg_parser
    p = arg_parser("mpi-doctor", "Check running containers (and the launcher's "
                   "environment) for what breaks MPI across network namespaces; "
                   "exit 1 if anything is wrong.")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="containers that will hold ranks (all running ones if none)")
    p.add_argument("--launcher", choices=LAUNCHERS, default="openmpi",
                   help="which MPI's settings to check: openmpi (default, Debian's "
                   "mpirun), mpich (UCX) or any (both)")
    p.add_argument("--hybrid", action="store_true",
                   help="mpirun will run on this host, outside the containers (mpirun -np N "
                   "pyctr run ...): also check what that launch needs")
    p.add_argument("--no-connect", action="store_true",
                   help="skip the TCP connection tests between containers")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        raise PyctrError("mpi-doctor needs root (it looks into the containers' namespaces)")
    from pyctr.state import StateStore
    names = args.names or StateStore(paths).names()
    probes = []
    for name in names:
        probe = Probe.load(paths, name)
        if not probe.alive():
            raise PyctrError("container %s is not running" % name)
        probes.append(probe)
    report = Report()
    doctor(probes, report, launcher=args.launcher, hybrid=args.hybrid,
           connect=not args.no_connect)
    print("%d problem%s found" % (report.problems, "" if report.problems == 1 else "s"))
    return 1 if report.problems else 0


def doctor(probes, report, launcher="openmpi", hybrid=False, connect=True, environ=None):
    """Check containers (Probe objects) and the launcher's environment."""
    environ = os.environ if environ is None else environ
    if not probes:
        report.info("no running containers to check")
    facts = {}
    for pr in probes:
        ifs = pr.ifaces()
        facts[pr.name] = ifs
        _check_container(pr, ifs, report, launcher)
    _check_pairs(probes, facts, report, connect)
    _check_launcher(probes, facts, report, launcher, hybrid, environ)


def _check_container(pr, ifs, report, launcher):
    up = [i for i in ifs if i["up"]]
    if not up:
        report.problem("%s has no IPv4 interface that is up: ranks on other nodes cannot "
                       "reach it" % pr.name, "run it with --net=veth:BRIDGE or "
                       "--net=macvlan:NIC")
        return
    report.ok("%s: %s" % (pr.name, ", ".join("%s %s/%d" % (i["ifname"], i["ip"], i["prefix"])
                                             for i in up)))
    for rec in pr.networks:
        if rec.get("kind") == "macvlan" and rec.get("mode") in ("private", "vepa"):
            report.info("%s: macvlan in %s mode: containers on the same lower device %s" % (
                pr.name, rec["mode"], "cannot reach each other" if rec["mode"] == "private"
                else "reach each other only through a switch with hairpin on"))
    env = pr.environ()
    want = mpi_env([Iface(i["ifname"], i["ip"], i["prefix"]) for i in up], launcher)
    for k, v in want.items():
        have = env.get(k)
        if have is None:
            if k in ("OMPI_MCA_btl_tcp_if_include", "OMPI_MCA_oob_tcp_if_include",
                     "UCX_NET_DEVICES") and len(up) > 1:
                report.problem("%s: %s is not set and there are %d interfaces; MPI may pick "
                               "one its peers cannot reach" % (pr.name, k, len(up)),
                               "%s=%s" % (k, v))
            elif k == "UCX_TLS":
                report.problem("%s: UCX_TLS is not set: UCX will try shared memory with "
                               "ranks in other containers of this machine" % pr.name,
                               "%s=%s (or share IPC/PID namespaces per node)" % (k, v))
            elif k == "OMPI_MCA_mpi_yield_when_idle" and (os.cpu_count() or 1) <= 4:
                report.problem("%s: mpi_yield_when_idle is off and this machine has %d "
                               "CPUs: busy-polling ranks starve their co-located peers"
                               % (pr.name, os.cpu_count()), "%s=1" % k)
            continue
        if k.endswith("_if_include") and not _covers(have, up):
            report.problem("%s: %s=%s names none of its addresses (%s)" % (
                pr.name, k, have, ", ".join(i["ip"] for i in up)), "%s=%s" % (k, v))
        elif k in ("UCX_NET_DEVICES", "FI_TCP_IFACE") and \
                not set(have.split(",")) & {i["ifname"] for i in up} and have != "all":
            report.problem("%s: %s=%s is not one of its interfaces" % (pr.name, k, have),
                           "%s=%s" % (k, v))
    cma = env.get("OMPI_MCA_btl_vader_single_copy_mechanism")
    if cma == "cma":
        report.problem("%s: btl_vader_single_copy_mechanism=cma: Open MPI aborts when peers "
                       "are in other user namespaces" % pr.name,
                       "OMPI_MCA_btl_vader_single_copy_mechanism=none")


def _covers(value, ifs):
    """Does an if_include value (names and/or CIDRs, comma-separated) match one
    of these interfaces?"""
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        if "/" in item:
            try:
                if any(_in_subnet(i["ip"], item) for i in ifs):
                    return True
            except ValueError:
                continue
        elif any(i["ifname"] == item for i in ifs):
            return True
    return False


def _check_pairs(probes, facts, report, connect):
    seen_ips = {}
    for pr in probes:
        for i in facts[pr.name]:
            seen_ips.setdefault(i["ip"], []).append(pr.name)
    for ip, owners in seen_ips.items():
        if len(owners) > 1:
            report.problem("address %s is on %s: a rank connecting to it may reach itself "
                           "(Open MPI hangs in MPI_Init)" % (ip, " and ".join(owners)),
                           "OMPI_MCA_btl_tcp_if_include/oob_tcp_if_include naming only the "
                           "cluster subnet")
    mtus = {pr.name: {i["mtu"] for i in facts[pr.name] if i["up"]} for pr in probes}
    flat = {m for s in mtus.values() for m in s if m}
    if len(flat) > 1:
        report.problem("interface MTUs differ (%s): large messages may stall" % ", ".join(
            "%s %s" % (n, "/".join(map(str, sorted(s)))) for n, s in mtus.items()),
            "give every container the same --net ...,mtu=")
    for a_i, a in enumerate(probes):
        for b in probes[a_i + 1:]:
            if a.ns("net") == b.ns("net"):
                report.info("%s and %s share a network namespace" % (a.name, b.name))
            if a.ns("user") != b.ns("user"):
                report.info("%s and %s are in different user namespaces: CMA single-copy "
                            "is impossible between them (Open MPI warns and falls back; "
                            "btl_vader_single_copy_mechanism=none says so up front)"
                            % (a.name, b.name))
            if a.ns("ipc") != b.ns("ipc") or a.ns("mnt") != b.ns("mnt"):
                report.info("%s and %s share no IPC/mount namespace: ranks of both talk TCP "
                            "to each other, never shared memory" % (a.name, b.name))
            if connect:
                _check_connect(a, b, facts, report)


def _check_connect(a, b, facts, report):
    for src, dst in ((a, b), (b, a)):
        targets = [i for i in facts[dst.name] if i["up"]]
        if not targets or not any(i["up"] for i in facts[src.name]):
            continue
        t = targets[0]
        err = tcp_reachable("/proc/%d/ns/net" % src.pid, t["ip"], "/proc/%d/ns/net" % dst.pid)
        if err:
            report.problem("%s cannot open a TCP connection to %s at %s: %s"
                           % (src.name, dst.name, t["ip"], err),
                           "put both on one network (same bridge, or macvlan on NICs of "
                           "one segment) and check routes")
        else:
            report.ok("%s -> %s %s: TCP connects" % (src.name, dst.name, t["ip"]))


def _check_launcher(probes, facts, report, launcher, hybrid, environ):
    subnets = unique(
        "%s" % Iface(i["ifname"], i["ip"], i["prefix"]).subnet
        for pr in probes for i in facts[pr.name] if i["up"])
    for var, host in pmix_uris(environ):
        if host.startswith("127.") and probes:
            report.info("%s points at %s: %s" % (var, host, LOOPBACK_URI_NOTE % (
                ",".join(subnets) or "SUBNET")))
            break
    if not hybrid:
        return
    if launcher in ("any", "openmpi") and len(probes) > 1 and \
            len({pr.ns("mnt") for pr in probes}) > 1:
        for pr in probes:
            btl = pr.environ().get("OMPI_MCA_btl")
            if btl is None or "vader" in btl or btl.split(",")[0].startswith("^"):
                report.problem("%s: Open MPI will try shared memory (vader) with the other "
                               "ranks mpirun starts on this host, but their /dev/shm differ "
                               "(seen: a segfault in mca_btl_vader_sendi)" % pr.name,
                               "OMPI_MCA_btl=self,tcp")
    report.ok("launcher side: ranks that `pyctr run` starts reach mpirun's PMIx server "
              "through pyctr's relay (Open MPI) or the inherited PMI_FD (MPICH): no host "
              "address or launcher setting is needed")
