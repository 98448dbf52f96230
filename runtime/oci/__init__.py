"""pyctr as an OCI runtime: the runtime-spec config (bundle.py and the
modules it calls per concern) and the runc-compatible verbs engines drive
(podman through conmon, containerd's runc shim, Slurm's oci.conf).

  bundle.py     config.json -> Spec (one line per concern below)
  process.py    terminal, console size, umask, rlimits, oomScoreAdj
  settings.py   hooks, namespaced sysctls, root propagation, refused fields
  hooks.py      hook records and running them with the state on stdin
  console.py    the terminal of a --console-socket container
  lifecycle.py  create, start, run --bundle, delete (stages `bundle`, `bundle_ready`)
  barrier.py    the child's side: createContainer hooks, sysctls, pty, the exec FIFO
  control.py    processes, kill, pause, resume
  cli.py        create, start, state, delete, pause, resume, list, features, run --bundle
  features.py   `pyctr features`
  errlog.py     --log FILE --log-format text|json
(pyctr.verbs takes runc's forms of exec, kill and ps beside pyctr's own.)
"""


def __getattr__(name):
    """The package's API, oci.from_config and oci.load_bundle, imported on
    first use: state, start, kill and delete never parse a bundle, and
    bundle.py pulls in json and re."""
    if name in ("from_config", "load_bundle"):
        from pyctr.oci import bundle
        return getattr(bundle, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
