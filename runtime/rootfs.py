"""The container's filesystem view, in two halves:

  plan_*()  pure functions Spec -> list of steps, tested without root
  apply()   runs steps through a Syscalls object (real, or a recorder)

A step is a tuple (operation, *args). Primitive operations are Syscalls
methods; the few composite ones (bind a device node, mask a path, make a
path read-only, mount sysfs) are interpreted here because what they do
depends on what exists at the time.
"""
from pyctr import cgroups, devices
from pyctr import syscalls

# Mount option -> (flags to set, flags to clear). Anything else is fs data.
_FLAGS = {
    "ro": (syscalls.MS_RDONLY, 0), "rw": (0, syscalls.MS_RDONLY),
    "nosuid": (syscalls.MS_NOSUID, 0), "suid": (0, syscalls.MS_NOSUID),
    "nodev": (syscalls.MS_NODEV, 0), "dev": (0, syscalls.MS_NODEV),
    "noexec": (syscalls.MS_NOEXEC, 0), "exec": (0, syscalls.MS_NOEXEC),
    "noatime": (syscalls.MS_NOATIME, 0), "nodiratime": (syscalls.MS_NODIRATIME, 0),
    "relatime": (syscalls.MS_RELATIME, 0), "strictatime": (syscalls.MS_STRICTATIME, 0),
    "bind": (syscalls.MS_BIND, 0), "rbind": (syscalls.MS_BIND | syscalls.MS_REC, 0),
    "private": (0, 0), "rprivate": (0, 0), "slave": (0, 0), "rslave": (0, 0),
}

DEVICES = ("null", "zero", "full", "tty", "random", "urandom")
DEV_LINKS = (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
             ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr"),
             ("pts/ptmx", "ptmx"), ("/proc/kcore", "core"))

def parse_options(options):
    flags, data = 0, []
    for opt in options:
        if opt in _FLAGS:
            on, off = _FLAGS[opt]
            flags = (flags | on) & ~off
        else:
            data.append(opt)
    return flags, ",".join(data) or None


def plan_root(spec, rootfs, layers=None):
    """Steps before any mount below the new root: stop propagation to the
    host, then make `rootfs` a mount point (pivot_root needs one).

    layers = (image rootfs, scratch dir[, DIR...]) makes `rootfs` an overlay
    instead: the image below, a tmpfs at the scratch dir for the writable
    layer, which has the directories DIR (/etc) of its own from the start,
    owned by the container's root (container.etc_files says why). The
    tmpfs lives in the container's mount namespace only, so the writable
    layer vanishes with the container and never needs cleaning up."""
    steps = [("mount", None, "/", None, syscalls.MS_REC | _propagation(spec), None)]
    if layers:
        lower, scratch, *own_dirs = layers
        upper, work = scratch + "/upper", scratch + "/work"
        steps += [("mount", "tmpfs", scratch, "tmpfs", 0, "mode=755"),
                  ("mkdir", upper), ("mkdir", work)]
        steps += [("mkdir", upper + d) for d in own_dirs]
        steps += [("mkdir", rootfs),
                  ("mount", "overlay", rootfs, "overlay", 0,
                   "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, upper, work))]
    else:
        steps.append(("mount", spec.root.path, rootfs, None,
                      syscalls.MS_BIND | syscalls.MS_REC, None))
    return steps


def _propagation(spec):
    """How the container's mounts relate to the host's: private unless a
    bundle's rootfsPropagation says slave (never shared: see oci.settings)."""
    if spec.oci and spec.oci.rootfs_propagation:
        from pyctr.oci.settings import PROPAGATION
        return PROPAGATION[spec.oci.rootfs_propagation]
    return syscalls.MS_PRIVATE


def plan_mounts(spec, rootfs, extra=(), cgroup_view=None, pivot=True):
    """Steps for spec.mounts then `extra` (pyctr's /etc files), /dev's
    contents, and (with pivot) the switch of root. cgroup_view: what a
    "cgroup" mount shows (cgroups.view).

    Every destination is a path inside the container's root, resolved by
    the *_in_root calls below `rootfs` (never as the string rootfs + dest,
    which a symlink in the image could lead out of the root)."""
    steps = []
    for m in tuple(spec.mounts) + tuple(extra):
        dest = m.destination
        flags, data = parse_options(m.options)
        if m.type == "bind" or flags & syscalls.MS_BIND:
            steps.append(("bind", m.source, rootfs, dest, flags | syscalls.MS_BIND))
        elif m.type == "cgroup":
            if cgroup_view:
                steps.append(("mkdir_in_root", rootfs, dest))
                steps.append(("mount_cgroup", rootfs, dest, flags, cgroup_view))
        elif m.type == "sysfs":
            steps.append(("mkdir_in_root", rootfs, dest))
            steps.append(("mount_sysfs", rootfs, dest, flags))
        else:
            steps.append(("mkdir_in_root", rootfs, dest))
            steps.append(("mount_in_root", rootfs, dest, m.source, m.type, flags, data))
        if dest == "/dev" and m.type == "tmpfs":
            for dev in DEVICES:
                steps.append(("bind", "/dev/" + dev, rootfs, "/dev/" + dev, syscalls.MS_BIND))
            for src, name in DEV_LINKS:
                steps.append(("symlink_in_root", rootfs, src, "/dev/" + name))
            for device in spec.resources.devices:  # --device, linux.devices
                steps.append(("device", rootfs, device.path, device))
    if spec.root.image and spec.process and spec.process.cwd:
        # A missing working directory is made inside the root, as runc does,
        # but only in an image's overlay: a plain rootfs is the user's files.
        steps.append(("mkdir_in_root", rootfs, spec.process.cwd))
    return steps + plan_pivot(rootfs) if pivot else steps


def plan_pivot(rootfs, no_pivot=False):
    """Make `rootfs` the root. no_pivot (runc's --no-pivot, for a root on
    a ramdisk, where pivot_root fails): move it over / and chroot, which a
    process holding CAP_SYS_CHROOT can escape; pivot_root is the default."""
    if no_pivot:
        return [("chdir", rootfs), ("mount", rootfs, "/", None, syscalls.MS_MOVE, None),
                ("chroot", "."), ("chdir", "/")]
    return [("chdir", rootfs), ("pivot_root", ".", "."), ("umount", ".", syscalls.MNT_DETACH),
            ("chdir", "/")]


def plan_finish(spec):
    """Steps after pivot_root: masks, read-only paths, read-only root."""
    steps = [("mask", tuple(spec.masked_paths))] if spec.masked_paths else []
    steps += [("readonly", p) for p in spec.readonly_paths]
    if spec.root.readonly:
        steps.append(("readonly", "/"))
    return steps


def apply(steps, syscall):
    for op, *args in steps:
        handler = _COMPOSITE.get(op)
        if handler:
            handler(syscall, *args)
        else:
            getattr(syscall, op)(*args)


def _bind(syscall, source, root, dest, flags):
    """Bind host `source` at `dest` in the root (creating a file or
    directory to mount on), then remount read-only if asked: MS_RDONLY is
    ignored on the bind itself."""
    if syscall.is_dir(source):
        syscall.mkdir_in_root(root, dest)
    else:
        syscall.touch_in_root(root, dest)
    syscall.mount_in_root(root, dest, source, None, flags & (syscalls.MS_BIND | syscalls.MS_REC),
                          None)
    extra = flags & ~(syscalls.MS_BIND | syscalls.MS_REC)
    if extra:
        syscall.mount_in_root(root, dest, None, None, syscalls.MS_BIND | syscalls.MS_REMOUNT | extra
                          | syscall.locked_flags_in_root(root, dest), None)


def _mount_sysfs(syscall, root, dest, flags):
    # A fresh sysfs needs a network namespace this user namespace owns; with
    # --net=host in a user namespace, bind the host's instead (as runc does).
    try:
        syscall.mount_in_root(root, dest, "sysfs", "sysfs", flags, None)
    except PermissionError:
        _bind(syscall, "/sys", root, dest,
              syscalls.MS_BIND | syscalls.MS_REC | (flags & syscalls.MS_RDONLY))


def _mask(syscall, paths):
    """Hide each path: a file under /dev/null, a directory under an empty
    read-only tmpfs, one for all of them (the first, bound again at the
    rest): every filesystem the node mounts enlarges each new memory
    cgroup's table in the kernel, so a container mounts no more than it needs."""
    empty = None
    for path in paths:
        if not syscall.exists(path):
            continue
        if not syscall.is_dir(path):
            syscall.mount("/dev/null", path, None, syscalls.MS_BIND, None)
        elif empty is None:
            syscall.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY, None)
            empty = path
        else:  # read-only already: the filesystem is
            syscall.mount(empty, path, None, syscalls.MS_BIND, None)


def _readonly(syscall, path):
    if not syscall.exists(path):
        return
    if path != "/":
        syscall.mount(path, path, None, syscalls.MS_BIND | syscalls.MS_REC, None)
    # A remount must repeat the flags the kernel locked on mounts inherited
    # into a user namespace, or it fails with EPERM.
    syscall.mount(None, path, None,
                  syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
                  | syscall.locked_flags(path), None)


_COMPOSITE = {"bind": _bind, "mount_sysfs": _mount_sysfs, "mask": _mask, "readonly": _readonly,
              "mount_cgroup": cgroups.mount_view, "device": devices.make_node}
