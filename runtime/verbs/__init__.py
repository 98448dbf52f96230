"""pyctr's own verbs, one module per group; each `cmd_*(paths, argv)`
returns an exit code and raises PyctrError on failure (cli.py prints it
as one line). They parse the command line and call the library
(specgen, container, monitor, enter, state); no other module imports them.

  run.py     run, spec     (flags / -f TOML / --bundle -> Spec -> Container)
  exec.py    exec          (enter.py joins a running container)
  show.py    ps, inspect, logs
  remove.py  kill, rm, gc
"""
