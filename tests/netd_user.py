"""One exchange with the network helper, run by tests/test_netd.py as an
unprivileged user: `python netd_user.py JOB` (JOB: JSON), the outcome as
JSON on stdout: {"ok": value} or {"error": "line"}.

JOB: {"op": "attach", "container": ID, "pid": N, "netns": FD, "networks": [{...}]}
     {"op": "detach", "container": ID}   {"op": "list"}
     {"op": "raw", "data": BASE64, "repeat": N, "fds": [FD, ...], "hang_up": bool}
FD: "pid:N" (open /proc/N/ns/net), "fd:N" (inherited from the test),
    "file:PATH", "socket", "self" (our own netns), "none".
"""
import base64
import json
import os
import socket
import sys

from pyctr.errors import PyctrError
from pyctr.netd import client
from pyctr.paths import Paths
from pyctr.spec import NetworkRequest


def fd_of(what):
    kind, _, arg = what.partition(":")
    if kind == "pid":
        return os.open("/proc/%s/ns/net" % arg, os.O_RDONLY)
    if kind == "fd":
        return int(arg)
    if kind == "file":
        return os.open(arg, os.O_RDONLY)
    if kind == "socket":
        return socket.socketpair()[0].detach()
    if kind == "self":
        return os.open("/proc/self/ns/net", os.O_RDONLY)
    return -1


def raw(job):
    """Bytes (and fds) the client library would never send: what came back."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.settimeout(30)
    sock.connect(client.socket_path())
    data = base64.b64decode(job["data"]) * job.get("repeat", 1)
    fds = [fd_of(w) for w in job.get("fds", [])]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                  b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))] if fds else []
    if job.get("hang_up"):
        # Hang up before the daemon can answer: it reads the request, but its
        # reply cannot be delivered.
        sock.shutdown(socket.SHUT_RD)
    size = len(data)
    while True:
        try:
            sock.sendmsg([data[:size]], ancillary)
            break
        except OSError as e:
            if e.errno != 90 or size < 8192:  # EMSGSIZE: the largest the kernel takes
                return {"sent": False, "errno": e.errno}
            size //= 2
    if job.get("hang_up"):
        sock.close()
        return {"sent": size}
    reply = sock.recv(65536)
    return {"sent": size, "reply": json.loads(reply.decode()) if reply else None}


def main():
    job = json.loads(sys.argv[1])
    op = job["op"]
    paths = Paths()
    try:
        if op == "attach":
            requests = [NetworkRequest(**dict({"form": "network"}, **n)) for n in job["networks"]]
            out = client.attach(paths, job["container"], requests, job["pid"],
                                fd_of(job["netns"]))
        elif op == "detach":
            out = client.detach(paths, job["container"], [{}])
        elif op == "list":
            out = client.allowed(paths)
        else:
            out = raw(job)
    except PyctrError as e:
        print(json.dumps({"error": str(e)}))
        return
    print(json.dumps({"ok": out}))


main()
