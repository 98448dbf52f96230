"""The only door from pyctr to the kernel for namespace, mount and credential
work. Real calls go through the cffi shim (csrc/); unit tests
pass a recording double with the same methods instead (tests/fakes.py), the
way youki swaps its Syscall trait.

Every method raises OSError with the errno on failure.
"""
import errno
import stat

from pyctr import posixos as os  # os without its import cost: see posixos


def write_kernel_file(path, text):
    """Write `text` to a kernel file (/proc/PID/uid_map, a cgroupfs file) in
    one write(2), as such files want it: three syscalls, where open() makes
    seven and three objects. OSError as is."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


_cap_last = None


def cap_last_cap():
    """The running kernel's highest capability number, read once per
    process (the child needs it three times on the way to exec)."""
    global _cap_last
    if _cap_last is None:
        fd = os.open("/proc/sys/kernel/cap_last_cap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _cap_last = int(os.read(fd, 32))
        finally:
            os.close(fd)
    return _cap_last


def cap_split(keep):
    """(kept, dropped) capability numbers: `keep` cut to what the running
    kernel has, and every other one it has."""
    last = cap_last_cap()
    keep = [n for n in keep if n <= last]
    return keep, [n for n in range(last + 1) if n not in keep]


def cap_mask(caps):
    """A capability set as capset(2) takes it: bit N for capability N."""
    return sum(1 << n for n in set(cap_split(caps)[0]))


# clone(2)/unshare(2)/setns(2) flags
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# OCI namespace type -> (clone flag, name under /proc/PID/ns)
NAMESPACES = {
    "user": (CLONE_NEWUSER, "user"),  # first: joining it grants the rights for the rest
    "pid": (CLONE_NEWPID, "pid"),
    "ipc": (CLONE_NEWIPC, "ipc"),
    "uts": (CLONE_NEWUTS, "uts"),
    "network": (CLONE_NEWNET, "net"),
    "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "mount": (CLONE_NEWNS, "mnt"),  # last: after it, /proc paths are the container's
}

# mount(2) flags
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2
CLOSE_RANGE_CLOEXEC = 1 << 2

# prctl(2) options
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38



class Syscalls:
    """Real syscalls. Loaded lazily so `import pyctr.syscalls` stays cheap."""

    def __init__(self):
        # Imported now: after pivot_root the child cannot import anything.
        from pyctr._shim import ffi, lib
        self._ffi, self._lib = ffi, lib
        self._roots = None  # root path -> (O_PATH fd, (st_dev, st_ino)) while held

    def _check(self, rc, what):
        if rc < 0:
            err = self._ffi.errno
            raise OSError(err, "%s: %s" % (what, os.strerror(err)))
        return rc

    def _prctl(self, option, arg=0):
        return self._check(self._lib.pyctr_prctl(option, arg), "prctl(%d)" % option)

    # -- processes and namespaces -------------------------------------
    def clone(self, flags, cgroup_fd=-1, program=None, alone=False):
        """fork()-like clone into new namespaces; with cgroup_fd (a cgroup v2
        directory) the child is born in that group (pyctr_clone_into: OSError
        ENOSYS, E2BIG or EINVAL where the kernel cannot). With program (a
        childprog.Program) the child runs that in C and never returns here;
        without, it returns 0 in the child, as fork() does. alone (with a
        program that waits for nothing from this process): the child runs in
        this process's memory, and clone returns once it has exec'd or
        exited (pyctr_clone_run)."""
        # Rootless: the parent (not root) writes the child's uid_map, which a
        # process that is not dumpable does not let it open; the child hides
        # itself once the maps are written (child.py).
        hide = not (flags & CLONE_NEWUSER and os.geteuid() != 0)
        if program is not None:
            call = lambda: self._check(self._lib.pyctr_clone_run(
                flags, cgroup_fd, program.channel_fd, program.code, len(program.code),
                int(alone)),
                "clone3" if cgroup_fd >= 0 else "clone")
        elif cgroup_fd >= 0:
            call = lambda: self._check(self._lib.pyctr_clone_into(flags, cgroup_fd), "clone3")
        else:
            call = lambda: self._check(self._lib.pyctr_clone(flags), "clone")
        return self._born_hidden(call, hide)

    def fork(self):
        """os.fork(), the child not dumpable from its start (`pyctr exec`)."""
        return self._born_hidden(os.fork)

    def _born_hidden(self, start, hide=True):
        """Run start() (clone or fork) while this process is not dumpable, so
        that the new one, which may appear in a container's pid namespace at
        once, is not dumpable from its first instruction: the container's
        processes cannot open its /proc/PID/exe (the host's interpreter),
        environ or fd (runc's CVE-2019-5736). The parent gets its setting
        back; the workload's execve makes it dumpable again."""
        was = self._prctl(PR_GET_DUMPABLE)
        if hide:
            self._prctl(PR_SET_DUMPABLE, 0)
        try:
            pid = start()
        except BaseException:
            self._prctl(PR_SET_DUMPABLE, was)
            raise
        if pid:
            self._prctl(PR_SET_DUMPABLE, was)
        return pid

    def set_dumpable(self, on):
        self._prctl(PR_SET_DUMPABLE, int(on))

    def join_session_keyring(self):
        self._check(self._lib.pyctr_join_session_keyring(), "keyctl(JOIN_SESSION_KEYRING)")

    def unshare(self, flags):
        self._check(self._lib.pyctr_unshare(flags), "unshare")

    def setns(self, fd, nstype=0):
        self._check(self._lib.pyctr_setns(fd, nstype), "setns")

    def block_signals(self):
        self._check(self._lib.pyctr_block_signals(), "sigprocmask")

    def reset_signals(self):
        self._check(self._lib.pyctr_reset_signals(), "sigprocmask")

    def supervise(self, pid, reap_all=False, timeout=None):
        """The raw wait status of `pid` (signals forwarded meanwhile); None
        if it still runs after `timeout` seconds (None: no limit)."""
        rc = self._lib.pyctr_supervise(pid, int(reap_all),
                                       -1 if timeout is None else int(timeout * 1000))
        if rc < 0 and timeout is not None and self._ffi.errno == errno.EAGAIN:
            return None
        return self._check(rc, "wait")

    # -- filesystem ----------------------------------------------------
    def mount(self, source, target, fstype, flags=0, data=None):
        enc = lambda s: s.encode() if s is not None else self._ffi.NULL
        self._check(self._lib.pyctr_mount(enc(source), enc(target), enc(fstype), flags, enc(data)),
                    "mount %s" % target)

    def umount(self, target, flags=0):
        self._check(self._lib.pyctr_umount2(target.encode(), flags), "umount %s" % target)

    def pivot_root(self, new_root, put_old):
        self._check(self._lib.pyctr_pivot_root(new_root.encode(), put_old.encode()), "pivot_root")

    def mkdir(self, path, mode=0o755):
        os.makedirs(path, mode, exist_ok=True)

    # -- paths inside a container's root --------------------------------
    # `root` is the host path of the container's "/"; `path` is resolved
    # below it by the shim (openat2 RESOLVE_IN_ROOT), so a symlink or ".." in
    # the image can never lead pyctr to a host file. Mounts land on the
    # resolved fd through /proc/self/fd, as runc does.
    def open_in_root(self, root, path, flags=os.O_PATH):
        return self._at_root(root, path, lambda fd, raw: self._lib.pyctr_open_in_root(
            fd, raw, flags), "open")

    def mkdir_in_root(self, root, path, mode=0o755):
        os.close(self._at_root(root, path, lambda fd, raw: self._lib.pyctr_mkdir_in_root(
            fd, raw, mode), "mkdir"))

    def touch_in_root(self, root, path, mode=0o644):
        os.close(self._at_root(root, path, lambda fd, raw: self._lib.pyctr_touch_in_root(
            fd, raw, mode), "create"))

    def mount_in_root(self, root, path, source, fstype, flags=0, data=None):
        # proc and sysfs only on a real directory, never through a symlink
        # (as runc since CVE-2019-19921): what masks and read-only paths
        # protect must be where the kernel's files are.
        kernel_fs = fstype in ("proc", "sysfs")
        fd = self.open_in_root(root, path, os.O_PATH | (os.O_NOFOLLOW if kernel_fs else 0))
        try:
            if kernel_fs and not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OSError(errno.ENOTDIR, "mount %s: %s needs a directory, not a symlink "
                              "or a file" % (path, fstype))
            try:
                self.mount(source, "/proc/self/fd/%d" % fd, fstype, flags, data)
            except OSError as e:
                raise OSError(e.errno, "mount %s: %s" % (path, os.strerror(e.errno))) from e
            self._mounted_on(root, fd)
        finally:
            os.close(fd)

    def set_mount_flags_in_root(self, root, path, flags):
        """MS_RDONLY/NOSUID/NODEV/NOEXEC of `flags` on the mount at `path`
        and every mount below it, in one mount_setattr(2). OSError ENOSYS
        on a kernel before 5.12 (then remount each: see cgroups.mount_view)."""
        fd = self.open_in_root(root, path, os.O_PATH | os.O_DIRECTORY)
        try:
            # MOUNT_ATTR_RDONLY/NOSUID/NODEV/NOEXEC are 1/2/4/8, as the MS_ bits
            attrs = flags & (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
            self._check(self._lib.pyctr_mount_setattr(fd, attrs, 1), "mount_setattr %s" % path)
        finally:
            os.close(fd)

    def symlink_in_root(self, root, target, path):
        parent, _, name = path.rstrip("/").rpartition("/")
        fd = self.open_in_root(root, parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            os.symlink(target, name, dir_fd=fd)
        finally:
            os.close(fd)

    def exists_in_root(self, root, path):
        try:
            os.close(self.open_in_root(root, path))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return False
            raise
        return True

    def locked_flags_in_root(self, root, path):
        fd = self.open_in_root(root, path)
        try:
            return self.locked_flags(fd)
        finally:
            os.close(fd)

    def hold_roots(self, on):
        """While on, a root's fd is opened once for all the *_in_root calls
        (the child makes ~70 building a container's root), not per call.
        Off: those fds are closed. Only the child holds them: an fd left
        open in the parent could reach a container through --preserve-fds."""
        for fd, _ in (self._roots or {}).values():
            os.close(fd)
        self._roots = {} if on else None

    def _at_root(self, root, path, call, what):
        held = self._roots.get(root) if self._roots is not None else None
        root_fd = held[0] if held else os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return self._check(call(root_fd, path.encode()), "%s %s" % (what, path))
        finally:
            if self._roots is None:
                os.close(root_fd)
            elif not held:
                st = os.fstat(root_fd)
                self._roots[root] = (root_fd, (st.st_dev, st.st_ino))

    def _mounted_on(self, root, fd):
        """A mount just landed on `fd`: if that is the held root itself, its
        fd now names the covered mount, so it is let go."""
        held = self._roots.get(root) if self._roots else None
        if held:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == held[1]:
                os.close(held[0])
                del self._roots[root]

    def mknod_in_root(self, root, path, mode, device, uid, gid):
        """A device node at `path` inside the root, owned by uid:gid,
        created relative to its parent (never through a symlink)."""
        parent, _, name = path.rstrip("/").rpartition("/")
        fd = self.open_in_root(root, parent or "/", os.O_PATH | os.O_DIRECTORY)
        try:
            os.mknod(name, mode, device, dir_fd=fd)
            os.chmod(name, mode & 0o7777, dir_fd=fd, follow_symlinks=False)  # umask's part
            os.chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
        finally:
            os.close(fd)

    def chdir(self, path):
        os.chdir(path)

    def chroot(self, path):
        os.chroot(path)

    # -- identity ------------------------------------------------------
    def loopback_up(self):
        self._check(self._lib.pyctr_loopback_up(), "bring up lo")

    def sethostname(self, name):
        raw = name.encode()
        self._check(self._lib.pyctr_sethostname(raw, len(raw)), "sethostname")

    def set_ids(self, uid, gid, groups):
        try:
            os.setgroups(groups)
        except PermissionError:
            if groups:  # an unprivileged user namespace denies setgroups
                raise
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)

    def start_writer(self, fd, data):
        """Write `data` (bytes, at most 64) to fd and close it, in a thread
        of the shim's; join_writer() returns once that thread has ended.
        No clone in between (see pyctr_start_writer)."""
        self._check(self._lib.pyctr_start_writer(fd, data, len(data)), "pthread_create")

    def join_writer(self):
        self._check(self._lib.pyctr_join_writer(), "pthread_join")

    def drop_bounding(self, keep):
        """Cut the bounding set to `keep` (capability numbers), up to the
        running kernel's last cap. Needs CAP_SETPCAP: do it before setuid."""
        drop = cap_split(keep)[1]
        self._check(self._lib.pyctr_drop_bounding(self._ffi.new("int[]", drop), len(drop)),
                    "prctl(PR_CAPBSET_DROP)")

    def set_capabilities(self, effective, permitted, inheritable):
        """The three per-thread sets, each exactly as given (numbers)."""
        words = []
        for caps in (effective, permitted, inheritable):
            mask = cap_mask(caps)
            words.append(self._ffi.new("uint32_t[2]", [mask & 0xFFFFFFFF, mask >> 32]))
        self._check(self._lib.pyctr_capset(*words), "capset")

    def set_ambient(self, caps):
        """The ambient set = `caps` (each already permitted and inheritable)."""
        caps = cap_split(caps)[0]
        self._check(self._lib.pyctr_set_ambient(self._ffi.new("int[]", caps), len(caps)),
                    "set ambient capabilities")

    def set_keepcaps(self, on):
        self._prctl(PR_SET_KEEPCAPS, int(on))

    def set_no_new_privs(self):
        self._prctl(PR_SET_NO_NEW_PRIVS, 1)

    def set_pdeathsig(self, sig):
        self._prctl(PR_SET_PDEATHSIG, sig)

    # -- file descriptors and exec -------------------------------------
    def close_range(self, first, last=0xFFFFFFFF, flags=0):
        self._check(self._lib.pyctr_close_range(first, last, flags), "close_range")

    def execve(self, path, argv, env, seccomp_filter=b"", fd=-1):
        """execve(path), or execveat(fd) if fd >= 0; with seccomp_filter
        (BPF bytes), that filter is loaded first, in C, right before it."""
        ffi = self._ffi
        keep = [ffi.new("char[]", a.encode()) for a in argv]
        c_argv = ffi.new("char *[]", keep + [ffi.NULL])
        envs = [ffi.new("char[]", ("%s=%s" % kv).encode()) for kv in env.items()]
        c_env = ffi.new("char *[]", envs + [ffi.NULL])
        self._lib.pyctr_exec(fd, path.encode(), c_argv, c_env, seccomp_filter,
                             len(seccomp_filter))
        err = ffi.errno  # it returned: it failed
        raise OSError(err, os.strerror(err))

    def seccomp_load(self, seccomp_filter):
        self._check(self._lib.pyctr_seccomp_load(seccomp_filter, len(seccomp_filter)),
                    "seccomp")

    # -- questions the rootfs steps ask ----------------------------------
    def exists(self, path):
        return os.path.lexists(path)

    def is_dir(self, path):
        return os.path.isdir(path)

    def locked_flags(self, path):
        """nosuid/nodev/noexec as currently set on the mount holding `path`
        (a path or an fd; statvfs's ST_* bits have the same values as the
        MS_* ones)."""
        return os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
