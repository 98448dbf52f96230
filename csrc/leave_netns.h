/* leave_netns(): move this process out of the network namespace it runs
 * in, to PID 1's or, where that cannot be opened, to a new empty one.
 * For pyctr's short-lived helpers (front.c's cgroup warm-up,
 * netlink_send.c), which need no network of their own: they must never be
 * found as a process of the namespace pyctr works on (`ip netns pids`
 * right after pyctr returns). A socket made before keeps its namespace.
 *
 * A process already in the host's initial namespace stays: that is where
 * it would go. Recent kernels (6.18 here) number the initial network
 * namespace like the other initial ones, with a fixed inode; there a
 * PID 1 that cannot be opened (not dumpable: a VM's agent) no longer
 * costs every helper a namespace made and torn down (most of that CPU in
 * a kernel worker). Older kernels give it a dynamic number
 * (0xF0000000 and up), never this one, and take the path below. */
#ifndef PYCTR_LEAVE_NETNS_H
#define PYCTR_LEAVE_NETNS_H
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#define INITIAL_NETNS_INODE 0xEFFFFFF9U /* NET_NS_INIT_INO, linux/nsfs.h */

static void leave_netns(void)
{
    struct stat own;
    if (stat("/proc/self/ns/net", &own) == 0 && own.st_ino == INITIAL_NETNS_INODE)
        return;
    int ns = open("/proc/1/ns/net", O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) < 0)
        (void)unshare(CLONE_NEWNET);
    if (ns >= 0)
        close(ns);
}
#endif
