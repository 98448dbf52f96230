"""The MPI environment policy: what makes Open MPI, PMIx, MPICH (UCX) and
libfabric use a container's own interface (mpi_env, for a rank), and what a
launcher that ranks reach over the network needs (launcher_env); `describe`
says why each variable is set, `merge` lets the user's own settings win.

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
  into the rank's netns (pyctr.mpi.relay), so a hybrid launch needs no
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
- MPICH 4.0.2's MPI_Finalize (ch4:ucx) starts ucp_disconnect_nb on every
  endpoint, progresses UCX until they complete, then blocks in a PMI barrier
  (a read on PMI_FD) without progressing UCX. Over TCP a disconnect sends
  the peer a 25-byte request (UCT tcp AM 33) and completes only when the
  peer answers it. When one rank's answer arrives and it leaves its loop
  before the other rank's request was read, that request sits in its
  socket forever: the other rank spins in ucp_worker_progress, the first
  waits in the barrier for it, mpiexec never returns, although both have
  printed their results. Seen in about one run in ten to thirty of a
  2-rank job on a loaded machine, just as often with plain network
  namespaces and `ip netns exec` as with containers. No setting avoids it:
  UCX 1.13's TCP transport marks an endpoint for a flush after any message
  it sent, and the flush is that request (UCX_TCP_PUT_ENABLE=n,
  UCX_RNDV_THRESH=inf, UCX_PROTO_ENABLE=y change nothing); MPICH has no
  variable for its finalize. MPICH 4.2 dropped that barrier
  (pmodels/mpich#6596); Debian 12 has 4.0.2. pyctr's fix is
  pyctr-ucx-finalize.so (csrc/ucx_finalize.c, why it is safe is there):
  preloaded into a rank, it progresses UCX from a thread from MPICH's first
  disconnect until the worker is destroyed. The mpi image preloads it for
  every process. Measured with two network namespaces and a CPU hog beside
  them: 11 and 4 hangs in two sets of 200 jobs without it (the second set
  alternating with runs with it), 0 in 400 with it;
  a job whose second rank starts its disconnects late hangs every time
  without it and never with it (tests/test_mpi_netns.py).
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
    except ValueError as e:
        raise PyctrError("mpi: malformed address %r of %s" % (ip, ifname)) from e


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
    subnets = ",".join(unique(i.subnet for i in ifaces))
    names = ",".join(unique(i.ifname for i in ifaces))
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
    subnets = ",".join(unique(i.subnet for i in ifaces))
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


def unique(items):
    seen = []
    for i in items:
        if i not in seen:
            seen.append(i)
    return seen


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
