"""The escape suite: what the container's root (or an image made by one)
tries in order to reach the host through pyctr, each attempt next to a test
that the allowed thing still works. Real containers, as root."""
import json
import os
import shlex
import shutil
import socket
import subprocess

import pytest

from conftest import Pyctr, one_line_error, root_only

pytestmark = root_only

NET_RAW = 1 << 13
# Each attempt is made by a default container and by one in a user namespace.
both = pytest.mark.parametrize("flags", [[], ["--userns"]], ids=["default", "userns"])


def run(pyctr, *args, **kw):
    return pyctr("run", "--rm", *args, **kw)


def status_field(pyctr, name, *flags):
    out = run(pyctr, *flags, "busybox", "grep", name, "/proc/self/status", check=True).stdout
    return int(out.split()[1], 16)


def make_image(pyctr, rootfs, work, name, **links):
    """A copy of busybox as image `name` in a data dir of its own, with
    top-level directories replaced by symlinks (etc="/somewhere").
    Returns a Pyctr on that data dir, sharing the test's state root."""
    data = os.path.join(work, "data")
    image = os.path.join(data, "images", name)
    shutil.copytree(rootfs, os.path.join(image, "rootfs"), symlinks=True)
    for path, target in links.items():
        shutil.rmtree(os.path.join(image, "rootfs", path))
        os.symlink(target, os.path.join(image, "rootfs", path))
    with open(os.path.join(image, "image.json"), "w") as f:
        json.dump({"name": name, "cmd": ["/bin/sh"]}, f)
    return Pyctr(pyctr.root, data, pyctr.config)


@pytest.fixture
def host_dir(work):
    """A host directory an image points at: it must stay exactly as it is."""
    path = os.path.join(work, "host-side")
    os.mkdir(path)
    with open(os.path.join(path, "hosts"), "w") as f:
        f.write("the host's own\n")
    return path


def listing(path):
    return {name: open(os.path.join(path, name)).read() if os.path.isfile(
        os.path.join(path, name)) else None for name in sorted(os.listdir(path))}


# -- paths stay in the root --------------------------------------------------------
@both
def test_image_etc_symlinked_to_a_host_dir_gets_nothing_there(pyctr, rootfs, work, host_dir,
                                                              flags):
    evil = make_image(pyctr, rootfs, work, "evil", etc=host_dir)
    before = listing(host_dir)
    source = os.path.join(work, "src")
    os.mkdir(source)
    p = run(evil, *flags, "--hostname", "h", "evil", "sh", "-c", "echo started")
    assert p.returncode == 0 and p.stdout.strip() == "started", p.stderr
    # mount targets below the symlinked /etc are looked up in the root, where
    # the host path does not exist: refused, nothing made on the host
    for mount in (["-v", "%s:/etc/data" % source], ["--tmpfs", "/etc/scratch"]):
        p = run(evil, *flags, *mount, "evil", "true")
        assert p.returncode == 125, p.stderr
        one_line_error(p)
    # a plain rootfs (no overlay) with the same symlink
    p = run(pyctr, *flags, os.path.join(work, "data", "images", "evil", "rootfs"), "true")
    assert p.returncode == 0, p.stderr
    assert listing(host_dir) == before


def test_image_etc_symlinked_inside_the_root_still_works(pyctr, rootfs, work):
    fine = make_image(pyctr, rootfs, work, "fine", etc="/real-etc")
    shutil.copytree(os.path.join(rootfs, "etc"),
                    os.path.join(work, "data", "images", "fine", "rootfs", "real-etc"))
    source = os.path.join(work, "src")
    os.mkdir(source)
    with open(os.path.join(source, "f"), "w") as f:
        f.write("from the volume\n")
    p = run(fine, "--hostname", "inside", "-v", "%s:/etc/data:ro" % source, "fine", "sh", "-c",
            "cat /etc/hostname /real-etc/data/f")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[:2] == ["inside", "from the volume"]


def test_dev_symlinked_to_a_host_dir_gets_nothing_there(pyctr, rootfs, work, host_dir):
    """/dev leads nowhere inside the root: one line, and the host directory
    gets no tmpfs, device node or link."""
    evil = make_image(pyctr, rootfs, work, "evil", dev=host_dir)
    before = listing(host_dir)
    p = run(evil, "evil", "true")
    assert p.returncode == 125 and "/dev" in one_line_error(p)
    assert listing(host_dir) == before


def test_dev_symlinked_inside_the_root_still_works(pyctr, rootfs, work):
    fine = make_image(pyctr, rootfs, work, "fine", dev="/real-dev")
    os.mkdir(os.path.join(work, "data", "images", "fine", "rootfs", "real-dev"))
    p = run(fine, "fine", "sh", "-c", "echo x > /dev/null && ls /real-dev/zero /dev/fd/")
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("fs", ["proc", "sys"])
def test_proc_and_sys_on_a_symlink_are_refused(pyctr, rootfs, work, fs):
    """The kernel's files only on a real directory: masks and read-only
    paths must cover them (runc's CVE-2019-19921)."""
    linked = make_image(pyctr, rootfs, work, "linked", **{fs: "/tmp"})
    p = run(linked, "linked", "true")
    assert p.returncode == 125 and "needs a directory" in one_line_error(p)


def test_a_root_that_fails_before_ids_is_reported_in_one_line(pyctr, rootfs, work):
    """A plain container's child builds its root before IDS
    (child.builds_before_ids), so it may fail and close its end before or
    after IDS reaches it: either way the user reads the child's own error
    (IDS left unread makes the kernel report a reset first)."""
    linked = make_image(pyctr, rootfs, work, "early", proc="/tmp")
    for _ in range(8):
        p = run(linked, "early", "true")
        assert p.returncode == 125 and "needs a directory" in one_line_error(p)


@both
def test_volume_on_the_root_is_refused(pyctr, work, flags):
    p = run(pyctr, *flags, "-v", "%s:/" % work, "busybox", "true")
    assert p.returncode == 125 and "the container's root" in one_line_error(p)
    assert os.listdir(work) == []


def test_volume_on_a_directory_works(pyctr, work):
    with open(os.path.join(work, "f"), "w") as f:
        f.write("shared\n")
    # "." and doubled slashes are harmless and cleaned
    p = run(pyctr, "-v", "%s:/./data//in/" % work, "busybox", "cat", "/data/in/f", check=True)
    assert p.stdout == "shared\n"


@both
def test_dotdot_in_destinations_is_refused(pyctr, rootfs, work, flags):
    escape = os.path.join(work, "made-by-pyctr")
    dotdots = "/.." * 12 + escape
    for mount in (["-v", "%s:%s" % (work, dotdots)], ["--tmpfs", dotdots]):
        p = run(pyctr, *flags, *mount, "busybox", "true")
        assert p.returncode == 125 and "'..'" in one_line_error(p)
    config = json.loads(pyctr("spec", *flags, rootfs, "true", check=True).stdout)
    config["mounts"].append({"destination": "/tmp/" + dotdots, "type": "tmpfs",
                             "source": "tmpfs", "options": []})
    bundle = os.path.join(work, "bundle")
    os.mkdir(bundle)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    p = pyctr("run", "--rm", "--bundle", bundle)
    assert p.returncode == 125 and "'..'" in one_line_error(p)
    assert not os.path.exists(escape)


@both
def test_workdir_through_a_symlink_stays_inside(pyctr, rootfs, work, flags):
    """-w names a symlink whose target exists both on the host and in the
    root: the container lands in its own."""
    hostside = os.path.join(work, "place")
    os.mkdir(hostside)
    open(os.path.join(hostside, "host-marker"), "w").close()
    image = make_image(pyctr, rootfs, work, "wl")
    inside = os.path.join(work, "data", "images", "wl", "rootfs") + hostside
    os.makedirs(inside)
    open(os.path.join(inside, "root-marker"), "w").close()
    os.symlink(hostside, os.path.join(work, "data", "images", "wl", "rootfs", "wl"))
    p = run(image, *flags, "-w", "/wl", "wl", "ls", check=True)
    assert p.stdout.split() == ["root-marker"]
    if not flags:  # (in a user namespace the image's directories are not root's to write)
        # a missing workdir is made, in the root too
        p = run(image, "-w", "/wl/made", "wl", "sh", "-c", "test -d /wl/made && echo made",
                check=True)
        assert p.stdout.strip() == "made"
        assert os.listdir(hostside) == ["host-marker"]


# -- identity ----------------------------------------------------------------------
def test_uid_minus_one_is_refused(pyctr):
    for user in ("4294967295", "0:4294967295", "99999999999"):
        p = run(pyctr, "-u", user, "busybox", "id")
        assert p.returncode == 125 and "out of range" in one_line_error(p)


def test_uids_in_range_work(pyctr):
    p = run(pyctr, "-u", "4294967294:65534", "busybox", "sh", "-c", "id -u; id -g", check=True)
    assert p.stdout.split() == ["4294967294", "65534"]


def test_unmapped_uid_in_a_user_namespace_is_refused_mapped_works(pyctr):
    p = run(pyctr, "--userns", "-u", "70000", "busybox", "id", "-u")
    assert p.returncode == 125 and "not mapped" in one_line_error(p)
    p = run(pyctr, "--userns", "-u", "1000", "busybox", "id", "-u", check=True)
    assert p.stdout.strip() == "1000"


@both
def test_inheritable_and_ambient_sets_empty_by_default(pyctr, flags):
    assert status_field(pyctr, "CapInh", *flags) == 0
    assert status_field(pyctr, "CapAmb", *flags) == 0
    assert status_field(pyctr, "CapEff", *flags) == status_field(pyctr, "CapBnd", *flags) != 0


def test_non_root_user_gets_added_capability_as_ambient(pyctr):
    """As podman: -u 1000 --cap-add NET_RAW keeps NET_RAW through exec
    (ambient), so the user can ping; without it the user cannot."""
    assert status_field(pyctr, "CapAmb", "-u", "1000", "--cap-add", "NET_RAW") == NET_RAW
    assert status_field(pyctr, "CapEff", "-u", "1000") == 0
    ping = ("busybox", "ping", "-c", "1", "-W", "2", "127.0.0.1")
    assert run(pyctr, "-u", "1000", *ping).returncode != 0
    p = run(pyctr, "-u", "1000", "--cap-add", "NET_RAW", *ping)
    assert p.returncode == 0, p.stdout + p.stderr


def test_bundle_ambient_capabilities(pyctr, rootfs, work):
    config = json.loads(pyctr("spec", rootfs, "grep", "Cap", "/proc/self/status",
                              check=True).stdout)
    config["process"]["user"] = {"uid": 1000, "gid": 1000}
    caps = config["process"]["capabilities"]
    for name in ("effective", "permitted", "inheritable", "ambient"):
        caps[name] = ["CAP_NET_RAW"]
    bundle = os.path.join(work, "bundle")
    os.mkdir(bundle)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    p = pyctr("run", "--rm", "--bundle", bundle, check=True)
    fields = dict(line.split(":\t") for line in p.stdout.splitlines())
    assert int(fields["CapAmb"], 16) == int(fields["CapInh"], 16) == NET_RAW
    # an ambient capability that is not inheritable cannot be raised: like
    # runc (whose `runc spec` writes such a config), a warning and none
    caps["inheritable"] = []
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)
    p = pyctr("run", "--rm", "--bundle", bundle, check=True)
    fields = dict(line.split(":\t") for line in p.stdout.splitlines())
    assert int(fields["CapAmb"], 16) == int(fields["CapInh"], 16) == 0
    assert "CAP_NET_RAW not raised" in p.stderr


def _run_with_fd3(pyctr, open_fd3, *args, env=None):
    """pyctr run with fd 3 opened by the shell redirection `open_fd3`."""
    argv = pyctr.argv("run", "--rm", *args)
    return subprocess.run(["sh", "-c", "exec %s %s" % (shlex.join(argv), open_fd3)],
                          capture_output=True, text=True, timeout=60, env=env)


def test_preserve_fds_with_a_directory_is_refused(pyctr, work):
    p = _run_with_fd3(pyctr, "3<%s" % shlex.quote(work), "--preserve-fds", "1", "busybox",
                      "ls", "/proc/self/fd/3/")
    assert p.returncode == 125 and "is a directory" in one_line_error(p)
    assert pyctr.containers() == []


def test_pmi_fd_with_a_directory_is_refused(pyctr, work):
    env = dict(os.environ, PMI_FD="3", PMI_RANK="1")
    p = _run_with_fd3(pyctr, "3<%s" % shlex.quote(work), "busybox", "true", env=env)
    assert p.returncode == 125 and "PMI_FD 3 is a directory" in one_line_error(p)


def test_preserve_fds_with_a_socket_works(pyctr):
    mine, theirs = socket.socketpair()
    with mine, theirs:
        argv = pyctr.argv("run", "--rm", "--preserve-fds", "1", "busybox", "sh", "-c",
                          "echo through-the-socket >&3")
        # fd 3 in pyctr is the socket (dup2 makes it inheritable; every other
        # fd of this process is close-on-exec)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=60, close_fds=False,
                           preexec_fn=lambda: os.dup2(theirs.fileno(), 3))
        assert p.returncode == 0, p.stderr
        assert mine.recv(100) == b"through-the-socket\n"
