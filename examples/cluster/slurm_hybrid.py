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
import sys

from pyctr.slurmbed import SlurmCluster, define_network
from pyctr.testbed import Testbed
from ringbuild import ring_binaries

MPI = {"openmpi": "--mpi=pmix", "mpich": "--mpi=pmi2"}


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "veth"
    if kind not in ("veth", "macvlan"):
        sys.exit("usage: slurm_hybrid.py [veth|macvlan]")
    with ring_binaries() as bin_dir, Testbed(prefix="slx", nodes=2) as tb:
        define_network(tb, "seg", kind)
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


if __name__ == "__main__":
    main()
