"""`pyctr bench scale`: a node running N = 1, 10, 100, 1,000 detached
containers. For each N, a round in which every runtime:

  start    N containers one after another, each `sleep` for good, each start
           timed alone (the runtime's command until it returns); the
           runtimes take turns (the i-th container of each, who goes first
           rotating), so a drift of the machine's load hits all alike:
             pyctr  LAUNCHER --root STATE --data DATA run -d --net=NET --name ID IMAGE sleep
             runc   runc --root STATE run -d --bundle B ID
             crun   crun --root STATE run -d --bundle B ID
           bundles as `bench startup` makes them (a `runc spec` bundle on the
           image's rootfs with pyctr's confinement: own cgroup, cgroup
           namespace, device policy, seccomp), process `sleep`
  memory   PSS (/proc/PID/smaps_rollup) of the runtime's host-side processes
           while the N run, divided by N. pyctr: the owner process named in
           each container's record (the -d monitor). runc and crun: every
           process left running their binary with this round's state root
           (after `run -d` there is none: they keep nothing on the host).
           The containers' own processes (sleep) count for nobody.
  ps       `pyctr ps`, `runc list`, `crun list` while the N run (median of 3)
  rm       removing all N, killing them: `pyctr rm -f ID...` (one command),
           `crun delete --force --regex ^PREFIX` (one command), and for runc,
           which deletes one id per call, `runc delete --force ID` N times

With --rounds R, each N is measured R times, each round after the node
has settled (the CPUs idle again after the last round's removals, at most
SETTLE_MAX s), and the summary gives each runtime's median last/first over
the rounds: one round's last/first moves with the machine's load during it
(on the 2-core test VM, 0.94 to 1.17 for the same build, seven rounds).

--net=veth puts everything in a simulated node (testbed.py: a netns of its
own; pyctr's containers on a /22 network there made by `pyctr net create`,
its defaults kept: probe on, which a bridge without other ports skips);
runc and crun then run in the same netns, their containers
with a network namespace holding only lo (no CNI plugin here).

Everything runs as the one timing runner per environment that `bench startup`
uses (runner.py); everything a round made is removed at its end, and all of
it again on a failure or Ctrl-C (what had to be removed then is reported).
Results: <out>/scale.md, .csv, .json (every start time) and .png.
"""
import json
import os
import shutil
import statistics
import tempfile

from pyctr.bench import harness, startup
from pyctr.errors import PyctrError

RUNTIMES = ("pyctr", "runc", "crun")
DEFAULT_COUNTS = "1,10,100,1000"
SUBNET = "10.222.0.0/22"  # --net=veth: 1,021 addresses for containers
MAX_VETH = 1000
# Starts compared: the first tenth against the last tenth, at least EDGE of
# each (all of them below that): ten at each end of 1,000 let a few slow
# starts move last/first from one run of the same build to the next.
EDGE = 10
EDGE_SHARE = 10


def edge(count):
    """How many starts at each end last/first compares."""
    return min(count, max(EDGE, count // EDGE_SHARE))
PS_RUNS = 3  # ps is timed this many times per round: the median
START_TIMEOUT = 60  # seconds: a start still running then has hung (it fails the round)
SETTLE_IDLE = 0.9  # a round starts once the CPUs were this idle over SETTLE_WINDOW s
SETTLE_WINDOW = 1.0
SETTLE_MAX = 30.0


def parse(argv):
    from pyctr.cli import arg_parser
    p = arg_parser("bench scale", "Start N detached containers (N = each of --counts) with "
                   "pyctr, runc and crun: time of each start, host-side memory per container, "
                   "ps and rm of all N.")
    p.add_argument("--counts", default=DEFAULT_COUNTS,
                   help="numbers of containers, comma-separated (%s)" % DEFAULT_COUNTS)
    p.add_argument("--runtimes", default=",".join(RUNTIMES),
                   help="comma-separated, of %s (all)" % ", ".join(RUNTIMES))
    p.add_argument("--rounds", type=int, default=1,
                   help="measure each N this many times; the summary takes the median (1)")
    p.add_argument("--net", choices=("none", "veth"), default="none",
                   help="pyctr's --net: none, or veth on a /22 network in a simulated node")
    p.add_argument("--image", default="busybox", help="image name or rootfs directory")
    p.add_argument("--pyctr", metavar="LAUNCHER",
                   help="pyctr launcher to time (default %s, else pyctr on PATH)"
                   % startup.DEFAULT_LAUNCHER)
    p.add_argument("--venv", metavar="DIR", help="first install this source tree non-editable "
                   "into venv DIR and time its launcher (as bench startup --venv)")
    p.add_argument("--out", help="results directory (default results/scale-DATE)")
    return p.parse_args(argv)


def counts_of(text, net):
    try:
        counts = sorted({int(word) for word in text.split(",") if word.strip()})
    except ValueError as e:
        raise PyctrError("bench scale: --counts takes numbers, e.g. 1,10,100") from e
    if not counts or counts[0] < 1:
        raise PyctrError("bench scale: --counts must be 1 or more each")
    if net == "veth" and counts[-1] > MAX_VETH:
        raise PyctrError("bench scale: --net=veth takes at most %d containers (a /22)"
                         % MAX_VETH)
    return counts


def runtimes_of(text):
    names = list(dict.fromkeys(word.strip() for word in text.split(",") if word.strip()))
    unknown = [name for name in names if name not in RUNTIMES]
    if unknown or not names:
        raise PyctrError("bench scale: unknown runtime %s (choose from %s)"
                         % (", ".join(unknown) or "(none)", ", ".join(RUNTIMES)))
    for name in names:
        if name != "pyctr" and not shutil.which(name):
            raise PyctrError("bench scale: %s is not installed (apt-get install %s)"
                             % (name, name))
    return names


# ------------------------------------------------------------ one runtime

class Pyctr:
    name = "pyctr"

    def __init__(self, launcher, paths, image, runner, net):
        self.launcher, self.paths, self.image, self.runner = launcher, paths, image, runner
        self.net = net
        self.base = [launcher, "--root", paths.root, "--config", paths.config,
                     "--data", paths.data]

    def start(self, cid):
        return [harness.step(self.base + ["run", "-d", "--net=" + self.net, "--name", cid,
                                          self.image, "sleep", "1000000"], timeout=START_TIMEOUT)]

    def owners(self, ids):
        """{pid: container} of the host-side processes the records name."""
        out = {}
        for cid in ids:
            try:
                with open(os.path.join(self.paths.containers, cid, "state.json")) as f:
                    out[json.load(f)["owner_pid"]] = cid
            except (OSError, ValueError, KeyError):
                pass
        return out

    def ps(self):
        return [harness.step(self.base + ["ps"])]

    def remove(self, ids, prefix):
        return [harness.step(self.base + ["rm", "-f"] + list(ids))]

    def left(self):
        try:
            return sorted(os.listdir(self.paths.containers))
        except FileNotFoundError:
            return []

    def clean(self, ids):
        if ids:
            _quietly(self.runner.prefix + self.base + ["rm", "-f"] + list(ids))


class Oci:
    """runc or crun `run -d` of a bundle per container."""

    def __init__(self, name, work, config, runner):
        self.name, self.runner, self.config = name, runner, config
        self.state = os.path.join(work, name + "-state")
        self.bundle = os.path.join(work, "bundle-" + name)
        os.mkdir(self.bundle)

    def start(self, cid):
        startup.config_for(self.bundle, self.config,
                           "/%s/%s" % (startup.CGROUP_PARENT % os.getpid(), cid))
        return [harness.step([self.name, "--root", self.state, "run", "-d", "--bundle",
                              self.bundle, cid], timeout=START_TIMEOUT)]

    def owners(self, ids):
        """Processes running the runtime's binary with our state root."""
        out = {}
        for pid in _pids():
            argv = _cmdline(pid)
            if argv and os.path.basename(argv[0]) == self.name and self.state in argv:
                out[pid] = self.name
        return out

    def ps(self):
        return [harness.step([self.name, "--root", self.state, "list"])]

    def remove(self, ids, prefix):
        if self.name == "crun":  # one call for all: its --regex
            return [harness.step(["crun", "--root", self.state, "delete", "--force",
                                  "--regex", "^%s" % prefix])]
        return [harness.step([self.name, "--root", self.state, "delete", "--force", cid],
                             always=True) for cid in ids]

    def left(self):
        try:
            return sorted(os.listdir(self.state))
        except FileNotFoundError:
            return []

    def clean(self, ids):
        for cid in self.left():
            _quietly(self.runner.prefix + [self.name, "--root", self.state, "delete", "--force",
                                           cid])


def _quietly(argv):
    """Run a clean-up command without the timing runner (which a Ctrl-C
    may have stopped); its failure is seen in what is left afterwards."""
    import subprocess
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=600)
    except (OSError, subprocess.SubprocessError):
        pass


def _pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def pss_kib(pid):
    """Proportional set size of pid in KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# ---------------------------------------------------------------- a round

def _cpu_times():
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]  # all, idle + iowait


def settle():
    """Wait until the CPUs were SETTLE_IDLE idle over SETTLE_WINDOW (the
    kernel finishes a removal's work in the background: offline cgroups,
    network namespaces); at most SETTLE_MAX s. Returns (seconds waited,
    settled?)."""
    import time
    t0 = time.monotonic()
    while True:
        total0, idle0 = _cpu_times()
        time.sleep(SETTLE_WINDOW)
        total1, idle1 = _cpu_times()
        quiet = total1 > total0 and (idle1 - idle0) / (total1 - total0) >= SETTLE_IDLE
        waited = time.monotonic() - t0
        if quiet or waited >= SETTLE_MAX:
            return waited, quiet


def one_round(runtimes, count, tag, number=1):
    """Start `count` containers with each runtime, measure, remove them all;
    a dict of figures per runtime. Starts are interleaved: the i-th of each
    runtime in turn (who goes first rotates), so a drift of the machine's
    load hits every runtime alike, not whichever ran last."""
    from pyctr.progress import Progress
    chunk = max(1, count // 10)
    rows = [{"runtime": runtime.name, "count": count, "round": number, "starts_ms": [],
             "prefix": "%s-%s-%d-%d-" % (tag, runtime.name, count, number)}
            for runtime in runtimes]
    ids = [["%s%d" % (row["prefix"], i) for i in range(count)] for row in rows]
    pairs = list(zip(runtimes, rows, ids))
    with Progress("bench scale: %d containers per runtime, round %d" % (count, number),
                  total=(count + chunk - 1) // chunk + 3) as progress:
        try:
            for i in range(count):
                if i % chunk == 0:
                    progress.step("starting %d-%d" % (i + 1, min(i + chunk, count)))
                turn = i % len(pairs)
                for runtime, row, names in pairs[turn:] + pairs[:turn]:
                    row["starts_ms"].append(_timed(runtime, runtime.start(names[i]),
                                                   "start %s" % names[i]))
            progress.step("memory")
            for runtime, row, names in pairs:
                owners = runtime.owners(names)
                row["owners"] = len(owners)
                row["pss_kib"] = sum(pss_kib(pid) for pid in owners)
            progress.step("ps")
            for _ in range(PS_RUNS):
                for runtime, row, _ in pairs:
                    row.setdefault("ps_runs", []).append(_timed(runtime, runtime.ps(), "ps"))
            progress.step("rm")
            for runtime, row, names in pairs:
                row["rm_ms"] = _timed(runtime, runtime.remove(names, row["prefix"]), "rm")
        finally:
            for runtime, row, _ in pairs:
                left = runtime.left()
                if left:
                    row["left"] = left
                    runtime.clean(left)
    for row in rows:
        _figures(row, count)
    return rows


def _figures(row, count):
    starts = row["starts_ms"]
    n = edge(count)
    row.update(first_ms=starts[0], first_median_ms=statistics.median(starts[:n]),
               last_median_ms=statistics.median(starts[-n:]), edge=n,
               median_ms=statistics.median(starts), ps_ms=statistics.median(row["ps_runs"]),
               pss_per_container_mib=row["pss_kib"] / 1024 / count)
    row["last_to_first"] = row["last_median_ms"] / row["first_median_ms"]
    # growth per 100 running containers: least-squares slope of start time on index
    row["slope_ms_per_100"] = 100 * statistics.linear_regression(
        range(count), starts).slope if count > 2 else 0.0


def _timed(runtime, steps, what):
    reply = runtime.runner.time({"steps": steps})
    if reply["status"]:
        lines = [l for l in reply["stderr"].strip().splitlines() if l.strip()]
        raise PyctrError("bench scale: %s %s failed (exit %d): %s"
                         % (runtime.name, what, reply["status"],
                            lines[-1] if lines else "no message"))
    return reply["ns"] / 1e6


# ---------------------------------------------------------------- results

def summary(rows):
    """Per runtime and N over its rounds: each round's last/first and
    trend, and their medians."""
    groups = {}
    for row in rows:
        groups.setdefault((row["runtime"], row["count"]), []).append(row)
    out = []
    for (runtime, count), mine in groups.items():
        ratios = [row["last_to_first"] for row in mine]
        slopes = [row["slope_ms_per_100"] for row in mine]
        out.append({"runtime": runtime, "count": count, "rounds": len(mine),
                    "last_to_first_each": ratios,
                    "last_to_first": statistics.median(ratios),
                    "slope_ms_per_100": statistics.median(slopes),
                    "first_median_ms": statistics.median(r["first_median_ms"] for r in mine),
                    "last_median_ms": statistics.median(r["last_median_ms"] for r in mine)})
    return out


COLUMNS = (("runtime", "runtime", "%s"), ("N", "count", "%d"), ("round", "round", "%d"),
           ("1st start ms", "first_ms", "%.1f"),
           ("starts at each end", "edge", "%d"),
           ("first ones' median ms", "first_median_ms", "%.1f"),
           ("last ones' median ms", "last_median_ms", "%.1f"),
           ("last/first", "last_to_first", "%.2f"),
           ("trend ms per 100 more", "slope_ms_per_100", "%+.1f"),
           ("all median ms", "median_ms", "%.1f"),
           ("host processes", "owners", "%d"),
           ("PSS/container MiB", "pss_per_container_mib", "%.2f"),
           ("ps ms", "ps_ms", "%.0f"), ("rm all ms", "rm_ms", "%.0f"))


def markdown(rows, notes, facts):
    lines = ["# bench scale: N detached containers per runtime", "",
             "| " + " | ".join(title for title, _, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(form % row[key] for _, key, form in COLUMNS) + " |")
    overall = summary(rows)
    if any(s["rounds"] > 1 for s in overall):
        lines += ["", "Over the rounds (medians):", "",
                  "| runtime | N | rounds | last/first of each round | median last/first "
                  "| median trend ms per 100 more | first ones' ms, last ones' ms |",
                  "|---|---|---|---|---|---|---|"]
        for s in overall:
            lines.append("| %s | %d | %d | %s | %.2f | %+.1f | %.1f, %.1f |" % (
                s["runtime"], s["count"], s["rounds"],
                " ".join("%.2f" % r for r in s["last_to_first_each"]), s["last_to_first"],
                s["slope_ms_per_100"], s["first_median_ms"], s["last_median_ms"]))
    lines += [""] + ["- " + note for note in notes]
    if facts:
        lines.append("- machine: %s, %s CPUs, %s MiB, kernel %s, load %s at start, %s"
                     % (facts["cpu"], facts["nproc"], facts["memory_mib"], facts["kernel"],
                        " ".join("%.1f" % x for x in facts["loadavg"]), facts["date"]))
    return "\n".join(lines) + "\n"


def write(out, rows, notes, facts, work):
    import csv
    os.makedirs(out, exist_ok=True)
    written = {}
    path = os.path.join(out, "scale.md")
    with open(path, "w") as f:
        f.write(markdown(rows, notes, facts))
    written["md"] = path
    path = os.path.join(out, "scale.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([key for _, key, _ in COLUMNS])
        for row in rows:
            w.writerow([round(row[key], 3) if isinstance(row[key], float) else row[key]
                        for _, key, _ in COLUMNS])
    written["csv"] = path
    path = os.path.join(out, "scale.json")
    with open(path, "w") as f:
        json.dump({"rows": rows, "summary": summary(rows), "notes": notes, "facts": facts,
                   "work": work, "pid": os.getpid()}, f, indent=1)
    written["json"] = path
    png = chart(rows, os.path.join(out, "scale.png"), facts)
    if png:
        written["png"] = png
    return written


def rolling_median(values, window=25):
    """Median of each value's neighbourhood (window values centred on it)."""
    half = window // 2
    return [statistics.median(values[max(0, i - half):i + half + 1]) for i in range(len(values))]


def chart(rows, path, facts):
    """Start time against container index (each runtime's largest N), PSS
    per container and ps/rm time against N."""
    plt = harness.pyplot("pyctr bench scale")
    if plt is None:
        return None
    names = list(dict.fromkeys(row["runtime"] for row in rows))
    fig, (starts, memory, verbs) = plt.subplots(1, 3, figsize=(15, 4.5))
    for name in names:
        mine = [row for row in rows if row["runtime"] == name]
        top = max(row["count"] for row in mine)
        bigs = [row for row in mine if row["count"] == top]
        dots, = starts.plot(range(1, top + 1), bigs[0]["starts_ms"], ".", markersize=2,
                            alpha=0.4)
        for big in bigs:
            starts.plot(range(1, top + 1), rolling_median(big["starts_ms"]), "-",
                        color=dots.get_color(), alpha=1.0 if big is bigs[0] else 0.5,
                        label="%s (N=%d), rolling median%s" % (
                            name, top, ", each round" if len(bigs) > 1 else "")
                        if big is bigs[0] else None)
        mine = [row for row in mine if row["round"] == 1]
        counts = [row["count"] for row in mine]
        memory.plot(counts, [row["pss_per_container_mib"] for row in mine], "o-", label=name)
        line, = verbs.plot(counts, [row["ps_ms"] for row in mine], "o-", label=name + " ps")
        verbs.plot(counts, [row["rm_ms"] for row in mine], "s--", color=line.get_color(),
                   label=name + " rm all")
    starts.set(xlabel="container index", ylabel="start ms", title="each start")
    memory.set(xlabel="N running", ylabel="MiB", xscale="log",
               title="host-side runtime PSS per container")
    verbs.set(xlabel="N running", ylabel="ms", xscale="log", yscale="log", title="ps, rm of all")
    for ax in (starts, memory, verbs):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if facts:
        fig.suptitle("%s, %s CPUs, kernel %s" % (facts["cpu"], facts["nproc"], facts["kernel"]),
                     fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- command

def command(paths, argv):
    args = parse(argv)
    counts = counts_of(args.counts, args.net)
    if args.rounds < 1:
        raise PyctrError("bench scale: --rounds must be 1 or more")
    names = runtimes_of(args.runtimes)
    if os.geteuid() != 0:
        raise PyctrError("bench scale needs root (runc, crun and pyctr run as root)")
    if args.venv:
        if args.pyctr:
            raise PyctrError("bench scale: give --venv or --pyctr, not both")
        args.pyctr = startup.install_copy(args.venv)
    label, rootfs = startup.resolve_rootfs(paths, args.image)
    launcher, interp = startup.launcher_and_interpreter(args.pyctr)
    pkg = startup.precompile(interp)
    out = args.out or harness.default_out_dir("scale")
    work = tempfile.mkdtemp(prefix="pyctr-bench-scale-", dir="/run")
    runners, node, rows, notes, runtimes, left = startup.Runners(), None, [], [], [], []
    try:
        from pyctr.paths import Paths
        mine = Paths(root=os.path.join(work, "pyctr-state"),
                     config=os.path.join(work, "pyctr-config"), data=paths.data)
        prefix, net = [], "none"
        if args.net == "veth":
            node, net = _node(paths, mine)
            prefix = ["ip", "netns", "exec", node.netns]
        env = startup.timed_env()
        config = None
        for name in names:
            if name == "pyctr":
                runner = runners.add(harness.Runner("pyctr", prefix=prefix, env=env))
                runtimes.append(Pyctr(launcher, mine, label, runner, net))
                continue
            if config is None:
                config = startup.write_bundle(os.path.join(work, "bundle"), rootfs)
                config["process"]["args"] = ["sleep", "1000000"]
            runner_prefix = prefix + (startup.crun_runner_prefix() if name == "crun" else [])
            runner = runners.add(harness.Runner(name, prefix=runner_prefix, env=env))
            runtimes.append(Oci(name, work, config, runner))
        facts = harness.machine_facts({"pyctr (timed)": harness.tool_version(launcher)})
        tag = "ps%d" % os.getpid()
        for count in counts:
            for number in range(1, args.rounds + 1):
                waited, quiet = settle()
                for row in one_round(runtimes, count, tag, number):
                    row["settled_s"], row["settled"] = round(waited, 1), quiet
                    rows.append(row)
                    left += ["%s:%s" % (row["runtime"], cid) for cid in row.get("left", ())]
    finally:
        # A second Ctrl-C must not stop the clean-up half-way; its commands
        # inherit the ignored SIGINT.
        import signal
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for runtime in runtimes:
                stray = runtime.left()
                if stray:
                    left += ["%s:%s" % (runtime.name, cid) for cid in stray]
                    runtime.clean(stray)
        finally:
            runners.close()
            left += startup._remove_cgroups(startup.CGROUP_PARENT % os.getpid())
            if node is not None:
                node.testbed.down()
            shutil.rmtree(work, ignore_errors=True)
            signal.signal(signal.SIGINT, interrupt)
    notes += _notes(args, launcher, interp, pkg, rows)
    if left:
        notes.append("left behind (then removed): " + ", ".join(left))
    written = write(out, rows, notes, facts, work)
    print(markdown(rows, notes, facts), end="")
    print("Wrote %s" % ", ".join(written[k] for k in ("md", "csv", "json", "png")
                                 if k in written))
    return 0


def _node(paths, mine):
    """--net=veth: a simulated node with pyctr's /22 network defined in it."""
    import sys
    from pyctr import testbed
    bed = testbed.Testbed(prefix="pbs", nodes=1, data=paths.data)
    bed.up()
    node = bed.nodes[0]
    argv = [sys.executable, "-m", "pyctr", "--root", mine.root, "--config", mine.config,
            "--data", mine.data, "net", "create", "scale", "--subnet", SUBNET,
            "--bridge", "pbs0"]
    done = node.run(argv)
    if done.returncode:
        bed.down()
        raise PyctrError("bench scale: cannot define the network: %s"
                         % done.stderr.strip()[-300:])
    return node, "scale"


def _notes(args, launcher, interp, pkg, rows):
    notes = [
        "each start timed alone: the runtime's command until it returns (pyctr run -d: "
        "the container runs; runc/crun run -d: the same)",
        "starts interleaved: the i-th container of each runtime in turn, who goes first "
        "rotating; last/first: median of the last starts over the median of the first ones, "
        "a tenth of N at each end (at least %d, all of them below that); "
        "trend: least-squares slope of start time over the container's index, per 100 "
        "containers" % EDGE,
        "memory: PSS (smaps_rollup) of the runtime's host-side processes while the N run, "
        "over N; pyctr: the owner process each record names; runc, crun: any process "
        "running their binary with this round's --root (none stays after run -d); the "
        "containers' own processes are not counted",
        "rm all: pyctr rm -f ID... (one command), crun delete --force --regex (one command), "
        "runc delete --force ID once per container (it takes one id)",
        "pyctr: %s (interpreter %s, package %s: %s); runc/crun: `runc spec` bundle on the "
        "image rootfs, read-only, with pyctr's confinement (cgroup, cgroupns, devices, "
        "seccomp), as bench startup" % (launcher, interp, pkg, startup.install_kind(pkg)),
    ]
    if rows:
        notes.append("rounds: %d per N, each after the node settled (CPUs %d %% idle over "
                     "%.0f s, at most %.0f s waited): %s" % (
                         args.rounds, SETTLE_IDLE * 100, SETTLE_WINDOW, SETTLE_MAX, "; ".join(
                             "N=%d round %d %s after %.0f s" % (
                                 row["count"], row["round"],
                                 "settled" if row["settled"] else "NOT settled",
                                 row["settled_s"])
                             for row in rows if row["runtime"] == rows[0]["runtime"])))
    if args.net == "veth":
        notes.append("--net=veth: all runtimes in one simulated node (netns); pyctr's "
                     "containers on a /22 bridge network there (probe on, as by default: a bridge "
                     "without other ports is not probed), runc's and "
                     "crun's with loopback only (no CNI plugin)")
    else:
        notes.append("--net=none for pyctr; runc/crun bundles: a network namespace with lo only")
    if startup.crun_runner_prefix() and "crun" in args.runtimes:
        notes.append("crun run in a mount namespace without /sys/fs/cgroup/unified "
                     "(crun 1.8.1 refuses hybrid cgroups), as in bench startup")
    return notes
