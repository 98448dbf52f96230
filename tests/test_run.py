"""`pyctr run` and friends against real namespaces (root)."""
import json
import os
import re
import signal
import subprocess
import time


from conftest import one_line_error, host_leftovers, root_only, until

pytestmark = root_only

DEFAULT_CAPS = "00000000a80425fb"  # runc/podman's 14 default capabilities


def run(pyctr, *args, **kw):
    return pyctr("run", "--rm", *args, **kw)


def test_pid1_and_host_processes_invisible(pyctr):
    p = run(pyctr, "busybox", "sh", "-c", "echo $$; ls /proc | grep -E '^[0-9]+$'", check=True)
    lines = p.stdout.split()
    assert lines[0] == "1"
    pids = {int(x) for x in lines[1:]}
    # this process and its parent are not seen (a parent that is the host's
    # PID 1, as for a runner started detached, has the number of the container's own)
    assert not ({os.getpid(), os.getppid()} - {1}) & pids
    assert len(pids) <= 3  # sh, ls, grep: nothing from the host


def test_hostname(pyctr):
    p = run(pyctr, "--hostname", "node7", "busybox", "hostname", check=True)
    assert p.stdout.strip() == "node7"
    assert os.uname().nodename != "node7"


def test_kcore_masked_and_proc_sys_read_only(pyctr):
    p = run(pyctr, "busybox", "sh", "-c",
            "wc -c < /proc/keys; test -s /proc/kcore && echo kcore-readable;"
            "grep ' /proc/sys ' /proc/mounts; echo 1 > /proc/sys/kernel/ns_last_pid && echo wrote;"
            "true",
            check=True)
    assert p.stdout.split()[0] == "0"  # /proc/keys is /dev/null
    assert "kcore-readable" not in p.stdout
    assert " ro," in p.stdout.splitlines()[1]
    assert "wrote" not in p.stdout


def test_masked_directories_are_empty_and_read_only(pyctr):
    p = run(pyctr, "busybox", "sh", "-c",
            "for d in /proc/acpi /sys/firmware; do ls -A $d | wc -l; touch $d/x && echo wrote; "
            "done; grep -E ' /(proc/acpi|sys/firmware) ' /proc/self/mountinfo", check=True)
    lines = p.stdout.splitlines()
    assert lines[:2] == ["0", "0"] and "wrote" not in p.stdout
    mounts = [line.split() for line in lines[2:]]
    assert len(mounts) == 2 and all(" ro" in " " + m[5] for m in mounts)
    assert mounts[0][2] == mounts[1][2]  # one filesystem for both: no more than needed


def test_capability_bounding_set(pyctr):
    def bnd(*flags):
        out = run(pyctr, *flags, "busybox", "grep", "CapBnd", "/proc/self/status",
                  check=True).stdout
        return out.split()[1]
    assert bnd() == DEFAULT_CAPS
    assert int(bnd("--cap-add", "NET_ADMIN"), 16) == int(DEFAULT_CAPS, 16) | (1 << 12)
    assert bnd("--cap-drop", "all") == "0000000000000000"


def test_no_new_privs_and_fds_closed(pyctr):
    p = run(pyctr, "busybox", "sh", "-c", "grep NoNewPrivs /proc/self/status; ls /proc/self/fd",
            check=True, )
    assert "NoNewPrivs:\t1" in p.stdout
    assert sorted(p.stdout.split()[2:]) in (["0", "1", "2", "3"], ["0", "1", "2"])  # 3: ls's dir


def test_userns_maps_root_to_unprivileged_range(pyctr):
    p = run(pyctr, "--userns", "busybox", "sh", "-c", "id -u; cat /proc/self/uid_map",
            check=True)
    uid, inside, outside, size = p.stdout.split()
    from pyctr.idmap import subordinate_range
    start, count = subordinate_range()  # root's /etc/subuid line, or pyctr's default
    assert (uid, inside, outside, size) == ("0", "0", str(start), str(count))
    assert int(outside) != 0  # container root is not host root


def test_exit_codes(pyctr):
    assert run(pyctr, "busybox", "sh", "-c", "exit 7").returncode == 7
    assert run(pyctr, "--init", "busybox", "sh", "-c", "kill -KILL $$").returncode == 137
    p = run(pyctr, "busybox", "no-such-command")
    assert p.returncode == 127 and "not found" in one_line_error(p)
    p = run(pyctr, "busybox", "/etc/passwd")
    assert p.returncode == 126 and "permission denied" in one_line_error(p).lower()
    p = run(pyctr, "no-such-image", "true")
    assert p.returncode == 125 and "not found" in one_line_error(p)
    p = run(pyctr, "--no-such-flag", "busybox", "true")
    assert p.returncode == 125 and one_line_error(p)
    assert pyctr.containers() == []


def test_signal_forwarded(pyctr):
    proc = pyctr.popen("run", "--rm", "busybox", "sh", "-c",
                       'trap "exit 42" TERM; echo ready; while :; do sleep 0.05; done')
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 42
    finally:
        proc.kill()
        proc.wait()


def test_init_forwards_signal_to_workload(pyctr):
    proc = pyctr.popen("run", "--rm", "--init", "busybox", "sh", "-c",
                       "echo ready; while :; do sleep 0.05; done")
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        # sh is not PID 1 under --init, so TERM's default action kills it.
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        proc.kill()
        proc.wait()


def zombie_left(pyctr, *flags):
    """Whether an orphan that has exited stays a zombie. A short-lived shell
    leaves a background `usleep` behind (an orphan: PID 1 becomes its
    parent), which exits after 10 ms. Polls, bounded, until that orphan is a
    zombie (state Z) or gone (reaped); a busy machine only makes it slower."""
    name = "z%d" % len(flags)
    pyctr("run", "-d", "--name", name, *flags, "busybox", "sh", "-c",
          'sh -c "usleep 10000 &"; exec sleep 30', check=True)
    try:
        for _ in range(200):  # bounded: 200 x 0.05 s
            time.sleep(0.05)
            states = pyctr("exec", name, "sh", "-c", "cat /proc/[0-9]*/stat").stdout
            if "(sleep) " not in states:
                continue  # the short-lived shell has not finished: no orphan yet
            orphan = [line.split(") ", 1)[1][0] for line in states.splitlines()
                      if "(usleep) " in line]
            if orphan == ["Z"]:
                return True
            if not orphan:
                return False
        raise AssertionError("the orphan neither exited nor became a zombie")
    finally:
        pyctr("rm", "-f", name)


def test_zombie_reaped_only_under_init(pyctr):
    # sleep as PID 1 never reaps: the orphan stays a zombie
    assert zombie_left(pyctr) is True
    assert zombie_left(pyctr, "--init") is False


def test_exec_joins_every_namespace(pyctr):
    pyctr("run", "-d", "--name", "svc", "busybox", "sleep", "30", check=True)
    state = json.loads(pyctr("inspect", "svc", check=True).stdout)[0]
    assert state["status"] == "running"
    for ns in ("pid", "net", "mnt", "uts", "ipc"):
        inside = pyctr("exec", "svc", "readlink", "/proc/self/ns/" + ns, check=True).stdout
        assert inside.strip() == os.readlink("/proc/%d/ns/%s" % (state["pid"], ns))
        assert inside.strip() != os.readlink("/proc/self/ns/" + ns)
    assert pyctr("exec", "svc", "sh", "-c", "exit 3").returncode == 3
    p = pyctr("exec", "svc", "nope")
    assert p.returncode == 127 and one_line_error(p)


def test_detached_lifecycle_logs_kill_rm(pyctr):
    p = pyctr("run", "-d", "--name", "web", "busybox", "sh", "-c",
              'trap "echo bye; exit 42" TERM; echo hello; while :; do sleep 0.05; done',
              check=True)
    assert p.stdout.strip() == "web"
    for _ in range(200):  # its trap is set: init ignores a signal it has no handler for
        if pyctr("logs", "web").stdout.strip():
            break
        time.sleep(0.05)
    assert "running" in pyctr("ps", check=True).stdout
    p = pyctr("run", "-d", "--name", "web", "busybox", "true")
    assert p.returncode == 125 and "already in use" in one_line_error(p)
    assert pyctr("rm", "web").returncode == 125  # running: needs -f
    pyctr("kill", "web", check=True)
    for _ in range(100):
        state = json.loads(pyctr("inspect", "web").stdout)[0]
        if state["status"] == "stopped":
            break
        time.sleep(0.05)
    assert state["status"] == "stopped" and state["exit_code"] == 42
    assert pyctr("logs", "web", check=True).stdout.split() == ["hello", "bye"]
    pyctr("rm", "web", check=True)
    assert pyctr.containers() == []
    p = pyctr("inspect", "web")
    assert p.returncode == 125 and "no such container" in one_line_error(p)


def test_rm_f_removes_many_in_one_command_and_names_what_it_could_not(pyctr):
    for name in ("m1", "m2", "m3"):
        pyctr("run", "-d", "--name", name, "busybox", "sleep", "300", check=True)
    p = pyctr("rm", "-f", "m1", "nosuch", "m2", "m3", "m1")
    assert p.returncode == 125
    assert one_line_error(p) == "pyctr: no such container: nosuch"
    assert pyctr.containers() == []
    pyctr("run", "-d", "--name", "m4", "busybox", "sleep", "300", check=True)
    p = pyctr("rm", "m4")  # running, not forced: refused, left as it was
    assert p.returncode == 125 and "m4 is running" in one_line_error(p)
    assert "running" in pyctr("ps", check=True).stdout
    pyctr("rm", "-f", "m4", check=True)
    assert pyctr.containers() == []


def test_nothing_left_after_rm_failure_and_kill(pyctr):
    run(pyctr, "busybox", "true", check=True)
    run(pyctr, "busybox", "no-such-command")
    run(pyctr, "-v", "/no/such/dir:/x", "busybox", "true")
    proc = pyctr.popen("run", "--rm", "--name", "victim", "busybox", "sh", "-c",
                       "echo ready; exec sleep 30")
    assert proc.stdout.readline().strip() == "ready"
    pid = json.loads(pyctr("inspect", "victim", check=True).stdout)[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == 137
    assert pyctr.containers() == []
    assert host_leftovers(pyctr) == []


def test_killing_pyctr_kills_the_container_and_gc_cleans(pyctr):
    proc = pyctr.popen("run", "--rm", "--name", "orphan", "busybox", "sh", "-c",
                       "echo ready; exec sleep 30")
    assert proc.stdout.readline().strip() == "ready"
    pid = json.loads(pyctr("inspect", "orphan", check=True).stdout)[0]["pid"]
    proc.kill()  # SIGKILL to pyctr itself
    proc.wait()
    for _ in range(100):  # PDEATHSIG takes the container down with it
        if not os.path.exists("/proc/%d" % pid):
            break
        time.sleep(0.02)
    assert not os.path.exists("/proc/%d" % pid)
    assert "stopped" in pyctr("ps").stdout
    assert "orphan" in pyctr("gc", check=True).stdout
    assert pyctr.containers() == []
    assert pyctr("gc", check=True).stdout == ""  # idempotent


def test_env_workdir_user_volumes_tmpfs(pyctr, tmp_path):
    (tmp_path / "data.txt").write_text("payload\n")
    os.chmod(tmp_path, 0o755)  # readable by uid 1000 inside
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    p = run(pyctr, "-e", "A=1", "--env-file", str(env_file), "-w", "/tmp", "-u", "1000:1000",
            "-v", "%s:/data:ro" % tmp_path, "--tmpfs", "/scratch", "busybox", "sh", "-c",
            'echo $A $FROM_FILE; pwd; id -u; id -g; cat /data/data.txt;'
            'touch /data/new 2>/dev/null && echo rw-data; grep " /scratch " /proc/mounts',
            check=True)
    out = p.stdout.splitlines()
    assert out[:5] == ["1 yes", "/tmp", "1000", "1000", "payload"]
    assert "rw-data" not in p.stdout and "tmpfs" in out[-1]


def test_the_callers_umask_does_not_reach_the_container(pyctr):
    """A hardened node's umask 077: the container's root was 0700 (user
    1000 could not even enter it), /etc/hosts 0600, and its process kept
    077. runc and crun give the process 022 unless the spec says otherwise."""
    script = ("umask; cat /etc/hosts /etc/resolv.conf /etc/hostname >/dev/null && echo read;"
              "stat -c %a / /etc/hosts /mnt")
    pyctr("run", "-d", "--name", "masked", "busybox", "sleep", "60", check=True)
    try:
        for child in ("c", "python"):
            p = subprocess.run(pyctr.argv("run", "--rm", "-u", "1000", "-v", "/proc:/mnt/x:ro",
                                          "busybox", "sh", "-c", script),
                               capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, PYCTR_CHILD=child),
                               preexec_fn=lambda: os.umask(0o077))
            assert (p.returncode, p.stdout.split()) == (0, ["0022", "read", "755", "644", "755"]), \
                (child, p.stdout, p.stderr)
        p = subprocess.run(pyctr.argv("exec", "-u", "1000", "masked", "sh", "-c", "umask"),
                           capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: os.umask(0o077))
        assert (p.returncode, p.stdout.split()) == (0, ["0022"]), p.stderr
    finally:
        pyctr("rm", "-f", "masked")


def test_read_only_root(pyctr):
    p = run(pyctr, "--read-only", "busybox", "sh", "-c", "touch /x 2>/dev/null || echo ro")
    assert p.stdout.strip() == "ro"
    p = run(pyctr, "busybox", "sh", "-c", "touch /x && echo rw", check=True)
    assert p.stdout.strip() == "rw"


def test_image_is_not_changed_by_containers(pyctr, rootfs):
    run(pyctr, "busybox", "sh", "-c", "echo dirty > /etc/dirty", check=True)
    assert not os.path.exists(os.path.join(rootfs, "etc", "dirty"))



def test_running_containers_keep_their_writable_layers_apart_and_off_the_host(pyctr):
    """Every container's tmpfs under its overlay is mounted on the same
    empty directory, each in its own mount namespace: one container never
    sees another's files there, and the host sees none."""
    for name in ("layer-a", "layer-b"):
        pyctr("run", "-d", "--name", name, "busybox", "sh", "-c",
              "echo %s > /mine; sleep 60" % name, check=True)
    try:
        for name in ("layer-a", "layer-b"):
            until(lambda: pyctr("exec", name, "cat", "/mine").stdout.strip() == name,
                  "%s's /mine" % name)
        scratch = os.path.join(pyctr.root, "scratch")
        assert os.path.isdir(scratch) and os.listdir(scratch) == []
    finally:
        pyctr("rm", "-f", "layer-a", "layer-b")

def test_preserve_fds(pyctr):
    import shlex
    argv = pyctr.argv("run", "--rm", "--preserve-fds", "1", "busybox", "sh", "-c", "cat <&3")
    # fd 3 is a pipe: only sockets and pipes pass (see test_escape.py)
    p = subprocess.run(["sh", "-c", "echo through-fd-3 | %s 3<&0" % shlex.join(argv)],
                       capture_output=True, text=True, timeout=30)
    assert p.stdout.strip() == "through-fd-3", p.stderr
    p = subprocess.run(["sh", "-c", "%s 3<&-" % shlex.join(argv)], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 125 and "fd 3 is not open" in one_line_error(p)


def test_toml_job_file(pyctr, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('image = "busybox"\ncommand = ["sh", "-c", "echo $GREETING $(hostname)"]\n'
                   'hostname = "from-toml"\nrm = true\n[env]\nGREETING = "hi"\n')
    p = pyctr("run", "-f", str(job), check=True)
    assert p.stdout.strip() == "hi from-toml"
    job.write_text('image = "busybox\ncommand = 3\n')
    p = pyctr("run", "-f", str(job))
    assert p.returncode == 125 and "invalid TOML" in one_line_error(p)


def test_oci_bundle(pyctr, rootfs, tmp_path):
    spec = json.loads(pyctr("spec", "--hostname", "bundled", rootfs, "hostname",
                            check=True).stdout)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(spec))
    p = pyctr("run", "--rm", "--bundle", str(bundle), check=True)
    assert p.stdout.strip() == "bundled"
    (bundle / "config.json").write_text("{not json")
    p = pyctr("run", "--rm", "--bundle", str(bundle))
    assert p.returncode == 125 and "invalid JSON" in one_line_error(p)


def test_share_namespaces_with_host_and_container(pyctr):
    p = run(pyctr, "--ipc", "host", "--uts", "host", "busybox", "sh", "-c",
            "readlink /proc/self/ns/ipc; hostname", check=True)
    assert p.stdout.split() == [os.readlink("/proc/self/ns/ipc"), os.uname().nodename]
    pyctr("run", "-d", "--name", "pod", "busybox", "sleep", "30", check=True)
    p = run(pyctr, "--pid", "container:pod", "--ipc", "container:pod", "busybox", "sh", "-c",
            "ps -o comm | grep -c sleep", check=True)
    assert p.stdout.strip() == "1"  # sees the pod's sleep


def test_rootless_maps_caller_to_root(rootfs, tmp_path):
    import pwd
    import shlex
    import sys
    made = False
    try:
        user = pwd.getpwnam("pyctr-test")
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "pyctr-test"], check=True)
        user, made = pwd.getpwnam("pyctr-test"), True
    state = "/tmp/pyctr-rootless-%d" % os.getpid()
    argv = [sys.executable, "-m", "pyctr", "--root", state, "run", "--rm", rootfs,
            "sh", "-c", "id -u; cat /proc/self/uid_map"]
    try:
        p = subprocess.run(["su", "pyctr-test", "-s", "/bin/sh", "-c", shlex.join(argv)],
                           capture_output=True, text=True, timeout=60)
        assert p.stdout.split()[:4] == ["0", "0", str(user.pw_uid), "1"], p.stderr
        # the C child builds what the Python child builds (as the test below, as a user)
        seen = []
        for child in ("c", "python"):
            built = argv[:-1] + [BUILT]
            q = subprocess.run(["su", "pyctr-test", "-s", "/bin/sh", "-c",
                                "PYCTR_CHILD=%s %s" % (child, shlex.join(built))],
                               capture_output=True, text=True, timeout=60)
            seen.append((q.returncode, re.sub(r"\b[0-9a-f]{12}\b|pipe:\[\d+\]", "X",
                                              q.stdout + q.stderr)))
        assert seen[0] == seen[1] and seen[0][0] == 0, seen
        # wiring a veth needs root on the host: one clear line, not a traceback
        argv[argv.index("--rm")] = "--net=veth:br0"
        p = subprocess.run(["su", "pyctr-test", "-s", "/bin/sh", "-c", shlex.join(argv)],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 125 and "rootless" in one_line_error(p)
    finally:
        subprocess.run(["rm", "-rf", state])
        if made:  # a user the test made goes with it
            subprocess.run(["userdel", "pyctr-test"], capture_output=True)


# What a container shows of how it was built: identity, privileges, filter,
# mounts, devices, cgroups, environment, signals, open fds.
BUILT = ("grep -E '^(Cap|NoNewPrivs|Seccomp|Uid|Gid|Groups|Sig)' /proc/self/status;"
         "cut -d' ' -f4- /proc/self/mountinfo; stat -c '%n %f %u %g %t %T %N' /dev/* /dev/*/*;"
         "ls -A /sys/fs/cgroup; cat /proc/self/cgroup; env | sort; pwd; hostname; ls /proc/self/fd;"
         "ulimit -a")


def test_the_c_child_builds_the_container_the_python_child_builds(pyctr):
    """The C child (csrc/child.c) runs the same steps as the Python child
    (child.py) for the cases it takes: every fact a container's process
    can see of its making is the same, and so are failures, their code and
    their message. PYCTR_CHILD=python makes pyctr use the Python child,
    =c the C child (or fail). A user's: test_rootless_maps_caller_to_root."""
    pyctr("run", "-d", "--name", "other", "busybox", "sleep", "60", check=True)
    cases = [("busybox", "sh", "-c", BUILT),
             ("--userns", "busybox", "sh", "-c", BUILT),
             ("--ipc", "container:other", "--uts", "container:other", "busybox", "sh", "-c",
              BUILT),
             ("--read-only", "-u", "1000:1000", "--cap-add", "NET_RAW", "-w", "/new/dir",
              "-e", "A=1", "--hostname", "h2", "--net=none", "busybox", "sh", "-c", BUILT),
             ("--security-opt", "seccomp=unconfined", "--cap-drop", "ALL", "busybox", "sh", "-c",
              BUILT),
             ("--init", "busybox", "sh", "-c", BUILT + "; cat /proc/1/cmdline | tr '\\0' ' '"),
             ("--init", "busybox", "no-such-command"),
             ("--device", "/dev/null:/dev/x/extra", "busybox", "sh", "-c", BUILT),
             ("busybox", "no-such-command"),
             ("-w", "/bin/sh", "busybox", "true")]
    try:
        for args in cases:
            seen = []
            for child in ("c", "python"):
                p = run(pyctr, *args, env=dict(os.environ, PYCTR_CHILD=child))
                out = re.sub(r"\b[0-9a-f]{12}\b", "ID", p.stdout + p.stderr)
                seen.append((p.returncode, re.sub(r"pipe:\[\d+\]", "pipe", out)))
            assert seen[0] == seen[1], args
    finally:
        pyctr("rm", "-f", "other")
    assert seen[0] == (125, "pyctr: mount: mkdir /bin/sh: Not a directory\n")
