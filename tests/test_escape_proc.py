"""No host binary or environment in reach of a container (runc's
CVE-2019-5736 class), --init as a small static reaper, and a session
keyring of the container's own.

The race tests run tests/probe.c in a container, opening
/proc/PID/{exe,environ,fd} of every other process in a tight loop while
the host starts `pyctr exec` processes into it and containers that join
its pid namespace. A leak is an exe that is the host's Python (or
pyctr-init), or an environ holding a marker only the host's pyctr
processes have.
"""
import os
import subprocess
import sys
import time
import uuid

import pytest

from conftest import root_only
from probe import mount, parse, probe  # noqa: F401 (fixture)

pytestmark = root_only

UNCONFINED = ("--security-opt", "seccomp=unconfined")


def progress(out_dir):
    try:
        with open(os.path.join(out_dir, "progress")) as f:
            words = f.read().split()
    except FileNotFoundError:
        return {}
    return {k: int(v) for k, v in zip(words[::2], words[1::2])}


def race(pyctr, probe, work, flags, attempts):
    """Start the prober in a container `race` with `flags`; call each of
    `attempts` (functions of the marker environment) in turn, round after
    round, until the prober saw runtime processes it could not open (at most
    60 rounds); return its final summary."""
    out = os.path.join(work, "out")
    os.mkdir(out)
    python = os.stat(sys.executable)
    marker = "PYCTR_RACE_%s" % uuid.uuid4().hex
    env = dict(os.environ, PYCTR_RACE_MARKER=marker)
    pyctr("run", "-d", "--name", "race", *flags, *mount(probe), "-v", out + ":/out",
          "busybox", "sh", "-c",
          # a dumpable neighbour: the prober must be able to open its exe
          "sleep 300 & exec /probe/probe race 120 %d %d %s /out"
          % (python.st_dev, python.st_ino, marker), check=True)
    try:
        for round_ in range(60):
            while not progress(out):
                time.sleep(0.05)
            for attempt in attempts:
                attempt(env)
            seen = progress(out)
            if round_ >= 5 and seen.get("denied", 0) >= 10:
                break
    finally:
        open(os.path.join(out, "stop"), "w").close()
    for _ in range(200):  # bounded: the prober stops at its next scan
        logs = pyctr("logs", "race").stdout
        if "scans" in logs:
            break
        time.sleep(0.05)
    assert "leak:" not in logs, logs
    return progress(out), logs


def exec_into(pyctr):
    return lambda env: pyctr("exec", "race", "true", env=env, check=True)


def run_in_pid_ns(pyctr):
    """A new container in race's pid namespace: its runtime child is in
    there from clone() on, through the whole root filesystem setup."""
    return lambda env: pyctr("run", "--rm", "--pid", "container:race", "busybox", "true",
                             env=env, check=True)


def test_runtime_processes_unreachable_through_proc(pyctr, probe, work):
    seen, logs = race(pyctr, probe, work, UNCONFINED, [exec_into(pyctr), run_in_pid_ns(pyctr)])
    assert seen["leaks"] == 0, logs
    assert seen["opened"] > 0  # the prober can open what it may: the sleep's exe
    assert seen["denied"] > 0  # and met runtime processes it could not


def test_init_unreachable_through_proc(pyctr, probe, work):
    seen, logs = race(pyctr, probe, work, ("--init",) + UNCONFINED, [exec_into(pyctr)])
    assert seen["leaks"] == 0, logs
    assert seen["opened"] > 0 and seen["denied"] > 0


def test_workload_is_dumpable_again(pyctr):
    """Not dumpable ends at the workload's execve: its own /proc entries
    behave as usual (a process of the container may read its environ)."""
    pyctr("run", "-d", "--name", "w", "-e", "SEEN=yes", "busybox", "sleep", "30", check=True)
    p = pyctr("exec", "w", "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ; readlink /proc/1/exe",
              check=True)
    assert "SEEN=yes" in p.stdout.split() and "/bin/busybox" in p.stdout
    p = pyctr("exec", "w", "sh", "-c", "cat /proc/self/environ > /dev/null && echo readable",
              check=True)
    assert "readable" in p.stdout


# -- --init is pyctr-init, not the host's interpreter -----------------------------
def test_init_is_the_static_reaper(pyctr):
    p = pyctr("run", "--rm", "--init", "busybox", "sh", "-c",
              "cat /proc/1/comm; readlink /proc/1/exe || echo no-exe; "
              "cat /proc/1/environ >/dev/null 2>&1 || echo no-environ; "
              # root may list a root process's fd numbers, never follow them
              "readlink /proc/1/fd/0 || echo no-fd; echo $$", check=True)
    lines = p.stdout.split()
    assert "python" not in lines[0] and "pyctr-ini" in lines[0]
    assert lines[1:4] == ["no-exe", "no-environ", "no-fd"]
    assert lines[4] != "1"  # the workload is not PID 1


@pytest.mark.parametrize("command,code", [(["nosuchcmd"], 127), (["/etc/hosts"], 126),
                                          (["sh", "-c", "exit 7"], 7),
                                          (["sh", "-c", "kill -TERM $$"], 128 + 15)])
def test_init_exit_codes(pyctr, command, code):
    p = pyctr("run", "--rm", "--init", "busybox", *command)
    assert p.returncode == code, p.stderr
    if code in (126, 127):
        assert p.stderr.startswith("pyctr: %s: " % command[0])


def test_init_passes_preserved_fds(pyctr):
    argv = pyctr.argv("run", "--rm", "--init", "--preserve-fds", "1", "busybox", "sh", "-c",
                      "cat <&3")
    # fd 3 is a pipe (only sockets and pipes pass into a container)
    p = subprocess.run(["sh", "-c", 'printf through | { exec 3<&0 </dev/null; exec "$@"; }',
                        "sh", *argv], capture_output=True, text=True, timeout=60)
    assert p.stdout == "through", p.stderr


# -- the session keyring ---------------------------------------------------------
def host_session_keyring(probe):
    return subprocess.run([os.path.join(probe, "probe"), "keyring"], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_new_session_keyring_per_container(pyctr, probe):
    """Even where keyctl is allowed, a container's session keyring is a new
    one: never the session of the shell that started pyctr."""
    keyring = lambda *flags: pyctr("run", "--rm", *UNCONFINED, *flags, *mount(probe),
                                   "busybox", "/probe/probe", "keyring", check=True).stdout
    first, second = keyring().strip(), keyring().strip()
    host = host_session_keyring(probe)
    assert first.isdigit() and second.isdigit()
    assert host not in (first, second) and first != second
    pyctr("run", "-d", "--name", "k", *UNCONFINED, *mount(probe), "busybox", "sleep", "30",
          check=True)
    inside = pyctr("exec", "k", "/probe/probe", "keyring", check=True).stdout.strip()
    assert inside.isdigit() and inside != host


def test_keyctl_blocked_by_default(pyctr, probe):
    p = pyctr("run", "--rm", *mount(probe), "busybox", "/probe/probe", "try", "keyctl",
              check=True)
    assert parse(p.stdout) == {"keyctl": 1}
