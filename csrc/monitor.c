/* pyctr-monitor: waits for a running container in place of pyctr's Python
 * process, which costs ~5 MiB of memory per container where this costs
 * a few pages.
 *
 *   pyctr-monitor PID DIRFD -- PROGRAM ARG...
 *
 * pyctr creates and starts the container, then execs this in the same
 * process (pyctr.monitor.hand_over): the container's init (PID) stays its
 * child, and the process the record names as the container's owner stays
 * alive, with the same pid and start time. It waits for PID, forwarding
 * HUP INT QUIT TERM USR1 USR2 WINCH to it (pyctr blocked them before
 * clone; a blocked mask and pending signals survive exec, so none is lost
 * in the handover). Then it writes the exit code CODE (128+N for signal
 * N) to the file `exit` in the container's state directory, open as
 * DIRFD (atomically, by rename: `pyctr ps` and `inspect` read it until
 * the record says it), and execs PROGRAM ARG... CODE: pyctr's `_finished`
 * verb, which records CODE and cleans up, in the same process again, and
 * exits with CODE.
 *
 * It opens no path but `exit` below DIRFD (opened by pyctr before the
 * handover: nothing a container or a reused name could redirect), keeps
 * no other fd but stdin, stdout and stderr, and is not dumpable: with
 * --pid=host the container sees it, but cannot open its /proc/PID/fd or
 * exe. Built static with supervise.c (setup.py), beside pyctr-init. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shim.h"

/* A non-negative int from `text`, or -1. */
static long number(const char *text)
{
    char *end = NULL;
    long n = strtol(text, &end, 10);
    return end != text && !*end && n >= 0 && n <= 0x7fffffff ? n : -1;
}

static void record_exit(int dir, int code)
{
    char text[16];
    int n = snprintf(text, sizeof(text), "%d\n", code);
    int fd = openat(dir, "exit.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return; /* the record is gone (rm -f): nothing to tell */
    ssize_t written = write(fd, text, (size_t)n);
    close(fd);
    if (written == n)
        renameat(dir, "exit.tmp", dir, "exit");
}

int main(int argc, char **argv)
{
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    long pid = argc > 1 ? number(argv[1]) : -1, dir = argc > 2 ? number(argv[2]) : -1;
    if (argc < 5 || pid <= 0 || dir < 3 || strcmp(argv[3], "--")) {
        fprintf(stderr, "usage: pyctr-monitor PID DIRFD -- PROGRAM ARG... (pyctr runs it)\n");
        return 125;
    }
    /* An ignored SIGCHLD would have the kernel reap the container's init
     * before we learn its exit status. */
    signal(SIGCHLD, SIG_DFL);
    for (int fd = 3; fd < dir; fd++)
        close(fd);
    if (syscall(SYS_close_range, (unsigned)dir + 1, ~0U, 0) < 0)
        for (int fd = dir + 1; fd < 1024; fd++)
            close(fd);
    fcntl((int)dir, F_SETFD, FD_CLOEXEC);
    /* Hold no directory of the caller's (it may be a volume of the
     * container, or a mount to be removed); pyctr's paths are absolute. */
    if (chdir("/") < 0)
        return 125;

    int status = pyctr_supervise((int)pid, 0, -1);
    if (status < 0) {
        fprintf(stderr, "pyctr: cannot wait for the container (pid %ld): %s\n", pid,
                strerror(errno));
        return 125;
    }
    int code = pyctr_exit_code(status);
    record_exit((int)dir, code);

    char code_text[16];
    snprintf(code_text, sizeof(code_text), "%d", code);
    int n = argc - 4;
    char **next = calloc((size_t)n + 2, sizeof(*next));
    if (next) {
        memcpy(next, argv + 4, (size_t)n * sizeof(*next));
        next[n] = code_text;
        execv(next[0], next);
    }
    /* The container's record is left for `pyctr gc`: its owner is gone. */
    fprintf(stderr, "pyctr: cannot run %s to clean up after the container: %s\n", argv[4],
            strerror(errno));
    return code;
}
