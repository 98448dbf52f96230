"""pyctr: a Linux container runtime with built-in networking.

The file tree is the architecture (docs/architecture.md draws it):
  cli.py        global options, the verb table, a small getopt
  verbs/        pyctr's own verbs: run, exec, ps/inspect/logs, kill/rm/gc
  oci/          runc's command line for engines (create, start, state, kill, delete ...)
  spec.py       the typed, OCI-shaped Spec: the only thing the acting code reads (frozen)
  specgen.py    CLI options / TOML job files -> Spec;  oci/bundle.py: config.json -> Spec
  container.py  creation as STAGES with undo; start, wait, clean up
  sync.py       the parent/child channel (diagram at its top)
  child.py      what the cloned child does before exec, step by step
  rootfs.py     mount plan (pure) and its application, every path inside the root
  syscalls.py   the only door to the kernel (cffi shim); tests swap in a recorder
  state.py      ContainerState records under /run/pyctr; names checked on every lookup
  posixos.py    os's parts for the start-up path, without os's import cost
  identity.py   capability sets, uid/gid checks;  idmap.py: user-namespace maps
  resources.py, cgroups.py, devices.py   limits, the container's cgroup, device policy
  seccomp.py    seccomp profiles (default: seccomp.default), compiled before clone
  reaper.py     --init's pyctr-init (csrc/init.c)
  monitor.py    the -d monitor;  enter.py: `pyctr exec`
  images/       image store, recipes, archive import
  network/      kinds/ (veth, macvlan), IPAM, named networks, rtnetlink, gc
  mpi/          MPI settings for a rank's interface, PMIx relay, mpi-doctor
  cluster/      virtual clusters for MPI;  testbed.py: simulated nodes
  bench/        benchmarks against runc/crun/bwrap/CNI, and the study's experiment
"""
