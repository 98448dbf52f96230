"""The runtime-spec process fields only a bundle (or an exec process.json)
sets: terminal and console size, umask, rlimits, oomScoreAdj; and the LSM
labels pyctr refuses unless empty.

parse() reads them into an OciProcess (Process.oci); apply() runs in the
container's process before its identity changes: raising a hard rlimit or
lowering oom_score_adj needs the privileges it is about to drop. The
modules apply() uses are imported here, with this module, before clone:
after pivot_root the child can import nothing.
"""
import resource

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.spec import DEFAULT_UMASK, Record

# runtime-spec rlimit type -> its number (kernel ABI, asm-generic/resource.h;
# Python's resource module lacks RLIMIT_LOCKS)
RLIMITS = {"RLIMIT_" + name: number for number, name in enumerate((
    "CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS",
    "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"))}


class OciProcess(Record):
    """rlimits: [(type name, soft, hard)]; console_size: (height, width)."""
    __slots__ = ("terminal", "console_size", "umask", "rlimits", "oom_score_adj")
    DEFAULTS = {"terminal": False, "rlimits": list}

    def to_oci(self, process):
        """Add these fields to a runtime-spec process object."""
        process["terminal"] = self.terminal
        if self.console_size:
            process["consoleSize"] = {"height": self.console_size[0],
                                      "width": self.console_size[1]}
        if self.umask is not None:
            process["user"]["umask"] = self.umask
        if self.rlimits:
            process["rlimits"] = [{"type": t, "soft": s, "hard": h} for t, s, h in self.rlimits]
        if self.oom_score_adj is not None:
            process["oomScoreAdj"] = self.oom_score_adj


def parse(process):
    """A runtime-spec process object -> OciProcess. Raises ValueError for
    what pyctr cannot honour (the caller makes it one `pyctr:` line)."""
    for field in ("apparmorProfile", "selinuxLabel"):
        if process.get(field):
            raise ValueError("process.%s is set but pyctr supports no LSM labels "
                             "(leave it empty)" % field)
    for field in ("ioPriority", "scheduler", "execCPUAffinity"):
        if process.get(field):
            raise ValueError("process.%s is not supported by pyctr" % field)
    size = process.get("consoleSize")
    user = process.get("user") or {}
    umask = user.get("umask")
    if umask is not None and not 0 <= int(umask) <= 0o777:
        raise ValueError("process.user.umask %r is not a file mode" % umask)
    adj = process.get("oomScoreAdj")
    if adj is not None and not -1000 <= int(adj) <= 1000:
        raise ValueError("process.oomScoreAdj %r is outside -1000..1000" % adj)
    return OciProcess(
        terminal=bool(process.get("terminal")),
        console_size=(int(size["height"]), int(size["width"])) if size else None,
        umask=None if umask is None else int(umask),
        rlimits=[_rlimit(r) for r in process.get("rlimits") or []],
        oom_score_adj=None if adj is None else int(adj))


def _rlimit(entry):
    kind = entry["type"]
    if kind not in RLIMITS:
        raise ValueError("process.rlimits: unknown type %r" % kind)
    soft, hard = int(entry["soft"]), int(entry["hard"])
    if soft > hard:
        raise ValueError("process.rlimits: %s soft limit %d is above its hard limit %d"
                         % (kind, soft, hard))
    return (kind, soft, hard)


def apply(settings):
    """In the container's process, before ids and capabilities change."""
    for kind, soft, hard in settings.rlimits:
        resource.setrlimit(RLIMITS[kind], (_unlimited(soft), _unlimited(hard)))
    if settings.oom_score_adj is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(settings.oom_score_adj))
    os.umask(DEFAULT_UMASK if settings.umask is None else settings.umask)


def _unlimited(value):
    # The spec writes "unlimited" as the all-ones 64-bit value.
    return resource.RLIM_INFINITY if value >= 2 ** 64 - 1 or value < 0 else value
