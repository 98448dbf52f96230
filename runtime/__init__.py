"""pyctr: a minimal Linux container runtime with built-in networking.

The file tree is the architecture:
  cli.py        argv -> options -> Spec (and dispatch of the other verbs)
  spec.py       the typed, OCI-shaped Spec that is all the acting code sees
  specgen.py    CLI options / TOML job files -> Spec;  oci/bundle.py: config.json -> Spec
  oci/          runc's command line for engines (create/start/state/kill/delete/exec...)
  container.py  the parent side of create+start: clone, maps, network, sync, wait
  sync.py       the parent/child protocol (diagram at its top)
  child.py      what the cloned child does before exec, step by step
  rootfs.py     mount plan (pure) and its application (pivot_root, /dev, masks)
  caps.py       capability sets, no_new_privs
  idmap.py      uid/gid maps for user namespaces
  syscalls.py   the only door to the kernel (cffi shim); tests swap in a recorder
  state.py      /run/pyctr: one directory per container, written before start
  enter.py      `pyctr exec`: join a running container's namespaces
  images.py     image store, TOML recipes, tarball import
  network/      veth+bridge, macvlan, IPAM, named networks (netlink)
  bench/        benchmarks against runc/crun/bwrap/CNI, and the study's experiment
"""
