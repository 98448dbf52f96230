"""`pyctr bench paper --quick`, end to end, as CI runs it: the study's
experiment on two simulated nodes must produce its table, CSV and chart with
every cell filled. Slow (the mpi image, then minutes of MPI jobs)."""
import csv
import subprocess
import sys

import pytest

from conftest import root_only

pytestmark = [root_only, pytest.mark.slow]


def test_an_image_nobody_can_build_is_one_line_and_leaves_nothing(image_data, tmp_path):
    import glob
    before = set(glob.glob("/var/tmp/pyctr-paper-*"))
    out = tmp_path / "paper"
    p = subprocess.run([sys.executable, "-m", "pyctr", "--data", image_data, "bench", "paper",
                        "--image", "nosuch", "--configs", "nic,veth", "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 125
    assert p.stderr.strip() == ("pyctr: bench paper: no image 'nosuch' for the containers "
                                "(import or build it; or run --configs nic)")
    assert not out.exists() and set(glob.glob("/var/tmp/pyctr-paper-*")) == before


def test_bench_paper_quick_fills_every_cell(mpi_data, tmp_path):
    out = tmp_path / "paper"
    p = subprocess.run([sys.executable, "-m", "pyctr", "--data", mpi_data, "bench", "paper",
                        "--quick", "--out", str(out)],
                       capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "paper.png").stat().st_size > 10000
    with open(out / "paper.csv") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["metric"], r["config"]): r for r in rows}
    metrics = {r["metric"] for r in rows}
    assert {"iperf3", "hpl", "gromacs", "dambreak", "pitzdaily"} <= metrics, metrics
    for metric in metrics:  # every workload in all three configurations, measured
        for config in ("nic", "veth", "macvlan"):
            row = cells[(metric, config)]
            assert row["median"] not in ("", "nan") and not row["failed"], row
            assert float(row["median"]) > 0
    table = (out / "paper.md").read_text()
    assert "94.1 / 94.016 / 94.033" in table  # the study's Table 1 beside ours
