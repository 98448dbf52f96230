"""The seccomp filter: what a default container may not call, what it still
may, --security-opt seccomp=unconfined|FILE, linux.seccomp in bundles,
`pyctr exec` under the container's profile, and bad profiles.

The probe (tests/probe.c) calls each syscall with arguments the kernel
itself rejects with another errno than EPERM where it can (a bad pointer,
bad flags): EPERM in a default container next to the kernel's own answer
with seccomp=unconfined shows it is the filter that said no.
"""
import errno
import json
import os
import shutil

import pytest

from conftest import host_leftovers, one_line_error, root_only
from probe import mount, parse, probe  # noqa: F401 (fixture)
from pyctr import seccomp, spec
from pyctr.errors import PyctrError

UNCONFINED = ("--security-opt", "seccomp=unconfined")


def calls(pyctr, probe_dir, names, *flags):
    p = pyctr("run", "--rm", *flags, *mount(probe_dir), "busybox", "/probe/probe", "try",
              *names, check=True)
    return parse(p.stdout)


# -- blocked in a default container, next to what unconfined gets ---------------
@root_only
def test_keyring_calls_blocked(pyctr, probe):
    names = ["keyctl", "add_key", "request_key"]
    assert calls(pyctr, probe, names) == dict.fromkeys(names, errno.EPERM)
    unconfined = calls(pyctr, probe, names, *UNCONFINED)
    assert unconfined["keyctl"] == 0 and unconfined["add_key"] == 0
    assert unconfined["request_key"] == errno.ENOKEY  # the kernel looked, found nothing


@root_only
def test_new_user_namespace_needs_sys_admin(pyctr, probe):
    names = ["unshare_user", "clone_user"]
    assert calls(pyctr, probe, names) == dict.fromkeys(names, errno.EPERM)
    # The kernel lets any process make a user namespace; the filter is what stops it.
    assert calls(pyctr, probe, names, *UNCONFINED) == dict.fromkeys(names, 0)
    assert calls(pyctr, probe, names, "--cap-add", "sys_admin") == dict.fromkeys(names, 0)
    p = pyctr("run", "--rm", "busybox", "unshare", "-U", "true")
    assert p.returncode != 0
    assert pyctr("run", "--rm", *UNCONFINED, "busybox", "unshare", "-U", "true").returncode == 0


@root_only
def test_mount_blocked(pyctr, probe):
    names = ["mount", "umount2"]
    assert calls(pyctr, probe, names) == dict.fromkeys(names, errno.EPERM)
    assert calls(pyctr, probe, names, *UNCONFINED) == {"mount": errno.EFAULT,
                                                        "umount2": errno.EINVAL}
    # With CAP_SYS_ADMIN the filter lets mount through, as the capability says.
    p = pyctr("run", "--rm", "--cap-add", "sys_admin", "busybox", "sh", "-c",
              "mkdir -p /m && mount -t tmpfs t /m && echo mounted", check=True)
    assert "mounted" in p.stdout
    p = pyctr("run", "--rm", "busybox", "sh", "-c", "mkdir -p /m && mount -t tmpfs t /m")
    assert p.returncode != 0


@root_only
def test_kernel_interfaces_blocked(pyctr, probe):
    names = ["bpf", "perf_event_open", "kexec_load", "open_by_handle_at", "userfaultfd",
             "setns", "vsock", "personality_bsd"]
    assert calls(pyctr, probe, names) == dict.fromkeys(names, errno.EPERM)
    unconfined = calls(pyctr, probe, names, *UNCONFINED)
    # kexec_load: the kernel may say EPERM itself (no CAP_SYS_BOOT) or ENOSYS.
    del unconfined["kexec_load"]
    assert errno.EPERM not in unconfined.values(), unconfined


@root_only
def test_userns_container_filtered_too(pyctr, probe):
    """--userns makes container root unprivileged on the host; the filter
    holds in there all the same (no nested user namespace, no keyring)."""
    names = ["keyctl", "add_key", "mount", "unshare_user", "clone_user", "bpf", "userfaultfd"]
    assert calls(pyctr, probe, names, "--userns") == dict.fromkeys(names, errno.EPERM)
    assert calls(pyctr, probe, ["fork", "inet"], "--userns") == {"fork": 0, "inet": 0}


@root_only
def test_clone3_fails_with_enosys_so_libc_falls_back(pyctr, probe):
    result = calls(pyctr, probe, ["clone3", "fork"])
    assert result == {"clone3": errno.ENOSYS, "fork": 0}


@root_only
def test_ordinary_calls_still_work(pyctr, probe):
    names = ["fork", "inet", "personality_linux", "ptrace"]
    assert calls(pyctr, probe, names) == dict.fromkeys(names, 0)
    p = pyctr("run", "--rm", "busybox", "sh", "-c",
              "ping -c 1 -W 5 127.0.0.1 >/dev/null && echo pinged; "
              "mkdir /d && echo x > /d/f && chown 1:1 /d/f && ls -l /d/f && rm -r /d",
              check=True)
    assert "pinged" in p.stdout and " 1 " in p.stdout


@root_only
def test_32_bit_abi_filtered_too(pyctr, probe):
    """The filter covers every ABI of the machine: a syscall made through
    int 0x80 meets the same rules (mount is i386's 21; getpid its 20)."""
    if os.uname().machine != "x86_64":
        pytest.skip("x86_64 only")
    run = lambda *flags: pyctr("run", "--rm", *flags, *mount(probe), "busybox", "sh", "-c",
                               "/probe/probe int80 20; /probe/probe int80 21")
    p = run()
    if p.returncode != 0 or p.stdout.split()[:2] != ["int80", "0"]:
        pytest.skip("no 32-bit emulation in this kernel")
    assert p.stdout.split() == ["int80", "0", "int80", str(errno.EPERM)]
    assert run(*UNCONFINED).stdout.split() == ["int80", "0", "int80", str(errno.EFAULT)]


@root_only
def test_filter_on_for_workload_and_exec_off_when_unconfined(pyctr):
    status = "grep '^Seccomp:' /proc/self/status"
    assert "Seccomp:\t2" in pyctr("run", "--rm", "busybox", "sh", "-c", status,
                                  check=True).stdout
    assert "Seccomp:\t0" in pyctr("run", "--rm", *UNCONFINED, "busybox", "sh", "-c", status,
                                  check=True).stdout
    pyctr("run", "-d", "--name", "f", "busybox", "sleep", "30", check=True)
    assert "Seccomp:\t2" in pyctr("exec", "f", "sh", "-c", status, check=True).stdout


@root_only
def test_exec_runs_under_the_containers_profile(pyctr, probe):
    pyctr("run", "-d", "--name", "d", *mount(probe), "busybox", "sleep", "30", check=True)
    pyctr("run", "-d", "--name", "u", *UNCONFINED, *mount(probe), "busybox", "sleep", "30",
          check=True)
    inside = lambda name: parse(pyctr("exec", name, "/probe/probe", "try", "mount",
                                      check=True).stdout)
    assert inside("d") == {"mount": errno.EPERM}
    assert inside("u") == {"mount": errno.EFAULT}


# -- profiles from a file and from bundles --------------------------------------
DENY_MKDIR = {"defaultAction": "SCMP_ACT_ALLOW",
              "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
              "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                            "errnoRet": errno.EACCES}]}


@root_only
def test_security_opt_file(pyctr, work):
    path = os.path.join(work, "profile.json")
    with open(path, "w") as f:
        json.dump(DENY_MKDIR, f)
    p = pyctr("run", "--rm", "--security-opt", "seccomp=" + path, "busybox", "sh", "-c",
              "echo ok; mkdir /x")
    assert p.stdout.strip() == "ok"
    assert p.returncode != 0 and "Permission denied" in p.stderr
    # Everything else is allowed by this profile: mount meets only the kernel.
    p = pyctr("run", "--rm", "--security-opt", "seccomp=" + path, "--cap-add", "sys_admin",
              "busybox", "sh", "-c", "mount -t tmpfs t /tmp && echo mounted", check=True)
    assert "mounted" in p.stdout


def bundle(pyctr, work, seccomp_json, no_new_privileges=True):
    """`pyctr run --bundle` of busybox (its image, read-only) making a
    directory in a tmpfs, under `seccomp_json` as linux.seccomp."""
    config = json.loads(pyctr("spec", "busybox", "sh", "-c", "mkdir /tmp/y && echo made",
                              check=True).stdout)
    config["root"]["readonly"] = True
    config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"})
    config["process"]["noNewPrivileges"] = no_new_privileges
    config["linux"].pop("seccomp", None)
    if seccomp_json is not None:
        config["linux"]["seccomp"] = seccomp_json
    with open(os.path.join(work, "config.json"), "w") as f:
        json.dump(config, f)
    return pyctr("run", "--rm", "--bundle", work)


@root_only
@pytest.mark.parametrize("no_new_privileges", [True, False])
def test_bundle_linux_seccomp_honoured(pyctr, work, no_new_privileges):
    """Without no_new_privileges the filter is loaded before the capabilities
    drop (the kernel wants CAP_SYS_ADMIN then); it holds all the same."""
    p = bundle(pyctr, work, DENY_MKDIR, no_new_privileges)
    assert p.returncode != 0 and "made" not in p.stdout
    assert "Permission denied" in p.stderr
    assert bundle(pyctr, work, None, no_new_privileges).stdout.strip() == "made"


@root_only
def test_spec_shows_the_default_profile(pyctr):
    config = json.loads(pyctr("spec", "busybox", "true", check=True).stdout)
    profile = config["linux"]["seccomp"]
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    allowed = {n for r in profile["syscalls"] if r["action"] == "SCMP_ACT_ALLOW"
               for n in r["names"]}
    assert "read" in allowed and "mount" not in allowed and "keyctl" not in allowed
    config = json.loads(pyctr("spec", *UNCONFINED, "busybox", "true", check=True).stdout)
    assert "seccomp" not in config["linux"]


BAD_PROFILES = [
    ("not json", "{", "invalid JSON"),
    ("notify", dict(DENY_MKDIR, defaultAction="SCMP_ACT_NOTIFY"), "SCMP_ACT_NOTIFY"),
    ("listener", dict(DENY_MKDIR, listenerPath="/run/x.sock"), "listenerPath"),
    ("unknown action", dict(DENY_MKDIR, defaultAction="SCMP_ACT_MAYBE"), "unknown action"),
    ("flags", dict(DENY_MKDIR, flags=["SECCOMP_FILTER_FLAG_LOG"]), "flags"),
    ("arch", dict(DENY_MKDIR, architectures=["SCMP_ARCH_Z80"]), "SCMP_ARCH_Z80"),
    ("op", dict(DENY_MKDIR, syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                       "args": [{"index": 0, "value": 1, "op": "LIKE"}]}]),
     "unknown op"),
    ("index", dict(DENY_MKDIR, syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                                          "args": [{"index": 6, "value": 1,
                                                    "op": "SCMP_CMP_EQ"}]}]), "0..5"),
    ("names", dict(DENY_MKDIR, syscalls=[{"names": "read", "action": "SCMP_ACT_ERRNO"}]),
     "names"),
    ("top", [1, 2], "JSON object"),
]


@root_only
@pytest.mark.parametrize("label,content,said", BAD_PROFILES, ids=[b[0] for b in BAD_PROFILES])
def test_bad_profile_is_one_line_and_leaves_nothing(pyctr, work, label, content, said):
    path = os.path.join(work, "bad.json")
    with open(path, "w") as f:
        f.write(content if isinstance(content, str) else json.dumps(content))
    p = pyctr("run", "--rm", "--security-opt", "seccomp=" + path, "busybox", "true")
    assert p.returncode == 125
    assert said in one_line_error(p)
    assert pyctr.containers() == [] and host_leftovers(pyctr) == []
    p = bundle(pyctr, work, json.loads(json.dumps(content)) if label != "not json" else 7)
    assert p.returncode == 125 and "linux.seccomp" in one_line_error(p)
    assert pyctr.containers() == []


@root_only
def test_missing_profile_and_unknown_security_opt(pyctr):
    p = pyctr("run", "--rm", "--security-opt", "seccomp=/nonexistent.json", "busybox", "true")
    assert p.returncode == 125 and "No such file" in one_line_error(p)
    p = pyctr("run", "--rm", "--security-opt", "apparmor=unconfined", "busybox", "true")
    assert p.returncode == 125 and "unsupported --security-opt" in one_line_error(p)


# -- the default profile as data (no root) ----------------------------------------
def allowed(profile):
    return {n for r in profile.syscalls if r.action == "SCMP_ACT_ALLOW" and not r.args
            for n in r.names}


def test_default_profile_follows_capabilities():
    plain = seccomp.default_profile(spec.DEFAULT_CAPABILITIES, "x86_64", (6, 1))
    admin = seccomp.default_profile(spec.DEFAULT_CAPABILITIES + ["sys_admin"], "x86_64", (6, 1))
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "clone"):
        assert name not in allowed(plain) and name in allowed(admin), name
    for name in ("keyctl", "add_key", "request_key", "kexec_load", "userfaultfd"):
        assert name not in allowed(admin), name  # no capability grants these
    assert "chroot" in allowed(plain)  # sys_chroot is a default capability
    assert "ptrace" in allowed(plain)  # kernel >= 4.8
    assert "ptrace" not in allowed(seccomp.default_profile([], "x86_64", (4, 4)))
    clone = [r for r in plain.syscalls if r.names == ["clone"]]
    assert [(a.index, a.value, a.value_two, a.op) for a in clone[0].args] == \
        [(0, 0x7E020000, 0, "SCMP_CMP_MASKED_EQ")]
    clone3 = [r for r in plain.syscalls if r.names == ["clone3"]][0]
    assert (clone3.action, clone3.errno) == ("SCMP_ACT_ERRNO", errno.ENOSYS)


def test_default_profile_follows_the_machine():
    x86 = seccomp.default_profile([], "x86_64", (6, 1))
    assert x86.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert "arch_prctl" in allowed(x86)
    arm = seccomp.default_profile([], "aarch64", (6, 1))
    assert arm.architectures == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in allowed(arm) and "set_tls" in allowed(arm)
    s390 = [r for r in seccomp.default_profile([], "s390x", (6, 1)).syscalls
            if r.names == ["clone"]]
    assert s390[0].args[0].index == 1  # s390 passes clone's flags second


def test_docker_format_includes_excludes():
    profile = seccomp.from_oci({
        "defaultAction": "SCMP_ACT_ERRNO",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                     "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
             "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW",
             "includes": {"arches": ["amd64"], "minKernel": "4.8"}}]},
        "test", ["chown"], machine="x86_64", kernel=(6, 1))
    assert profile.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert [r.names for r in profile.syscalls] == [["clone"], ["arch_prctl"]]


def test_compiled_program_is_bpf():
    profile = seccomp.compile_profile(seccomp.default_profile(spec.DEFAULT_CAPABILITIES),
                                      "default")
    assert len(profile.program) % 8 == 0 and len(profile.program) > 8 * 100
    same = seccomp.compile_profile(seccomp.default_profile(spec.DEFAULT_CAPABILITIES),
                                   "default")
    assert same.program == profile.program  # a cache key may rely on it


def test_cache_in_state_root(tmp_path):
    from pyctr.paths import Paths
    paths = Paths(root=str(tmp_path))
    first = seccomp.for_run(paths, [], spec.DEFAULT_CAPABILITIES)
    cached = os.listdir(tmp_path / "seccomp")
    assert len(cached) == 2  # the program, and the default resolved with it
    again = seccomp.for_run(paths, [], spec.DEFAULT_CAPABILITIES)
    assert again.program == first.program
    other = seccomp.for_run(paths, [], spec.DEFAULT_CAPABILITIES + ["sys_admin"])
    assert other.program != first.program and len(os.listdir(tmp_path / "seccomp")) == 4
    shutil.rmtree(tmp_path / "seccomp")



LOADS_LIBSECCOMP = r"""
import sys
from pyctr import seccomp, spec
from pyctr.paths import Paths
from pyctr._shim import lib  # the shim loaded, as for any run
def mapped():
    with open("/proc/self/maps") as f:
        return "libseccomp" in f.read()
seccomp.for_run(Paths(root=sys.argv[1]), [], spec.DEFAULT_CAPABILITIES)
print(mapped())
seccomp.compile_profile(seccomp.default_profile(spec.DEFAULT_CAPABILITIES), "default")
print(mapped())
"""


def test_a_start_with_its_profile_cached_does_not_load_libseccomp(tmp_path):
    """libseccomp is loaded by the first filter built in a process, not with
    the shim: every run and exec whose profile is in the cache is spared it."""
    import subprocess
    import sys
    from pyctr.paths import Paths
    seccomp.for_run(Paths(root=str(tmp_path)), [], spec.DEFAULT_CAPABILITIES)  # the cache
    out = subprocess.run([sys.executable, "-c", LOADS_LIBSECCOMP, str(tmp_path)], check=True,
                         capture_output=True, text=True, timeout=60).stdout.split()
    assert out == ["False", "True"]


def test_a_syscall_name_resolves_before_any_filter_is_built():
    """Resolving a name takes no filter, so it may be a process's first use
    of libseccomp: it loads the library too (a number, not a crash)."""
    import subprocess
    import sys
    code = ("from pyctr._shim import lib; "
            "print(lib.pyctr_seccomp_syscall(b'read'), lib.pyctr_seccomp_syscall(b'no_such'))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    read, unknown = map(int, p.stdout.split())
    assert read >= 0 and unknown == -1


def test_the_default_from_the_cache_is_the_default_resolved_anew(tmp_path):
    """A plain run takes the default from its cache entry, not resolving
    seccomp.default again: the same rules and program, for each capability set."""
    from pyctr.paths import Paths
    paths = Paths(root=str(tmp_path))
    for caps in (spec.DEFAULT_CAPABILITIES, spec.DEFAULT_CAPABILITIES + ["sys_admin"], []):
        fresh = seccomp.compile_profile(seccomp.default_profile(caps), "default")
        seccomp.for_run(paths, [], caps)
        entry = seccomp._default_entry_path(paths, caps)
        assert os.path.exists(entry)
        hit = seccomp._read_default_entry(entry)
        assert hit == fresh
        assert seccomp.for_run(paths, [], caps) == fresh


def test_a_changed_default_file_or_a_broken_entry_is_never_used(tmp_path, monkeypatch):
    """The entry's key is what the resolution depends on: an edited
    seccomp.default resolves anew; an entry that is not one pyctr wrote is
    made anew, never loaded."""
    from pyctr.paths import Paths
    paths = Paths(root=str(tmp_path))
    default = tmp_path / "seccomp.default"
    shutil.copy(seccomp.DEFAULT_FILE, default)
    monkeypatch.setattr(seccomp, "DEFAULT_FILE", str(default))
    caps = spec.DEFAULT_CAPABILITIES
    before = seccomp.for_run(paths, [], caps)
    assert "mkdir" in [n for r in before.syscalls for n in r.names]
    text = default.read_text()
    default.write_text(text.replace(" mkdir ", " ", 1).replace(" mkdir\n", "\n", 1))
    after = seccomp.for_run(paths, [], caps)
    assert "mkdir" not in [n for r in after.syscalls for n in r.names]
    assert after.program != before.program
    entry = seccomp._default_entry_path(paths, caps)
    for junk in (b"", b"\0" * 64, b"not marshal", __import__("marshal").dumps((1, 2, 3))):
        with open(entry, "wb") as f:
            f.write(junk)
        assert seccomp._read_default_entry(entry) is None
        assert seccomp.for_run(paths, [], caps) == after


def test_a_bundles_profile_is_cached_too(tmp_path):
    """An engine's bundles carry the same profile at every create."""
    from pyctr.paths import Paths
    paths = Paths(root=str(tmp_path))
    linux = {"seccomp": DENY_MKDIR}
    first = seccomp.for_bundle(linux, spec.DEFAULT_CAPABILITIES, paths)
    assert len(os.listdir(tmp_path / "seccomp")) == 1
    again = seccomp.for_bundle(linux, spec.DEFAULT_CAPABILITIES, paths)
    assert again.program == first.program
    assert seccomp.for_bundle(linux, spec.DEFAULT_CAPABILITIES).program == first.program


def test_gc_keeps_only_the_default_profiles_compiled_entry(pyctr):
    """An entry is kept by profile: one no longer used (an older default,
    another capability set's) stays until `pyctr gc`, which keeps the one
    every plain `pyctr run` uses."""
    for _ in range(2):  # the first start makes the state root the cache is kept in
        pyctr("run", "--rm", "busybox", "true", check=True)
    cache = os.path.join(pyctr.root, "seccomp")
    default = sorted(os.listdir(cache))
    assert len(default) == 2  # its program and its resolved entry
    pyctr("run", "--rm", "--cap-add", "sys_admin", "busybox", "true", check=True)
    with open(os.path.join(cache, "0" * 40 + ".bpf"), "wb") as f:
        f.write(b"\0" * 8)  # what an older profile left
    assert len(os.listdir(cache)) == 5
    gone = sorted(set(os.listdir(cache)) - set(default))
    p = pyctr("gc", check=True)
    assert sorted(os.listdir(cache)) == default
    # and says so, each entry once, as it says every removal
    assert [line for line in p.stdout.splitlines() if "seccomp" in line] == [
        "removed compiled seccomp profile %s" % os.path.join(cache, name) for name in gone]
    assert pyctr("gc", check=True).stdout == ""  # nothing more to remove, nothing said
    p = pyctr("run", "--rm", "--cap-add", "sys_admin", "busybox", "sh", "-c",
              "grep Seccomp: /proc/self/status", check=True)
    assert p.stdout.split() == ["Seccomp:", "2"] and len(os.listdir(cache)) == 4


def test_security_opt_values():
    from pyctr.paths import Paths
    assert seccomp.for_run(Paths(root="/nonexistent"), ["seccomp=unconfined"], []) is None
    with pytest.raises(PyctrError, match="unsupported --security-opt"):
        seccomp.for_run(Paths(root="/nonexistent"), ["label=disable"], [])
    assert not os.path.exists("/nonexistent")


# -- where the child loads the filter (recording syscalls, no root) ---------------
def test_filter_goes_with_execve_or_before_the_capabilities_drop():
    from fakes import RecordingSyscalls
    from pyctr.child import exec_workload, prepare_process
    profile = seccomp.Seccomp(default_action="SCMP_ACT_ALLOW", program=b"\0" * 8)
    for no_new_privileges in (True, False):
        proc = spec.Process(args=["/bin/true"], no_new_privileges=no_new_privileges)
        fake = RecordingSyscalls()
        prepare_process(proc, fake, seccomp=profile)
        exec_workload(proc, ["PATH=/bin"], fake, channel=None, seccomp=profile)
        names = fake.names()
        assert names[0] == "join_session_keyring"  # before the ids change
        execve = fake.calls[-1]
        assert execve[:2] == ("execve", "/bin/true")
        if no_new_privileges:
            # In the same C call as execve: nothing of pyctr runs under it.
            assert "seccomp_load" not in names and execve[4] == profile.program
        else:
            # The kernel then wants CAP_SYS_ADMIN: before the capabilities go.
            load = names.index("seccomp_load")
            assert names[load + 1] == "drop_bounding" and execve[4] == b""
            # The descriptors are marked before: a profile may deny close_range.
            assert "close_range" in names[:load] and "close_range" not in names[load:]


def test_a_default_whose_inputs_cannot_be_told_is_resolved_and_not_kept(tmp_path, monkeypatch):
    """The entry's key stats the module; where that fails, a run still gets
    the default profile, resolved anew, and no entry is kept for it."""
    from pyctr.paths import Paths
    paths = Paths(root=str(tmp_path))
    monkeypatch.setattr(seccomp, "__file__", str(tmp_path / "gone" / "seccomp.py"))
    profile = seccomp.for_run(paths, [], spec.DEFAULT_CAPABILITIES)
    assert profile == seccomp.compile_profile(
        seccomp.default_profile(spec.DEFAULT_CAPABILITIES), "default")
    assert [n for n in os.listdir(tmp_path / "seccomp") if n.startswith("default-")] == []
