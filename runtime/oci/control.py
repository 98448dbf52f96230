"""Acting on a container's processes: kill [--all], pause, resume, and
finding them (ps, kill --all, delete).

A container's processes are those of its cgroup when its record names one
(pyctr.cgroups' record, "cgroup"), else those in its own pid namespace,
else its init alone. Pausing uses the cgroup freezer: the container's
cgroup (pyctr.cgroups.freeze/thaw), or, for a container without one, a
freezer cgroup made on first pause in cgroup v1's separate freezer
hierarchy (so no other controller moves the processes: "freezer" in the
record); it is removed at delete.
"""
import os
import time

from pyctr.errors import PyctrError
from pyctr.state import is_alive

FREEZER_V1 = "/sys/fs/cgroup/freezer"


def processes(record):
    """Host pids of the container's live processes, init first."""
    pid = record.get("pid")
    if not is_alive(pid, record.get("pid_start")):
        return []
    pids = _group_pids(record) or _namespace_pids(pid)
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


def _group_pids(record):
    if record.get("cgroup"):
        from pyctr import cgroups
        group = cgroups.Group.from_record(record["cgroup"])
        return _cgroup_pids(group.process_dirs()[0]) if group else []
    return _cgroup_pids(record["freezer"]) if record.get("freezer") else []


def _cgroup_pids(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(line) for line in f if line.strip()]
    except OSError:
        return []


def kill(record, sig, all_processes=False):
    """The words containerd's shim looks for when the process is gone."""
    if not is_alive(record.get("pid"), record.get("pid_start")):
        raise PyctrError("container not running")
    if all_processes:
        kill_all(record, sig)
        return
    try:
        os.kill(record["pid"], sig)
    except ProcessLookupError as e:
        raise PyctrError("container not running") from e


def kill_all(record, sig):
    """Signal every process; a frozen container is thawed after SIGKILL so
    the signal is acted on."""
    for pid in processes(record):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    if record.get("paused"):
        _freeze(record, False)


def wait_gone(record, timeout=10.0):
    """Until init has exited (its parent, the engine, may not have reaped it)."""
    deadline = time.monotonic() + timeout
    while is_alive(record.get("pid"), record.get("pid_start")):
        if time.monotonic() > deadline:
            raise PyctrError("container %s did not exit within %d s" % (record["name"], timeout))
        time.sleep(0.01)


def pause(store, record):
    if not is_alive(record.get("pid"), record.get("pid_start")):
        raise PyctrError("container not running")
    if not record.get("cgroup") and not record.get("freezer"):
        record["freezer"] = _own_freezer(record)
        store.write(record["name"], record)
    _freeze(record, True)
    record["paused"] = True
    store.write(record["name"], record)


def resume(store, record):
    if not record.get("paused"):
        raise PyctrError("container %s is not paused" % record["name"])
    _freeze(record, False)
    record["paused"] = False
    store.write(record["name"], record)


def _own_freezer(record):
    """A v1 freezer cgroup holding the container's processes. Processes a
    member forks meanwhile are born in it; the loop catches the rest."""
    if not os.path.isdir(FREEZER_V1):
        raise PyctrError("pause needs the cgroup v1 freezer or a cgroup of the container's "
                         "own (linux.cgroupsPath): neither is there")
    path = os.path.join(FREEZER_V1, "pyctr", record["name"])
    os.makedirs(path, exist_ok=True)
    record["freezer"] = path
    while True:
        outside = set(_namespace_pids(record["pid"])) - set(_cgroup_pids(path))
        if not outside:
            return path
        for pid in outside:
            try:
                with open(os.path.join(path, "cgroup.procs"), "w") as f:
                    f.write(str(pid))
            except ProcessLookupError:
                pass


def _freeze(record, frozen):
    if record.get("cgroup"):
        from pyctr import cgroups
        (cgroups.freeze if frozen else cgroups.thaw)(record)
        return
    try:
        with open(os.path.join(record["freezer"], "freezer.state"), "w") as f:
            f.write("FROZEN" if frozen else "THAWED")
    except OSError as e:
        raise PyctrError("cannot %s container %s: %s" % (
            "freeze" if frozen else "thaw", record["name"], e.strerror)) from e


def remove_groups(record):
    """The container's cgroup and the freezer made for it, once its
    processes are gone."""
    if record.get("cgroup"):
        from pyctr import cgroups
        cgroups.remove(record)
    path = record.get("freezer")
    if path:
        try:
            os.rmdir(path)
        except FileNotFoundError:
            pass
