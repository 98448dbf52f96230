"""`pyctr bench paper --quick`, end to end, as CI runs it: the study's
experiment on two simulated nodes must produce its table, CSV and chart
with every cell measured, and leave nothing behind. Slow (the mpi image,
then minutes of MPI jobs). `--launcher slurm` does the same with srun
placing the ranks, on a short run of the two smallest workloads."""
import csv
import glob
import json
import os
import re
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import root_only
from pyctr import slurmbed

pytestmark = [root_only, pytest.mark.slow]

DATAPATHS = ("nic", "veth", "macvlan")
QUICK_RUNS = 2           # --quick repeats every measurement twice
ALL_METRICS = {"iperf3", "hpl", "dgemm", "gromacs", "dambreak", "pitzdaily", "pingpong_lat",
               "pingpong_bw"}
NUMBER = r"\d+(?:\.\d+)?"


def test_an_image_nobody_can_build_is_one_line_and_leaves_nothing(image_data, tmp_path):
    before = set(glob.glob("/var/tmp/pyctr-paper-*"))
    out = tmp_path / "paper"
    p = subprocess.run([sys.executable, "-m", "pyctr", "--data", image_data, "bench", "paper",
                        "--image", "nosuch", "--configs", "nic,veth", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 125
    assert p.stderr.strip() == ("pyctr: bench paper: no image 'nosuch' for the containers "
                                "(import or build it; or run --configs nic)")
    assert not out.exists() and set(glob.glob("/var/tmp/pyctr-paper-*")) == before


def png_size(path):
    """(width, height) of a PNG whose chunks are all intact (CRCs checked)
    and that ends in IEND; AssertionError otherwise."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, "damaged %s chunk" % kind
        chunks.append((kind, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", [k for k, _ in chunks]
    assert any(k == b"IDAT" for k, _ in chunks)
    return struct.unpack(">II", chunks[0][1][:8])


def leftovers(pid):
    """What a bench run with this pid could leave: its testbeds' network
    namespaces (with their interfaces) and state, Slurm's daemons and
    tasks (each started with a path under a testbed's directory in its
    command line or, as SLURM_CONF, its environment), the nodes' cgroups,
    its work directory."""
    tag = "ppr-%d-" % pid
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left = [line.split()[0] for line in netns.splitlines() if line.startswith(tag)]
    left += glob.glob("/run/pyctr-tb/%s*" % tag)
    with open("/proc/self/mountinfo") as f:
        left += [line.split()[4] for line in f if "/run/pyctr-tb/" + tag in line]
    mark = ("/run/pyctr-tb/" + tag).encode()
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(proc + "/cmdline", "rb") as f:
                cmdline = f.read()
            with open(proc + "/environ", "rb") as f:
                if mark in cmdline or mark in f.read():
                    left.append("process %s: %s" % (proc, cmdline.replace(b"\0", b" ")))
        except OSError:
            continue   # gone meanwhile
    for top, dirs, _ in os.walk("/sys/fs/cgroup"):
        left += [os.path.join(top, d) for d in dirs if d.startswith("slurmbed-" + tag)]
    return left


def has_matplotlib():
    return subprocess.run([sys.executable, "-c", "import matplotlib"],
                          capture_output=True).returncode == 0


def check_chart(out, err):
    """A whole PNG of a readable size; without matplotlib (an optional
    extra), no chart and a warning that says why."""
    if not has_matplotlib():
        assert "no chart (matplotlib not installed" in err, err[-2000:]
        assert not (out / "paper.png").exists()
        return
    width, height = png_size(out / "paper.png")
    assert width >= 400 and height >= 300, (width, height)


def check_measured(out, metrics=ALL_METRICS, launchers=("mpirun",), runs=QUICK_RUNS):
    """Every metric with every launcher in all three datapaths was measured
    `runs` times, and every measured cell of the table is a number."""
    with open(out / "paper.csv") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["metric"], r["launcher"], r["config"]): r for r in rows}
    assert set(cells) == {(m, x, d) for m in metrics for x in launchers for d in DATAPATHS}
    for row in cells.values():
        assert not row["failed"], row
        assert int(row["runs"]) == runs, row
        samples = [float(x) for x in row["samples"].split(";")]
        assert len(samples) == runs and all(x > 0 for x in samples), row
        assert float(row["min"]) <= float(row["median"]) <= float(row["max"]), row
    table = [line for line in (out / "paper.md").read_text().splitlines()
             if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == len(metrics) * len(launchers), table
    measured = re.compile(r"^%s \[%s-%s\]$" % (NUMBER, NUMBER, NUMBER))
    relative = re.compile(r"^%s %%$" % NUMBER)
    names = {"mpirun": "mpirun", "slurm": "srun"}
    for line, launcher in zip(table, [x for _ in metrics for x in launchers]):
        cols = [c.strip() for c in line.strip("|").split("|")]
        assert cols[2] == names[launcher], line
        assert all(measured.match(c) for c in cols[3:6]), line
        assert all(relative.match(c) for c in cols[6:8]), line


def bench(mpi_data, out, *args, timeout):
    """`pyctr bench paper --out OUT ARGS`: (its pid, exit code, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "pyctr", "--data", mpi_data, "bench", "paper",
                          "--out", str(out)] + list(args),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=timeout)
    finally:
        if p.returncode is None:
            p.kill()
            p.communicate()
    return p.pid, p.returncode, err


def test_bench_paper_quick_measures_every_cell_and_leaves_nothing(mpi_data, tmp_path):
    out = tmp_path / "paper"
    before = set(glob.glob("/var/tmp/pyctr-paper-*"))
    pid, rc, err = bench(mpi_data, out, "--quick", timeout=1500)
    assert rc == 0, err[-3000:]
    check_measured(out)
    check_chart(out, err)
    # Nothing left: no testbed namespace, state or mount, no work directory.
    assert leftovers(pid) == []
    assert set(glob.glob("/var/tmp/pyctr-paper-*")) == before


@pytest.mark.skipif(bool(slurmbed.missing_tools()), reason="needs %s (install.sh --test)"
                    % ", ".join(slurmbed.missing_tools()))
def test_bench_paper_with_srun_placing_the_ranks_measures_and_leaves_nothing(mpi_data,
                                                                          tmp_path):
    """The two smallest workloads once each: iperf3 (one-task steps on node
    B and A, in containers with fixed addresses) and MPI ping-pong (one
    2-task step, srun --mpi=pmix), on NIC, veth and macvlan, every rank
    checked to run in the namespace it should before the first run."""
    out = tmp_path / "paper"
    before = set(glob.glob("/var/tmp/pyctr-paper-*"))
    pid, rc, err = bench(mpi_data, out, "--launcher", "slurm", "--quick", "--repeat", "1",
                         "--workloads", "iperf3,pingpong", timeout=600)
    assert rc == 0, err[-3000:]
    check_measured(out, {"iperf3", "pingpong_lat", "pingpong_bw"}, ("slurm",), runs=1)
    md = (out / "paper.md").read_text()
    assert "**veth (srun)**: srun --mpi=pmix -N2 -n2 pyctr run --net=NET" in md
    # The traffic crossed node A's NIC in every configuration: 10 round trips of 4 MiB
    # are 84 MB.
    wire = json.loads((out / "paper.json").read_text())["wire_bytes_node_a_nic0"]["slurm"]
    assert all(wire[d]["pingpong"][0] > 80e6 for d in DATAPATHS), wire
    check_chart(out, err)
    assert leftovers(pid) == []
    assert set(glob.glob("/var/tmp/pyctr-paper-*")) == before
