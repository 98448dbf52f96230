"""`pyctr bench startup`: wall time and CPU of `pyctr run --rm --net=none
IMAGE /bin/true` against `runc run`, `crun run` and `bwrap` on the same
rootfs; with --busy N, beside N CPU-bound processes (a loaded node).

What each contender does (all as root, same rootfs, new pid, ipc, uts, mount
and network namespaces, loopback up, workload /bin/true, teardown included):
  pyctr   LAUNCHER --root STATE --data DATA run --rm --net=none IMAGE /bin/true
          with its defaults: confinement on (below), an overlay over the image
          (the root is writable), the 14 default capabilities
  runc    runc --root STATE run --bundle B ID    (config.json from `runc spec`:
          terminal false, args /bin/true, root = the image rootfs, read-only;
          confinement added as below, the same 14 capabilities)
  crun    crun --root STATE run --bundle B ID    (the same config.json)
  bwrap   bwrap --unshare-{pid,ipc,uts,net} --ro-bind ROOTFS / --proc /proc
          --dev /dev /bin/true: no cgroup, no cgroup namespace, no device
          policy, no seccomp filter (none of the confinement below)
  python  the interpreter pyctr runs on, started as the `pyctr` command
          starts it (-S: no site), `-S -c pass`: the floor a Python runtime
          cannot go below

Confinement, the same for pyctr, runc and crun (issue 8's defaults):
  cgroup     a new cgroup per container in every mounted hierarchy, removed
             at exit. pyctr: <own>/pyctr-<world>-<id>, with a ctr leaf where
             it holds limits (v1 cpuset: in <own>/pyctr/); runc and crun:
             linux.cgroupsPath /pyctr-bench-PID/ID (cgroupfs driver, as podman
             writes it with --cgroup-manager cgroupfs: an absolute path)
  cgroupns   a new cgroup namespace (pyctr's default; a "cgroup" entry in the
             bundle's linux.namespaces), /sys/fs/cgroup mounted read-only inside
  devices    deny all, then the default allow list (null, zero, full, random,
             urandom, tty, ptmx, pts, mknod of any node): pyctr's own
             devices.DEFAULT_RULES, written into linux.resources.devices for
             runc and crun (v1 devices controller on this host)
  seccomp    pyctr's default profile (seccomp.default, resolved for the 14
             capabilities), exported with Seccomp.to_oci() as linux.seccomp;
             pyctr loads it from its compile cache, runc and crun compile it
             with libseccomp at every start, as they always do
A fresh container id per run (runc and crun get a fresh config.json with that
id's cgroupsPath, written before the timed run). pyctr, runc and crun keep
their state in a private --root each, in one directory under /run (a tmpfs
on most machines, as for their defaults /run/{pyctr,runc,crun}; where /run
is not one, all three write their records to the same filesystem).

crun 1.8.1 refuses a hybrid cgroup layout (cgroup v1 controllers plus
/sys/fs/cgroup/unified) with "cgroups in hybrid mode not supported". On such
a host its runner is started in `unshare -m` with /sys/fs/cgroup/unified
unmounted in that private mount namespace (so crun makes no group in that
controller-less v2 tree, where pyctr and runc make one); the unshare and sh
are paid once, when the runner starts, never inside a timed run (see
runner.py).

Fair timing of a Python program: we time the launcher pyctr users run
(`/usr/local/bin/pyctr`: pyctr-front, which execs the installed
interpreter it names (pyctr.launcher), not a pyenv shim that would add
~170 ms). Before timing, pyctr's package is
byte-compiled (`-m compileall`) and PYTHONDONTWRITEBYTECODE is removed from
the timed environment, so no run pays for compiling sources - what a user of
a non-editable install gets.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from pyctr.bench import harness
from pyctr.cli import arg_parser
from pyctr.errors import PyctrError

DEFAULT_LAUNCHER = "/usr/local/bin/pyctr"
# pyctr's time over a peer's, at most: issue 8 (runc, confinement on for both)
# and issue 13 (crun)
TARGETS = {"runc": 0.75, "crun": 1.0}
CGROUP_PARENT = "pyctr-bench-%d"  # runc's and crun's cgroups go below it (the bench's pid)


def timing_parser(prog, description, kind):
    """The options every start-up timing benchmark takes (startup, net)."""
    p = arg_parser(prog, description)
    p.add_argument("--runs", type=int, default=20, help="timed runs per contender (20)")
    p.add_argument("--warmup", type=int, default=3, help="discarded rounds first (3)")
    p.add_argument("--out", help="results directory (default results/%s-DATE)" % kind)
    p.add_argument("--image", default="busybox",
                   help="image name (its rootfs is used by all) or a rootfs directory")
    p.add_argument("--pyctr", default=None, metavar="LAUNCHER",
                   help="pyctr launcher to time (default %s, else pyctr on PATH)"
                   % DEFAULT_LAUNCHER)
    p.add_argument("--venv", metavar="DIR",
                   help="first install this source tree non-editable into venv DIR (made if "
                   "missing, e.g. /opt/pyctr-bench) and time its launcher")
    return p


def parse(argv):
    p = timing_parser("bench startup", "Time `pyctr run --rm --net=none IMAGE /bin/true` "
                      "against runc, crun and bwrap on the same rootfs.", "startup")
    p.add_argument("--baseline", metavar="LAUNCHER",
                   help="also time this other pyctr launcher (e.g. an install of an older "
                   "commit) as `pyctr-baseline`, interleaved with the rest")
    p.add_argument("--profile", action="store_true",
                   help="instead of timing, print pyctr's `python -X importtime` top entries")
    p.add_argument("--top", type=int, default=25, help="entries shown by --profile (25)")
    p.add_argument("--busy", type=int, default=0, metavar="N",
                   help="keep N CPU-bound processes running beside every run, a loaded "
                   "node's stand-in (0); what counts there is each start's CPU")
    return p.parse_args(argv)


# A loaded node's stand-in: it spins until the benchmark ends (killed), its
# parent is gone, or BUSY_LIMIT_S have passed, whichever comes first.
BUSY = """# pyctr bench startup --busy
import os, time
parent, end = %d, time.monotonic() + %d
while os.getppid() == parent and time.monotonic() < end:
    for _ in range(100000):
        pass
"""
BUSY_LIMIT_S = 4 * 3600
BUSY_MAX = 64


def start_busy(count):
    """`count` CPU-bound processes (started before the first run)."""
    return [subprocess.Popen([sys.executable, "-S", "-c", BUSY % (os.getpid(), BUSY_LIMIT_S)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for _ in range(count)]


def stop_busy(processes):
    for p in processes:
        p.kill()
    for p in processes:
        p.wait()


# ------------------------------------------------------------ preparation

def resolve_rootfs(paths, image):
    """(name or path given to pyctr run, rootfs directory)."""
    if os.sep in image or image.startswith("."):
        rootfs = os.path.abspath(image)
        label = rootfs
    else:
        rootfs = os.path.join(paths.images, image, "rootfs")
        label = image
    if not os.path.isdir(rootfs):
        raise PyctrError("image %s: no rootfs at %s (build it: pyctr image build %s)"
                         % (image, rootfs, image))
    if not os.path.lexists(os.path.join(rootfs, "bin", "true")):
        raise PyctrError("image %s has no /bin/true" % image)
    return label, rootfs


def launcher_and_interpreter(given):
    """The pyctr launcher to time and the interpreter it runs (pyctr.launcher)."""
    from pyctr import launcher as launchers
    launcher = given or (DEFAULT_LAUNCHER if os.path.exists(DEFAULT_LAUNCHER)
                         else shutil.which("pyctr"))
    if not launcher or not os.path.isfile(launcher):
        raise PyctrError("pyctr launcher %s not found" % (given or "pyctr"))
    launcher = os.path.abspath(launcher)
    interp = launchers.interpreter(launcher)
    if not interp:
        raise PyctrError("%s is not a pyctr launcher (no #! line, no pyctr-front "
                         "configuration)" % launcher)
    if os.path.basename(interp) == "env" or "shims" in interp:
        raise PyctrError("%s starts through %s, which may be a pyenv shim (~170 ms): "
                         "time a launcher naming its interpreter" % (launcher, interp))
    return launcher, interp


def install_copy(venv):
    """Install the source tree this pyctr runs from into `venv` as a regular
    (non-editable) package; return the launcher. An editable install costs
    every start its import finder (~15 ms here: it imports pathlib, fnmatch,
    importlib.util), which a user's regular install does not pay."""
    import subprocess
    import sys
    import pyctr
    src = os.path.dirname(os.path.dirname(os.path.abspath(pyctr.__file__)))
    if not os.path.isfile(os.path.join(src, "pyproject.toml")):
        raise PyctrError("--venv needs pyctr running from its source tree (an editable "
                         "install); %s is not one" % src)
    venv = os.path.abspath(venv)
    python = os.path.join(venv, "bin", "python3")
    base = getattr(sys, "_base_executable", None) or "/usr/bin/python3"
    steps = []
    if not os.path.exists(python):
        steps.append(("creating venv %s" % venv, [base, "-m", "venv", venv]))
        steps.append(("installing pyctr and its dependencies",
                      [python, "-m", "pip", "install", "--quiet", src]))
    else:
        steps.append(("reinstalling pyctr from %s" % src,
                      [python, "-m", "pip", "install", "--quiet", "--no-deps",
                       "--force-reinstall", src]))
    from pyctr.progress import Progress
    with Progress("bench startup: install copy", total=len(steps)) as p:
        for what, argv in steps:
            p.step(what)
            out = subprocess.run(argv, capture_output=True, text=True)
            if out.returncode:
                tail = (out.stderr or out.stdout).strip().splitlines()
                raise PyctrError("%s failed: %s" % (what, tail[-1] if tail else out.returncode))
    # The same lean launcher install.sh puts in /usr/local/bin.
    launcher = os.path.join(venv, "bin", "pyctr-launcher")
    subprocess.run([python, "-c", "import sys; from pyctr.cli import write_launcher; "
                    "write_launcher(sys.argv[1])", launcher], check=True)
    return launcher


def precompile(interp):
    """Byte-compile the pyctr package the interpreter imports; return its dir."""
    import subprocess
    out = subprocess.run([interp, "-c", "import os, pyctr; print(os.path.dirname(pyctr.__file__))"],
                         capture_output=True, text=True)
    if out.returncode:
        raise PyctrError("%s cannot import pyctr: %s" % (interp, out.stderr.strip()[-200:]))
    pkg = out.stdout.strip()
    subprocess.run([interp, "-m", "compileall", "-q", pkg], capture_output=True)
    return pkg


def write_bundle(bundle, rootfs):
    """An OCI bundle from `runc spec`, made to run /bin/true without a tty,
    with pyctr's confinement (see confine; no cgroupsPath: runc's default
    group then); returns its config (a dict)."""
    import json
    import subprocess
    os.makedirs(bundle)
    out = subprocess.run(["runc", "spec", "--bundle", bundle], capture_output=True, text=True)
    if out.returncode:
        raise PyctrError("runc spec failed: %s" % out.stderr.strip())
    path = os.path.join(bundle, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"]["path"] = rootfs
    kinds = sorted(n["type"] for n in config["linux"]["namespaces"])
    if kinds != ["ipc", "mount", "network", "pid", "uts"]:
        raise PyctrError("runc spec gave namespaces %s, expected ipc mount network pid uts"
                         % " ".join(kinds))
    confine(config)
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return config


def confine(config):
    """What a default pyctr container has, in a runc bundle: its capabilities,
    a cgroup namespace, its device policy and its seccomp profile (the
    cgroupsPath is per container: config_for)."""
    from pyctr import devices, seccomp, spec
    caps = ["CAP_" + c.upper() for c in spec.DEFAULT_CAPABILITIES]
    process = config["process"]
    process["capabilities"] = {kind: list(caps)
                               for kind in ("bounding", "effective", "permitted")}
    linux = config["linux"]
    linux["namespaces"].append({"type": "cgroup"})
    linux.setdefault("resources", {})["devices"] = [r.to_oci() for r in devices.DEFAULT_RULES]
    linux["seccomp"] = seccomp.default_profile(spec.DEFAULT_CAPABILITIES).to_oci()


def config_for(bundle, config, cgroups_path):
    """Write the bundle's config.json for one container (its cgroupsPath)."""
    import json
    config["linux"]["cgroupsPath"] = cgroups_path
    tmp = os.path.join(bundle, "config.json.tmp")
    with open(tmp, "w") as f:
        json.dump(config, f)
    os.rename(tmp, os.path.join(bundle, "config.json"))


def hybrid_cgroups():
    """True on a cgroup v1 host that also mounts v2 at /sys/fs/cgroup/unified."""
    return os.path.ismount("/sys/fs/cgroup/unified")


def install_kind(pkg):
    """How the timed pyctr is installed: an editable install pays its import
    finder at every start, a regular one does not."""
    if os.path.basename(os.path.dirname(pkg)) == "site-packages":
        return "regular install"
    return "EDITABLE install: its import finder adds to every start, use --venv DIR " \
        "for a user's figure"


def crun_runner_prefix():
    if not hybrid_cgroups():
        return []
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'umount /sys/fs/cgroup/unified && exec "$@"', "sh"]


def timed_env():
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


# ----------------------------------------------------------- contenders

def build(paths, args, work, runners):
    """The contenders (skipping tools not installed) and notes about them."""
    label, rootfs = resolve_rootfs(paths, args.image)
    launcher, interp = launcher_and_interpreter(args.pyctr)
    pkg = precompile(interp)
    env = timed_env()
    plain = runners.add(harness.Runner("plain", env=env))
    step = harness.step
    tag = "pb%d" % os.getpid()
    contenders, notes = [], []

    def pyctr(name, launcher, interp):
        state = os.path.join(work, name + "-state")
        contenders.append(harness.CommandContender(
            name, plain, lambda i: {"steps": [step(
                [launcher, "--root", state, "--data", paths.data,
                 "run", "--rm", "--net=none", label, "/bin/true"])]},
            note="`%s run --rm --net=none %s /bin/true` (interpreter %s; its defaults: own "
            "cgroup and cgroup namespace, device policy, seccomp)" % (launcher, label, interp)))

    pyctr("pyctr", launcher, interp)
    if args.baseline:
        base_launcher, base_interp = launcher_and_interpreter(args.baseline)
        precompile(base_interp)
        pyctr("pyctr-baseline", base_launcher, base_interp)

    if not shutil.which("runc"):
        raise PyctrError("runc is not installed (apt-get install runc): it is the peer")
    config = write_bundle(os.path.join(work, "bundle"), rootfs)

    def oci(tool):
        state = os.path.join(work, tool + "-state")
        bundle = os.path.join(work, "bundle-" + tool)
        os.mkdir(bundle)

        def request(i):
            cid = "%s-%s-%d" % (tag, tool, i + 1000)
            config_for(bundle, config, "/%s/%s" % (CGROUP_PARENT % os.getpid(), cid))
            return {"steps": [step([tool, "--root", state, "run", "--bundle", bundle, cid])],
                    "on_fail": [step([tool, "--root", state, "delete", "--force", cid])]}
        return request

    confined = ("pid, ipc, uts, mount, network and cgroup namespaces; read-only root; "
                "its own cgroup (cgroupsPath), device policy and seccomp profile as pyctr's")
    contenders.append(harness.CommandContender(
        "runc", plain, oci("runc"), note="`runc run` of a `runc spec` bundle (%s)" % confined))

    if shutil.which("crun"):
        prefix = crun_runner_prefix()
        crun_runner = runners.add(harness.Runner("crun", prefix=prefix, env=env))
        contenders.append(harness.CommandContender(
            "crun", crun_runner, oci("crun"),
            note="`crun run`, the same config.json" + (
                "; timed from a mount namespace without /sys/fs/cgroup/unified "
                "(crun 1.8.1 refuses hybrid cgroups)" if prefix else "")))
    else:
        notes.append("crun not installed: skipped (apt-get install crun)")

    if shutil.which("bwrap"):
        argv = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                "--ro-bind", rootfs, "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]
        contenders.append(harness.CommandContender(
            "bwrap", plain, lambda i: {"steps": [step(argv)]},
            note="`bwrap --unshare-{pid,ipc,uts,net} --ro-bind ROOTFS / --proc /proc "
            "--dev /dev /bin/true` (no cgroup, cgroup namespace, device policy or seccomp)"))
    else:
        notes.append("bwrap not installed: skipped (apt-get install bubblewrap)")

    contenders.append(harness.CommandContender(
        "python", plain, lambda i: {"steps": [step([interp, "-S", "-c", "pass"])]},
        note="`%s -S -c pass`: the bare interpreter as the `pyctr` command starts it "
        "(no site), a floor for any Python runtime" % interp))

    notes.append("pyctr timed from %s (%s), byte-compiled first; PYTHONDONTWRITEBYTECODE "
                 "unset for timed runs" % (pkg, install_kind(pkg)))
    notes.append("timed by a loop runner (posix_spawn + waitpid, perf_counter_ns) started "
                 "once per environment; wrappers are never inside a timed run")
    notes.append("CPU ms leaves out the kernel's threads for every contender, and pyctr's "
                 "cgroup warm-up process (pyctr-front forks it twice, so no one waits for "
                 "it)")
    return contenders, notes, {"pyctr (timed)": harness.tool_version(launcher),
                               "python (timed)": harness.tool_version(interp)}


class Runners:
    """Starts runners and stops every one of them, whatever happens."""

    def __init__(self):
        self.started = []

    def add(self, runner):
        runner.start()
        self.started.append(runner)
        return runner

    def close(self):
        for r in self.started:
            r.close()


def _require_root():
    if os.geteuid() != 0:
        raise PyctrError("bench startup needs root (runc, crun and pyctr run as root)")


def command(paths, argv):
    args = parse(argv)
    _require_root()
    if args.venv:
        if args.pyctr:
            raise PyctrError("bench startup: give --venv or --pyctr, not both")
        args.pyctr = install_copy(args.venv)
    if args.profile:
        return profile(paths, args)
    if not 0 <= args.busy <= BUSY_MAX:
        raise PyctrError("bench startup: --busy is 0 to %d, not %d" % (BUSY_MAX, args.busy))
    out = args.out or harness.default_out_dir("startup")
    work = tempfile.mkdtemp(prefix="pyctr-bench-", dir="/run")
    runners = Runners()
    busy = []
    try:
        contenders, notes, versions = build(paths, args, work, runners)
        if args.busy:
            notes.append("%d CPU-bound process%s ran beside every run (`--busy %d`): a loaded "
                         "node" % (args.busy, "" if args.busy == 1 else "es", args.busy))
        bench = harness.Benchmark(
            "startup", "pyctr run --net=none vs runc, crun, bwrap: %s /bin/true" % args.image,
            "ms", contenders, peer="runc", runs=args.runs, warmup=args.warmup, notes=notes,
            cpu=True,
            comparisons=[("pyctr", c.name, TARGETS.get(c.name))
                         for c in contenders if c.name != "pyctr"])
        facts = harness.machine_facts(versions)  # before the runs: their load, their date
        busy = start_busy(args.busy)
        result = bench.run()
    finally:
        stop_busy(busy)
        runners.close()
        left = _leftovers(work) + _remove_cgroups(CGROUP_PARENT % os.getpid())
        shutil.rmtree(work, ignore_errors=True)
    if left:
        result.bench.notes.append("left behind (then removed): " + ", ".join(left))
    harness.emit(result, out, facts)
    return 1 if result.failed else 0


def _leftovers(work):
    """Containers the contenders left in their private state dirs."""
    left = []
    for tool, sub in (("runc", "runc-state"), ("crun", "crun-state"),
                      ("pyctr", os.path.join("pyctr-state", "containers")),
                      ("pyctr-baseline", os.path.join("pyctr-baseline-state", "containers"))):
        try:
            left += ["%s:%s" % (tool, name) for name in sorted(os.listdir(os.path.join(work, sub)))]
        except FileNotFoundError:
            pass
    return left


def _remove_cgroups(parent):
    """Remove runc's and crun's cgroup parent (/sys/fs/cgroup/*/PARENT) in
    every hierarchy; returns the container groups that were left in it."""
    import glob
    left = []
    for top in glob.glob("/sys/fs/cgroup/" + parent) + glob.glob("/sys/fs/cgroup/*/" + parent):
        for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            if directory != top:
                left.append("cgroup %s" % directory)
            try:
                os.rmdir(directory)
            except OSError:
                pass
    return left


# --------------------------------------------------------------- profile

def parse_importtime(stderr):
    """[(name, self_us, cumulative_us, importer)] from `-X importtime` output.
    Python prints a module when its import ends, after the modules it
    imported, one level deeper; so a module's importer is the next line one
    level up (None at the top level)."""
    entries = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "[us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        depth = (len(name) - len(name.lstrip(" ")) - 1) // 2
        entries.append((depth, name.strip(), int(self_us), int(cum_us)))
    out = []
    for i, (depth, name, self_us, cum_us) in enumerate(entries):
        importer = next((n for d, n, _, _ in entries[i + 1:] if d == depth - 1), None)
        out.append((name, self_us, cum_us, importer))
    return out


def profile(paths, args, repeat=5):
    """Print where pyctr's start-up goes: `-X importtime` (asked through the
    environment, so the launcher runs its interpreter as it always does),
    median of runs."""
    import statistics
    import subprocess
    label, _ = resolve_rootfs(paths, args.image)
    launcher, interp = launcher_and_interpreter(args.pyctr)
    precompile(interp)
    work = tempfile.mkdtemp(prefix="pyctr-bench-", dir="/run")
    per_module, importers = {}, {}
    try:
        for _ in range(repeat):
            out = subprocess.run(
                [launcher, "--root", os.path.join(work, "state"),
                 "--data", paths.data, "run", "--rm", "--net=none", label, "/bin/true"],
                capture_output=True, text=True,
                env=dict(timed_env(), PYTHONPROFILEIMPORTTIME="1"))
            if out.returncode:
                lines = [l for l in out.stderr.splitlines() if not l.startswith("import time:")]
                raise PyctrError("pyctr run failed while profiling: %s"
                                 % (lines[-1] if lines else "exit %d" % out.returncode))
            for name, self_us, cum_us, importer in parse_importtime(out.stderr):
                per_module.setdefault(name, []).append((self_us, cum_us))
                importers[name] = importer
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [(statistics.median(s for s, _ in v), statistics.median(c for _, c in v), name)
            for name, v in per_module.items()]
    total = sum(r[0] for r in rows)
    print("pyctr start-up imports (%s, median of %d runs): %d modules, %.1f ms in imports"
          % (launcher, repeat, len(rows), total / 1000))
    for key, what in ((1, "cumulative"), (0, "self")):
        print("\nTop %d by %s time:" % (args.top, what))
        print("%9s %9s  %-32s %s" % ("self ms", "cumul ms", "module", "imported by"))
        for s, c, name in sorted(rows, key=lambda r: -r[key])[:args.top]:
            print("%9.2f %9.2f  %-32s %s" % (s / 1000, c / 1000, name,
                                             importers.get(name) or "-"))
    return 0
