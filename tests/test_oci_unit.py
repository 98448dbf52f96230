"""The OCI bundle settings pyctr parses, refuses and runs, without root:
process extras, namespaced sysctls, hooks (real processes, no containers),
runc-form run detection, the JSON error log."""
import json
import os

import pytest

from pyctr.errors import PyctrError
from pyctr.oci import cli, errlog, hooks, process, settings
from pyctr.spec import Namespace


def test_process_extras_parse_and_refuse():
    extras = process.parse({"terminal": True, "consoleSize": {"height": 24, "width": 80},
                            "user": {"umask": 18}, "oomScoreAdj": -5,
                            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]})
    assert (extras.terminal, extras.console_size, extras.umask, extras.oom_score_adj) == \
        (True, (24, 80), 18, -5)
    assert extras.rlimits == [("RLIMIT_NOFILE", 10, 20)]
    assert process.RLIMITS["RLIMIT_LOCKS"] == 10  # kernel ABI, absent from `resource`
    for bad, words in (({"apparmorProfile": "p"}, "apparmorProfile"),
                       ({"oomScoreAdj": 1001}, "oomScoreAdj"),
                       ({"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 3, "hard": 2}]},
                        "above its hard limit"),
                       ({"user": {"umask": 0o1000}}, "umask")):
        with pytest.raises(ValueError, match=words):
            process.parse(bad)


def _settings(linux, namespaces=("ipc", "network")):
    return settings.parse({"linux": linux}, "/b", [Namespace(type=t) for t in namespaces])


def test_only_namespaced_sysctls_in_the_containers_own_namespaces():
    ok = _settings({"sysctl": {"kernel.shmmax": 1, "fs.mqueue.msg_max": "5",
                               "net.ipv4.ip_forward": "1"}})
    assert ok.sysctl == {"kernel.shmmax": "1", "fs.mqueue.msg_max": "5",
                         "net.ipv4.ip_forward": "1"}
    for sysctl, namespaces, words in (
            ({"kernel.hostname": "x"}, ("ipc",), "not a namespaced sysctl"),
            ({"net.ipv4.ip_forward": "1"}, ("ipc",), "network namespace"),
            ({"kernel.sem": "1"}, ("network",), "ipc namespace"),
            ({"net.ipv4/../../x": "1"}, ("network",), "not a sysctl name"),
            ({"net..x": "1"}, ("network",), "not a sysctl name")):
        with pytest.raises(ValueError, match=words):
            _settings({"sysctl": sysctl}, namespaces)


def test_refused_linux_fields():
    for linux, words in (({"mountLabel": "x"}, "mountLabel"),
                         ({"rootfsPropagation": "rshared"}, "rootfsPropagation"),
                         ({"intelRdt": {"closID": "x"}}, "intelRdt")):
        with pytest.raises(ValueError, match=words):
            _settings(linux)
    assert _settings({"rootfsPropagation": "rslave"}).rootfs_propagation == "rslave"


def test_hooks_run_in_order_get_the_state_and_time_out(tmp_path):
    from pyctr.syscalls import Syscalls
    log = tmp_path / "log"
    parsed = hooks.parse({"poststop": [
        {"path": "/bin/sh", "args": ["sh", "-c", 'echo "one $(cat)" >> %s' % log]},
        {"path": "/bin/sh", "args": ["sh", "-c", 'echo "two $X" >> %s' % log],
         "env": ["X=y"]}]})
    hooks.run("poststop", parsed["poststop"], json.dumps({"id": "c"}), Syscalls())
    assert log.read_text().splitlines() == ['one {"id": "c"}', "two y"]
    slow = hooks.parse({"poststop": [{"path": "/bin/sleep", "args": ["sleep", "30"],
                                      "timeout": 1}]})["poststop"]
    with pytest.raises(PyctrError, match="timed out after 1 s"):
        hooks.run("poststop", slow, "{}", Syscalls())
    failing = hooks.parse({"prestart": [{"path": "/bin/false"}]})["prestart"]
    with pytest.raises(PyctrError, match="exit status 1"):
        hooks.run("prestart", failing, "{}", Syscalls())
    with pytest.raises(ValueError, match="not a runtime-spec hook"):
        hooks.parse({"prestop": []})


@pytest.mark.parametrize("argv, bundle_run", [
    (["--bundle", "b", "id"], True),
    (["id", "-b", "b"], True),                          # Slurm's order
    (["-d", "--pid-file", "p", "--bundle=b"], True),
    (["--rm", "--bundle", "b"], True),
    (["busybox", "ls", "-b"], False),                   # pyctr's run IMAGE CMD
    (["--bundle", "b", "echo", "hi"], False),           # two words: not runc's
    (["--name", "x", "--bundle", "b"], False),          # not a runc run option
])
def test_which_run(argv, bundle_run):
    assert cli.is_bundle_run(argv) == bundle_run


def test_json_log_line(tmp_path):
    path = str(tmp_path / "log.json")
    errlog.write(path, "json", "error", 'bad "thing"')
    errlog.write(path, "text", "error", 'bad "thing"')
    lines = open(path).read().splitlines()
    entry = json.loads(lines[0])
    assert (entry["level"], entry["msg"]) == ("error", 'bad "thing"')
    assert lines[1].endswith('level=error msg="bad \\"thing\\""')
    assert os.path.getsize(path) > 0


def test_runc_spec_writes_a_starting_config_once(tmp_path):
    from pyctr.oci import template
    from pyctr.oci.bundle import from_config
    from pyctr.verbs.run import _runc_spec_bundle
    assert _runc_spec_bundle([]) == "."
    assert _runc_spec_bundle(["-b", "B"]) == "B" and _runc_spec_bundle(["--bundle=B"]) == "B"
    assert _runc_spec_bundle(["busybox", "sh"]) is None
    assert _runc_spec_bundle(["--bundle", "B", "--hostname", "h"]) is None
    template.write(str(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["process"]["args"] == ["sh"] and config["root"]["path"] == "rootfs"
    (tmp_path / "rootfs").mkdir()
    spec = from_config(config, str(tmp_path))  # pyctr takes what it writes
    assert spec.process.oci.terminal and spec.root.readonly
    with pytest.raises(PyctrError, match="exists already"):
        template.write(str(tmp_path))


def test_start_waits_on_when_the_fifo_is_ready_without_data(tmp_path, monkeypatch):
    """poll may report the exec FIFO ready with nothing to read and a
    writer holding it (a hang-up between two of init's opens): start goes
    on waiting for init's answer instead of failing with a traceback."""
    import threading
    import types
    from pyctr.oci import lifecycle
    fifo = tmp_path / lifecycle.FIFO
    os.mkfifo(fifo)
    reads = []
    real_read = os.read

    def read(fd, n):
        reads.append(fd)
        if len(reads) == 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_read(fd, n)
    monkeypatch.setattr(lifecycle.os, "read", read)

    def init():  # blocks until start opens the FIFO, then answers "0"
        with open(fifo, "wb") as f:
            f.write(b"0")
    writer = threading.Thread(target=init)
    writer.start()
    store = types.SimpleNamespace(dir=lambda name: str(tmp_path))
    state = types.SimpleNamespace(name="c1", process_alive=lambda: True)
    lifecycle._open_barrier(store, state)
    writer.join()
    assert len(reads) == 2 and not fifo.exists()  # answered, and the FIFO is gone
