"""Small files, whole, through os.open/read/write. open() adds three
syscalls (fstat, ioctl, lseek) and three objects to each file, and a
`pyctr run` reads or writes about twenty (records, the /etc files,
image.json, /proc, cgroupfs). OSError as is."""
import errno

from pyctr import posixos as os  # os without its import cost: see posixos



def read(path):
    """The file's bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def read_fd(fd):
    """What is left to read from `fd`, to its end."""
    chunks = [os.read(fd, 65536)]
    while chunks[-1]:
        chunks.append(os.read(fd, 65536))
    return b"".join(chunks)


def write(path, data, mode=0o666):
    """Create or truncate `path` (`mode` less the umask, as open() has it)
    and write all of `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def replace(path, data, mode=0o666):
    """Put a file holding `data` in the place of `path`, atomically: a
    reader opens the old file or the new one, whole. The two names are
    exchanged and the old file unlinked, where a rename over `path` would
    make ext4 (a /run that is not a tmpfs) allocate and write out the new
    file's blocks at once (auto_da_alloc), and its removal, moments later
    for a `run --rm`, wait for their discard. A `path` not there yet, or a
    filesystem without the exchange, gets the rename. The temporary name
    is the writer's own: two writers never share its inode; it is gone
    again when anything fails (a full disk), not left to fill it further."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        write(tmp, data, mode)
        from pyctr._shim import ffi, lib
        if lib.pyctr_rename_exchange(tmp.encode(), path.encode()) == 0:
            os.unlink(tmp)  # the old file now
            return
        if ffi.errno not in (errno.ENOENT, errno.EINVAL, errno.ENOSYS):
            raise OSError(ffi.errno, os.strerror(ffi.errno), path)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
