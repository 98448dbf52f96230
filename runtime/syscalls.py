"""The only door from pyctr to the kernel for namespace, mount and credential
work. Real calls go through the cffi shim (csrc/) and python-prctl; unit tests
pass a recording double with the same methods instead (tests/fakes.py), the
way youki swaps its Syscall trait.

Every method raises OSError with the errno on failure.
"""
import os

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



class Syscalls:
    """Real syscalls. Loaded lazily so `import pyctr.syscalls` stays cheap."""

    def __init__(self):
        from pyctr._shim import ffi, lib
        self._ffi, self._lib = ffi, lib
        # Imported now: after pivot_root the child cannot import anything.
        # python-prctl's C core only: its prctl.py wrapper adds start-up
        # time and nothing pyctr uses.
        import _prctl
        self._prctl = _prctl

    def _check(self, rc, what):
        if rc < 0:
            err = self._ffi.errno
            raise OSError(err, "%s: %s" % (what, os.strerror(err)))
        return rc

    # -- processes and namespaces -------------------------------------
    def clone(self, flags):
        return self._check(self._lib.pyctr_clone(flags), "clone")

    def unshare(self, flags):
        self._check(self._lib.pyctr_unshare(flags), "unshare")

    def setns(self, fd, nstype=0):
        self._check(self._lib.pyctr_setns(fd, nstype), "setns")

    def block_signals(self):
        self._check(self._lib.pyctr_block_signals(), "sigprocmask")

    def reset_signals(self):
        self._check(self._lib.pyctr_reset_signals(), "sigprocmask")

    def supervise(self, pid, reap_all=False):
        return self._check(self._lib.pyctr_supervise(pid, int(reap_all)), "wait")

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

    def touch(self, path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    def symlink(self, target, path):
        os.symlink(target, path)

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

    def _cap_split(self, keep):
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
        keep = [n for n in keep if n <= last]
        return keep, [n for n in range(last + 1) if n not in keep]

    def drop_bounding(self, keep):
        """Cut the bounding set to `keep` (capability numbers), up to the
        running kernel's last cap. Needs CAP_SETPCAP: do it before setuid."""
        P = self._prctl
        for number in self._cap_split(keep)[1]:
            P.prctl(P.PR_CAPBSET_DROP, number)

    def set_capabilities(self, keep):
        """Permitted, effective and inheritable sets = `keep`."""
        keep, drop = self._cap_split(keep)
        self._prctl.set_caps(keep, keep, keep, drop, drop, drop)

    def set_keepcaps(self, on):
        self._prctl.prctl(self._prctl.PR_SET_KEEPCAPS, int(on))

    def set_no_new_privs(self):
        self._prctl.prctl(self._prctl.PR_SET_NO_NEW_PRIVS, 1)

    def set_pdeathsig(self, sig):
        self._prctl.prctl(self._prctl.PR_SET_PDEATHSIG, sig)

    # -- file descriptors and exec -------------------------------------
    def close_range(self, first, last=0xFFFFFFFF, flags=0):
        self._check(self._lib.pyctr_close_range(first, last, flags), "close_range")

    def execve(self, path, argv, env):
        os.execve(path, argv, env)

    # -- questions the rootfs steps ask ----------------------------------
    def exists(self, path):
        return os.path.lexists(path)

    def is_dir(self, path):
        return os.path.isdir(path)

    def locked_flags(self, path):
        """nosuid/nodev/noexec as currently set on the mount holding `path`
        (statvfs's ST_* bits have the same values as the MS_* ones)."""
        return os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
