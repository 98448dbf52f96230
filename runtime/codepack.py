"""The code pack: pyctr's modules compiled into one file, which the
installed `pyctr` command imports them from (pyctr.launcher).

Importing a module from its directory costs a dozen syscalls (the path
finder's stats, then open, fstat, ioctl, lseek, read, close of the .pyc)
and the finder's Python code; a `pyctr run` imports ~25 of pyctr's
modules, and a syscall costs ~5 us on these VMs. From the pack, a module
is one stat (its source unchanged?), one pread and an unmarshal.

  __pycache__/codepack.<cache tag>.bin:
    magic (importlib's, this Python's bytecode) | index length (8 bytes)
    | marshal({name: (is_package, source path, mtime_ns, size, offset,
    length)}) | the modules' marshalled code, back to back

Written at install time (pyctr.launcher.write), next to the .pyc files
compileall writes. A module whose source changed since (or one not in the
pack) is imported the usual way: the pack can be stale, never wrong.
"""
import marshal
import os
import sys

# Not packed: tools no verb on the command's hot paths imports.
LEFT_OUT = ("pyctr.bench", "pyctr.cluster", "pyctr.testbed", "pyctr.slurmbed")


def path(package_dir):
    return os.path.join(package_dir, "__pycache__",
                        "codepack.%s.bin" % sys.implementation.cache_tag)


def _magic():
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def build(package_dir):
    """Write the pack of the package at `package_dir` (the `pyctr` dir)."""
    parent = os.path.dirname(os.path.abspath(package_dir))
    index, blobs, offset = {}, [], 0
    for top, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            source = os.path.join(top, name)
            module = os.path.relpath(source, parent)[:-3].replace(os.sep, ".")
            is_package = module.endswith(".__init__")
            if is_package:
                module = module[:-len(".__init__")]
            if module.startswith(LEFT_OUT) or module == "pyctr":
                continue
            with open(source, "rb") as f:
                text = f.read()
            st = os.stat(source)
            blob = marshal.dumps(compile(text, source, "exec", dont_inherit=True))
            index[module] = (is_package, source, st.st_mtime_ns, st.st_size, offset, len(blob))
            blobs.append(blob)
            offset += len(blob)
    head = marshal.dumps(index)
    target = path(package_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = "%s.%d.tmp" % (target, os.getpid())
    with open(tmp, "wb") as f:
        f.write(_magic() + len(head).to_bytes(8, "little") + head + b"".join(blobs))
    os.rename(tmp, target)
    return target


class _Finder:
    """A meta path finder serving the pack's modules (the loader too)."""

    def __init__(self, index, fd, start, pack):
        self.index, self.fd, self.start, self.pack = index, fd, start, pack
        st = os.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)

    def _open(self):
        """The pack's fd, opened again if the process closed it meanwhile
        (a daemon closing every fd it inherited; the number may even have
        been reused for another file); None if the pack is gone."""
        try:
            st = os.fstat(self.fd)
            if (st.st_dev, st.st_ino) == self.identity:
                return self.fd
        except OSError:
            pass
        try:  # non-blocking: after pivot_root this path is the container's (a FIFO?)
            fd = os.open(self.pack, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.identity:  # rebuilt since, or not ours
            os.close(fd)
            return None
        self.fd = fd
        return fd

    def find_spec(self, name, search_path=None, target=None):
        entry = self.index.get(name)
        if entry is None or self._open() is None:
            return None
        is_package, source, mtime_ns, size = entry[:4]
        try:
            st = os.stat(source)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return None  # changed since the pack was made: the usual import
        spec = sys.modules["_frozen_importlib"].ModuleSpec(name, self, origin=source,
                                                           is_package=is_package)
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        offset, length = self.index[module.__spec__.name][4:]
        exec(marshal.loads(os.pread(self.fd, length, self.start + offset)), module.__dict__)


# The pack stays open for imports to come, at the top of a 1024-entry fd
# table (as cgroups.warm_up's fd): out of the way of the fds a user passes
# (--preserve-fds, PMI_FD), which must be sockets or pipes anyway.
FD_FLOOR = 1024 - 80


def install(package_dir):
    """Import pyctr's modules from the pack from now on, if there is one
    for this Python. Reads its index; each module is read when imported."""
    import fcntl
    try:
        low = os.open(path(package_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fd = fcntl.fcntl(low, fcntl.F_DUPFD_CLOEXEC, FD_FLOOR)
    finally:
        os.close(low)
    magic = _magic()
    head = os.pread(fd, 65536, 0)
    start = len(magic) + 8
    end = start + int.from_bytes(head[len(magic):start], "little")
    if head[:len(magic)] != magic or len(head) < start:
        os.close(fd)
        return False
    if end > len(head):
        head += os.pread(fd, end - len(head), len(head))
    sys.meta_path.insert(0, _Finder(marshal.loads(head[start:end]), fd, end, path(package_dir)))
    return True
