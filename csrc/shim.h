/* pyctr shim: the few syscalls Python's os module lacks, plus the two
 * loops that must not run Python code between a signal and its handling.
 * Every function returns -1 and leaves errno set on failure (read it with
 * ffi.errno), as the kernel does; nothing here prints or exits. */
#include <stddef.h>
#include <stdint.h>

/* clone(2) called like fork(2): 0 in the child, the child's pid in the
 * parent. The child continues on the parent's stack (no CLONE_VM), so the
 * caller keeps running Python there, already inside the new namespaces. */
long pyctr_clone(unsigned long flags);
/* The same through clone3(2) with CLONE_INTO_CGROUP: the child is born in
 * the cgroup v2 directory `cgroup_fd` (Linux 5.7), which spares the move a
 * cgroup.procs write costs. ENOSYS, E2BIG or EINVAL where the kernel lacks
 * it: then clone and move. */
long pyctr_clone_into(unsigned long flags, int cgroup_fd);
/* Clone as pyctr_clone_into (cgroup_fd >= 0) or pyctr_clone, and in the
 * child run `program` (pyctr.childprog: the child's whole way to exec,
 * built by the parent) in C, reporting on the channel socket channel_fd;
 * the child never returns. The parent gets the pid, or -1. With alone (a
 * child that waits for nothing from the parent), the child shares this
 * process's memory and the call returns once it has exec'd or exited.
 * child.c. */
long pyctr_clone_run(unsigned long flags, int cgroup_fd, int channel_fd, const char *program,
                     size_t length, int alone);
int pyctr_unshare(int flags);
int pyctr_setns(int fd, int nstype);

int pyctr_mount(const char *source, const char *target, const char *fstype,
                unsigned long flags, const char *data);
int pyctr_umount2(const char *target, int flags);
/* mount_setattr(2) (Linux 5.12): on the mount `fd` (an O_PATH fd) stands
 * for and, with recursive, every mount below it, set the MOUNT_ATTR_* bits
 * `attr_set` (RDONLY 1, NOSUID 2, NODEV 4, NOEXEC 8). One call where a
 * remount per mount would take one each. ENOSYS on older kernels. */
int pyctr_mount_setattr(int fd, unsigned long long attr_set, int recursive);
int pyctr_pivot_root(const char *new_root, const char *put_old);
int pyctr_sethostname(const char *name, size_t len);
int pyctr_close_range(unsigned int first, unsigned int last, int flags);
/* renameat2(RENAME_EXCHANGE) of two existing paths (pyctr.fileio.replace). */
int pyctr_rename_exchange(const char *a, const char *b);

/* The parent/child channel (pyctr.sync; child.c speaks it too): a
 * SOCK_SEQPACKET socketpair, close-on-exec, and one datagram each way with
 * at most one fd riding along (SCM_RIGHTS). Here rather than Python's
 * _socket module, which every start imported for these three calls. */
int pyctr_channel_pair(int fds[2]);
long pyctr_channel_send(int sock, const char *data, size_t len, int fd);
/* One datagram into buf (at most size bytes; EINTR retried). Its fd, if one
 * came, in *fd (close-on-exec), else -1; any further ones are closed.
 * Returns the length, 0 at end-of-file, or -1 with errno. */
long pyctr_channel_recv(int sock, char *buf, size_t size, int flags, int *fd);

/* Paths inside a container's root. `root_fd` is a directory fd standing for
 * the container's "/": every lookup stays below it, absolute symlinks and
 * ".." are taken relative to it (openat2 RESOLVE_IN_ROOT) and procfs magic
 * links are refused, so an image cannot point pyctr at a host file.
 * open_in_root returns a close-on-exec fd for `path`. */
int pyctr_open_in_root(int root_fd, const char *path, int flags);
/* mkdir -p below root_fd, one component at a time, each looked up again in
 * the root before the next is made. Returns an O_PATH fd of the directory. */
int pyctr_mkdir_in_root(int root_fd, const char *path, int mode);
/* An empty regular file to mount on (parents made as above), or the file
 * already there. Never creates through a symlink. Returns an O_PATH fd. */
int pyctr_touch_in_root(int root_fd, const char *path, int mode);
/* The ambient capability set becomes exactly caps[0..n-1] (each must be
 * permitted and inheritable already). */
int pyctr_set_ambient(const int *caps, int n);
/* Drop caps[0..n-1] from the bounding set (one call: the child's time to
 * exec is on every start's path). Needs CAP_SETPCAP. */
int pyctr_drop_bounding(const int *caps, int n);
/* Write data[0..len-1] (at most 64 bytes) to `fd` and close it, in a
 * thread of its own; pyctr_join_writer returns once that thread has ended
 * as the kernel counts it (0 if none runs). Between the two, clone(2) is
 * not safe: the child would inherit whatever libc lock the thread holds.
 * Python's own threads cannot be waited for that far on 3.11 (join returns
 * while the thread still frees its state under the malloc lock). One
 * writer per process at a time. */
int pyctr_start_writer(int fd, const char *data, size_t len);
int pyctr_join_writer(void);
/* prctl(option, arg, 0, 0, 0): its result, or -1 with errno. */
long pyctr_prctl(int option, unsigned long arg);
/* The thread's effective, permitted and inheritable capability sets become
 * exactly these (two 32-bit words each, capability N is bit N). */
int pyctr_capset(const uint32_t effective[2], const uint32_t permitted[2],
                 const uint32_t inheritable[2]);
/* `ip link set lo up` in the caller's network namespace, by ioctl: after
 * pivot_root the child can no longer import Python's socket module. */
int pyctr_loopback_up(void);

/* Block the signals pyctr forwards, plus SIGCHLD, so none is lost between
 * clone() and pyctr_supervise(). */
int pyctr_block_signals(void);
/* Default disposition and an empty mask for every signal: what a freshly
 * exec'd workload expects (Python ignores SIGPIPE, for one). */
int pyctr_reset_signals(void);
/* Wait for `pid`, forwarding HUP INT QUIT TERM USR1 USR2 WINCH to it.
 * With reap_all (an init at PID 1), also reap every other child.
 * Returns the raw wait status of `pid`, or -1; with timeout_ms >= 0, -1
 * and errno EAGAIN if `pid` still runs after that long (< 0: no limit).
 * block_signals and supervise live in supervise.c. */
int pyctr_supervise(int pid, int reap_all, int timeout_ms);
/* A wait status as a shell reports it: the exit code, or 128+N if signal
 * N ended the process (for pyctr-init and pyctr-monitor). */
int pyctr_exit_code(int status);

/* One device rule for the cgroup v2 device program. type: 0 any, 1 block,
 * 2 char (BPF_DEVCG_DEV_*); major/minor: -1 for any; access: bits of
 * BPF_DEVCG_ACC_MKNOD (1), _READ (2), _WRITE (4). */
struct pyctr_device_rule {
    int allow;
    int type;
    long major;
    long minor;
    int access;
};
/* Build a BPF_PROG_TYPE_CGROUP_DEVICE program from `rules` (the last
 * matching rule decides; none matching: deny), load it and attach it to
 * the cgroup directory `cgroup_fd` (BPF_F_ALLOW_MULTI). The program stays
 * attached until the cgroup is removed. Returns 0, or -1 with errno. */
int pyctr_device_filter_attach(int cgroup_fd, const struct pyctr_device_rule *rules, int n);
/* The end of the child: load the seccomp filter `filter` (`filter_len`
 * bytes of BPF as seccomp_export_bpf wrote them; none if 0), then exec:
 * execveat(fd, "", AT_EMPTY_PATH) when fd >= 0 (pyctr's init, from a
 * memfd), else execve(path). Nothing in Python runs between the two.
 * Returns only on failure. */
int pyctr_exec(int fd, const char *path, char *const argv[], char *const envp[],
               const void *filter, size_t filter_len);
/* Load a filter and return (no_new_privileges off: it must be loaded while
 * the process still holds CAP_SYS_ADMIN, before the capabilities drop). */
int pyctr_seccomp_load(const void *filter, size_t filter_len);
/* A new anonymous session keyring, so the workload never reaches the
 * keys of the session it was started from. */
int pyctr_join_session_keyring(void);

/* Building a filter with libseccomp, in the parent. Actions and operators
 * are libseccomp's numbers (kernel ABI for actions). pyctr_seccomp_new
 * and pyctr_seccomp_syscall load libseccomp.so.2 (NULL or -1, and ELIBACC,
 * if they cannot); the others take what pyctr_seccomp_new returned. */
void *pyctr_seccomp_new(uint32_t default_action);
/* Add an architecture by libseccomp name ("x86_64", "x86", ...); 0 if it
 * was already there. */
int pyctr_seccomp_arch(void *ctx, const char *name);
/* The syscall number for this name on the native architecture, a negative
 * pseudo number for one libseccomp knows elsewhere, or -1 if unknown. */
int pyctr_seccomp_syscall(const char *name);
/* One rule: `count` comparisons, ANDed. */
int pyctr_seccomp_rule(void *ctx, uint32_t action, int nr, unsigned int count,
                       const unsigned int *index, const int *op,
                       const uint64_t *value, const uint64_t *value_two);
/* Write the BPF program to fd. */
int pyctr_seccomp_export(void *ctx, int fd);
void pyctr_seccomp_free(void *ctx);
