"""The loop runner: times commands from *inside* whatever environment it was
started in, so the cost of getting there is never part of a figure.

Why: some contenders need a special environment (crun 1.8.1 refuses this
host's hybrid cgroup layout unless started in a mount namespace where
/sys/fs/cgroup/unified is unmounted; the network benchmark runs everything in
a simulated node's netns). Wrapping each timed run in `unshare`/`sh`/`nsenter`
would bill that wrapper to the contender. Instead the harness starts one
runner per environment, once, and every contender - also those needing
nothing special - is timed by the same code: posix_spawn + waitpid between two
perf_counter_ns reads, stdout to /dev/null, stderr to a scratch file (read
only when a run fails).

Protocol, one JSON object per line:
  in  {"steps": [STEP...], "on_fail": [STEP...]}
      STEP = {"argv": [...], "env": {...} | null, "stdin": PATH | null,
              "always": bool, "timeout": SECONDS | null}
      Steps run in order and are timed together. After a failing step the
      remaining steps run only if "always" (teardown a real stack would also
      do); "on_fail" steps run untimed after a failure (cleanup of leftovers).
  out {"ns": INT, "cpu_ns": INT, "status": INT, "step": INT, "stderr": STR}
      status is the failing step's exit status (or -SIGNAL), 0 if all passed.
      cpu_ns is the user + system CPU time of the steps' processes and the
      descendants they waited for (wait4's rusage): on a busy node, what a
      start costs is its CPU, more than its wall time on an idle one.
      A step still running after its "timeout" is killed (SIGKILL), its
      status -9 and "timed out after N s" in stderr: a hung start must end
      the benchmark with a message, not stall it for good.

Standalone on purpose (no pyctr imports): it can be started as a plain script
under any interpreter, in any namespace.
"""
import json
import os
import sys
import tempfile
import time


def _spawn(step, errfd, devnull):
    """Run one step to completion; return (its wait status as an exit code,
    the CPU ns it and its waited descendants used)."""
    env = os.environ.copy()
    if step.get("env"):
        env.update(step["env"])
    stdin = step.get("stdin")
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, stdin or "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, devnull, 1),
        (os.POSIX_SPAWN_DUP2, errfd, 2),
    ]
    argv = step["argv"]
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    if step.get("timeout"):
        import select
        pidfd = os.pidfd_open(pid)
        try:
            if not select.select([pidfd], [], [], step["timeout"])[0]:
                os.kill(pid, 9)
                os.write(errfd, ("%s: timed out after %s s\n"
                                 % (argv[0], step["timeout"])).encode())
        finally:
            os.close(pidfd)
    _, status, usage = os.wait4(pid, 0)
    cpu_ns = round((usage.ru_utime + usage.ru_stime) * 1e9)
    return os.waitstatus_to_exitcode(status), cpu_ns


def run_request(request, errfd, devnull):
    os.ftruncate(errfd, 0)
    os.lseek(errfd, 0, os.SEEK_SET)
    status, failed_step, cpu_ns = 0, -1, 0
    t0 = time.perf_counter_ns()
    for n, step in enumerate(request["steps"]):
        if status and not step.get("always"):
            continue
        try:
            rc, cpu = _spawn(step, errfd, devnull)
            cpu_ns += cpu
        except OSError as e:  # e.g. the program does not exist
            os.write(errfd, ("%s: %s\n" % (step["argv"][0], e.strerror)).encode())
            rc = 127
        if rc and not status:
            status, failed_step = rc, n
    ns = time.perf_counter_ns() - t0
    err = ""
    if status:
        for step in request.get("on_fail") or ():
            try:
                _spawn(step, devnull, devnull)
            except OSError:
                pass
        os.lseek(errfd, 0, os.SEEK_SET)
        err = os.read(errfd, 65536).decode(errors="replace")
    return {"ns": ns, "cpu_ns": cpu_ns, "status": status, "step": failed_step,
            "stderr": err[-2000:]}


def main():
    devnull = os.open("/dev/null", os.O_WRONLY)
    errfd, errpath = tempfile.mkstemp(prefix="pyctr-bench-err-")
    os.unlink(errpath)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        out.write(json.dumps(run_request(json.loads(line), errfd, devnull)) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
