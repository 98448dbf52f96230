"""`pyctr cluster`: a virtual cluster of long-lived containers, the study's
setting. Each virtual node is a container; `mpirun` (or MPICH's `mpiexec`)
runs on the host and starts its daemons in the nodes through `pyctr exec`,
the remote agent, so no node needs an sshd.

    pyctr cluster up NAME --nodes N --net=veth:BRIDGE|macvlan:LOWER|NETWORK
                     [--subnet CIDR] [--image mpi] [--slots K]
                     [--launcher openmpi|mpich|any] [--host-base H]
                     [-v SRC:DST[:ro]]... [-e KEY=VALUE]...
                     [--here LIST] [--remote LIST=COMMAND]...
    pyctr cluster mpirun NAME [--launcher openmpi|mpich] [--print] [--] [ARGS...]
    pyctr cluster ls
    pyctr cluster inspect NAME
    pyctr cluster down NAME...

Node i is the container NAME-i, with hostname NAME-i and the address
subnet + H + i (H: --host-base, default 10; a network's `range` does not
apply): the same on every host, so the nodes' /etc/hosts and the MPI
hostfiles are known before anything runs. The host needs an address in the
subnet (the bridge's, or the macvlan shim's) for mpirun's daemons to call
back; its Open MPI / MPICH must be the image's versions (both Debian 12).
A cluster may span machines on one segment: each runs `cluster up` with the
same NAME, --nodes and subnet, starting only its own nodes (--here); the
machine that launches jobs says how to reach the others' (--remote, e.g.
`--remote 2-3='ssh hostB pyctr exec {node}'`).

  cli.py     the verbs: parse, check, call the rest, report
  plan.py    before anything starts: names, --here/--remote, the network
             (resolved as the nodes' attach will), node addresses
  nodes.py   start the nodes in this process (a Spec each, pyctr.monitor),
             remove them and the host side `up` made
  files.py   <state root>/clusters/NAME/: cluster.json, hosts, hostfiles, agent
  launch.py  the mpirun/mpiexec command line and the launcher's MPI settings
"""
