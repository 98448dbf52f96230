"""Small files, whole, through os.open/read/write. open() adds three
syscalls (fstat, ioctl, lseek) and three objects to each file, and a
`pyctr run` reads or writes about twenty (records, the /etc files,
image.json, /proc, cgroupfs). OSError as is."""
import os


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
