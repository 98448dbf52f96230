"""Own cgroups and the device policy, against the real kernel (root): limits
as podman users write them, the container's cgroup namespace, an attacker
inside trying to reach the host's cgroups and devices, and cleanup."""
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import cgroup_homes, groups_of, one_line_error, root_only

pytestmark = root_only


def run(pyctr, *args, **kw):
    return pyctr("run", "--rm", *args, **kw)


HOG = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived"


def test_memory_hog_is_oom_killed_at_the_limit(pyctr):
    p = run(pyctr, "--memory", "32m", "busybox", "sh", "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; " + HOG)
    assert p.returncode == 137, p.stderr
    assert p.stdout.split() == [str(32 << 20)]  # the container sees its limit
    assert "survived" not in p.stdout
    # Under the limit the same container works.
    p = run(pyctr, "--memory", "32m", "busybox", "sh", "-c",
            "x=$(head -c 1000000 /dev/zero | tr '\\0' a); echo fine", check=True)
    assert p.stdout.strip() == "fine"
    assert groups_of(pyctr) == []


def test_memory_swap_limit_where_the_host_accounts_swap(pyctr):
    """v1: memory.memsw.limit_in_bytes is the memory hierarchy's question;
    the other hierarchies, looked at first, once made pyctr refuse it."""
    memsw = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"
    if not os.path.exists(memsw):
        pytest.skip("no v1 memory hierarchy accounting swap here")
    p = run(pyctr, "--memory", "32m", "--memory-swap", "96m", "busybox", "cat",
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes", check=True)
    assert p.stdout.split() == [str(96 << 20)]
    assert groups_of(pyctr) == []


def test_fork_bomb_stops_at_pids_limit(pyctr):
    # A bounded "bomb" in a child shell: 40 attempts at background processes
    # that live 30 s (they die with the container's PID 1). The outer shell
    # reads the counters with builtins: no fork is left for it to make.
    bomb = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); sleep 30 & echo started; done"
    script = ("sh -c '%s'; read current < /sys/fs/cgroup/pids/pids.current; "
              "read limit < /sys/fs/cgroup/pids/pids.max; echo counters $current $limit" % bomb)
    p = run(pyctr, "--pids-limit", "10", "busybox", "sh", "-c", script, timeout=120)
    assert p.returncode == 0, p.stderr
    started = p.stdout.split().count("started")
    counters = p.stdout.split()[-3:]
    assert counters[0] == "counters" and counters[2] == "10"
    assert int(counters[1]) <= 10
    assert 0 < started < 10  # PID 1 and the bomb's shell count too
    assert "can't fork" in p.stderr


def test_cpuset_cpus_shows_in_status(pyctr):
    last = os.cpu_count() - 1
    p = run(pyctr, "--cpuset-cpus", str(last), "busybox", "sh", "-c",
            "grep Cpus_allowed_list /proc/self/status; cat /sys/fs/cgroup/cpuset/cpuset.cpus",
            check=True)
    assert p.stdout.split() == ["Cpus_allowed_list:", str(last), str(last)]


@pytest.mark.skipif(not shutil.which("mpirun.openmpi"), reason="needs Open MPI's mpirun")
def test_cpuset_cpus_for_hybrid_launched_ranks(pyctr):
    """mpirun starts pyctr per rank; each rank pins its container to the CPU
    of its local rank (mpirun's own binding is replaced by the cpuset)."""
    ranks = min(2, os.cpu_count())
    inner = " ".join(pyctr.argv("run", "--rm", "--cpuset-cpus", "$OMPI_COMM_WORLD_LOCAL_RANK",
                                "busybox", "sh", "-c",
                                "'echo $OMPI_COMM_WORLD_RANK "
                                "$(grep Cpus_allowed_list /proc/self/status | cut -f2)'"))
    p = subprocess.run(["mpirun.openmpi", "--allow-run-as-root", "--oversubscribe", "-np",
                        str(ranks), "sh", "-c", inner], capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    seen = sorted(line.split() for line in p.stdout.splitlines() if line.strip())
    assert seen == [[str(r), str(r)] for r in range(ranks)]


def test_own_cgroup_namespace_and_read_only_view(pyctr):
    p = run(pyctr, "busybox", "sh", "-c",
            "cat /proc/self/cgroup; echo 5 > /sys/fs/cgroup/pids/pids.max && echo WROTE; "
            "mkdir /sys/fs/cgroup/memory/x && echo MADE; ls /sys/fs/cgroup/memory",
            check=True)
    lines = p.stdout.splitlines()
    paths = [line.split(":", 2)[2] for line in lines if line.count(":") >= 2]
    assert paths and set(paths) == {"/"}
    assert "WROTE" not in p.stdout and "MADE" not in p.stdout
    assert "Read-only file system" in p.stderr
    assert "pyctr" not in lines and "ctr" not in lines  # no host group shows in the view
    # every mount of the view is read-only, as the kernel says: the tmpfs and
    # each hierarchy (the two above tried only pids and memory)
    p = run(pyctr, "busybox", "cat", "/proc/self/mountinfo", check=True)
    view = [line.split() for line in p.stdout.splitlines()
            if line.split()[4].startswith("/sys/fs/cgroup")]
    assert len(view) > 1
    assert [f[4] for f in view if "ro" not in f[5].split(",")] == []


@pytest.fixture
def attacker_tools(work):
    """util-linux unshare (busybox's has no -C) and the libc it needs, as
    an attacker would bring them in; with seccomp off, so that these tests
    try the cgroup layer alone (the default filter already refuses
    `unshare -U`: tests/test_seccomp.py)."""
    needed = ("/usr/bin/unshare", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2")
    if not all(os.path.exists(p) for p in needed):
        pytest.skip("needs util-linux unshare and x86_64 glibc on the host")
    shutil.copy("/usr/bin/unshare", os.path.join(work, "unshare"))
    return ["--security-opt", "seccomp=unconfined", "-v", "%s:/w" % work,
            "-v", "/lib/x86_64-linux-gnu/libc.so.6:/lib/x86_64-linux-gnu/libc.so.6:ro",
            "-v", "/lib64/ld-linux-x86-64.so.2:/lib64/ld-linux-x86-64.so.2:ro"]


@pytest.fixture
def host_marker():
    """A host cgroup (pids) that must stay out of the container's reach."""
    path = "/sys/fs/cgroup/pids/pyctr-test-marker-%s" % uuid.uuid4().hex[:8]
    os.mkdir(path)
    with open(os.path.join(path, "pids.max"), "w") as f:
        f.write("77")
    yield path
    os.rmdir(path)


ATTACK = """
mkdir -p /tmp/m /tmp/p /tmp/d /tmp/s /tmp/u
mount -t cgroup -o memory none /tmp/m && echo MOUNTED-memory
mount -t cgroup -o pids none /tmp/p && echo MOUNTED-pids
mount -t cgroup -o devices none /tmp/d && echo MOUNTED-devices
mount -t cgroup -o name=systemd none /tmp/s && echo MOUNTED-systemd
mount -t cgroup2 none /tmp/u && echo MOUNTED-unified
echo SEEN $(ls /tmp/p /tmp/s /tmp/u /tmp/m | grep -e pyctr -e marker -e process_api)
echo 1 > /tmp/p/%(marker)s/pids.max && echo WROTE-host
echo a > /tmp/d/devices.allow && echo WROTE-devices
echo /w/evil > /tmp/s/release_agent && echo WROTE-release-agent
echo 1000000000 > /tmp/m/memory.memsw.limit_in_bytes
echo 1000000000 > /tmp/m/memory.limit_in_bytes && echo RAISED-own-view
mknod /tmp/loop b 7 0 && head -c 1 /tmp/loop > /dev/null && echo OPENED-block
""" + HOG


def test_attacker_cannot_reach_host_cgroups(pyctr, attacker_tools, host_marker):
    """As the container's root: new user+cgroup+mount namespaces, every
    hierarchy mounted afresh. Only the container's own groups are there;
    host groups, the device rules and release_agent stay out of reach, and
    a limit raised in the view still holds (it is enforced a level up)."""
    script = ATTACK % {"marker": os.path.basename(host_marker)}
    p = run(pyctr, "--memory", "48m", *attacker_tools, "busybox",
            "/w/unshare", "-U", "-r", "-C", "-m", "/bin/sh", "-c", script, timeout=120)
    out = p.stdout
    # The mounts succeed (the kernel allows them): what they show is the point.
    assert "MOUNTED-pids" in out and "MOUNTED-devices" in out, p.stderr
    seen = [line.split() for line in out.splitlines() if line.startswith("SEEN")]
    assert seen == [["SEEN"]], out  # no pyctr parent, no host group, no marker
    for forbidden in ("WROTE-host", "WROTE-devices", "WROTE-release-agent", "OPENED-block",
                      "survived"):
        assert forbidden not in out, out + p.stderr
    assert p.returncode == 137, out + p.stderr  # the hog died at 48m regardless
    with open(os.path.join(host_marker, "pids.max")) as f:
        assert f.read().strip() == "77"


def test_no_cgroup_mount_without_cgroup_namespace_of_its_own(pyctr, attacker_tools):
    """Without -C the new user namespace does not own the cgroup namespace:
    mounting a hierarchy is refused outright."""
    p = run(pyctr, *attacker_tools, "busybox", "/w/unshare", "-U", "-r", "-m", "/bin/sh",
            "-c", "mkdir /tmp/m; mount -t cgroup -o memory none /tmp/m && echo MOUNTED; true",
            check=True)
    assert "MOUNTED" not in p.stdout


def test_device_policy(pyctr):
    p = run(pyctr, "busybox", "sh", "-c",
            "mknod /tmp/loop b 7 0 && echo MKNOD-block; head -c 1 /tmp/loop && echo OPEN-block; "
            "mknod /tmp/kmsg c 1 11 && echo MKNOD-kmsg; head -c 1 /tmp/kmsg && echo OPEN-kmsg; "
            "echo x > /dev/null && echo NULL; head -c 4 /dev/urandom | wc -c; "
            "cat /sys/fs/cgroup/devices/devices.list", check=True)
    out = p.stdout
    assert "MKNOD-block" in out and "MKNOD-kmsg" in out  # runc's default: c/b *:* m
    assert "OPEN-block" not in out and "OPEN-kmsg" not in out
    assert "Operation not permitted" in p.stderr
    assert "NULL" in out and "\n4\n" in out
    assert "c 1:3 rwm" in out and "a *:* rwm" not in out


@pytest.mark.skipif(not os.path.exists("/dev/loop7"), reason="needs /dev/loop7 on the host")
def test_device_option_adds_and_allows_a_node(pyctr):
    # A block device the default policy denies, granted for reading only.
    p = run(pyctr, "--device", "/dev/loop7:/dev/disk:r", "busybox", "sh", "-c",
            "ls -l /dev/disk; head -c 1 /dev/disk > /dev/null && echo READ; "
            "echo x > /dev/disk && echo WROTE; true", check=True)
    assert p.stdout.lstrip().startswith("b")
    assert "READ" in p.stdout
    assert "WROTE" not in p.stdout  # only r was granted
    assert "Operation not permitted" in p.stderr
    p = pyctr("run", "--rm", "--device", "/etc/passwd", "busybox", "true")
    assert p.returncode == 125
    assert "not a device" in one_line_error(p)


def test_v2_device_program_on_a_unified_only_view(pyctr):
    """The cgroup v2 path end to end: pyctr in a mount namespace where
    /sys/fs/cgroup is the unified tree alone (this host is hybrid), so it
    makes its group there and enforces devices with its eBPF program."""
    inner = " ".join(pyctr.argv(
        "run", "--rm", "busybox", "sh", "-c",
        "'cat /proc/self/cgroup; mknod /tmp/loop b 7 0; head -c 1 /tmp/loop && echo OPEN-block;"
        " echo x > /dev/null && echo NULL; grep cgroup2 /proc/mounts'"))
    script = ("umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && "
              "ls /sys/fs/cgroup/pyctr > /dev/null 2>&1; " + inner)
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "OPEN-block" not in p.stdout and "NULL" in p.stdout
    assert "0::/" in p.stdout
    assert "cgroup2 /sys/fs/cgroup cgroup2 ro" in p.stdout
    assert groups_of(pyctr) == []


def test_no_cgroup_left_after_rm_and_failed_start(pyctr):
    p = run(pyctr, "--memory", "64m", "busybox", "true")
    assert p.returncode == 0
    assert groups_of(pyctr) == []
    p = run(pyctr, "--pids-limit", "50", "busybox", "no-such-command")
    assert p.returncode == 127
    assert groups_of(pyctr) == []
    assert pyctr.containers() == []


def test_rm_force_removes_a_running_containers_cgroup(pyctr):
    p = pyctr("run", "-d", "--name", "held", "--memory", "64m", "busybox", "sleep", "60",
              check=True)
    assert p.stdout.strip() == "held"
    assert len(groups_of(pyctr)) >= 2  # one per hierarchy
    pyctr("rm", "-f", "held", check=True)
    assert groups_of(pyctr) == []


def test_kill_9_of_pyctr_then_gc_removes_the_cgroup(pyctr):
    proc = pyctr.popen("run", "--name", "victim", "--pids-limit", "20", "busybox",
                       "sh", "-c", "echo up; sleep 60")
    try:
        assert proc.stdout.readline().strip() == "up"
        assert groups_of(pyctr)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    deadline = time.monotonic() + 10
    while groups_of(pyctr) and time.monotonic() < deadline:
        pyctr("gc", check=True)
        if not groups_of(pyctr):
            break
        time.sleep(0.2)  # the container's processes are still dying
    assert groups_of(pyctr) == []
    assert pyctr.containers() == []


def _leaves(pyctr, name):
    """{hierarchy: does the container's init live in a leaf below its
    group?}, checked against where the record says it lives."""
    from pyctr import cgroups
    state = json.loads(pyctr("inspect", name, check=True).stdout)[0]
    group = cgroups.Group.from_record(state["cgroup"])
    with open("/proc/%d/cgroup" % state["pid"]) as f:
        lives = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
    found = {}
    for h in cgroups.detect().hierarchies:
        where = h.host_dir(lives[h.options])
        assert where == group.process_dir(h.name), h.name
        assert where in (group.dirs[h.name], os.path.join(group.dirs[h.name], "ctr")), h.name
        found[h.name] = where != group.dirs[h.name]
    return found


# what a container's group holds that it must not change: device rules, and
# files that weigh it against its siblings or count its usage
WEIGHED = {"cpu", "cpuacct", "cpuset", "blkio", "devices", "net_cls", "net_prio"}


def test_a_leaf_only_where_the_group_holds_what_the_container_must_not_change(pyctr):
    """The container's processes live in a `ctr` leaf below its group where
    the group holds limits, device rules, weights or counters; elsewhere
    (no limit in memory, pids, freezer, a named hierarchy) in the group
    itself, two cgroupfs calls fewer each. A memory or pids limit brings
    that hierarchy's leaf back. Either way its cgroup namespace is rooted
    where it lives, and it cannot write its limits."""
    from pyctr import cgroups
    layout = cgroups.detect()
    if layout.v2_only or not layout.controller("devices") or \
            not (layout.controller("memory") and layout.controller("pids")):
        pytest.skip("needs v1 devices, memory and pids hierarchies")
    pyctr("run", "-d", "--name", "plain", "busybox", "sleep", "60", check=True)
    pyctr("run", "-d", "--name", "limited", "--memory", "64m", "--pids-limit", "100",
          "busybox", "sleep", "60", check=True)
    plain, limited = _leaves(pyctr, "plain"), _leaves(pyctr, "limited")
    for h in layout.hierarchies:
        weighed = bool(h.controllers & WEIGHED)
        assert plain[h.name] == weighed, h.name
        assert limited[h.name] == (weighed or bool(h.controllers & {"memory", "pids"})), h.name
    assert not all(plain.values())  # this host has hierarchies without a leaf
    for name in ("plain", "limited"):
        p = pyctr("exec", name, "sh", "-c", "cat /proc/self/cgroup; "
                  "echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes && echo WROTE; "
                  "echo 1 > /sys/fs/cgroup/pids/pids.max && echo WROTE")
        lines = p.stdout.split()
        assert lines and all(line.endswith(":/") for line in lines), p.stdout  # its own roots
        assert "WROTE" not in p.stdout
    pyctr("rm", "-f", "plain", "limited", check=True)
    assert groups_of(pyctr) == []


def _assert_init_lives_in_its_groups(pyctr, name):
    from pyctr import cgroups
    state = json.loads(pyctr("inspect", name, check=True).stdout)[0]
    group = cgroups.Group.from_record(state["cgroup"])
    with open("/proc/%d/cgroup" % state["pid"]) as f:
        lives = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
    hierarchies = cgroups.detect().hierarchies
    assert any(h.version == 2 for h in hierarchies)
    for h in hierarchies:
        assert h.host_dir(lives[h.options]) == group.process_dir(h.name), h.name


def test_init_lives_in_its_groups_in_every_hierarchy(pyctr):
    """Seen from the host: the container's init is in its own group in each
    hierarchy, the cgroup v2 one included, where clone3 starts it rather
    than a write to cgroup.procs moving it."""
    pyctr("run", "-d", "--name", "placed", "busybox", "sleep", "60", check=True)
    try:
        _assert_init_lives_in_its_groups(pyctr, "placed")
    finally:
        pyctr("rm", "-f", "placed", check=True)


def test_where_clone3_is_refused_the_init_is_moved_in(pyctr):
    """pyctr under a seccomp filter that answers clone3 with ENOSYS (Docker's
    default profile does, without CAP_SYS_ADMIN; so do kernels before 5.3):
    the container starts all the same, its init moved into its v2 group."""
    from pyctr import seccomp, syscalls
    profile = seccomp.from_oci({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}]},
        "test profile", [])
    seccomp.compile_profile(profile, "test profile")
    p = subprocess.run(pyctr.argv("run", "-d", "--name", "moved", "busybox", "sleep", "60"),
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=lambda: syscalls.Syscalls().seccomp_load(profile.program))
    try:
        assert p.returncode == 0, p.stderr
        _assert_init_lives_in_its_groups(pyctr, "moved")
    finally:
        pyctr("rm", "-f", "moved", check=True)


def test_the_last_containers_removal_leaves_no_pyctr_group(pyctr):
    """Nothing of pyctr stays in the host's cgroups once its last container
    is gone, without `pyctr gc`: after run --rm and after rm -f."""
    if any(cgroup_homes().values()):
        pytest.skip("other containers' groups are there")
    run(pyctr, "--memory", "64m", "busybox", "true", check=True)
    assert cgroup_homes() == {}
    pyctr("run", "-d", "--name", "last", "busybox", "sleep", "60", check=True)
    assert cgroup_homes()
    pyctr("rm", "-f", "last", check=True)
    assert cgroup_homes() == {}


def test_gc_keeps_a_live_containers_cgroup(pyctr):
    pyctr("run", "-d", "--name", "alive", "busybox", "sleep", "60", check=True)
    before = groups_of(pyctr)
    pyctr("gc", check=True)
    assert groups_of(pyctr) == before and before


@pytest.mark.parametrize("option", [
    ["--memory", "lots"], ["--memory", "1k"], ["--memory-swap", "64m"],
    ["--memory", "64m", "--memory-swap", "32m"], ["--cpus", "0"], ["--cpus", "999"],
    ["--cpu-shares", "1"], ["--cpuset-cpus", "0-"], ["--cpuset-cpus", "4096"],
    ["--cpuset-mems", "x"], ["--cpuset-mems", "64"], ["--pids-limit", "many"],
    ["--device", "/dev/nope"],
    ["--device", "/dev/null:/dev/n:rwx"],
])
def test_bad_limits_are_one_line_and_leave_nothing(pyctr, option):
    before = cgroup_homes()  # a v1 cpuset's pyctr/ made for the group goes too
    p = pyctr("run", "--rm", "--name", "bad", *option, "busybox", "true")
    assert p.returncode == 125
    one_line_error(p)
    assert pyctr.containers() == []
    assert groups_of(pyctr) == [] and cgroup_homes() == before


def test_a_group_that_fails_half_made_takes_the_cpuset_parent_along(pyctr, monkeypatch):
    """A limit the kernel refuses in the last hierarchy, after the v1 cpuset
    one made pyctr/ for the group: the rollback removed the group's
    directories but left pyctr/ in the host's cgroups for good (a
    --cpuset-mems of a node the host lacks did that, before it was checked
    first)."""
    from pyctr import cgroups, resources
    from pyctr.errors import PyctrError
    from pyctr.paths import Paths
    layout = cgroups.detect()
    if not layout.controller("cpuset") or layout.v2_only:
        pytest.skip("no v1 cpuset hierarchy")
    before = cgroup_homes()
    real, last = cgroups._make_group, layout.hierarchies[-1].name

    def refused(h, directory, *args):
        made = real(h, directory, *args)
        if h.name == last:  # made, then a limit refused: every hierarchy's group is there
            raise PyctrError("refused")
        return made
    monkeypatch.setattr(cgroups, "_make_group", refused)
    with pytest.raises(PyctrError):
        cgroups.create(Paths(root=pyctr.root), "half-made", resources.Resources(), layout)
    assert cgroup_homes() == before


def test_inspect_shows_limits(pyctr):
    pyctr("run", "-d", "--name", "shown", "--memory", "64m", "--cpus", "0.5",
          "--pids-limit", "30", "--cpuset-cpus", "0", "busybox", "sleep", "60", check=True)
    info = json.loads(pyctr("inspect", "shown", check=True).stdout)[0]
    resources = info["config"]["linux"]["resources"]
    assert resources["memory"]["limit"] == 64 << 20
    assert resources["cpu"] == {"quota": 50000, "period": 100000, "cpus": "0"}
    assert resources["pids"] == {"limit": 30}
    assert {"allow": False, "type": "a", "access": "rwm"} in resources["devices"]
    assert info["cgroup"]["limits"]["pids_limit"] == 30
    for directory in info["cgroup"]["dirs"].values():
        assert os.path.isdir(directory)


def test_toml_job_limits(pyctr, tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('image = "busybox"\ncommand = ["cat", "/sys/fs/cgroup/pids/pids.max"]\n'
                   'rm = true\npids_limit = 33\nmemory = "64m"\ncpuset-cpus = "0"\n')
    p = pyctr("run", "-f", str(job), check=True)
    assert p.stdout.strip() == "33"


def test_oci_bundle_resources_and_cgroups_path(pyctr, rootfs, tmp_path):
    name = "pyctr-test-%s" % uuid.uuid4().hex[:8]
    config = json.loads(pyctr("spec", "busybox", "true", check=True).stdout)
    config["root"] = {"path": rootfs, "readonly": True}
    config["process"]["args"] = ["sh", "-c", "cat /sys/fs/cgroup/pids/pids.max "
                                 "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
    config["linux"]["resources"] = {"memory": {"limit": 50 << 20}, "pids": {"limit": 44},
                                    "devices": [{"allow": False, "access": "rwm"}]}
    config["linux"]["cgroupsPath"] = "/" + name
    (tmp_path / "config.json").write_text(json.dumps(config))
    p = pyctr("run", "--rm", "--bundle", str(tmp_path), check=True)
    assert p.stdout.split() == ["44", str(50 << 20)]
    assert not os.path.exists("/sys/fs/cgroup/pids/" + name)
    config["linux"]["resources"]["blockIO"] = {"weight": 10}
    (tmp_path / "config.json").write_text(json.dumps(config))
    p = pyctr("run", "--rm", "--bundle", str(tmp_path))
    assert p.returncode == 125
    assert "blockIO is not supported" in one_line_error(p)


def test_exec_joins_the_containers_cgroup(pyctr):
    pyctr("run", "-d", "--name", "target", "--pids-limit", "40", "busybox", "sleep", "60",
          check=True)
    p = pyctr("exec", "target", "sh", "-c", "cat /proc/self/cgroup; "
              "cat /sys/fs/cgroup/pids/pids.current", check=True)
    lines = p.stdout.split()
    assert all(line.endswith(":/") for line in lines[:-1])
    assert int(lines[-1]) >= 2  # sleep and this shell, counted together


def test_freeze_and_thaw(pyctr):
    """What OCI pause/resume use: every process of the container stops."""
    from pyctr import cgroups
    pyctr("run", "-d", "--name", "cold", "busybox", "sh", "-c", "sleep 60 & sleep 60",
          check=True)
    from pyctr.paths import Paths
    from pyctr.state import StateStore
    state = StateStore(Paths(root=pyctr.root)).load("cold")
    freezer = state.cgroup["dirs"]["freezer"]
    cgroups.freeze(state)
    try:
        with open(os.path.join(freezer, "freezer.state")) as f:
            assert f.read().strip() == "FROZEN"
        where = cgroups.Group.from_record(state.cgroup).process_dir("freezer")
        with open(os.path.join(where, "cgroup.procs")) as f:
            pids = f.read().split()
        assert pids
        for pid in pids:
            with open("/proc/%s/status" % pid) as f:
                status = f.read()
            assert "State:\tD" in status, status  # frozen: uninterruptible, not sleeping
    finally:
        cgroups.thaw(state)
    with open(os.path.join(freezer, "freezer.state")) as f:
        assert f.read().strip() == "THAWED"


def test_gc_leaves_other_worlds_and_foreign_groups_alone(pyctr):
    """Another pyctr world's containers (another agent's, a cluster node's)
    and groups pyctr did not name are never gc's to remove."""
    from conftest import Pyctr
    other = Pyctr(root=pyctr.root + "-other", data=pyctr.data, config=pyctr.config)
    from pyctr import cgroups
    pids = cgroups.detect().controller("pids")
    foreign = os.path.join(cgroups._home(pids), "not-pyctrs-%s" % uuid.uuid4().hex[:6])
    os.makedirs(foreign)
    try:
        other("run", "-d", "--name", "theirs", "busybox", "sleep", "60", check=True)
        theirs = groups_of(other)
        assert theirs
        # A crashed container of this world, for gc to find beside them.
        proc = pyctr.popen("run", "--name", "mine", "busybox", "sh", "-c", "echo up; sleep 60")
        assert proc.stdout.readline().strip() == "up"
        proc.kill()
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while groups_of(pyctr) and time.monotonic() < deadline:
            pyctr("gc", check=True)
        assert groups_of(pyctr) == []
        assert groups_of(other) == theirs
        assert os.path.isdir(foreign)
    finally:
        other.cleanup()
        os.rmdir(foreign)
    assert groups_of(other) == []


def _gone(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[1].startswith(("Z", "X"))
    except FileNotFoundError:
        return True


def test_processes_left_in_the_cgroup_die_with_the_container(pyctr, work):
    """With --pid=host nothing kills a background process when the
    container's first process exits; removing its cgroup does (as runc's
    delete kills what is left in the container's cgroup)."""
    p = run(pyctr, "--pid", "host", "-v", "%s:/w" % work, "busybox", "sh", "-c",
            "sleep 300 & echo $! > /w/pid", check=True)
    with open(os.path.join(work, "pid")) as f:
        pid = int(f.read())
    try:
        assert _gone(pid), p.stderr
        assert groups_of(pyctr) == []
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    pyctr("run", "-d", "--name", "bg", "--pid", "host", "-v", "%s:/w" % work, "busybox", "sh",
          "-c", "sleep 300 & echo $! > /w/pid2; sleep 300", check=True)
    deadline = time.monotonic() + 10
    while not os.path.exists(os.path.join(work, "pid2")) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(os.path.join(work, "pid2")) as f:
        pid = int(f.read())
    try:
        pyctr("rm", "-f", "bg", check=True)
        assert _gone(pid)
        assert groups_of(pyctr) == []
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


V2_SCRIPT = """
import subprocess, sys
from pyctr import cgroups
from pyctr.paths import Paths
from pyctr.state import StateStore
argv = sys.argv[1:]
subprocess.run(argv + ["run", "-d", "--name", "v2", "busybox", "sleep", "60"], check=True,
               stdout=subprocess.DEVNULL)
state = StateStore(Paths(root=argv[argv.index("--root") + 1])).load("v2")
print("layout", cgroups.detect().v2_only, state.cgroup["version"])
group = cgroups.Group.from_record(state.cgroup)
cgroups.freeze(state)
print("frozen", open(group.dirs[""] + "/cgroup.events").read().split("frozen ")[1][0])
cgroups.thaw(state)
print("thawed", open(group.dirs[""] + "/cgroup.events").read().split("frozen ")[1][0])
subprocess.run(argv + ["rm", "-f", "v2"], check=True)
print("left", [d for d in group.dirs.values() if __import__("os").path.exists(d)])
"""


def test_v2_freeze_thaw_and_removal_on_a_unified_only_view(pyctr, work):
    script = os.path.join(work, "v2.py")
    with open(script, "w") as f:
        f.write(V2_SCRIPT)
    inner = " ".join([sys.executable, script] + pyctr.argv())
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        "umount -l /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && "
                        + inner], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["layout True 2", "frozen 1", "thawed 0", "left []"]


def test_warm_up_moves_nothing_and_leaves_no_thread_for_clone():
    """cgroup_warm_up's head start on the kernel's wait (cgroups.warm_up) is a
    move of pyctr to where it is: its groups are the same afterwards, and
    once wait() returns no thread is left that a clone(2) child would
    inherit half-counted. Run in a child process: pytest's own threads
    would be counted too."""
    code = (
        "import _thread\n"
        "from pyctr import cgroups\n"
        "before = open('/proc/self/cgroup').read()\n"
        "wait = cgroups.warm_up(cgroups.detect())\n"
        "wait()\n"
        "assert open('/proc/self/cgroup').read() == before\n"
        "assert _thread._count() == 0, _thread._count()\n"
        "print('ok')\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert p.stdout.strip() == "ok", p.stderr


def test_gc_removes_the_empty_parent_group_from_pyctrs_own_cgroup(pyctr):
    """In a v1 cpuset hierarchy containers' groups live under `<pyctr's own
    cgroup>/pyctr`; once none is left, gc removes that parent too, so the
    owner of pyctr's cgroup (a service, a login session) can remove its own
    group."""
    assert run(pyctr, "busybox", "true").returncode == 0
    assert pyctr("gc").returncode == 0
    empty = [p for p, groups in cgroup_homes().items() if not groups]
    assert not empty, "gc left empty parent groups (or cpuset buckets): %s" % empty
    # and the next container makes them again
    assert run(pyctr, "busybox", "true").returncode == 0


def test_v1_cpuset_groups_are_spread_over_buckets_that_pass_on_their_cpus(pyctr):
    """A v1 cpuset group is compared with each of its siblings when the
    kernel brings it online: once pyctr's parent holds cgroups.BUCKETS
    groups, a container's cpuset group goes into one of BUCKETS subgroups,
    not beside every other container's, and gets its CPUs at mkdir (no
    cpuset.cpus write, which rebuilds the scheduler domains). Before that
    it sits in the parent itself. The last removal takes the bucket."""
    from pyctr import cgroups
    cpuset = cgroups.detect().controller("cpuset")
    if not cpuset or cpuset.version != 1:
        pytest.skip("no v1 cpuset hierarchy on this host")
    parent = cgroups._home(cpuset)

    def cpuset_dir(name):
        state = json.loads(pyctr("inspect", name, check=True).stdout)[0]
        dirs = state["cgroup"]["dirs"]
        others = [d for h, d in dirs.items() if h != cpuset.name]
        # the other hierarchies keep the group right in pyctr's own
        homes = {cgroups._home(h) for h in cgroups.detect().hierarchies}
        assert others and all(os.path.dirname(d) in homes for d in others)
        return dirs[cpuset.name]

    crowd = []  # groups of nobody's, standing in for other containers'
    try:
        pyctr("run", "-d", "--name", "alone", "busybox", "sleep", "60", check=True)
        assert os.path.dirname(cpuset_dir("alone")) == parent
        crowd = [os.path.join(parent, "crowd-%d" % i) for i in range(cgroups.BUCKETS)]
        for directory in crowd:
            os.mkdir(directory)
        names = ["spread%d" % i for i in range(3)]
        for name in names:
            pyctr("run", "-d", "--name", name, "busybox", "sleep", "60", check=True)
        for name in names:
            directory = cpuset_dir(name)
            bucket = os.path.join(parent, cgroups.bucket(os.path.basename(directory)))
            assert os.path.dirname(directory) == bucket
            assert cgroups._read(bucket, "cgroup.clone_children") == "1"
            assert cgroups._read(directory, "cpuset.cpus") == cgroups._read(parent, "cpuset.cpus")
        assert len({cgroups.bucket("%08x-%012x" % (0, i)) for i in range(1000)}) == cgroups.BUCKETS
    finally:
        for directory in crowd:
            os.rmdir(directory)
        pyctr("rm", "-f", "alone", "spread0", "spread1", "spread2")
    left = [d for d in cgroups._parents(cpuset)[1:]
            if not any(os.path.isdir(os.path.join(d, n)) for n in os.listdir(d))]
    assert not left, "empty buckets left: %s" % left
