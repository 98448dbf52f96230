"""`pyctr bench paper --quick`, end to end, as CI runs it: the study's
experiment on two simulated nodes must produce its table, CSV and chart
with every cell measured, and leave nothing behind. Slow (the mpi image,
then minutes of MPI jobs)."""
import csv
import glob
import os
import re
import struct
import subprocess
import sys
import zlib

import pytest

from conftest import root_only

pytestmark = [root_only, pytest.mark.slow]

CONFIGS = ("nic", "veth", "macvlan")
QUICK_RUNS = 2           # --quick repeats every measurement twice
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
    namespaces and state, its work directory."""
    tag = "ppr-%d-" % pid
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left = [line.split()[0] for line in netns.splitlines() if line.startswith(tag)]
    left += glob.glob("/run/pyctr-tb/%s*" % tag)
    with open("/proc/self/mountinfo") as f:
        left += [line.split()[4] for line in f if "/run/pyctr-tb/" + tag in line]
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


def check_measured(out):
    """Every workload in all three configurations was measured QUICK_RUNS
    times, and every measured cell of the table is a number."""
    with open(out / "paper.csv") as f:
        rows = list(csv.DictReader(f))
    metrics = {r["metric"] for r in rows}
    assert {"iperf3", "hpl", "gromacs", "dambreak", "pitzdaily"} <= metrics, metrics
    cells = {(r["metric"], r["config"]): r for r in rows}
    assert set(cells) == {(m, c) for m in metrics for c in CONFIGS}
    for row in cells.values():
        assert not row["failed"], row
        assert int(row["runs"]) == QUICK_RUNS, row
        samples = [float(x) for x in row["samples"].split(";")]
        assert len(samples) == QUICK_RUNS and all(x > 0 for x in samples), row
        assert float(row["min"]) <= float(row["median"]) <= float(row["max"]), row
    table = [line for line in (out / "paper.md").read_text().splitlines()
             if line.startswith("| ") and "---" not in line][1:]
    assert len(table) == len(metrics), table
    measured = re.compile(r"^%s \[%s-%s\]$" % (NUMBER, NUMBER, NUMBER))
    relative = re.compile(r"^%s %%$" % NUMBER)
    for line in table:
        cols = [c.strip() for c in line.strip("|").split("|")]
        assert all(measured.match(c) for c in cols[2:5]), line
        assert all(relative.match(c) for c in cols[5:7]), line


def test_bench_paper_quick_measures_every_cell_and_leaves_nothing(mpi_data, tmp_path):
    out = tmp_path / "paper"
    before = set(glob.glob("/var/tmp/pyctr-paper-*"))
    p = subprocess.Popen([sys.executable, "-m", "pyctr", "--data", mpi_data, "bench", "paper",
                          "--quick", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=1500)
    finally:
        if p.returncode is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-3000:]
    check_measured(out)
    check_chart(out, err)
    # Nothing left: no testbed namespace, state or mount, no work directory.
    assert leftovers(p.pid) == []
    assert set(glob.glob("/var/tmp/pyctr-paper-*")) == before
