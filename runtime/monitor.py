"""Who waits for a running container.

The -d monitor: a process forked from `pyctr run -d` (or `pyctr cluster
up`) that owns a detached container, like conmon: it creates and starts
it, reports success or the error back through a pipe, then hands over.

The handover: a Python process costs ~5 MiB of PSS for as long as its
container runs, so once the container runs Python execs pyctr-monitor
(csrc/monitor.c, a few pages) in the same process: the container's init
stays its child and the owner the record names (pid and start time) stays
alive. pyctr-monitor waits, forwards signals, writes the exit code to
<state>/exit (shown by ps and inspect from then on, see StateStore.load)
and execs back into pyctr's hidden `_finished` verb (cmd_finished), which
records the exit code, cleans up as Container.cleanup does, and exits
with that code.

Python keeps waiting itself (no handover) where it must stay in the loop:
  - an MPI rank's PMIx relay (pyctr.mpi.relay) serves from threads of this
    process, and any other thread would die at exec;
  - pyctr-monitor is missing (a source tree without a build) or cannot be
    exec'd.
`pyctr run --bundle` (runc's run, for engines) never hands over: it may
relay a terminal, and its delete and hooks follow runc's order.
"""
import sys

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import EXIT_RUNTIME, PyctrError

BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyctr-monitor")


def start_detached(paths, spec):
    """Start `spec` in the background; returns its name once it runs, or
    raises the PyctrError (with its exit code) that stopped it."""
    from pyctr.container import Container
    r, w = os.pipe2(os.O_CLOEXEC)
    monitor = os.fork()
    if monitor == 0:
        os.close(r)
        os.setsid()
        code = EXIT_RUNTIME
        try:
            c = Container(paths, spec)
            c.create(log=True, start_follows=True)
            c.start()
            os.write(w, b"ok " + c.name.encode())
            os.close(w)
            code = hand_over(c)
            c.cleanup()
        except PyctrError as e:
            os.write(w, ("err %d %s" % (e.exit_code, e)).encode())
        except BaseException as e:
            os.write(w, ("err %d %s" % (EXIT_RUNTIME, e)).encode())
        os._exit(code)
    os.close(w)
    from pyctr.sync import read_all
    msg = read_all(r).decode(errors="replace")
    if msg.startswith("ok "):
        return msg[3:]
    os.waitpid(monitor, 0)
    if msg.startswith("err "):
        code, _, text = msg[4:].partition(" ")
        raise PyctrError(text, exit_code=int(code))
    raise PyctrError("container monitor died before the container started")


def hand_over(c):
    """Exec pyctr-monitor to wait for the started Container `c`; this
    returns only where Python must wait itself (see above), with the
    workload's exit code, as c.wait() does."""
    if not c.state.pmix_relay and len(os.listdir("/proc/self/task")) == 1 and sys.executable:
        # pyctr-monitor writes the exit code below this fd: the directory
        # of this container, even if a new one takes the name meanwhile
        state_dir = os.open(c.dir, os.O_PATH | os.O_DIRECTORY)
        os.set_inheritable(state_dir, True)
        argv = [BINARY, str(c.pid), str(state_dir), "--"] + _finish_command(c.paths, c.name)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv(BINARY, argv)
        except OSError:
            os.close(state_dir)  # no pyctr-monitor: wait here, as before
    return c.wait()


def _finish_command(paths, name):
    """This interpreter, with the flags it runs with (the lean launcher's -S,
    see pyctr.launcher), running pyctr's `_finished NAME` in the same world.
    Never with the current directory on sys.path (-P; -I implies it): it
    may be a volume the container writes to."""
    flags = [flag for flag, on in (("-I", sys.flags.isolated), ("-E", sys.flags.ignore_environment),
                                   ("-s", sys.flags.no_user_site), ("-S", sys.flags.no_site)) if on]
    here = os.path.dirname(os.path.abspath(__file__))
    # An installed package is found without site too; an editable one
    # (runtime/ imported as pyctr) only through site's import hook.
    path = "sys.path.append(%r); " % os.path.dirname(here) if os.path.basename(here) == "pyctr" \
        else ""
    return [sys.executable, *flags, "-P", "-c",
            "import sys; %sfrom pyctr.cli import exit_with, main; exit_with(main())" % path,
            "--root", os.path.abspath(paths.root), "--config", os.path.abspath(paths.config),
            "--data", os.path.abspath(paths.data), "_finished", name]


def cmd_finished(paths, argv):
    """`pyctr _finished NAME CODE`, exec'd by pyctr-monitor when the
    workload has ended with CODE: record it and clean up, as the owner of
    NAME's record (this same process, before the handover). A record
    owned by anyone else (or gone: `rm -f`) is left alone."""
    if len(argv) != 2 or not argv[1].isdigit():
        raise PyctrError("_finished is pyctr's own step after pyctr-monitor: "
                         "_finished NAME EXIT_CODE")
    name, code = argv[0], int(argv[1])
    from pyctr.container import clean_up
    from pyctr.state import StateStore, process_start_time
    try:
        state = StateStore(paths).load(name)
    except PyctrError:
        return code  # removed meanwhile (rm -f)
    if (state.owner_pid, state.owner_start) != (os.getpid(), process_start_time(os.getpid())):
        return code
    state.exited(code, state.finished)  # the time pyctr-monitor wrote the exit, if it could
    clean_up(paths, state)
    return code
