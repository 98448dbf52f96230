"""pyctr as an OCI runtime, driven the way engines drive runc (podman through
conmon, containerd's shim, Slurm's oci.conf): create / start / state / kill /
delete from separate processes, the console socket, exec --process, hooks,
refused settings, runc's JSON error log. Real containers; root."""
import array
import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from conftest import cgroup_homes, groups_of, one_line_error, root_only, until

pytestmark = [root_only, pytest.mark.root]

PR_SET_CHILD_SUBREAPER = 36


# -- helpers -------------------------------------------------------------------------

@pytest.fixture
def bundle(pyctr, rootfs, work):
    """make(args, **edits) -> a bundle dir whose config.json is `pyctr spec`'s
    for the busybox rootfs (read-only root), with `edit(config)` applied."""
    count = [0]

    def make(args, edit=None):
        config = json.loads(pyctr("spec", rootfs, *args, check=True).stdout)
        config["root"]["readonly"] = True
        if edit:
            edit(config)
        count[0] += 1
        path = os.path.join(work, "bundle%d" % count[0])
        os.mkdir(path)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(config, f)
        return path
    return make


def create(pyctr, *args, check=True):
    return detached(pyctr, "create", *args, check=check)


def detached(pyctr, *args, check=True):
    """create, exec --detach: what they start keeps their stdio, so it gets a
    file rather than a pipe that would stay open for the container's life."""
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.run(pyctr.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                           stderr=out, text=True, timeout=60)
        out.seek(0)
        p.stderr = out.read()
    if check:
        assert p.returncode == 0, p.stderr
    return p


def state(pyctr, cid):
    return json.loads(pyctr("state", cid, check=True).stdout)


def ppid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def accept(listener, runtime):
    """The runtime's connection to a console socket; a runtime that fails
    first fails the test with its error."""
    listener.settimeout(0.2)
    deadline = time.monotonic() + 60
    while True:
        try:
            return listener.accept()[0]
        except socket.timeout:
            if runtime.poll() is not None:
                raise AssertionError("runtime exited %d before connecting: %s"
                                     % (runtime.returncode, runtime.stderr.read()))
            assert time.monotonic() < deadline, "no connection to the console socket"


def no_leftovers(pyctr, cid):
    assert cid not in pyctr.containers()
    with open("/proc/self/mounts") as f:
        assert pyctr.root not in f.read()


# A stand-in for conmon / containerd's shim: a subreaper that runs `create`
# and then reaps whatever is reparented to it until stdin closes.
ENGINE = textwrap.dedent("""
    import ctypes, os, subprocess, sys
    ctypes.CDLL(None, use_errno=True).prctl(%d, 1, 0, 0, 0)
    out = open(sys.argv[1], "w")
    p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    print(os.getpid(), p.returncode, flush=True)
    sys.stdin.read()
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
""" % PR_SET_CHILD_SUBREAPER)


# -- the lifecycle -------------------------------------------------------------------

def test_create_start_kill_delete_from_separate_processes(pyctr, bundle, work):
    b = bundle(["sh", "-c", "echo hello from init; exec sleep 300"])
    out = os.path.join(work, "out")
    pid_file = os.path.join(work, "init.pid")
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, out] + pyctr.argv(
            "create", "--bundle", b, "--pid-file", pid_file, "c1"),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        engine_pid, code = map(int, engine.stdout.readline().split())
        assert code == 0, open(out).read()
        pid = int(open(pid_file).read())
        st = state(pyctr, "c1")
        assert (st["status"], st["pid"], st["id"], st["bundle"]) == ("created", pid, "c1", b)
        # init waits at the exec barrier as the engine's child, pyctr gone
        assert ppid(pid) == engine_pid
        assert "hello" not in open(out).read()

        pyctr("start", "c1", check=True)  # another process than create's
        until(lambda: "hello from init" in open(out).read(), "the workload's output")
        assert state(pyctr, "c1")["status"] == "running"
        assert json.loads(pyctr("ps", "--format", "json", "c1", check=True).stdout) == [pid]
        assert "c1" in pyctr("list", check=True).stdout
        p = pyctr("start", "c1")
        assert p.returncode == 125 and "running" in one_line_error(p)
        p = pyctr("delete", "c1")
        assert p.returncode == 125 and "not stopped" in one_line_error(p)

        pyctr("kill", "c1", "9", check=True)
        until(lambda: state(pyctr, "c1")["status"] == "stopped", "stopped")
        alone = all(len(groups) == 1 for groups in cgroup_homes().values())
        pyctr("delete", "c1", check=True)  # the C front end's delete
        no_leftovers(pyctr, "c1")
        if alone:  # its group was the only one: the cpuset parent goes with it
            assert cgroup_homes() == {}
    finally:
        engine.stdin.close()
        engine.wait(timeout=30)


def test_delete_force_of_a_created_container_and_unknown_ids(pyctr, bundle):
    b = bundle(["true"])
    create(pyctr, "--bundle", b, "c2")
    pid = state(pyctr, "c2")["pid"]
    pyctr("delete", "--force", "c2", check=True)
    no_leftovers(pyctr, "c2")
    assert not os.path.exists("/proc/%d/stat" % pid) or "Z" in open(
        "/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0]
    assert pyctr("delete", "--force", "never-made").returncode == 0
    p = pyctr("delete", "never-made")
    assert p.returncode == 125 and "does not exist" in one_line_error(p)
    p = pyctr("state", "never-made")
    assert p.returncode == 125 and "does not exist" in one_line_error(p)


def test_missing_command_fails_create_not_start(pyctr, bundle):
    b = bundle(["/no/such/program"])
    p = create(pyctr, "--bundle", b, "c3", check=False)
    assert p.returncode == 127 and "not found" in one_line_error(p)
    assert pyctr.containers() == []


def test_console_socket_gets_the_pty_master(pyctr, bundle, work):
    def terminal(config):
        config["process"]["terminal"] = True
        config["process"]["consoleSize"] = {"height": 30, "width": 100}
        # podman's device rules begin by denying all: the pty must still be allowed
        config["linux"]["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    b = bundle(["sh", "-c", "tty; stty size; echo tty-done"], terminal)
    path = os.path.join(work, "console.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    create = pyctr.popen("create", "--bundle", b, "--console-socket", path, "c4")
    conn = accept(listener, create)
    fds = array.array("i")
    msg, ancdata, _, _ = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
    fds.frombytes(ancdata[0][2])
    master = fds[0]
    conn.close()
    listener.close()
    assert create.wait(timeout=60) == 0, create.stderr.read()
    assert msg.startswith(b"/dev/pts/")
    try:
        pyctr("start", "c4", check=True)
        seen = b""
        while b"tty-done" not in seen:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the last slave holder exited
                break
            if not data:
                break
            seen += data
        text = seen.decode()
        assert "/dev/pts/0" in text and "30 100" in text and "tty-done" in text, text
    finally:
        os.close(master)
    pyctr("delete", "--force", "c4", check=True)
    no_leftovers(pyctr, "c4")


def test_exec_process_file_detached_and_waited(pyctr, bundle, work):
    b = bundle(["sleep", "300"])
    create(pyctr, "--bundle", b, "c5")
    pyctr("start", "c5", check=True)
    process = {"args": ["sh", "-c", "echo $GREETING from $(pwd); umask"], "cwd": "/tmp",
               "env": ["PATH=/bin:/usr/bin", "GREETING=hi"], "user": {"uid": 0, "gid": 0,
                                                                     "umask": 0o27}}
    spec = os.path.join(work, "process.json")
    with open(spec, "w") as f:
        json.dump(process, f)
    p = pyctr("exec", "--process", spec, "c5", check=True)
    assert p.stdout.split() == ["hi", "from", "/tmp", "0027"]

    process["args"] = ["sleep", "200"]
    with open(spec, "w") as f:
        json.dump(process, f)
    pid_file = os.path.join(work, "exec.pid")
    detached(pyctr, "exec", "--process", spec, "--detach", "--pid-file", pid_file, "c5")
    pid = int(open(pid_file).read())
    assert open("/proc/%d/cmdline" % pid).read().split("\0")[:2] == ["sleep", "200"]
    assert sorted(json.loads(pyctr("ps", "--format", "json", "c5", check=True).stdout)) == \
        sorted([state(pyctr, "c5")["pid"], pid])
    pyctr("kill", "--all", "c5", "KILL", check=True)
    until(lambda: state(pyctr, "c5")["status"] == "stopped", "stopped")
    pyctr("delete", "c5", check=True)
    no_leftovers(pyctr, "c5")


def test_hooks_run_in_order_with_the_state_on_stdin(pyctr, bundle, work):
    script = os.path.join(work, "hook.sh")
    with open(script, "w") as f:
        f.write('#!/bin/sh\necho "$1 $(cat)" >> "$2"\n')
    os.chmod(script, 0o755)
    log = os.path.join(work, "hooks.log")
    names = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
             "poststop")

    def hooks(config):
        config["mounts"].append({"destination": "/home", "type": "bind", "source": work,
                                 "options": ["rbind"]})
        config["hooks"] = {name: [{"path": script, "args": ["hook.sh", name, log],
                                   "timeout": 10}] for name in names}
        # startContainer runs inside the container: its paths are the container's
        config["hooks"]["startContainer"] = [{"path": "/home/hook.sh", "args": [
            "hook.sh", "startContainer", "/home/hooks.log"]}]
        config["annotations"] = {"org.example": "yes"}
    b = bundle(["sh", "-c", "exec sleep 300"], hooks)
    create(pyctr, "--bundle", b, "c6")
    pyctr("start", "c6", check=True)
    pyctr("delete", "--force", "c6", check=True)
    lines = open(log).read().splitlines()
    assert [line.split()[0] for line in lines] == list(names)
    states = [json.loads(line.split(" ", 1)[1]) for line in lines]
    assert all(s["id"] == "c6" and s["bundle"] == b and s["pid"] > 0 and
               s["annotations"] == {"org.example": "yes"} for s in states)
    assert [s["status"] for s in states] == ["creating", "creating", "created", "created",
                                             "running", "stopped"]
    no_leftovers(pyctr, "c6")


def test_a_failing_hook_fails_create_and_leaves_nothing(pyctr, bundle):
    b = bundle(["true"], lambda c: c.update(hooks={"createRuntime": [{"path": "/bin/false"}]}))
    p = create(pyctr, "--bundle", b, "c7", check=False)
    assert p.returncode == 125 and "createRuntime hook /bin/false failed" in one_line_error(p)
    assert pyctr.containers() == []


def test_settings_reach_the_container(pyctr, bundle):
    """runc-form run (Slurm's `run ID -b B`): sysctl, rlimits, umask,
    oomScoreAdj applied; the workload's exit code; nothing kept."""
    def settings(config):
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"}
        config["domainname"] = "example.org"
        config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}]
        config["process"]["user"]["umask"] = 0o077
        config["process"]["oomScoreAdj"] = 500
    b = bundle(["sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni "
                "/proc/self/oom_score_adj; ulimit -n; umask; "
                "cat /proc/sys/kernel/domainname; exit 3"], settings)
    p = pyctr("run", "c8", "-b", b)
    assert p.returncode == 3, p.stderr
    assert p.stdout.split() == ["1", "1000", "500", "512", "0077", "example.org"]
    no_leftovers(pyctr, "c8")


def test_no_new_privileges_only_when_the_config_asks(pyctr, bundle):
    """The runtime spec's process.noNewPrivileges is false when absent (runc
    and crun leave no_new_privs off): a setuid program in such a container,
    or in a command exec'd into it, still gains its privileges."""
    def edit(value):
        def apply(config):
            config["process"].pop("noNewPrivileges", None)
            if value is not None:
                config["process"]["noNewPrivileges"] = value
        return apply
    show = ["sh", "-c", "grep NoNewPrivs /proc/self/status"]
    for value, flag in ((None, "0"), (True, "1")):
        p = pyctr("run", "c20", "-b", bundle(show, edit(value)))
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == ["NoNewPrivs:", flag]
        no_leftovers(pyctr, "c20")
    create(pyctr, "--bundle", bundle(["sleep", "300"], edit(None)), "c21")
    pyctr("start", "c21", check=True)
    assert pyctr("exec", "c21", *show, check=True).stdout.split() == ["NoNewPrivs:", "0"]
    pyctr("delete", "--force", "c21", check=True)
    no_leftovers(pyctr, "c21")


def test_a_profile_without_close_range_and_no_new_privileges_off(pyctr, bundle):
    """Without no_new_privs the filter is loaded before the capabilities
    drop, so pyctr's last steps run under it: a profile that denies
    close_range (runtime-tools' default, older Docker ones) must not keep
    the workload from starting."""
    def edit(config):
        config["process"].pop("noNewPrivileges", None)
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["close_range"], "action": "SCMP_ACT_ERRNO"}]}
    p = pyctr("run", "c22", "-b", bundle(["echo", "ran"], edit))
    assert (p.returncode, p.stdout) == (0, "ran\n"), p.stderr
    no_leftovers(pyctr, "c22")


def test_linux_devices_may_be_fifos(pyctr, bundle):
    """linux.devices type p (runc, crun make it with mknod): a FIFO with the
    bundle's mode and owner, and no device number or cgroup rule needed."""
    def edit(config):
        config["linux"]["devices"] = [{"path": "/dev/fifo1", "type": "p", "fileMode": 0o640,
                                       "uid": 5, "gid": 6}]
    p = pyctr("run", "c23", "-b", bundle(
        ["sh", "-c", "test -p /dev/fifo1 && stat -c '%a %u %g' /dev/fifo1"], edit))
    assert (p.returncode, p.stdout) == (0, "640 5 6\n"), p.stderr
    no_leftovers(pyctr, "c23")


@pytest.mark.parametrize("edit, words", [
    (lambda c: c["process"].update(apparmorProfile="docker-default"), "apparmorProfile"),
    (lambda c: c["process"].update(selinuxLabel="system_u:x"), "selinuxLabel"),
    (lambda c: c["linux"].update(mountLabel="system_u:x"), "mountLabel"),
    (lambda c: c["linux"].update(sysctl={"vm.swappiness": "1"}), "not a namespaced sysctl"),
    (lambda c: c["linux"].update(rootfsPropagation="shared"), "rootfsPropagation"),
    (lambda c: c["process"].update(rlimits=[{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "RLIMIT_BOGUS"),
    (lambda c: c.update(hooks={"prestart": [{"path": "relative/hook"}]}), "not absolute"),
])
def test_unsupported_settings_are_refused_in_one_line(pyctr, bundle, edit, words):
    b = bundle(["true"], edit)
    p = create(pyctr, "--bundle", b, "c9", check=False)
    assert p.returncode == 125 and words in one_line_error(p)
    assert pyctr.containers() == []


def test_net_sysctl_needs_the_containers_own_netns(pyctr, bundle):
    def host_net(config):
        config["linux"]["namespaces"] = [n for n in config["linux"]["namespaces"]
                                         if n["type"] != "network"]
        config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    p = create(pyctr, "--bundle", bundle(["true"], host_net), "c10", check=False)
    assert p.returncode == 125 and "network namespace" in one_line_error(p)


def test_errors_go_to_the_json_log_as_runc_writes_them(pyctr, work):
    log = os.path.join(work, "log.json")
    p = subprocess.run([sys.executable, "-m", "pyctr", "--root", pyctr.root,
                        "--log-format=json", "--log=" + log, "--systemd-cgroup",
                        "start", "nope"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 125 and "does not exist" in one_line_error(p)
    entries = [json.loads(line) for line in open(log)]
    errors = [e for e in entries if e["level"] == "error"]
    assert len(errors) == 1 and "container nope does not exist" == errors[0]["msg"]
    assert errors[0]["time"].endswith("Z")


def test_features_lists_what_pyctr_supports(pyctr):
    features = json.loads(pyctr("features", check=True).stdout)
    assert features["hooks"] == ["prestart", "createRuntime", "createContainer",
                                 "startContainer", "poststart", "poststop"]
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]
    assert features["linux"]["selinux"] == {"enabled": False}


def test_pause_and_resume(pyctr, bundle):
    b = bundle(["sleep", "300"])
    create(pyctr, "--bundle", b, "c11")
    pyctr("start", "c11", check=True)
    pyctr("pause", "c11", check=True)
    assert state(pyctr, "c11")["status"] == "paused"
    pid = state(pyctr, "c11")["pid"]
    until(lambda: _frozen(pid), "the freezer to stop the process")
    pyctr("resume", "c11", check=True)
    assert state(pyctr, "c11")["status"] == "running"
    pyctr("pause", "c11", check=True)
    pyctr("delete", "--force", "c11", check=True)  # a paused container is killed too
    no_leftovers(pyctr, "c11")
    assert not groups_of(pyctr)


def _frozen(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        line = [entry for entry in f if ":freezer:" in entry][0]
    group = "/sys/fs/cgroup/freezer" + line.strip().split(":", 2)[2]
    with open(os.path.join(group, "freezer.state")) as f:
        return f.read().strip() == "FROZEN"


def test_pyctr_run_without_bundle_is_unchanged(pyctr):
    """pyctr's own run: IMAGE CMD, even with words runc's run would take."""
    p = pyctr("run", "--rm", "busybox", "echo", "-b", "x", check=True)
    assert p.stdout.strip() == "-b x"


@pytest.mark.parametrize("net, ip", [("veth:br0", "10.99.0.5"),
                                     ("macvlan:nic0,host_shim=no", "10.77.0.130")])
def test_pyctr_network_inside_the_engines_netns(image_data, bundle, work, net, ip):
    """An engine made the netns; the annotation asks for a pyctr network in
    it. delete takes pyctr's devices out of it (the netns outlives the
    container), and nothing is left on the node."""
    from pyctr.testbed import Testbed
    with Testbed(nodes=1, data=image_data) as tb:
        node = tb.nodes[0]
        engine_ns = tb.tag + "-engine"
        subprocess.run(["ip", "netns", "add", engine_ns], check=True)
        try:
            def in_engine_netns(config):
                config["linux"]["namespaces"] = [
                    n for n in config["linux"]["namespaces"] if n["type"] != "network"] + [
                    {"type": "network", "path": "/run/netns/" + engine_ns}]
                config["annotations"] = {"run.pyctr.net": "%s,ip=%s/24" % (net, ip)}
            b = bundle(["sleep", "300"], in_engine_netns)
            with open(os.path.join(work, "out"), "w") as out:
                p = node.run(node.pyctr_argv("create", "--bundle", b, "n1"),
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60)
            assert p.returncode == 0, open(os.path.join(work, "out")).read()
            inside = subprocess.run(["ip", "-n", engine_ns, "-o", "-4", "addr", "show", "eth0"],
                                    capture_output=True, text=True).stdout
            assert ip + "/24" in inside
            assert node.pyctr("start", "n1").returncode == 0
            p = node.pyctr("exec", "n1", "ip", "-o", "-4", "addr", "show", "eth0")
            assert ip + "/24" in p.stdout, p.stderr
            p = node.pyctr("delete", "--force", "n1")
            assert p.returncode == 0, p.stderr
            left = subprocess.run(["ip", "-n", engine_ns, "-o", "link"], capture_output=True,
                                  text=True).stdout
            assert "eth0" not in left, left
            ports = node.ip_cmd("-o", "link", "show", "type", "veth").stdout
            assert ports.split() == [] or "nic0" in ports and len(ports.splitlines()) == 1, ports
            assert os.listdir(node.paths.containers) == []
        finally:
            subprocess.run(["ip", "netns", "del", engine_ns])


def test_preserved_fds_and_no_pivot(pyctr, bundle, work):
    """--preserve-fds hands fd 3 to the workload; --no-pivot still runs it."""
    b = bundle(["sh", "-c", "echo through-fd3 >&3; echo $$"])
    r, w = os.pipe()
    # fd 3 of pyctr (only there: this process's fd 3 belongs to pytest)
    argv = [sys.executable, "-c", "import os, sys; os.dup2(%d, 3); os.close(%d); "
            "os.execv(sys.argv[1], sys.argv[1:])" % (w, w)] + pyctr.argv(
        "run", "--preserve-fds", "1", "--no-pivot", "--bundle", b, "c12")
    try:
        with tempfile.TemporaryFile("w+") as out:
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                               pass_fds=(w,), timeout=60)
            out.seek(0)
            assert p.returncode == 0, out.read()
            assert out.read().split() == ["1"]  # its PID 1
    finally:
        os.close(w)
    assert os.read(r, 100) == b"through-fd3\n"
    os.close(r)
    no_leftovers(pyctr, "c12")


def test_kill_term_ends_a_created_container(pyctr, bundle):
    create(pyctr, "--bundle", bundle(["sleep", "300"]), "c13")
    pyctr("kill", "c13", "TERM", check=True)
    until(lambda: state(pyctr, "c13")["status"] == "stopped", "stopped")
    p = pyctr("kill", "c13", "9")
    assert p.returncode == 125 and "container not running" in one_line_error(p)
    pyctr("delete", "c13", check=True)
    no_leftovers(pyctr, "c13")


def test_exec_tty_through_the_console_socket(pyctr, bundle, work):
    b = bundle(["sleep", "300"])
    create(pyctr, "--bundle", b, "c14")
    pyctr("start", "c14", check=True)
    path = os.path.join(work, "exec.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    p = subprocess.Popen(pyctr.argv("exec", "--tty", "--console-socket", path, "--detach",
                                    "c14", "sh", "-c", "tty; echo exec-tty-done"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    conn = accept(listener, p)
    _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    conn.close()
    listener.close()
    assert p.wait(timeout=60) == 0, p.stderr.read()
    seen = b""
    try:
        while b"exec-tty-done" not in seen:
            try:
                data = os.read(fds[0], 4096)
            except OSError:
                break
            if not data:
                break
            seen += data
    finally:
        os.close(fds[0])
    assert b"/dev/pts/" in seen and b"exec-tty-done" in seen, seen
    pyctr("delete", "--force", "c14", check=True)
    no_leftovers(pyctr, "c14")


def test_debug_shows_the_cause_chain(pyctr, work):
    p = subprocess.run([sys.executable, "-m", "pyctr", "--root", pyctr.root, "--debug",
                        "create", "--bundle", work, "c15"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 125
    assert p.stderr.startswith("pyctr: ") and "Traceback" in p.stderr
    assert "FileNotFoundError" in p.stderr  # the cause, config.json missing


def test_run_relays_its_own_terminal(pyctr, bundle):
    """runc run of a terminal bundle without --console-socket: pyctr relays
    the pty (what `runc spec` bundles ask for)."""
    b = bundle(["sh", "-c", "tty; echo relayed; exit 7"],
               lambda c: c["process"].update(terminal=True))
    p = pyctr("run", "--bundle", b, "c16", input="")
    assert p.returncode == 7, p.stderr
    assert "/dev/pts/0" in p.stdout and "relayed" in p.stdout
    p = create(pyctr, "--bundle", b, "c17", check=False)
    assert p.returncode == 125 and "--console-socket" in one_line_error(p)
    no_leftovers(pyctr, "c16")
