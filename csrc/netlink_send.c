/* pyctr-netlink-send: make one rtnetlink request in a process nobody waits
 * for, and report its outcome.
 *
 *   pyctr-netlink-send < REQUEST     (fd 3: the status pipe)
 *
 * Why: deleting a network device blocks the process that asked, inside the
 * kernel, for an RCU barrier (10-30 ms on these machines) after the device
 * is already gone from its namespace (unlisted, no longer a bridge port).
 * pyctr needs the device gone, not the barrier: it spawns this program,
 * which forks and exits at once (so pyctr reaps it at once and nothing is
 * left as pyctr's child); the forked process sends the request on its own
 * rtnetlink socket, in the network namespace it inherited (pyctr's current
 * one), and writes the 4-byte errno of the answer (0: done) to fd 3.
 * pyctr returns as soon as the device is unlisted or the status says why
 * not (network/rtnl.py, Netlink.delete_link). A status pyctr no longer
 * reads is dropped: SIGPIPE is ignored.
 *
 * REQUEST is one complete netlink message (header included, NLM_F_ACK
 * set), at most 4 KiB. The forked process keeps no fd but the socket and
 * fd 3 (stdin, stdout and stderr go: a pipe held open would delay its
 * reader's end of file), and once its socket is made it leaves the network
 * namespace (leave_netns.h); it is not dumpable. Static (setup.py), with an
 * empty environment. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "leave_netns.h"

#define STATUS_FD 3

static void report(int32_t err)
{
    ssize_t n;
    do
        n = write(STATUS_FD, &err, sizeof(err));
    while (n < 0 && errno == EINTR);
}

/* The errno of the answer to the request with sequence number `seq`. */
static int32_t answer(int sock, uint32_t seq)
{
    char buf[8192];
    for (;;) {
        ssize_t n = recv(sock, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR)
                continue;
            if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr)))
                return EPROTO;
            return -((struct nlmsgerr *)NLMSG_DATA(h))->error;
        }
    }
}

int main(void)
{
    char request[4096];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(request) && (n = read(0, request + len, sizeof(request) - len)) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        len += (size_t)n;
    }
    struct nlmsghdr *h = (struct nlmsghdr *)request;
    if (len < sizeof(*h) || h->nlmsg_len != len)
        return 2;
    pid_t pid = fork();
    if (pid != 0)
        return pid < 0 ? 1 : 0; /* pyctr waits for this: at once */
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_DUMPABLE, 0); /* a root process a --pid=host container may see */
    close(0);
    close(1);
    close(2);
    syscall(SYS_close_range, STATUS_FD + 1, ~0U, 0);
    int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (sock < 0) {
        report(errno);
        return 1;
    }
    struct sockaddr_nl local = {.nl_family = AF_NETLINK};
    if (bind(sock, (struct sockaddr *)&local, sizeof(local)) < 0) {
        report(errno);
        return 1;
    }
    leave_netns();
    if (send(sock, request, len, 0) < 0) {
        report(errno);
        return 1;
    }
    report(answer(sock, h->nlmsg_seq));
    return 0;
}
