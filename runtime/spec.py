"""The Spec: one typed description of a container, shaped like the OCI
runtime spec (process, root, hostname, mounts, namespaces, id mappings,
capabilities, masked/readonly paths) plus pyctr's own fields (name,
networks, lifecycle flags).

The CLI, TOML job files and OCI bundles all produce a Spec (specgen.py,
oci/bundle.py); nothing past that point looks at argv or files. Plain classes with
__slots__ rather than dataclasses: importing dataclasses costs more than
the rest of `pyctr run` start-up.
"""


class Record:
    """A small typed record: fields are __slots__, defaults in DEFAULTS
    (a callable default is called, so lists are never shared).

    freeze() makes a record and everything in it read-only: the Spec is
    frozen once validated, so no acting code can change what was checked
    (lists become tuples, dicts read-only views)."""
    __slots__ = ("_frozen",)
    DEFAULTS = {}

    def __init__(self, **fields):
        for name in self.__slots__:
            if name in fields:
                value = fields.pop(name)
            else:
                value = self.DEFAULTS.get(name)
                if callable(value):
                    value = value()
            object.__setattr__(self, name, value)  # not frozen yet: no check to pay
        if fields:
            raise TypeError("%s has no field %s" % (type(self).__name__, ", ".join(fields)))

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False):
            raise AttributeError("%s is frozen: %s cannot change after validation"
                                 % (type(self).__name__, name))
        object.__setattr__(self, name, value)

    def freeze(self):
        for name in self.__slots__:
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        object.__setattr__(self, "_frozen", True)
        return self

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__))

    def __eq__(self, other):
        return type(self) is type(other) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__)


# Values freeze() passes on as they are. Most of a Spec's values are these
# (the seccomp profile's syscall names alone are hundreds): they are taken
# without a call apiece.
_IMMUTABLE = frozenset((str, int, bool, float, bytes, type(None)))


def _frozen(value):
    if type(value) in _IMMUTABLE:
        return value
    if isinstance(value, Record):
        return value.freeze()
    if isinstance(value, (list, tuple)):
        return tuple([v if type(v) in _IMMUTABLE else _frozen(v) for v in value])
    if isinstance(value, dict):
        return _MAPPING_PROXY({k: v if type(v) in _IMMUTABLE else _frozen(v)
                               for k, v in value.items()})
    return value


# types.MappingProxyType, without importing `types` (0.4 ms of every run)
_MAPPING_PROXY = type(type.__dict__)


class Capabilities(Record):
    """The five capability sets of OCI's process.capabilities, as names
    without CAP_, lower case. Inheritable and ambient stay empty unless
    asked for: an inheritable set equal to the permitted one lets any
    program with file capabilities gain them (runc's CVE-2022-29162)."""
    SETS = ("bounding", "effective", "permitted", "inheritable", "ambient")
    __slots__ = SETS
    DEFAULTS = {name: list for name in SETS}


class Process(Record):
    # preserve_fds: fds 3..3+N-1 pass to the workload (OCI/runc semantics);
    # pass_fds: further single fds, e.g. the PMI_FD an MPI launcher handed us.
    # oci: the runtime-spec fields only bundles set (pyctr.oci.process.OciProcess).
    __slots__ = ("args", "env", "cwd", "uid", "gid", "additional_gids", "capabilities",
                 "no_new_privileges", "preserve_fds", "pass_fds", "init", "oci")
    DEFAULTS = {"args": list, "env": list, "cwd": "/", "uid": 0, "gid": 0,
                "additional_gids": list, "capabilities": Capabilities,
                "no_new_privileges": True, "preserve_fds": 0, "pass_fds": list, "init": False}


class Root(Record):
    __slots__ = ("path", "readonly", "image")
    # image: name of a pyctr image; its rootfs is then the lower layer of an
    # overlay, so containers never change the image itself.
    DEFAULTS = {"readonly": False}


class Mount(Record):
    __slots__ = ("destination", "type", "source", "options")
    DEFAULTS = {"options": list}


class Namespace(Record):
    """type is an OCI namespace type; path, when set, names one to join
    (e.g. /proc/PID/ns/ipc) instead of creating a new one."""
    __slots__ = ("type", "path")


class IdMapping(Record):
    __slots__ = ("container_id", "host_id", "size")


class NetworkRequest(Record):
    """One --net: form is none, host, container, network (a defined one) or
    a network kind (veth, macvlan); network names the container, the defined
    network, the bridge or the lower device; the rest are optional overrides
    (see pyctr.network.request)."""
    __slots__ = ("form", "network", "mode", "ip", "mac", "mtu", "routes", "source_macs",
                 "host_shim")
    DEFAULTS = {"routes": list, "source_macs": list, "host_shim": True}


class Spec(Record):
    __slots__ = ("process", "root", "hostname", "mounts", "namespaces", "uid_mappings",
                 "gid_mappings", "masked_paths", "readonly_paths", "annotations",
                 "seccomp",  # a pyctr.seccomp.Seccomp, or None: unconfined
                 # a bundle's hooks, sysctls ... (pyctr.oci.settings.OciSettings)
                 "oci",
                 # pyctr's own. id: random, names host-side devices and leases;
                 # name: the state key (an OCI engine's container id), default id.
                 # slurm: the srun task this container is (pyctr.slurm), or None.
                 "id", "name", "remove", "detach", "networks", "slurm",
                 "resources")  # resources.Resources: limits, device policy, cgroup path
    DEFAULTS = {"mounts": list, "namespaces": list, "uid_mappings": list,
                "gid_mappings": list, "masked_paths": list, "readonly_paths": list,
                "remove": False, "detach": False, "networks": list, "annotations": dict,
                "resources": lambda: _no_resources()}

    def namespace(self, ns_type):
        for ns in self.namespaces:
            if ns.type == ns_type:
                return ns
        return None

    def to_oci(self):
        """The OCI runtime-spec config.json equivalent (for inspect and `pyctr spec`)."""
        p = self.process
        linux = {
            "namespaces": [{"type": n.type, **({"path": n.path} if n.path else {})}
                           for n in self.namespaces],
            "maskedPaths": list(self.masked_paths),
            "readonlyPaths": list(self.readonly_paths),
        }
        linux.update(self.resources.oci_linux())
        if self.seccomp:
            linux["seccomp"] = self.seccomp.to_oci()
        if self.uid_mappings:
            linux["uidMappings"] = [_idmap_oci(m) for m in self.uid_mappings]
            linux["gidMappings"] = [_idmap_oci(m) for m in self.gid_mappings]
        config = {
            "ociVersion": OCI_VERSION,
            "process": {
                "terminal": False,
                "user": {"uid": p.uid, "gid": p.gid, "additionalGids": list(p.additional_gids)},
                "args": list(p.args), "env": list(p.env), "cwd": p.cwd,
                "capabilities": {k: ["CAP_" + c.upper() for c in getattr(p.capabilities, k)]
                                 for k in Capabilities.SETS},
                "noNewPrivileges": p.no_new_privileges,
            },
            "root": {"path": self.root.path, "readonly": self.root.readonly},
            "hostname": self.hostname,
            "mounts": [{"destination": m.destination, "type": m.type, "source": m.source,
                        "options": list(m.options)} for m in self.mounts],
            "linux": linux,
            "annotations": dict(self.annotations),
        }
        if p.oci:
            p.oci.to_oci(config["process"])
        if self.oci:
            self.oci.to_oci(config)
        return config


def _no_resources():
    from pyctr.resources import Resources
    return Resources()


def _idmap_oci(m):
    return {"containerID": m.container_id, "hostID": m.host_id, "size": m.size}


OCI_VERSION = "1.0.2"

# What runc and podman give a container by default.
DEFAULT_CAPABILITIES = [
    "chown", "dac_override", "fsetid", "fowner", "mknod", "net_raw", "setgid", "setuid",
    "setfcap", "setpcap", "net_bind_service", "sys_chroot", "kill", "audit_write",
]

# Capability numbers are kernel ABI (linux/capability.h); names as in OCI
# configs without the CAP_ prefix, lower case.
CAPABILITIES = {name: number for number, name in enumerate((
    "chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
    "setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
    "ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
    "sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
    "lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
    "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore"))}

# A process's umask where its spec gives none (runc's and crun's), and what
# pyctr makes for a container with: the caller's umask (a hardened node's
# 077) left the container's root and /etc/hosts unreadable to its users.
DEFAULT_UMASK = 0o022
DEFAULT_ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The OCI runtime spec's defaults (runtime-spec config-linux.md, `runc spec`).
DEFAULT_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
DEFAULT_READONLY_PATHS = [
    "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
]


def default_mounts():
    return [
        Mount(destination="/proc", type="proc", source="proc",
              options=["nosuid", "noexec", "nodev"]),
        Mount(destination="/dev", type="tmpfs", source="tmpfs",
              options=["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(destination="/dev/pts", type="devpts", source="devpts",
              options=["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]),
        Mount(destination="/dev/shm", type="tmpfs", source="shm",
              options=["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount(destination="/dev/mqueue", type="mqueue", source="mqueue",
              options=["nosuid", "noexec", "nodev"]),
        Mount(destination="/sys", type="sysfs", source="sysfs",
              options=["nosuid", "noexec", "nodev", "ro"]),
        Mount(destination="/sys/fs/cgroup", type="cgroup", source="cgroup",
              options=["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ]
