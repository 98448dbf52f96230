"""pyctr as an OCI runtime: the runtime-spec config (bundle.py and the
modules it calls per concern) and the runc-compatible verbs engines drive
(podman through conmon, containerd's runc shim, Slurm's oci.conf).

  bundle.py     config.json -> Spec (one line per concern below)
  process.py    terminal, console size, umask, rlimits, oomScoreAdj
  settings.py   hooks, namespaced sysctls, root propagation, refused fields
  hooks.py      hook records and running them with the state on stdin
  console.py    the pty of a --console-socket container
  lifecycle.py  create, start, run --bundle, delete; the exec FIFO
  query.py      state, list, ps, features
  control.py    kill, pause, resume
  execute.py    exec (runc's options and pyctr's)
  errlog.py     --log FILE --log-format text|json
"""
from pyctr.oci.bundle import from_config, load_bundle  # noqa: F401 (the package's API)
