"""The `probe` fixture: tests/probe.c built static into a directory that
containers mount read-only at /probe (busybox has no applet for keyctl,
bpf, ... and cannot race /proc)."""
import os
import shutil
import subprocess
import tempfile

import pytest

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.c")


@pytest.fixture(scope="session")
def probe():
    """The directory holding the probe binary; removed at the end."""
    d = tempfile.mkdtemp(prefix="pyctr-probe-", dir="/var/tmp")
    os.chmod(d, 0o755)
    try:
        subprocess.run(["gcc", "-static", "-O2", "-o", os.path.join(d, "probe"), SOURCE],
                       check=True, capture_output=True, timeout=120)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def mount(probe_dir):
    return ["-v", "%s:/probe:ro" % probe_dir]


def parse(stdout):
    """`probe try` output -> {call: errno} (0: it worked)."""
    return {name: int(errno) for name, errno in
            (line.split() for line in stdout.splitlines() if line.strip())}
