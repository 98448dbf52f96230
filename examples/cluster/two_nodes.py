#!/usr/bin/env python3
"""A virtual MPI cluster across two simulated machines, the study's setting.

Machines A and B are network namespaces with their own NIC (pyctr.testbed),
so nothing here touches this machine's network. On each, `pyctr cluster up`
starts one node container: c-0 on A, c-1 on B, on the NIC's segment through
a bridge holding the NIC (veth, default) or macvlans on it (macvlan). A is
told how to reach c-1 (`--remote`); `pyctr cluster mpirun` on A then runs
ring.c with Open MPI and with MPICH: each rank says where it ran and what its
eth0 carried. Everything is removed at the end.

    /opt/pyctr/bin/python examples/cluster/two_nodes.py [veth|macvlan]

Needs root, the mpi image (pyctr image build mpi) and Open MPI and MPICH
with their compilers on the host (install.sh --test).
"""
import sys

from pyctr.testbed import Testbed
from ringbuild import ring_binaries



def pyctr(node, *args, timeout=120):
    p = node.pyctr(*args, timeout=timeout)
    if p.returncode != 0:
        sys.exit("two_nodes: pyctr %s on %s failed: %s" % (" ".join(args), node.name,
                                                           p.stderr.strip()))
    return p.stdout


def main():
    kind = sys.argv[1] if len(sys.argv) > 1 else "veth"
    if kind not in ("veth", "macvlan"):
        sys.exit("usage: two_nodes.py [veth|macvlan]")
    with ring_binaries() as bin_dir, Testbed(prefix="demo", nodes=2) as tb:
        a, b = tb.nodes
        if kind == "veth":
            for node in (a, b):
                pyctr(node, "net", "create", "seg", "--subnet", "10.77.0.0/24",
                      "--uplink", "nic0")
            net = "--net=seg"
        else:
            net = "--net=macvlan:nic0"
        common = ("--nodes", "2", net, "-v", "%s:/ring:ro" % bin_dir)
        pyctr(b, "cluster", "up", "c", "--here", "1", *common)
        reach_b = " ".join(b.argv(b.pyctr_argv("exec", "{node}")))
        print(pyctr(a, "cluster", "up", "c", "--here", "0", "--remote", "1=" + reach_b,
                    *common))
        for launcher in ("openmpi", "mpich"):
            print("$ pyctr cluster mpirun c --launcher %s -- /ring/ring.%s"
                  % (launcher, launcher))
            print(pyctr(a, "cluster", "mpirun", "c", "--launcher", launcher, "--",
                        "/ring/ring." + launcher))
        pyctr(a, "cluster", "down", "c")
        pyctr(b, "cluster", "down", "c")


if __name__ == "__main__":
    main()
