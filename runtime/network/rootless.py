"""A non-root user's networks: what an administrator defined and granted,
wired by the privileged helper (pyctr.netd) instead of by pyctr itself.

A user's container has its own user namespace (the caller mapped to root)
and, cloned together with it, its own network namespace, which that user
namespace owns. The networks stage opens /proc/PID/ns/net of the child
and hands that fd to the helper, which checks the policy and creates the
devices in it; the records it returns are the ones root's network.attach
returns, so the state, /etc/hosts and the MPI settings read them as usual.

    check(requests)                   before anything exists: only defined networks
    Namespaces(pid)                   the child's user and net namespaces, opened
                                      before IDS (it hides itself then)
    attach(paths, container_id, requests, pid, namespaces) -> [record, ...]
    detach(paths, container_id, records)
    allowed_rows(paths) -> rows for `pyctr net ls`

The helper's client is imported here only, and only when a user's
container has a network: `pyctr run --net=none` pays nothing for it.
"""
import os

from pyctr.errors import PyctrError

ONLY_DEFINED = ("rootless containers use networks an administrator defined and granted "
                "(pyctr net ls shows yours): --net=%s needs root")


def check(requests):
    """Ad-hoc `KIND:TARGET` networks make host devices of the user's
    choosing: root only. A defined network's own checks are the helper's."""
    for req in requests:
        if req.form != "network":
            raise PyctrError(ONLY_DEFINED % _shown(req))


def _shown(req):
    return "%s:%s" % (req.form, req.network) if req.network else req.form


class Namespaces:
    """A user's container's user and network namespaces, opened while its
    child still lets its owner in: the child makes itself not dumpable at
    IDS (syscalls.clone), and from then on its /proc/PID/ns/* are closed
    to a caller without CAP_SYS_PTRACE on the host."""
    __slots__ = ("user", "net")

    def __init__(self, pid):
        self.user = self.net = -1
        try:
            self.user = os.open("/proc/%d/ns/user" % pid, os.O_RDONLY | os.O_CLOEXEC)
            self.net = os.open("/proc/%d/ns/net" % pid, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            self.close()
            raise PyctrError("cannot open the namespaces of process %d: %s"
                             % (pid, e.strerror)) from e

    def close(self):
        for fd in (self.user, self.net):
            if fd >= 0:
                os.close(fd)
        self.user = self.net = -1


def attach(paths, container_id, requests, pid, namespaces):
    """The helper wires `requests` into the network namespace of `pid` (the
    caller's own child, its fd in `namespaces`); returns its records. One
    PyctrError (the helper's line) if it refuses; the helper then leaves
    nothing."""
    from pyctr.netd import client
    return client.attach(paths, container_id, list(requests), pid, namespaces.net)


def detach(paths, container_id, records):
    """The helper releases what it made for the container. A helper that
    cannot be reached now does not keep the user's container (or its exit
    code) hostage: its leases belong to the container's init, which is gone
    or going, and the helper reclaims a dead owner's lease as root's gc does."""
    from pyctr.netd import client
    try:
        client.detach(paths, container_id, records)
    except PyctrError as e:
        import sys
        sys.stderr.write("pyctr: warning: container %s: its network is released when the "
                         "helper reclaims it (%s)\n" % (container_id, e))


def allowed_rows(paths):
    """`pyctr net ls` for a user: the networks the policy grants them, with
    how many containers they may hold on each and hold now."""
    from pyctr.netd import client
    rows = [("NAME", "KIND", "SUBNET", "USED", "QUOTA", "CHOOSE")]
    for net in client.allowed(paths):
        choose = [what for what in ("ip", "mac") if net.get("choose_" + what)]
        quota = net.get("max_containers")
        rows.append((str(net["network"]), str(net.get("kind") or "-"),
                     str(net.get("subnet") or "-"), str(net.get("used", 0)),
                     "-" if quota is None else str(quota), ",".join(choose) or "-"))
    return rows


def call_in_container(namespaces, make):
    """make() -> [socket], run in the network namespace of a user's
    container (its Namespaces). That netns belongs to the
    container's user namespace, and the kernel lets in only a process that
    holds CAP_SYS_ADMIN there: joining that user namespace gives it to its
    owner, but only a single-threaded process may join, and never back. So
    a forked process joins both, makes the sockets and sends them here; a
    socket stays in the netns it was made in. Raises OSError."""
    import socket
    from pyctr.syscalls import CLONE_NEWNET, CLONE_NEWUSER, Syscalls
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (a forked process; its work is checked by the parent)
        code = 1
        try:
            here.close()
            syscall = Syscalls()
            syscall.setns(namespaces.user, CLONE_NEWUSER)
            syscall.setns(namespaces.net, CLONE_NEWNET)
            made = make()
            socket.send_fds(there, [b"ok"], [s.fileno() for s in made])
            code = 0
        except OSError as e:
            there.send(("%d %s" % (e.errno or 0, e.strerror or e)).encode()[:1000])
        except BaseException as e:  # never let the fork return into pyctr
            there.send(("0 %s" % e).encode()[:1000])
        finally:
            os._exit(code)
    there.close()
    try:
        message, fds, _, _ = socket.recv_fds(here, 1024, 64)
    finally:
        here.close()
        os.waitpid(pid, 0)
    if message != b"ok":
        number, _, text = message.decode(errors="replace").partition(" ")
        raise OSError(int(number) if number.isdigit() else 0, text or "no answer")
    return [socket.socket(fileno=fd) for fd in fds]
