"""A running container costs its owner's memory: pyctr hands the wait to
pyctr-monitor (csrc/monitor.c) in the same process, which execs back into
pyctr's `_finished` when the workload ends (pyctr.monitor). Exit codes,
signals, clean-up, the verbs and crash recovery must be as without it,
and a container must cost at most 1 MiB of PSS on the host."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import one_line_error, root_only, until

MONITOR = "pyctr-monitor"
MIB = 1024  # smaps_rollup counts kB


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def record(root, name):
    """The state.json of `name` in the world whose --root is `root`."""
    path = os.path.join(root, "containers", name, "state.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def only_name(root):
    """The name of the one container recorded under `root` (not the
    `.new-*` directory a reservation is made in before its rename)."""
    def names():
        try:
            return [n for n in os.listdir(os.path.join(root, "containers"))
                    if not n.startswith(".") and record(root, n)]
        except FileNotFoundError:
            return []
    until(lambda: len(names()) == 1, "the container's record")
    return names()[0]


def handed_over(root, name):
    """The record's owner, once it is pyctr-monitor: the handover happened."""
    def why():
        r = record(root, name) or {}
        owner = r.get("owner_pid", 0)
        try:
            tasks = os.listdir("/proc/%d/task" % owner)
        except OSError:
            tasks = None
        return "(status %s, owner %s %s, its threads %s)" % (r.get("status"), owner,
                                                             comm(owner), tasks)
    until(lambda: (record(root, name) or {}).get("status") == "running"
               and comm(record(root, name)["owner_pid"]) == MONITOR,
               "the handover to pyctr-monitor", why=why)
    return record(root, name)["owner_pid"]


def finished(root, name):
    """The record once `_finished` has merged the exit and its owner is gone."""
    def done():
        r = record(root, name)
        return r and r["status"] == "stopped" and comm(r["owner_pid"]) is None
    until(done, "the exit to be recorded")
    return record(root, name)


def pss_kb(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise AssertionError("no Pss in smaps_rollup of %d" % pid)


def gate(work):
    """A workload that runs until the test creates `go` in the volume,
    then exits with the code written in it (or is killed)."""
    return ["-v", "%s:/w" % work, "busybox", "sh", "-c",
            "while [ ! -e /w/go ]; do sleep 0.05; done; exit $(cat /w/go)"]


def release_gate(work, code):
    with open(os.path.join(work, "go.tmp"), "w") as f:
        f.write("%d\n" % code)
    os.rename(os.path.join(work, "go.tmp"), os.path.join(work, "go"))


# -- without root: the choice to hand over --------------------------------

class _Stub:
    """What hand_over reads of a started Container."""

    def __init__(self, pmix_relay=()):
        from pyctr.paths import Paths
        from pyctr.state import ContainerState
        self.paths = Paths("/nonexistent-root", "/nonexistent-config", "/nonexistent-data")
        self.state = ContainerState(id="0", name="stub", pmix_relay=list(pmix_relay))
        self.name, self.pid, self.dir = "stub", 1, "/"
        self.waited = False

    def wait(self):
        self.waited = True
        return 5


def test_mpi_rank_with_pmix_relay_keeps_waiting_in_python():
    from pyctr import monitor
    c = _Stub(pmix_relay=["127.0.0.1:5000"])
    assert monitor.hand_over(c) == 5 and c.waited


def test_without_the_monitor_binary_python_waits(monkeypatch):
    from pyctr import monitor
    monkeypatch.setattr(monitor, "BINARY", "/nonexistent/pyctr-monitor")
    c = _Stub()
    assert monitor.hand_over(c) == 5 and c.waited


def test_way_back_never_puts_the_current_directory_on_sys_path():
    from pyctr import monitor
    from pyctr.paths import Paths
    argv = monitor._finish_command(Paths("r", "c", "d"), "web")
    assert "-P" in argv[:argv.index("-c")] and argv[-2:] == ["_finished", "web"]
    assert all(os.path.isabs(argv[argv.index(flag) + 1])
               for flag in ("--root", "--config", "--data"))


def test_exit_written_by_the_monitor_shows_before_it_is_recorded(tmp_path):
    from pyctr.paths import Paths
    from pyctr.state import ContainerState, StateStore
    store = StateStore(Paths(str(tmp_path), str(tmp_path), str(tmp_path)))
    store.reserve(ContainerState(id="1", name="web", status="running", pid=1))
    assert store.load("web").exit_code is None
    with open(os.path.join(store.dir("web"), "exit"), "w") as f:
        f.write("3\n")
    state = store.load("web")
    assert state.exit_code == 3 and state.finished
    assert state.status == "running"  # as recorded: gc still knows an unfinished record
    state.exited(0)
    store.save(state)
    assert store.load("web").exit_code == 0  # the record wins once it says stopped


# -- with root: real containers -----------------------------------------

@root_only
@pytest.mark.parametrize("code", [0, 3, 137])
def test_foreground_exit_code_through_the_handover(pyctr, work, code):
    p = pyctr.popen("run", *gate(work))
    try:
        name = only_name(pyctr.root)
        handed_over(pyctr.root, name)
        if code == 137:  # init killed by a signal: 128 + 9, as without the handover
            os.kill(record(pyctr.root, name)["pid"], signal.SIGKILL)
        else:
            release_gate(work, code)
        p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == code
    r = record(pyctr.root, name)
    assert r["status"] == "stopped" and r["exit_code"] == code and r["cgroup"] is None


@root_only
@pytest.mark.parametrize("code", [0, 3, 137])
def test_detached_exit_code_through_the_handover(pyctr, work, code):
    name = pyctr("run", "-d", *gate(work), check=True).stdout.strip()
    handed_over(pyctr.root, name)
    if code == 137:
        pyctr("kill", "-s", "KILL", name, check=True)
    else:
        release_gate(work, code)
    r = finished(pyctr.root, name)
    assert r["exit_code"] == code and r["cgroup"] is None
    assert json.loads(pyctr("inspect", name, check=True).stdout)[0]["exit_code"] == code


def trap(work):
    """A workload that exits 7 on SIGTERM, once /w/ready says it listens."""
    return ["-v", "%s:/w" % work, "busybox", "sh", "-c",
            "trap 'exit 7' TERM; touch /w/ready; while :; do sleep 0.05; done"]


@root_only
def test_sigterm_to_foreground_pyctr_reaches_the_workload_after_handover(pyctr, work):
    p = pyctr.popen("run", *trap(work))
    try:
        name = only_name(pyctr.root)
        assert handed_over(pyctr.root, name) == p.pid
        until(lambda: os.path.exists(os.path.join(work, "ready")), "the trap")
        os.kill(p.pid, signal.SIGTERM)
        p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 7


@root_only
def test_sigterm_to_detached_owner_reaches_the_workload_after_handover(pyctr, work):
    name = pyctr("run", "-d", *trap(work), check=True).stdout.strip()
    owner = handed_over(pyctr.root, name)
    until(lambda: os.path.exists(os.path.join(work, "ready")), "the trap")
    os.kill(owner, signal.SIGTERM)
    assert finished(pyctr.root, name)["exit_code"] == 7


@root_only
def test_verbs_see_a_handed_over_container_as_running(pyctr):
    name = pyctr("run", "-d", "busybox", "sh", "-c", "echo hello; exec sleep 600",
                 check=True).stdout.strip()
    owner = handed_over(pyctr.root, name)
    until(lambda: "hello" in pyctr("logs", name).stdout, "the log")
    ps = pyctr("ps", check=True).stdout
    assert any(line.split()[:3] == [name, name, "running"] for line in ps.splitlines()), ps
    state = json.loads(pyctr("inspect", name, check=True).stdout)[0]
    assert state["status"] == "running" and state["owner_pid"] == owner
    # the monitor holds stdio and its container's state directory, nothing else
    fds = {int(fd): os.readlink("/proc/%d/fd/%s" % (owner, fd))
           for fd in os.listdir("/proc/%d/fd" % owner)}
    assert sorted(fds)[:3] == [0, 1, 2] and len(fds) == 4, fds
    assert fds[max(fds)] == os.path.join(pyctr.root, "containers", name)
    assert pyctr("exec", name, "echo", "inside", check=True).stdout.strip() == "inside"
    # rm -f lets the owner finish its own clean-up first, then removes the record
    pyctr("rm", "-f", name, check=True)
    assert name not in pyctr.containers()
    until(lambda: comm(owner) is None, "the owner to exit")


@root_only
def test_monitor_killed_leaves_a_dead_container_that_gc_removes(pyctr):
    name = pyctr("run", "-d", "busybox", "sleep", "600", check=True).stdout.strip()
    owner = handed_over(pyctr.root, name)
    r = record(pyctr.root, name)
    cgroup_dirs = list(r["cgroup"]["dirs"].values())
    assert all(os.path.isdir(d) for d in cgroup_dirs)
    os.kill(owner, signal.SIGKILL)
    # the workload dies with its parent (PDEATHSIG), the record stays
    until(lambda: comm(r["pid"]) is None, "the workload to die with the monitor")
    ps = pyctr("ps", check=True).stdout
    assert any(line.split()[:3] == [name, name, "stopped"] for line in ps.splitlines()), ps
    gc = pyctr("gc", check=True).stdout
    assert "removed container %s" % name in gc
    assert name not in pyctr.containers()
    assert not any(os.path.exists(d) for d in cgroup_dirs)


@root_only
def test_rm_after_handover_removes_record_cgroup_and_host_veth(image_data, work):
    from pyctr.testbed import Testbed
    with Testbed(prefix="pyctr-fp", nodes=1, data=image_data) as tb:
        node = tb.nodes[0]
        argv = node.pyctr_argv("run", "--rm", "--net=veth:brfp", *gate(work))
        p = node.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            name = only_name(node.paths.root)
            handed_over(node.paths.root, name)
            r = record(node.paths.root, name)
            cgroup_dirs = list(r["cgroup"]["dirs"].values())
            hosts = [n["host_ifname"] for n in r["networks"]]
            links = node.ip_cmd("-o", "link", "show").stdout
            assert hosts and all(h + "@" in links for h in hosts)
            release_gate(work, 0)
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
            p.wait()
        assert p.returncode == 0, err
        # when run --rm returns, everything is gone already
        assert not os.path.exists(os.path.join(node.paths.root, "containers", name))
        assert not any(os.path.exists(d) for d in cgroup_dirs)
        links = node.ip_cmd("-o", "link", "show").stdout
        assert not any(h + "@" in links for h in hosts), links
        assert node.ip_cmd("-o", "link", "show", "master", "brfp").stdout == ""


@root_only
def test_finished_verb_leaves_a_container_it_does_not_own_alone(pyctr):
    name = pyctr("run", "-d", "busybox", "sleep", "600", check=True).stdout.strip()
    handed_over(pyctr.root, name)
    p = pyctr("_finished", name, "0")
    assert p.returncode == 0
    assert record(pyctr.root, name)["status"] == "running" and record(pyctr.root, name)["cgroup"]
    err = one_line_error(pyctr("_finished", name))
    assert "_finished NAME EXIT_CODE" in err
    assert "_finished" not in pyctr("--help").stdout


@root_only
def test_running_container_costs_at_most_1_mib_of_host_memory(pyctr):
    """The issue's footprint: 20 running -d containers, each owner (the
    process its record names) at most 1 MiB of PSS; so 1,000 <= 1 GiB."""
    names = [pyctr("run", "-d", "busybox", "sleep", "600", check=True).stdout.strip()
             for _ in range(20)]
    owners = [handed_over(pyctr.root, name) for name in names]
    pss = [pss_kb(pid) for pid in owners]
    assert max(pss) <= MIB, pss
    assert sum(pss) <= 20 * MIB, pss


@root_only
def test_a_container_sharing_the_host_pid_namespace_cannot_open_the_monitor(pyctr):
    """With --pid=host, container root sees pyctr-monitor but can open
    neither its fds (the state directory) nor its binary: it lacks the
    monitor's capabilities (and the monitor is not dumpable besides)."""
    name = pyctr("run", "-d", "busybox", "sleep", "600", check=True).stdout.strip()
    owner = handed_over(pyctr.root, name)
    p = pyctr("run", "--rm", "--pid=host", "busybox", "sh", "-c",
              "cat /proc/%d/comm; readlink /proc/%d/fd/3 && echo fd-open; "
              "ls /proc/%d/fd/3/ && echo dir-open; "
              "cat /proc/%d/exe > /dev/null && echo exe-open; true" % ((owner,) * 4))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == MONITOR  # it is there to see
    assert not {"fd-open", "dir-open", "exe-open"} & set(p.stdout.split()), p.stdout
