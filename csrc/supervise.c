/* Waiting for a container's process while passing signals on to it: the
 * one loop shared by the cffi shim (pyctr's Python parent, `pyctr exec`),
 * pyctr-init (PID 1 of --init) and pyctr-monitor (the parent once Python
 * has handed over). Prototypes and their contracts: shim.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "shim.h"

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM,
                                SIGUSR1, SIGUSR2, SIGWINCH};
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static void forwarded_set(sigset_t *set)
{
    sigemptyset(set);
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaddset(set, forwarded[i]);
    sigaddset(set, SIGCHLD);
}

int pyctr_block_signals(void)
{
    sigset_t set;
    forwarded_set(&set);
    return sigprocmask(SIG_BLOCK, &set, NULL);
}

/* What is left until `deadline` in `left`; 0 once it has passed. */
static int time_left(const struct timespec *deadline, struct timespec *left)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long ns = (deadline->tv_sec - now.tv_sec) * 1000000000LL +
                   (deadline->tv_nsec - now.tv_nsec);
    if (ns <= 0)
        return 0;
    left->tv_sec = ns / 1000000000LL;
    left->tv_nsec = ns % 1000000000LL;
    return 1;
}

int pyctr_supervise(int pid, int reap_all, int timeout_ms)
{
    sigset_t set;
    forwarded_set(&set);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    struct timespec deadline, left;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        long long ns = deadline.tv_nsec + (timeout_ms % 1000) * 1000000LL;
        deadline.tv_sec += timeout_ms / 1000 + ns / 1000000000LL;
        deadline.tv_nsec = ns % 1000000000LL;
    }
    for (;;) {
        /* Reap first: the child may have exited before we got here. */
        int status, got;
        while ((got = waitpid(reap_all ? -1 : pid, &status, WNOHANG)) > 0)
            if (got == pid)
                return status;
        if (got < 0 && errno != EINTR)
            return -1;
        int sig;
        if (timeout_ms < 0) {
            sig = sigwaitinfo(&set, NULL);
        } else if (time_left(&deadline, &left)) {
            sig = sigtimedwait(&set, NULL, &left); /* EAGAIN when it runs out */
        } else {
            errno = EAGAIN;
            return -1;
        }
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (sig != SIGCHLD)
            kill(pid, sig);
    }
}

int pyctr_exit_code(int status)
{
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
