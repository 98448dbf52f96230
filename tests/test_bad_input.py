"""Every bad input is one line: generated options, TOML job files,
config.json files and --net values thrown at pyctr's parsers (many examples,
in process) and at the CLI (a handful, end to end). pyctr must either
accept the input or refuse it with one PyctrError line, exit 125/126/127,
never a traceback, and leave nothing behind.

Hypothesis runs derandomized with no example database, so every run tries
the same inputs (CI is not flaky)."""
import json
import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyctr import network, oci, specgen
from pyctr.errors import PyctrError
from pyctr.paths import Paths

from conftest import host_leftovers, root_only

SETTINGS = dict(derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
IN_PROCESS = settings(max_examples=300, **SETTINGS)
END_TO_END = settings(max_examples=12, **SETTINGS)

# -- what gets thrown ------------------------------------------------------------
# Text that means something to some parser: paths that leave a root, names
# that are almost capabilities or signals, numbers just out of range, bytes
# no kernel interface takes.
TRICKY = ["", "/", "..", "/..", "/a/../..", "//x//", "/etc", "/proc/self/root", "a:b",
          "a:/b", "/tmp:/", "/tmp:/x/../y", "/tmp:/x:ro", "/tmp:/x:rw:z", "/x:mode=1777",
          "ALL", "all", "CAP_FLY", "NET_RAW", "cap_chown", "-1", "0", "4294967295",
          "4294967294", "65536", "1000:1000", "root", "nobody", "x:y:z", "\x00", "a\x00b",
          "\n", "é", "\udcff", "\u0663", "veth:br0", "macvlan:eth1:vepa", "container:",
          "host", "none", "private", "container:nope", "KEY=VALUE", "=x", "A", "9000",
          "10.0.0.1/33", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "a" * 70]
text = st.one_of(st.sampled_from(TRICKY), st.text(max_size=12))
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2 ** 40, 2 ** 40),
                   st.floats(allow_nan=False), text)
value = st.one_of(scalar, st.lists(scalar, max_size=3), st.lists(text, max_size=3),
                  st.dictionaries(st.sampled_from(["A", "B", ""]), scalar, max_size=2))

OPTION_KEYS = sorted(specgen.OPTION_TYPES)
# Mostly the type a key wants, with tricky content; sometimes anything.
TYPED = {specgen.STR: text, specgen.STRINGS: st.lists(text, max_size=3),
         specgen.BOOL: st.booleans(), specgen.INT: st.integers(-2 ** 40, 2 ** 40),
         specgen.USER: st.one_of(text, st.integers(-2, 2 ** 33))}


def options(keys, max_size):
    def one(key):
        typed = TYPED.get(specgen.OPTION_TYPES.get(key), value)
        return st.integers(0, 9).flatmap(lambda n: value if n == 0 else typed)

    def values(chosen):
        return st.fixed_dictionaries({k: one(k) for k in chosen})
    return st.lists(st.sampled_from(keys), unique=True, max_size=max_size).flatmap(values)


@pytest.fixture
def rootdir(tmp_path):
    for d in ("bin", "etc", "tmp"):
        (tmp_path / "root" / d).mkdir(parents=True)
    (tmp_path / "root" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                                      "app:x:1000:1001::/:/\nbad:x:q:r::/:/\n")
    (tmp_path / "root" / "etc" / "group").write_text("app:x:1001:\n")
    return str(tmp_path / "root")


@pytest.fixture
def world(tmp_path):
    return Paths(root=str(tmp_path / "state"), config=str(tmp_path / "config"),
                 data=str(tmp_path / "data"))


def toml_value(v):
    """TOML text for a generated value (the `toml` writer fails on some
    strings; TOML's basic strings take JSON's escapes)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[%s]" % ", ".join(toml_value(x) for x in v if x is not None)
    return "{%s}" % ", ".join("%s = %s" % (json.dumps(k), toml_value(x))
                              for k, x in v.items() if x is not None)


def toml_document(table):
    return "".join("%s = %s\n" % (json.dumps(k), toml_value(v))
                   for k, v in table.items() if v is not None).encode("utf-8", "surrogatepass")


def refused_in_one_line(call):
    """Run `call`; a refusal must be one PyctrError line. Returns the error."""
    try:
        call()
    except PyctrError as e:
        assert str(e) and e.exit_code in (125, 126, 127)
        return e
    return None


# -- in process, many examples ---------------------------------------------------
@IN_PROCESS
@given(opts=options(OPTION_KEYS, 6))
def test_generated_options_never_raise_anything_else(rootdir, world, opts):
    opts.setdefault("target", rootdir)
    opts.setdefault("command", ["true"])
    refused_in_one_line(lambda: specgen.build(world, opts))


@IN_PROCESS
@given(opts=options(OPTION_KEYS + ["image", "rm", "network", "bogus"], 5),
       raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_generated_job_files_never_raise_anything_else(rootdir, world, tmp_path, opts, raw):
    job = tmp_path / "job.toml"
    job.write_bytes(toml_document({"rootfs": rootdir, **opts}) if raw is None else raw)

    def load_and_build():
        specgen.build(world, specgen.load_toml(str(job)))
    refused_in_one_line(load_and_build)


def test_known_bad_job_files(rootdir, world, tmp_path):
    """The cases that used to end in a traceback."""
    job = tmp_path / "job.toml"
    for body, words in ((b'rootfs = "\xff"\n', "not UTF-8"),
                        (b"env = 3\n", "env must be a list of strings"),
                        (b'volumes = "x"\n', "volumes must be a list of strings"),
                        (b'mtu = "a"\n', "mtu must be a whole number"),
                        (b"rm = \"no\"\n", "remove must be true or false"),
                        (b"command = 'sh -c \"x'\n", "command: No closing quotation")):
        job.write_bytes(body)
        with pytest.raises(PyctrError, match=words):
            specgen.build(world, {"target": rootdir, **specgen.load_toml(str(job))})


def test_non_utf8_env_file(rootdir, world, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_bytes(b"A=\xff\n")
    with pytest.raises(PyctrError, match="not UTF-8"):
        specgen.build(world, {"target": rootdir, "command": ["true"],
                              "env_file": [str(env_file)]})


def test_mpi_launcher_environment(rootdir, world, tmp_path, monkeypatch):
    """Open MPI sets no PMI_FD; hydra's must be open and a socket or pipe."""
    def build():
        return specgen.build(world, {"target": rootdir, "command": ["true"]})
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    monkeypatch.delenv("PMI_FD", raising=False)
    spec = build()
    assert spec.process.pass_fds == () and "OMPI_COMM_WORLD_SIZE=2" in spec.process.env
    monkeypatch.setenv("PMI_FD", "\u0663")  # a digit, but not an fd number
    assert build().process.pass_fds == ()
    read, write = os.pipe()
    directory = os.open(str(tmp_path), os.O_RDONLY)
    try:
        monkeypatch.setenv("PMI_FD", str(read))
        assert build().process.pass_fds == (read,)
        monkeypatch.setenv("PMI_FD", str(directory))
        with pytest.raises(PyctrError, match="PMI_FD %d is a directory" % directory):
            build()
    finally:
        for fd in (read, write, directory):
            os.close(fd)
    with pytest.raises(PyctrError, match="PMI_FD %d is not open" % directory):
        build()


# config.json: a valid config with one field replaced by something else.
CONFIG_FIELDS = [
    (), ("process",), ("process", "args"), ("process", "env"), ("process", "cwd"),
    ("process", "user"), ("process", "user", "uid"), ("process", "user", "gid"),
    ("process", "user", "additionalGids"), ("process", "capabilities"),
    ("process", "capabilities", "bounding"), ("process", "capabilities", "effective"),
    ("process", "capabilities", "inheritable"), ("process", "capabilities", "ambient"),
    ("process", "noNewPrivileges"), ("root",), ("root", "path"), ("root", "readonly"),
    ("hostname",), ("mounts",), ("mounts", 0), ("mounts", 0, "destination"),
    ("mounts", 0, "options"), ("mounts", 0, "type"), ("linux",), ("linux", "namespaces"),
    ("linux", "namespaces", 0), ("linux", "namespaces", 0, "type"),
    ("linux", "namespaces", 0, "path"), ("linux", "uidMappings"),
    ("linux", "maskedPaths"), ("annotations",),
]


def mutated(config, field, new):
    config = json.loads(json.dumps(config))
    if not field:
        return new
    node = config
    for key in field[:-1]:
        node = node[key]
    node[field[-1]] = new
    return config


@pytest.fixture
def valid_config(rootdir, world):
    spec = specgen.build(world, {"target": rootdir, "command": ["true"], "userns": True})
    return spec.to_oci()


@IN_PROCESS
@given(field=st.sampled_from(CONFIG_FIELDS), new=value)
def test_generated_configs_never_raise_anything_else(valid_config, tmp_path, field, new):
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(mutated(valid_config, field, new)))
    refused_in_one_line(lambda: oci.load_bundle(str(bundle)))


def test_config_without_its_own_mount_namespace_is_refused(valid_config, tmp_path):
    """Without a mount namespace of its own pyctr would build the container's
    root (and pivot_root) in the host's: never."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    namespaces = valid_config["linux"]["namespaces"]
    for changed in ([n for n in namespaces if n["type"] != "mount"],
                    [n if n["type"] != "mount" else dict(n, path="/proc/1/ns/mnt")
                     for n in namespaces]):
        config = mutated(valid_config, ("linux", "namespaces"), changed)
        (bundle / "config.json").write_text(json.dumps(config))
        with pytest.raises(PyctrError, match="mount namespace"):
            oci.load_bundle(str(bundle))


@IN_PROCESS
@given(path=st.lists(st.sampled_from(["a", "..", ".", "", "b", "/", "x\x00"]), max_size=6)
       .map("/".join))
def test_destinations_are_clean_paths_inside(path):
    """A destination that passes is absolute, without "." or ".." or empty
    components, not the root itself, and passes again unchanged."""
    from pyctr import inroot
    error = refused_in_one_line(lambda: inroot.destination(path, "test"))
    if error is None:
        clean = inroot.destination(path, "test")
        parts = clean.split("/")[1:]
        assert clean.startswith("/") and parts and not set(parts) & {"", ".", ".."}
        assert inroot.destination(clean, "test") == clean


# A root full of symlinks that point out of it, and paths that walk them.
LINK_TARGETS = ["/", "..", "../..", "../../outside", "/a", "a/../..", "/proc/self/root",
                "/proc/self/cwd", "b", "c/..", "x"]
COMPONENTS = ["a", "b", "c", "..", ".", "x", "new"]


@IN_PROCESS
@given(links=st.dictionaries(st.sampled_from(["a", "b", "c", "a/l", "x"]),
                             st.sampled_from(LINK_TARGETS + ["<outside>"]), max_size=4),
       paths=st.lists(st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=5)
                      .map(lambda parts: "/" + "/".join(parts)), min_size=1, max_size=4))
def test_shim_walks_never_leave_the_root(tmp_path_factory, links, paths):
    """mkdir_in_root, touch_in_root and open_in_root on any path through
    any symlinks: nothing is made, and nothing opened, outside the root."""
    from pyctr.syscalls import Syscalls
    syscall = Syscalls()
    base = tmp_path_factory.mktemp("walk")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    for name, target in sorted(links.items()):
        link = root / name
        if link.parent.exists() and not link.parent.is_symlink() and not link.exists():
            os.symlink(str(outside) if target == "<outside>" else target, link)
    for path in paths:
        for call in (syscall.mkdir_in_root, syscall.touch_in_root):
            try:
                call(str(root), path)
            except OSError:
                pass
        try:
            fd = syscall.open_in_root(str(root), path)
        except OSError:
            continue
        try:
            where = os.readlink("/proc/self/fd/%d" % fd)
        finally:
            os.close(fd)
        assert where == str(root) or where.startswith(str(root) + "/"), (path, where)
    assert sorted(os.listdir(base)) == ["outside", "root"] and os.listdir(outside) == []


@IN_PROCESS
@given(existing=st.sets(st.sampled_from(["a", "a/b", "b", "a/b/c"])),
       parts=st.lists(st.sampled_from(["a", "b", "c", "..", ".", ""]), min_size=1, max_size=6),
       absolute=st.booleans())
def test_shim_mkdir_makes_each_missing_component_in_the_root_as_it_resolves(
        tmp_path_factory, existing, parts, absolute):
    """Without symlinks, mkdir_in_root makes what `mkdir -p` would in a
    chroot (".." stops at the root), whichever ancestors were there
    before."""
    from pyctr.syscalls import Syscalls
    root = tmp_path_factory.mktemp("mkdir")
    for d in sorted(existing):
        os.makedirs(root / d, exist_ok=True)
    path = ("/" if absolute else "") + "/".join(parts)
    want, made = [], set()
    for part in parts:  # the walk a chroot's mkdir -p takes
        if part == "..":
            want = want[:-1]
        elif part not in (".", ""):
            want.append(part)
            made.add("/".join(want))
    syscall = Syscalls()
    syscall.mkdir_in_root(str(root), path)
    fd = syscall.open_in_root(str(root), path or "/", os.O_PATH | os.O_DIRECTORY)
    try:
        where = os.readlink("/proc/self/fd/%d" % fd)
    finally:
        os.close(fd)
    assert where == os.path.join(str(root), *want) if want else where == str(root)
    dirs = {os.path.relpath(os.path.join(top, d), root)
            for top, ds, _ in os.walk(root) for d in ds}
    before = {d.rsplit("/", n)[0] for d in existing for n in range(d.count("/") + 1)}
    assert dirs == made | before


NET_WORDS = ["veth", "macvlan", "container", "none", "host", "br0", "eth1", "lan", "", ":",
             ",", "=", "ip", "mac", "mtu", "mode", "route", "source_macs", "host_shim",
             "10.1.2.3/24", "default@10.1.2.1", "02:00:00:00:00:01", "9000", "|", "@", "yes",
             "private", "vepa", "bridge", "passthru", "source", "/", "..", "a" * 16]


@IN_PROCESS
@given(words=st.lists(st.one_of(st.sampled_from(NET_WORDS), st.text(max_size=6)), max_size=8))
def test_generated_net_values_never_raise_anything_else(words):
    refused_in_one_line(lambda: network.parse("".join(words)))


# -- end to end, a handful -------------------------------------------------------
def one_pyctr_line(p):
    assert "Traceback" not in p.stderr, p.stderr
    if p.returncode == 0:
        return
    assert p.returncode in (125, 126, 127), (p.returncode, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyctr: "), p.stderr


def nothing_left(pyctr):
    assert pyctr.containers() == [] and host_leftovers(pyctr) == []


# Only what cannot reach past the container: no network that would create
# devices on the host, no detached containers.
CLI_OPTIONS = st.sampled_from([
    ["--name"], ["--hostname"], ["-e"], ["-w"], ["-u"], ["-v"], ["--tmpfs"], ["--cap-add"],
    ["--cap-drop"], ["--preserve-fds"], ["--pid"], ["--ipc"], ["--uts"], ["--mtu"],
    ["--ip"], ["--mac"], ["--read-only"], ["--init"], ["--userns"], ["--net"],
])
SAFE_NET = ["none", "host", "veth:", "macvlan:", "container:", "veth:a/b", "lan,mtu=1",
            "veth:br0,mtu=x", "none,ip=1"]


@root_only
@END_TO_END
@given(picks=st.lists(st.tuples(CLI_OPTIONS, st.sampled_from(TRICKY)), max_size=4))
def test_generated_run_options_end_to_end(pyctr, picks):
    argv = []
    for (flag,), arg in picks:
        if flag in ("--read-only", "--init", "--userns"):
            argv.append(flag)
        elif flag == "--net":
            argv += [flag, SAFE_NET[len(arg) % len(SAFE_NET)]]
        else:
            argv.append("%s=%s" % (flag, arg.replace("\x00", "")))
    for verb in ("spec", "run"):
        extra = ["--rm"] if verb == "run" else []
        one_pyctr_line(pyctr(verb, *extra, *argv, "busybox", "true", input=""))
        nothing_left(pyctr)


@root_only
@END_TO_END
@given(opts=options(["env", "volumes", "mtu", "user", "cap_add", "workdir", "hostname",
                     "tmpfs", "rm"], 3),
       raw=st.one_of(st.none(), st.binary(max_size=20)))
def test_generated_job_files_end_to_end(pyctr, work, opts, raw):
    job = os.path.join(work, "job.toml")
    with open(job, "wb") as f:
        f.write(toml_document({"image": "busybox", "command": ["true"], "rm": True, **opts})
                if raw is None else raw)
    one_pyctr_line(pyctr("run", "--rm", "-f", job, input=""))
    nothing_left(pyctr)


@root_only
@END_TO_END
@given(field=st.sampled_from([f for f in CONFIG_FIELDS if f[:1] not in (("root",), ("linux",))
                              and f not in ((), ("process",))]),
       new=value)
def test_generated_configs_end_to_end(pyctr, rootfs, work, field, new):
    # The root and the namespaces stay as generated by pyctr spec: the
    # in-process test covers them; here the container may really start.
    config = json.loads(pyctr("spec", rootfs, "true", check=True).stdout)
    bundle = os.path.join(work, "bundle")
    os.makedirs(bundle, exist_ok=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        f.write(json.dumps(mutated(config, field, new)))
    one_pyctr_line(pyctr("run", "--rm", "--bundle", bundle, input=""))
    nothing_left(pyctr)


@root_only
@END_TO_END
@given(words=st.lists(st.sampled_from(NET_WORDS), min_size=1, max_size=6))
def test_generated_net_values_end_to_end(pyctr, words):
    # `spec` parses --net as `run` does but creates no device on the host.
    one_pyctr_line(pyctr("spec", "--net", "".join(words), "busybox", "true"))
    nothing_left(pyctr)


@root_only
def test_kill_and_exec_bad_values_are_one_line(pyctr):
    pyctr("run", "-d", "--name", "box", "busybox", "sleep", "30", check=True)
    for argv, words in ((("kill", "-s", "99999", "box"), "unknown signal 99999"),
                        (("kill", "-s", "NOPE", "box"), "unknown signal"),
                        (("exec", "-u", "nobody-here", "box", "true"), "unknown user"),
                        (("exec", "-u", "4294967295", "box", "true"), "out of range")):
        p = pyctr(*argv)
        one_pyctr_line(p)
        assert p.returncode == 125 and words in p.stderr, p.stderr
    # a name from the container's own /etc/passwd works
    p = pyctr("exec", "-u", "nobody", "box", "id", "-u")
    assert p.returncode == 0 and p.stdout.strip() == "65534", p.stderr
    pyctr("rm", "-f", "box", check=True)
