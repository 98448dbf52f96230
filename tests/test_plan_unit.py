"""Fast unit tests of the spec and plan layers: no root, no namespaces.
The kernel is replaced by tests/fakes.RecordingSyscalls."""
import json
import os

import pytest

from fakes import RecordingSyscalls
from pyctr import oci, rootfs, specgen, sync
from pyctr import syscalls
from pyctr.errors import PyctrError
from pyctr.paths import Paths


@pytest.fixture
def rootdir(tmp_path):
    for d in ("bin", "etc"):
        (tmp_path / d).mkdir()
    (tmp_path / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/:/\n")
    return str(tmp_path)


def build(rootdir, **opts):
    return specgen.build(Paths(root="/nonexistent"), {"target": rootdir, "command": ["true"],
                                                     **opts})


def test_defaults_are_what_runc_users_expect(rootdir):
    spec = build(rootdir)
    assert {n.type for n in spec.namespaces} >= {"pid", "ipc", "uts", "mount", "network"}
    caps = spec.process.capabilities
    assert "net_admin" not in caps.bounding
    assert caps.effective == caps.permitted == caps.bounding  # root, as podman
    assert caps.inheritable == caps.ambient == ()  # the CVE-2022-29162 pattern is gone
    assert "/proc/kcore" in spec.masked_paths and "/proc/sys" in spec.readonly_paths
    assert spec.process.no_new_privileges
    assert "container=pyctr" in spec.process.env


def test_a_validated_spec_cannot_be_changed_at_any_depth(rootdir):
    spec = build(rootdir, env=["A=1"], volumes=["/tmp:/data:ro"])  # validated: frozen
    with pytest.raises(AttributeError):
        spec.process.cwd = "/elsewhere"
    with pytest.raises(AttributeError):
        spec.mounts[-1].options = ()
    with pytest.raises(TypeError):
        spec.annotations["k"] = "v"
    assert isinstance(spec.process.env, tuple) and "A=1" in spec.process.env
    assert isinstance(spec.mounts[-1].options, tuple) and "ro" in spec.mounts[-1].options
    rule = spec.seccomp.syscalls[0]
    with pytest.raises(AttributeError):
        rule.action = "SCMP_ACT_ALLOW"
    assert isinstance(rule.names, tuple) and all(isinstance(n, str) for n in rule.names)
    assert spec.process.uid == 0 and spec.remove is False  # scalars stay what they were


def test_user_by_name_and_caps(rootdir):
    spec = build(rootdir, user="app", cap_add=["CAP_NET_ADMIN"], cap_drop=["chown"])
    assert (spec.process.uid, spec.process.gid) == (1000, 1001)
    caps = spec.process.capabilities
    assert "net_admin" in caps.bounding and "chown" not in caps.bounding
    # a non-root user keeps only what --cap-add named, ambient included
    assert caps.effective == caps.permitted == caps.inheritable == caps.ambient == ("net_admin",)
    with pytest.raises(PyctrError, match="unknown capability"):
        build(rootdir, cap_add=["CAP_FLY"])
    with pytest.raises(PyctrError, match="unknown user"):
        build(rootdir, user="nobody-here")


def test_host_and_shared_namespaces(rootdir):
    spec = build(rootdir, ipc="host", net=["host"])
    types = {n.type for n in spec.namespaces}
    assert "ipc" not in types and "network" not in types
    with pytest.raises(PyctrError, match="invalid --pid"):
        build(rootdir, pid="elsewhere")


def test_bad_volume_and_tmpfs(rootdir):
    with pytest.raises(PyctrError, match="invalid volume"):
        build(rootdir, volumes=["relative"])
    with pytest.raises(PyctrError, match="does not exist"):
        build(rootdir, volumes=["/no/such:/x"])
    with pytest.raises(PyctrError, match="absolute"):
        build(rootdir, tmpfs=["x"])


def test_toml_keys_match_cli(tmp_path, rootdir):
    job = tmp_path / "job.toml"
    job.write_text('rootfs = "%s"\ncommand = "sh -c \'echo hi\'"\nrm = true\n[env]\nA = "1"\n'
                   % rootdir)
    opts = specgen.load_toml(str(job))
    assert opts["command"] == ["sh", "-c", "echo hi"] and opts["remove"] is True
    spec = specgen.build(Paths(root="/nonexistent"), opts)
    assert "A=1" in spec.process.env
    job.write_text('rootfs = "/"\nbogus = 1\n')
    with pytest.raises(PyctrError, match="unknown key"):
        specgen.load_toml(str(job))


def test_oci_round_trip(rootdir):
    spec = build(rootdir, hostname="h", userns=True)
    again = oci.from_config(json.loads(json.dumps(spec.to_oci())), "/").freeze()
    for field in ("hostname", "masked_paths", "readonly_paths", "uid_mappings", "mounts"):
        assert getattr(again, field) == getattr(spec, field), field
    assert again.process.capabilities == spec.process.capabilities
    assert [n.type for n in again.namespaces][0] == "user"


def test_rootfs_plan_order(rootdir):
    """Propagation is cut first; every mount lands below the new root before
    pivot_root; masks and read-only paths come after it, inside."""
    spec = build(rootdir, read_only=True)
    fake = RecordingSyscalls(dirs={"/proc/acpi", "/sys/firmware", "/proc/sys", "/"},
                             files={"/proc/kcore", "/dev/null"})
    steps = rootfs.plan_root(spec, "/r") + rootfs.plan_mounts(spec, "/r") + \
        rootfs.plan_finish(spec)
    rootfs.apply(steps, fake)
    calls = fake.calls
    assert calls[0] == ("mount", None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE, None)
    pivot = calls.index(("pivot_root", ".", "."))
    before, after = calls[:pivot], calls[pivot:]
    # below the new root (itself a host path), every target is resolved inside
    # it, never as a string
    assert not [c for c in before if c[0] in ("mount", "mkdir") and c[2] not in ("/", "/r")]
    in_root = [c for c in before if c[0].endswith("_in_root")]
    assert in_root and all(c[1] == "/r" for c in in_root)
    assert ("mkdir_in_root", "/r", "/proc") in before
    assert ("mount_in_root", "/r", "/dev/null", "/dev/null", None, syscalls.MS_BIND, None) in before
    assert ("symlink_in_root", "/r", "/proc/self/fd", "/dev/fd") in before
    assert not [c for c in before if c[1:] == ("/r", "/")]  # a plain rootfs gets no workdir
    assert ("mount", "/dev/null", "/proc/kcore", None, syscalls.MS_BIND, None) in after
    assert ("mount", "tmpfs", "/proc/acpi", "tmpfs", syscalls.MS_RDONLY, None) in after
    # one empty filesystem for every masked directory
    assert ("mount", "/proc/acpi", "/sys/firmware", None, syscalls.MS_BIND, None) in after
    assert len([c for c in calls if c[0] == "mount" and c[3] == "tmpfs"]) == 1
    remount_ro = syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    assert ("mount", None, "/proc/sys", None, remount_ro, None) in after
    assert after[-1] == ("mount", None, "/", None, remount_ro, None)  # --read-only
    assert ("umount", ".", syscalls.MNT_DETACH) in after  # old root detached
    # /proc/timer_stats does not exist here: masking it must not fail
    assert not any(c[0] == "mount" and c[2] == "/proc/timer_stats" for c in calls)


def test_workdir_made_only_in_an_image(rootdir):
    spec = build(rootdir, workdir="/new/dir")
    assert ("mkdir_in_root", "/r", "/new/dir") not in rootfs.plan_mounts(spec, "/r")
    object.__setattr__(spec.root, "image", "busybox")  # as if built from an image
    assert rootfs.plan_mounts(spec, "/r")[-5] == ("mkdir_in_root", "/r", "/new/dir")


def test_overlay_root_when_image(rootdir):
    spec = build(rootdir)
    steps = rootfs.plan_root(spec, "/state/rootfs/merged", ("/img", "/state/rootfs"))
    # the writable layer is a tmpfs private to the container's mount namespace
    assert steps[1] == ("mount", "tmpfs", "/state/rootfs", "tmpfs", 0, "mode=755")
    assert steps[-1] == ("mount", "overlay", "/state/rootfs/merged", "overlay", 0,
                         "lowerdir=/img,upperdir=/state/rootfs/upper,"
                         "workdir=/state/rootfs/work")


def test_mount_options_split_into_flags_and_data():
    flags, data = rootfs.parse_options(["nosuid", "ro", "mode=755", "size=1m", "rw"])
    assert flags == syscalls.MS_NOSUID and data == "mode=755,size=1m"


def test_sync_reports_map_to_exit_codes():
    assert sync.decode_report(sync.encode_report("exec", 2, "x: not found")).exit_code == 127
    assert sync.decode_report(sync.encode_report("exec", 13, "x: denied")).exit_code == 126
    err = sync.decode_report(sync.encode_report("mount", 1, "mount /proc: denied"))
    assert err.exit_code == 125 and str(err) == "mount /proc: denied"
    assert sync.decode_report(b"garbage").exit_code == 125


def test_child_protocol_rejects_out_of_order(monkeypatch):
    """The child accepts IDS, then GO, and nothing else: a GO before IDS (or
    the parent's end-of-file) makes it exit quietly."""
    exited = []
    monkeypatch.setattr(sync.os, "_exit", lambda code: exited.append(code))
    ch = sync.Channel()
    ch.send(sync.IDS)
    ch.send(sync.GO)
    ch.expect(sync.IDS)
    assert ch.expect(sync.GO) == []
    assert exited == []
    ch = sync.Channel()
    ch.send(sync.GO)
    ch.expect(sync.IDS)
    assert exited == [125]
    ch.abort()
    ch.expect(sync.GO)  # EOF
    assert exited == [125, 125]


def test_go_carries_environment_to_the_child():
    ch = sync.Channel()
    ch.send(sync.IDS)
    ch.send(sync.GO, ["OMPI_MCA_btl_tcp_if_include=10.0.0.0/24", "B=2=3"])
    assert ch.expect(sync.IDS) is None
    assert ch.expect(sync.GO) == ["OMPI_MCA_btl_tcp_if_include=10.0.0.0/24", "B=2=3"]
    ch.abort()
    ch.child_side()


def test_channel_carries_a_descriptor_before_ready():
    """An fd the child sends (a terminal master) arrives as a working fd of
    the parent's, not inheritable, and READY ends the wait."""
    ch = sync.Channel()
    r, w = os.pipe()
    ch.send_fd("pty", w)
    os.close(w)
    ch.ready()
    fds = ch.wait_ready()
    assert list(fds) == ["pty"] and not os.get_inheritable(fds["pty"])
    os.write(fds["pty"], b"through")
    os.close(fds["pty"])
    assert os.read(r, 16) == b"through"
    os.close(r)
    ch.abort()
    ch.child_side()


def test_parent_sees_a_child_failure_wherever_it_waits():
    ch = sync.Channel()
    ch.report("mount", 13, "mount /proc: Permission denied")
    with pytest.raises(PyctrError, match="mount /proc: Permission denied") as e:
        ch.wait_ready()
    assert e.value.exit_code == 125
    ch.abort()
    ch.child_side()
    ch = sync.Channel()
    ch.parent_side()  # the child's end closed: it died without a word
    with pytest.raises(PyctrError, match="died before it was ready"):
        ch.wait_ready()
    ch = sync.Channel()
    ch.report("exec", 2, "nope: executable file not found in $PATH")
    err = ch.wait_exec()
    assert err.exit_code == 127
    ch.child_side()


def test_only_a_run_child_that_waits_for_nothing_is_cloned_alone(rootdir):
    """The C child of `run` without networks shares pyctr's memory until its
    exec (Syscalls.clone alone): GO is queued before clone and no stage
    after it acts. Wherever the parent still has work between clone and GO
    (a network to wire, uid maps before IDS, a bundle's hooks, an OCI
    create waiting for `start`), or the child runs Python, it is not."""
    from pyctr import childprog, container
    paths = Paths(root="/nonexistent")

    def alone(spec, start_follows=True, program=True, waits_for_ids=False):
        c = container.Container(paths, spec, RecordingSyscalls())
        c.start_follows = start_follows
        c.program = childprog.Program(-1, b"", waits_for_ids) if program else None
        return container._alone(c)

    plain = build(rootdir)
    assert alone(plain)
    assert not alone(plain, start_follows=False)   # create: start comes later
    assert not alone(plain, waits_for_ids=True)    # uid maps, cgroup moves first
    assert not alone(plain, program=False)         # the Python child
    assert not alone(build(rootdir, net=["veth:br0"]))


def test_getopt_stops_at_the_image():
    """Flags after IMAGE belong to the command, as with docker/podman run."""
    from pyctr.cli import Opt, parse_options
    opts = [Opt("--rm", "bool", dest="remove"), Opt("-e --env", "list"), Opt("--mtu", "int")]
    got = parse_options("run", "", opts, ["--rm", "-e", "A=1", "--env=B=2", "--mtu", "9000",
                                          "img", "ls", "--rm", "-l"],
                        positionals=("target",), rest="command")
    assert got == {"remove": True, "env": ["A=1", "B=2"], "mtu": 9000, "target": "img",
                   "command": ["ls", "--rm", "-l"]}
    got = parse_options("run", "", opts, ["--", "-img-"], positionals=("target",),
                        rest="command")
    assert got["target"] == "-img-"
    for bad, words in ((["--nope", "img"], "unknown option --nope"),
                       (["--mtu", "big", "img"], "wants a number"),
                       (["--rm=yes", "img"], "takes no value"),
                       (["img", "x", "--env"], None)):
        if words is None:  # after the image nothing is an option: no error
            parse_options("run", "", opts, bad, positionals=("target",), rest="command")
            continue
        with pytest.raises(PyctrError, match=words):
            parse_options("run", "", opts, bad, positionals=("target",), rest="command")
    with pytest.raises(PyctrError, match="needs a value"):
        parse_options("run", "", opts, ["-e"], positionals=("target",), rest="command")
