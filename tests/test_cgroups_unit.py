"""Fast unit tests of resources.py, cgroups.py and devices.py: parsing, the files a limit
becomes, layout detection from mountinfo text, the device rule order and
the /sys/fs/cgroup view as rootfs steps. No root, no kernel."""
import errno

import pytest

from fakes import RecordingSyscalls
from pyctr import cgroups, devices, resources, rootfs
from pyctr import syscalls
from pyctr.errors import PyctrError


@pytest.mark.parametrize("text, value", [
    ("512m", 512 << 20), ("1g", 1 << 30), ("1.5G", 3 << 29), ("2048", 2048), ("64MB", 64 << 20),
    ("64mib", 64 << 20), ("100b", 100), (7 << 20, 7 << 20),
])
def test_sizes_as_podman_writes_them(text, value):
    assert resources.parse_bytes("--memory", text) == value


@pytest.mark.parametrize("text", ["", "m", "-1m", "+5m", "1x", "inf", "nan", "1e400", "5 m b"])
def test_bad_sizes(text):
    with pytest.raises(PyctrError):
        resources.parse_bytes("--memory", text)


def test_options_become_v1_and_v2_files():
    res = resources.from_options({"memory": "64m", "cpus": "1.5", "cpu_shares": "512",
                                "cpuset_cpus": "0-1", "pids_limit": "0"})
    assert res.pids_limit == -1
    assert resources.limit_files(res, 1) == [
        ("memory", "memory.limit_in_bytes", 64 << 20),
        ("memory", "memory.memsw.limit_in_bytes", 128 << 20),  # podman: swap = memory
        ("cpu", "cpu.shares", 512),
        ("cpu", "cpu.cfs_period_us", 100000), ("cpu", "cpu.cfs_quota_us", 150000),
        ("cpuset", "cpuset.cpus", "0-1"), ("pids", "pids.max", "max")]
    assert resources.limit_files(res, 2) == [
        ("memory", "memory.max", 64 << 20), ("memory", "memory.swap.max", 64 << 20),
        ("cpu", "cpu.weight", 20), ("cpu", "cpu.max", "150000 100000"),
        ("cpuset", "cpuset.cpus", "0-1"), ("pids", "pids.max", "max")]


def test_swap_without_accounting_is_refused_only_when_asked():
    res = resources.from_options({"memory": "64m"})
    assert [f for _, f, _ in resources.limit_files(res, 1, memsw=False)] == \
        ["memory.limit_in_bytes"]
    res = resources.from_options({"memory": "64m", "memory_swap": "128m"})
    with pytest.raises(PyctrError, match="swapaccount"):
        resources.limit_files(res, 1, memsw=False)


def test_rootless_refuses_limits():
    with pytest.raises(PyctrError, match="--pids-limit needs root"):
        resources.from_options({"pids_limit": 5}, rootless=True)


def test_oci_resources_and_refusals():
    res = resources.from_oci({"resources": {"memory": {"limit": 1 << 30, "swap": -1},
                                          "cpu": {"quota": -1, "shares": 100, "cpus": "0"},
                                          "pids": {"limit": 0}, "blockIO": {}},
                            "cgroupsPath": "machine.slice:libpod:abc"})
    assert (res.memory, res.memory_swap, res.cpu_quota, res.cpu_shares, res.pids_limit) == \
        (1 << 30, -1, None, 100, -1)
    assert res.path == "/machine.slice/libpod-abc.scope"
    assert resources.oci_path("a-b.slice:pfx:x") == "/a.slice/a-b.slice/pfx-x.scope"
    for bad in ({"resources": {"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}},
                {"resources": {"memory": {"swappiness": 10}}},
                {"resources": {"memory": {"limit": "1g"}}},
                {"cgroupsPath": "/a/../b"}):
        with pytest.raises(PyctrError):
            resources.from_oci(bad)


def test_device_rules_in_order_last_match_decides():
    res = resources.from_oci({"resources": {"devices": [
        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}]},
        "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]})
    lines = [(r.allow, r.v1()) for r in devices.policy(res)]
    assert lines[0] == (False, "a")
    assert lines[1] == (True, "c 10:200 rwm")  # the bundle's, then the defaults (as runc)
    assert lines[2:4] == [(True, "c *:* m"), (True, "b *:* m")]
    assert (True, "c 136:* rwm") in lines
    assert lines[-1] == (True, "c 10:229 rwm")
    # an engine's leading deny-all does not take the terminal away
    res = resources.from_oci({"resources": {"devices": [{"allow": False, "access": "rwm"}]}})
    lines = [(r.allow, r.v1()) for r in devices.policy(res)]
    assert lines.index((True, "c 5:2 rwm")) > lines.index((False, "a"), 1)
    with pytest.raises(PyctrError):
        devices.rule_from_oci({"allow": True, "access": "rwx"})
    with pytest.raises(PyctrError):
        devices.device_from_oci({"path": "/etc/x", "type": "c", "major": 1, "minor": 3})


HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:32 / /mnt/again rw,relatime - cgroup cgroup rw,memory
"""
HYBRID_OWN = "4:memory:/jobs/a\n3:name=systemd:/\n2:cpu,cpuacct:/\n0::/\n"


def test_detect_a_hybrid_layout(tmp_path):
    (tmp_path / "mountinfo").write_text(HYBRID)
    (tmp_path / "cgroup").write_text(HYBRID_OWN)
    layout = cgroups.detect(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    names = [h.name for h in layout.hierarchies]
    assert names == ["cpu,cpuacct", "memory", "systemd", "unified"]
    assert not layout.v2_only
    memory = layout.controller("memory")
    # a group per container right in pyctr's own group, as runc's /<id>
    assert cgroups._home(memory) == "/sys/fs/cgroup/memory/jobs/a"
    assert cgroups._home(layout.controller("cpu")) == "/sys/fs/cgroup/cpu,cpuacct"
    entries = cgroups.view(layout, None, True)
    assert entries[0][:3] == ("cpu,cpuacct", "cgroup", "cpu,cpuacct")
    assert entries[2][2] == "name=systemd" and entries[3][1:3] == ("cgroup2", None)


def test_detect_reads_past_mount_points_with_odd_bytes(tmp_path):
    """The kernel escapes only space, tab, newline and backslash in a mount
    point: another mount may hold any other byte (a vertical tab, a form
    feed, one that is not UTF-8), made by whoever can mount, a container
    on a shared volume included. Detection still finds the hierarchies."""
    odd = b"60 23 0:40 / /mnt/a\x0bb\x1cc\xff rw - tmpfs tmpfs rw\n"
    (tmp_path / "mountinfo").write_bytes(HYBRID.encode() + odd)
    (tmp_path / "cgroup").write_text(HYBRID_OWN)
    layout = cgroups.detect(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert [h.name for h in layout.hierarchies] == ["cpu,cpuacct", "memory", "systemd",
                                                    "unified"]


def test_detect_v2_and_a_nested_mount_root(tmp_path):
    (tmp_path / "mountinfo").write_text(
        "30 23 0:26 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n")
    (tmp_path / "cgroup").write_text("0::/outer/user.slice/session.scope\n")
    layout = cgroups.detect(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert layout.v2_only
    (h,) = layout.hierarchies
    # v2: beside pyctr's own group (which holds processes), below the mount's root
    assert cgroups._home(h) == "/sys/fs/cgroup/user.slice"


def test_view_as_rootfs_steps():
    layout = cgroups.Layout(hierarchies=[
        cgroups.Hierarchy(name="cpu,cpuacct", version=1, mountpoint="/sys/fs/cgroup/cpu,cpuacct",
                          mount_root="/", options="cpu,cpuacct", controllers={"cpu", "cpuacct"},
                          own="/"),
        cgroups.Hierarchy(name="unified", version=2, mountpoint="/sys/fs/cgroup/unified",
                          mount_root="/", options="", controllers=set(), own="/")])
    group = cgroups.Group({"cpu,cpuacct": "/sys/fs/cgroup/cpu,cpuacct/pyctr/w-1",
                           "unified": "/sys/fs/cgroup/unified/pyctr/w-1"}, "ctr", 1, "pyctr/w-1")
    rec = RecordingSyscalls()
    ro = syscalls.MS_RDONLY | syscalls.MS_NOSUID
    cgroups.mount_view(rec, "/r", "/sys/fs/cgroup", ro, cgroups.view(layout, group, True))
    assert rec.calls[0] == ("mount_in_root", "/r", "/sys/fs/cgroup", "tmpfs", "tmpfs",
                            syscalls.MS_NOSUID, "mode=755")
    assert ("symlink_in_root", "/r", "cpu,cpuacct", "/sys/fs/cgroup/cpu") in rec.calls
    # read-only, the tmpfs and every mount below it, in one call
    assert rec.calls[-1] == ("set_mount_flags_in_root", "/r", "/sys/fs/cgroup", ro)
    assert not [c for c in rec.calls if c[0] == "mount_in_root" and c[5] & syscalls.MS_REMOUNT]

    class Before512(RecordingSyscalls):  # a kernel without mount_setattr
        def set_mount_flags_in_root(self, root, path, flags):
            raise OSError(errno.ENOSYS, "mount_setattr")
    rec = Before512()
    cgroups.mount_view(rec, "/r", "/sys/fs/cgroup", ro, cgroups.view(layout, group, True))
    remounts = [c[2] for c in rec.calls if c[0] == "mount_in_root" and c[5] & syscalls.MS_REMOUNT
                and c[5] & syscalls.MS_RDONLY]
    assert remounts == ["/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup"]  # the bind, then the tmpfs
    for namespaced in (True, False):
        rec = RecordingSyscalls()
        cgroups.mount_view(rec, "/r", "/c", ro, cgroups.view(layout, group, namespaced))
        # v1: its leaf bound, never a fresh cgroupfs (which walks every group on the node)
        assert ("mount_in_root", "/r", "/c/cpu,cpuacct",
                "/sys/fs/cgroup/cpu,cpuacct/pyctr/w-1/ctr", None, syscalls.MS_BIND, None) \
            in rec.calls
        assert not [c for c in rec.calls if c[0] == "mount_in_root" and c[4] == "cgroup"]
        fresh_v2 = ("mount_in_root", "/r", "/c/unified", "cgroup2", "cgroup2", ro, None)
        assert (fresh_v2 in rec.calls) == namespaced
    # no group of its own (rootless): cgroupfs afresh in its namespace
    rec = RecordingSyscalls()
    cgroups.mount_view(rec, "/r", "/c", ro, cgroups.view(layout, None, True))
    assert ("mount_in_root", "/r", "/c/cpu,cpuacct", "cgroup", "cgroup", ro,
            "cpu,cpuacct") in rec.calls


def test_device_node_made_or_bound():
    node = devices.Device(path="/dev/fuse", type="c", major=10, minor=229, host_path="/dev/fuse")
    rec = RecordingSyscalls()
    devices.make_node(rec, "/r", "/dev/fuse", node)
    assert rec.names() == ["mkdir_in_root", "mknod_in_root"]

    class NoMknod(RecordingSyscalls):
        def mknod_in_root(self, *args):
            raise PermissionError(1, "user namespace")
    rec = NoMknod()
    devices.make_node(rec, "/r", "/dev/fuse", node)
    assert rec.calls[-1] == ("mount_in_root", "/r", "/dev/fuse", "/dev/fuse", None,
                             syscalls.MS_BIND, None)


def test_plan_has_the_cgroup_mount_and_devices():
    from pyctr import spec
    s = spec.Spec(mounts=spec.default_mounts(), root=spec.Root(path="/r"))
    s.resources.devices.append(devices.Device(path="/dev/fuse", type="c", major=10, minor=229))
    steps = rootfs.plan_mounts(s, "/r", (), (True, []))
    ops = [step[0] for step in steps]
    assert "mount_cgroup" in ops and "device" in ops
    assert all(step[0] != "mount_cgroup" for step in rootfs.plan_mounts(s, "/r"))


@pytest.mark.parametrize("opts", [
    {"memory": True}, {"cpus": [1]}, {"pids_limit": 1.5}, {"device": 5}, {"device": [1]},
    {"cpu_shares": "many"}, {"cpuset_cpus": "3-1"}, {"memory_swap": "x"},
])
def test_wrong_types_from_a_job_file_are_one_error(opts):
    with pytest.raises(PyctrError):
        resources.from_options(opts)
