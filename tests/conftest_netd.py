"""The network helper for tests (imported by tests/test_netd.py and the
rootless tests): a real `pyctr netd serve` as root inside a simulated node
(pyctr.testbed), on a socket of its own under the node's directory, with
the node's config (policy.toml, network definitions) and state (leases).
Clients reach it with PYCTR_NETD_SOCKET=helper.socket (helper.env()).

    helper = Helper(node); helper.start()
    ... helper.kill9(); helper.start()   # leases survive
    helper.stop()                        # always, also on failure
"""
import os
import signal
import subprocess
import time


class Helper:
    """A `pyctr netd serve` in node n1, on its own socket."""

    def __init__(self, node):
        self.node = node
        directory = os.path.join(node.base, "netd")
        os.makedirs(directory, mode=0o755, exist_ok=True)
        self.socket = os.path.join(directory, "netd.sock")
        self.log_path = os.path.join(directory, "log")
        self.proc = None

    def start(self):
        """Start the daemon; return once it listens (its log says so)."""
        offset = len(self.log()) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "a")
        self.proc = self.node.pyctr_popen("netd", "serve", "--socket", self.socket,
                                          stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 60
        while "listening on" not in self.log()[offset:]:
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def env(self):
        return dict(os.environ, PYCTR_NETD_SOCKET=self.socket)
