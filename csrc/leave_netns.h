/* leave_netns(): move this process out of the network namespace it runs
 * in, to PID 1's or, where that cannot be opened, to a new empty one.
 * For pyctr's short-lived helpers (front.c's cgroup warm-up,
 * netlink_send.c), which need no network of their own: they must never be
 * found as a process of the namespace pyctr works on (`ip netns pids`
 * right after pyctr returns). A socket made before keeps its namespace. */
#ifndef PYCTR_LEAVE_NETNS_H
#define PYCTR_LEAVE_NETNS_H
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

static void leave_netns(void)
{
    int ns = open("/proc/1/ns/net", O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
        (void)unshare(CLONE_NEWNET);
    if (ns >= 0)
        close(ns);
}
#endif
