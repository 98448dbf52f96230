"""--init: pyctr-init (csrc/init.c), a small static reaper, is the
container's PID 1 and forks the workload; the host's interpreter never
stays in the container.

The Python child copies the binary into a sealed memfd before pivot_root
(for the C child, the parent does, before clone) and execs that: nothing is mounted into the container's tree, and no process
in the container can write the binary through /proc/1/exe (docker's
docker-init bind mount can be remounted read-write by a container with
CAP_SYS_ADMIN).
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.sync import REPORT

BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyctr-init")
# pyctr-init frames a report as sync.py does: this tag, then the payload.
REPORT_TAG = REPORT.decode()

MFD_EXEC = 0x10  # Linux >= 6.3: executable even where vm.memfd_noexec = 1
F_ADD_SEALS = 1033
SEALS = 0x1 | 0x2 | 0x4 | 0x8  # F_SEAL_SEAL, SHRINK, GROW, WRITE


def load():
    """A sealed, close-on-exec memfd holding pyctr-init (for execveat)."""
    import fcntl
    flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
    try:
        fd = os.memfd_create("pyctr-init", flags | MFD_EXEC)
    except OSError:  # a kernel before 6.3 does not know MFD_EXEC
        fd = os.memfd_create("pyctr-init", flags)
    try:
        src = os.open(BINARY, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(src).st_size
            offset = 0
            while offset < size:
                offset += os.sendfile(fd, src, offset, size - offset)
        finally:
            os.close(src)
        os.fchmod(fd, 0o555)
        fcntl.fcntl(fd, F_ADD_SEALS, SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def command(report_fd, path, args, env):
    """pyctr-init's argv and environment (see csrc/init.c) for the workload
    `args`, exec'd from `path`, with `env` (a dict)."""
    env = dict(env, PYCTR_INIT_REPORT="%d:%s" % (report_fd, REPORT_TAG), PYCTR_INIT_PATH=path)
    return ["pyctr-init", "--"] + list(args), env
