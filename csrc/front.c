/* pyctr-front: the `pyctr` command. Engines (podman/conmon, containerd's
 * shim) call pyctr several times per container, and each call paid
 * Python's start-up (~20 ms) for a few syscalls. This front end does the
 * common case of
 *
 *   start ID            init waits at the exec barrier: let it exec
 *   state ID            the runtime-spec state JSON, as `pyctr state`
 *   delete [-f] ID      a stopped bundle container: cgroups, record
 *   delete --force ID   of an unknown ID: nothing to do
 *   kill ID [NUMBER]    a signal to a living container's init
 *
 * itself, from the container's record as pyctr.state wrote it (state.json,
 * read here with a small JSON scanner: one record, one format). Everything
 * else, and every case that is not plain (hooks to run, networks to
 * detach, a living process to kill, any error, a record it does not
 * understand), execs Python with the same arguments, which then does the
 * whole verb as before; so messages, --log lines and exit codes stay
 * Python's. The one exception: when `start` consumed init's failure from
 * the exec FIFO, Python gets that message in PYCTR_FRONT_ERROR and reports
 * it (pyctr.cli).
 *
 * How to exec Python is written into this binary at install time
 * (pyctr.launcher patches CONFIG below): the OCI version the state JSON
 * names, then the interpreter's argv, NUL-separated, an empty string last.
 *
 * Security: the record lives in root's state directory; the container's
 * processes cannot write there. Paths read from the record are acted on
 * only after the checks Python makes (cgroup dirs below /sys/fs/cgroup and
 * not a mount, no "..": pyctr.cgroups._safe); the record's directory is
 * removed without following symlinks. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "leave_netns.h"

#define MARKER "pyctr-front-config-v1"
/* Patched in the installed binary by pyctr.launcher: MARKER, NUL, then
 * the strings. Read through config() only, so the compiler cannot fold
 * the unpatched contents in. */
char CONFIG[4096] __attribute__((used)) = MARKER;

static const char *config(void)
{
    const char *p = CONFIG;
    __asm__("" : "+r"(p));
    return p + sizeof(MARKER);
}

static char **args;  /* our argv, for handing over to Python */
static int nargs;
extern char **environ;

/* ---- handing over to Python ------------------------------------------ */

static void python(const char *error)
{
    const char *p = config();
    const char *strings[64];
    int n = 0;
    if (p[0])
        p += strlen(p) + 1;  /* the OCI version */
    while (*p && n < 60) {
        strings[n++] = p;
        p += strlen(p) + 1;
    }
    if (n == 0) {
        static const char msg[] = "pyctr: this front end was not installed (pyctr.launcher)\n";
        (void)!write(2, msg, sizeof(msg) - 1);
        _exit(125);
    }
    char **argv = calloc(n + nargs + 1, sizeof(char *));
    if (!argv)
        _exit(125);
    for (int i = 0; i < n; i++)
        argv[i] = (char *)strings[i];
    for (int i = 1; i < nargs; i++)
        argv[n + i - 1] = args[i];
    if (error)
        setenv("PYCTR_FRONT_ERROR", error, 1);
    /* An interrupt while Python starts ended in "Fatal Python error:
     * init_sys_streams" and a traceback: SIGINT is held until the launcher's
     * code can turn it into exit code 130 (pyctr.launcher releases it), unless
     * the caller held it already (pyctr-monitor's `_finished`). */
    sigset_t interrupt, before;
    sigemptyset(&interrupt);
    sigaddset(&interrupt, SIGINT);
    if (sigprocmask(SIG_BLOCK, &interrupt, &before) == 0 && !sigismember(&before, SIGINT))
        setenv("PYCTR_HELD_INT", "1", 1);
    execve(argv[0], argv, environ);
    fprintf(stderr, "pyctr: cannot execute %s: %s\n", argv[0], strerror(errno));
    _exit(126);
}

#define PYTHON() python(NULL)

/* ---- the cgroup warm-up -------------------------------------------------
 * Moving a process between cgroups (writing cgroup.procs) takes a global
 * lock whose first writer after a quiet spell waits for an RCU grace period
 * (5-20 ms here), holding the cgroup mutex, so every mkdir in cgroupfs
 * waits too. `run` and `create` move the container's init, `exec` its new
 * process, 20-30 ms into the command, right after their cgroup mkdirs. A
 * process forked here moves itself to the group it is in (nothing changes)
 * every 2 ms while Python starts: its first move pays the grace period
 * before Python needs cgroupfs, the next ones keep the kernel where moves
 * do not wait. It ends when the pipe whose write end Python gets as
 * PYCTR_WARM_FD is closed everywhere (pyctr.cgroups.end_front_warm_up,
 * right before the move it was for), or after 1 s. Forked twice, so it is
 * not Python's child; not dumpable, no fd but its pipe and the file, and
 * not in a node's network namespace the caller works in (leave_netns.h).
 * The process between exits at once and is not waited for here: Python
 * reaps it (PYCTR_WARM_FD is "FD PID"), since on a busy node waiting for
 * it to be scheduled cost this command about a time slice. */

#define WARM_MOVES 500  /* 2 ms apart: 1 s at most */
#define WARM_FD_MIN 960 /* out of the way of the fds a user passes on */

/* cgroup.procs of this process's group in the unified hierarchy, or "". */
static void own_procs_file(char *path, size_t size)
{
    char line[4096];
    path[0] = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "0::", 3))
            continue;
        line[strcspn(line, "\n")] = 0;
        const char *group = line + 3;
        const char *mounts[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};
        for (int i = 0; i < 2 && !path[0]; i++) {
            snprintf(path, size, "%s%s/cgroup.procs", mounts[i],
                     strcmp(group, "/") ? group : "");
            if (access(path, W_OK))
                path[0] = 0;
        }
    }
    fclose(f);
}

static void warm_up(void)
{
    char path[4200];
    own_procs_file(path, sizeof(path));
    int fds[2];
    if (!path[0] || pipe(fds))
        return;
    pid_t pid = fork();
    if (pid == 0) {
        if (fork() != 0)
            _exit(0);
        close(fds[1]);
        prctl(PR_SET_DUMPABLE, 0);
        prctl(PR_SET_NAME, "pyctr-warm-up");
        leave_netns();
        /* only its pipe: an fd the caller passes on (a socket, a pipe to a
         * reader) must not stay open in here */
        if (fds[0] > 0)
            syscall(SYS_close_range, 0, fds[0] - 1, 0);
        syscall(SYS_close_range, fds[0] + 1, ~0U, 0);
        int procs = open(path, O_WRONLY | O_CLOEXEC);
        char me[24];
        int len = snprintf(me, sizeof(me), "%d", (int)getpid());
        struct pollfd end = {.fd = fds[0], .events = POLLIN};
        for (int i = 0; procs >= 0 && i < WARM_MOVES; i++) {
            (void)!write(procs, me, len);
            if (poll(&end, 1, 2) != 0)
                break;  /* closed by pyctr (or an error) */
        }
        _exit(0);
    }
    close(fds[0]);
    int high = fcntl(fds[1], F_DUPFD, WARM_FD_MIN);
    close(fds[1]);
    if (pid < 0 || high < 0) {
        if (high >= 0)
            close(high);
        if (pid > 0)
            waitpid(pid, NULL, 0);
        return;
    }
    char value[32];
    snprintf(value, sizeof(value), "%d %d", high, (int)pid);
    setenv("PYCTR_WARM_FD", value, 1);
}

/* ---- the record: a JSON object, scanned not decoded ------------------- */

typedef struct {
    const char *p, *end;  /* a value's raw text; p == NULL: absent */
} span;

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

static const char *skip_string(const char *p, const char *end)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        if (*p == '\\') {
            if (++p >= end)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* The end of the value at p (nesting bounded), or NULL if it is not JSON. */
static const char *skip_value(const char *p, const char *end, int depth)
{
    if (p >= end || depth > 32)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1, end);
        if (p < end && *p == close)
            return p + 1;
        for (;;) {
            if (close == '}') {
                p = skip_string(p, end);
                if (!p)
                    return NULL;
                p = ws(p, end);
                if (p >= end || *p != ':')
                    return NULL;
                p = ws(p + 1, end);
            }
            p = skip_value(p, end, depth + 1);
            if (!p)
                return NULL;
            p = ws(p, end);
            if (p < end && *p == ',') {
                p = ws(p + 1, end);
                continue;
            }
            if (p < end && *p == close)
                return p + 1;
            return NULL;
        }
    }
    const char *start = p;
    while (p < end && (strchr("-+.eE", *p) || (*p >= '0' && *p <= '9') ||
                       (*p >= 'a' && *p <= 'z')))
        p++;
    return p > start ? p : NULL;
}

/* The value of `key` in the object `obj` (keys compared as written: ours
 * have no escapes). Returns 0, or -1 if obj is not an object. */
static int member(span obj, const char *key, span *out)
{
    out->p = out->end = NULL;
    const char *p = obj.p, *end = obj.end;
    if (!p || p >= end || *p != '{')
        return -1;
    p = ws(p + 1, end);
    if (p < end && *p == '}')
        return 0;
    size_t klen = strlen(key);
    for (;;) {
        const char *k = p, *kend = skip_string(p, end);
        if (!kend)
            return -1;
        p = ws(kend, end);
        if (p >= end || *p != ':')
            return -1;
        p = ws(p + 1, end);
        const char *v = p;
        p = skip_value(p, end, 0);
        if (!p)
            return -1;
        if ((size_t)(kend - k - 2) == klen && !memcmp(k + 1, key, klen)) {
            out->p = v;
            out->end = p;
        }
        p = ws(p, end);
        if (p < end && *p == ',') {
            p = ws(p + 1, end);
            continue;
        }
        return p < end && *p == '}' ? 0 : -1;
    }
}

static int is_null(span v)
{
    return !v.p || (v.end - v.p == 4 && !memcmp(v.p, "null", 4));
}

static int is(span v, const char *text)
{
    size_t n = strlen(text);
    return v.p && (size_t)(v.end - v.p) == n && !memcmp(v.p, text, n);
}

/* An empty list, null or absent: nothing to do. */
static int empty_list(span v)
{
    if (is_null(v))
        return 1;
    const char *p = v.p;
    return *p == '[' && ws(p + 1, v.end) < v.end && *ws(p + 1, v.end) == ']';
}

/* A JSON string without escapes, copied into buf; -1 otherwise. */
static int plain_string(span v, char *buf, size_t size)
{
    size_t n = v.p ? (size_t)(v.end - v.p) : 0;
    if (n < 2 || v.p[0] != '"' || n - 2 >= size || memchr(v.p, '\\', n))
        return -1;
    memcpy(buf, v.p + 1, n - 2);
    buf[n - 2] = 0;
    return 0;
}

/* -1: null or absent; anything but a plain integer is Python's to judge */
static long long integer(span v)
{
    if (is_null(v))
        return -1;
    long long n = 0;
    for (const char *p = v.p; p < v.end; p++) {
        if (*p < '0' || *p > '9' || n > 1000000000000000LL)
            python(NULL);
        n = n * 10 + (*p - '0');
    }
    return n;
}

/* ---- processes (pyctr.state.process_start_time, is_alive) ------------- */

static long long start_time(long long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%lld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    if (*p == 'Z' || *p == 'X')
        return -1;  /* finished: only its parent has yet to notice */
    for (int field = 0; field < 19; field++) {  /* to starttime, the 22nd */
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    return strtoll(p, NULL, 10);
}

static int alive(long long pid, long long start)
{
    return pid > 0 && start >= 0 && start_time(pid) == start;
}

/* ---- one container's record ------------------------------------------ */

typedef struct {
    char dir[4096];
    char *text;
    size_t size;
    span all, name, status, pid, pid_start, owner_pid, owner_start, bundle, rootfs,
        created, started, annotations, networks, cgroup, oci;
} record;

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 200)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || !strchr("_.-", c)))
            return 0;
    }
    return 1;
}

/* 1 loaded; 0 no such record; hands over to Python if it cannot tell. */
static int load(const char *root, const char *id, record *r)
{
    if ((size_t)snprintf(r->dir, sizeof(r->dir), "%s/containers/%s", root, id) >= sizeof(r->dir))
        PYTHON();
    char path[4200];
    snprintf(path, sizeof(path), "%s/state.json", r->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return 0;
        PYTHON();
    }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > (1 << 20))
        PYTHON();
    r->text = malloc(st.st_size + 1);
    if (!r->text)
        PYTHON();
    size_t got = 0;
    ssize_t n;
    while ((n = read(fd, r->text + got, st.st_size + 1 - got)) > 0 && got + n <= (size_t)st.st_size)
        got += n;
    close(fd);
    if (n != 0)
        PYTHON();  /* an error, or it grew meanwhile */
    r->size = got;
    r->all.p = ws(r->text, r->text + got);
    r->all.end = skip_value(r->all.p, r->text + got, 0);
    if (!r->all.end || ws(r->all.end, r->text + got) != r->text + got)
        PYTHON();
    static const char *const keys[] = {"name", "status", "pid", "pid_start", "owner_pid",
                                       "owner_start", "bundle", "rootfs", "created", "started",
                                       "annotations", "networks", "cgroup", "oci"};
    span *fields[] = {&r->name, &r->status, &r->pid, &r->pid_start, &r->owner_pid,
                      &r->owner_start, &r->bundle, &r->rootfs, &r->created, &r->started,
                      &r->annotations, &r->networks, &r->cgroup, &r->oci};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (member(r->all, keys[i], fields[i]))
            PYTHON();
    if (!r->name.p || r->name.p[0] != '"' || !r->status.p || !r->started.p)
        PYTHON();
    return 1;
}

/* ContainerState.live_status(): "created", "running", ... with quotes. */
static const char *live_status(record *r)
{
    static const char *const known[] = {"\"creating\"", "\"created\"", "\"running\"",
                                        "\"paused\"", "\"stopped\""};
    const char *status = NULL;
    for (int i = 0; i < 5; i++)
        if (is(r->status, known[i]))
            status = known[i];
    if (!status)
        PYTHON();
    if ((status == known[1] || status == known[2] || status == known[3]) &&
        !alive(integer(r->pid), integer(r->pid_start)))
        return "\"stopped\"";
    if (status == known[0] && !alive(integer(r->owner_pid), integer(r->owner_start)))
        return "\"stopped\"";
    return status;
}

/* The hook list `name` recorded for later (oci.hooks.NAME) is empty. */
static int no_hooks(record *r, const char *name)
{
    span hooks, list;
    if (member(r->oci, "hooks", &hooks))
        PYTHON();
    if (is_null(hooks))
        return 1;
    if (member(hooks, name, &list))
        PYTHON();
    return empty_list(list);
}

/* ---- the verbs ------------------------------------------------------- */

static void out(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(0);  /* like Python's BrokenPipeError: 0 */
        p += w;
        n -= w;
    }
}

static void out_span(span v, const char *otherwise)
{
    if (is_null(v) || is(v, "\"\"") || is(v, "0"))
        out(otherwise, strlen(otherwise));
    else
        out(v.p, v.end - v.p);
}

static int state(const char *id, record *r)
{
    const char *status = live_status(r);
    const char *version = config();
    if (!version[0] || strchr(version, '"') || strchr(version, '\\'))
        PYTHON();
    if (!is_null(r->annotations) && r->annotations.p[0] != '{')
        PYTHON();
    (void)id;
    /* pyctr.oci.cli._indented(state_json(state)): a key per line */
    out("{\n  \"ociVersion\": \"", 19);
    out(version, strlen(version));
    out("\",\n  \"id\": ", 11);
    out_span(r->name, "\"\"");
    out(",\n  \"status\": ", 14);
    out(status, strlen(status));
    out(",\n  \"pid\": ", 11);
    out_span(r->pid, "0");
    out(",\n  \"bundle\": ", 14);
    out_span(r->bundle, "\"\"");
    out(",\n  \"annotations\": ", 19);
    if (is_null(r->annotations))
        out("{}", 2);
    else
        out(r->annotations.p, r->annotations.end - r->annotations.p);
    out(",\n  \"rootfs\": ", 14);
    out_span(r->rootfs, "\"\"");
    out(",\n  \"created\": ", 15);
    if (is_null(r->created))
        out("null", 4);
    else
        out(r->created.p, r->created.end - r->created.p);
    out("\n}\n", 3);
    return 0;
}

/* store.save with status "running" and started now: the record as read,
 * those two values replaced, written beside and renamed over it. */
static void save_started(record *r)
{
    char stamp[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
    span first = r->status, second = r->started;
    const char *values[2] = {"\"running\"", stamp};
    if (first.p > second.p) {
        span t = first; first = second; second = t;
        const char *v = values[0]; values[0] = values[1]; values[1] = v;
    }
    char path[4200], tmp[4224];
    snprintf(path, sizeof(path), "%s/state.json", r->dir);
    snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0)
        return;  /* removed meanwhile (Python's save ignores that too) */
    size_t size = r->size + 64;
    char *buf = malloc(size), *w = buf;
    if (!buf)
        _exit(125);
#define PUT(p, n) (memcpy(w, (p), (n)), w += (n))
    PUT(r->text, first.p - r->text);
    PUT(values[0], strlen(values[0]));
    PUT(first.end, second.p - first.end);
    PUT(values[1], strlen(values[1]));
    PUT(second.end, r->text + r->size - second.end);
#undef PUT
    for (char *p = buf; p < w;) {
        ssize_t n = write(fd, p, w - p);
        if (n <= 0) {
            close(fd);
            PYTHON();
        }
        p += n;
    }
    close(fd);
    /* the names exchanged and the old file unlinked, as pyctr.fileio.replace
     * does it (no forced write-out on ext4) */
    if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, path, RENAME_EXCHANGE) == 0) {
        unlink(tmp);
        return;
    }
    if (rename(tmp, path)) {
        unlink(tmp);
        PYTHON();
    }
}

static int start(record *r)
{
    if (strcmp(live_status(r), "\"created\"") || is_null(r->oci) || !no_hooks(r, "poststart"))
        PYTHON();
    char fifo[4200];
    snprintf(fifo, sizeof(fifo), "%s/exec.fifo", r->dir);
    int fd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        PYTHON();  /* started already: Python says so */
    /* pyctr.oci.lifecycle._open_barrier: "0" and init execs; "1" and why
     * its startContainer hooks failed; init dying first is an error. */
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char answer[4097];
    ssize_t n;
    for (;;) {
        int ready = poll(&pfd, 1, 100);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready > 0) {
            n = read(fd, answer, sizeof(answer) - 1);
            break;
        }
        if (!alive(integer(r->pid), integer(r->pid_start)))
            python("container init exited before it could start");
    }
    close(fd);
    if (n == 1 && answer[0] == '0') {
        unlink(fifo);
        save_started(r);
        return 0;
    }
    if (n >= 1 && answer[0] == '1') {
        answer[n] = 0;
        python(answer + 1);
    }
    python("container init exited before it could start");
    return 125;
}

/* pyctr.state.remove_tree: bottom up, never through a symlink, errors
 * ignored. Entries are read again after a pass that removed some (a
 * directory read while it shrinks may skip entries). */
static void remove_below(int dir_fd, int depth)
{
    DIR *d = fdopendir(dir_fd);
    if (!d) {
        close(dir_fd);
        return;
    }
    for (int progress = 1; progress;) {
        progress = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            if (unlinkat(dirfd(d), e->d_name, 0) == 0) {
                progress = 1;
                continue;
            }
            if (errno != EISDIR || depth >= 16)
                continue;
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                remove_below(sub, depth + 1);
            if (unlinkat(dirfd(d), e->d_name, AT_REMOVEDIR) == 0)
                progress = 1;
        }
    }
    closedir(d);
}

static void remove_tree(const char *top)
{
    int fd = open(top, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0)
        remove_below(fd, 0);
    rmdir(top);
}

/* pyctr.cgroups._safe: below /sys/fs/cgroup, no empty, "." or ".."
 * component, not a mount point (os.path.ismount). */
static int safe_group_dir(const char *dir)
{
    if (strncmp(dir, "/sys/fs/cgroup/", 15))
        return 0;
    for (const char *c = dir + 1;;) {
        const char *slash = strchr(c, '/');
        size_t n = slash ? (size_t)(slash - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return 0;
        if (!slash)
            break;
        c = slash + 1;
    }
    struct stat self, parent;
    char up[4200];
    snprintf(up, sizeof(up), "%s/..", dir);
    if (lstat(dir, &self) || !S_ISDIR(self.st_mode) || lstat(up, &parent))
        return 0;  /* Python: not a dir here means finding the hierarchies again */
    return self.st_dev == parent.st_dev && self.st_ino != parent.st_ino;
}

/* rmdir, ENOENT being done; anything else hands over (Python kills what
 * is left and retries). */
static void remove_group_dir(const char *dir)
{
    if (rmdir(dir) && errno != ENOENT)
        PYTHON();
}

/* The last component of `path`, cut off (NULL if there is no slash). */
static const char *cut_last(char *path)
{
    char *slash = strrchr(path, '/');
    if (!slash)
        return NULL;
    *slash = 0;
    return slash + 1;
}

/* cgroups._remove_parents for a default group's `dir` (changed): its v1
 * cpuset bucket (pyctr/bXX, cgroups.bucket), then pyctr's parent, each
 * once it is empty: busy while another group is in it. */
static void remove_parents(char *dir)
{
    if (!cut_last(dir))
        return;
    char above[4096];
    snprintf(above, sizeof(above), "%s", dir);
    const char *name = cut_last(above);
    const char *up = strrchr(above, '/');
    if (name && up && !strcmp(up + 1, "pyctr") && strlen(name) == 3 && name[0] == 'b' &&
        strspn(name + 1, "0123456789abcdef") == 2) {
        if (rmdir(dir))
            return;
        cut_last(dir);
    }
    const char *last = strrchr(dir, '/');
    if (last && !strcmp(last + 1, "pyctr"))
        rmdir(dir);
}

/* cgroups.remove(state): every leaf, then every group, then pyctr's
 * parent of default groups once it is empty (cgroups._remove_parents). */
static void remove_groups(record *r)
{
    span dirs, leaf;
    char leaf_name[256] = "", dir[4096], path[4400];
    if (is_null(r->cgroup))
        return;
    if (member(r->cgroup, "dirs", &dirs) || member(r->cgroup, "leaf", &leaf) ||
        !dirs.p || dirs.p[0] != '{')
        PYTHON();
    if (!is_null(leaf) && plain_string(leaf, leaf_name, sizeof(leaf_name)))
        PYTHON();
    if (strchr(leaf_name, '/') || !strcmp(leaf_name, ".") || !strcmp(leaf_name, ".."))
        PYTHON();
    for (int pass = 0; pass < 4; pass++) {
        /* pass 0 checks every dir, 1 removes the leaves, 2 the groups,
         * 3 the parents of default groups (a leaf: pyctr made them) */
        const char *p = ws(dirs.p + 1, dirs.end);
        while (p < dirs.end && *p != '}') {
            const char *key_end = skip_string(p, dirs.end);
            if (!key_end)
                PYTHON();
            span value = {.p = ws(ws(key_end, dirs.end) + 1, dirs.end)};
            value.end = skip_value(value.p, dirs.end, 0);
            if (!value.end || plain_string(value, dir, sizeof(dir)))
                PYTHON();
            if (pass == 0 && !safe_group_dir(dir))
                PYTHON();
            if (pass == 1 && leaf_name[0]) {
                snprintf(path, sizeof(path), "%s/%s", dir, leaf_name);
                remove_group_dir(path);
            }
            if (pass == 2)
                remove_group_dir(dir);
            if (pass == 3 && leaf_name[0])
                remove_parents(dir);
            p = ws(value.end, dirs.end);
            if (p < dirs.end && *p == ',')
                p = ws(p + 1, dirs.end);
        }
    }
}

static int delete(record *r)
{
    span freezer, netns;
    if (is_null(r->oci) || strcmp(live_status(r), "\"stopped\"") ||
        alive(integer(r->pid), integer(r->pid_start)) || !empty_list(r->networks) ||
        !no_hooks(r, "poststop") || member(r->oci, "freezer", &freezer) || !is_null(freezer) ||
        member(r->oci, "netns", &netns) || !is_null(netns))
        PYTHON();
    remove_groups(r);
    remove_tree(r->dir);
    return 0;
}

/* control.kill without --all: init alive, signalled */
static int kill_init(record *r, int sig)
{
    long long pid = integer(r->pid);
    if (!alive(pid, integer(r->pid_start)) || kill((pid_t)pid, sig))
        PYTHON();  /* "container not running", as Python says it */
    return 0;
}

/* ---- the command line (pyctr.cli.dispatch, oci.cli._one_id) ---------- */

/* A standard fd the caller closed is opened on /dev/null before anything
 * else is opened (as Rust's runtime and glibc's secure mode do): the next
 * file pyctr opens (a record, a cgroup file) would otherwise take its
 * number, and a message meant for stderr would be written into it. The
 * container then gets /dev/null there, as the runtime spec allows. */
static void standard_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
            (void)!open("/dev/null", O_RDWR);  /* the lowest free number: fd */
}

int main(int argc, char **argv)
{
    standard_fds();
    args = argv;
    nargs = argc;
    /* Python acts on this variable (an fd it closes, a pid it reaps): only
     * the value warm_up() sets may reach it, never one from the caller. */
    unsetenv("PYCTR_WARM_FD");
    unsetenv("PYCTR_HELD_INT");  /* the same: only python() sets it */
    const char *root = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        static const char *const valued[] = {"--root", "--config", "--data", "--log",
                                             "--log-format", "--rootless"};
        int known = 0;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
            size_t n = strlen(valued[k]);
            if (strncmp(a, valued[k], n) || (a[n] && a[n] != '='))
                continue;
            const char *value = a[n] == '=' ? a + n + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value || !value[0])
                PYTHON();
            if (k == 0)
                root = value;
            if (k == 4 && strcmp(value, "text") && strcmp(value, "json"))
                PYTHON();
            known = 1;
        }
        if (!known && strcmp(a, "--debug"))
            PYTHON();  /* --systemd-cgroup (a warning to log), --help, ... */
    }
    if (i >= argc || geteuid() != 0)
        PYTHON();
    const char *verb = argv[i++];
    if (!strcmp(verb, "run") || !strcmp(verb, "create") || !strcmp(verb, "exec")) {
        warm_up();
        PYTHON();
    }
    if (!root)
        root = getenv("PYCTR_ROOT");
    if (!root || !root[0])
        root = "/run/pyctr";
    if (root[0] != '/')
        PYTHON();
    int is_delete = !strcmp(verb, "delete");
    if (!strcmp(verb, "kill")) {
        /* runc's `kill ID [SIGNAL]` with a number (verbs.remove.cmd_kill) */
        int sig = 15;
        if (argc - i < 1 || argc - i > 2 || argv[i][0] == '-' || !valid_id(argv[i]))
            PYTHON();
        if (argc - i == 2) {
            const char *n = argv[i + 1];
            size_t len = strlen(n);
            if (len == 0 || len > 2 || strspn(n, "0123456789") != len)
                PYTHON();
            sig = atoi(n);
            if (sig < 1 || sig > 64)
                PYTHON();
        }
        record r;
        if (!load(root, argv[i], &r))
            PYTHON();
        return kill_init(&r, sig);
    }
    if (!is_delete && strcmp(verb, "start") && strcmp(verb, "state"))
        PYTHON();
    /* oci.cli._one_id: ID then options, or options then ID (delete's
     * -f/--force only) */
    if (i >= argc)
        PYTHON();
    int first_is_id = argv[i][0] != '-';
    const char *id = first_is_id ? argv[i] : argv[argc - 1];
    int force = 0;
    for (int j = first_is_id ? i + 1 : i; j < (first_is_id ? argc : argc - 1); j++) {
        if (!is_delete || (strcmp(argv[j], "-f") && strcmp(argv[j], "--force")))
            PYTHON();
        force = 1;
    }
    if (!id || !valid_id(id))
        PYTHON();
    record r;
    if (!load(root, id, &r)) {
        if (is_delete && force)
            return 0;  /* runc's delete --force of an unknown ID */
        PYTHON();
    }
    if (!strcmp(verb, "state"))
        return state(id, &r);
    if (!strcmp(verb, "start"))
        return start(&r);
    return delete(&r);
}
