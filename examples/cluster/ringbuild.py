"""examples/cluster/ring.c built with both MPIs into a directory containers
can read (mount it at /ring): ring.openmpi and ring.mpich."""
import contextlib
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def ring_binaries():
    bin_dir = tempfile.mkdtemp(prefix="pyctr-ring-", dir="/var/tmp")
    os.chmod(bin_dir, 0o755)
    try:
        for launcher in ("openmpi", "mpich"):
            subprocess.run(["mpicc." + launcher, "-O2", "-o",
                            os.path.join(bin_dir, "ring." + launcher),
                            os.path.join(HERE, "ring.c")], check=True, timeout=120)
        yield bin_dir
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
