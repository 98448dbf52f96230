/* The container's child in C: clone() to execve() without Python.
 *
 * The parent builds the whole child as an op list before clone
 * (pyctr.childprog.compile, from the same rootfs.plan_* steps and
 * child.prepare_process order the Python child runs); here it is only
 * executed, op by op, as bubblewrap does. The child never returns to
 * Python: a forked interpreter touches (and so copies) hundreds of pages
 * and runs ~150 Python calls on the way to exec, which is most of what a
 * `pyctr run` spends between clone and the workload.
 *
 * Protocol and messages are the Python child's (sync.py, child.py): the
 * same tags on the same socket, a REPORT "step\0errno\0step: message" on
 * failure, then exit 125. Fork-style clone (no CLONE_VM): this process has
 * its own copy of memory, errno and the program; nothing is shared with
 * the parent but the kernel objects the two sides agreed on. Except for a
 * child that runs to its exec alone, which shares the parent's memory
 * meanwhile (see "clone" at the end).
 *
 * Security is the Python child's: the program is the parent's, written
 * before clone (nothing from the container is read as one); paths inside
 * the image are resolved in the root (pyctr_*_in_root, shim.c); the child
 * is not dumpable from clone (a user namespace's: from IDS on) until it
 * execs; every fd but the workload's closes at exec.
 *
 * Program format (native byte order), read front to back:
 *   op      int code, then the op's arguments in the order childprog writes
 *   int     i64
 *   str     u32 length (NO_STRING for NULL), the bytes, a NUL
 *   list    int count, then that many items
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "clone3.h"
#include "shim.h"

/* Op codes: pyctr.childprog.OPS, in the same order. */
enum {
    OP_STEP, OP_CLOSE, OP_PRCTL, OP_HOSTNAME, OP_MOUNT, OP_MKDIR, OP_HOLD_ROOT,
    OP_MKDIR_IN_ROOT, OP_MOUNT_IN_ROOT, OP_BIND, OP_MOUNT_SYSFS, OP_SYMLINK_IN_ROOT,
    OP_SETATTR_IN_ROOT, OP_CHDIR, OP_PIVOT_ROOT, OP_UMOUNT, OP_MASK, OP_READONLY,
    OP_UNSHARE, OP_LOOPBACK_UP, OP_READY_GO, OP_KEYRING, OP_KEEP_FDS,
    OP_SECCOMP, OP_DROP_BOUNDING, OP_SET_IDS, OP_CAPSET, OP_AMBIENT, OP_WORKDIR,
    OP_RESET_SIGNALS, OP_EXEC, OP_JOIN_CGROUPS, OP_DEVICE, OP_EXPECT_IDS, OP_SETNS, OP_COUNT
};

#define NO_STRING 0xFFFFFFFFu
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#define EXIT_RUNTIME 125
#define MAX_MESSAGE (1 << 20) /* sync.MAX_MESSAGE */
#define MAX_ENV 65536  /* entries of argv or the environment */

struct prog {
    const char *p, *end;
};

static int sock = -1;            /* the child's end of the channel */
static const char *step = "start";
static char message[PATH_MAX + 512];
static char go[MAX_MESSAGE];     /* GO's payload: the environment the parent adds */
static size_t go_len;

/* the held root: path, O_PATH fd, and what it was when opened */
static struct {
    const char *path;
    int fd;
    dev_t dev;
    ino_t ino;
    int on;
} held = {NULL, -1, 0, 0, 0};

/* ---- reading the program ------------------------------------------------ */

static void bad_program(void) __attribute__((noreturn));

static int64_t get_int(struct prog *g)
{
    int64_t v;
    if (g->end - g->p < (long)sizeof(v))
        bad_program();
    memcpy(&v, g->p, sizeof(v));
    g->p += sizeof(v);
    return v;
}

static const char *get_str(struct prog *g, uint32_t *length)
{
    uint32_t len;
    if (g->end - g->p < (long)sizeof(len))
        bad_program();
    memcpy(&len, g->p, sizeof(len));
    g->p += sizeof(len);
    if (length)
        *length = len == NO_STRING ? 0 : len;
    if (len == NO_STRING)
        return NULL;
    if ((size_t)(g->end - g->p) < (size_t)len + 1 || g->p[len] != '\0')
        bad_program();
    const char *s = g->p;
    g->p += len + 1;
    return s;
}

/* ---- talking to the parent ---------------------------------------------- */

static int send_tag(const char *data, size_t len)
{
    return pyctr_channel_send(sock, data, len, -1) < 0 ? -1 : 0;
}

/* REPORT step\0errno\0text, then exit 125 (child.child_main). */
static void send_report(int err, const char *text) __attribute__((noreturn));
static void send_report(int err, const char *text)
{
    static char buf[sizeof(message) + 256];
    int n = snprintf(buf, sizeof(buf), "R%s%c%d%c%s", step, 0, err, 0, text);
    if (n > (int)sizeof(buf) - 1)
        n = sizeof(buf) - 1;
    if (sock >= 0)
        send_tag(buf, (size_t)n);
    _exit(EXIT_RUNTIME);
}

/* The Python child's words: "step: what". */
static void report(int err, const char *what) __attribute__((noreturn));
static void report(int err, const char *what)
{
    static char text[sizeof(message) + 128];
    snprintf(text, sizeof(text), "%s: %s", step, what);
    send_report(err, text);
}

static void bad_program(void)
{
    report(EINVAL, "the child's program is malformed");
}

/* An OSError the way Syscalls._check words it: "what path: strerror". */
static void fail(const char *what, const char *path)
{
    int err = errno;
    if (path)
        snprintf(message, sizeof(message), "%s %s: %s", what, path, strerror(err));
    else if (what)
        snprintf(message, sizeof(message), "%s: %s", what, strerror(err));
    else  /* one of Python's os functions: its strerror only */
        snprintf(message, sizeof(message), "%s", strerror(err));
    report(err, message);
}

/* One message; 0 at end-of-file (the parent gave up). An fd that came
 * along is closed: the parent never sends any. */
static ssize_t receive(char *buf, size_t size)
{
    int fd;
    long n = pyctr_channel_recv(sock, buf, size, 0, &fd);
    if (fd >= 0)
        close(fd);
    return n;
}

/* Channel.expect: the tag, else leave quietly (nobody to report to). */
static void expect(char tag)
{
    ssize_t n = receive(go, sizeof(go));
    if (n < 1 || go[0] != tag)
        _exit(EXIT_RUNTIME);
    go_len = (size_t)n - 1;
    memmove(go, go + 1, go_len);
}

/* ---- paths inside the root (Syscalls._at_root and friends) --------------- */

static int root_fd(const char *root, int *opened)
{
    *opened = 0;
    if (held.on && held.fd >= 0 && !strcmp(held.path, root))
        return held.fd;
    int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        fail(NULL, NULL);
    if (held.on && held.fd < 0) {
        struct stat st;
        if (fstat(fd, &st) < 0)
            fail(NULL, NULL);
        held.path = root, held.fd = fd, held.dev = st.st_dev, held.ino = st.st_ino;
        return fd;
    }
    *opened = 1;
    return fd;
}

static void hold_root(int on)
{
    if (held.fd >= 0)
        close(held.fd);
    held.fd = -1;
    held.on = on;
}

/* call(root's fd, path, arg): pyctr_open_in_root, _mkdir_ or _touch_, with
 * the root held or opened for the call; its result, errno as it left it. */
static int at_root(const char *root, const char *path, int (*call)(int, const char *, int),
                   int arg)
{
    int opened;
    int rfd = root_fd(root, &opened);
    int fd = call(rfd, path, arg);
    int err = errno;
    if (opened)
        close(rfd);
    errno = err;
    return fd;
}

/* at_root's fd, or fail as "what path". */
static int in_root(const char *root, const char *path, int (*call)(int, const char *, int),
                   int arg, const char *what)
{
    int fd = at_root(root, path, call, arg);
    if (fd < 0)
        fail(what, path);
    return fd;
}

static int open_in_root(const char *root, const char *path, int flags)
{
    return in_root(root, path, pyctr_open_in_root, flags, "open");
}

/* A mount landed on `fd`: if that was the held root, its fd now names the
 * covered directory, so it is let go (opened again on next use). */
static void mounted_on(int fd)
{
    struct stat st;
    if (held.fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == held.dev && st.st_ino == held.ino) {
        close(held.fd);
        held.fd = -1;
    }
}

static int kernel_fs(const char *fstype)
{
    return fstype && (!strcmp(fstype, "proc") || !strcmp(fstype, "sysfs"));
}

/* Syscalls.mount_in_root: proc and sysfs only on a real directory. Returns
 * 0, or -1 with errno when `soft` and the mount itself failed with it. */
static int mount_in_root(const char *root, const char *path, const char *source,
                         const char *fstype, unsigned long flags, const char *data, int soft)
{
    int fd = open_in_root(root, path, O_PATH | (kernel_fs(fstype) ? O_NOFOLLOW : 0));
    struct stat st;
    if (kernel_fs(fstype) && (fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode))) {
        snprintf(message, sizeof(message), "mount %s: %s needs a directory, not a symlink "
                 "or a file", path, fstype);
        report(ENOTDIR, message);
    }
    char target[64];
    snprintf(target, sizeof(target), "/proc/self/fd/%d", fd);
    if (mount(source, target, fstype, flags, data) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        if (soft && (err == EPERM || err == EACCES))
            return -1;
        fail("mount", path);
    }
    mounted_on(fd);
    close(fd);
    return 0;
}

/* Syscalls.locked_flags: nosuid/nodev/noexec of the mount holding it (the
 * ST_ bits of statvfs have the MS_ values). */
static unsigned long locked_flags(int rc, const struct statvfs *sv)
{
    if (rc < 0)
        fail(NULL, NULL);
    return sv->f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int lexists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Syscalls.exists_in_root */
static int exists_in_root(const char *root, const char *path)
{
    int fd = at_root(root, path, pyctr_open_in_root, O_PATH);
    if (fd >= 0) {
        close(fd);
        return 1;
    }
    if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
        fail("open", path);
    return 0;
}

/* rootfs._bind */
static void bind_in_root(const char *source, const char *root, const char *dest, unsigned long flags)
{
    if (is_dir(source))
        close(in_root(root, dest, pyctr_mkdir_in_root, 0755, "mkdir"));
    else
        close(in_root(root, dest, pyctr_touch_in_root, 0644, "create"));
    mount_in_root(root, dest, source, NULL, flags & (MS_BIND | MS_REC), NULL, 0);
    unsigned long extra = flags & ~(unsigned long)(MS_BIND | MS_REC);
    if (extra) {
        int fd = open_in_root(root, dest, O_PATH);
        struct statvfs sv;
        unsigned long locked = locked_flags(fstatvfs(fd, &sv), &sv);
        close(fd);
        mount_in_root(root, dest, NULL, NULL, MS_BIND | MS_REMOUNT | extra | locked, NULL, 0);
    }
}

static void plain_mount(const char *source, const char *target, const char *fstype,
                        unsigned long flags, const char *data)
{
    if (mount(source, target, fstype, flags, data) < 0)
        fail("mount", target);
}

/* os.makedirs(path, exist_ok=True): the directory first, its parents only
 * where it cannot be made for want of them (mostly they exist). */
static int make_dir(const char *path, int mode)
{
    return mkdir(path, (mode_t)mode) == 0 || (errno == EEXIST && is_dir(path)) ? 0 : -1;
}

static void makedirs(const char *path, int mode)
{
    if (make_dir(path, mode) == 0)
        return;
    char parent[PATH_MAX];
    size_t len = strlen(path);
    if (errno != ENOENT || len >= sizeof(parent))
        fail(NULL, NULL);
    memcpy(parent, path, len + 1);
    char *slash = strrchr(parent, '/');
    while (slash && slash > parent && slash[-1] == '/')
        slash--;
    if (!slash || slash == parent) {
        errno = ENOENT;
        fail(NULL, NULL);
    }
    *slash = '\0';
    makedirs(parent, mode);
    if (make_dir(path, mode) < 0)
        fail(NULL, NULL);
}

/* ---- the process: child.prepare_process and exec_workload ---------------- */

static void set_ids(int64_t uid, int64_t gid, struct prog *g)
{
    int64_t n = get_int(g);
    static gid_t groups[NGROUPS_MAX];  /* 256 KiB: not on the child's stack */
    if (n < 0 || n > NGROUPS_MAX)
        bad_program();
    for (int64_t i = 0; i < n; i++)
        groups[i] = (gid_t)get_int(g);
    /* raw syscalls: glibc's wrappers would signal the parent's threads */
    if (syscall(SYS_setgroups, (size_t)n, groups) < 0 && (errno != EPERM || n))
        fail(NULL, NULL);
    if (syscall(SYS_setresgid, (gid_t)gid, (gid_t)gid, (gid_t)gid) < 0)
        fail(NULL, NULL);
    if (syscall(SYS_setresuid, (uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
        fail(NULL, NULL);
}

static void keep_fds(struct prog *g)
{
    int64_t n = get_int(g);
    unsigned int first = 3;
    for (int64_t i = 0; i < n; i++) {
        int fd = (int)get_int(g);  /* sorted, distinct, >= 3 */
        int flags = fcntl(fd, F_GETFD);
        if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0)
            fail(NULL, NULL);
        if ((unsigned int)fd > first && pyctr_close_range(first, fd - 1, CLOSE_RANGE_CLOEXEC) < 0)
            fail("close_range", NULL);
        if ((unsigned int)fd + 1 > first)
            first = fd + 1;
    }
    if (pyctr_close_range(first, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
        fail("close_range", NULL);
}

static int *int_list(struct prog *g, int *n, int *store, int size)
{
    int64_t count = get_int(g);
    if (count < 0 || count > size)
        bad_program();
    for (int64_t i = 0; i < count; i++)
        store[i] = (int)get_int(g);
    *n = (int)count;
    return store;
}

/* KEY=VALUE strings: entries without '=' are dropped, a later KEY replaces
 * an earlier one in place (child.merge_env, then the dict exec_workload
 * makes). */
static void env_add(char **env, int *n, char *entry)
{
    char *eq = strchr(entry, '=');
    if (!eq)
        return;
    size_t key = (size_t)(eq - entry) + 1;
    for (int i = 0; i < *n; i++)
        if (!strncmp(env[i], entry, key)) {
            env[i] = entry;
            return;
        }
    if (*n == MAX_ENV)
        report(E2BIG, "more than 65536 environment variables");
    env[(*n)++] = entry;
}

/* child.resolve: the first regular file named `cmd` on PATH, else cmd. */
static const char *resolve(const char *cmd, char **env, int n, char *buf, size_t size)
{
    if (strchr(cmd, '/'))
        return cmd;
    const char *path = "";
    for (int i = 0; i < n; i++)
        if (!strncmp(env[i], "PATH=", 5))
            path = env[i] + 5;
    for (const char *d = path;; ) {
        const char *end = strchrnul(d, ':');
        int len = (int)(end - d);
        const char *dir = len ? d : ".";
        if (!len)
            len = 1;
        int slash = dir[len - 1] != '/';
        if (snprintf(buf, size, "%.*s%s%s", len, dir, slash ? "/" : "", cmd) < (int)size) {
            struct stat st;
            if (stat(buf, &st) == 0 && S_ISREG(st.st_mode))
                return buf;
        }
        if (!*end)
            return cmd;
        d = end + 1;
    }
}

static void exec_workload(struct prog *g)
{
    static char *argv[MAX_ENV + 1], *env[MAX_ENV + 1];
    char **args = argv;
    int64_t argc = get_int(g);
    if (argc < 1 || argc > MAX_ENV)
        bad_program();
    for (int64_t i = 0; i < argc; i++)
        argv[i] = (char *)get_str(g, NULL);
    argv[argc] = NULL;
    int n = 0;
    int64_t count = get_int(g);
    for (int64_t i = 0; i < count; i++)
        env_add(env, &n, (char *)get_str(g, NULL));
    for (size_t i = 0; i < go_len; i += strlen(go + i) + 1) {
        go[go_len] = '\0';  /* GO's payload: entries NUL-separated, none after the last */
        env_add(env, &n, go + i);
    }
    uint32_t filter_len;
    const char *filter = get_str(g, &filter_len);
    int init = (int)get_int(g);
    const char *tag = get_str(g, NULL);
    static char path[PATH_MAX];
    const char *file = resolve(argv[0], env, n, path, sizeof(path));
    step = "exec";
    if (init >= 0) {  /* reaper.command: pyctr-init runs the workload, reports on the channel */
        static char report_env[64], path_env[PATH_MAX + 32];
        static char *init_argv[MAX_ENV + 3] = {"pyctr-init", "--"};
        int flags = fcntl(sock, F_GETFD);
        if (flags < 0 || fcntl(sock, F_SETFD, flags & ~FD_CLOEXEC) < 0)
            fail(NULL, NULL);
        snprintf(report_env, sizeof(report_env), "PYCTR_INIT_REPORT=%d:%s", sock, tag);
        snprintf(path_env, sizeof(path_env), "PYCTR_INIT_PATH=%s", file);
        env_add(env, &n, report_env);
        env_add(env, &n, path_env);
        memcpy(init_argv + 2, argv, sizeof(*argv) * ((size_t)argc + 1));
        args = init_argv;
        step = "start pyctr-init";
    }
    env[n] = NULL;
    pyctr_exec(init, file, args, env, filter, filter ? filter_len : 0);
    int err = errno;
    snprintf(message, sizeof(message), "%s: %s", args[0],
             err == ENOENT ? "executable file not found in $PATH" : strerror(err));
    send_report(err, message);
}

/* ---- the interpreter ----------------------------------------------------- */

static void run(struct prog *g)
{
    int list[128], n;
    while (g->p < g->end) {
        int64_t op = get_int(g);
        switch (op) {
        case OP_STEP:
            step = get_str(g, NULL);
            break;
        case OP_CLOSE:
            close((int)get_int(g));
            break;
        case OP_PRCTL: {
            int64_t option = get_int(g), arg = get_int(g);
            if (prctl((int)option, (unsigned long)arg, 0, 0, 0) < 0) {
                char what[32];
                snprintf(what, sizeof(what), "prctl(%d)", (int)option);
                fail(what, NULL);
            }
            break;
        }
        case OP_HOSTNAME: {
            uint32_t len;
            const char *name = get_str(g, &len);
            if (sethostname(name, len) < 0)
                fail("sethostname", NULL);
            break;
        }
        case OP_MOUNT: {
            const char *source = get_str(g, NULL), *target = get_str(g, NULL);
            const char *fstype = get_str(g, NULL);
            int64_t flags = get_int(g);
            plain_mount(source, target, fstype, (unsigned long)flags, get_str(g, NULL));
            break;
        }
        case OP_MKDIR:
            makedirs(get_str(g, NULL), 0755);
            break;
        case OP_HOLD_ROOT:
            hold_root((int)get_int(g));
            break;
        case OP_MKDIR_IN_ROOT: {
            const char *root = get_str(g, NULL);
            close(in_root(root, get_str(g, NULL), pyctr_mkdir_in_root, 0755, "mkdir"));
            break;
        }
        case OP_MOUNT_IN_ROOT: {
            const char *root = get_str(g, NULL), *path = get_str(g, NULL);
            const char *source = get_str(g, NULL), *fstype = get_str(g, NULL);
            int64_t flags = get_int(g);
            mount_in_root(root, path, source, fstype, (unsigned long)flags, get_str(g, NULL), 0);
            break;
        }
        case OP_BIND: {
            const char *source = get_str(g, NULL), *root = get_str(g, NULL);
            const char *dest = get_str(g, NULL);
            bind_in_root(source, root, dest, (unsigned long)get_int(g));
            break;
        }
        case OP_MOUNT_SYSFS: {  /* rootfs._mount_sysfs */
            const char *root = get_str(g, NULL), *dest = get_str(g, NULL);
            unsigned long flags = (unsigned long)get_int(g);
            if (mount_in_root(root, dest, "sysfs", "sysfs", flags, NULL, 1) < 0)
                bind_in_root("/sys", root, dest, MS_BIND | MS_REC | (flags & MS_RDONLY));
            break;
        }
        case OP_SYMLINK_IN_ROOT: {
            const char *root = get_str(g, NULL), *target = get_str(g, NULL);
            const char *path = get_str(g, NULL);  /* childprog split it: parent, name */
            const char *name = get_str(g, NULL);
            int fd = open_in_root(root, path, O_PATH | O_DIRECTORY);
            if (symlinkat(target, fd, name) < 0)
                fail(NULL, NULL);
            close(fd);
            break;
        }
        case OP_SETATTR_IN_ROOT: {  /* then `skip` ops: the remounts ENOSYS needs */
            const char *root = get_str(g, NULL), *path = get_str(g, NULL);
            int64_t flags = get_int(g), skip = get_int(g);
            int fd = open_in_root(root, path, O_PATH | O_DIRECTORY);
            int rc = pyctr_mount_setattr(fd, (unsigned long long)flags & 15, 1);
            int err = errno;
            close(fd);
            errno = err;
            if (rc < 0 && err != ENOSYS)
                fail("mount_setattr", path);
            if (rc == 0)
                for (int64_t i = 0; i < skip; i++) {  /* each skipped op is a MOUNT_IN_ROOT */
                    if (get_int(g) != OP_MOUNT_IN_ROOT)
                        bad_program();
                    for (int k = 0; k < 4; k++)
                        get_str(g, NULL);
                    get_int(g);
                    get_str(g, NULL);
                }
            break;
        }
        case OP_CHDIR: {
            const char *path = get_str(g, NULL);
            if (chdir(path) < 0)
                fail(NULL, NULL);
            break;
        }
        case OP_PIVOT_ROOT: {
            const char *new_root = get_str(g, NULL), *put_old = get_str(g, NULL);
            if (pyctr_pivot_root(new_root, put_old) < 0)
                fail("pivot_root", NULL);
            break;
        }
        case OP_UMOUNT: {
            const char *target = get_str(g, NULL);
            if (umount2(target, (int)get_int(g)) < 0)
                fail("umount", target);
            break;
        }
        case OP_MASK: {  /* rootfs._mask */
            const char *empty = NULL;
            int64_t count = get_int(g);
            for (int64_t i = 0; i < count; i++) {
                const char *path = get_str(g, NULL);
                if (!lexists(path))
                    continue;
                if (!is_dir(path))
                    plain_mount("/dev/null", path, NULL, MS_BIND, NULL);
                else if (!empty) {
                    plain_mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL);
                    empty = path;
                } else
                    plain_mount(empty, path, NULL, MS_BIND, NULL);
            }
            break;
        }
        case OP_READONLY: {  /* rootfs._readonly */
            const char *path = get_str(g, NULL);
            if (!lexists(path))
                break;
            if (strcmp(path, "/"))
                plain_mount(path, path, NULL, MS_BIND | MS_REC, NULL);
            struct statvfs sv;
            plain_mount(NULL, path, NULL,
                        MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(statvfs(path, &sv), &sv),
                        NULL);
            break;
        }
        case OP_EXPECT_IDS:
            expect('I');
            break;
        case OP_SETNS: {
            int fd = (int)get_int(g);
            if (setns(fd, (int)get_int(g)) < 0)
                fail("setns", NULL);
            close(fd);
            break;
        }
        case OP_UNSHARE:
            if (unshare((int)get_int(g)) < 0)
                fail("unshare", NULL);
            break;
        case OP_LOOPBACK_UP:
            if (pyctr_loopback_up() < 0)
                fail("bring up lo", NULL);
            break;
        case OP_READY_GO:
            if (send_tag("Y", 1) < 0)
                fail(NULL, NULL);
            expect('G');
            break;
        case OP_KEYRING:
            if (pyctr_join_session_keyring() < 0 && errno != ENOSYS && errno != EPERM)
                fail("keyctl(JOIN_SESSION_KEYRING)", NULL);
            break;
        case OP_KEEP_FDS:
            keep_fds(g);
            break;
        case OP_SECCOMP: {
            uint32_t len;
            const char *filter = get_str(g, &len);
            if (pyctr_seccomp_load(filter, len) < 0)
                fail("seccomp", NULL);
            break;
        }
        case OP_DROP_BOUNDING:
            int_list(g, &n, list, 128);
            if (pyctr_drop_bounding(list, n) < 0)
                fail("prctl(PR_CAPBSET_DROP)", NULL);
            break;
        case OP_SET_IDS: {
            int64_t uid = get_int(g), gid = get_int(g);
            set_ids(uid, gid, g);
            break;
        }
        case OP_CAPSET: {
            uint32_t words[3][2];
            for (int i = 0; i < 3; i++) {
                uint64_t mask = (uint64_t)get_int(g);
                words[i][0] = (uint32_t)mask, words[i][1] = (uint32_t)(mask >> 32);
            }
            if (pyctr_capset(words[0], words[1], words[2]) < 0)
                fail("capset", NULL);
            break;
        }
        case OP_AMBIENT:
            int_list(g, &n, list, 128);
            if (pyctr_set_ambient(list, n) < 0)
                fail("set ambient capabilities", NULL);
            break;
        case OP_WORKDIR: {
            const char *cwd = get_str(g, NULL);
            if (chdir(cwd) < 0)
                fail("workdir", cwd);
            break;
        }
        case OP_RESET_SIGNALS:
            if (pyctr_reset_signals() < 0)
                fail("sigprocmask", NULL);
            break;
        case OP_JOIN_CGROUPS: {  /* cgroups.join: "0" is the writer itself */
            int64_t count = get_int(g);
            for (int64_t i = 0; i < count; i++) {
                int fd = (int)get_int(g);
                const char *dir = get_str(g, NULL);
                if (write(fd, "0", 1) < 0) {
                    int err = errno;
                    snprintf(message, sizeof(message), "cannot write to %s/cgroup.procs: %s",
                             dir, strerror(err));
                    report(err, message);
                }
                close(fd);
            }
            break;
        }
        case OP_DEVICE: {  /* devices.make_node: mknod as runc does, else bind the host's */
            const char *root = get_str(g, NULL), *dest = get_str(g, NULL);
            const char *dir = get_str(g, NULL), *parent = get_str(g, NULL);
            const char *name = get_str(g, NULL);
            mode_t mode = (mode_t)get_int(g);
            dev_t dev = (dev_t)get_int(g);
            uid_t uid = (uid_t)get_int(g);
            gid_t gid = (gid_t)get_int(g);
            const char *host = get_str(g, NULL);
            close(in_root(root, dir, pyctr_mkdir_in_root, 0755, "mkdir"));
            if (!exists_in_root(root, dest)) {
                int fd = open_in_root(root, parent, O_PATH | O_DIRECTORY);
                if (mknodat(fd, name, mode, dev) == 0) {
                    /* the umask's part back; never through a symlink */
                    if (fchmodat(fd, name, mode & 07777, AT_SYMLINK_NOFOLLOW) < 0 ||
                        fchownat(fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0)
                        fail(NULL, NULL);
                    close(fd);
                    break;
                }
                if (errno != EPERM && errno != EACCES)
                    fail(NULL, NULL);
                close(fd);
                close(in_root(root, dest, pyctr_touch_in_root, 0644, "create"));
            }
            mount_in_root(root, dest, host, NULL, MS_BIND, NULL, 0);
            break;
        }
        case OP_EXEC:
            exec_workload(g);
            break;
        default:
            bad_program();
        }
    }
    bad_program();  /* a program ends in EXEC */
}

/* ---- clone ---------------------------------------------------------------
 * Fork-style, the child on a copy of this process. Or, for a child that
 * runs to its exec alone (pyctr.container: nothing to wait for but GO,
 * queued before clone), as posix_spawn does: CLONE_VM|CLONE_VFORK, the
 * child in this process's memory on a stack of its own, this thread asleep
 * until the child has exec'd or exited. That spares copying the page
 * tables of a ~15 MB interpreter, the copy-on-write fault it takes on
 * every page it writes afterwards, and the child's teardown of its copy at
 * exec.
 *
 * What sharing memory asks of the child: its writes land in this process,
 * so it writes only this file's statics (unused here until the next
 * clone) and errno, which the sleeping parent does not read; no handler of
 * the parent's may run in it (every caught signal is reset first, all of
 * them blocked meanwhile); ids change by raw syscalls only (set_ids), as
 * glibc's setuid() would change the parent's threads too; and nothing
 * allocates. One such child at a time per process (the stack). */

static void child_body(int channel_fd, const char *program, size_t length)
    __attribute__((noreturn));
static void child_body(int channel_fd, const char *program, size_t length)
{
    sock = channel_fd;
    struct prog g = {program, program + length};
    run(&g);
    _exit(EXIT_RUNTIME);
}

#if defined(__x86_64__)
#include <pthread.h>
#include <sys/mman.h>

#define ALONE_STACK (256 * 1024)

static struct {
    int channel_fd;
    const char *program;
    size_t length;
    sigset_t mask;  /* the caller's, for the child once its handlers are reset */
} alone_args;

static int alone_child(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        struct sigaction old;
        if (sigaction(sig, NULL, &old) == 0 && old.sa_handler != SIG_DFL &&
            old.sa_handler != SIG_IGN)
            sigaction(sig, &dfl, NULL);
    }
    sigprocmask(SIG_SETMASK, &alone_args.mask, NULL);
    child_body(alone_args.channel_fd, alone_args.program, alone_args.length);
}

/* clone3 with the child on `args->stack`: it calls fn there and exits with
 * what fn returns (fn never returns: child_body exits). */
static long clone3_on_stack(struct pyctr_clone_args *args, int (*fn)(void))
{
    long ret;
    register int (*r12)(void) __asm__("r12") = fn; /* kept across syscall */
    __asm__ volatile(
        "syscall\n\t"
        "test %%rax, %%rax\n\t"
        "jnz 1f\n\t"
        "xor %%ebp, %%ebp\n\t"
        "call *%%r12\n\t"
        "mov %%eax, %%edi\n\t"
        "mov $60, %%eax\n\t" /* exit */
        "syscall\n\t"
        "hlt\n"
        "1:"
        : "=a"(ret)
        : "0"((long)SYS_clone3), "D"(args), "S"(sizeof(*args)), "r"(r12)
        : "rcx", "r11", "memory");
    return ret;
}

static long clone_alone(unsigned long flags, int cgroup_fd, int channel_fd, const char *program,
                        size_t length)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char *stack;
    pthread_mutex_lock(&lock);
    if (!stack) {  /* a guard page below: an overflow faults, not corrupts */
        char *m = mmap(NULL, ALONE_STACK + 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (m == MAP_FAILED || mprotect(m, 4096, PROT_NONE) < 0) {
            int err = errno;
            if (m != MAP_FAILED)
                munmap(m, ALONE_STACK + 4096);
            pthread_mutex_unlock(&lock);
            errno = err;
            return -1;
        }
        stack = m + 4096;
    }
    struct pyctr_clone_args args;
    memset(&args, 0, sizeof(args));
    args.flags = flags | CLONE_VM | CLONE_VFORK | (cgroup_fd >= 0 ? PYCTR_CLONE_INTO_CGROUP : 0);
    args.exit_signal = SIGCHLD;
    args.cgroup = cgroup_fd >= 0 ? (uint64_t)cgroup_fd : 0;
    args.stack = (uint64_t)(uintptr_t)stack;
    args.stack_size = ALONE_STACK;
    alone_args.channel_fd = channel_fd;
    alone_args.program = program;
    alone_args.length = length;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &alone_args.mask);
    long pid = clone3_on_stack(&args, alone_child);
    int err = pid < 0 ? (int)-pid : 0;
    pthread_sigmask(SIG_SETMASK, &alone_args.mask, NULL);
    pthread_mutex_unlock(&lock);
    /* Not into a cgroup, fork-style took clone(2): so again, where clone3 is
     * refused (a kernel before 5.3, a seccomp filter's ENOSYS or EPERM);
     * a real failure fails there the same way, with its own errno. With a
     * cgroup the caller retries without on ENOSYS, E2BIG or EINVAL. */
    if (err && cgroup_fd < 0)
        return pyctr_clone_run(flags, cgroup_fd, channel_fd, program, length, 0);
    if (err) {
        errno = err;
        return -1;
    }
    return pid;
}
#else
/* elsewhere fork-style: the protocol is the same, the parent just does not
 * sleep meanwhile */
static long clone_alone(unsigned long flags, int cgroup_fd, int channel_fd, const char *program,
                        size_t length)
{
    return pyctr_clone_run(flags, cgroup_fd, channel_fd, program, length, 0);
}
#endif

long pyctr_clone_run(unsigned long flags, int cgroup_fd, int channel_fd, const char *program,
                     size_t length, int alone)
{
    if (alone)
        return clone_alone(flags, cgroup_fd, channel_fd, program, length);
    long pid = cgroup_fd >= 0 ? pyctr_clone_into(flags, cgroup_fd) : pyctr_clone(flags);
    if (pid != 0)
        return pid;
    child_body(channel_fd, program, length);
}
