"""Shared machinery for every pyctr benchmark.

A Benchmark measures each Contender `runs` times after `warmup` discarded
rounds. Contenders are interleaved round-robin (the starting one rotates each
round), so slow drifts of the machine - page cache, CPU frequency, a noisy
neighbour - hit all of them alike instead of whichever ran last. Each result
is the median of its samples with quartiles/IQR/min/max, and the ratio of its
median to the median of the named peer measured in the same run. Nothing is
ever compared with a stored figure.

Timing commands: we time them ourselves (runner.py: posix_spawn + waitpid
between two perf_counter_ns reads) rather than with `hyperfine`, because
hyperfine runs each command's samples back to back (no interleaving), cannot
time from inside a namespace without timing the wrapper that enters it, and
it cannot hand a fresh container id to each run. The runner costs no more
than hyperfine would (a whole `/bin/true` measures ~0.7 ms through it on the
development VM, ~0.9 ms under `hyperfine -N`), and every contender pays it.

Results: `<out>/<key>.md` (the table), `.csv` (one row per contender),
`.json` (everything, raw samples and machine facts included) and `.png`
(box plot; matplotlib imported only here).
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from pyctr.errors import PyctrError
from pyctr.progress import Progress

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner.py")


class ContenderFailed(Exception):
    """One contender failed one run; it is dropped, the others go on."""


# ----------------------------------------------------------------- runners

class Runner:
    """A runner.py process started once under `prefix` (e.g. an `unshare`
    wrapper); then every timed command is spawned by it, from inside."""

    def __init__(self, name, prefix=(), python=None, env=None):
        self.name = name
        self.prefix = list(prefix)
        self.python = python or sys.executable
        self.env = env
        self.proc = None
        self.log = None

    def start(self):
        import tempfile
        self.log = tempfile.TemporaryFile(prefix="pyctr-bench-runner-")
        self.proc = subprocess.Popen(
            self.prefix + [self.python, RUNNER], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, env=self.env, text=True,
            bufsize=1)
        line = self.proc.stdout.readline()
        if not line.startswith('{"ready"'):
            self.proc.wait()
            raise PyctrError("cannot start the %s timing runner (%s): %s" % (
                self.name, " ".join(self.prefix) or "plain", self._log_tail()))
        return self

    def _log_tail(self):
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").strip()
        return text.splitlines()[-1] if text else "exited %s" % self.proc.returncode

    def time(self, request):
        """Run one request (see runner.py); return its reply dict."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise PyctrError("the %s timing runner died: %s" % (self.name, self._log_tail()))
        return json.loads(line)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log:
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False


def step(argv, env=None, stdin=None, always=False, timeout=None):
    """One command of a timed request; argv[0] is resolved on PATH here, so
    the runner's posix_spawn needs no lookup. timeout: seconds after which
    the runner kills it (a failure; see runner.py)."""
    argv = list(argv)
    if not os.path.isabs(argv[0]):
        found = shutil.which(argv[0])
        if not found:
            raise PyctrError("%s: not found on PATH" % argv[0])
        argv[0] = found
    return {"argv": argv, "env": env, "stdin": stdin, "always": always, "timeout": timeout}


# --------------------------------------------------------------- contenders

class Contender:
    """Something measured: `measure(i)` returns one sample (in the bench's
    unit) for run number i (warm-ups have negative i). `cpu` is the CPU ms
    that sample's processes used, where the contender knows it, else None."""

    cpu = None

    def __init__(self, name, measure, note="", peer=None):
        self.name = name
        self._measure = measure
        self.note = note
        self.peer = peer

    def measure(self, i):
        return self._measure(i)


class CommandContender(Contender):
    """Wall time in ms of a request built per run by `request(i)` (so each
    run can get a unique container id), timed by `runner`; `cpu` is the CPU
    ms of the same run."""

    def __init__(self, name, runner, request, note="", peer=None):
        super().__init__(name, None, note, peer)
        self.runner = runner
        self.request = request

    def measure(self, i):
        req = self.request(i)
        reply = self.runner.time(req)
        if reply["status"]:
            failed = req["steps"][reply["step"]]["argv"]
            lines = [l for l in reply["stderr"].strip().splitlines() if l.strip()]
            raise ContenderFailed("`%s` exited %d: %s" % (
                " ".join(os.path.basename(a) if n == 0 else a for n, a in enumerate(failed)),
                reply["status"], lines[-1] if lines else "no message"))
        self.cpu = reply["cpu_ns"] / 1e6
        return reply["ns"] / 1e6


# -------------------------------------------------------------- statistics

def summarize(values):
    """Median, quartiles (inclusive method), IQR, min, max, mean of samples."""
    if not values:
        return None
    v = sorted(values)
    if len(v) > 1:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
    else:
        q1 = q3 = v[0]
    return {"n": len(v), "median": statistics.median(v), "q1": q1, "q3": q3,
            "iqr": q3 - q1, "min": v[0], "max": v[-1], "mean": statistics.fmean(v)}


def ratio(value, peer):
    """value / peer, or None when either is missing or the peer is zero."""
    if value is None or not peer:
        return None
    return value / peer


# --------------------------------------------------------------- benchmark

class Benchmark:
    """`peer` names the contender each ratio is taken against; a contender
    may name its own (`Contender.peer`), e.g. pyctr macvlan vs runc + CNI
    macvlan in the same run as pyctr veth vs runc + CNI bridge.
    `comparisons` are the (a, b, limit|None) ratios a/b printed under the
    table; a limit is the target a/b must meet (<= limit, or >= limit when
    higher is better). `cpu`: report the CPU of each run too, where every
    contender's work is done by the processes it waits for (not by a
    daemon, or a process it leaves to run on: engines, network helpers)."""

    def __init__(self, key, title, unit, contenders, peer, comparisons=(),
                 runs=20, warmup=3, higher_is_better=False, notes=(), cpu=False):
        names = [c.name for c in contenders]
        wanted = [peer] + [getattr(c, "peer", None) for c in contenders]
        wanted += [n for a, b, _ in comparisons for n in (a, b)]
        for n in wanted:
            if n is not None and n not in names:
                raise PyctrError("benchmark %s: %r is not a contender" % (key, n))
        if runs < 1 or warmup < 0:
            raise PyctrError("--runs must be >= 1 and --warmup >= 0")
        self.key = key
        self.title = title
        self.unit = unit
        self.contenders = contenders
        self.peer = peer
        self.comparisons = list(comparisons)
        self.runs = runs
        self.warmup = warmup
        self.higher_is_better = higher_is_better
        self.notes = list(notes)
        self.cpu = cpu

    def peer_of(self, name):
        for c in self.contenders:
            if c.name == name:
                return getattr(c, "peer", None) or self.peer
        raise KeyError(name)

    def run(self):
        samples = {c.name: [] for c in self.contenders}
        cpu = {c.name: [] for c in self.contenders}
        failed = {}
        active = list(self.contenders)
        rounds = self.warmup + self.runs
        with Progress("bench " + self.key, total=rounds) as p:
            for r in range(rounds):
                warm = r < self.warmup
                p.step("warm-up %d/%d" % (r + 1, self.warmup) if warm
                       else "run %d/%d" % (r - self.warmup + 1, self.runs))
                k = r % len(active)
                for c in active[k:] + active[:k]:
                    try:
                        value = c.measure(r - self.warmup)
                    except ContenderFailed as e:
                        failed[c.name] = str(e)
                        continue
                    if not warm:
                        samples[c.name].append(value)
                        if self.cpu and c.cpu is not None:
                            cpu[c.name].append(c.cpu)
                active = [c for c in active if c.name not in failed]
                if not active:
                    break
        return Result(self, samples, failed, cpu)


class Result:
    """`cpu`: per contender, the CPU ms of each sample, where measured."""

    def __init__(self, bench, samples, failed, cpu=None):
        self.bench = bench
        self.samples = samples
        self.failed = failed
        self.cpu = cpu or {}
        self.stats = {name: (None if name in failed else summarize(v))
                      for name, v in samples.items()}
        self.cpu_stats = {name: summarize(v) for name, v in self.cpu.items()
                          if v and name not in failed}
        self.facts = None

    def median(self, name):
        s = self.stats.get(name)
        return s["median"] if s else None

    def ratio_to_peer(self, name):
        return ratio(self.median(name), self.median(self.bench.peer_of(name)))

    def comparisons(self):
        """[(a, b, a/b or None, limit, verdict or None)]"""
        out = []
        for a, b, limit in self.bench.comparisons:
            r = ratio(self.median(a), self.median(b))
            verdict = None
            if limit is not None:
                if r is None:
                    verdict = "not measured"
                elif (r >= limit) if self.bench.higher_is_better else (r <= limit):
                    verdict = "met"
                else:
                    verdict = "NOT met"
            out.append((a, b, r, limit, verdict))
        return out

    def comparison_lines(self):
        lines = []
        op = ">=" if self.bench.higher_is_better else "<="
        for a, b, r, limit, verdict in self.comparisons():
            line = "%s / %s = %s" % (a, b, "%.2f" % r if r is not None else "n/a")
            if limit is not None:
                line += "  (target %s %.2f: %s)" % (op, limit, verdict)
            cpu = ratio(self.cpu_median(a), self.cpu_median(b))
            if cpu is not None:
                line += "  (CPU: %.2f)" % cpu
            lines.append(line)
        return lines

    # ---- rendering
    def cpu_median(self, name):
        s = self.cpu_stats.get(name)
        return s["median"] if s else None

    def cpu_ratio_to_peer(self, name):
        return ratio(self.cpu_median(name), self.cpu_median(self.bench.peer_of(name)))

    def rows(self):
        """One row of strings per contender; every cell filled. The CPU
        columns only when some contender's CPU was measured."""
        out = []
        cpu = bool(self.cpu_stats)
        for c in self.bench.contenders:
            s = self.stats[c.name]
            peer = self.bench.peer_of(c.name)
            if s is None:
                out.append([c.name, str(len(self.samples[c.name]))] + ["failed"]
                           + ["-"] * 5 + [peer, "-"] + ["-", "-"] * cpu)
                continue
            r = self.ratio_to_peer(c.name)
            row = ([c.name, str(s["n"])]
                   + ["%.2f" % s[k] for k in ("median", "q1", "q3", "iqr", "min", "max")]
                   + [peer, "%.2f" % r if r is not None else "n/a"])
            if cpu:
                used, r = self.cpu_median(c.name), self.cpu_ratio_to_peer(c.name)
                row += ["%.2f" % used if used is not None else "n/a",
                        "%.2f" % r if r is not None else "n/a"]
            out.append(row)
        return out

    HEAD = ["contender", "runs", "median", "q1", "q3", "IQR", "min", "max", "peer", "ratio"]
    CPU_HEAD = ["CPU ms", "CPU ratio"]

    def head(self):
        return self.HEAD + self.CPU_HEAD * bool(self.cpu_stats)

    def markdown(self):
        b = self.bench
        head = self.head()
        head[2] = "median %s" % b.unit
        lines = ["## %s" % b.title, "",
                 "| " + " | ".join(head) + " |",
                 "|" + "|".join("---" if i in (0, 8) else "---:" for i in range(len(head))) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        lines.append("")
        lines += ["    " + l for l in self.comparison_lines()]
        lines += ["", "%d runs each after %d warm-up rounds, interleaved round-robin; "
                  "ratio = median / peer's median; %s is better; q1/q3 are quartiles." % (
                      b.runs, b.warmup, "higher" if b.higher_is_better else "lower")]
        if self.cpu_stats:
            lines.append("CPU ms: the median user + system CPU time of a run's processes "
                         "(the command and the descendants it waited for; work the kernel "
                         "does in its own threads, such as a network namespace's teardown, "
                         "is not in it). On a busy node a start takes about its CPU time "
                         "divided by the share of a core it gets.")
        lines.append("")
        for c in b.contenders:
            if c.name in self.failed:
                lines.append("- **%s** failed: %s" % (c.name, self.failed[c.name]))
            elif c.note:
                lines.append("- **%s**: %s" % (c.name, c.note))
        for n in b.notes:
            lines.append("- %s" % n)
        if self.facts:
            f = self.facts
            lines += ["", "Machine: %s, %s CPUs, %s MiB RAM, kernel %s, load %s; %s" % (
                f["cpu"], f["nproc"], f["memory_mib"], f["kernel"],
                " ".join("%.2f" % x for x in f["loadavg"]), f["date"]),
                "Versions: " + ", ".join("%s %s" % (k, v) for k, v in f["versions"].items()
                                         if v)]
        return "\n".join(lines) + "\n"

    def to_dict(self):
        b = self.bench
        return {
            "key": b.key, "title": b.title, "unit": b.unit, "peer": b.peer,
            "runs": b.runs, "warmup": b.warmup, "higher_is_better": b.higher_is_better,
            "contenders": [{
                "name": c.name, "note": c.note, "failed": self.failed.get(c.name),
                "peer": b.peer_of(c.name), "stats": self.stats[c.name],
                "ratio_to_peer": self.ratio_to_peer(c.name),
                "samples": self.samples[c.name],
                "cpu_ms": self.cpu.get(c.name) or None, "cpu_stats": self.cpu_stats.get(c.name),
                "cpu_ratio_to_peer": self.cpu_ratio_to_peer(c.name)} for c in b.contenders],
            "comparisons": [{"a": a, "b": bb, "ratio": r, "target": lim, "verdict": v}
                            for a, bb, r, lim, v in self.comparisons()],
            "notes": b.notes, "machine": self.facts,
        }

    def write(self, out_dir, facts=None):
        """Write <key>.md/.csv/.json/.png into out_dir; return the paths."""
        import csv
        self.facts = facts if facts is not None else machine_facts()
        os.makedirs(out_dir, exist_ok=True)
        base = os.path.join(out_dir, self.bench.key)
        paths = {}
        with open(base + ".md", "w") as f:
            f.write(self.markdown())
        paths["md"] = base + ".md"
        with open(base + ".csv", "w", newline="") as f:
            w = csv.writer(f)
            head = [h.lower().replace(" ", "_") if h in self.CPU_HEAD else h
                    for h in self.head()]
            head[2] = "median_" + self.bench.unit.replace("/", "_per_")
            w.writerow(head)
            w.writerows(self.rows())
        paths["csv"] = base + ".csv"
        with open(base + ".json", "w") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        paths["json"] = base + ".json"
        png = chart(self, base + ".png")
        if png:
            paths["png"] = png
        return paths


def pyplot(prog):
    """matplotlib.pyplot drawing to files, or None (with a warning) when
    matplotlib is missing: the tables are written either way."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.stderr.write("%s: no chart (matplotlib not installed: pip install matplotlib)\n"
                         % prog)
        return None
    return plt


def chart(result, path):
    """Box plot of every contender's samples, the peer's median as a line.
    Returns the path, or None (with a warning) when matplotlib is missing."""
    plt = pyplot("pyctr bench")
    if plt is None:
        return None
    b = result.bench
    names = [c.name for c in b.contenders if result.stats[c.name]]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.6 * len(names)))
    data = [result.samples[n] for n in names]
    try:
        ax.boxplot(data, orientation="horizontal")
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(data, vert=False)
    ax.set_yticks(range(1, len(names) + 1))
    labels = []
    for n in names:
        r = result.ratio_to_peer(n)
        labels.append(n if n == b.peer_of(n) or r is None
                      else "%s\n%.2fx %s" % (n, r, b.peer_of(n)))
    ax.set_yticklabels(labels, fontsize="small")
    ax.invert_yaxis()
    cpu = [(i, result.cpu_median(n)) for i, n in enumerate(names, 1)
           if result.cpu_median(n) is not None]
    if cpu and b.unit == "ms":  # on the time axis: the CPU each start used
        ax.plot([c for _, c in cpu], [i for i, _ in cpu], "x", color="tab:red",
                label="CPU ms (median)")
    if result.median(b.peer):
        ax.axvline(result.median(b.peer), linestyle="--", linewidth=1, color="grey",
                   label="%s median" % b.peer)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(b.unit + (" (higher is better)" if b.higher_is_better else ""))
    title = b.title
    if result.facts:
        title += "\n%s, %s CPUs, kernel %s" % (result.facts["cpu"], result.facts["nproc"],
                                               result.facts["kernel"])
    ax.set_title(title, fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------ machine facts

def _first_line(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def tool_version(name, argv=None):
    """The version number `name --version` prints, or None if not installed."""
    import re
    path = shutil.which(name)
    line = _first_line([path] + (argv or ["--version"])) if path else None
    if not line:
        return None
    m = re.search(r"\d+\.\d+[\w.+~-]*", line)
    return m.group(0) if m else line


def _crun_version():
    """crun makes its state root (/run/crun) even for --version: asked with
    a throwaway one, so that a benchmark leaves nothing behind."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="pyctr-crun-") as tmp:
        return tool_version("crun", ["--root", os.path.join(tmp, "root"), "--version"])


def machine_facts(extra_versions=None):
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    versions = {
        "pyctr": _pyctr_version(),
        "python": platform.python_version(),
        "runc": tool_version("runc"),
        "crun": _crun_version(),
        "bwrap": tool_version("bwrap"),
    }
    versions.update(extra_versions or {})
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "hostname": platform.node(),
        "kernel": platform.release(),
        "kernel_version": platform.version(),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_mib": mem,
        "loadavg": os.getloadavg(),
        "versions": {k: v for k, v in versions.items()},
    }


def _pyctr_version():
    try:
        from importlib.metadata import version
        return version("pyctr")
    except Exception:  # not installed as a distribution (running from a tree)
        return "unknown"


def emit(result, out_dir, facts=None):
    """Write a result's files and print its table on stdout."""
    paths = result.write(out_dir, facts)
    sys.stdout.write(result.markdown())
    sys.stdout.write("Wrote %s\n" % ", ".join(paths[k] for k in ("md", "csv", "json", "png")
                                              if k in paths))
    sys.stdout.flush()
    return paths


def default_out_dir(what):
    """results/<what>-<UTC timestamp> under the current directory."""
    return os.path.join("results", "%s-%s" % (what, time.strftime("%Y%m%d-%H%M%S", time.gmtime())))
