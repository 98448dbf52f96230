"""The network helper's policy file and protocol, and the daemon's handling
of requests that never reach the kernel's network code: no root needed.
The real daemon and its hostile clients are tests/test_netd.py."""
import grp
import json
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyctr.errors import PyctrError
from pyctr.netd import policy, protocol, server
from pyctr.netd.peer import Peer
from pyctr.paths import Paths
from pyctr.spec import NetworkRequest


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "config" / "networks").mkdir(parents=True)
    return Paths(root=str(tmp_path / "state"), config=str(tmp_path / "config"),
                 data=str(tmp_path / "data"))


def write_policy(paths, text):
    with open(policy.path(paths), "w") as f:
        f.write(text)


# -- the policy file -------------------------------------------------------------

def test_without_a_policy_file_nobody_may(paths):
    rules = policy.load(paths)
    assert rules.grants == {} and rules.grant("lan", "alice", {1000}) is None


def test_a_policy_grants_users_and_groups_their_settings(paths):
    root_group = grp.getgrgid(0).gr_name
    write_policy(paths, '[network.lan]\nusers = ["alice"]\ngroups = ["%s"]\n'
                 'max_containers = 3\nchoose_ip = true\n'
                 '[network.wire]\nusers = ["bob"]\n' % root_group)
    rules = policy.load(paths)
    lan = rules.grant("lan", "alice", {1000})
    assert (lan.max_containers, lan.choose_ip, lan.choose_mac) == (3, True, False)
    assert rules.grant("lan", "carol", {1000, 0}) is lan      # by a group it is in
    assert rules.grant("lan", "carol", {1000}) is None
    assert rules.grant("wire", "alice", {1000}) is None
    assert rules.grant("wire", "bob", set()).max_containers == policy.DEFAULT_MAX_CONTAINERS
    assert [g.network for g in rules.granted("alice", set())] == ["lan"]


@pytest.mark.parametrize("text, words", [
    ('[network.lan]\nusers = "alice"\n', "users must be a list"),
    ('[network.lan]\nusers = [1]\n', "users must be a list of names"),
    ('[network.lan]\nmax_containers = "8"\n', "max_containers must be a number"),
    ('[network.lan]\nmax_containers = -1\n', "max_containers must be 0 or more"),
    ('[network.lan]\nchoose_ip = 1\n', "choose_ip must be a boolean"),
    ('[network.lan]\nadmins = ["x"]\n', "unknown key admins"),
    ('[network."../x"]\nusers = ["a"]\n', "invalid network name"),
    ('[networks.lan]\nusers = ["a"]\n', "unknown key networks"),
    ('network = 3\n', "network must be a table"),
    ('[network.lan\n', "invalid TOML"),
])
def test_a_bad_policy_is_one_line_naming_the_file(paths, text, words):
    write_policy(paths, text)
    with pytest.raises(PyctrError) as e:
        policy.load(paths)
    message = str(e.value)
    assert words in message and policy.path(paths) in message and "\n" not in message


# -- the protocol ----------------------------------------------------------------

def attach_bytes(**change):
    body = {"type": "attach", "container": "c1", "pid": 42, "networks": [{"network": "lan"}]}
    body.update(change)
    return json.dumps(body).encode()


def test_requests_round_trip():
    req = NetworkRequest(form="network", network="lan", ip="10.0.0.5", routes=["10.9.0.0/16"])
    message = protocol.Attach("c1", 42, [protocol.request_network(req)])
    back = protocol.decode_request(protocol.encode_request(message))
    assert back.to_dict() == {"type": "attach", "container": "c1", "pid": 42, "networks": [
        {"form": "network", "network": "lan", "ip": "10.0.0.5", "routes": ["10.9.0.0/16"]}]}
    frozen = NetworkRequest(form="network", network="lan", host_shim=False)
    frozen.freeze()  # as a spec's requests are
    assert protocol.request_network(frozen) == {"form": "network", "network": "lan",
                                                "host_shim": False}
    assert protocol.decode_request(b'{"type": "list"}').to_dict() == {"type": "list"}
    assert protocol.decode_request(b'{"type": "detach", "container": "c1"}').container == "c1"


@pytest.mark.parametrize("data, words", [
    (b"\xff\xfe", "not JSON"), (b"", "not JSON"), (b"null", "not a JSON object"),
    (b"[" * 5000, "request too large"), (b'{"type": 7}', "type must be"),
    (attach_bytes(pid="1"), "pid must be a process id"), (attach_bytes(pid=0), "pid must be"),
    (attach_bytes(pid=True), "pid must be"), (attach_bytes(container=""), "container must"),
    (attach_bytes(container="a/b"), "container must"), (attach_bytes(container="é"), "container"),
    (attach_bytes(networks=[]), "networks must be a list of 1 to 8"),
    (attach_bytes(networks=[{"network": "lan"}] * 9), "networks must be a list of 1 to 8"),
    (attach_bytes(networks=["lan"]), "a network must be an object"),
    (attach_bytes(networks=[{}]), "a network needs its name"),
    (attach_bytes(networks=[{"network": "lan", "uid": 0}]), "unknown network field"),
    (attach_bytes(networks=[{"network": "lan", "mtu": "9000"}]), "mtu must be a int"),
    (attach_bytes(networks=[{"network": "lan", "routes": ["x"] * 17}]), "routes must be a list"),
    (attach_bytes(uid=0), "unknown field 'uid'"),
])
def test_malformed_requests_are_one_line(data, words):
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode_request(data)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_replies_carry_one_line():
    assert protocol.decode_reply(protocol.encode_reply(ok=[{"ip": "10.0.0.2/24"}])) == \
        [{"ip": "10.0.0.2/24"}]
    with pytest.raises(PyctrError) as e:
        protocol.decode_reply(protocol.encode_reply(error="bad\nthing\r\n  here"))
    assert str(e.value) == "bad thing here"
    with pytest.raises(PyctrError, match="malformed reply"):
        protocol.decode_reply(b'{"what": 1}')


def test_recv_takes_one_fd_and_closes_the_rest():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        fds = (r1, r2)
        a.sendmsg([b"{}"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                             b"".join(fd.to_bytes(4, "little") for fd in fds))])
        data, fd, truncated = protocol.recv(b, protocol.MAX_REQUEST)
        assert data == b"{}" and fd >= 0 and truncated  # two fds: refused
        os.close(fd)
        a.send(b"x" * 5000)
        data, fd, truncated = protocol.recv(b, protocol.MAX_REQUEST)
        assert truncated and fd == -1
        os.close(r1)
        os.close(r2)
        r1 = r2 = -1
        # the extra fd was closed by recv: the pipe's write end sees no reader
        with pytest.raises(BrokenPipeError):
            os.write(w2, b"x")
    finally:
        for fd in (w1, w2):
            os.close(fd)
        a.close()
        b.close()


# -- the daemon's answers before any device --------------------------------------

class FakeConnection:
    """Records what the daemon sends back."""

    def __init__(self, fail=False):
        self.sent, self.fail = [], fail

    def sendmsg(self, parts):
        if self.fail:
            raise BrokenPipeError()
        self.sent.append(json.loads(b"".join(parts)))


def ask(paths, data, fd=-1, uid=1000, groups=()):
    srv = server.Server(paths, "/nonexistent/netd.sock", log=open(os.devnull, "w"))
    conn = FakeConnection()
    who = Peer(1, uid, uid, groups)
    srv.answer(conn, who, data, fd, truncated=False)
    return conn.sent[0]


def test_list_shows_only_granted_and_defined_networks(paths):
    with open(os.path.join(paths.networks, "lan.toml"), "w") as f:
        f.write('kind = "veth"\nsubnet = "10.88.0.0/24"\n')
    write_policy(paths, '[network.lan]\ngroups = ["%s"]\nmax_containers = 2\n'
                 '[network.ghost]\ngroups = ["%s"]\n'
                 % ((grp.getgrgid(0).gr_name,) * 2))
    reply = ask(paths, b'{"type": "list"}', groups=(0,))
    assert reply == {"ok": [{"network": "lan", "kind": "veth", "subnet": "10.88.0.0/24",
                             "max_containers": 2, "used": 0, "choose_ip": False,
                             "choose_mac": False}]}
    assert ask(paths, b'{"type": "list"}') == {"ok": []}


def test_attach_without_a_netns_fd_is_refused(paths, tmp_path):
    assert "needs the container's network namespace" in ask(paths, attach_bytes())["error"]
    with open(tmp_path / "plain", "w") as f:
        f.write("x")
    fd = os.open(tmp_path / "plain", os.O_RDONLY)
    try:
        assert ask(paths, attach_bytes(), fd)["error"] == \
            "the fd passed is not a network namespace"
        assert ask(paths, b'{"type": "list"}', fd)["error"] == "a list request takes no fd"
    finally:
        os.close(fd)


def test_a_busy_daemon_says_so_and_serves_others(paths, monkeypatch):
    monkeypatch.setattr(server, "MAX_PER_USER", 2)
    monkeypatch.setattr(server, "REQUEST_SECONDS", 5)
    srv = server.Server(paths, "/nonexistent/netd.sock", log=open(os.devnull, "w"))
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET) for _ in range(3)]
    try:
        for mine, theirs in pairs:
            srv.start(theirs)  # the same uid each time: ours
        mine = pairs[2][0]
        mine.settimeout(5)
        assert json.loads(mine.recv(4096)) == {"error": protocol.BUSY}
        # the two admitted ones are still served
        for mine, _ in pairs[:2]:
            mine.send(b'{"type": "list"}')
            mine.settimeout(5)
            assert json.loads(mine.recv(4096)) == {"ok": []}
    finally:
        for mine, theirs in pairs:
            mine.close()
        for worker in list(srv.workers):
            worker.join(5)
    assert srv.connections == 0 and srv.per_user == {}


# -- whatever a client sends ---------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
FIELDS = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["attach", "detach", "list"]) | st.text(max_size=8),
    "container": st.text(max_size=20) | JSON, "pid": st.integers() | JSON,
    "networks": st.lists(st.dictionaries(st.sampled_from(
        ["form", "network", "ip", "mac", "mtu", "routes", "mode", "source_macs", "host_shim",
         "other"]), JSON, max_size=5), max_size=9) | JSON})


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=5000) | FIELDS.map(lambda d: json.dumps(d).encode()))
def test_generated_requests_never_raise_anything_else(data):
    """A request decodes to a typed message whose fields have their types, or
    is one ProtocolError line."""
    try:
        message = protocol.decode_request(data)
    except protocol.ProtocolError as e:
        assert "\n" not in str(e)
        return
    if isinstance(message, protocol.Attach):
        assert type(message.pid) is int and isinstance(message.container, str)
        for net in message.networks:
            assert isinstance(net["network"], str)
