"""The study's workloads on two nodes, each parsed down to its figure.

A workload only sees a Setup: two Nodes (A and B, each able to run a command
and start one in the background), the directory both see at the same path,
and how to start an MPI job across them. Where the commands actually run - a
node's network namespace (NIC), a container on a bridge (veth) or on a
macvlan - is the Setup's business (pyctr.bench.paper), so the same workload
code measures all three configurations.

Workloads, all from Debian packages, sized for 2 cores ("quick" / full):
  iperf3     TCP throughput B <- A, Mbit/s                      (5 s / 10 s)
  hpl        HPL from hpcc, 2 ranks (P=1, Q=2), GFLOPS          (N=2000 / 3000)
  gromacs    SPC water box from spc216.gro, gmx_mpi mdrun, 2 ranks, PME, s
                                                                 (1000 / 5000 steps)
  dambreak   OpenFOAM interFoam damBreak, 2 subdomains, s       (endTime 0.25 / 1)
  pitzdaily  OpenFOAM rhoPimpleFoam LES pitzDaily, 2 subdomains, s
                                                                 (endTime 0.001 / 0.002)
  pingpong   MPI ping-pong (mpi4py): 8-byte half round trip, us, and 4 MiB
             bandwidth, MB/s
Preparation (meshes, decomposition, topology, energy minimisation) happens
once, on the host, outside any timing; every run starts from the same files.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import time

from pyctr.errors import PyctrError

OPENFOAM_DIR = "/usr/share/openfoam"
TUTORIALS = "/usr/share/doc/openfoam-examples/examples"
GROMACS_TOP = "/usr/share/gromacs/top"
PYTHON = "/usr/bin/python3"     # Debian's, which has mpi4py; same path in the mpi image


class WorkloadFailed(Exception):
    """One run of one workload failed; the benchmark records why and goes on."""


class Output:
    __slots__ = ("rc", "out", "err", "seconds")

    def __init__(self, rc, out, err, seconds):
        self.rc, self.out, self.err, self.seconds = rc, out, err, seconds

    def tail(self, n=3):
        lines = [l for l in (self.err + "\n" + self.out).splitlines() if l.strip()]
        return " | ".join(lines[-n:]) or "no output"


class Node:
    """Where commands run. `wrap(argv, env)` gives the full host argv that runs
    argv there with env added (e.g. ip netns exec NS env K=V argv...);
    `environ`, if given, is the environment that host argv starts with."""

    def __init__(self, name, host, wrap, environ=None):
        self.name = name        # "A" / "B"
        self.host = host        # the address the other node reaches it at
        self.wrap = wrap
        self.environ = environ

    def run(self, argv, env=None, timeout=600):
        return self.execute(self.wrap([str(a) for a in argv], env or {}), argv[0], timeout)

    def execute(self, full, what, timeout):
        """Output of host argv `full`; WorkloadFailed after `timeout` seconds."""
        t0 = time.perf_counter()
        try:
            r = subprocess.run(full, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               errors="replace", timeout=timeout, env=self.environ)
        except subprocess.TimeoutExpired as e:
            raise WorkloadFailed("%s on node %s: no end after %d s" % (what, self.name,
                                                                       timeout)) from e
        return Output(r.returncode, r.stdout, r.stderr, time.perf_counter() - t0)

    def start(self, argv, env=None):
        return self.start_argv(self.wrap([str(a) for a in argv], env or {}))

    def start_argv(self, full):
        return subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env=self.environ)

    def __repr__(self):
        return "Node(%s %s)" % (self.name, self.host)


# A rank's number in a shell it was started as: mpirun's orted sets
# OMPI_COMM_WORLD_RANK, srun (no MPI launcher in between) SLURM_PROCID.
RANK = "${OMPI_COMM_WORLD_RANK:-$SLURM_PROCID}"


def env_argv(env):
    return ["env"] + ["%s=%s" % kv for kv in sorted(env.items())] if env else []


class Setup:
    """One configuration of the two-node cluster.

    a, b       Nodes (A runs iperf3's client, B its server)
    launcher   the Node mpirun runs on; it starts one orted per node through
               `agent` (hosts "nodeA", "nodeB"), so rank placement, daemons and
               paths are alike in every configuration
    agent      executable given to Open MPI as plm_rsh_agent: AGENT HOST CMD...
    workdir    a directory visible at this same path on both nodes
    env        MPI settings for mpirun (forwarded to orteds and ranks)
    """

    def __init__(self, name, a, b, launcher, agent, workdir, env=None, note="",
                 expect_netns=None, wire=None):
        self.name, self.a, self.b = name, a, b
        self.launcher, self.agent, self.workdir = launcher, agent, workdir
        self.env = dict(env or {})
        self.note = note
        self.expect_netns = expect_netns    # {rank: netns inode} the ranks must run in
        self.wire = wire                    # () -> bytes counted on node A's NIC so far

    def verify(self):
        """Start a 2-rank job that reports where each rank runs; raise
        WorkloadFailed unless rank 0 is in node A's expected network namespace
        and rank 1 in node B's."""
        out = _must(self.mpirun(["sh", "-c", 'echo "rank %s netns '
                                 '$(stat -L -c %%i /proc/self/ns/net)"' % RANK],
                                cwd=self.workdir, timeout=120),
                    "%s (where do the ranks run?)" % self.launch_word)
        seen = {int(r): int(ino) for r, ino in re.findall(r"^rank (\d+) netns (\d+)$",
                                                          out.out, re.M)}
        problem = self.netns_problem(seen)
        if problem:
            raise WorkloadFailed("%s: %s" % (self.name, problem))
        return seen

    launch_word = "mpirun"

    def netns_problem(self, seen):
        """What is wrong with the ranks' network namespaces `seen` ({rank:
        inode}), or None."""
        if self.expect_netns is not None and seen != self.expect_netns:
            return "ranks ran in network namespaces %s, expected %s" % (seen, self.expect_netns)
        return None

    def mpirun(self, argv, cwd, env=None, timeout=900):
        """Run an MPI program with one rank on each node; returns Output.
        `env` is set for mpirun and forwarded (-x) to the ranks."""
        cmd = ["mpirun.openmpi", "-np", "2", "--host", "nodeA:1,nodeB:1",
               "--mca", "plm_rsh_agent", self.agent,
               # Each simulated node's orted would bind its rank to core 0 of
               # the same machine: both ranks on one core (GROMACS: 16.6 s
               # bound vs 11.9 s unbound, 5000 steps).
               "--bind-to", "none",
               "--wdir", cwd]
        full = dict(self.env)
        full.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        full.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        for k, v in sorted((env or {}).items()):
            full[k] = v
            cmd += ["-x", k]
        return self.launcher.run(cmd + list(argv), env=full, timeout=timeout)


def _must(out, what):
    if out.rc != 0:
        raise WorkloadFailed("%s exited %d: %s" % (what, out.rc, out.tail()))
    return out


def _sh(argv, cwd, env=None, what=None, timeout=300):
    """A preparation step on the host (never timed)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    r = subprocess.run(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, errors="replace", timeout=timeout)
    if r.returncode:
        lines = [l for l in (r.stderr + r.stdout).splitlines() if l.strip()]
        raise PyctrError("preparing %s: `%s` failed: %s" % (
            what or argv[0], " ".join(argv), " | ".join(lines[-3:]) or "exit %d" % r.returncode))
    return r


class Metric:
    def __init__(self, key, label, unit, higher_is_better, short=None):
        self.key, self.label, self.unit = key, label, unit
        self.higher_is_better = higher_is_better
        self.short = short or label     # for chart axes


class Workload:
    key = ""
    title = ""
    metrics = ()
    tools = ()
    logs = ()      # files (relative to its directory) worth keeping after each run

    def __init__(self, quick):
        self.quick = quick
        self.dir = None

    def describe(self):
        return self.title

    def prepare(self, workdir):
        self.dir = os.path.join(workdir, self.key)
        os.makedirs(self.dir, exist_ok=True)

    def run(self, setup):
        """One measurement; {metric key: value}."""
        raise NotImplementedError

    def keep_logs(self, dest):
        """Copy this run's logs to dest/ (for looking into a figure later)."""
        for name in self.logs:
            src = os.path.join(self.dir, name)
            if os.path.isfile(src):
                os.makedirs(dest, exist_ok=True)
                shutil.copyfile(src, os.path.join(dest, os.path.basename(name)))


# ------------------------------------------------------------------ iperf3

class Iperf(Workload):
    key = "iperf3"
    title = "iperf3 TCP throughput"
    metrics = (Metric("iperf3", "iperf3 throughput", "Mbit/s", True, "iperf3"),)
    tools = ("iperf3",)
    PORT = 5201

    def __init__(self, quick):
        super().__init__(quick)
        self.seconds = 5 if quick else 10

    def describe(self):
        return "iperf3 -t %d, one TCP stream, server on node B, client on node A" % self.seconds

    def run(self, setup):
        server = setup.b.start(["iperf3", "--server", "--one-off", "--bind", setup.b.host,
                                "--port", self.PORT])
        try:
            for attempt in range(50):   # the server needs a moment to listen
                out = setup.a.run(["iperf3", "--client", setup.b.host, "--port", self.PORT,
                                   "--time", self.seconds, "--json",
                                   "--connect-timeout", "3000"], timeout=self.seconds + 30)
                try:
                    data = json.loads(out.out)
                except ValueError:
                    data = {"error": out.tail()}
                err = data.get("error")
                if not err:
                    return {"iperf3": data["end"]["sum_received"]["bits_per_second"] / 1e6}
                if "connect" in err and server.poll() is None and attempt < 49:
                    time.sleep(0.1)
                    continue
                raise WorkloadFailed("iperf3 to %s: %s" % (setup.b.host, err))
        finally:
            _stop(server)


def _stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


# --------------------------------------------------------------------- HPL

HPCC_INPUT = """HPLinpack benchmark input file (pyctr bench paper)
Innovative Computing Laboratory, University of Tennessee
HPL.out      output file name (if any)
8            device out (6=stdout,7=stderr,file)
{trials}            # of problems sizes (N)
{ns}         Ns
1            # of NBs
{nb}           NBs
0            PMAP process mapping (0=Row-,1=Column-major)
1            # of process grids (P x Q)
1            Ps
2            Qs
16.0         threshold
1            # of panel fact
2            PFACTs (0=left, 1=Crout, 2=Right)
1            # of recursive stopping criterium
4            NBMINs (>= 1)
1            # of panels in recursion
2            NDIVs
1            # of recursive panel fact.
1            RFACTs (0=left, 1=Crout, 2=Right)
1            # of broadcast
1            BCASTs (0=1rg,1=1rM,2=2rg,3=2rM,4=Lng,5=LnM)
1            # of lookahead depth
1            DEPTHs (>=0)
2            SWAP (0=bin-exch,1=long,2=mix)
64           swapping threshold
0            L1 in (0=transposed,1=no-transposed) form
0            U  in (0=transposed,1=no-transposed) form
1            Equilibration (0=no,1=yes)
8            memory alignment in double (> 0)
##### This line (no. 32) is ignored (it serves as a separator). ######
0                      		Number of additional problem sizes for PTRANS
1200 10000 30000        	values of N
0                       	number of additional blocking sizes for PTRANS
40 9 8 13 13 20 16 32 64       	values of NB
"""


class Hpl(Workload):
    key = "hpl"
    title = "HPL (hpcc)"
    # StarDGEMM (every rank multiplying matrices on its own, no network) comes
    # from the same hpcc run: the control that shows how much the CPU alone
    # varied between runs, against which HPL's differences must be read.
    metrics = (Metric("hpl", "HPL (hpcc)", "GFLOPS", True, "HPL"),
               Metric("dgemm", "DGEMM per rank, no network (hpcc StarDGEMM)", "GFLOPS", True,
                      "DGEMM\n(no network)"))
    tools = ("hpcc", "mpirun.openmpi")
    logs = ("hpccoutf.txt",)

    def __init__(self, quick, n=None):
        super().__init__(quick)
        self.n = n or (2000 if quick else 3000)
        self.nb = 80
        # HPL itself takes seconds, hpcc's other tests minutes on 100 Mbit/s:
        # solving the same N several times in one hpcc run costs little and
        # steadies the figure, which one 5 s solve on a shared machine does not.
        self.trials = 3 if quick else 5

    def describe(self):
        return "hpcc with HPL N=%d NB=%d solved %d times on a 1x2 process grid (2 ranks, " \
               "one per node); figures: the median of the %d solves' Gflops, and " \
               "StarDGEMM_Gflops (a control: no network)" % (
                   self.n, self.nb, self.trials, self.trials)

    def prepare(self, workdir):
        super().prepare(workdir)
        with open(os.path.join(self.dir, "hpccinf.txt"), "w") as f:
            f.write(HPCC_INPUT.format(trials=self.trials, ns=" ".join([str(self.n)] * self.trials),
                                      nb=self.nb))

    def run(self, setup):
        out_file = os.path.join(self.dir, "hpccoutf.txt")
        if os.path.exists(out_file):
            os.unlink(out_file)     # hpcc appends
        _must(setup.mpirun(["hpcc"], cwd=self.dir), "mpirun hpcc")
        fields = parse_hpcc(out_file)
        return {"hpl": statistics.median(fields["HPL_Gflops"]),
                "dgemm": fields["StarDGEMM_Gflops"]}


def _output(path, program):
    """The text of a file `program` should have written."""
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise WorkloadFailed("%s wrote no %s: %s" % (program, path, e.strerror))


def parse_hpcc(path):
    """{HPL_Gflops: [each HPL solve's], StarDGEMM_Gflops} from hpcc's output;
    the run must have passed its checks."""
    text = _output(path, "hpcc")
    summary = text.split("Begin of Summary section.", 1)[-1]
    fields = dict(re.findall(r"^(\w+)=(\S+)$", summary, re.M))
    if fields.get("Success") != "1" or "HPL_Tflops" not in fields:
        raise WorkloadFailed("hpcc did not pass its checks (Success=%s)"
                             % fields.get("Success"))
    # HPL's result lines: T/V  N  NB  P  Q  Time  Gflops
    solves = [float(g) for g in re.findall(
        r"^W[RC]\w+\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+\s+([\d.]+e[+-]\d+)\s*$", text, re.M)]
    if not solves:
        raise WorkloadFailed("hpcc's output has no HPL result line")
    try:
        return {"HPL_Gflops": solves, "StarDGEMM_Gflops": float(fields["StarDGEMM_Gflops"])}
    except (KeyError, ValueError) as e:
        raise WorkloadFailed("hpcc's summary lacks a figure: %s" % e)


# ----------------------------------------------------------------- GROMACS

WATER_TOP = """; SPC water, OPLS-AA, from GROMACS's shipped spc216.gro
#include "oplsaa.ff/forcefield.itp"
#include "oplsaa.ff/spc.itp"

[ system ]
SPC water box

[ molecules ]
"""
EM_MDP = """integrator = steep
nsteps = 500
emtol = 1000
cutoff-scheme = Verlet
coulombtype = PME
rcoulomb = 1.0
rvdw = 1.0
"""
MD_MDP = """integrator = md
dt = 0.002
nsteps = {steps}
cutoff-scheme = Verlet
coulombtype = PME
rcoulomb = 1.0
rvdw = 1.0
tcoupl = V-rescale
tc-grps = System
tau-t = 0.1
ref-t = 300
gen-vel = yes
gen-temp = 300
gen-seed = 1
nstenergy = 1000
nstlog = 1000
nstcalcenergy = 100
"""


class Gromacs(Workload):
    key = "gromacs"
    title = "GROMACS water box"
    metrics = (Metric("gromacs", "GROMACS water box", "s", False, "GROMACS"),)
    tools = ("gmx", "gmx_mpi", "mpirun.openmpi")
    logs = ("run.log",)

    def __init__(self, quick, box=3.0, steps=None):
        super().__init__(quick)
        self.box = box
        self.steps = steps or (1000 if quick else 5000)
        self.waters = None

    def describe(self):
        return ("%s SPC waters (spc216.gro stacked by gmx solvate into a %.1f nm box, energy "
                "minimised), PME, %d steps of 2 fs, gmx_mpi mdrun with 2 ranks x 1 thread; "
                "figure: mdrun's wall time" % (self.waters or "?", self.box, self.steps))

    def prepare(self, workdir):
        super().prepare(workdir)
        d = self.dir
        with open(os.path.join(d, "topol.top"), "w") as f:
            f.write(WATER_TOP)
        with open(os.path.join(d, "em.mdp"), "w") as f:
            f.write(EM_MDP)
        with open(os.path.join(d, "md.mdp"), "w") as f:
            f.write(MD_MDP.format(steps=self.steps))
        b = "%.3f" % self.box
        _sh(["gmx", "-quiet", "solvate", "-cs", "spc216.gro", "-box", b, b, b,
             "-o", "water.gro", "-p", "topol.top"], d, what="gromacs")
        with open(os.path.join(d, "topol.top")) as f:
            m = re.search(r"^SOL\s+(\d+)", f.read(), re.M)
        self.waters = int(m.group(1)) if m else None
        # The stacked boxes overlap at their faces: minimise, or MD explodes.
        _sh(["gmx", "-quiet", "grompp", "-f", "em.mdp", "-c", "water.gro", "-p", "topol.top",
             "-o", "em.tpr"], d, what="gromacs")
        _sh(["gmx", "-quiet", "mdrun", "-s", "em.tpr", "-deffnm", "em", "-ntmpi", "1",
             "-ntomp", "1"], d, what="gromacs", timeout=600)
        _sh(["gmx", "-quiet", "grompp", "-f", "md.mdp", "-c", "em.gro", "-p", "topol.top",
             "-o", "md.tpr"], d, what="gromacs")

    def run(self, setup):
        for name in os.listdir(self.dir):
            if name.startswith("run.") or name.startswith("#run."):
                os.unlink(os.path.join(self.dir, name))
        _must(setup.mpirun(["gmx_mpi", "-quiet", "mdrun", "-s", "md.tpr", "-deffnm", "run",
                            "-ntomp", "1", "-notunepme"], cwd=self.dir), "mpirun gmx_mpi mdrun")
        return {"gromacs": parse_gromacs_log(os.path.join(self.dir, "run.log"))}


def parse_gromacs_log(path):
    """mdrun's own wall time ("Time: core wall %") in seconds."""
    text = _output(path, "mdrun")
    m = re.search(r"^\s*Time:\s+([\d.]+)\s+([\d.]+)", text, re.M)
    if not m:
        raise WorkloadFailed("no timing in %s (mdrun did not finish)" % path)
    return float(m.group(2))


# ---------------------------------------------------------------- OpenFOAM

DECOMPOSE = """FoamFile
{
    version     2.0;
    format      ascii;
    class       dictionary;
    object      decomposeParDict;
}
numberOfSubdomains 2;
method          simple;
coeffs
{
    n           (2 1 1);
}
"""


# Rank 0 times its own solver process, start to exit (MPI_Init's wire-up
# included): what it takes to start ranks (ip netns exec or pyctr exec and
# orted; or slurmstepd and pyctr run) stays out of the figure, as it does for mdrun's and HPL's own timings.
SOLVER_CLOCK = ('t0=$(date +%s.%N); "$@"; rc=$?; t1=$(date +%s.%N); '
                'if [ "' + RANK + '" = 0 ]; then echo "SOLVER_WALL $t0 $t1"; fi; '
                'exit $rc')


class Foam(Workload):
    """A tutorial case, decomposed into 2 subdomains, run on both nodes."""
    tutorial = ""
    solver = ""
    pre = ()           # utilities run before decomposePar
    end_time = (0, 0)  # (quick, full)
    logs = ("log.solver",)

    def __init__(self, quick):
        super().__init__(quick)
        self.end = self.end_time[0 if quick else 1]
        self.cells = None

    def describe(self):
        return ("OpenFOAM %s, tutorial %s (%s cells), endTime %g, 2 subdomains (simple "
                "2x1x1); figure: wall time of rank 0's %s -parallel process" % (
                    self.solver, self.tutorial.split("/", 1)[-1], self.cells or "?", self.end,
                    self.solver))

    def prepare(self, workdir):
        super().prepare(workdir)
        case = self.case = os.path.join(self.dir, "case")
        shutil.rmtree(case, ignore_errors=True)
        shutil.copytree(os.path.join(TUTORIALS, self.tutorial), case)
        for top, _, files in os.walk(case):
            for f in files:
                if f.endswith(".gz"):
                    _sh(["gunzip", "-f", os.path.join(top, f)], case, what=self.key)
        self.edit_control(os.path.join(case, "system", "controlDict"))
        with open(os.path.join(case, "system", "decomposeParDict"), "w") as f:
            f.write(DECOMPOSE)
        env = {"WM_PROJECT_DIR": OPENFOAM_DIR}
        mesh = _sh(["blockMesh"], case, env, what=self.key)
        m = re.search(r"nCells:\s*(\d+)", mesh.stdout)
        self.cells = int(m.group(1)) if m else None
        for tool in self.pre:
            _sh([tool], case, env, what=self.key)
        _sh(["decomposePar", "-force"], case, env, what=self.key)

    def edit_control(self, path):
        with open(path) as f:
            text = f.read()
        text = re.sub(r"^(endTime\s+)[^;]+;", r"\g<1>%g;" % self.end, text, flags=re.M)
        # Write only the end state: output is not what is measured.
        text = re.sub(r"^(writeControl\s+)[^;]+;", r"\1timeStep;", text, flags=re.M)
        text = re.sub(r"^(writeInterval\s+)[^;]+;", r"\g<1>100000;", text, flags=re.M)
        with open(path, "w") as f:
            f.write(text)

    def run(self, setup):
        self._clean()
        out = setup.mpirun(["sh", "-c", SOLVER_CLOCK, "sh", self.solver, "-parallel", "-case",
                            self.case], cwd=self.case, env={"WM_PROJECT_DIR": OPENFOAM_DIR})
        with open(os.path.join(self.dir, "log.solver"), "w") as f:
            f.write(out.out)
        _must(out, "mpirun %s -parallel" % self.solver)
        if "\nEnd" not in out.out:
            raise WorkloadFailed("%s did not reach its end: %s" % (self.solver, out.tail()))
        m = re.search(r"^SOLVER_WALL ([\d.]+) ([\d.]+)$", out.out, re.M)
        if not m:
            raise WorkloadFailed("%s: no solver timing in the output" % self.solver)
        return {self.key: float(m.group(2)) - float(m.group(1))}

    def _clean(self):
        """Drop time directories earlier runs wrote, so every run does the same."""
        for proc in ("processor0", "processor1"):
            d = os.path.join(self.case, proc)
            for name in os.listdir(d):
                if name not in ("0", "constant") and re.match(r"^[\d.e+-]+$", name):
                    shutil.rmtree(os.path.join(d, name), ignore_errors=True)


class DamBreak(Foam):
    key = "dambreak"
    title = "OpenFOAM interFoam damBreak"
    metrics = (Metric("dambreak", "OpenFOAM interFoam damBreak", "s", False,
                      "damBreak"),)
    tools = ("interFoam", "blockMesh", "setFields", "decomposePar", "mpirun.openmpi")
    tutorial = "multiphase/interFoam/laminar/damBreak/damBreak"
    solver = "interFoam"
    pre = ("setFields",)
    end_time = (0.25, 1.0)


class PitzDaily(Foam):
    key = "pitzdaily"
    title = "OpenFOAM rhoPimpleFoam LES pitzDaily"
    metrics = (Metric("pitzdaily", "OpenFOAM rhoPimpleFoam LES pitzDaily", "s", False,
                      "pitzDaily LES"),)
    tools = ("rhoPimpleFoam", "blockMesh", "decomposePar", "mpirun.openmpi")
    tutorial = "compressible/rhoPimpleFoam/LES/pitzDaily"
    solver = "rhoPimpleFoam"
    end_time = (0.001, 0.002)


# --------------------------------------------------------------- ping-pong

PINGPONG = r'''"""MPI ping-pong between ranks 0 and 1 (pyctr bench paper)."""
import json
import sys
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()


def half_round_trip(nbytes, iters):
    buf = bytearray(nbytes)
    for _ in range(max(1, iters // 10)):     # warm-up: connections, buffers
        if rank == 0:
            comm.Send(buf, 1); comm.Recv(buf, 1)
        else:
            comm.Recv(buf, 0); comm.Send(buf, 0)
    comm.Barrier()
    t0 = MPI.Wtime()
    for _ in range(iters):
        if rank == 0:
            comm.Send(buf, 1); comm.Recv(buf, 1)
        else:
            comm.Recv(buf, 0); comm.Send(buf, 0)
    return (MPI.Wtime() - t0) / iters / 2


small, big = int(sys.argv[1]), int(sys.argv[2])
lat = half_round_trip(8, small)
size = 4 << 20
bw = size / half_round_trip(size, big)
if rank == 0:
    print(json.dumps({"latency_us": lat * 1e6, "bandwidth_MBps": bw / 1e6}))
'''


class PingPong(Workload):
    key = "pingpong"
    title = "MPI ping-pong"
    metrics = (Metric("pingpong_lat", "MPI ping-pong latency (8 B)", "us", False,
                      "ping-pong\nlatency"),
               Metric("pingpong_bw", "MPI ping-pong bandwidth (4 MiB)", "MB/s", True,
                      "ping-pong\nbandwidth"))
    tools = ("mpirun.openmpi",)

    def __init__(self, quick):
        super().__init__(quick)
        self.small = 1000 if quick else 5000
        self.big = 10 if quick else 20

    def describe(self):
        return ("mpi4py Send/Recv between the 2 ranks over TCP: %d round trips of 8 bytes "
                "(latency = half a round trip), %d of 4 MiB (bandwidth)"
                % (self.small, self.big))

    def prepare(self, workdir):
        super().prepare(workdir)
        with open(os.path.join(self.dir, "pingpong.py"), "w") as f:
            f.write(PINGPONG)

    def run(self, setup):
        out = _must(setup.mpirun([PYTHON, "pingpong.py", self.small, self.big], cwd=self.dir),
                    "mpirun pingpong.py")
        for line in out.out.splitlines():
            if line.startswith("{"):
                d = json.loads(line)
                return {"pingpong_lat": d["latency_us"], "pingpong_bw": d["bandwidth_MBps"]}
        raise WorkloadFailed("pingpong.py printed no result: %s" % out.tail())


ALL = (Iperf, Hpl, Gromacs, DamBreak, PitzDaily, PingPong)


def by_key(keys, quick):
    table = {w.key: w for w in ALL}
    out = []
    for k in keys:
        if k not in table:
            raise PyctrError("bench paper: unknown workload %r (choose from %s)"
                             % (k, ", ".join(table)))
        out.append(table[k](quick))
    return out


def missing_tools(workloads):
    """Host tools the workloads need (preparation and the NIC configuration)."""
    need = []
    for w in workloads:
        for t in w.tools:
            if t not in need:
                need.append(t)
    missing = [t for t in need if not shutil.which(t)]
    if any(isinstance(w, PingPong) for w in workloads):
        r = subprocess.run([PYTHON, "-c", "import mpi4py"], capture_output=True)
        if r.returncode:
            missing.append("python3-mpi4py")
    return missing
