"""A non-root user on pyctr.testbed's nodes, for tests and benchmarks of
rootless networks (pyctr.network.rootless, pyctr.netd):

    with Testbed(nodes=2) as tb, TestUser() as user:
        for node in tb.nodes:
            node.pyctr("net", "create", "lan", ...)      # root defines
            write_policy(node, {"lan": {"users": [user.name]}})
        with Helpers(tb) as helpers:                       # one daemon per node
            me = user.on(tb.nodes[0], helpers)
            me.pyctr("run", "--rm", "--net=lan", "busybox", "ip", "addr")

TestUser makes a system user with its own group (no home, no login
shell) and removes it, and every process it still has, on down(). `on()`
gives that user's view of one node: commands run in the node's netns
(nsenter --net, /sys left alone) with the user's ids (setpriv), a clean
environment, XDG_RUNTIME_DIR in a directory of the node's that the user
owns (so pyctr's default state root for a user is used, see paths.py), and
PYCTR_NETD_SOCKET naming the node's helper. Helpers starts `pyctr netd
serve` as root in each node with the node's own state and config, so the
leases and network definitions are the node's, and stops them on down().
Nothing here touches the machine's own interfaces.
"""
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

from pyctr.testbed import UpDown, kill_until_gone

START_TIMEOUT = 30  # seconds for a helper to answer on a loaded machine


def user_path():
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class TestUser(UpDown):
    """A throwaway unprivileged user."""
    __test__ = False

    def __init__(self, prefix="pyctru"):
        self.name = "%s%d" % (prefix, os.getpid() % 1000000)
        self.uid = self.gid = None
        self._made = False

    def up(self):
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--user-group", self.name], check=True, capture_output=True)
        self._made = True
        entry = pwd.getpwnam(self.name)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def down(self):
        if not self._made:
            return
        self.kill_processes()
        subprocess.run(["userdel", self.name], capture_output=True)
        self._made = False

    def kill_processes(self):
        """Every process of this user (all started by the tests), by pid."""
        kill_until_gone(self.pids)

    def pids(self):
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat("/proc/" + entry).st_uid == self.uid:
                        out.append(int(entry))
                except OSError:
                    pass
        return out

    def as_user(self, argv):
        return ["setpriv", "--reuid", str(self.uid), "--regid", str(self.gid),
                "--init-groups", "--reset-env"] + list(argv)

    def userns_works(self):
        """Can this user make a user namespace with a network namespace
        (kernel.unprivileged_userns_clone, user.max_user_namespaces, an LSM)?"""
        r = subprocess.run(self.as_user(["unshare", "--user", "--map-root-user", "--net",
                                         "true"]), capture_output=True, text=True, cwd="/")
        return r.returncode == 0

    def on(self, node, helpers=None):
        return UserOnNode(self, node, helpers.socket(node) if helpers else None)


class UserOnNode:
    """The user's shell on one node."""

    def __init__(self, user, node, socket):
        self.user, self.node, self.socket = user, node, socket
        self.runtime_dir = os.path.join(node.base, "user-%d" % user.uid)
        if not os.path.isdir(self.runtime_dir):
            os.makedirs(self.runtime_dir, mode=0o700)
            os.chown(self.runtime_dir, user.uid, user.gid)

    @property
    def state_root(self):
        return os.path.join(self.runtime_dir, "pyctr")  # paths.py's default for a user

    def env(self, extra=None):
        env = {"PATH": user_path(), "HOME": "/", "XDG_RUNTIME_DIR": self.runtime_dir,
               "LANG": "C.UTF-8"}
        if self.socket:
            env["PYCTR_NETD_SOCKET"] = self.socket
        env.update(extra or {})
        return ["%s=%s" % kv for kv in env.items()]

    def argv(self, argv, env=None):
        return ["nsenter", "--net=/run/netns/" + self.node.netns] + self.user.as_user(
            ["env", "-i"] + self.env(env) + [str(a) for a in argv])

    def pyctr_argv(self, *args):
        return [sys.executable, "-m", "pyctr", "--data", self.node.paths.data] + list(args)

    def run(self, argv, timeout=120, env=None, **kw):
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.argv(argv, env), timeout=timeout, cwd="/", **kw)

    def popen(self, argv, env=None, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.argv(argv, env), cwd="/", **kw)

    def pyctr(self, *args, **kw):
        return self.run(self.pyctr_argv(*args), **kw)

    def pyctr_popen(self, *args, **kw):
        return self.popen(self.pyctr_argv(*args), **kw)

    def containers(self):
        try:
            return sorted(os.listdir(os.path.join(self.state_root, "containers")))
        except FileNotFoundError:
            return []

    def clean(self):
        """Remove the user's containers and records (as the user), then the dir."""
        for name in self.containers():
            self.pyctr("rm", "-f", name, timeout=60)
        self.pyctr("gc", timeout=60)
        shutil.rmtree(self.runtime_dir, ignore_errors=True)


def write_policy(node, grants):
    """The node's policy file (next to its network definitions): grants is
    {network: {"users": [...], "max_containers": N, "choose_ip": bool, ...}}."""
    lines = []
    for network, grant in grants.items():
        lines.append("[network.%s]" % network)
        for key, value in grant.items():
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, (list, tuple)):
                text = "[%s]" % ", ".join('"%s"' % v for v in value)
            else:
                text = str(value)
            lines.append("%s = %s" % (key, text))
        lines.append("")
    with open(os.path.join(node.paths.config, "policy.toml"), "w") as f:
        f.write("\n".join(lines))


class Helpers(UpDown):
    """`pyctr netd serve` as root in every node of a testbed, each with the
    node's state and config and its own socket."""

    def __init__(self, testbed, nodes=None):
        self.testbed = testbed
        self.nodes = list(nodes or testbed.nodes)
        self.procs = {}

    def socket(self, node):
        return os.path.join(node.base, "netd.sock")

    def log(self, node):
        return os.path.join(node.base, "netd.log")

    def up(self):
        for node in self.nodes:
            self.start(node)
        for node in self.nodes:
            self.wait_ready(node)

    def start(self, node):
        with open(self.log(node), "ab") as log:
            self.procs[node.name] = node.pyctr_popen(
                "netd", "serve", "--socket", self.socket(node), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log)

    def wait_ready(self, node):
        from pyctr.netd import client
        deadline = time.monotonic() + START_TIMEOUT
        env_socket = {"PYCTR_NETD_SOCKET": self.socket(node)}
        while time.monotonic() < deadline:
            proc = self.procs[node.name]
            if proc.poll() is not None:
                raise RuntimeError("netd on %s exited %d: %s"
                                   % (node.name, proc.returncode, self.log_text(node)))
            if os.path.exists(self.socket(node)) and _answers(client, node, env_socket):
                return
            time.sleep(0.1)
        raise RuntimeError("netd on %s does not answer: %s" % (node.name, self.log_text(node)))

    def log_text(self, node):
        try:
            with open(self.log(node)) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self, node, sig=signal.SIGTERM):
        proc = self.procs.pop(node.name, None)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def down(self):
        for node in self.nodes:
            self.stop(node)


def _answers(client, node, env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return client.available(node.paths)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
