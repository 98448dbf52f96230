"""The benchmark machinery: statistics, ratios, interleaving, the timing
runner, and the files a run leaves (table, CSV, JSON, chart). No assertion
here depends on how fast anything is; the smoke runs only check that the
benchmarks run end to end and report every contender."""
import csv
import json
import glob
import os
import shutil
import statistics
import subprocess
import sys

import pytest

from pyctr.bench import harness
from pyctr.errors import PyctrError

from conftest import root_only

PYCTR = [sys.executable, "-m", "pyctr"]


# ------------------------------------------------------------- statistics

def test_summary_has_median_quartiles_and_range():
    s = harness.summarize([5, 1, 4, 2, 3])
    assert (s["n"], s["median"], s["q1"], s["q3"], s["iqr"], s["min"], s["max"]) == \
        (5, 3, 2, 4, 2, 1, 5)
    assert harness.summarize([7.5])["median"] == 7.5
    assert harness.summarize([7.5])["iqr"] == 0
    assert harness.summarize([]) is None


def test_median_is_robust_to_one_outlier():
    assert harness.summarize([10, 11, 12, 13, 1000])["median"] == 12


def test_ratio_of_medians():
    assert harness.ratio(30.0, 40.0) == 0.75
    assert harness.ratio(None, 40.0) is None
    assert harness.ratio(30.0, 0) is None
    assert harness.ratio(30.0, None) is None


# ------------------------------------------------------------------ runner

@pytest.fixture
def runner():
    with harness.Runner("test") as r:
        yield r


def test_runner_times_a_command(runner):
    reply = runner.time({"steps": [harness.step(["true"])]})
    assert reply["status"] == 0 and reply["ns"] > 0


def test_runner_reports_exit_status_step_and_stderr(runner):
    reply = runner.time({"steps": [harness.step(["true"]),
                                   harness.step(["sh", "-c", "echo broken >&2; exit 3"])]})
    assert (reply["status"], reply["step"]) == (3, 1)
    assert "broken" in reply["stderr"]


def test_runner_reports_a_missing_program(runner):
    reply = runner.time({"steps": [{"argv": ["/nonexistent/prog"], "env": None,
                                    "stdin": None, "always": False}]})
    assert reply["status"] == 127
    assert "/nonexistent/prog" in reply["stderr"]


def test_runner_runs_teardown_steps_after_a_failure_and_skips_the_rest(runner, tmp_path):
    skipped, teardown, cleanup = tmp_path / "skipped", tmp_path / "teardown", tmp_path / "x"
    reply = runner.time({
        "steps": [harness.step(["false"]),
                  harness.step(["touch", str(skipped)]),
                  harness.step(["touch", str(teardown)], always=True)],
        "on_fail": [harness.step(["touch", str(cleanup)])]})
    assert reply["status"] == 1 and reply["step"] == 0
    assert not skipped.exists()
    assert teardown.exists() and cleanup.exists()


def test_runner_kills_a_step_that_outlives_its_timeout(runner):
    """A hung command ends the benchmark with a message instead of stalling
    it for good (a bench scale start once hung)."""
    reply = runner.time({"steps": [harness.step(["sleep", "600"], timeout=0.5)]})
    assert reply["status"] == -9 and "timed out after 0.5 s" in reply["stderr"]


def test_runner_reports_the_cpu_of_the_command_and_the_children_it_waited_for(runner):
    """bench startup's CPU column: a start's cost on a busy node. A
    grandchild's work counts; a sleeper's wall time does not."""
    burn = [sys.executable, "-c", "sum(range(3 * 10 ** 6))"]
    busy = runner.time({"steps": [harness.step(["sh", "-c", '"$0" "$@"; true'] + burn)]})
    idle = runner.time({"steps": [harness.step(["sleep", "0.3"])]})
    assert busy["status"] == idle["status"] == 0
    assert idle["cpu_ns"] < idle["ns"] / 10
    assert busy["cpu_ns"] > 5 * idle["cpu_ns"]


def test_cpu_is_reported_only_where_the_benchmark_asks_for_it(runner):
    """Where a daemon or a process left running does a contender's work
    (engines, network helpers), its CPU would not be counted: no column."""
    cs = [harness.CommandContender("true", runner, lambda i: {"steps": [harness.step(["true"])]})]
    r = harness.Benchmark("t", "t", "ms", cs, peer="true", runs=2, warmup=0).run()
    assert r.cpu_stats == {} and "CPU" not in r.markdown()
    assert len(r.rows()[0]) == len(harness.Result.HEAD)


def test_runner_feeds_stdin_and_env(runner, tmp_path):
    src, dst = tmp_path / "in.json", tmp_path / "out"
    src.write_text('{"cniVersion": "1.0.0"}')
    reply = runner.time({"steps": [harness.step(
        ["sh", "-c", 'cat > "%s"; echo "$CNI_COMMAND" >> "%s"' % (dst, dst)],
        env={"CNI_COMMAND": "ADD"}, stdin=str(src))]})
    assert reply["status"] == 0
    assert dst.read_text() == '{"cniVersion": "1.0.0"}ADD\n'


def test_runner_that_cannot_start_is_one_clear_error():
    with pytest.raises(PyctrError, match="cannot start the broken timing runner"):
        harness.Runner("broken", prefix=["sh", "-c", "echo no cgroup here >&2; exit 1",
                                         "sh"]).start()


def test_step_resolves_programs_on_path():
    assert harness.step(["true"])["argv"][0] in ("/bin/true", "/usr/bin/true")
    with pytest.raises(PyctrError, match="not found"):
        harness.step(["no-such-program-pyctr"])


# --------------------------------------------------------------- benchmark

def recording(name, value, log):
    def measure(i):
        log.append((name, i))
        return value
    return harness.Contender(name, measure)


def test_rounds_interleave_contenders_and_drop_warmups():
    log = []
    bench = harness.Benchmark("t", "t", "ms", [recording(n, v, log) for n, v in
                                              (("a", 1.0), ("b", 2.0), ("c", 4.0))],
                              peer="b", runs=4, warmup=2)
    result = bench.run()
    assert len(log) == 3 * 6
    # every round measures each contender once, starting with a different one
    rounds = [log[i:i + 3] for i in range(0, len(log), 3)]
    assert all(sorted(n for n, _ in r) == ["a", "b", "c"] for r in rounds)
    assert [r[0][0] for r in rounds] == ["a", "b", "c", "a", "b", "c"]
    assert [i for n, i in log if n == "a"] == [-2, -1, 0, 1, 2, 3]
    assert {n: len(v) for n, v in result.samples.items()} == {"a": 4, "b": 4, "c": 4}
    assert result.ratio_to_peer("a") == 0.5 and result.ratio_to_peer("c") == 2.0


def test_comparisons_and_targets():
    log = []
    contenders = [recording("mine", 3.0, log), recording("theirs", 4.0, log),
                  recording("fast", 1.0, log)]
    r = harness.Benchmark("t", "t", "ms", contenders, peer="theirs", runs=2, warmup=0,
                          comparisons=[("mine", "theirs", 1.0), ("mine", "fast", 1.0),
                                       ("mine", "fast", None)]).run()
    assert [(a, b, x, v) for a, b, x, _, v in r.comparisons()] == [
        ("mine", "theirs", 0.75, "met"), ("mine", "fast", 3.0, "NOT met"),
        ("mine", "fast", 3.0, None)]
    # throughput: higher is better, so the target is a floor
    hi = harness.Benchmark("t", "t", "Gbit/s", contenders, peer="theirs", runs=1, warmup=0,
                           higher_is_better=True, comparisons=[("mine", "theirs", 1.0)]).run()
    assert hi.comparisons()[0][4] == "NOT met"


def test_a_contender_may_have_its_own_peer():
    log = []
    cs = [recording("x", 2.0, log), recording("px", 4.0, log), recording("y", 9.0, log),
          recording("py", 3.0, log)]
    cs[2].peer = "py"
    r = harness.Benchmark("t", "t", "ms", cs, peer="px", runs=1, warmup=0).run()
    assert r.ratio_to_peer("x") == 0.5 and r.ratio_to_peer("y") == 3.0


def test_unknown_peer_or_bad_counts_are_refused():
    c = [harness.Contender("a", lambda i: 1.0)]
    with pytest.raises(PyctrError, match="not a contender"):
        harness.Benchmark("t", "t", "ms", c, peer="zz")
    with pytest.raises(PyctrError, match="not a contender"):
        harness.Benchmark("t", "t", "ms", c, peer="a", comparisons=[("a", "zz", None)])
    with pytest.raises(PyctrError, match="--runs"):
        harness.Benchmark("t", "t", "ms", c, peer="a", runs=0)


def test_a_failing_contender_is_dropped_and_reported(runner):
    cs = [harness.CommandContender("ok", runner, lambda i: {"steps": [harness.step(["true"])]}),
          harness.CommandContender("bad", runner, lambda i: {"steps": [harness.step(
              ["sh", "-c", "echo no such image >&2; exit 125"])]})]
    r = harness.Benchmark("t", "t", "ms", cs, peer="ok", runs=3, warmup=1).run()
    assert len(r.samples["ok"]) == 3
    assert "exited 125: no such image" in r.failed["bad"]
    assert r.rows()[1][2] == "failed"
    assert "**bad** failed: `sh -c" in r.markdown()


def test_results_files_are_complete(runner, tmp_path):
    cs = [harness.CommandContender("true", runner, lambda i: {"steps": [harness.step(["true"])]}),
          harness.CommandContender("sh", runner, lambda i: {"steps": [harness.step(
              ["sh", "-c", "true"])]}),
          harness.CommandContender("broken", runner, lambda i: {"steps": [harness.step(
              ["false"])]})]
    r = harness.Benchmark("demo", "demo bench", "ms", cs, peer="true", runs=3, warmup=1,
                          comparisons=[("sh", "true", None)], cpu=True).run()
    paths = r.write(str(tmp_path))
    for kind in ("md", "csv", "json", "png"):
        assert os.path.getsize(paths[kind]) > 0, kind
    with open(paths["png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(paths["csv"]) as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["contender", "runs", "median_ms"]
    assert rows[0][-2:] == ["cpu_ms", "cpu_ratio"]
    assert [row[0] for row in rows[1:]] == ["true", "sh", "broken"]
    assert all(cell.strip() for row in rows for cell in row)
    assert all(len(row) == len(rows[0]) for row in rows)
    md = open(paths["md"]).read()
    table = [l for l in md.splitlines() if l.startswith("|")]
    assert len(table) == 2 + 3
    assert all(cell.strip() for l in table for cell in l.strip("|").split("|"))
    assert "sh / true = " in md and "(CPU: " in md
    assert "CPU ms: the median user + system CPU time" in md
    data = json.load(open(paths["json"]))
    assert [c["name"] for c in data["contenders"]] == ["true", "sh", "broken"]
    assert len(data["contenders"][0]["samples"]) == 3
    assert len(data["contenders"][0]["cpu_ms"]) == 3
    assert data["contenders"][0]["cpu_stats"]["median"] >= 0
    assert data["contenders"][2]["failed"]
    facts = data["machine"]
    for key in ("kernel", "cpu", "nproc", "memory_mib", "date"):
        assert facts[key], key
    for tool in ("runc", "crun", "bwrap", "python", "pyctr"):
        assert tool in facts["versions"]


def test_machine_facts_name_this_machine():
    f = harness.machine_facts()
    assert f["kernel"] == os.uname().release
    assert f["nproc"] == os.cpu_count()
    assert f["versions"]["python"] == "%d.%d.%d" % sys.version_info[:3]


@root_only
def test_the_machine_facts_leave_no_crun_state_root():
    """crun makes its state root, /run/crun, even to print its version; the
    facts every benchmark writes ask it without leaving that behind."""
    if not shutil.which("crun"):
        pytest.skip("crun is not installed")
    try:
        os.rmdir("/run/crun")  # crun's own, made by an earlier use; empty
    except FileNotFoundError:
        pass
    except OSError:
        pytest.skip("/run/crun holds crun's containers")
    assert harness.machine_facts()["versions"]["crun"]
    assert not os.path.exists("/run/crun")


# ---------------------------------------------------------------- the CLI

def test_bench_without_a_known_benchmark_is_one_line():
    p = subprocess.run(PYCTR + ["bench", "nonsense"], capture_output=True, text=True)
    assert p.returncode == 125
    assert p.stderr.startswith("pyctr: ") and len(p.stderr.strip().splitlines()) == 1
    p = subprocess.run(PYCTR + ["bench"], capture_output=True, text=True)
    assert p.returncode == 0 and "startup" in p.stdout and "net" in p.stdout


def test_the_verb_list_names_every_benchmark():
    from pyctr.bench import SUBCOMMANDS
    p = subprocess.run(PYCTR + ["--help"], capture_output=True, text=True)
    line = next(line for line in p.stdout.splitlines() if line.split()[:1] == ["bench"])
    assert all(name in line for name in SUBCOMMANDS), line


def test_bench_startup_bad_flags_are_one_line():
    for flags in (["--runs", "many"], ["--busy", "-1"], ["--busy", "1000"]):
        p = subprocess.run(PYCTR + ["bench", "startup"] + flags, capture_output=True,
                           text=True)
        assert p.returncode == 125, flags
        assert p.stderr.startswith("pyctr: ") and len(p.stderr.strip().splitlines()) == 1


def _busy_processes():
    """pids of `bench startup --busy` processes."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if b"# pyctr bench startup --busy" in f.read():
                    found.append(pid)
        except OSError:
            continue
    return found


@root_only
def test_bench_startup_missing_image_is_one_line(tmp_path):
    p = subprocess.run(PYCTR + ["--data", str(tmp_path), "bench", "startup", "--runs", "1"],
                       capture_output=True, text=True)
    assert p.returncode == 125
    assert "pyctr image build busybox" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------ smoke runs

def _ours():
    """Network namespaces and host links with the benchmarks' name prefix
    (other tests may be adding and removing their own meanwhile)."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return ([n for n in ns.split() if n.startswith("pbn")]
            + [l.split(":")[1].strip() for l in links.splitlines()
               if l.split(":")[1].strip().startswith("pb")])


@root_only
@pytest.mark.slow
def test_startup_benchmark_runs_end_to_end(image_data, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(PYCTR + ["--data", image_data, "bench", "startup", "--runs", "2",
                                "--warmup", "1", "--busy", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.load(open(out / "startup.json"))
    measured = {c["name"]: len(c["samples"]) for c in data["contenders"]}
    assert measured["pyctr"] == 2 and measured["runc"] == 2
    assert all(len(c["cpu_ms"]) == 2 for c in data["contenders"])
    assert "pyctr / runc = " in p.stdout
    if shutil.which("crun"):  # issue 13's target stands beside issue 8's
        assert any(line.strip().startswith("pyctr / crun = ") and "target <= 1.00" in line
                   for line in p.stdout.splitlines())
    assert "1 CPU-bound process ran beside every run (`--busy 1`)" in p.stdout
    assert (out / "startup.png").exists()
    assert not [d for d in os.listdir("/run") if d.startswith("pyctr-bench-")]
    assert _ours() == []
    assert _busy_processes() == []  # stopped with the benchmark


@root_only
@pytest.mark.slow
def test_net_benchmark_runs_end_to_end(image_data, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run(PYCTR + ["--data", image_data, "bench", "net", "--runs", "2",
                                "--warmup", "1", "--iperf-runs", "1", "--iperf-seconds", "1",
                                "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    start = json.load(open(out / "net-start.json"))
    assert all(len(c["samples"]) == 2 for c in start["contenders"])
    if shutil.which("crun"):  # crun + CNI is the named peer
        names = {c["name"]: c["peer"] for c in start["contenders"]}
        assert names["pyctr veth"] == "crun+cni-bridge"
        assert names["pyctr macvlan"] == "crun+cni-macvlan"
        assert "pyctr veth / crun+cni-bridge = " in p.stdout
        # a target only where both sides do the same work: the plugin never probes
        lines = p.stdout.splitlines()
        assert any(line.strip().startswith("pyctr macvlan no-probe / crun+cni-macvlan = ")
                   and "target" in line for line in lines)
        assert not any(line.strip().startswith(("pyctr macvlan / ", "pyctr macvlan no-shim / "))
                       and "target" in line for line in lines)
    iperf = json.load(open(out / "net-iperf.json"))
    assert all(len(c["samples"]) == 1 and c["samples"][0] > 0 for c in iperf["contenders"])
    assert "macvlan / nic = " in p.stdout
    assert _ours() == []


def _this_pyctr():
    """The launcher of the pyctr under test (its venv's console script)."""
    launcher = os.path.join(os.path.dirname(sys.executable), "pyctr")
    if not os.path.isfile(launcher):
        pytest.skip("no pyctr launcher beside %s" % sys.executable)
    return launcher


@root_only
@pytest.mark.slow
def test_scale_benchmark_measures_each_runtime_and_leaves_nothing(image_data, tmp_path):
    out = tmp_path / "out"
    runtimes = ["pyctr", "runc"] + (["crun"] if shutil.which("crun") else [])
    p = subprocess.run(PYCTR + ["--data", image_data, "bench", "scale", "--counts", "1,3",
                                "--rounds", "2", "--runtimes", ",".join(runtimes),
                                "--pyctr", _this_pyctr(), "--out", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.load(open(out / "scale.json"))
    rounds = {(row["runtime"], row["count"], row["round"]): row for row in data["rows"]}
    assert set(rounds) == {(name, n, r) for name in runtimes for n in (1, 3) for r in (1, 2)}
    # each runtime's last/first over the rounds is the median of its rounds'
    for s in data["summary"]:
        each = [rounds[(s["runtime"], s["count"], r)]["last_to_first"] for r in (1, 2)]
        assert s["rounds"] == 2 and s["last_to_first_each"] == each
        assert s["last_to_first"] == statistics.median(each)
    assert "Over the rounds" in (out / "scale.md").read_text()
    rows = {(name, n): row for (name, n, r), row in rounds.items() if r == 2}
    for (name, n), row in rows.items():
        assert len(row["starts_ms"]) == n and all(ms > 0 for ms in row["starts_ms"])
        assert row["ps_ms"] > 0 and row["rm_ms"] > 0
        assert "left" not in row
    # pyctr keeps one owner process per detached container; runc and crun none
    assert rows[("pyctr", 3)]["owners"] == 3 and rows[("pyctr", 3)]["pss_kib"] > 0
    assert rows[("runc", 3)]["owners"] == 0
    with open(out / "scale.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(rounds) and all(r["rm_ms"] for r in table)
    assert (out / "scale.png").stat().st_size > 0 and (out / "scale.md").exists()
    assert not os.path.exists(data["work"])
    assert not glob.glob("/sys/fs/cgroup/*/pyctr-bench-%d" % data["pid"])
    assert not any("left behind" in note for note in data["notes"])


def test_bench_scale_bad_counts_are_one_line():
    p = subprocess.run(PYCTR + ["bench", "scale", "--counts", "1,x"], capture_output=True,
                       text=True)
    assert p.returncode == 125 and p.stderr.startswith("pyctr: bench scale: --counts")
    assert len(p.stderr.strip().splitlines()) == 1


def test_bench_paper_is_routed_to_its_module(monkeypatch):
    import types
    import pyctr.bench
    calls = []
    fake = types.ModuleType("pyctr.bench.paper")
    fake.command = lambda paths, argv: calls.append((paths, argv)) or 7
    monkeypatch.setitem(sys.modules, "pyctr.bench.paper", fake)
    monkeypatch.setattr(pyctr.bench, "paper", fake, raising=False)
    assert pyctr.bench.command("PATHS", ["paper", "--runs", "3"]) == 7
    assert calls == [("PATHS", ["--runs", "3"])]


def test_importtime_profile_names_each_modules_importer():
    from pyctr.bench.startup import parse_importtime
    err = ("import time: self [us] | cumulative | imported package\n"
           "import time:       100 |        100 |     _sre\n"
           "import time:       300 |        400 |   re\n"
           "import time:        50 |         50 |   json\n"
           "import time:      1000 |       1450 | pyctr.state\n"
           "import time:        20 |         20 | pyctr.sync\n"
           "pyctr: unrelated line\n")
    assert parse_importtime(err) == [
        ("_sre", 100, 100, "re"), ("re", 300, 400, "pyctr.state"),
        ("json", 50, 50, "pyctr.state"), ("pyctr.state", 1000, 1450, None),
        ("pyctr.sync", 20, 20, None)]


def test_scale_last_to_first_compares_a_tenth_at_each_end():
    """last/first of 1,000 starts compares a hundred at each end: a few slow
    starts among the last do not decide it, a slower last tenth does."""
    from pyctr.bench import scale
    assert [scale.edge(n) for n in (1, 3, 10, 100, 1000)] == [1, 3, 10, 10, 100]

    def ratio(starts):
        row = {"starts_ms": starts, "ps_runs": [1.0], "pss_kib": 1}
        scale._figures(row, len(starts))
        return row["last_to_first"]
    assert ratio([30.0] * 990 + [60.0] * 10) == 1.0
    assert ratio([30.0] * 900 + [60.0] * 100) == 2.0
    assert ratio([30.0, 31.0, 32.0]) == 1.0  # all three at both ends
