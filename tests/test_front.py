"""pyctr-front (csrc/front.c), the installed `pyctr` command: engines'
start, state and delete done from the record without Python, the same
answers as Python's, and everything else handed to Python. Real
containers; root. (PYCTR_TEST_COMMAND=LAUNCHER runs test_oci_cli.py, and
any other CLI test, through such a launcher too.)"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import Pyctr, one_line_error, root_only, until
from pyctr import launcher

pytestmark = [root_only, pytest.mark.root,
              pytest.mark.skipif(launcher.front_binary() is None,
                                 reason="pyctr-front not built (pip install .)")]

PYTHON = [sys.executable, "-m", "pyctr"]


@pytest.fixture
def commands(tmp_path):
    """(front, front_without_python): the `pyctr` command as installed, and
    one whose Python is /bin/false, so it succeeds only where pyctr-front
    does the verb itself (a hand-over exits 1)."""
    front, alone = str(tmp_path / "pyctr"), str(tmp_path / "pyctr-alone")
    launcher.write(front)
    launcher.write(alone, python="/bin/false")
    return front, alone


@pytest.fixture
def worlds(pyctr, commands):
    """The test's world as Python, pyctr-front and pyctr-front alone run it."""
    return {name: Pyctr(pyctr.root, pyctr.data, pyctr.config, command)
            for name, command in (("python", PYTHON), ("front", [commands[0]]),
                                  ("alone", [commands[1]]))}


def bundle(pyctr, rootfs, work, name, args, edit=None):
    config = json.loads(pyctr("spec", rootfs, *args, check=True).stdout)
    config["root"]["readonly"] = True
    config["annotations"] = {"org.example": "caf\u00e9 \"quoted\"", "b": "2"}
    if edit:
        edit(config)
    path = os.path.join(work, name)
    os.mkdir(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def create(world, bundle_dir, cid):
    # init keeps create's stdio: a file, not a pipe that would stay open
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.run(world.argv("create", "--bundle", bundle_dir, cid),
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60)
        out.seek(0)
        assert p.returncode == 0, out.read()


def same_state(worlds, cid):
    """`state` from pyctr-front alone is Python's, byte for byte."""
    python = worlds["python"]("state", cid, check=True).stdout
    assert worlds["alone"]("state", cid, check=True).stdout == python
    return json.loads(python)


def test_start_state_delete_without_python(worlds, rootfs, work):
    python, alone = worlds["python"], worlds["alone"]
    b = bundle(python, rootfs, work, "b1", ["sleep", "300"])
    create(python, b, "f1")
    st = same_state(worlds, "f1")
    assert st["status"] == "created" and st["annotations"]["org.example"] == "caf\u00e9 \"quoted\""
    with open(os.path.join(python.root, "containers", "f1", "state.json")) as f:
        groups = list(json.load(f)["cgroup"]["dirs"].values())
    assert groups and all(os.path.isdir(g) for g in groups)

    alone("start", "f1", check=True)
    st = same_state(worlds, "f1")
    assert st["status"] == "running"
    with open(os.path.join(python.root, "containers", "f1", "state.json")) as f:
        record = json.load(f)  # what the front wrote Python reads
    assert record["status"] == "running" and record["started"]
    p = alone("start", "f1")
    assert p.returncode == 1  # running: not the front's to refuse, Python does
    p = worlds["front"]("start", "f1")
    assert p.returncode == 125 and "running" in one_line_error(p)

    assert alone("kill", "f1", "SIGKILL").returncode == 1  # a name: Python's to read
    alone("kill", "f1", "9", check=True)
    until(lambda: json.loads(python("state", "f1", check=True).stdout)["status"] == "stopped",
          "stopped")
    assert alone("kill", "f1", "9").returncode == 1  # not running: Python says so
    assert same_state(worlds, "f1")["status"] == "stopped"
    alone("delete", "f1", check=True)
    assert python.containers() == []
    assert not [g for g in groups if os.path.exists(g)]


def test_delete_without_python_takes_the_containers_cpuset_bucket(worlds, rootfs, work):
    """With pyctr's parent crowded, a container's v1 cpuset group lives in
    a bucket (cgroups.bucket); pyctr-front's delete removes the bucket
    with its last group, as Python's does."""
    from pyctr import cgroups
    python, alone = worlds["python"], worlds["alone"]
    cpuset = cgroups.detect().controller("cpuset")
    if not cpuset or cpuset.version != 1:
        pytest.skip("no v1 cpuset hierarchy on this host")
    parent = cgroups._home(cpuset)
    made_parent = not os.path.isdir(parent)
    os.makedirs(parent, exist_ok=True)
    # groups of nobody's, standing in for other containers'
    crowd = [os.path.join(parent, "crowd-%d" % i) for i in range(cgroups.BUCKETS)]
    for directory in crowd:
        os.mkdir(directory)
    try:
        create(python, bundle(python, rootfs, work, "b4", ["sleep", "300"]), "f4")
        with open(os.path.join(python.root, "containers", "f4", "state.json")) as f:
            directory = json.load(f)["cgroup"]["dirs"][cpuset.name]
        bucket = os.path.dirname(directory)
        assert os.path.dirname(bucket) == parent and cgroups._is_bucket(bucket)
        alone("start", "f4", check=True)
        alone("kill", "f4", "9", check=True)
        until(lambda: json.loads(python("state", "f4", check=True).stdout)["status"]
              == "stopped", "stopped")
        others = [n for n in os.listdir(bucket) if os.path.isdir(os.path.join(bucket, n))
                  and os.path.join(bucket, n) != directory]
        alone("delete", "f4", check=True)
        assert not os.path.exists(directory)
        assert os.path.exists(bucket) == bool(others)
    finally:
        python("delete", "--force", "f4")
        for directory in crowd:
            os.rmdir(directory)
        if made_parent:
            try:
                os.rmdir(parent)
            except OSError:
                pass  # another world's groups are in it


def test_unknown_ids_and_what_the_front_hands_over(worlds, rootfs, work):
    alone, front, python = worlds["alone"], worlds["front"], worlds["python"]
    assert alone("delete", "--force", "never-made").returncode == 0
    assert alone("delete", "never-made", "-f").returncode == 0
    for args in (("delete", "never-made"), ("start", "never-made"), ("state", "never-made"),
                 ("state", "../x"), ("delete", "-f", "a", "b"), ("kill", "never-made"),
                 ("--systemd-cgroup", "state", "x"), ("--version",), ()):
        assert alone(*args).returncode == 1, args  # /bin/false: Python's turn
    for verb in ("delete", "start", "state"):
        p, q = front(verb, "never-made"), python(verb, "never-made")
        assert (p.returncode, p.stdout, p.stderr) == (q.returncode, q.stdout, q.stderr)
        assert "does not exist" in one_line_error(p)
    # created, init alive: delete kills it first, which is Python's to do
    create(python, bundle(python, rootfs, work, "b2", ["true"]), "f2")
    assert alone("delete", "f2").returncode == 1
    front("delete", "f2", check=True)
    assert python.containers() == []


def test_a_failed_start_is_reported_as_python_reports_it(worlds, rootfs, work):
    """init's answer at the exec barrier is read once, by the front: its
    failure reaches stderr and the JSON log through Python."""
    python, front = worlds["python"], worlds["front"]

    def failing_hook(config):
        config["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    b = bundle(python, rootfs, work, "b3", ["true"], failing_hook)
    create(python, b, "f3")
    create(python, b, "f4")
    log = os.path.join(work, "log.json")
    p = front("--log", log, "--log-format", "json", "start", "f3")
    q = python("start", "f4")
    assert p.returncode == q.returncode == 125
    assert one_line_error(p) == one_line_error(q)
    assert "startContainer hook /bin/false failed" in p.stderr
    with open(log) as f:
        entry = json.loads(f.read().splitlines()[-1])
    assert entry["level"] == "error" and entry["msg"] == p.stderr.strip()[len("pyctr: "):]
    front("delete", "--force", "f3", check=True)
    front("delete", "--force", "f4", check=True)
    assert python.containers() == []


def test_launcher_names_its_interpreter(commands):
    front, alone = commands
    assert launcher.interpreter(front) == sys.executable
    assert launcher.interpreter(alone) == "/bin/false"
    p = subprocess.run([front, "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and "pyctr version" in p.stdout


def test_python_never_imports_from_the_current_directory(commands, tmp_path):
    """Root's pyctr started in a directory someone else can write to."""
    (tmp_path / "pyctr.py").write_text("print('hijacked')\n")
    (tmp_path / "types.py").write_text("print('hijacked')\n")
    p = subprocess.run([commands[0], "--version"], capture_output=True, text=True,
                       cwd=str(tmp_path))
    assert p.returncode == 0 and "hijacked" not in p.stdout + p.stderr


def test_the_command_works_under_a_low_open_files_limit(worlds):
    """Slurm passes a user's `ulimit -n` on to the step: at 512 or 64
    open files every command ended in a Python traceback (exit 1)."""
    import resource
    front = worlds["front"]
    for soft in (512, 64):
        def lower():
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        for args in (("run", "--rm", "--net=none", "busybox", "/bin/true"), ("ps",)):
            p = subprocess.run(front.argv(*args), capture_output=True, text=True, timeout=60,
                               preexec_fn=lower)
            assert p.returncode == 0 and "Traceback" not in p.stderr, (soft, args, p.stderr)
    assert front.containers() == []


def test_a_closed_standard_fd_is_dev_null_never_a_file_of_pyctrs(worlds):
    """A script run with a standard fd closed (`<&- 2>&-`, `>&-`): the next
    file pyctr opened took its number, and the exit ended in a traceback
    (exit 1 where the workload's code or 127 was due)."""
    def closing(*fds):
        return lambda: [os.close(fd) for fd in fds]
    for name in ("front", "python"):
        world = worlds[name]
        p = subprocess.run(world.argv("run", "--rm", "--net=none", "busybox", "sh", "-c",
                                      "readlink /proc/self/fd/0; readlink /proc/self/fd/2"),
                           stdout=subprocess.PIPE, text=True, timeout=60,
                           preexec_fn=closing(0, 2))
        assert p.returncode == 0 and p.stdout.split() == ["/dev/null", "/dev/null"], name
        p = subprocess.run(world.argv("run", "--rm", "--net=none", "busybox", "/nonexistent"),
                           timeout=60, preexec_fn=closing(2))
        assert p.returncode == 127, name
        p = subprocess.run(world.argv("ps"), stderr=subprocess.PIPE, text=True, timeout=60,
                           preexec_fn=closing(1))
        assert p.returncode == 0 and "Traceback" not in p.stderr, (name, p.stderr)
        assert world.containers() == []


def test_an_early_interrupt_is_exit_130_never_a_traceback(worlds):
    """Ctrl-C at any moment of a start, the interpreter's own start-up
    included: 130 (or 0 if the run was over; in pyctr-front's first instant,
    before it holds the signal, death by SIGINT, as for any program), and
    nothing on stderr. Python's start-up ended in "Fatal Python error:
    init_sys_streams", an import before main's handling in a
    KeyboardInterrupt traceback. The moments are spread by waits of 0-35 ms;
    what each run may print is asserted, not how long it takes."""
    import random
    front = worlds["front"]
    for _ in range(40):
        p = subprocess.Popen(front.argv("run", "--rm", "--net=none", "busybox", "true"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(random.uniform(0, 0.035))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode in (0, 130, -signal.SIGINT) and err == "", (p.returncode, err)
    assert front.containers() == []


def _warm_ups():
    """pids of pyctr-front's cgroup warm-up processes (csrc/front.c)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/comm" % pid) as f:
                if f.read().strip() == "pyctr-warm-up":
                    found.append(int(pid))
        except OSError:
            continue
    return found


def test_the_cgroup_warm_up_stays_outside_the_container(worlds):
    """`run` through the command starts a warm-up process before Python:
    neither its pipe nor its variable reaches the workload, and it does not
    outlive the command."""
    front = worlds["front"]
    p = front("run", "--rm", "busybox", "sh", "-c", "ls /proc/self/fd; env", check=True)
    fds = sorted(int(x) for x in p.stdout.split() if x.isdigit())
    assert fds == [0, 1, 2, 3], p.stdout  # 3: ls's own directory
    assert "PYCTR_WARM_FD" not in p.stdout
    deadline = time.monotonic() + 10
    while _warm_ups() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _warm_ups() == []



def _children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(c) for c in f.read().split()]


def _comm_and_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        comm, _, rest = f.read().rpartition(")")
    return comm.partition("(")[2], rest.split()[0]


def test_a_running_containers_pyctr_has_no_child_but_the_container(worlds):
    """pyctr-front forks its warm-up through a process it does not wait
    for: Python reaps it, so an engine or a subreaper watching pyctr's
    children finds the container's init alone, no zombie beside it."""
    front = worlds["front"]
    p = subprocess.Popen(front.argv("run", "--rm", "--name", "kids", "busybox", "sleep", "30"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        until(lambda: any(_comm_and_state(c)[0] == "sleep" for c in _children(p.pid)),
              "the container's init as pyctr's child", timeout=30)
        assert [_comm_and_state(c) for c in _children(p.pid)] in ([("sleep", "S")],
                                                                  [("sleep", "R")])
    finally:
        front("rm", "-f", "kids")
        p.wait(timeout=30)

def test_exec_through_the_command_joins_the_containers_cgroup(worlds):
    """exec moves its process into the container's cgroup (what the
    warm-up is for) right after pyctr ends the warm-up: it is there."""
    front = worlds["front"]
    front("run", "-d", "--name", "warm", "busybox", "sleep", "60", check=True)
    try:
        inside = front("exec", "warm", "cat", "/proc/self/cgroup", check=True).stdout
        init = front("exec", "warm", "cat", "/proc/1/cgroup", check=True).stdout
        assert inside == init and inside.strip()
    finally:
        front("rm", "-f", "warm")


LEAVE_NETNS_C = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include "leave_netns.h"
static unsigned long ino(void)
{
    struct stat st;
    return stat("/proc/self/ns/net", &st) ? 0 : (unsigned long)st.st_ino;
}
int main(void)
{
    unsigned long before = ino();
    leave_netns();
    printf("%lu %lu\n", before, ino());
    return 0;
}
"""
INITIAL_NETNS_INODE = 0xEFFFFFF9  # recent kernels' fixed number for it


def test_a_helper_leaves_a_nodes_network_namespace_and_makes_none_in_the_hosts(tmp_path):
    """The warm-up and pyctr-netlink-send (csrc/leave_netns.h) are never a
    process of the node's namespace pyctr works in, and in the host's own
    one they stay (a namespace made and torn down costs every run CPU)."""
    source = tmp_path / "leave.c"
    source.write_text(LEAVE_NETNS_C)
    binary = str(tmp_path / "leave")
    subprocess.run(["gcc", "-O2", "-I", os.path.join(os.path.dirname(__file__), "..", "csrc"),
                    "-o", binary, str(source)], check=True)
    name = "pyctr-leave-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        node = os.stat("/run/netns/" + name).st_ino
        out = subprocess.run(["nsenter", "--net=/run/netns/" + name, binary], check=True,
                             capture_output=True, text=True, timeout=30).stdout.split()
        assert int(out[0]) == node and int(out[1]) != node
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    before, after = map(int, subprocess.run([binary], check=True, capture_output=True,
                                            text=True, timeout=30).stdout.split())
    if before != INITIAL_NETNS_INODE:
        pytest.skip("this kernel numbers the initial network namespace dynamically")
    assert after == before


def test_only_the_fronts_own_warm_up_variable_reaches_python(tmp_path):
    """PYCTR_WARM_FD names an fd Python closes and a process it reaps: one
    from the caller's environment never gets through pyctr-front."""
    show = tmp_path / "show-env"
    show.write_text("#!/bin/sh\nenv\n")
    show.chmod(0o755)
    command = str(tmp_path / "pyctr")
    launcher.write(command, python=str(show))
    env = dict(os.environ, PYCTR_WARM_FD="1 1")
    ps = subprocess.run([command, "ps"], env=env, capture_output=True, text=True, timeout=30)
    assert "PYCTR_WARM_FD" not in ps.stdout
    run = subprocess.run([command, "run", "busybox", "true"], env=env, capture_output=True,
                         text=True, timeout=30)
    values = [l.split("=", 1)[1] for l in run.stdout.splitlines()
              if l.startswith("PYCTR_WARM_FD=")]
    assert values and values[0] != "1 1"  # the front's own: its pipe and its fork
    fd, pid = map(int, values[0].split())
    assert fd >= 960 and pid > 1
