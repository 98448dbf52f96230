"""`pyctr features`: what pyctr honours, as the runtime-spec features JSON
(features.md, features-linux.md). Only what really works is listed: a
bundle asking for anything else is refused at create."""
from pyctr import seccomp, spec
from pyctr.oci import hooks

MOUNT_OPTIONS = ("bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec",
                 "noatime", "nodiratime", "relatime", "strictatime", "private", "rprivate",
                 "slave", "rslave")


def features():
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": spec.OCI_VERSION,
        "hooks": list(hooks.NAMES),
        "mountOptions": list(MOUNT_OPTIONS),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": ["CAP_" + name.upper() for name in spec.CAPABILITIES],
            # cgroupfs only: --systemd-cgroup is accepted and ignored
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {"enabled": True, "actions": sorted(seccomp.ACTIONS),
                        "operators": sorted(seccomp.OPERATORS),
                        "archs": sorted(seccomp.ARCH_PREFIX + a.upper()
                                        for a in ("x86_64", "x86", "x32", "aarch64", "arm")),
                        "knownFlags": [], "supportedFlags": []},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "run.pyctr.net": "pyctr's own networks inside the container's netns: "
                             "veth:BRIDGE, macvlan:LOWER[:MODE] or a network name",
        },
    }
