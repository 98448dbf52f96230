/* pyctr-init: the PID 1 of a container run with --init.
 *
 *   PYCTR_INIT_REPORT=FD:TAG PYCTR_INIT_PATH=PATH pyctr-init -- ARGV0 [ARG...]
 *
 * Forks the workload (execve PATH with ARGV0 ARG... and this environment
 * less the two PYCTR_INIT_ variables, which keep `ps` tidy),
 * forwards HUP INT QUIT TERM USR1 USR2 WINCH to it, reaps every child that
 * ends up here, and exits with the workload's code (128+N if signal N
 * killed it).
 *
 * If the workload cannot be exec'd, its process writes one report to
 * FD, as pyctr's own child does (pyctr.sync): TAG, then
 * "exec\0ERRNO\0ARGV0: why", in one write. The fd is close-on-exec in the
 * workload and closed here right after fork, so pyctr sees end-of-file
 * when the exec succeeded.
 *
 * Built static with supervise.c (setup.py): the container's root need not have a libc.
 * pyctr execs it from a sealed memfd, and it makes itself not dumpable:
 * the container's processes can neither open nor change this binary
 * through /proc/1/exe. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shim.h"

static void report(int fd, const char *tag, const char *argv0, int err)
{
    const char *why = err == ENOENT ? "executable file not found in $PATH" : strerror(err);
    char buf[4096];
    /* %c with 0 writes the NUL that separates two fields. */
    int n = snprintf(buf, sizeof(buf), "%sexec%c%d%c%s: %s", tag, 0, err, 0, argv0, why);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    ssize_t rc;
    do
        rc = write(fd, buf, (size_t)n);
    while (rc < 0 && errno == EINTR);
}

int main(int argc, char **argv)
{
    /* Before anything else: while it is dumpable, a process of the
     * container could open /proc/1/exe and /proc/1/fd. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    const char *channel = getenv("PYCTR_INIT_REPORT"), *path = getenv("PYCTR_INIT_PATH");
    const char *colon = channel ? strchr(channel, ':') : NULL;
    if (argc < 3 || strcmp(argv[1], "--") || !colon || !path) {
        fprintf(stderr, "usage: PYCTR_INIT_REPORT=FD:TAG PYCTR_INIT_PATH=PATH "
                        "pyctr-init -- ARGV0 [ARG...]\n");
        return 125;
    }
    int report_fd = atoi(channel);
    char tag[16];
    snprintf(tag, sizeof(tag), "%s", colon + 1);
    char *path_copy = strdup(path);
    if (path_copy == NULL)
        return 125;
    path = path_copy;
    unsetenv("PYCTR_INIT_REPORT");
    unsetenv("PYCTR_INIT_PATH");
    char **child_argv = argv + 2;

    /* Blocked from now on (the signals pyctr forwards, and SIGCHLD), so
     * none is lost before pyctr_supervise waits; the blocked signals stay
     * queued even though PID 1 has no handler for them. */
    if (pyctr_block_signals() < 0) {
        report(report_fd, tag, child_argv[0], errno);
        return 125;
    }
    pid_t pid = fork();
    if (pid < 0) {
        report(report_fd, tag, child_argv[0], errno);
        return 125;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        fcntl(report_fd, F_SETFD, FD_CLOEXEC);
        execve(path, child_argv, environ);
        int err = errno;
        report(report_fd, tag, child_argv[0], err);
        _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
    }
    /* The workload has every fd it should (--preserve-fds); PID 1 keeps
     * none, so pipes it inherited reach end-of-file when they should. */
    if (syscall(SYS_close_range, 3U, ~0U, 0) < 0)
        for (int fd = 3; fd < 1024; fd++)
            close(fd);

    /* Every child that ends up here is reaped (reap_all): orphans of the
     * container are re-parented to PID 1. */
    int status = pyctr_supervise(pid, 1, -1);
    if (status < 0)
        return 125; /* cannot happen: the workload is our child */
    return pyctr_exit_code(status);
}
