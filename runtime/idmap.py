"""uid/gid maps for user namespaces.

Three cases, as podman/Apptainer users expect:
  root with --userns      container root -> an unprivileged host range
                          (root's line in /etc/subuid, else 100000:65536)
  a non-root caller       the caller -> root inside (rootless), nothing else
  a user's MPI rank       the caller -> the caller's own ids inside (keep_id)
"""
import os

from pyctr.spec import IdMapping
from pyctr.syscalls import write_kernel_file

DEFAULT_RANGE = (100000, 65536)


def subordinate_range(user="root", path="/etc/subuid"):
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] == user:
                    return int(parts[1]), int(parts[2])
    except OSError:
        pass
    return DEFAULT_RANGE


def maps_for(rootless):
    """(uid_mappings, gid_mappings) for a new user namespace."""
    if rootless:
        return ([IdMapping(container_id=0, host_id=os.geteuid(), size=1)],
                [IdMapping(container_id=0, host_id=os.getegid(), size=1)])
    (ustart, ucount), (gstart, gcount) = subordinate_range(), subordinate_range(path="/etc/subgid")
    return ([IdMapping(container_id=0, host_id=ustart, size=ucount)],
            [IdMapping(container_id=0, host_id=gstart, size=gcount)])


def keep_id():
    """The caller's own uid and gid, the same number inside as outside, and
    nothing else (podman's --userns=keep-id): for a workload that a peer
    outside the container checks by uid, as PMIx does an MPI rank."""
    uid, gid = os.geteuid(), os.getegid()
    return [IdMapping(container_id=uid, host_id=uid, size=1)], \
        [IdMapping(container_id=gid, host_id=gid, size=1)]


def format_map(mappings):
    return "".join("%d %d %d\n" % (m.container_id, m.host_id, m.size) for m in mappings)


def write_maps(pid, uid_mappings, gid_mappings):
    """Write the child's maps from the parent (the child waits meanwhile).
    Without privilege the kernel wants setgroups denied before gid_map."""
    if os.geteuid() != 0:
        write_kernel_file("/proc/%d/setgroups" % pid, "deny")
    write_kernel_file("/proc/%d/uid_map" % pid, format_map(uid_mappings))
    write_kernel_file("/proc/%d/gid_map" % pid, format_map(gid_mappings))
