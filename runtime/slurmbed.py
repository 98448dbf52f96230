"""A simulated Slurm cluster on pyctr.testbed's nodes, for tests, examples
and benchmarks: Debian 12's slurmctld, slurmd, srun and munged, with every
file (config, key, sockets, state, spool, logs) under one directory.

    with Testbed(nodes=2) as tb, SlurmCluster(tb) as cluster:
        r = cluster.srun(["-N2", "-n2", "hostname"])        # "n1\\nn2\\n" in some order
        cluster.node_run(tb.nodes[0], ["ls", cluster.tmpfs])  # n1's own TmpFS

Each testbed node becomes a Slurm node. Its namespaces are held by one
`holder` process: the node's netns (entered with nsenter, not `ip netns
exec`, which remounts /sys and so hides the cgroup mounts slurmd looks at),
plus its own UTS (hostname = node name), mount namespace (its /etc/hosts,
its TmpFS, its pyctr state and config, its /dev/shm) and IPC namespace, as a
separate machine would have. slurmd, and slurmctld on the first node, are
started inside them with `nsenter --target HOLDER`; so is srun, which runs
on the first node as on a login node. Paths that differ per node are the
same path on every node, bind-mounted from a per-node directory, so one
srun command line fits all nodes:

  tmpfs       Slurm's TmpFS (PMIx puts its per-step directories there)
  pyctr_root  pyctr's --root (state, leases), the node's own
  pyctr_config  pyctr's --config (network definitions), the node's own
  local       anything else a node keeps for itself (an OCI runtime's --root)

Several slurmd on one machine need proctrack/linuxproc and task/none (no
cgroup plugins of their own), and CPUs=1 each on a 2-core machine. Each
node's daemons, and so its tasks and their containers, are in a cgroup of
the node's own (in every hierarchy), as on separate machines: pyctr makes a
container's groups below its own, so nodes never see or gc each other's. down() stops
everything it started (srun steps are cancelled, slurmstepd leftovers
killed, then slurmd, slurmctld and munged), also after failures, and may be
called twice. The machine's own interfaces are never touched.
"""
import os
import shlex
import shutil
import signal
import subprocess
import time

from pyctr.testbed import UpDown

DAEMONS = ("slurmctld", "slurmd", "srun", "munged")
# What runs in a node between jobs (sleep: the holder of its namespaces).
NODE_DAEMONS = ("sleep", "slurmd", "slurmctld", "slurmscriptd")
SLURMCTLD_PORT, SLURMD_PORT = 6817, 6818
START_TIMEOUT = 60       # seconds for the daemons to come up (a loaded 2-core machine)


class SlurmError(RuntimeError):
    pass


class SrunHang(SlurmError):
    pass


def missing_tools():
    """The programs a SlurmCluster needs that are not installed."""
    return [t for t in DAEMONS + ("nsenter", "unshare", "scontrol", "scancel", "sinfo")
            if not shutil.which(t)]


class SlurmCluster(UpDown):
    __test__ = False

    def __init__(self, testbed, cluster_name="pyctrtb"):
        self.testbed = testbed
        self.cluster_name = cluster_name
        self.base = os.path.join(os.path.dirname(testbed.nodes[0].base), "slurm")
        self.conf = os.path.join(self.base, "slurm.conf")
        self.munge_socket = os.path.join(self.base, "munge", "munge.socket")
        self.tmpfs = os.path.join(self.base, "tmpfs")
        self.pyctr_root = os.path.join(self.base, "pyctr", "root")
        self.pyctr_config = os.path.join(self.base, "pyctr", "config")
        self.local = os.path.join(self.base, "local")   # any other per-node state
        self.holders = {}      # node name -> Popen holding its namespaces
        self.cgroups = {}      # node name -> [its daemons' cgroup dir in each hierarchy]
        self._daemons = []     # (what, Popen), started in this order
        self.controller = testbed.nodes[0]

    # -- life ---------------------------------------------------------------
    def up(self):
        missing = missing_tools()
        if missing:
            raise SlurmError("slurmbed needs %s (install.sh --test: slurmctld slurmd "
                             "slurm-client munge)" % ", ".join(missing))
        for d in ("munge", "ctld", "log", "spool", "tmpfs", "etc",
                  "pyctr/root", "pyctr/config", "local"):
            os.makedirs(os.path.join(self.base, d), exist_ok=True)
        os.chmod(self.base, 0o755)
        self._munged()
        self._write_conf()
        for node in self.testbed.nodes:
            self._hold(node)
        self._start("slurmctld", self.controller,
                    ["slurmctld", "-D", "-f", self.conf,
                     "-L", os.path.join(self.base, "log", "slurmctld.log")])
        self._wait_for(lambda: "UP" in self.scontrol("ping").stdout, "slurmctld to answer")
        for node in self.testbed.nodes:
            self._start("slurmd " + node.name, node,
                        ["slurmd", "-D", "-N", node.name, "-f", self.conf,
                         "-L", os.path.join(self.base, "log", "slurmd.%s.log" % node.name)])
        self._wait_for(self._all_idle, "every slurmd to register (sinfo: idle)")

    def down(self):
        """Cancel jobs, then stop slurmd, slurmctld, munged and the holders;
        kill whatever is left in the nodes' namespaces (slurmstepd, tasks)."""
        if any(p.poll() is None for what, p in self._daemons if what == "slurmctld"):
            self.run_on(self.controller, ["scancel", "--full", "-u", "root"], timeout=30,
                        check=False)
            self._wait_for(lambda: not self._stepds(), "steps to end", timeout=15,
                           fail=False)
        for what, proc in reversed(self._daemons):
            _stop(proc)
        self._daemons = []
        for pid in self._stepds():
            _kill(pid)
        self._sweep()
        for node, holder in list(self.holders.items()):
            _stop(holder)
        self.holders = {}
        for dirs in self.cgroups.values():
            for d in dirs:
                _remove_tree(os.path.dirname(d))
        self.cgroups = {}
        if os.path.isdir(self.base):
            shutil.rmtree(self.base, ignore_errors=True)

    # -- running things on nodes -----------------------------------------------
    def node_argv(self, node, argv):
        """argv run inside `node`: its netns, hostname, mounts and IPC."""
        holder = self.holders[node.name]
        return ["nsenter", "--target", str(holder.pid), "--net", "--uts", "--mount",
                "--ipc", "--"] + [str(a) for a in argv]

    def env(self, extra=None):
        env = dict(os.environ)
        # srun passes its environment on to the tasks: nothing of a launcher
        # around the test (an outer mpirun, a pytest under srun) may leak in.
        for key in list(env):
            if key.startswith(("SLURM_", "OMPI_", "PMIX_", "PMI_", "HYDRA_", "UCX_", "FI_")):
                del env[key]
        env["SLURM_CONF"] = self.conf
        env.update(extra or {})
        return env

    def run_on(self, node, argv, timeout=120, check=False, env=None, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        kw.setdefault("cwd", self.base)
        r = subprocess.run(self.node_argv(node, argv), timeout=timeout, env=self.env(env), **kw)
        if check and r.returncode:
            raise SlurmError("%s on %s -> %d: %s" % (" ".join(argv), node.name, r.returncode,
                                                      r.stderr.strip()[-500:]))
        return r

    def srun(self, args, timeout=180, env=None):
        """srun ARGS on the first node (the login node): CompletedProcess
        (text). A step still running after `timeout` seconds is a hang:
        SrunHang says what each of its processes was doing at that moment,
        and the step is cancelled."""
        proc = self.srun_popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            report = self.job_report()
            proc.kill()
            out, err = proc.communicate()
            self.run_on(self.controller, ["scancel", "--full", "-u", "root"], timeout=30)
            raise SrunHang("srun %s did not end in %d s\nstdout: %s\nstderr: %s\n"
                           "the job's processes then:\n%s" % (
                               " ".join(args), timeout, out, err, report))
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def srun_popen(self, args, env=None, **kw):
        kw.setdefault("cwd", self.base)
        return subprocess.Popen(self.node_argv(self.controller, ["srun"] + list(args)),
                                env=self.env(env), **kw)

    def scontrol(self, *args):
        return self.run_on(self.controller, ["scontrol"] + list(args), timeout=30)

    def node_of(self, job):
        """The testbed node a one-node job runs on."""
        r = self.run_on(self.controller, ["squeue", "-h", "-j", str(job), "-o", "%N"], timeout=30)
        return self.testbed.node(r.stdout.strip())

    def node_netns(self, node):
        """The inode of the node's network namespace."""
        return os.stat("/proc/%d/ns/net" % self.holders[node.name].pid).st_ino

    def set_oci(self, **settings):
        """Write oci.conf beside slurm.conf (slurmstepd reads it for each
        step, so no daemon restarts): set_oci(RunTimeRun="exec runc ...").
        set_oci() with nothing removes it: --container is then refused."""
        path = os.path.join(self.base, "oci.conf")
        if not settings:
            if os.path.exists(path):
                os.unlink(path)
            return
        with open(path, "w") as f:
            for key, value in settings.items():
                f.write('%s="%s"\n' % (key, value) if " " in value else "%s=%s\n" % (key, value))

    def node_pids(self, node):
        """pids of the processes in `node`'s network namespace."""
        r = subprocess.run(["ip", "netns", "pids", node.netns], capture_output=True, text=True)
        return [int(p) for p in r.stdout.split()]

    def job_pids(self):
        """Every process of the nodes that is not one of their daemons (srun,
        slurmstepd, the tasks), with all its descendants (containers too)."""
        parents = {}
        for pid in _pids():
            fields = _read("/proc/%d/stat" % pid).rsplit(")", 1)[-1].split()
            if len(fields) > 1:
                parents[pid] = int(fields[1])
        todo = [pid for node in self.testbed.nodes for pid in self.node_pids(node)
                if _comm(pid) not in NODE_DAEMONS]
        found = []
        while todo:
            pid = todo.pop(0)
            if pid not in found:
                found.append(pid)
                todo += sorted(child for child, parent in parents.items() if parent == pid)
        return found

    def job_report(self):
        """What each process of a job that does not end is doing: its state,
        kernel wait channel and command, and for MPI ranks (ring*, or named
        in `ranks`) the user-space stacks of all threads, from gdb."""
        out = []
        for pid in self.job_pids():
            comm = _comm(pid)
            fields = _read("/proc/%d/stat" % pid).rsplit(")", 1)[-1].split()
            out.append("pid %d (parent %s) %s state %s wchan %s: %s" % (
                pid, fields[1] if len(fields) > 1 else "?", comm, fields[:1],
                _read("/proc/%d/wchan" % pid),
                _read("/proc/%d/cmdline" % pid).replace("\0", " ")[:160]))
            if comm.startswith("ring") and shutil.which("gdb"):
                r = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex",
                                    "thread apply all bt 15"], capture_output=True, text=True,
                                   timeout=60)
                frames = [line for line in r.stdout.splitlines()
                          if line.startswith(("#", "Thread"))]
                out += ["    " + line for line in frames or r.stderr.splitlines()[-3:]]
        return "\n".join(out)

    def log(self, name):
        """The text of a daemon's log: "slurmctld", "slurmd.n1", "munged"."""
        try:
            with open(os.path.join(self.base, "log", name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    # -- pieces -------------------------------------------------------------------
    def _munged(self):
        key = os.path.join(self.base, "munge", "munge.key")
        with open(key, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(os.urandom(1024))
        os.chmod(os.path.join(self.base, "munge"), 0o755)  # munged: socket dir o+x
        argv = ["munged", "--foreground", "--socket", self.munge_socket, "--key-file", key,
                "--pid-file", os.path.join(self.base, "munge", "munged.pid"),
                "--seed-file", os.path.join(self.base, "munge", "munged.seed"),
                "--log-file", os.path.join(self.base, "log", "munged.log")]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        self._daemons.append(("munged", proc))
        self._wait_for(lambda: os.path.exists(self.munge_socket) or proc.poll() is not None,
                       "munged's socket")
        if proc.poll() is not None:
            raise SlurmError("munged exited: %s" % proc.stderr.read().decode(errors="replace"))

    def _write_conf(self):
        nodes = self.testbed.nodes
        b = self.base
        lines = [
            "# written by pyctr.slurmbed: a simulated cluster, all state under %s" % b,
            "ClusterName=%s" % self.cluster_name,
            "SlurmctldHost=%s(%s)" % (self.controller.name, self.controller.ip),
            "SlurmUser=root",
            "SlurmdUser=root",
            "SlurmctldPort=%d" % SLURMCTLD_PORT,
            "SlurmdPort=%d" % SLURMD_PORT,
            "AuthType=auth/munge",
            "CredType=cred/munge",
            "AuthInfo=socket=%s" % self.munge_socket,
            "StateSaveLocation=%s/ctld" % b,
            "SlurmctldPidFile=%s/ctld/slurmctld.pid" % b,
            "SlurmdSpoolDir=%s/spool/%%n" % b,
            "SlurmdPidFile=%s/spool/slurmd.%%n.pid" % b,
            # Several slurmd on one machine: no cgroups of their own.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SwitchType=switch/none",
            "MpiDefault=none",
            "SchedulerType=sched/builtin",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "ReturnToService=2",
            "TmpFS=%s" % self.tmpfs,
            "KillWait=5",
            "InactiveLimit=0",
            "MinJobAge=10",
            "SlurmdTimeout=60",
        ]
        for node in nodes:
            lines.append("NodeName=%s NodeAddr=%s NodeHostname=%s CPUs=1 State=UNKNOWN"
                         % (node.name, node.ip, node.name))
        lines.append("PartitionName=sim Nodes=%s Default=YES MaxTime=INFINITE State=UP"
                     % ",".join(n.name for n in nodes))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(b, "etc", "hosts"), "w") as f:
            f.write("127.0.0.1\tlocalhost\n")
            for node in nodes:
                f.write("%s\t%s\n" % (node.ip, node.name))

    def _hold(self, node):
        """The node's namespaces, held by a process that only waits."""
        own = os.path.join(self.base, "nodes", node.name)
        for d in ("tmpfs", "etc", "local"):
            os.makedirs(os.path.join(own, d), exist_ok=True)
        os.makedirs(node.paths.root, exist_ok=True)
        os.makedirs(node.paths.config, exist_ok=True)
        os.makedirs(os.path.join(self.base, "spool", node.name), exist_ok=True)
        hosts = os.path.join(own, "etc", "hosts")
        shutil.copy(os.path.join(self.base, "etc", "hosts"), hosts)
        q = shlex.quote
        binds = ((hosts, "/etc/hosts"), (os.path.join(own, "tmpfs"), self.tmpfs),
                 (node.paths.root, self.pyctr_root), (node.paths.config, self.pyctr_config),
                 (os.path.join(own, "local"), self.local))
        script = "; ".join(
            ["set -e", "hostname %s" % q(node.name)]
            + ["mount --bind %s %s" % (q(src), q(dst)) for src, dst in binds]
            + ["mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm",
               "echo ready", "exec sleep infinity"])
        argv = ["nsenter", "--net=/run/netns/%s" % node.netns, "--", "unshare", "--uts",
                "--mount", "--ipc", "--propagation", "private", "--", "sh", "-c", script]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.holders[node.name] = proc
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise SlurmError("node %s: cannot set up its namespaces: %s"
                             % (node.name, proc.stderr.read().strip()))

    def _node_cgroups(self, node):
        """The node's own cgroup in every hierarchy, below this process's:
        NODE/daemons holds its daemons (in cgroup v2 pyctr puts a container's
        groups beside its own, so the node level keeps them in the node)."""
        from pyctr import cgroups
        dirs = []
        for h in cgroups.detect().hierarchies:
            d = h.host_dir(h.own)
            for part in ("slurmbed-%s-%s" % (self.testbed.tag, node.name), "daemons"):
                d = os.path.join(d, part)
                os.makedirs(d, exist_ok=True)
                for name in ("cpuset.cpus", "cpuset.mems"):  # v1 cpuset: empty refuses tasks
                    parent = _read(os.path.join(os.path.dirname(d), name)).strip()
                    if parent and not _read(os.path.join(d, name)).strip():
                        with open(os.path.join(d, name), "w") as f:
                            f.write(parent)
            dirs.append(d)
        return dirs

    def _start(self, what, node, argv):
        if node.name not in self.cgroups:
            self.cgroups[node.name] = self._node_cgroups(node)
        dirs = self.cgroups[node.name]

        def enter_node_cgroups():  # in the child, before exec
            for d in dirs:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))

        log = open(os.path.join(self.base, "log", what.replace(" ", ".") + ".out"), "wb")
        with log:
            proc = subprocess.Popen(self.node_argv(node, argv), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, cwd=self.base,
                                    env=self.env(), start_new_session=True,
                                    preexec_fn=enter_node_cgroups)
        self._daemons.append((what, proc))

    def _all_idle(self):
        dead = [what for what, p in self._daemons if p.poll() is not None]
        if dead:
            raise SlurmError("%s exited: %s" % (dead[0], self._tail(dead[0])))
        r = self.run_on(self.controller, ["sinfo", "-h", "-N", "-o", "%N %t"], timeout=30)
        states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
        return len(states) == len(self.testbed.nodes) and set(states.values()) == {"idle"}

    def _tail(self, what):
        name = what.replace(" ", ".")
        return (self.log(name) or _read(os.path.join(self.base, "log", name + ".out")))[-800:]

    def _wait_for(self, ready, what, timeout=START_TIMEOUT, fail=True):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return True
            time.sleep(0.2)
        if fail:
            raise SlurmError("slurmbed: timed out waiting for %s" % what)
        return False

    def _sweep(self):
        """Kill what is left of any job: every process started with this
        cluster's SLURM_CONF, which Slurm passes down to the tasks and
        their containers, even those in network namespaces of their own
        (a created OCI container that scancel did not reach)."""
        mark = ("SLURM_CONF=%s\0" % self.conf).encode()
        for pid in _pids():
            if pid != os.getpid() and mark in _read_bytes("/proc/%d/environ" % pid):
                _kill(pid)

    def _stepds(self):
        """pids of slurmstepd processes in this cluster's nodes."""
        inodes = set()
        for holder in self.holders.values():
            try:
                inodes.add(os.stat("/proc/%d/ns/net" % holder.pid).st_ino)
            except OSError:
                pass
        found = []
        for pid in _pids():
            try:
                if _comm(pid) == "slurmstepd" and \
                        os.stat("/proc/%d/ns/net" % pid).st_ino in inodes:
                    found.append(pid)
            except OSError:
                continue
        return found


def define_network(testbed, name="seg", kind="veth", subnet="10.77.0.0/24", size=10):
    """`pyctr net create NAME` on every node of `testbed`, alike but for its
    address range: node i hands out .100+size*(i-1) onwards, so containers on
    different nodes of one segment never get the same address. kind: veth
    (a bridge that holds the node's NIC) or macvlan (on the NIC, no host shim)."""
    for i, node in enumerate(testbed.nodes):
        first = 100 + size * i
        args = ["net", "create", name, "--subnet", subnet, "--uplink", "nic0",
                "--range", "%s-%s" % (_host(subnet, first), _host(subnet, first + size - 1))]
        if kind == "macvlan":
            args += ["--kind", "macvlan", "--no-host-shim"]
        r = node.pyctr(*args)
        if r.returncode:
            raise SlurmError("net create on %s: %s" % (node.name, r.stderr.strip()))


def _host(subnet, n):
    import ipaddress
    return str(ipaddress.ip_network(subnet, strict=False).network_address + n)


def _pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _remove_tree(directory):
    """rmdir a cgroup directory and every group below it, deepest first."""
    for top, subdirs, _ in sorted(os.walk(directory), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(top)
        except OSError:
            pass


def _comm(pid):
    return _read("/proc/%d/comm" % pid).strip()


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _stop(proc, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; reaped either way."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
