"""Acting on a container's processes: kill [--all], pause, resume, and
finding them (ps, kill --all, delete).

A container's processes are those of its cgroup when its state names one
(state.cgroup, pyctr.cgroups' record), else those in its own pid
namespace, else its init alone. Pausing uses the cgroup freezer: the
container's cgroup (pyctr.cgroups.freeze/thaw), or, for a container
without one, a freezer cgroup made on first pause in cgroup v1's separate
freezer hierarchy (so no other controller moves the processes;
state.oci["freezer"]); it is removed at delete.
"""
import time

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError

FREEZER_V1 = "/sys/fs/cgroup/freezer"


def processes(state):
    """Host pids of the container's live processes, init first."""
    pid = state.pid
    if not state.process_alive():
        return []
    pids = _group_pids(state) or _namespace_pids(pid)
    return [pid] + sorted(p for p in pids if p != pid)


def _namespace_pids(pid):
    """The processes in init's pid namespace, if it is not the host's."""
    try:
        own = os.stat("/proc/%d/ns/pid" % pid).st_ino
    except OSError:
        return []
    if own == os.stat("/proc/self/ns/pid").st_ino:
        return [pid]  # the host's pid namespace: only init is known to be ours
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat("/proc/%s/ns/pid" % entry).st_ino == own:
                    pids.append(int(entry))
            except OSError:
                continue  # gone meanwhile
    return pids


def _group_pids(state):
    if state.cgroup:
        from pyctr import cgroups
        group = cgroups.Group.from_record(state.cgroup)
        return _cgroup_pids(group.process_dirs()[0]) if group else []
    freezer = _freezer(state)
    return _cgroup_pids(freezer) if freezer else []


def _freezer(state):
    return (state.oci or {}).get("freezer")


def _cgroup_pids(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


def kill(state, sig, all_processes=False):
    """The words containerd's shim looks for when the process is gone."""
    if not state.process_alive():
        raise PyctrError("container not running")
    if all_processes:
        kill_all(state, sig)
        return
    try:
        os.kill(state.pid, sig)
    except ProcessLookupError as e:
        raise PyctrError("container not running") from e


def kill_all(state, sig):
    """Signal every process; a frozen container is thawed after SIGKILL so
    the signal is acted on."""
    for pid in processes(state):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if state.status == "paused":
        _freeze(state, False)


def wait_gone(state, timeout=10.0, alive=None):
    """Until init (or what `alive` asks about) has exited; its parent, the
    engine, may not have reaped it yet."""
    alive = alive or state.process_alive
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            raise PyctrError("container %s did not exit within %d s" % (state.name, timeout))
        time.sleep(0.01)


def pause(store, state):
    if state.live_status() != "running":
        raise PyctrError("cannot pause container %s: it is %s" % (state.name, state.live_status()))
    if not state.cgroup and not _freezer(state):
        state.oci = dict(state.oci or {}, freezer=_own_freezer(state))
        store.save(state)  # recorded before use: delete removes it whatever happens next
    _freeze(state, True)
    state.status = "paused"
    store.save(state)


def resume(store, state):
    if state.live_status() != "paused":
        raise PyctrError("container %s is not paused" % state.name)
    _freeze(state, False)
    state.status = "running"
    store.save(state)


def _own_freezer(state):
    """A v1 freezer cgroup holding the container's processes. Processes a
    member forks meanwhile are born in it; the loop catches the rest."""
    if not os.path.isdir(FREEZER_V1):
        raise PyctrError("pause needs the cgroup v1 freezer or a cgroup of the container's "
                         "own (pyctr.cgroups): neither is there")
    path = os.path.join(FREEZER_V1, "pyctr", state.name)
    os.makedirs(path, exist_ok=True)
    while True:
        outside = set(_namespace_pids(state.pid)) - set(_cgroup_pids(path))
        if not outside:
            return path
        for pid in outside:
            try:
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except ProcessLookupError:
                pass


def _freeze(state, frozen):
    if state.cgroup:
        from pyctr import cgroups
        (cgroups.freeze if frozen else cgroups.thaw)(state)
        return
    try:
        with open(os.path.join(_freezer(state), "freezer.state"), "w") as f:
            f.write("FROZEN" if frozen else "THAWED")
    except OSError as e:
        raise PyctrError("cannot %s container %s: %s" % (
            "freeze" if frozen else "thaw", state.name, e.strerror)) from e


def remove_groups(state):
    """The container's cgroup and the freezer made for it, once its
    processes are gone."""
    if state.cgroup:
        from pyctr import cgroups
        cgroups.remove(state)
    path = _freezer(state)
    if path:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
