"""The process attributes the C shim sets (prctl, capset), read back with
python-prctl: an independent reader, as pyroute2 is for the netlink
encoder. pyctr sets them through its own shim (one extension module
loaded per run, not two), so a wrong constant or mask there would pass
every test that only asks the shim."""
import os
import signal

import prctl
import pytest

from pyctr import syscalls

CAP_NET_RAW, CAP_SETPCAP, CAP_SYS_ADMIN, CAP_KILL = 13, 8, 21, 5


def in_child(check):
    """Run check() in a forked child (the attributes stick to a process);
    the child's exit status says whether it held."""
    pid = os.fork()
    if pid == 0:
        try:
            check()
            os._exit(0)
        except BaseException as e:  # reported through the status
            os.write(2, ("%r\n" % e).encode())
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_no_new_privs_dumpable_keepcaps_and_pdeathsig_read_back():
    def check():
        s = syscalls.Syscalls()
        s.set_no_new_privs()
        s.set_dumpable(False)
        s.set_keepcaps(True)
        s.set_pdeathsig(signal.SIGKILL)
        assert prctl.get_no_new_privs() == 1
        assert not prctl.get_dumpable()
        assert prctl.get_keepcaps()
        assert prctl.get_pdeathsig() == signal.SIGKILL
    assert in_child(check) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping capabilities needs root")
def test_bounding_and_thread_sets_read_back():
    def check():
        s = syscalls.Syscalls()
        s.drop_bounding([CAP_NET_RAW, CAP_SETPCAP, CAP_KILL])
        assert prctl.capbset.net_raw and prctl.capbset.kill
        assert not prctl.capbset.sys_admin
        # every other one, up to the kernel's last, is gone (the kernel's own word)
        with open("/proc/self/status") as f:
            bounding = next(int(l.split()[1], 16) for l in f if l.startswith("CapBnd:"))
        assert bounding == (1 << CAP_NET_RAW) | (1 << CAP_SETPCAP) | (1 << CAP_KILL)
        s.set_capabilities(effective=[CAP_NET_RAW], permitted=[CAP_NET_RAW, CAP_KILL],
                           inheritable=[CAP_KILL])
        assert prctl.cap_effective.net_raw and not prctl.cap_effective.kill
        assert prctl.cap_permitted.net_raw and prctl.cap_permitted.kill
        assert prctl.cap_inheritable.kill and not prctl.cap_inheritable.net_raw
        assert not prctl.cap_permitted.sys_admin
    assert in_child(check) == 0
