"""An OCI bundle (config.json + rootfs) -> Spec, for `pyctr run --bundle DIR`
and `pyctr create`.

Unknown fields are ignored as the runtime spec allows; a known field pyctr
cannot honour is refused (ValueError, one line naming it), never dropped.
Each concern is parsed by its own module, called by one line here.
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import identity, inroot, jsonio, seccomp
from pyctr.spec import IdMapping, Mount, Namespace, Process, Root, Spec
from pyctr.errors import PyctrError
from pyctr.oci import process, settings

_KNOWN_NS = ("pid", "network", "ipc", "uts", "mount", "user", "cgroup")


def _parse(path, text):
    """jsonio (no import of json and the re it needs, for every `create`);
    json only to say what is wrong with a file jsonio refused."""
    try:
        return jsonio.loads(text)
    except (ValueError, RecursionError):
        import json
        try:
            return json.loads(text)
        except (ValueError, RecursionError) as e:
            raise PyctrError("%s: invalid JSON: %s" % (path, e)) from e


def load_bundle(bundle, args=None, paths=None):
    """config.json of `bundle` -> Spec. paths: the world whose state root
    caches compiled seccomp filters (as for pyctr's own run)."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise PyctrError("cannot read %s: %s" % (path, e.strerror)) from e
    except ValueError as e:  # not UTF-8
        raise PyctrError("%s: invalid JSON: %s" % (path, e)) from e
    config = _parse(path, text)
    try:
        spec = from_config(config, bundle, paths)
    except (PyctrError, ValueError) as e:  # refused, or out of range: the message names it
        raise PyctrError("%s: %s" % (path, e)) from e
    except (KeyError, TypeError, AttributeError, OverflowError) as e:
        raise PyctrError("%s: malformed config (%s: %s)" % (path, type(e).__name__, e)) from e
    if args:  # run's flags that apply to a bundle
        ignored = sorted("--" + k.replace("_", "-") for k, v in args.items()
                         if k not in BUNDLE_FLAGS and v not in (None, [], False))
        if ignored:
            raise PyctrError("--bundle takes its settings from %s; %s cannot be combined with it"
                             % (path, ", ".join(ignored)))
        if args.get("command"):
            spec.process.args = list(args["command"])
        spec.name = args.get("name") or spec.name
        spec.remove = bool(args.get("remove"))
        spec.detach = bool(args.get("detach"))
        spec.process.preserve_fds = _open_fds(args.get("preserve_fds") or 0)
    if not spec.process.args:
        raise PyctrError("%s: process.args is empty" % path)
    from pyctr.state import check_name
    check_name(spec.name)
    return spec.freeze()


# `pyctr run` flags that mean something for a bundle (the rest is config.json's).
BUNDLE_FLAGS = ("bundle", "command", "target", "name", "remove", "detach", "preserve_fds")


def _open_fds(count):
    """--preserve-fds N: fds 3..3+N-1 must be open to be passed on."""
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError as e:
            raise PyctrError("--preserve-fds %d: fd %d is not open" % (count, fd)) from e
    return count


def from_config(config, bundle, paths=None):
    if not isinstance(config, dict):
        raise TypeError("top level is not an object")
    proc = config.get("process") or {}
    user = proc.get("user") or {}
    root_path = config["root"]["path"]
    if not os.path.isabs(root_path):
        root_path = os.path.join(os.path.abspath(bundle), root_path)
    if not os.path.isdir(root_path):
        raise ValueError("root.path %s is not a directory" % root_path)
    linux = config.get("linux") or {}
    namespaces = []
    for ns in linux.get("namespaces") or []:
        if ns["type"] not in _KNOWN_NS:
            raise ValueError("unknown namespace type %r" % ns["type"])
        namespaces.append(Namespace(type=ns["type"], path=ns.get("path")))
    container_id = os.urandom(6).hex()
    spec = Spec(
        id=container_id, name=container_id,
        process=Process(
            args=list(proc.get("args") or []), env=list(proc.get("env") or []),
            cwd=proc.get("cwd") or "/", uid=int(user.get("uid", 0)), gid=int(user.get("gid", 0)),
            additional_gids=[int(g) for g in user.get("additionalGids") or []],
            capabilities=identity.capabilities_from_oci(proc.get("capabilities")),
            no_new_privileges=bool(proc.get("noNewPrivileges", False)),
            oci=process.parse(proc)),
        root=Root(path=root_path, readonly=bool(config["root"].get("readonly"))),
        hostname=config.get("hostname") or container_id,
        mounts=[Mount(destination=m["destination"], type=m.get("type") or "bind",
                        source=m.get("source"), options=list(m.get("options") or []))
                for m in config.get("mounts") or []],
        namespaces=namespaces,
        uid_mappings=[_idmap(m) for m in linux.get("uidMappings") or []],
        gid_mappings=[_idmap(m) for m in linux.get("gidMappings") or []],
        masked_paths=list(linux.get("maskedPaths") or []),
        readonly_paths=list(linux.get("readonlyPaths") or []),
        annotations=dict(config.get("annotations") or {}),
    )
    from pyctr import resources
    spec.resources = resources.from_oci(linux)
    spec.seccomp = seccomp.for_bundle(linux, spec.process.capabilities.bounding, paths)
    # The user namespace must come first: the others are created owned by it.
    spec.namespaces.sort(key=lambda n: n.type != "user")
    inroot.check_mount_namespace(spec)
    inroot.check_mounts(spec.mounts)
    identity.check_ids(spec.process, spec.uid_mappings, spec.gid_mappings)
    spec.oci = settings.parse(config, os.path.abspath(bundle), spec.namespaces)
    return spec


def _idmap(m):
    return IdMapping(container_id=int(m["containerID"]), host_id=int(m["hostID"]),
                       size=int(m["size"]))
