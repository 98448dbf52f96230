"""The -d monitor: a process forked from `pyctr run -d` (or `pyctr cluster
up`) that owns a detached container, like conmon: it creates and starts
it, reports success or the error back through a pipe, then waits for the
workload, records its exit and cleans up."""
import os

from pyctr.errors import EXIT_RUNTIME, PyctrError


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
            c.create(log=True)
            c.start()
            os.write(w, b"ok " + c.name.encode())
            os.close(w)
            code = c.wait()
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
