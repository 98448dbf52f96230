"""`pyctr bench engines`: wall time of `podman run --rm IMAGE /bin/true` and
`ctr run --rm IMAGE ID /bin/true` with pyctr, runc and crun as the OCI
runtime, interleaved; each ratio is against runc under the same engine.

What each contender does (as root, busybox imported into each engine):
  podman+R   podman --root .. --runroot .. --tmpdir .. --runtime R
             run --rm --network none --cgroup-parent P IMAGE /bin/true
             (conmon, create, start, wait, delete --force, storage mount/unmount)
  ctr+R      ctr --address SOCK run --rm --runc-binary R IMAGE ID /bin/true
             (a containerd of our own; its runc shim runs R create/start/delete)
Every engine is a private world (pyctr.engines): its own state, config and
cgroup parent; runtimes keep their default --root (podman passes none,
containerd's shim its own), as a user's would.

crun 1.8.1 refuses this host's hybrid cgroup layout. Its podman contender is
timed by a runner started in a mount namespace where /sys/fs/cgroup/unified is
unmounted (paid once, never inside a timed run), with a podman world of its
own; its containerd is a second daemon started in such a namespace, so the
shim and crun live there. Until pyctr has the OCI verbs (issue 9) its
contenders are left out and the table says so.
"""
import os
import shutil
import subprocess
import tempfile

from pyctr import engines, seccomp
from pyctr.bench import harness
from pyctr.bench.startup import (Runners, crun_runner_prefix, install_copy, install_kind,
                                 launcher_and_interpreter, precompile, timed_env,
                                 timing_parser)
from pyctr.errors import PyctrError
from pyctr.paths import Paths
from pyctr.progress import Progress


def parse(argv):
    p = timing_parser("bench engines", "Time `podman run --rm` and `ctr run --rm` of "
                      "IMAGE /bin/true with pyctr, runc and crun as the OCI runtime.",
                      "engines")
    p.set_defaults(runs=15)
    return p.parse_args(argv)


class Worlds:
    """The engine worlds of one run; all closed (and their directories
    removed) whatever happens."""

    def __init__(self, work):
        self.work = work
        self.open = []

    def add(self, world):
        self.open.append(world)
        return world

    def close(self):
        for world in reversed(self.open):
            world.close()


def podman_request(world, env):
    def request(i):
        return {"steps": [harness.step(world.run_argv("--rm", engines.IMAGE, "/bin/true"),
                                       env=env)],
                "on_fail": [harness.step(world.argv("rm", "--all", "--force", "--time", "0"),
                                         env=env)]}
    return request


def ctr_request(world, runtime, tag):
    def request(i):
        cid = "%s-%d" % (tag, i + 1000)
        return {"steps": [harness.step(world.run_argv(runtime, cid, "/bin/true",
                                                      options=["--rm"]))],
                "on_fail": [harness.step(world.ctr_argv("task", "delete", "--force", cid)),
                            harness.step(world.ctr_argv("container", "delete", cid))]}
    return request


def build(args, work, runners, worlds, rootfs):
    """The contenders and notes about them."""
    launcher, interp = launcher_and_interpreter(args.pyctr)
    runtimes = [("runc", shutil.which("runc"))]
    notes = []
    if engines.has_oci_verbs([launcher]):
        notes.append("pyctr timed: %s (%s), byte-compiled first; podman and containerd "
                     "run it as `pyctr`" % (launcher, install_kind(precompile(interp))))
        if os.path.basename(launcher) != "pyctr":
            # podman picks a runtime's JSON error log by its name, as for a user's
            # /usr/local/bin/pyctr
            os.makedirs(os.path.join(work, "bin"))
            os.symlink(launcher, os.path.join(work, "bin", "pyctr"))
            launcher = os.path.join(work, "bin", "pyctr")
        runtimes.insert(0, ("pyctr", launcher))
    else:
        notes.append("pyctr (%s): not available: %s; its contenders are left out"
                     % (launcher, engines.NO_OCI_VERBS))
    crun = shutil.which("crun")
    if crun:
        runtimes.append(("crun", crun))
    else:
        notes.append("crun not installed: skipped (apt-get install crun)")

    plain = runners.add(harness.Runner("plain", env=timed_env()))
    crun_prefix = crun_runner_prefix()
    contenders = []
    steps = 2 * len(runtimes)
    with Progress("bench engines: preparing", total=steps) as p:
        for name, path in runtimes:
            p.step("podman world for %s (importing %s)" % (name, engines.IMAGE))
            world = worlds.add(engines.Podman(os.path.join(work, "podman-" + name), path,
                                              supports_json=("pyctr",)))
            world.import_rootfs(rootfs)
            env = {k: world.env[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
                                             "TMPDIR")}
            runner = plain
            if name == "crun" and crun_prefix:
                runner = runners.add(harness.Runner("crun", prefix=crun_prefix,
                                                    env=timed_env()))
            contenders.append(harness.CommandContender(
                "podman+" + name, runner, podman_request(world, env),
                peer="podman+runc", note="`podman --runtime %s run --rm --network none "
                "IMAGE /bin/true`%s" % (path, "; timed from a mount namespace without "
                                        "/sys/fs/cgroup/unified" if runner is not plain
                                        else "")))
        shared = None
        for name, path in runtimes:
            p.step("containerd for %s" % name)
            own = name == "crun" and crun_prefix
            if own or shared is None:
                world = worlds.add(engines.Containerd(os.path.join(
                    work, "containerd-" + ("crun" if own else "main"))))
                world.start(prefix=crun_prefix if own else ())
                world.import_rootfs(rootfs)
                if not own:
                    shared = world
            else:
                world = shared
            contenders.append(harness.CommandContender(
                "ctr+" + name, plain, ctr_request(world, path, "pbe%d-%s" % (os.getpid(), name)),
                peer="ctr+runc", note="`ctr run --rm --runc-binary %s IMAGE ID /bin/true`%s"
                % (path, "; a containerd of its own, started in a mount namespace without "
                   "/sys/fs/cgroup/unified" if own else "")))
    if crun_prefix:
        notes.append("crun 1.8.1 refuses hybrid cgroups (v1 plus /sys/fs/cgroup/unified); "
                     "under both engines it runs in a mount namespace without the unified "
                     "mount")
    notes.append("each engine is a private world (own state, config, containerd daemon); "
                 "podman: cgroupfs, events to a file, `--network none`")
    versions = {"podman": harness.tool_version("podman"),
                "containerd": harness.tool_version("containerd"),
                "conmon": harness.tool_version("conmon")}
    if runtimes[0][0] == "pyctr":
        versions["pyctr (timed)"] = harness.tool_version(launcher)
    return contenders, notes, versions


def _names(directory):
    try:
        return set(os.listdir(directory))
    except FileNotFoundError:
        return set()


def command(paths, argv):
    args = parse(argv)
    if os.geteuid() != 0:
        raise PyctrError("bench engines needs root (podman and containerd run as root)")
    missing = engines.missing_tools()
    if missing:
        raise PyctrError("bench engines: not installed: %s (./install.sh --test)"
                         % " ".join(missing))
    if args.venv:
        if args.pyctr:
            raise PyctrError("bench engines: give --venv or --pyctr, not both")
        args.pyctr = install_copy(args.venv)
    from pyctr.bench.startup import resolve_rootfs
    _, rootfs = resolve_rootfs(paths, args.image)
    out = args.out or harness.default_out_dir("engines")
    work = tempfile.mkdtemp(prefix="pbe-", dir="/run")  # podman: runroot <= 50 characters
    runners, worlds = Runners(), Worlds(work)
    # pyctr under the engines keeps its default --root, where it caches the
    # engines' compiled seccomp profiles: what the runs add there goes at the end
    cache = seccomp.cache_dir(Paths())
    cached = _names(cache)
    left = []
    try:
        contenders, notes, versions = build(args, work, runners, worlds, rootfs)
        names = [c.name.split("+")[1] for c in contenders if c.name.startswith("ctr+")]
        bench = harness.Benchmark(
            "engines", "podman and containerd with %s: %s /bin/true"
            % (", ".join(names), args.image), "ms", contenders, peer="podman+runc", runs=args.runs,
            warmup=args.warmup, notes=notes,
            comparisons=[(c.name, c.peer, 1.0 if c.name.endswith("+pyctr") else None)
                         for c in contenders if c.name != c.peer])
        facts = harness.machine_facts(versions)
        result = bench.run()
    finally:
        runners.close()
        for world in worlds.open:
            left += ["%s: %s" % (os.path.basename(world.base), l) for l in world.leftovers()]
        worlds.close()
        subprocess.run(["rm", "-rf", "--one-file-system", work])
        for name in _names(cache) - cached:
            try:
                os.unlink(os.path.join(cache, name))
            except FileNotFoundError:
                pass
    if left:
        result.bench.notes.append("left behind (then removed): " + ", ".join(left))
    harness.emit(result, out, facts)
    return 1 if result.failed else 0
