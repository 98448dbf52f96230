"""The real engines drive an OCI runtime: podman 4.3 (through conmon) and
containerd 1.6 (`ctr run --runc-binary`, through its runc shim), from
Debian 12 (install.sh --test).

Every test runs once per runtime: `runc` (the reference) and `pyctr` (this
venv's pyctr behind a launcher). The pyctr runs are skipped, saying why,
until pyctr has the OCI runtime verbs (issue 9). All state lives under
test-owned directories: podman's own root/runroot/tmpdir and config,
containerd's own daemon (started here, stopped at the end with its shims),
each runtime's own --root. Every test checks that nothing is left behind.
"""
import hashlib
import io
import json
import os
import pty
import select
import signal
import subprocess
import sys
import tarfile
import tempfile
import time

import pytest

from conftest import root_only, until
from pyctr import engines

RUNC = "/usr/sbin/runc"


MISSING = engines.missing_tools() if os.geteuid() == 0 else []
needs_engines = pytest.mark.skipif(bool(MISSING), reason="not installed: %s "
                                   "(./install.sh --test)" % " ".join(MISSING))


def engine_test(test):
    """A test with the real engines: as root, slow, skipped if they are missing."""
    return root_only(pytest.mark.slow(needs_engines(test)))
PYCTR = pytest.param("pyctr", marks=pytest.mark.skipif(
    os.geteuid() == 0 and not engines.has_oci_verbs([sys.executable, "-m", "pyctr"]),
    reason=engines.NO_OCI_VERBS + ": podman and containerd cannot drive it"))
RUNTIMES = ["runc", PYCTR]


def runtime_executable(name, base):
    """(path, state root) of runtime `name` keeping its state under `base`.
    The executable is named after the runtime: podman asks runtimes it knows
    by name (runc, pyctr in our config) for JSON error logs."""
    state = os.path.join(base, "state")
    os.makedirs(os.path.join(base, "bin"))
    real, config = RUNC, None
    if name == "pyctr":
        from pyctr.cli import write_launcher
        real = os.path.join(base, "pyctr-launcher")
        write_launcher(real)
        config = os.path.join(base, "config")  # pyctr's network definitions
    path = engines.write_rooted_runtime(os.path.join(base, "bin", name), real, state, config)
    return path, state


def wait_until_clean(leftovers, timeout=20):
    """What is still left once the world settles (conmon and the shims exit
    just after the engine returns); [] when clean."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


# ------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def busybox_rootfs(image_data):
    return os.path.join(image_data, "images", "busybox", "rootfs")


@pytest.fixture(scope="module")
def podman(request, busybox_rootfs):
    """A podman world whose runtime is request.param, busybox imported."""
    if MISSING:
        pytest.skip("not installed: %s (./install.sh --test)" % " ".join(MISSING))
    base = tempfile.mkdtemp(prefix="pyctr-podman-", dir="/run")
    world = None
    try:
        runtime, state = runtime_executable(request.param, os.path.join(base, "runtime"))
        world = engines.Podman(os.path.join(base, "podman"), runtime,
                               supports_json=("pyctr",), state_root=state)
        world.name = request.param
        world.import_rootfs(busybox_rootfs)
        yield world
    finally:
        if world:
            world.close()
        engines.unmount_under(base)
        subprocess.run(["rm", "-rf", "--one-file-system", base])


@pytest.fixture
def pod(podman):
    """The module's podman world; its containers are removed after each test."""
    yield podman
    podman("rm", "--all", "--force", "--time", "0")


@pytest.fixture(scope="module")
def containerd(busybox_rootfs):
    """A containerd daemon of our own, busybox imported; stopped (with its
    shims) at the end."""
    if MISSING:
        pytest.skip("not installed: %s (./install.sh --test)" % " ".join(MISSING))
    base = tempfile.mkdtemp(prefix="pyctr-containerd-", dir="/run")
    world = engines.Containerd(os.path.join(base, "containerd"))
    try:
        world.start()
        world.import_rootfs(busybox_rootfs)
        yield world
    finally:
        world.close()
        engines.unmount_under(base)
        subprocess.run(["rm", "-rf", "--one-file-system", base])


@pytest.fixture(scope="module")
def ctr_runtime(request):
    """(name, path) of the runtime the containerd shim runs; its state is the
    world's --runc-root."""
    base = tempfile.mkdtemp(prefix="pyctr-ctr-runtime-", dir="/run")
    try:
        if request.param == "runc":
            yield "runc", RUNC
        else:
            from pyctr.cli import write_launcher
            path = os.path.join(base, "pyctr")
            write_launcher(path)
            yield "pyctr", path
    finally:
        subprocess.run(["rm", "-rf", base])


@pytest.fixture
def ctr(containerd):
    yield containerd
    for cid in containerd.ctr("container", "list", "--quiet").stdout.split():
        containerd.ctr("task", "kill", "--all", "--signal", "SIGKILL", cid)
        containerd.ctr("task", "delete", "--force", cid)
        containerd.ctr("container", "delete", cid)


def podman_clean(world):
    left = wait_until_clean(world.leftovers)
    left += ["container %s" % c for c in world("ps", "--all", "--quiet").stdout.split()]
    return left


def ctr_clean(world):
    left = wait_until_clean(world.leftovers)
    left += ["container %s" % c for c in world.ctr("container", "list", "--quiet").stdout.split()]
    return left


def node_links(node):
    return [l.split(":")[1].strip().split("@")[0]
            for l in node.ip_cmd("-o", "link").stdout.splitlines()]


def parent_name(pid):
    with open("/proc/%d/status" % pid) as f:
        ppid = int(next(l for l in f if l.startswith("PPid:")).split()[1])
    with open("/proc/%d/comm" % ppid) as f:
        return f.read().strip()


def cgroup_of(pid, controller):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, names, path = line.rstrip("\n").split(":", 2)
            if controller in names.split(","):
                return path
    raise AssertionError("pid %d has no %s cgroup" % (pid, controller))


def freezer_state(pid):
    path = os.path.join(engines.CGROUP_ROOT, "freezer", cgroup_of(pid, "freezer").lstrip("/"),
                        "freezer.state")
    with open(path) as f:
        return f.read().strip()


# --------------------------------------------------------------- podman

@engine_test
@pytest.mark.parametrize("podman", RUNTIMES, indirect=True)
def test_podman_run_rm_gives_output_and_exit_code(pod):
    p = pod.run("--rm", engines.IMAGE, "sh", "-c", "echo hello from $$")
    assert (p.returncode, p.stdout) == (0, "hello from 1\n"), p.stderr
    p = pod.run("--rm", engines.IMAGE, "sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr
    p = pod.run("--rm", engines.IMAGE, "/no/such/command")
    assert p.returncode == 127, p.stderr
    assert podman_clean(pod) == []


def trap_is_set(pod, name):
    """Until container `name` has printed "ready" after setting its trap: a
    signal sent before would be dropped (PID 1 ignores what it has no
    handler for), and `podman wait` would wait for good."""
    until(lambda: "ready" in pod("logs", name).stdout, "%s to print ready" % name)


@engine_test
@pytest.mark.parametrize("podman", RUNTIMES, indirect=True)
def test_podman_detached_exec_stop_rm(pod):
    # The workload leaves on SIGTERM with 0: `podman stop` must deliver it.
    p = pod.run("-d", "--name", "web", engines.IMAGE, "sh", "-c",
                "trap 'exit 0' TERM; echo ready; while :; do sleep 0.2; done")
    assert p.returncode == 0, p.stderr
    trap_is_set(pod, "web")
    pid, cid = pod("inspect", "--format", "{{.State.Pid}} {{.Id}}", "web",
                   check=True).stdout.split()
    assert parent_name(int(pid)) == "conmon"  # the engine's monitor reaps init, no one between
    # The runtime under test made it: the container is in that runtime's state.
    assert [os.path.basename(s) for s in engines.runtime_states(pod.state_root)] == [cid]
    p = pod("exec", "web", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("sh -c trap"), p.stdout
    assert pod("exec", "web", "sh", "-c", "exit 5").returncode == 5
    p = pod("stop", "--time", "20", "web")
    assert p.returncode == 0, p.stderr
    status = pod("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "web",
                 check=True).stdout.split()
    assert status == ["exited", "0"]
    assert pod("rm", "web").returncode == 0
    assert podman_clean(pod) == []


@engine_test
@pytest.mark.parametrize("name", RUNTIMES)
def test_podman_default_runtime_from_containers_conf(name, busybox_rootfs):
    """containers.conf's `[engine.runtimes]` entry and `runtime = NAME`, as
    the README gives them: podman runs containers with it, no --runtime."""
    base = tempfile.mkdtemp(prefix="pyctr-podconf-", dir="/run")
    world = None
    try:
        path, state = runtime_executable(name, os.path.join(base, "runtime"))
        world = engines.Podman(os.path.join(base, "podman"), name, supports_json=("pyctr",),
                               state_root=state, runtimes={name: path})
        assert "--runtime" not in world.argv("info")
        p = world("info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.OCIRuntime.Path}}",
                  check=True)
        assert p.stdout.split() == [name, path]
        world.import_rootfs(busybox_rootfs)
        p = world.run("--rm", engines.IMAGE, "echo", "configured")
        assert (p.returncode, p.stdout) == (0, "configured\n"), p.stderr
        assert wait_until_clean(world.leftovers) == []
    finally:
        if world:
            world.close()
        subprocess.run(["rm", "-rf", "--one-file-system", base])


def run_on_pty(argv, env, script, timeout=90):
    """Run argv with a pty as its controlling terminal and stdio, type
    `script` into it; return (exit status, everything it printed)."""
    master, slave = pty.openpty()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(master)
            os.setsid()
            import fcntl
            import termios
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    os.close(slave)
    out, typed = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the last holder of the slave closed it
                    break
                if not chunk:
                    break
                out += chunk
                if not typed and b"# " in out:  # the shell's prompt: it reads the tty
                    os.write(master, script)
                    typed = True
        else:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(master)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


@engine_test
@pytest.mark.parametrize("podman", RUNTIMES, indirect=True)
def test_podman_run_interactive_tty(pod):
    """`podman run -it`: the runtime hands conmon the pty master through the
    console socket; what we type reaches the shell and its exit code comes
    back."""
    status, out = run_on_pty(pod.run_argv("-it", "--rm", engines.IMAGE, "sh"), pod.env,
                             b"tty; echo answer-$((40+2))\nexit 4\n")
    assert "answer-42" in out, out
    assert "/dev/pts/0" in out, out
    assert status == 4, out
    assert podman_clean(pod) == []


@engine_test
@pytest.mark.parametrize("podman", RUNTIMES, indirect=True)
def test_podman_pause_resume_freezes_the_container(pod):
    assert pod.run("-d", "--name", "p", engines.IMAGE, "sleep", "1000").returncode == 0
    pid = int(pod("inspect", "--format", "{{.State.Pid}}", "p", check=True).stdout)
    assert pod("pause", "p").returncode == 0
    assert freezer_state(pid) == "FROZEN"
    assert pod("inspect", "--format", "{{.State.Status}}", "p").stdout.strip() == "paused"
    assert pod("unpause", "p").returncode == 0
    assert freezer_state(pid) == "THAWED"
    assert pod("exec", "p", "true").returncode == 0
    assert pod("rm", "--force", "--time", "0", "p").returncode == 0
    assert podman_clean(pod) == []


@engine_test
@pytest.mark.parametrize("podman", RUNTIMES, indirect=True)
def test_podman_kill_delivers_the_signal(pod):
    # USR1 is caught: the workload exits 7. Plain `podman kill` is SIGKILL: 137.
    assert pod.run("-d", "--name", "k1", engines.IMAGE, "sh", "-c",
                   "trap 'exit 7' USR1; echo ready; while :; do sleep 0.2; done").returncode == 0
    assert pod.run("-d", "--name", "k2", engines.IMAGE, "sleep", "1000").returncode == 0
    trap_is_set(pod, "k1")
    assert pod("kill", "--signal", "USR1", "k1").returncode == 0
    assert pod("kill", "k2").returncode == 0
    assert pod("wait", "k1").stdout.strip() == "7"
    assert pod("wait", "k2").stdout.strip() == "137"
    assert pod("rm", "k1", "k2").returncode == 0
    assert podman_clean(pod) == []


# Ad-hoc macvlan leases know nothing of the other nodes' addresses: a fixed one.
MACVLAN_IP = "10.77.0.150"
ON_THE_WIRE = "ip -o -4 addr show; ping -c 1 -W 5 %s"


def assert_reached_the_other_node(p, b, ip):
    """The container had `ip` and pinged node b, which saw it on the wire."""
    assert p.returncode == 0, p.stdout + p.stderr
    assert "inet %s/24" % ip in p.stdout, p.stdout
    assert ip in b.ip_cmd("neigh", "show", ip).stdout  # b learnt the container's address


def assert_net_rm_restores_the_node(node, links_before, pyctr_argv, network="macvlan:nic0"):
    """Only pyctr's host shim stays (by design, like a bridge) until `net rm`."""
    assert sorted(set(node_links(node)) - set(links_before)) == ["pys-nic0"]
    p = subprocess.run(pyctr_argv + ["net", "rm", network], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert sorted(node_links(node)) == sorted(links_before)


def into(node):
    # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup
    # mounts runc-style runtimes need.
    return ["nsenter", "--net=/run/netns/%s" % node.netns]


@engine_test
@pytest.mark.parametrize("podman", [PYCTR], indirect=True)
def test_podman_container_on_pyctr_macvlan_through_annotation(pod, image_data):
    """`--annotation run.pyctr.net=NAME`: pyctr gives a podman container a
    macvlan on the node's NIC from a network of `pyctr net create`; it
    reaches the other node. (podman splits --annotation values at commas, so
    `macvlan:nic0,ip=...` would lose its options: a defined network has them.)"""
    from pyctr.testbed import Testbed
    with Testbed(prefix="peng", nodes=2, data=image_data) as tb:
        a, b = tb.nodes
        links_before = node_links(a)
        define = subprocess.run([pod.runtime, "net", "create", "podnet", "--kind", "macvlan",
                                 "--uplink", "nic0", "--subnet", "10.77.0.0/24", "--range",
                                 "%s-%s" % (MACVLAN_IP, MACVLAN_IP)],
                                capture_output=True, text=True, timeout=60)
        assert define.returncode == 0, define.stderr
        p = pod.run("--rm", "--annotation", "run.pyctr.net=podnet", engines.IMAGE, "sh", "-c",
                    ON_THE_WIRE % b.ip, prefix=into(a))
        assert_reached_the_other_node(p, b, MACVLAN_IP)
        assert podman_clean(pod) == []
        assert_net_rm_restores_the_node(a, links_before, into(a) + [pod.runtime], "podnet")


# ----------------------------------------------------------- containerd

@engine_test
@pytest.mark.parametrize("ctr_runtime", RUNTIMES, indirect=True)
def test_ctr_run_gives_output_and_exit_code(ctr, ctr_runtime):
    name, runtime = ctr_runtime
    p = subprocess.run(ctr.run_argv(runtime, "r1-" + name, "sh", "-c", "echo hello from $$",
                                    options=["--rm"]), capture_output=True, text=True,
                       timeout=120)
    assert (p.returncode, p.stdout) == (0, "hello from 1\n"), p.stderr
    p = subprocess.run(ctr.run_argv(runtime, "r2-" + name, "sh", "-c", "exit 3",
                                    options=["--rm"]), capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 3, p.stderr
    assert ctr_clean(ctr) == []


def task_pid(world, cid):
    for line in world.ctr("task", "list").stdout.splitlines()[1:]:
        fields = line.split()
        if fields[0] == cid:
            return int(fields[1]), fields[2]
    raise AssertionError("no task %s" % cid)


@engine_test
@pytest.mark.parametrize("ctr_runtime", RUNTIMES, indirect=True)
def test_ctr_exec_ps_kill_delete(ctr, ctr_runtime):
    name, runtime = ctr_runtime
    cid = "d-" + name
    p = subprocess.run(ctr.run_argv(runtime, cid, "sleep", "1000", options=["-d"]),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    pid, status = task_pid(ctr, cid)
    assert status == "RUNNING"
    assert parent_name(pid) == "containerd-shim"  # the shim reaps init: nothing between
    runtime_root = os.path.join(ctr.dirs["runc"], ctr.namespace)
    assert engines.runtime_states(runtime_root, {cid}), "the runtime under test has no state"
    # The exec'd process is in the container: its PID 1 is the workload.
    p = subprocess.run(ctr.exec_argv(cid, "e1", "sh", "-c", "cat /proc/1/cmdline; exit 4"),
                       capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout) == (4, "sleep\x001000\x00"), p.stderr
    # ps asks the runtime (`ps --format json`) for the container's pids.
    p = ctr.ctr("task", "ps", cid, check=True)
    assert str(pid) in [l.split()[0] for l in p.stdout.splitlines()[1:]]
    assert ctr.ctr("task", "pause", cid).returncode == 0
    assert freezer_state(pid) == "FROZEN"
    assert ctr.ctr("task", "resume", cid).returncode == 0
    assert freezer_state(pid) == "THAWED"
    assert ctr.ctr("task", "kill", "--signal", "SIGKILL", cid).returncode == 0
    deadline = time.monotonic() + 30
    while task_pid(ctr, cid)[1] != "STOPPED" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert task_pid(ctr, cid)[1] == "STOPPED"
    p = ctr.ctr("task", "delete", cid)
    assert p.returncode == 0, p.stderr
    assert ctr.ctr("container", "delete", cid).returncode == 0
    assert ctr_clean(ctr) == []


@engine_test
@pytest.mark.parametrize("ctr_runtime", [PYCTR], indirect=True)
def test_ctr_container_on_pyctr_macvlan_through_annotation(ctr_runtime, busybox_rootfs,
                                                           image_data):
    """`ctr run --annotation run.pyctr.net=...` with containerd running in a
    node: its shim and pyctr live in the node's netns, the macvlan goes on
    the node's NIC."""
    from pyctr.testbed import Testbed
    _, runtime = ctr_runtime
    base = tempfile.mkdtemp(prefix="pyctr-ctrnet-", dir="/run")
    with Testbed(prefix="pengc", nodes=2, data=image_data) as tb:
        a, b = tb.nodes
        world = engines.Containerd(os.path.join(base, "containerd"))
        try:
            world.start(prefix=into(a))
            world.import_rootfs(busybox_rootfs)
            links_before = node_links(a)
            p = subprocess.run(world.run_argv(
                runtime, "mv", "sh", "-c", ON_THE_WIRE % b.ip, options=[
                    "--rm", "--annotation", "run.pyctr.net=macvlan:nic0,ip=%s/24" % MACVLAN_IP]),
                capture_output=True, text=True, timeout=120)
            assert_reached_the_other_node(p, b, MACVLAN_IP)
            assert ctr_clean(world) == []
            state = os.path.join(world.dirs["runc"], world.namespace)  # the shim's --root
            assert_net_rm_restores_the_node(a, links_before, into(a) + [runtime, "--root", state])
        finally:
            world.close()
            subprocess.run(["rm", "-rf", "--one-file-system", base])


# ---------------------------------------------- what the engines call
# The calls pyctr must serve, as measured with runc (/work/plan/engine-calls.txt
# has the long form): a logging runtime in front of runc records them.

def logged_calls(log):
    return [(engines.verb_of(c["argv"]), c["parent"]) for c in engines.read_call_log(log)]


@engine_test
def test_podman_calls_create_start_delete(busybox_rootfs):
    base = tempfile.mkdtemp(prefix="pyctr-podlog-", dir="/run")
    log = os.path.join(base, "calls.log")
    os.makedirs(os.path.join(base, "bin"))
    runtime = engines.write_logging_runtime(os.path.join(base, "bin", "runc"), RUNC, log)
    world = engines.Podman(os.path.join(base, "podman"), runtime)
    try:
        world.import_rootfs(busybox_rootfs)
        assert world.run("--rm", engines.IMAGE, "true").returncode == 0
        assert wait_until_clean(world.leftovers) == []
        calls = logged_calls(log)
        verbs = [verb for (_, verb, _), _ in calls]
        assert verbs == ["create", "start", "delete"], calls
        (options, _, args), parent = calls[0]
        # conmon runs create, so the container's init is conmon's child;
        # runc is in runtime_supports_json, so errors go to a JSON log.
        assert parent == "conmon"
        assert options[0] == "--log-format=json" and options[1] == "--log"
        assert args[0:1] == ["--bundle"] and args[2:3] == ["--pid-file"]
        assert calls[2][0][2][0] == "--force"
    finally:
        world.close()
        subprocess.run(["rm", "-rf", "--one-file-system", base])


@engine_test
def test_containerd_shim_calls_create_start_delete(ctr, tmp_path):
    log = str(tmp_path / "calls.log")
    runtime = engines.write_logging_runtime(str(tmp_path / "runc"), RUNC, log)
    p = subprocess.run(ctr.run_argv(runtime, "logged", "true", options=["--rm"]),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert ctr_clean(ctr) == []
    calls = logged_calls(log)
    assert [verb for (_, verb, _), _ in calls] == ["create", "start", "delete", "delete"], calls
    for (options, _, _), parent in calls:
        assert parent == "containerd-shim"
        assert options[0] == "--root" and options[2] == "--log"
        assert options[4:6] == ["--log-format", "json"]
    assert calls[3][0][2] == ["--force", "logged"]


# ------------------------------------------------------------ benchmark

@engine_test
def test_engines_benchmark_runs_end_to_end(image_data, tmp_path):
    """One round of `pyctr bench engines`: every contender measured, pyctr's
    named as not available until it has the verbs, nothing left behind."""
    from pyctr.cli import write_launcher
    launcher = str(tmp_path / "pyctr")
    write_launcher(launcher)
    out = tmp_path / "out"
    # the profiles pyctr compiles under the engines, in its default state root
    from pyctr import seccomp
    from pyctr.paths import Paths
    cache = seccomp.cache_dir(Paths())
    cached = set(os.listdir(cache)) if os.path.isdir(cache) else set()
    p = subprocess.run([sys.executable, "-m", "pyctr", "--data", image_data, "bench", "engines",
                        "--runs", "1", "--warmup", "0", "--pyctr", launcher, "--out", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(out / "engines.json") as f:
        data = json.load(f)
    measured = {c["name"]: len(c["samples"]) for c in data["contenders"]}
    expected = ["podman+runc", "ctr+runc"]
    expected += ["podman+crun", "ctr+crun"] if os.path.exists("/usr/bin/crun") else []
    if engines.has_oci_verbs([launcher]):
        expected += ["podman+pyctr", "ctr+pyctr"]
    else:
        assert "pyctr (%s): not available" % launcher in p.stdout
    assert sorted(measured) == sorted(expected)
    assert set(measured.values()) == {1}
    assert "left behind" not in p.stdout
    assert not [d for d in os.listdir("/run") if d.startswith("pbe-")]
    assert (set(os.listdir(cache)) if os.path.isdir(cache) else set()) <= cached


# ------------------------------------------------------------ no engines

def test_verb_of_skips_global_options():
    assert engines.verb_of(["--root", "/r", "--log", "/l", "--log-format", "json", "kill",
                            "--all", "c1", "9"]) == (
        ["--root", "/r", "--log", "/l", "--log-format", "json"], "kill", ["--all", "c1", "9"])
    assert engines.verb_of(["--log-format=json", "--log", "/l", "create", "--bundle", "/b",
                            "c1"])[1:] == ("create", ["--bundle", "/b", "c1"])
    assert engines.verb_of(["--version"]) == (["--version"], None, [])


def test_oci_archive_is_a_complete_image_layout(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    (rootfs / "bin" / "hello").write_text("hi\n")
    archive = engines.write_oci_archive(str(tmp_path / "image.tar"), str(rootfs), "localhost/t:v1")
    with tarfile.open(archive) as t:
        blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    for name, data in blobs.items():  # every blob is named by its digest
        if name.startswith("blobs/sha256/"):
            assert name.rsplit("/", 1)[1] == hashlib.sha256(data).hexdigest()
    assert json.loads(blobs["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(blobs["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "localhost/t:v1"
    manifest = json.loads(blobs["blobs/sha256/" + entry["digest"].split(":")[1]])
    (layer,) = manifest["layers"]
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["rootfs"]["diff_ids"] == [layer["digest"]]  # uncompressed: the same digest
    with tarfile.open(fileobj=io.BytesIO(blobs["blobs/sha256/" + layer["digest"][7:]])) as t:
        assert sorted(t.getnames()) == ["bin", "bin/hello"]


def test_bench_engines_bad_flags_are_one_line():
    p = subprocess.run([sys.executable, "-m", "pyctr", "bench", "engines", "--runs", "many"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 125
    assert p.stderr.startswith("pyctr: ") and len(p.stderr.strip().splitlines()) == 1
