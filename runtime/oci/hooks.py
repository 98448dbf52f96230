"""runtime-spec hooks: programs run at points of the lifecycle with the
container's state JSON on stdin.

  prestart, createRuntime   runtime namespaces, during create (after the
                            namespaces exist, before pivot_root)
  createContainer           container namespaces, during create, before pivot_root
  startContainer            container namespaces, at start, just before exec
  poststart                 runtime namespaces, after the workload started
  poststop                  runtime namespaces, at delete

A failing prestart/createRuntime/createContainer/startContainer hook fails
the operation (and the container is torn down); a failing poststart or
poststop hook is only reported, as the spec says. run() may be called in
the container before or after pivot_root, so what it uses is imported here.
"""
import select

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError
from pyctr.spec import Record

NAMES = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")


class Hook(Record):
    """timeout: seconds, or None for none."""
    __slots__ = ("path", "args", "env", "timeout")
    DEFAULTS = {"args": list, "env": list}


def parse(section):
    """The config's "hooks" object -> {name: [Hook]} (only names with hooks)."""
    unknown = set(section) - set(NAMES)
    if unknown:
        raise ValueError("hooks.%s is not a runtime-spec hook" % sorted(unknown)[0])
    parsed = {}
    for name in NAMES:
        for entry in section.get(name) or []:
            path = entry["path"]
            if not os.path.isabs(path):
                raise ValueError("hooks.%s: path %r is not absolute" % (name, path))
            timeout = entry.get("timeout")
            if timeout is not None and int(timeout) <= 0:
                raise ValueError("hooks.%s: timeout %r must be above 0" % (name, timeout))
            parsed.setdefault(name, []).append(Hook(
                path=path, args=[str(a) for a in entry.get("args") or []],
                env=[str(e) for e in entry.get("env") or []],
                timeout=None if timeout is None else int(timeout)))
    return parsed


def to_oci(hooks):
    return {name: [to_json(h) for h in entries] for name, entries in hooks.items()}


def to_json(hook):
    out = {"path": hook.path}
    if hook.args:
        out["args"] = list(hook.args)
    if hook.env:
        out["env"] = list(hook.env)
    if hook.timeout:
        out["timeout"] = hook.timeout
    return out


def from_json(entries):
    """Hooks kept in a container's state (poststop, for delete)."""
    return [Hook(path=e["path"], args=e.get("args") or [], env=e.get("env") or [],
                 timeout=e.get("timeout")) for e in entries]


def run(name, entries, state_json, syscall):
    """Run each hook in order; the first failure raises PyctrError.
    state_json: the container's OCI state, as text."""
    data = state_json.encode()
    for hook in entries:
        status = _run_one(hook, data, syscall)
        if status is None:
            raise PyctrError("%s hook %s timed out after %d s" % (name, hook.path, hook.timeout))
        if status:
            raise PyctrError("%s hook %s failed (%s)" % (name, hook.path, _describe(status)))


def _run_one(hook, data, syscall):
    """The hook's wait status, or None if it ran out of time (it is killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(r, 0)
            syscall.close_range(3, 0xFFFFFFFF, 0)
            syscall.reset_signals()
            os.execve(hook.path, hook.args or [hook.path], dict(
                e.split("=", 1) for e in hook.env if "=" in e))
        finally:
            os._exit(127)
    os.close(r)
    try:
        os.write(w, data)  # the state is far below a pipe's capacity
    except BrokenPipeError:
        pass  # a hook need not read its stdin
    os.close(w)
    if hook.timeout:
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        done = poller.poll(hook.timeout * 1000)
        os.close(pidfd)
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return None
    return os.waitpid(pid, 0)[1]


def _describe(status):
    if os.WIFSIGNALED(status):
        return "killed by signal %d" % os.WTERMSIG(status)
    code = os.WEXITSTATUS(status)
    return "cannot execute" if code == 127 else "exit status %d" % code
