"""MPI ranks in containers: the environment that makes Open MPI, PMIx, MPICH
(UCX) and libfabric use a container's own interface, and `pyctr mpi-doctor`,
which checks a setup for the ways this goes wrong and says so in words.

Facts behind every setting, each reproduced here with two network namespaces
on one machine (Debian 12: Open MPI 4.1.4 + PMIx 4.2.2, MPICH 4.0.2 built as
ch4:ucx with UCX 1.13, libfabric 1.17):

- Open MPI's TCP BTL and OOB offer every interface that is up. An interface
  both nodes have with the same address (docker0's 172.17.0.1, a libvirt
  bridge) makes a rank connect to itself: MPI_Init hangs. `btl_tcp_if_include`
  and `oob_tcp_if_include` (CIDR or interface name) fix it.
- The PMIx server inside mpirun/orted advertises tcp4://127.0.0.1:PORT in
  PMIX_SERVER_URI*; a rank started in a private netns cannot reach that
  (`OPAL ERROR: Unreachable` in MPI_Init). `pyctr run` relays that address
  into the rank's netns (pyctr.pmix_relay), so a hybrid launch needs no
  launcher setting. Ranks started otherwise need PMIX_MCA_ptl_tcp_if_include
  (subnet or name) in the *launcher's* environment, which makes it listen on
  and advertise an address in the container's subnet; the host then needs an
  address there (on the bridge, or the macvlan shim).
  PMIX_MCA_ptl_tcp_remote_connections=1 alone does not help, and the OMPI_MCA_
  spelling is ignored by PMIx.
- PMIx clients attach to the server's shared-memory datastore (gds ds12)
  under the server's /tmp: from a container that fails with "PMIX ERROR ...
  gds_ds12_lock_pthread.c"; PMIX_MCA_gds=hash on the rank's side avoids it.
- vader (shared memory) needs the peers' /dev/shm. Open MPI tries it for any
  two ranks it places on one host (hybrid launch: `mpirun -np 2 pyctr run`):
  with a private /dev/shm that gave a warning and TCP (unshare), or a
  segfault in mca_btl_vader_sendi (pyctr containers); btl=self,tcp works. Between user namespaces CMA single-copy is refused (a warning,
  an abort if forced); `btl_vader_single_copy_mechanism=none` is what works.
- Each orted binds its ranks as if it had the machine to itself: two virtual
  nodes on one machine both pinned their rank to core 0 (GROMACS, 5000 steps:
  16.6 s pinned, 11.9 s with binding policy none).
- With 2 cores shared by ranks, orted and mpirun, a busy-polling rank holds the
  CPU its peer needs: 8-byte ping-pong over the wire took 4 ms one way, 20 us
  with `mpi_yield_when_idle=1`.
- MPICH 4.0.2 in Debian is ch4:ucx: the ch3/nemesis variables
  (MPIR_CVAR_CH3_INTERFACE_HOSTNAME, MPIR_CVAR_NEMESIS_TCP_NETWORK_IFACE) do not
  apply. UCX picks devices by UCX_NET_DEVICES; and UCX uses shared memory
  between any two ranks of one kernel it can reach, whatever their netns, so
  nothing crosses the wire unless UCX_TLS leaves shared memory out.
  Hydra's proxies connect back to the address of HYDRA_IFACE (launcher side);
  hydra hands ranks their PMI connection as an inherited fd (PMI_FD), which
  therefore must survive into the container.
- libfabric's tcp provider (Open MPI's ofi MTL, MPICH ch4:ofi) also picks the
  wrong interface; FI_TCP_IFACE names the right one.
"""
import os

from pyctr.errors import PyctrError

# Why each variable is set: `describe()` prints these.
REASONS = {
    "OMPI_MCA_btl_tcp_if_include":
        "Open MPI's TCP BTL uses only %s, so ranks never try an interface the peer "
        "cannot reach (or a look-alike such as docker0 on both nodes)",
    "OMPI_MCA_oob_tcp_if_include":
        "Open MPI's out-of-band channel (orted <-> mpirun) uses only %s",
    "PMIX_MCA_ptl_tcp_if_include":
        "the PMIx server listens on and advertises %s instead of 127.0.0.1, which a "
        "rank in another network namespace cannot reach (matters where mpirun/orted runs)",
    "OMPI_MCA_btl":
        "transports %s: %s",
    "PMIX_MCA_gds":
        "PMIx keeps job data in its own memory (%s), not in the server's shared-memory "
        "store under a /tmp the container does not see",
    "OMPI_MCA_btl_vader_single_copy_mechanism":
        "shared memory without CMA single-copy (%s): CMA is refused between user namespaces",
    "OMPI_MCA_mpi_yield_when_idle":
        "waiting ranks yield the CPU (%s): co-located nodes share cores, and busy polling "
        "turns a 20 us round trip into milliseconds",
    "OMPI_MCA_hwloc_base_binding_policy":
        "ranks are not pinned (%s): each virtual node's orted would pin its first rank to "
        "core 0 of the same machine",
    "UCX_NET_DEVICES":
        "UCX (MPICH ch4:ucx, Open MPI pml ucx) uses network device %s",
    "UCX_TLS":
        "UCX transports %s: without shared memory, since UCX would otherwise use it "
        "between ranks of one kernel that cannot share memory across containers",
    "MPIR_CVAR_NOLOCAL":
        "MPICH treats every other rank as remote (%s): hydra counts the ranks of one host "
        "as local, and MPI_Init then fails allocating shared memory across containers",
    "FI_TCP_IFACE":
        "libfabric's tcp provider (Open MPI ofi MTL, MPICH ch4:ofi) uses %s",
    "HYDRA_IFACE":
        "MPICH's hydra advertises the address of %s to its proxies",
}


class Iface:
    """The facts about one interface that MPI settings derive from."""
    __slots__ = ("ifname", "ip", "prefix")

    def __init__(self, ifname, ip, prefix):
        self.ifname, self.ip, self.prefix = ifname, ip, int(prefix)

    @property
    def subnet(self):
        import ipaddress
        return str(ipaddress.ip_network("%s/%d" % (self.ip, self.prefix), strict=False))

    def __repr__(self):
        return "Iface(%s %s/%d)" % (self.ifname, self.ip, self.prefix)


def iface(attachment):
    """An Iface from an attachment record (pyctr state: {"ifname": "eth0",
    "ip": "10.77.0.101/24", ...}), an object with those attributes, or an Iface."""
    if isinstance(attachment, Iface):
        return attachment
    get = attachment.get if isinstance(attachment, dict) else \
        (lambda k, d=None: getattr(attachment, k, d))
    ifname, ip = get("ifname"), get("ip")
    if not ifname or not ip:
        raise PyctrError("mpi: an attachment needs an interface name and an address (got %r)"
                         % (attachment,))
    addr, slash, prefix = str(ip).partition("/")
    if not slash:
        subnet = get("subnet")
        if not subnet or "/" not in str(subnet):
            raise PyctrError("mpi: address %s of %s has no prefix length" % (ip, ifname))
        prefix = str(subnet).partition("/")[2]
    try:
        return Iface(ifname, addr, int(prefix))
    except ValueError:
        raise PyctrError("mpi: malformed address %r of %s" % (ip, ifname))


LAUNCHERS = ("any", "openmpi", "mpich")


def mpi_env(attachments, launcher="any", shared_memory=False, colocated=True):
    """Environment for a rank in a container with these interfaces.

    launcher: "openmpi", "mpich" or "any" (both sets; neither library reads
    the other's variables). shared_memory: True when this container's ranks
    and its same-node peers share IPC, /dev/shm and PID namespaces (a per-node
    group), so the shared-memory fast path may stay on; False (default) for
    isolated containers, whose on-node peers must talk TCP. colocated: the
    cluster's nodes share one machine's cores (a virtual cluster), so no
    rank may be pinned.
    Returns {NAME: VALUE}; the caller lets the user's own settings win.
    """
    if launcher not in LAUNCHERS:
        raise PyctrError("mpi: unknown launcher %r (choose from %s)"
                         % (launcher, ", ".join(LAUNCHERS)))
    ifaces = [iface(a) for a in attachments]
    if not ifaces:
        raise PyctrError("mpi: the container has no network interface for MPI traffic "
                         "(--net=none?); ranks on other nodes could not reach it")
    subnets = ",".join(_unique(i.subnet for i in ifaces))
    names = ",".join(_unique(i.ifname for i in ifaces))
    env = {}
    if launcher in ("any", "openmpi"):
        env["OMPI_MCA_btl_tcp_if_include"] = subnets
        env["OMPI_MCA_oob_tcp_if_include"] = subnets
        env["PMIX_MCA_ptl_tcp_if_include"] = subnets
        env["OMPI_MCA_btl"] = "self,vader,tcp" if shared_memory else "self,tcp"
        env["PMIX_MCA_gds"] = "hash"
        if shared_memory:
            env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
        env["OMPI_MCA_mpi_yield_when_idle"] = "1"
        if colocated:
            env["OMPI_MCA_hwloc_base_binding_policy"] = "none"
    if launcher in ("any", "mpich"):
        env["UCX_NET_DEVICES"] = names
        if not shared_memory:
            env["UCX_TLS"] = "tcp,self"
            env["MPIR_CVAR_NOLOCAL"] = "1"
    # libfabric takes a single interface.
    env["FI_TCP_IFACE"] = ifaces[0].ifname
    return env


def launcher_env(host_ifaces, launcher="any"):
    """Environment for an mpirun/mpiexec that ranks reach over the network
    (a virtual cluster's launcher, or ranks that `pyctr run` did not start),
    given the launcher's own interfaces in the containers' subnets."""
    ifaces = [iface(a) for a in host_ifaces]
    if not ifaces:
        raise PyctrError("mpi: the host has no address in the containers' subnet; ranks "
                         "in containers cannot reach mpirun's PMIx server (give the bridge "
                         "an address, or use a macvlan network with a host shim)")
    subnets = ",".join(_unique(i.subnet for i in ifaces))
    env = {}
    if launcher in ("any", "openmpi"):
        env["PMIX_MCA_ptl_tcp_if_include"] = subnets
        env["OMPI_MCA_oob_tcp_if_include"] = subnets
        env["OMPI_MCA_btl_tcp_if_include"] = subnets
        env["OMPI_MCA_mpi_yield_when_idle"] = "1"
    if launcher in ("any", "mpich"):
        env["HYDRA_IFACE"] = ifaces[0].ifname
    return env


def merge(env, mpi):
    """Add `mpi` settings to `env` without overriding what the user set."""
    out = dict(env)
    for k, v in mpi.items():
        out.setdefault(k, v)
    return out


def describe(env):
    """One line per MPI setting in `env`, saying what it does and why."""
    lines = []
    for k, v in env.items():
        why = REASONS.get(k)
        if why is None:
            continue
        if k == "OMPI_MCA_btl":
            what = ("shared memory for same-node peers of this group, TCP across"
                    if "vader" in v else
                    "TCP only: isolated containers cannot share memory, even on one node")
            lines.append("%s=%s: %s" % (k, v, why % (v, what)))
        else:
            lines.append("%s=%s: %s" % (k, v, why % v))
    return lines


def _unique(items):
    seen = []
    for i in items:
        if i not in seen:
            seen.append(i)
    return seen


# ------------------------------------------------------------------ doctor

LOOPBACK_URI_NOTE = (
    "ranks that `pyctr run` starts reach it through pyctr's relay in their own network "
    "namespace; ranks started any other way cannot reach 127.0.0.1 of the launcher's, and "
    "need mpirun started with PMIX_MCA_ptl_tcp_if_include=%s (and a host address there: "
    "the bridge's, or the macvlan shim's)")


def pmix_servers(environ):
    """[(variable, host, port)] for each PMIX_SERVER_URI* in `environ`
    ("NSPACE.RANK;tcp4://HOST:PORT"), in variable order."""
    import re
    out = []
    for k, v in sorted(environ.items()):
        if k.startswith("PMIX_SERVER_URI"):
            m = re.search(r"tcp4?://\[?([^\]/:]+)\]?:(\d+)", v)
            if m:
                out.append((k, m.group(1), int(m.group(2))))
    return out


def pmix_uris(environ):
    """[(variable, host)] for each PMIX_SERVER_URI* in `environ`."""
    return [(k, host) for k, host, _ in pmix_servers(environ)]


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
    """What the doctor knows about one running container: from pyctr's state,
    its /proc entry and its network namespace."""

    def __init__(self, name, state):
        self.name = name
        self.state = state
        self.pid = state.pid
        self.networks = state.networks

    def alive(self):
        return self.state.process_alive()

    def ns(self, kind):
        try:
            return os.stat("/proc/%d/ns/%s" % (self.pid, kind)).st_ino
        except OSError:
            return None

    def environ(self):
        try:
            with open("/proc/%d/environ" % self.pid, "rb") as f:
                raw = f.read()
        except OSError:
            return {}
        env = {}
        for item in raw.split(b"\0"):
            k, eq, v = item.decode(errors="replace").partition("=")
            if eq:
                env[k] = v
        return env

    def ifaces(self):
        """[{ifname, ip, prefix, mtu, up}] of the container's netns (IPv4, not lo)."""
        return netns_ifaces("/proc/%d/ns/net" % self.pid)


def netns_ifaces(netns_path):
    import json
    import subprocess
    try:
        r = subprocess.run(["nsenter", "--net=" + netns_path, "ip", "-j", "addr", "show"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PyctrError("mpi-doctor: cannot list interfaces in %s: %s" % (netns_path, e))
    if r.returncode:
        raise PyctrError("mpi-doctor: cannot list interfaces in %s: %s"
                         % (netns_path, r.stderr.strip()))
    out = []
    for link in json.loads(r.stdout or "[]"):
        if link.get("ifname") == "lo":
            continue
        for a in link.get("addr_info", []):
            if a.get("family") == "inet":
                out.append({"ifname": link["ifname"], "ip": a["local"],
                            "prefix": a["prefixlen"], "mtu": link.get("mtu"),
                            "up": "UP" in link.get("flags", [])})
    return out


def _in_subnet(ip, subnet):
    import ipaddress
    return ipaddress.ip_address(ip) in ipaddress.ip_network(subnet, strict=False)


def tcp_reachable(from_netns, ip, to_netns, timeout=2.0):
    """Can a process in `from_netns` open a TCP connection to `ip` served from
    `to_netns`? A listener on an ephemeral port in to_netns, one bounded connect
    from from_netns. Returns None when it worked, else the error text."""
    import subprocess
    import sys
    listener = subprocess.Popen(
        ["nsenter", "--net=" + to_netns, sys.executable, "-c", _LISTEN, ip, str(timeout + 2)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = listener.stdout.readline().strip()
        if not port.isdigit():
            return "cannot listen on %s: %s" % (ip, (listener.stderr.read() or "").strip()[-200:])
        r = subprocess.run(["nsenter", "--net=" + from_netns, sys.executable, "-c", _CONNECT,
                            ip, port, str(timeout)],
                           capture_output=True, text=True, timeout=timeout + 5)
        return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["failed"])[-1]
    except subprocess.TimeoutExpired:
        return "no answer in %.0f s" % timeout
    finally:
        listener.kill()
        listener.wait()


_LISTEN = """
import socket, sys
s = socket.socket(); s.bind((sys.argv[1], 0)); s.listen(1); s.settimeout(float(sys.argv[2]))
print(s.getsockname()[1], flush=True)
try:
    s.accept()
except OSError:
    pass
"""
_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
except OSError as e:
    sys.exit("%s:%s: %s" % (sys.argv[1], sys.argv[2], e.strerror or e))
"""


def doctor_command(paths, argv):
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
    store = StateStore(paths)
    names = args.names or store.names()
    probes = []
    for name in names:
        probe = Probe(name, store.load(name))
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
    subnets = _unique(
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
