/* See shim.h. Kept deliberately small: policy lives in Python. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
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

static int load_filter(const void *filter, size_t filter_len)
{
    struct sock_fprog prog = {
        .len = (unsigned short)(filter_len / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)filter,
    };
    if (filter_len % sizeof(struct sock_filter) || prog.len * sizeof(struct sock_filter) != filter_len) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

int pyctr_seccomp_load(const void *filter, size_t filter_len)
{
    return load_filter(filter, filter_len);
}

int pyctr_exec(int fd, const char *path, char *const argv[], char *const envp[],
               const void *filter, size_t filter_len)
{
    if (filter_len && load_filter(filter, filter_len) < 0)
        return -1;
    if (fd >= 0)
        return (int)syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
    return execve(path, argv, envp);
}

int pyctr_join_session_keyring(void)
{
    return (int)syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL);
}

/* libseccomp returns -errno; the shim's convention is -1 and errno. */
static int scmp_rc(int rc)
{
    if (rc < 0) {
        errno = -rc;
        return -1;
    }
    return rc;
}

void *pyctr_seccomp_new(uint32_t default_action)
{
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (ctx == NULL) {
        errno = EINVAL;
        return NULL;
    }
    /* A binary tree of syscall numbers rather than a linear list: fewer
     * instructions per syscall for long allow lists (libseccomp >= 2.5). */
    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    return ctx;
}

int pyctr_seccomp_arch(void *ctx, const char *name)
{
    uint32_t token = seccomp_arch_resolve_name(name);
    if (token == 0) {
        errno = EINVAL;
        return -1;
    }
    int rc = seccomp_arch_add(ctx, token);
    return rc == -EEXIST ? 0 : scmp_rc(rc);
}

int pyctr_seccomp_syscall(const char *name)
{
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR ? -1 : nr;
}

int pyctr_seccomp_rule(void *ctx, uint32_t action, int nr, unsigned int count,
                       const unsigned int *index, const int *op,
                       const uint64_t *value, const uint64_t *value_two)
{
    struct scmp_arg_cmp cmp[6];
    if (count > 6) {
        errno = EINVAL;
        return -1;
    }
    for (unsigned int i = 0; i < count; i++) {
        cmp[i].arg = index[i];
        cmp[i].op = (enum scmp_compare)op[i];
        cmp[i].datum_a = value[i];
        cmp[i].datum_b = value_two[i];
    }
    return scmp_rc(seccomp_rule_add_array(ctx, action, nr, count, cmp));
}

int pyctr_seccomp_export(void *ctx, int fd)
{
    return scmp_rc(seccomp_export_bpf(ctx, fd));
}

void pyctr_seccomp_free(void *ctx) { seccomp_release(ctx); }
