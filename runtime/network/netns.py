"""Acting inside a container's network namespace without spawning anything.

A netlink socket belongs to the netns that was current when it was created,
and /proc/sys/net shows the current netns. So: setns() into the target,
open the socket and write the sysctls, setns() back. The socket then keeps
talking to the container's netns for as long as we need it.
"""
import os

from pyctr.errors import PyctrError

CLONE_NEWNET = 0x40000000

# Set as the netns defaults before any device is made there, so devices
# born in it inherit them: no IPv6 duplicate address detection delaying
# the link, and a gratuitous ARP on link up / address change, so peers'
# caches follow a reused address at once.
CONTAINER_SYSCTLS = (
    ("net/ipv6/conf/default/accept_dad", "0"),
    ("net/ipv6/conf/all/accept_dad", "0"),
    ("net/ipv4/conf/default/arp_notify", "1"),
    ("net/ipv4/conf/all/arp_notify", "1"),
)


def open_ns(pid):
    """fd of /proc/PID/ns/net (the caller closes it)."""
    try:
        return os.open("/proc/%d/ns/net" % pid, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as e:
        raise PyctrError("container process %d is gone" % pid) from e
    except OSError as e:
        raise PyctrError("open network namespace of pid %d" % pid, e.errno) from e


def enter(ns_fd, sysctls=CONTAINER_SYSCTLS):
    """A Netlink bound to the netns ns_fd, after writing sysctls there."""
    from pyctr.network.rtnl import Netlink

    def inside():
        for key, value in sysctls:
            write_sysctl(key, value)
        return Netlink()

    try:
        return call_in(ns_fd, inside)
    except OSError as e:
        raise PyctrError("enter the container's network namespace", e.errno) from e


def write_sysctl(key, value):
    try:
        fd = os.open("/proc/sys/" + key, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # e.g. IPv6 disabled: nothing to turn off
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
    return True


def call_in(ns_fd, make, syscall=None):
    """make() with this thread in the netns `ns_fd`, then back home. What
    it makes there (a socket, a netlink socket) stays in that netns."""
    from pyctr.syscalls import Syscalls
    syscall = syscall or Syscalls()
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        syscall.setns(ns_fd, CLONE_NEWNET)
        try:
            return make()
        finally:
            try:
                syscall.setns(home, CLONE_NEWNET)
            except OSError as e:  # we would act on the wrong netns from now on
                raise SystemExit("pyctr: cannot return to own network namespace: %s" % e) from e
    finally:
        os.close(home)
