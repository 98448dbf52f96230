#!/usr/bin/env python3
"""Hybrid launch: the host's mpirun/mpiexec starts every rank as a container.

    mpirun -np 2 pyctr run --rm --net=veth:br0 mpi /ring/ring.openmpi
    mpiexec -n 2 pyctr run --rm --net=veth:br0 mpi /ring/ring.mpich

No launcher settings: pyctr passes the launcher's variables and fds on, sets
the MPI variables for the rank's own interface, and relays Open MPI's
loopback PMIx server into the rank's network namespace (rank 0 says what it
set). It runs on one simulated machine (pyctr.testbed: a network namespace
with its own NIC), so nothing touches this machine's network; each rank says
where it ran and what its eth0 carried. Everything is removed at the end.

    /opt/pyctr/bin/python examples/cluster/hybrid.py [veth|macvlan]

Needs root, the mpi image (pyctr image build mpi) and Open MPI and MPICH
with their compilers on the host (install.sh --test).
"""
import sys

from pyctr.testbed import Testbed
from ringbuild import ring_binaries

LAUNCHERS = {"openmpi": ["mpirun.openmpi", "--allow-run-as-root", "-np", "2"],
             "mpich": ["mpiexec.mpich", "-n", "2"]}


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "veth"
    if kind not in ("veth", "macvlan"):
        sys.exit("usage: hybrid.py [veth|macvlan]")
    # macvlan without a host shim: the host cannot reach the ranks at all,
    # and the job still starts.
    net = "veth:br0" if kind == "veth" else "macvlan:nic0,host_shim=no"
    with ring_binaries() as bin_dir, Testbed(prefix="hyb", nodes=1) as tb:
        node = tb.nodes[0]
        for launcher, argv in LAUNCHERS.items():
            rank = ["pyctr", "run", "--rm", "--net=" + net, "-v", bin_dir + ":/ring:ro",
                    "mpi", "/ring/ring." + launcher]
            print("$ " + " ".join(argv + rank), flush=True)
            p = node.run(argv + node.pyctr_argv(*rank[1:]), timeout=300,
                         stdout=None, stderr=None, cwd="/")
            if p.returncode != 0:
                sys.exit("hybrid: %s exited with %d" % (argv[0], p.returncode))
        node.pyctr("gc")


if __name__ == "__main__":
    main()
