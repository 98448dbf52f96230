#!/usr/bin/env python3
"""Slurm starts the ranks, each in a container of its own:

    srun --mpi=pmix -N2 -n2 pyctr run --rm --net=seg mpi /ring/ring.openmpi
    srun --mpi=pmi2 -N2 -n2 pyctr run --rm --net=seg mpi /ring/ring.mpich

on a simulated 2-node Slurm cluster (pyctr.slurmbed: munged, slurmctld and
one slurmd per simulated machine, each a network namespace with its own NIC,
hostname and /etc/hosts), so nothing touches this machine's network. Network
`seg` is defined on both nodes with the same name and subnet but its own
address range. Each rank says where it ran and what its eth0 carried; rank 0
says what pyctr set. Everything is removed at the end.

    /opt/pyctr/bin/python examples/cluster/slurm_hybrid.py [veth|macvlan]

Needs root, the mpi image (pyctr image build mpi), Open MPI and MPICH with
their compilers, and Slurm and munge (install.sh --test).
"""
import os
import shutil
import subprocess
import sys
import tempfile

from pyctr.slurmbed import SlurmCluster
from pyctr.testbed import Testbed

HERE = os.path.dirname(os.path.abspath(__file__))
MPI = {"openmpi": "--mpi=pmix", "mpich": "--mpi=pmi2"}


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "veth"
    if kind not in ("veth", "macvlan"):
        sys.exit("usage: slurm_hybrid.py [veth|macvlan]")
    bin_dir = tempfile.mkdtemp(prefix="pyctr-ring-", dir="/var/tmp")
    os.chmod(bin_dir, 0o755)
    try:
        for launcher in MPI:
            subprocess.run(["mpicc." + launcher, "-O2", "-o",
                            os.path.join(bin_dir, "ring." + launcher),
                            os.path.join(HERE, "ring.c")], check=True, timeout=120)
        with Testbed(prefix="slx", nodes=2) as tb:
            for i, node in enumerate(tb.nodes):
                first = 100 + 10 * i
                net = ["net", "create", "seg", "--subnet", "10.77.0.0/24", "--uplink", "nic0",
                       "--range", "10.77.0.%d-10.77.0.%d" % (first, first + 9)]
                if kind == "macvlan":
                    net += ["--kind", "macvlan", "--no-host-shim"]
                node.pyctr(*net, check=True)
            with SlurmCluster(tb) as slurm:
                # The same command line on every node: the state and config
                # paths are each node's own (see pyctr.slurmbed).
                pyctr = [sys.executable, "-m", "pyctr", "--root", slurm.pyctr_root,
                         "--config", slurm.pyctr_config, "--data", tb.data]
                for launcher, flag in MPI.items():
                    args = [flag, "-N2", "-n2"] + pyctr + [
                        "run", "--rm", "--net=seg", "-v", bin_dir + ":/ring:ro", "mpi",
                        "/ring/ring." + launcher]
                    print("$ srun " + " ".join(args), flush=True)
                    r = slurm.srun(args, timeout=300)
                    sys.stdout.write(r.stdout + r.stderr)
                    if r.returncode != 0:
                        sys.exit("slurm_hybrid: srun exited with %d" % r.returncode)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
