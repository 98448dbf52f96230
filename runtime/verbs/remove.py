"""`pyctr kill`, `pyctr rm`, `pyctr gc`: signals, removal, and repair
after crashes. Removal works from the record alone (container.teardown)."""
import time

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.cli import Opt, parse_options
from pyctr.errors import PyctrError
from pyctr.verbs.show import names_verb

SIGKILL = 9


def signal_number(text):
    # _signal, not signal: signal's Signals enum costs `kill` the import of enum.
    import _signal
    if text.isdigit():
        number = int(text)
        if not 0 < number < _signal.NSIG:
            raise PyctrError("unknown signal %s (1 to %d)" % (text, _signal.NSIG - 1))
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    # signal.Signals' members: the SIG* names, not SIG_DFL, SIG_IGN, SIG_BLOCK ...
    value = getattr(_signal, name, None) if name.isidentifier() and "_" not in name else None
    if not isinstance(value, int):
        raise PyctrError("unknown signal %r" % text)
    return value


def cmd_kill(paths, argv):
    """pyctr's kill [-s SIGNAL] NAME..., and runc's kill [--all] ID [SIGNAL]
    (two words, the second a signal)."""
    args = names_verb("kill", "Send a signal (default TERM) to containers' PID 1.",
                      [Opt("-s --signal", help="name or number"),
                       Opt("-a --all", "bool", "every process of the container, not only init")],
                      argv)
    if args is None:
        return 0
    names, signal = args["names"], args["signal"]
    if len(names) == 2 and not signal and _is_signal(names[1]):
        names, signal = names[:1], names[1]
    sig = signal_number(signal or "TERM")
    from pyctr.oci import control, lifecycle
    for name in names:
        control.kill(lifecycle.load(paths, name)[1], sig, args["all"])
    return 0


def _is_signal(text):
    try:
        signal_number(text)
        return True
    except PyctrError:
        return False


def cmd_rm(paths, argv):
    args = names_verb("rm", "Remove containers.",
                      [Opt("-f --force", "bool", "kill them first if running")], argv)
    if args is None:
        return 0
    from pyctr.state import DamagedRecord, StateStore
    store = StateStore(paths)
    states, problems = [], []
    for name in dict.fromkeys(args["names"]):  # each once, in the order given
        try:
            states.append(store.load(name))
        except DamagedRecord as e:
            if not args["force"]:
                problems.append(str(e))
            else:  # as gc does: nothing can use it; what it held, gc finds ownerless
                store.remove(name)
        except PyctrError as e:
            problems.append(str(e))
    for state in states:
        if state.oci is not None:  # a bundle's: as its `delete` would (hooks, groups)
            from pyctr.oci.lifecycle import delete
            try:
                delete(paths, state.name, args["force"])
            except PyctrError as e:
                problems.append(str(e))
    problems += remove_many(paths, [s for s in states if s.oci is None], args["force"])
    if problems:
        raise PyctrError("; ".join(problems))
    return 0


def remove(paths, state, force):
    """Kill (if forced) and remove one container: network, record."""
    problems = remove_many(paths, [state], force)
    if problems:
        raise PyctrError(problems[0])


def remove_many(paths, states, force):
    """Kill (if forced) and remove containers: network, record. All are
    killed first and waited for together, so their owners clean up side by
    side and 1,000 containers take about as long as the slowest owner, not
    the sum. Returns why some were not removed (one line each)."""
    from pyctr.container import teardown
    from pyctr.state import StateStore
    problems, going = [], []
    for state in states:
        if state.process_alive() and not force:
            problems.append("container %s is running (stop it or use rm -f)" % state.name)
        elif not force and state.status == "creating" and _other_owner_alive(state):
            problems.append("container %s is being created (use rm -f)" % state.name)
        else:
            going.append(state)
    if force:
        # A container waited for by pyctr-monitor: stop the monitor first,
        # so it does not start Python to clean up what is removed here
        # anyway (1,000 of those at once would each cost an interpreter).
        for state in going:
            if _waited_by_monitor(state):
                try:
                    os.kill(state.owner_pid, SIGKILL)
                except ProcessLookupError:
                    pass
    killed = [state for state in going if state.process_alive()]
    for state in killed:
        try:
            os.kill(state.pid, SIGKILL)
        except ProcessLookupError:
            pass
    _wait_all_gone(killed, lambda state: state.process_alive())
    # Let each container's owner (run or the -d monitor) finish its own
    # cleanup first, so the two never remove the same things at once.
    owned = [state for state in going if _other_owner_alive(state)]
    _wait_all_gone(owned, _other_owner_alive)
    owned = {state.name for state in owned}
    store = StateStore(paths)
    for state in going:
        if state.name in owned:  # its owner released what it could: the record says what is left
            try:
                state = store.load(state.name)
            except PyctrError:
                continue  # the owner removed it (run --rm)
        teardown(paths, state)
    return problems


def _waited_by_monitor(state):
    """The record's owner is alive and is pyctr-monitor (not the Python
    that hands over to it, nor `_finished` after it)."""
    if state.owner_pid == os.getpid() or not state.owner_alive():
        return False
    try:
        with open("/proc/%d/comm" % state.owner_pid, "rb") as f:
            return f.read().strip() == b"pyctr-monitor"
    except OSError:
        return False


def _other_owner_alive(state):
    return state.owner_pid != os.getpid() and state.owner_alive()


def _wait_all_gone(states, alive, patience=5.0):
    """Wait until alive(state) is false for every state, or until none has
    gone for `patience` seconds."""
    waiting = list(states)
    deadline = time.monotonic() + patience
    while waiting and time.monotonic() < deadline:
        still = [state for state in waiting if alive(state)]
        if len(still) < len(waiting):
            deadline = time.monotonic() + patience
        waiting = still
        if waiting:
            time.sleep(0.01)


def _live_ids(store):
    """Ids of the containers whose record exists and is not dead."""
    live = set()
    for name in store.names():
        try:
            st = store.load(name)
        except PyctrError:
            continue
        if st.process_alive() or st.owner_alive():
            live.add(st.id)
    return live


def cmd_gc(paths, argv):
    if parse_options("gc", "Remove what crashed pyctr processes left behind. Idempotent.",
                     [], argv) is None:
        return 0
    from pyctr.state import DamagedRecord, StateStore, remove_tree
    store = StateStore(paths)
    removed = []
    for path in store.stale_reservations():
        remove_tree(path)
        removed.append("half-created container record %s" % os.path.basename(path))
    for name in store.names():
        try:
            st = store.load(name)
        except DamagedRecord:
            store.remove(name)  # nothing can use it
            removed.append("container %s (damaged record)" % name)
            continue
        except PyctrError:
            continue  # removed meanwhile
        if st.oci and st.oci.get("engine"):
            continue  # a `create`d container: a stopped one waits for the engine's delete
        if st.crashed():
            remove(paths, st, force=True)
            removed.append("container %s" % name)
    from pyctr import cgroups, images, network, seccomp
    removed += seccomp.gc(paths)
    removed += cgroups.gc(paths, lambda: _live_ids(store))
    removed += network.gc(paths)
    removed += images.gc(paths)
    for item in removed:
        print(network.gc_line(item))
    return 0
