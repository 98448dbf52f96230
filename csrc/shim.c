/* See shim.h. Kept deliberately small: policy lives in Python. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <linux/filter.h>
#include <linux/keyctl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h> /* RENAME_EXCHANGE */
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clone3.h"
#include "shim.h"

long pyctr_clone(unsigned long flags)
{
    /* x86_64 and aarch64 agree on the argument order for a NULL stack. */
    return syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, NULL);
}

long pyctr_clone_into(unsigned long flags, int cgroup_fd)
{
    struct pyctr_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags | PYCTR_CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)cgroup_fd;
    /* no stack: the child returns on a copy of this one, as from fork() */
    return syscall(SYS_clone3, &args, sizeof(args));
}

int pyctr_unshare(int flags) { return unshare(flags); }
int pyctr_setns(int fd, int nstype) { return setns(fd, nstype); }

int pyctr_mount(const char *source, const char *target, const char *fstype,
                unsigned long flags, const char *data)
{
    return mount(source, target, fstype, flags, data);
}

int pyctr_umount2(const char *target, int flags) { return umount2(target, flags); }

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442 /* the same on every architecture */
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* struct mount_attr of linux/mount.h, which glibc's sys/mount.h clashes with */
struct pyctr_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

int pyctr_mount_setattr(int fd, unsigned long long attr_set, int recursive)
{
    struct pyctr_mount_attr attr = {attr_set, 0, 0, 0};
    return (int)syscall(SYS_mount_setattr, fd, "",
                        AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), &attr, sizeof(attr));
}

int pyctr_pivot_root(const char *new_root, const char *put_old)
{
    return (int)syscall(SYS_pivot_root, new_root, put_old);
}

int pyctr_sethostname(const char *name, size_t len) { return sethostname(name, len); }

int pyctr_close_range(unsigned int first, unsigned int last, int flags)
{
    return (int)syscall(SYS_close_range, first, last, flags);
}

int pyctr_rename_exchange(const char *a, const char *b)
{
    return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

int pyctr_channel_pair(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds);
}

long pyctr_channel_send(int sock, const char *data, size_t len, int fd)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {(void *)data, len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&control, 0, sizeof(control));
        msg.msg_control = &control;
        msg.msg_controllen = sizeof(control);
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    ssize_t n;
    do
        n = sendmsg(sock, &msg, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

long pyctr_channel_recv(int sock, char *buf, size_t size, int flags, int *fd)
{
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int) * 4)];
    } control;
    *fd = -1;
    ssize_t n;
    struct msghdr msg;
    do {
        struct iovec iov = {buf, size};
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = &control;
        msg.msg_controllen = sizeof(control);
        n = recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
        /* ECONNRESET: the other end closed with a message of ours unread
         * (a child that failed before reading IDS); the kernel says so
         * once, ahead of what that end sent before, still queued */
    } while (n < 0 && (errno == EINTR || errno == ECONNRESET));
    if (n < 0)
        return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int got;
            memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (*fd < 0)
                *fd = got;
            else
                close(got);  /* one fd per message: a smuggled extra goes */
        }
    }
    return n;
}

#ifndef SYS_openat2
#define SYS_openat2 437 /* the same on every architecture */
#endif

int pyctr_open_in_root(int root_fd, const char *path, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof(how));
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
}

static int close_keeping_errno(int fd)
{
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

/* A writable copy of `path` in buf[PATH_MAX]. */
static int copy_path(char *buf, const char *path)
{
    size_t len = strlen(path);
    if (len >= PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, len + 1);
    return 0;
}

int pyctr_mkdir_in_root(int root_fd, const char *path, int mode)
{
    /* Mostly the directory is there (the image's /proc, /dev, /sys, or
     * made by an earlier step): one lookup, resolved in the root. */
    int dir = pyctr_open_in_root(root_fd, path, O_PATH | O_DIRECTORY);
    if (dir >= 0 || errno != ENOENT)
        return dir;
    char prefix[PATH_MAX];
    if (copy_path(prefix, path) < 0)
        return -1;
    char *last = prefix + strlen(prefix);
    while (last > prefix + 1 && last[-1] == '/')
        *--last = '\0';
    /* Back up to the nearest ancestor that exists, cutting the prefix at
     * each slash (one lookup per missing component, not per component). */
    char *name = prefix;
    for (;;) {
        char *slash = strrchr(prefix, '/');
        if (slash)
            *slash = '\0';
        dir = pyctr_open_in_root(root_fd, slash && *prefix ? prefix : "/",
                                 O_PATH | O_DIRECTORY);
        if (dir >= 0) {
            name = prefix;
            if (slash) {
                *slash = '/';  /* the prefix reaches to the end of `name` again */
                name = slash + 1;
            }
            break;
        }
        if (errno != ENOENT || !slash)
            return -1;
    }
    /* Then forward, making each missing component in its parent as just
     * resolved: only a plain name is ever created ("." and ".." always
     * exist), and the whole prefix is looked up from the root each time
     * ("..", a symlink, or a component swapped meanwhile all resolve in
     * it). The cuts after `name` are slashes again one by one. */
    for (;;) {
        char *end = name + strlen(name);
        if (*name) {
            if (mkdirat(dir, name, (mode_t)mode) < 0 && errno != EEXIST)
                return close_keeping_errno(dir);
            int next = pyctr_open_in_root(root_fd, prefix, O_PATH | O_DIRECTORY);
            if (next < 0)
                return close_keeping_errno(dir);
            close(dir);
            dir = next;
        }
        if (end >= last)
            return dir;
        *end = '/';
        name = end + 1;
    }
}

int pyctr_touch_in_root(int root_fd, const char *path, int mode)
{
    int fd = pyctr_open_in_root(root_fd, path, O_PATH);
    if (fd >= 0 || errno != ENOENT)
        return fd;
    char parent[PATH_MAX];
    if (copy_path(parent, path) < 0)
        return -1;
    char *slash = strrchr(parent, '/');
    const char *name = slash ? slash + 1 : parent;
    if (slash)
        *slash = '\0';
    if (!*name || !strcmp(name, ".") || !strcmp(name, "..")) {
        errno = EINVAL;
        return -1;
    }
    int dir = pyctr_mkdir_in_root(root_fd, slash ? parent : "/", 0755);
    if (dir < 0)
        return -1;
    /* O_EXCL never follows a final symlink: a dangling one fails here. */
    fd = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd < 0 && errno != EEXIST)
        return close_keeping_errno(dir);
    if (fd >= 0)
        close(fd);
    close(dir);
    return pyctr_open_in_root(root_fd, path, O_PATH);
}

int pyctr_set_ambient(const int *caps, int n)
{
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, caps[i], 0, 0) < 0)
            return -1;
    return 0;
}

int pyctr_drop_bounding(const int *caps, int n)
{
    for (int i = 0; i < n; i++)
        if (prctl(PR_CAPBSET_DROP, caps[i], 0, 0, 0) < 0)
            return -1;
    return 0;
}

static struct {
    pthread_t thread;
    int running, fd;
    size_t len;
    char data[64];
} writer;

static void *write_and_close(void *unused)
{
    (void)unused;
    (void)!write(writer.fd, writer.data, writer.len);
    close(writer.fd);
    return NULL;
}

int pyctr_start_writer(int fd, const char *data, size_t len)
{
    if (writer.running || len > sizeof(writer.data)) {
        errno = EBUSY;
        return -1;
    }
    writer.fd = fd;
    writer.len = len;
    memcpy(writer.data, data, len);
    int err = pthread_create(&writer.thread, NULL, write_and_close, NULL);
    if (err) {
        errno = err;
        return -1;
    }
    writer.running = 1;
    return 0;
}

int pyctr_join_writer(void)
{
    if (!writer.running)
        return 0;
    writer.running = 0;
    int err = pthread_join(writer.thread, NULL);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

long pyctr_prctl(int option, unsigned long arg)
{
    return prctl(option, arg, 0, 0, 0);
}

int pyctr_capset(const uint32_t effective[2], const uint32_t permitted[2],
                 const uint32_t inheritable[2])
{
    struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++) {
        data[i].effective = effective[i];
        data[i].permitted = permitted[i];
        data[i].inheritable = inheritable[i];
    }
    return syscall(SYS_capset, &header, data);
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

/* -- cgroup v2 device policy ---------------------------------------------- */

#define INSN(c, d, s, o, i) \
    ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define LDX_W(dst, src, off) INSN(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0)
#define MOV_X(dst, src) INSN(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0)
#define MOV_K(dst, imm) INSN(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm)
#define ALU_K(op, dst, imm) INSN(BPF_ALU64 | (op) | BPF_K, dst, 0, 0, imm)
#define JNE_K(dst, imm, off) INSN(BPF_JMP | BPF_JNE | BPF_K, dst, 0, off, imm)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* Registers after the prologue: r3 device type, r4 access requested,
 * r5 major, r6 minor (struct bpf_cgroup_dev_ctx). */
#define PROLOGUE 6
#define PER_RULE 7

int pyctr_device_filter_attach(int cgroup_fd, const struct pyctr_device_rule *rules, int n)
{
    if (n < 0 || n > 4096) {
        errno = EINVAL;
        return -1;
    }
    struct bpf_insn *prog = calloc(PROLOGUE + (size_t)n * PER_RULE + 2, sizeof(*prog));
    if (!prog)
        return -1;
    int len = 0;
    prog[len++] = LDX_W(BPF_REG_2, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, access_type));
    prog[len++] = MOV_X(BPF_REG_3, BPF_REG_2);
    prog[len++] = ALU_K(BPF_AND, BPF_REG_3, 0xffff);
    prog[len++] = ALU_K(BPF_RSH, BPF_REG_2, 16);
    prog[len++] = LDX_W(BPF_REG_5, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, major));
    prog[len++] = LDX_W(BPF_REG_6, BPF_REG_1, offsetof(struct bpf_cgroup_dev_ctx, minor));
    /* r2 holds the access bits from here on. Rules are checked last first:
     * the first match found is the one that decides. */
    int matched_all = 0;
    for (int i = n - 1; i >= 0 && !matched_all; i--) {
        const struct pyctr_device_rule *r = &rules[i];
        struct bpf_insn block[PER_RULE];
        int jumps[PER_RULE], nj = 0, b = 0;
        if (r->type) {
            jumps[nj++] = b;
            block[b++] = JNE_K(BPF_REG_3, r->type, 0);
        }
        if (r->major >= 0) {
            jumps[nj++] = b;
            block[b++] = JNE_K(BPF_REG_5, (int)r->major, 0);
        }
        if (r->minor >= 0) {
            jumps[nj++] = b;
            block[b++] = JNE_K(BPF_REG_6, (int)r->minor, 0);
        }
        if ((r->access & 7) != 7) { /* every bit asked must be in the rule */
            block[b++] = MOV_X(BPF_REG_7, BPF_REG_2);
            block[b++] = ALU_K(BPF_AND, BPF_REG_7, ~r->access & 7);
            jumps[nj++] = b;
            block[b++] = JNE_K(BPF_REG_7, 0, 0);
        }
        block[b++] = MOV_K(BPF_REG_0, r->allow ? 1 : 0);
        block[b++] = EXIT();
        for (int j = 0; j < nj; j++)
            block[jumps[j]].off = (short)(b - jumps[j] - 1); /* to the next rule */
        memcpy(prog + len, block, b * sizeof(*block));
        len += b;
        matched_all = nj == 0; /* what follows would be unreachable: the verifier refuses it */
    }
    if (!matched_all) {
        prog[len++] = MOV_K(BPF_REG_0, 0);
        prog[len++] = EXIT();
    }

    union bpf_attr load;
    memset(&load, 0, sizeof(load));
    load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    load.insns = (unsigned long)prog;
    load.insn_cnt = len;
    load.license = (unsigned long)"Apache-2.0";
    int prog_fd = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof(load));
    int saved = errno;
    free(prog);
    if (prog_fd < 0) {
        errno = saved;
        return -1;
    }
    union bpf_attr attach;
    memset(&attach, 0, sizeof(attach));
    attach.target_fd = cgroup_fd;
    attach.attach_bpf_fd = prog_fd;
    attach.attach_type = BPF_CGROUP_DEVICE;
    attach.attach_flags = BPF_F_ALLOW_MULTI;
    int rc = (int)syscall(SYS_bpf, BPF_PROG_ATTACH, &attach, sizeof(attach));
    saved = errno;
    close(prog_fd);
    errno = saved;
    return rc;
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

/* libseccomp is opened when a filter is first built, not with the shim: a
 * run or exec whose profile is compiled already (pyctr.seccomp's cache)
 * needs none of it, and every start paid for loading it. Each entry
 * has the type of the function it stands for (from seccomp.h), so the
 * compiler checks the calls as before. */
static struct {
    __typeof__(&seccomp_init) init;
    __typeof__(&seccomp_attr_set) attr_set;
    __typeof__(&seccomp_arch_resolve_name) arch_resolve_name;
    __typeof__(&seccomp_arch_add) arch_add;
    __typeof__(&seccomp_syscall_resolve_name) syscall_resolve_name;
    __typeof__(&seccomp_rule_add_array) rule_add_array;
    __typeof__(&seccomp_export_bpf) export_bpf;
    __typeof__(&seccomp_release) release;
} scmp;

static int scmp_open(void)
{
    if (scmp.release)
        return 0;
    void *lib = dlopen("libseccomp.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        errno = ELIBACC;
        return -1;
    }
#define SCMP_SYMBOL(field, name)                                   \
    if (!(scmp.field = (__typeof__(scmp.field))dlsym(lib, name))) { \
        errno = ELIBBAD;                                           \
        return -1;                                                 \
    }
    SCMP_SYMBOL(init, "seccomp_init")
    SCMP_SYMBOL(attr_set, "seccomp_attr_set")
    SCMP_SYMBOL(arch_resolve_name, "seccomp_arch_resolve_name")
    SCMP_SYMBOL(arch_add, "seccomp_arch_add")
    SCMP_SYMBOL(syscall_resolve_name, "seccomp_syscall_resolve_name")
    SCMP_SYMBOL(rule_add_array, "seccomp_rule_add_array")
    SCMP_SYMBOL(export_bpf, "seccomp_export_bpf")
    SCMP_SYMBOL(release, "seccomp_release")  /* last: it says all are there */
#undef SCMP_SYMBOL
    return 0;
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
    if (scmp_open() < 0)
        return NULL;
    scmp_filter_ctx ctx = scmp.init(default_action);
    if (ctx == NULL) {
        errno = EINVAL;
        return NULL;
    }
    /* A binary tree of syscall numbers rather than a linear list: fewer
     * instructions per syscall for long allow lists (libseccomp >= 2.5). */
    scmp.attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    return ctx;
}

int pyctr_seccomp_arch(void *ctx, const char *name)
{
    uint32_t token = scmp.arch_resolve_name(name);
    if (token == 0) {
        errno = EINVAL;
        return -1;
    }
    int rc = scmp.arch_add(ctx, token);
    return rc == -EEXIST ? 0 : scmp_rc(rc);
}

int pyctr_seccomp_syscall(const char *name)
{
    if (scmp_open() < 0)  /* it takes no filter: it may come first */
        return -1;
    int nr = scmp.syscall_resolve_name(name);
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
    return scmp_rc(scmp.rule_add_array(ctx, action, nr, count, cmp));
}

int pyctr_seccomp_export(void *ctx, int fd)
{
    return scmp_rc(scmp.export_bpf(ctx, fd));
}

void pyctr_seccomp_free(void *ctx) { scmp.release(ctx); }
