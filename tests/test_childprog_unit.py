"""The C child's program (pyctr.childprog), without root: which plans get
one, and that it says what the Python child would do, in its order. That
csrc/child.c runs it as the Python child would is test_run.py's
test_the_c_child_builds_the_container_the_python_child_builds."""
import os
import re

import pytest

from pyctr import childprog, cgroups, specgen, syscalls
from pyctr.child import Plan
from pyctr.paths import Paths
from pyctr.spec import CAPABILITIES
from pyctr.sync import Channel

HERE = os.path.dirname(os.path.abspath(__file__))
V1_VIEW = (("cpu,cpuacct", "cgroup", "cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/x", False),
           ("memory", "cgroup", "memory", "/sys/fs/cgroup/memory/x", False))


@pytest.fixture
def rootdir(tmp_path):
    for d in ("bin", "etc"):
        (tmp_path / d).mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    return str(tmp_path)


@pytest.fixture
def channel():
    c = Channel()
    yield c
    c.abort()
    os.close(c.child_fd)


def plan_of(rootdir, view=None, **opts):
    spec = specgen.build(Paths(root="/nonexistent"),
                         {"target": rootdir, "command": ["true"], **opts})
    return Plan(spec, rootdir, None, (), False, True, (), new_cgroupns=True, cgroup_view=view)


def ops(program):
    return childprog.decode(program.code)


def test_the_op_list_is_the_one_csrc_child_c_numbers():
    with open(os.path.join(HERE, "..", "csrc", "child.c")) as f:
        enum = re.search(r"enum \{(.*?)\};", f.read(), re.S).group(1)
    names = [n.strip()[3:].lower() for n in enum.split(",") if n.strip()]
    assert names == [name for name, _ in childprog.OPS] + ["count"]


def test_a_plain_container_gets_a_c_child_that_ends_in_exec(rootdir, channel):
    program = childprog.compile(plan_of(rootdir), channel)
    names = [op for op, _ in ops(program)]
    assert program.channel_fd == channel.child_fd
    assert names[0] == "close" and names[-1] == "exec"
    # what the Python child does, in its order
    for earlier, later in (("mount", "pivot_root"), ("pivot_root", "mask"),
                           ("mask", "loopback_up"), ("loopback_up", "ready_go"),
                           ("ready_go", "drop_bounding"), ("drop_bounding", "set_ids"),
                           ("set_ids", "capset"), ("capset", "workdir")):
        assert names.index(earlier) < names.index(later), (earlier, later)


def test_the_c_child_joins_its_groups_before_its_cgroup_namespace(rootdir, channel):
    r, w = os.pipe()
    try:
        program = childprog.compile(plan_of(rootdir, V1_VIEW), channel, [(w, "/sys/fs/cgroup/x")])
        found = ops(program)
        names = [op for op, _ in found]
        assert ("join_cgroups", [[[w, b"/sys/fs/cgroup/x"]]]) in found
        assert names.index("join_cgroups") < names.index("unshare") < names.index("mount")
    finally:
        os.close(r)
        os.close(w)


def test_seccomp_and_capabilities_are_the_specs(rootdir, channel):
    plan = plan_of(rootdir, cap_drop=["chown"])
    found = dict(ops(childprog.compile(plan, channel)))
    spec = plan.spec
    kept = {CAPABILITIES[c] for c in spec.process.capabilities.bounding}
    assert CAPABILITIES["chown"] in found["drop_bounding"][0]
    assert not kept & set(found["drop_bounding"][0])
    assert found["capset"][0] == syscalls.cap_mask(kept)
    # no_new_privileges: loaded by exec, right before execve, not earlier
    assert "seccomp" not in found and found["exec"][2] == spec.seccomp.program
    assert found["exec"][0] == [b"true"]


def test_the_cgroup_view_is_made_read_only_in_one_call_with_remounts_for_old_kernels(
        rootdir, channel):
    found = ops(childprog.compile(plan_of(rootdir, V1_VIEW), channel))
    at = next(i for i, (op, _) in enumerate(found) if op == "setattr_in_root")
    skip = found[at][1][3]
    assert skip >= 1
    assert all(op == "mount_in_root" for op, _ in found[at + 1:at + 1 + skip])
    recorded = childprog._MountRecorder(enosys=True)
    cgroups.mount_view(recorded, rootdir, "/sys/fs/cgroup", syscalls.MS_RDONLY, V1_VIEW)
    assert skip == len(recorded.calls) - recorded.calls.index(next(
        c for c in recorded.calls if c[0] == "setattr_in_root")) - 1


@pytest.mark.parametrize("why", ["bundle", "PYCTR_CHILD"])
def test_what_the_c_child_does_not_do_is_left_to_the_python_child(rootdir, channel, why,
                                                                  monkeypatch):
    plan = plan_of(rootdir)
    if why == "bundle":
        plan.oci = object()  # a bundle's barrier.ChildPlan: hooks, exec FIFO, terminal
    if why == "PYCTR_CHILD":
        monkeypatch.setenv("PYCTR_CHILD", "python")
    assert childprog.compile(plan, channel) is None


def test_a_wrong_argument_fails_in_the_parent():
    w = childprog._Writer()
    with pytest.raises(TypeError):
        w.op("umount", "/x")
    with pytest.raises(TypeError):
        w.op("close", "3")


def test_pyctr_child_c_refuses_what_only_the_python_child_does(rootdir, channel, monkeypatch):
    from pyctr.errors import PyctrError
    monkeypatch.setenv("PYCTR_CHILD", "c")
    assert childprog.compile(plan_of(rootdir), channel)
    plan = plan_of(rootdir)
    plan.oci = object()
    with pytest.raises(PyctrError, match="the C child does not do a bundle"):
        childprog.compile(plan, channel)


def test_in_a_user_namespace_the_c_child_waits_for_its_maps_then_becomes_root(rootdir,
                                                                              channel):
    plan = plan_of(rootdir)
    plan.new_userns = True
    program = childprog.compile(plan, channel, [(99, "/sys/fs/cgroup/x")])
    found = ops(program)
    names = [op for op, _ in found]
    assert program.waits_for_ids  # the parent writes the maps, moves it, then sends IDS
    assert "join_cgroups" not in names
    assert names.index("expect_ids") < names.index("set_ids") < names.index("mount")
    assert found[names.index("expect_ids") + 1] == ("prctl", [syscalls.PR_SET_DUMPABLE, 0])
    assert found[names.index("set_ids")] == ("set_ids", [0, 0, []])


def test_the_c_child_joins_the_namespaces_it_is_given_after_ids(rootdir, channel):
    plan = plan_of(rootdir)
    plan.join = (("ipc", 77), ("network", 78))
    found = ops(childprog.compile(plan, channel))
    setns = [args for op, args in found if op == "setns"]
    assert setns == [[77, syscalls.CLONE_NEWIPC], [78, syscalls.CLONE_NEWNET]]
    names = [op for op, _ in found]
    assert names.index("expect_ids") < names.index("setns") < names.index("mount")


def test_with_init_the_c_child_execs_the_parents_memfd_of_pyctr_init(rootdir, channel):
    found = dict(ops(childprog.compile(plan_of(rootdir, init=True), channel, init=42)))
    assert found["exec"][3:] == [42, b"R"]
    assert found["exec"][0] == [b"true"]  # pyctr-init's own argv is the child's to make


def test_a_device_node_is_made_as_the_python_child_makes_it(rootdir, channel):
    import stat
    found = dict(ops(childprog.compile(plan_of(rootdir, device=["/dev/null:/dev/x/extra"]),
                                       channel)))
    root, dest, directory, parent, name, mode, dev, uid, gid, host = found["device"]
    assert (dest, directory, parent, name, host) == (b"/dev/x/extra", b"/dev/x", b"/dev/x",
                                                     b"extra", b"/dev/null")
    assert stat.S_ISCHR(mode) and dev == os.stat("/dev/null").st_rdev
