"""A 2-rank Open MPI job across two containers on two simulated nodes.

    python3 examples/paper/two_nodes.py [veth|macvlan]

Needs root, openmpi-bin and the `mpi` image (pyctr image build mpi). Uses the
same configurations as `pyctr bench paper`; everything it makes is removed
at the end, also after a failure.
"""
import os
import shutil
import sys
import tempfile
import types

from pyctr.bench import paper
from pyctr.paths import Paths
from pyctr.testbed import Testbed

WHERE = 'echo "rank $OMPI_COMM_WORLD_RANK on $(hostname): $(ip -o -4 addr show eth0 | ' \
        'awk \'{print $2, $4}\')"'


def main(kind):
    work = tempfile.mkdtemp(prefix="pyctr-two-nodes-", dir="/var/tmp")
    os.chmod(work, 0o755)
    try:
        with Testbed(prefix="ex2n", nodes=2) as tb:
            cfg = paper.BUILDERS[kind](tb, work, types.SimpleNamespace(image="mpi"), Paths())
            try:
                setup = cfg.up()
                print("agent script %s:" % setup.agent)
                print(open(setup.agent).read())
                out = setup.mpirun(["sh", "-c", WHERE], cwd=work, timeout=120)
                sys.stdout.write(out.out)
                sys.stderr.write(out.err)
                return out.rc
            finally:
                cfg.down()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "veth"))
