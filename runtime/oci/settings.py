"""The runtime-spec settings of a bundle beyond what pyctr's own CLI makes:
where the bundle is, hooks, namespaced sysctls, root propagation, and
pyctr's own networks asked for by annotation. parse()
reads them into an OciSettings (Spec.oci) and refuses, one field at a time,
what pyctr cannot honour; apply_sysctl() runs in the container.
"""
from pyctr import syscalls
from pyctr.oci import hooks
from pyctr.spec import Record

# Sysctls the kernel keeps per namespace, and the namespace each needs
# (runc's list): only these may be set, and only in a namespace of the
# container's own, never in the host's.
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")

PROPAGATION = {"private": syscalls.MS_PRIVATE, "rprivate": syscalls.MS_PRIVATE,
               "slave": syscalls.MS_SLAVE, "rslave": syscalls.MS_SLAVE}

# linux.* fields no other part of pyctr reads and pyctr cannot honour.
_REFUSED = ("intelRdt", "personality", "timeOffsets", "memoryPolicy", "netDevices")


NET_ANNOTATION = "run.pyctr.net"


class OciSettings(Record):
    """bundle: the bundle's directory; sysctl: {key: value};
    hooks: {hook name: [Hook]}; rootfs_propagation: a PROPAGATION key;
    networks: [NetworkRequest] from the run.pyctr.net annotation, attached
    inside the container's netns (new, or the engine's) once init is ready."""
    __slots__ = ("bundle", "sysctl", "hooks", "rootfs_propagation", "networks")
    DEFAULTS = {"sysctl": dict, "hooks": dict, "networks": list}

    def to_oci(self, config):
        """Add these fields to a runtime-spec config."""
        if self.hooks:
            config["hooks"] = hooks.to_oci(self.hooks)
        if self.sysctl:
            config["linux"]["sysctl"] = dict(self.sysctl)
        if self.rootfs_propagation:
            config["linux"]["rootfsPropagation"] = self.rootfs_propagation


def parse(config, bundle, namespaces):
    """config: the whole config.json; namespaces: the Spec's (already parsed)."""
    linux = config.get("linux") or {}
    for field in _REFUSED:
        if linux.get(field):
            raise ValueError("linux.%s is not supported by pyctr" % field)
    if linux.get("mountLabel"):
        raise ValueError("linux.mountLabel is set but pyctr supports no SELinux labels "
                         "(leave it empty)")
    propagation = linux.get("rootfsPropagation") or None
    if propagation and propagation not in PROPAGATION:
        raise ValueError("linux.rootfsPropagation %r is not supported by pyctr (one of %s)"
                         % (propagation, ", ".join(PROPAGATION)))
    sysctl = {str(k): str(v) for k, v in (linux.get("sysctl") or {}).items()}
    own = {ns.type for ns in namespaces if not ns.path or not _is_host(ns)}
    for key in sysctl:
        _check_sysctl(key, own)
    if config.get("domainname"):  # the kernel keeps it per UTS namespace, as a sysctl
        sysctl["kernel.domainname"] = str(config["domainname"])
        _check_sysctl("kernel.domainname", own)
    return OciSettings(bundle=bundle, sysctl=sysctl, hooks=hooks.parse(config.get("hooks") or {}),
                       rootfs_propagation=propagation,
                       networks=_networks(config.get("annotations") or {}, namespaces))


def _networks(annotations, namespaces):
    """run.pyctr.net=veth:br0 | macvlan:nic0 | NAME, --net's values (options
    after commas), several separated by spaces."""
    values = str(annotations.get(NET_ANNOTATION, "")).split()
    if not values:
        return []
    if not any(ns.type == "network" for ns in namespaces):
        raise ValueError("annotation %s needs a network namespace in linux.namespaces"
                         % NET_ANNOTATION)
    from pyctr import network
    return [network.parse(v) for v in values]


def _is_host(ns):
    """A namespace path that names the runtime's own namespace (the host's)."""
    import os
    from pyctr.syscalls import NAMESPACES
    try:
        return os.stat(ns.path).st_ino == os.stat(
            "/proc/self/ns/" + NAMESPACES[ns.type][1]).st_ino
    except OSError:
        return False  # the namespace code reports a missing path


def _check_sysctl(key, own):
    # The key becomes a path below /proc/sys: nothing in it may climb out.
    if "/" in key or "" in key.split("."):
        raise ValueError("linux.sysctl %r is not a sysctl name" % key)
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        needed = "ipc"
    elif key.startswith("net."):
        needed = "network"
    elif key == "kernel.domainname":
        needed = "uts"
    else:
        raise ValueError("linux.sysctl %s is not a namespaced sysctl: pyctr sets only "
                         "kernel.msg*/sem/shm*, fs.mqueue.*, net.* and kernel.domainname" % key)
    if needed not in own:
        raise ValueError("linux.sysctl %s needs a %s namespace of the container's own"
                         % (key, needed))


def apply_sysctl(sysctl):
    """In the container, after /proc is mounted and before /proc/sys is made
    read-only (parse() checked the names)."""
    for key, value in sysctl.items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
