/* A static helper the confinement tests run inside containers (busybox has
 * no keyctl, bpf, ... applets). Built by tests/test_seccomp.py.
 *
 *   probe try NAME...        per NAME, in a process of its own: "NAME ERRNO"
 *                            (0: the call worked).
 *                            Arguments are chosen so that the kernel itself
 *                            fails with another errno than EPERM where it
 *                            can (bad pointer, bad flags), so EPERM is the
 *                            filter's answer.
 *   probe keyring            the id of this process's session keyring
 *   probe int80 NR           x86 only: syscall NR through the 32-bit ABI
 *                            (int 0x80) with zero arguments: "int80 ERRNO"
 *   probe race SECS DEV INO MARKER DIR
 *                            until DIR/stop exists (at most SECS seconds),
 *                            try to open
 *                            /proc/PID/{exe,environ,fd} of every other
 *                            process; a "leak" is an exe that is the file
 *                            DEV:INO (the host's interpreter) or pyctr-init,
 *                            or an environ holding MARKER. Writes progress
 *                            to DIR/progress, prints a summary at the end.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static long attempt(const char *name)
{
    long rc = -2;
    if (!strcmp(name, "keyctl"))
        rc = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
    else if (!strcmp(name, "add_key"))
        rc = syscall(SYS_add_key, "user", "pyctr-probe", "x", 1, KEY_SPEC_SESSION_KEYRING);
    else if (!strcmp(name, "request_key"))
        rc = syscall(SYS_request_key, "user", "pyctr-probe-none", NULL, 0);
    else if (!strcmp(name, "mount"))
        rc = mount("none", "/", (const char *)1, 0, NULL); /* bad type pointer: EFAULT */
    else if (!strcmp(name, "umount2"))
        rc = umount2("/", 0x7fff0000); /* bad flags: EINVAL */
    else if (!strcmp(name, "unshare_user"))
        rc = unshare(CLONE_NEWUSER);
    else if (!strcmp(name, "unshare_mount"))
        rc = unshare(CLONE_NEWNS);
    else if (!strcmp(name, "clone_user")) {
        rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
        if (rc == 0)
            _exit(0);
        if (rc > 0)
            waitpid((pid_t)rc, NULL, 0);
    } else if (!strcmp(name, "clone3"))
        rc = syscall(SYS_clone3, NULL, 0); /* kernel: EINVAL for a size of 0 */
    else if (!strcmp(name, "fork")) {
        rc = fork();
        if (rc == 0)
            _exit(0);
        if (rc > 0)
            waitpid((pid_t)rc, NULL, 0);
    } else if (!strcmp(name, "bpf"))
        rc = syscall(SYS_bpf, 0, (void *)1, 16); /* bad pointer: EFAULT */
    else if (!strcmp(name, "perf_event_open"))
        rc = syscall(SYS_perf_event_open, (void *)1, 0, -1, -1, 0); /* EFAULT */
    else if (!strcmp(name, "kexec_load"))
        rc = syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL);
    else if (!strcmp(name, "open_by_handle_at"))
        rc = syscall(SYS_open_by_handle_at, -1, NULL, 0);
    else if (!strcmp(name, "userfaultfd"))
        rc = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
    else if (!strcmp(name, "setns"))
        rc = syscall(SYS_setns, -1, 0); /* EBADF */
    else if (!strcmp(name, "vsock"))
        rc = socket(AF_VSOCK, SOCK_STREAM, 0);
    else if (!strcmp(name, "inet"))
        rc = socket(AF_INET, SOCK_DGRAM, 0);
    else if (!strcmp(name, "personality_linux"))
        rc = personality(0xffffffff) < 0 ? -1 : personality(PER_LINUX);
    else if (!strcmp(name, "personality_bsd"))
        rc = personality(PER_BSD);
    else if (!strcmp(name, "ptrace")) {
        pid_t pid = fork();
        if (pid == 0) {
            pause();
            _exit(0);
        }
        rc = ptrace(PTRACE_ATTACH, pid, NULL, NULL);
        int saved = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        errno = saved;
    } else {
        fprintf(stderr, "probe: unknown call %s\n", name);
        exit(2);
    }
    return rc;
}

static int try_calls(int argc, char **argv)
{
    /* Each in a process of its own: a call that works (unshare) must not
     * change what the next one meets. */
    for (int i = 0; i < argc; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            errno = 0;
            long rc = attempt(argv[i]);
            printf("%s %d\n", argv[i], rc < 0 ? errno : 0);
            fflush(stdout);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
    }
    return 0;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int race(double secs, unsigned long dev, unsigned long ino, const char *marker,
                const char *dir)
{
    long scans = 0, opened = 0, denied = 0, leaks = 0;
    char progress[4096], tmp[4200];
    snprintf(progress, sizeof(progress), "%s/progress", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", progress);
    pid_t self = getpid();
    char stop[4096];
    snprintf(stop, sizeof(stop), "%s/stop", dir);
    double end = now() + secs;
    while (now() < end && access(stop, F_OK) != 0) {
        DIR *proc = opendir("/proc");
        struct dirent *de;
        while (proc && (de = readdir(proc))) {
            pid_t pid = atoi(de->d_name);
            if (pid <= 0 || pid == self)
                continue;
            char path[64];
            snprintf(path, sizeof(path), "/proc/%d", pid);
            int piddir = open(path, O_PATH | O_DIRECTORY);
            if (piddir < 0)
                continue;
            int fd = openat(piddir, "exe", O_RDONLY);
            if (fd >= 0) {
                struct stat st;
                char link[256] = "";
                readlinkat(piddir, "exe", link, sizeof(link) - 1);
                if ((fstat(fd, &st) == 0 && st.st_dev == dev && st.st_ino == ino) ||
                    strstr(link, "pyctr-init")) {
                    leaks++;
                    printf("leak: /proc/%d/exe is %s\n", pid, link);
                }
                opened++;
                close(fd);
            } else if (errno == EACCES || errno == EPERM) {
                denied++;
            }
            fd = openat(piddir, "environ", O_RDONLY);
            if (fd >= 0) {
                char buf[65536];
                ssize_t n = read(fd, buf, sizeof(buf) - 1);
                if (n > 0 && memmem(buf, (size_t)n, marker, strlen(marker))) {
                    leaks++;
                    printf("leak: /proc/%d/environ has the caller's environment\n", pid);
                }
                close(fd);
            }
            fd = openat(piddir, "fd", O_RDONLY | O_DIRECTORY);
            if (fd >= 0) {
                /* The same check as exe guards fd: a runtime process whose
                 * fd dir opened has had its exe opened just before. */
                close(fd);
            }
            close(piddir);
        }
        if (proc)
            closedir(proc);
        scans++;
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "scans %ld opened %ld denied %ld leaks %ld\n", scans, opened, denied,
                    leaks);
            fclose(f);
            rename(tmp, progress);
        }
    }
    printf("scans %ld opened %ld denied %ld leaks %ld\n", scans, opened, denied, leaks);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "try"))
        return try_calls(argc - 2, argv + 2);
    if (argc == 2 && !strcmp(argv[1], "keyring")) {
        long id = syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
        if (id < 0) {
            printf("error %d\n", errno);
            return 1;
        }
        printf("%ld\n", id);
        return 0;
    }
#if defined(__x86_64__)
    if (argc == 3 && !strcmp(argv[1], "int80")) {
        long ret, nr = atol(argv[2]);
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(nr), "b"(0), "c"(0), "d"(0) : "memory");
        printf("int80 %ld\n", ret < 0 && ret > -4096 ? -ret : 0);
        return 0;
    }
#endif
    if (argc == 7 && !strcmp(argv[1], "race"))
        return race(atof(argv[2]), strtoul(argv[3], NULL, 10), strtoul(argv[4], NULL, 10),
                    argv[5], argv[6]);
    fprintf(stderr, "usage: probe try NAME... | keyring | int80 NR | race SECS DEV INO MARKER DIR\n");
    return 2;
}
