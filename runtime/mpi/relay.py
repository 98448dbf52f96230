"""The launcher's PMIx server, reachable from a rank's own network namespace
at the very address the launcher advertised.

Open MPI's mpirun (and orted) serve PMIx on tcp4://127.0.0.1:PORT and hand
ranks that address in PMIX_SERVER_URI*. In a container's network namespace
127.0.0.1 is the container's own loopback, so MPI_Init fails with "OPAL
ERROR: Unreachable". The alternative, PMIX_MCA_ptl_tcp_if_include in the
launcher's environment plus a host address on the containers' subnet, is a
setting every user would have to know about.

So `pyctr run`, which stays alive as the rank's parent anyway, listens on
127.0.0.1:PORT *inside* the container's namespace (a socket belongs to the
namespace it was created in, whatever the creating thread does next) and
copies bytes between each connection there and a new one to the launcher's
127.0.0.1:PORT on the host. PMIx sees an ordinary loopback client.
"""
import os
import socket
import threading

from pyctr.errors import from_oserror
from pyctr.mpi.env import pmix_servers


def loopback_servers(env):
    """[(host, port)] of the PMIx servers `env` points at on loopback, each once."""
    out = []
    for _, host, port in pmix_servers(env):
        if host.startswith("127.") and (host, port) not in out:
            out.append((host, port))
    return out


def listen_in_netns(netns_path, servers, syscall, user_namespaces=None):
    """Listening sockets, one per (host, port), made inside `netns_path`.
    The calling thread goes back to its own namespace before returning.
    A user's container's netns belongs to its user namespace: only a
    process that joins that first may enter it; user_namespaces (a
    network.rootless.Namespaces) are the ones to join then."""
    from pyctr.network.netns import call_in

    def listen():
        # 127.0.0.1 exists once lo is up; the child may not have got
        # that far yet, and doing it twice is harmless.
        syscall.loopback_up()
        listeners = []
        try:
            for host, port in servers:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listeners.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(64)
        except OSError:
            for s in listeners:
                s.close()
            raise
        return listeners

    if user_namespaces is not None:
        from pyctr.network.rootless import call_in_container
        try:
            return call_in_container(user_namespaces, listen)
        except OSError as e:
            raise from_oserror("PMIx relay: cannot listen in the container's network "
                               "namespace", e) from e
    try:
        target = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise from_oserror("PMIx relay: cannot open %s" % netns_path, e) from e
    try:
        return call_in(target, listen, syscall)
    except OSError as e:
        raise from_oserror("PMIx relay: cannot listen in the container's network namespace",
                           e) from e
    finally:
        os.close(target)


def serve(listeners, servers):
    """Relay every connection accepted on listeners[i] to servers[i], in
    daemon threads that die with the process. Threads inherit the caller's
    signal mask: call this after Container.create() has blocked the signals
    pyctr forwards, so none of them is delivered to a relay thread."""
    for listener, server in zip(listeners, servers):
        threading.Thread(target=_accept_loop, args=(listener, server), daemon=True).start()


def _accept_loop(listener, server):
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return
        try:
            outside = socket.create_connection(server)
        except OSError:
            inside.close()  # the rank's MPI_Init reports the failure
            continue
        for a, b in ((inside, outside), (outside, inside)):
            threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src, dst):
    """Copy src -> dst until src ends; then end dst's writing side too, so
    each side sees the other close."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
