"""The parent side of a container's life: create (clone, maps, network),
start (GO, exec confirmed), wait (signals forwarded), clean up.

Any failure between clone and a confirmed exec kills the child and undoes
everything (state entry, network, overlay dirs) before the error goes up,
as crun does on every early return.
"""
import os

from pyctr import syscalls as S
from pyctr.child import Plan, child_main, exit_code
from pyctr.errors import from_oserror
from pyctr.spec import Mount
from pyctr.state import StateStore, now, process_start_time
from pyctr.sync import GO, IDS, Channel

SIGKILL = 9


class Container:
    def __init__(self, paths, spec, sys=None):
        self.paths = paths
        self.spec = spec
        self.sys = sys or S.Syscalls()
        self.store = StateStore(paths)
        self.id = os.urandom(6).hex()
        self.name = spec.name or self.id
        self.pid = 0
        self.dir = None
        self.channel = None
        self.networks = []
        self.state = None
        self.extra_env = []  # set between create and start, reaches the workload
        self.oci = None  # a bundle's pyctr.oci.barrier.ChildPlan, set by pyctr.oci.lifecycle

    # -- create ------------------------------------------------------------
    def create(self, log=False):
        self.dir = self.store.reserve(self.name)
        try:
            if log:
                self._redirect_to_log()
            self._create()
        except BaseException:
            self.destroy()
            raise

    def _create(self):
        spec = self.spec
        if not spec.hostname:
            spec.hostname = self.id
        layers = None
        rootfs = spec.root.path
        if spec.root.image:
            # The image stays untouched: the container writes to an overlay
            # (see rootfs.plan_root) mounted on this empty directory.
            scratch = os.path.join(self.dir, "rootfs")
            os.mkdir(scratch)
            rootfs = scratch + "/merged"
            layers = (spec.root.path, scratch)
        self._etc_mounts()

        flags, join = 0, []
        for ns in spec.namespaces:
            flag = S.NAMESPACES[ns.type][0]
            if not ns.path:
                flags |= flag
            elif ns.type == "pid":
                # A pid namespace applies to children: enter it before clone.
                self._setns_path(ns.path, flag)
            else:
                join.append((ns.type, self._open_ns(ns.path)))
        plan = Plan(spec, rootfs, layers, bool(flags & S.CLONE_NEWUSER),
                    bool(flags & S.CLONE_NEWNET), join, self.oci)

        self.state = {
            "id": self.id, "name": self.name, "status": "creating", "pid": 0, "pid_start": None,
            "owner_pid": os.getpid(), "owner_start": process_start_time(os.getpid()),
            "rootfs": spec.root.path, "image": spec.root.image, "command": spec.process.args,
            "created": now(), "remove": spec.remove, "detach": spec.detach, "networks": [],
        }
        self.store.write(self.name, self.state)
        self.store.write(self.name, spec.to_oci(), "config.json")

        self.channel = Channel()
        self.sys.block_signals()  # none may slip by between clone and wait
        try:
            self.pid = self.sys.clone(flags)
        except OSError as e:
            raise from_oserror("cannot create namespaces (clone)", e)
        if self.pid == 0:
            child_main(plan, self.channel, self.sys)  # never returns
        self.channel.parent_side()
        for _, fd in join:
            os.close(fd)
        if self.oci:
            self.oci.close()

        if plan.new_userns:
            from pyctr.idmap import write_maps
            try:
                write_maps(self.pid, spec.uid_mappings, spec.gid_mappings)
            except OSError as e:
                raise from_oserror("cannot write uid/gid map", e)
        self.state.update(status="created", pid=self.pid,
                          pid_start=process_start_time(self.pid))
        self.store.write(self.name, self.state)
        if spec.oci:  # a bundle: its record, prestart/createRuntime hooks
            from pyctr.oci.lifecycle import created
            created(self)
        self.channel.send(IDS)  # the child builds its rootfs meanwhile

        if spec.networks:
            from pyctr import network
            # attach() undoes its own partial work on failure; on success its
            # records go into the state first, so a later failure can detach.
            self.networks = network.attach(self.paths, self.id, spec.networks, self.pid)
            self.state["networks"] = self.networks
            self.store.write(self.name, self.state)
            self._write_hosts()

    def _redirect_to_log(self):
        """Detached: the workload's stdout/stderr go to <state>/log (pyctr logs)."""
        fd = os.open(os.path.join(self.dir, "log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        os.close(null)

    def _etc_mounts(self):
        """hosts, hostname and resolv.conf are the container's own files,
        bind-mounted from the state dir (the network may rewrite hosts)."""
        if self.spec.oci:
            return  # a bundle's container has the files its config mounts, as with runc
        etc = os.path.join(self.dir, "etc")
        os.mkdir(etc)
        self._write_hosts()
        with open(os.path.join(etc, "hostname"), "w") as f:
            f.write(self.spec.hostname + "\n")
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read()
        except OSError:
            resolv = ""
        with open(os.path.join(etc, "resolv.conf"), "w") as f:
            f.write(resolv)
        for name in ("hosts", "hostname", "resolv.conf"):
            # A missing file is created to mount on only in an image's overlay
            # written as real root: never in a plain rootfs (the user's files),
            # nor where container root is unprivileged and may not write /etc.
            creatable = self.spec.root.image and not self.spec.uid_mappings
            if not creatable and not os.path.exists(
                    os.path.join(self.spec.root.path, "etc", name)):
                continue
            self.spec.mounts.append(Mount(destination="/etc/" + name, type="bind",
                                          source=os.path.join(etc, name), options=["bind"]))

    def _write_hosts(self):
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        names = self.spec.hostname if self.spec.hostname == self.name else \
            "%s %s" % (self.spec.hostname, self.name)
        addresses = [r["ip"].split("/")[0] for r in self.networks if r.get("ip")]
        lines += ["%s\t%s" % (a, names) for a in addresses] or ["127.0.1.1\t" + names]
        with open(os.path.join(self.dir, "etc", "hosts"), "w") as f:
            f.write("\n".join(lines) + "\n")

    def _open_ns(self, path):
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise from_oserror("cannot open namespace %s" % path, e)

    def _setns_path(self, path, flag):
        fd = self._open_ns(path)
        try:
            self.sys.setns(fd, flag)
        except OSError as e:
            raise from_oserror("cannot join namespace %s" % path, e)
        finally:
            os.close(fd)

    # -- start -------------------------------------------------------------
    def start(self):
        try:
            self.channel.send(GO, self.extra_env)
            error = self.channel.wait_exec()
        except BaseException:
            self.destroy()
            raise
        if error:
            self.destroy()
            raise error
        self.state.update(status="running", started=now())
        self.store.write(self.name, self.state)

    # -- wait and clean up ---------------------------------------------------
    def wait(self):
        """Wait for the workload, forwarding signals; returns its exit code."""
        status = self.sys.supervise(self.pid)
        self.pid = 0
        code = exit_code(status)
        self.state.update(status="stopped", exit_code=code, finished=now())
        return code

    def cleanup(self):
        """After a normal exit: network down, then the record (kept unless --rm)."""
        self._detach_networks()
        if self.spec.remove:
            self.store.remove(self.name)
        else:
            self.store.write(self.name, self.state)

    def destroy(self):
        """Undo everything after a failed create/start. Idempotent."""
        if self.pid:
            try:
                os.kill(self.pid, SIGKILL)
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            except ProcessLookupError:
                pass
            self.pid = 0
        if self.channel:
            self.channel.abort()
        self._detach_networks()
        if self.dir:
            self.store.remove(self.name)
            self.dir = None

    def _detach_networks(self):
        if self.networks:
            from pyctr import network
            network.detach(self.paths, self.id, self.networks)
            self.networks = []

