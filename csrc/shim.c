/* See shim.h. Kept deliberately small: policy lives in Python. */
#define _GNU_SOURCE
#include <errno.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM,
                                SIGUSR1, SIGUSR2, SIGWINCH};
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

long pyctr_clone(unsigned long flags)
{
    /* x86_64 and aarch64 agree on the argument order for a NULL stack. */
    return syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

int pyctr_unshare(int flags) { return unshare(flags); }
int pyctr_setns(int fd, int nstype) { return setns(fd, nstype); }

int pyctr_mount(const char *source, const char *target, const char *fstype,
                unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data);
}

int pyctr_umount2(const char *target, int flags) { return umount2(target, flags); }

int pyctr_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int pyctr_sethostname(const char *name, size_t len) { return sethostname(name, len); }

int pyctr_close_range(unsigned int first, unsigned int last, int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

int pyctr_loopback_up(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strcpy(ifr.ifr_name, "lo");
    int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

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

int pyctr_reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        sigaction(sig, &sa, NULL); /* SIGKILL/SIGSTOP fail harmlessly */
    sigset_t none;
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

int pyctr_supervise(int pid, int reap_all)
{
    sigset_t set;
    forwarded_set(&set);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    for (;;) {
        /* Reap first: the child may have exited before we got here. */
        int status, got;
        while ((got = waitpid(reap_all ? -1 : pid, &status, WNOHANG)) > 0)
            if (got == pid)
                return status;
        if (got < 0 && errno != EINTR)
            return -1;
        siginfo_t info;
        int sig = sigwaitinfo(&set, &info);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (sig != SIGCHLD)
            kill(pid, sig);
    }
}
