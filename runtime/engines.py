"""Private podman and containerd worlds that drive an OCI runtime.

The engine tests and `pyctr bench engines` run the real podman 4.3 and
containerd 1.6 of Debian 12 against a runtime given by path (runc, crun,
pyctr). Each world keeps all its state under one directory of its own:
podman gets its own --root/--runroot/--tmpdir and config files (through
CONTAINERS_CONF and CONTAINERS_STORAGE_CONF), containerd its own config,
root, state and socket, and runs as a child of the caller. `close()` stops
everything the world started and removes its directory; `leftovers()` says
what is still there (processes, mounts, shim sockets, cgroups).

Known exceptions, outside the world's directory:
- `podman import` writes its blob-info cache to /var/lib/containers/cache
  (fixed for root in podman 4.3);
- conmon makes its console sockets as /tmp/conmon-term.* (and removes them);
- containerd 1.6 puts its shims' sockets in /run/containerd/s, named by a
  hash of the socket address, namespace and id.
"""
import hashlib
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import tarfile
import time

from pyctr.errors import PyctrError

IMAGE = "localhost/busybox:latest"
BLOB_CACHE = "/var/lib/containers/cache"
# The state roots of the OCI runtimes podman knows (crun, its default here,
# and runc): podman makes a runtime's when it sets that runtime up, even one
# it never runs a container with.
RUNTIME_ROOTS = ("/run/crun", "/run/runc")
SHIM_STATE = "/run/containerd"
SHIM_SOCKETS = "/run/containerd/s"
CGROUP_ROOT = "/sys/fs/cgroup"


# ----------------------------------------------------------- runtimes

def _write_script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


LOGGER = """#!/usr/bin/python3 -IS
# Logs how an engine calls its OCI runtime, then execs the runtime.
import json, os, sys
fds = {}
for n in os.listdir("/proc/self/fd"):
    try:
        fds[n] = os.readlink("/proc/self/fd/" + n)
    except OSError:
        pass
with open("/proc/%%d/comm" %% os.getppid()) as f:
    parent = f.read().strip()
env = {k: v for k, v in os.environ.items() if k in %(keep)r}
with open(%(log)r, "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "fds": fds,
                        "parent": parent, "env": env}) + "\\n")
os.execv(%(real)r, [%(real)r] + sys.argv[1:])
"""

LOGGED_ENV = ("NOTIFY_SOCKET", "XDG_RUNTIME_DIR", "LISTEN_FDS", "_LIBCONTAINER_INITPIPE",
              "GOMAXPROCS", "PATH")


def write_logging_runtime(path, real, log):
    """An executable at `path` that appends one JSON line per call to `log`
    (argv, cwd, open fds and what they are, parent's name, a few env vars)
    and then execs the runtime `real`. Name it after the runtime it stands
    for: podman picks JSON error logs by the runtime's base name."""
    return _write_script(path, LOGGER % {"log": log, "real": real, "keep": LOGGED_ENV})


def read_call_log(log):
    """The calls a logging runtime recorded: [{argv, cwd, fds, parent, env}]."""
    try:
        with open(log) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


GLOBAL_WITH_VALUE = ("--root", "--log", "--log-format", "--criu")


def verb_of(argv):
    """(global options, verb, the verb's arguments) of a runtime call."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in GLOBAL_WITH_VALUE else 1
    return argv[:i], (argv[i] if i < len(argv) else None), argv[i + 1:]


def write_rooted_runtime(path, real, root, config=None):
    """A runtime executable that keeps its state under `root` (and, for
    pyctr, its network definitions under `config`). podman's
    `--runtime-flag root=DIR` cannot do this: the `delete --force` podman
    runs after a container exits (conmon's exit command) lacks the flag."""
    options = "--root %s" % root + (" --config %s" % config if config else "")
    return _write_script(path, "#!/bin/sh\nexec %s %s \"$@\"\n" % (real, options))


TOOLS = ("podman", "conmon", "containerd", "ctr", "runc")


def missing_tools():
    """The engine programs that are not installed (install.sh --test has them)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin"
    return [t for t in TOOLS if not shutil.which(t, path=path)]


def has_oci_verbs(pyctr_argv):
    """True when this pyctr has the OCI runtime verbs engines call (issue 9);
    `pyctr_argv` runs pyctr (a launcher, or python -m pyctr)."""
    try:
        p = subprocess.run([*pyctr_argv, "create", "--help"], capture_output=True,
                           timeout=60)
    except OSError:
        return False
    return p.returncode == 0


NO_OCI_VERBS = "pyctr has no OCI runtime verbs yet (`pyctr create`: unknown verb; issue 9)"


# -------------------------------------------------------------- images

ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def _blob(out, data, media_type):
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo("blobs/sha256/" + digest)
    info.size = len(data)
    out.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def write_oci_archive(path, rootfs, name=IMAGE, cmd=("/bin/sh",)):
    """A one-layer OCI image archive of `rootfs`, named `name` for
    `ctr image import`."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for entry in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, entry), arcname=entry)
    layer = layer.getvalue()
    arch = ARCHITECTURES.get(os.uname().machine, os.uname().machine)
    config = {"architecture": arch, "os": "linux",
              "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                                 "/sbin:/bin"], "Cmd": list(cmd), "WorkingDir": "/"},
              "rootfs": {"type": "layers",
                         "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}}
    with tarfile.open(path, "w") as out:
        layer_d = _blob(out, layer, "application/vnd.oci.image.layer.v1.tar")
        config_d = _blob(out, json.dumps(config).encode(),
                         "application/vnd.oci.image.config.v1+json")
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": config_d, "layers": [layer_d]}
        manifest_d = _blob(out, json.dumps(manifest).encode(), manifest["mediaType"])
        manifest_d["annotations"] = {"io.containerd.image.name": name,
                                     "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]}
        manifest_d["platform"] = {"architecture": arch, "os": "linux"}
        index = {"schemaVersion": 2, "manifests": [manifest_d]}
        for member, doc in (("oci-layout", {"imageLayoutVersion": "1.0.0"}),
                            ("index.json", index)):
            data = json.dumps(doc).encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return path


def rootfs_tar_stream(rootfs):
    """A plain tar of `rootfs` on a pipe (for `podman import -`)."""
    return subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)


# --------------------------------------------------------- leftovers

def mounts_under(path):
    """Mount points at or below `path`, deepest first."""
    path = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == path or point.startswith(path + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_under(path):
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True)


def processes_mentioning(text):
    """pids (not ours) whose command line contains `text`."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry))
    return found


def processes_rooted_under(path):
    """pids whose root directory or cwd lies under `path` (a container's
    processes, whose rootfs is a mount in the world's directory)."""
    path = os.path.realpath(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        for link in ("root", "cwd"):
            try:
                target = os.readlink("/proc/%s/%s" % (entry, link))
            except OSError:
                continue
            if target == path or target.startswith(path + "/"):
                found.append(int(entry))
                break
    return found


def kill_pids(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def cgroup_dirs(relative):
    """Existing cgroup directories named `relative` in every hierarchy."""
    relative = relative.strip("/")
    if not relative:
        return []
    if os.path.isfile(os.path.join(CGROUP_ROOT, "cgroup.controllers")):  # pure v2
        tops = [CGROUP_ROOT]
    else:  # v1 controllers (and v2 at unified on a hybrid host)
        try:
            tops = [os.path.join(CGROUP_ROOT, h) for h in sorted(os.listdir(CGROUP_ROOT))]
        except FileNotFoundError:
            return []
        tops = [t for t in tops if os.path.ismount(t)]
    return [os.path.join(t, relative) for t in tops if os.path.isdir(os.path.join(t, relative))]


def remove_cgroup_tree(relative):
    """rmdir `relative` and everything below it in every hierarchy (only
    empty cgroups can go; a busy one stays and is reported)."""
    for top in cgroup_dirs(relative):
        for here, dirs, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(here)
            except OSError:
                pass


# ------------------------------------------------------------- podman

class Podman:
    """podman with everything of its own under `base`. Every call names
    `runtime` (a path) with --runtime; containers get cgroups below
    `cgroup_parent`, removed by close()."""

    def __init__(self, base, runtime, supports_json=(), state_root=None, runtimes=None):
        """`runtime` is a path given with --runtime; or, with `runtimes`
        ({name: path} for containers.conf's [engine.runtimes]), the name of
        the default runtime the config sets, and no --runtime is given."""
        self.base = os.path.abspath(base)
        self.runtime = runtime
        self.runtimes = runtimes
        self.state_root = state_root  # the runtime's, when it is not the default
        self.cgroup_parent = "/pyctr-podman-%s" % _tag(self.base)
        self.dirs = {k: os.path.join(self.base, k)
                     for k in ("root", "runroot", "tmp", "networks", "volumes")}
        if len(self.dirs["runroot"]) > 50:
            raise PyctrError("podman refuses a runroot longer than 50 characters: %s"
                             % self.dirs["runroot"])
        for d in self.dirs.values():
            os.makedirs(d, exist_ok=True)
        self.conf = os.path.join(self.base, "containers.conf")
        self.storage_conf = os.path.join(self.base, "storage.conf")
        self.blob_cache_existed = os.path.exists(BLOB_CACHE)
        self.roots_existed = {root: os.path.exists(root) for root in RUNTIME_ROOTS}
        self._write_config(supports_json)
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf,
                        CONTAINERS_STORAGE_CONF=self.storage_conf, TMPDIR=self.dirs["tmp"])
        self.env.pop("XDG_RUNTIME_DIR", None)

    def _write_config(self, supports_json):
        # Without CAP_SYS_RESOURCE a container cannot get more than the hard
        # limits podman itself runs with; podman 4.3 lowers its own
        # RLIMIT_NPROC to 32768, and its defaults for root are higher.
        def hard(kind, unlimited):
            limit = resource.getrlimit(kind)[1]
            return unlimited if limit == resource.RLIM_INFINITY else limit
        nofile = hard(resource.RLIMIT_NOFILE, 1048576)
        nproc = min(hard(resource.RLIMIT_NPROC, 32768), 32768)
        json_runtimes = ["crun", "runc"] + list(supports_json)
        with open(self.conf, "w") as f:
            f.write('[containers]\n'
                    'default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]\n'
                    'log_driver = "k8s-file"\n'
                    '[network]\n'
                    'network_config_dir = "%s"\n'
                    '[engine]\n'
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    'events_logfile_path = "%s"\n'
                    'tmp_dir = "%s"\n'
                    'volume_path = "%s"\n'
                    'image_copy_tmp_dir = "%s"\n'
                    'lock_type = "file"\n'
                    'runtime_supports_json = %s\n'
                    % (nofile, nofile, nproc, nproc, self.dirs["networks"],
                       os.path.join(self.base, "events.log"), self.dirs["tmp"],
                       self.dirs["volumes"], self.dirs["tmp"], json.dumps(json_runtimes)))
            if self.runtimes:
                f.write('runtime = %s\n[engine.runtimes]\n' % json.dumps(self.runtime))
                f.writelines('%s = [%s]\n' % (name, json.dumps(path))
                             for name, path in self.runtimes.items())
        with open(self.storage_conf, "w") as f:
            f.write('[storage]\ndriver = "overlay"\nrunroot = "%s"\ngraphroot = "%s"\n'
                    % (self.dirs["runroot"], self.dirs["root"]))

    def argv(self, *args):
        runtime = [] if self.runtimes else ["--runtime", self.runtime]
        return ["podman", "--root", self.dirs["root"], "--runroot", self.dirs["runroot"],
                "--tmpdir", self.dirs["tmp"], *runtime,
                "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]

    def run_args(self, *args):
        """`run` with the world's cgroup parent and no network (a node's
        namespace is never touched), then `args`."""
        return ["run", "--cgroup-parent", self.cgroup_parent, "--network", "none", *args]

    def run_argv(self, *args):
        return self.argv(*self.run_args(*args))

    def run(self, *args, **kw):
        return self(*self.run_args(*args), **kw)

    def __call__(self, *args, timeout=120, input=None, check=False, prefix=()):
        """Run podman (after `prefix`, e.g. an nsenter into a node)."""
        p = subprocess.run([*prefix, *self.argv(*args)], capture_output=True, text=True,
                           env=self.env, timeout=timeout, input=input)
        if check and p.returncode:
            raise PyctrError("podman %s exited %d: %s" % (
                " ".join(args), p.returncode, p.stderr.strip()[-500:]))
        return p

    def import_rootfs(self, rootfs, name=IMAGE):
        tar = rootfs_tar_stream(rootfs)
        try:
            p = subprocess.run(self.argv("import", "-", name), stdin=tar.stdout,
                               capture_output=True, text=True, env=self.env, timeout=300)
        finally:
            tar.stdout.close()
            tar.wait()
        if p.returncode:
            raise PyctrError("podman import failed: %s" % p.stderr.strip()[-500:])
        return name

    def leftovers(self):
        """What podman's containers left behind: container processes and
        conmons, mounts, cgroups. Empty when all is clean."""
        left = ["process %d" % pid for pid in sorted(set(
            processes_mentioning(self.dirs["runroot"]) + processes_rooted_under(self.base)))]
        # The storage driver's home, bind-mounted on itself, is the world's own.
        home = os.path.join(self.dirs["root"], "overlay")
        left += ["mount %s" % m for m in mounts_under(self.base) if m != home]
        if self.state_root:
            left += ["mount %s" % m for m in mounts_under(self.state_root)]
        # conmon's own cgroup, <parent>/conmon, is shared by all conmons and stays.
        left += ["cgroup %s/%s" % (d, e) for d in cgroup_dirs(self.cgroup_parent)
                 for e in sorted(os.listdir(d)) if e.startswith("libpod-")]
        left += ["runtime state %s" % s for s in runtime_states(self.state_root)]
        return left

    def close(self):
        """Remove every container, stop what is still running, unmount and
        delete the world."""
        try:
            self("rm", "--all", "--force", "--time", "0", timeout=120)
        except subprocess.TimeoutExpired:
            pass
        kill_pids(processes_mentioning(self.dirs["runroot"]))
        kill_pids(processes_rooted_under(self.base))
        unmount_under(self.base)
        remove_cgroup_tree(self.cgroup_parent)
        shutil.rmtree(self.base, ignore_errors=True)
        self._remove_blob_cache()
        for root, existed in self.roots_existed.items():
            if not existed:
                try:
                    os.rmdir(root)  # only if empty: no container of anyone's in it
                except OSError:
                    pass

    def _remove_blob_cache(self):
        """podman import's blob-info cache, if this world made it."""
        if self.blob_cache_existed:
            return
        shutil.rmtree(BLOB_CACHE, ignore_errors=True)
        try:
            os.rmdir(os.path.dirname(BLOB_CACHE))
        except OSError:
            pass


def _tag(path):
    """A short name unique to a world's directory (cgroups are machine-wide)."""
    return hashlib.sha256(path.encode()).hexdigest()[:12]


def runtime_states(root, ids=None):
    """Container state entries under a runtime's --root: runc and crun keep
    ROOT/ID, pyctr ROOT/containers/ID. Only `ids` count, or by default
    podman's (64 hex digits)."""
    def ours(name):
        if ids is not None:
            return name in ids
        return len(name) == 64 and all(c in "0123456789abcdef" for c in name)
    found = []
    for d in (root, os.path.join(root, "containers")) if root else ():
        try:
            found += [os.path.join(d, e) for e in sorted(os.listdir(d)) if ours(e)]
        except (FileNotFoundError, NotADirectoryError):
            pass
    return found


def _has_children(cgroup):
    return any(os.path.isdir(os.path.join(cgroup, e)) for e in os.listdir(cgroup))


# --------------------------------------------------------- containerd

class Containerd:
    """A containerd daemon of its own (config, root, state, socket under
    `base`), started as a child of the caller; `ctr(...)` talks to it in
    namespace `namespace`."""

    def __init__(self, base, namespace=None):
        self.base = os.path.abspath(base)
        # containerd's namespace is also the cgroup parent of its containers
        self.namespace = namespace or "pyctr-ctr-%s" % _tag(self.base)
        self.dirs = {k: os.path.join(self.base, k)
                     for k in ("root", "state", "tmp", "opt", "fifo", "runc")}
        for d in self.dirs.values():
            os.makedirs(d, exist_ok=True)
        self.address = os.path.join(self.base, "containerd.sock")
        self.config = os.path.join(self.base, "config.toml")
        self.log = os.path.join(self.base, "containerd.log")
        self.proc = None
        self.ids = set()  # container ids run, to find their shims' sockets
        self.made_dirs = [d for d in (SHIM_SOCKETS, SHIM_STATE + "/fifo", SHIM_STATE + "/runc",
                                      SHIM_STATE) if not os.path.exists(d)]  # deepest first
        with open(self.config, "w") as f:
            f.write('version = 2\nroot = "%s"\nstate = "%s"\ntemp = "%s"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri", '
                    '"io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", '
                    '"io.containerd.snapshotter.v1.aufs", '
                    '"io.containerd.snapshotter.v1.devmapper", '
                    '"io.containerd.tracing.processor.v1.otlp"]\n'
                    '[grpc]\n  address = "%s"\n'
                    '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s"\n'
                    % (self.dirs["root"], self.dirs["state"], self.dirs["tmp"], self.address,
                       self.dirs["opt"]))

    def start(self, timeout=60, prefix=()):
        """Start the daemon (after `prefix`, e.g. an unshare: its shims and
        their runtimes then live where it does) and wait for its socket."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([*prefix, "containerd", "--config", self.config],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PyctrError("containerd exited %d: %s" % (self.proc.returncode,
                                                               self._log_tail()))
            if os.path.exists(self.address) and self.ctr("version", timeout=10).returncode == 0:
                return self
            time.sleep(0.1)
        raise PyctrError("containerd did not answer on %s within %ds: %s"
                         % (self.address, timeout, self._log_tail()))

    def _log_tail(self):
        try:
            with open(self.log) as f:
                lines = f.read().strip().splitlines()
        except FileNotFoundError:
            return "no log"
        return lines[-1] if lines else "no log"

    def ctr_argv(self, *args):
        return ["ctr", "--address", self.address, "--namespace", self.namespace, *args]

    def run_argv(self, runtime, cid, *command, options=(), image=IMAGE):
        """`ctr run OPTIONS IMAGE CID COMMAND` with `runtime` as the runc
        binary of containerd's runc shim, its state under the world."""
        self.ids.add(cid)
        return self.ctr_argv("run", "--runc-binary", runtime, "--runc-root", self.dirs["runc"],
                             "--fifo-dir", self.dirs["fifo"], *options, image, cid, *command)

    def exec_argv(self, cid, exec_id, *command, options=()):
        return self.ctr_argv("task", "exec", "--fifo-dir", self.dirs["fifo"], "--exec-id",
                             exec_id, *options, cid, *command)

    def ctr(self, *args, timeout=120, input=None, check=False):
        p = subprocess.run(self.ctr_argv(*args), capture_output=True, text=True,
                           timeout=timeout, input=input)
        if check and p.returncode:
            raise PyctrError("ctr %s exited %d: %s" % (" ".join(args), p.returncode,
                                                       p.stderr.strip()[-500:]))
        return p

    def import_rootfs(self, rootfs, name=IMAGE):
        archive = write_oci_archive(os.path.join(self.dirs["tmp"], "image.tar"), rootfs, name)
        try:
            self.ctr("image", "import", archive, check=True, timeout=300)
        finally:
            os.unlink(archive)
        return name

    def shims(self):
        """pids of the runc shims serving this daemon."""
        return processes_mentioning("-address " + self.address)

    def shim_sockets(self):
        """Sockets in /run/containerd/s of this world's shims (named by
        sha256 of ADDRESS/NAMESPACE/ID in containerd 1.6)."""
        names = [hashlib.sha256(("%s/%s/%s" % (self.address, self.namespace, cid)).encode())
                 .hexdigest() for cid in sorted(self.ids)]
        return [os.path.join(SHIM_SOCKETS, n) for n in names
                if os.path.exists(os.path.join(SHIM_SOCKETS, n))]

    def leftovers(self):
        left = ["shim process %d" % pid for pid in self.shims()]
        left += ["process %d" % pid for pid in processes_rooted_under(self.base)]
        left += ["mount %s" % m for m in mounts_under(self.base)]
        left += ["shim socket %s" % s for s in self.shim_sockets()]
        left += ["cgroup %s" % d for d in cgroup_dirs(self.namespace) if _has_children(d)]
        left += ["runtime state %s" % s for s in runtime_states(
            os.path.join(self.dirs["runc"], self.namespace), self.ids)]
        tasks = os.path.join(self.dirs["state"], "io.containerd.runtime.v2.task", self.namespace)
        if os.path.isdir(tasks):
            left += ["task state %s" % os.path.join(tasks, t) for t in os.listdir(tasks)]
        return left

    def close(self):
        """Kill and delete every task and container, stop the daemon and its
        shims, unmount and delete the world."""
        if self.proc and self.proc.poll() is None:
            listed = self.ctr("container", "list", "--quiet", timeout=30).stdout.split()
            for cid in listed:
                self.ctr("task", "kill", "--all", "--signal", "SIGKILL", cid, timeout=30)
            for cid in listed:
                self.ctr("task", "delete", "--force", cid, timeout=30)
                self.ctr("container", "delete", cid, timeout=30)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        kill_pids(self.shims())
        kill_pids(processes_rooted_under(self.base))
        for s in self.shim_sockets():
            try:
                os.unlink(s)
            except OSError:
                pass
        for d in self.made_dirs:  # only when empty: another containerd may use them now
            try:
                os.rmdir(d)
            except OSError:
                pass
        unmount_under(self.base)
        remove_cgroup_tree(self.namespace)
        shutil.rmtree(self.base, ignore_errors=True)
