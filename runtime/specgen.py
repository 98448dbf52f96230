"""Options (from the CLI or a TOML job file, same keys) -> Spec.

Keys, all optional but `target` and `command`:
  target            image name or rootfs directory
  command           list of strings
  name, hostname, workdir, user ("UID[:GID]" or a name from the rootfs)
  env               list of "KEY=VALUE" (or "KEY": taken from pyctr's environment)
  env_file          list of paths
  volumes           list of "SRC:DST[:ro]";  tmpfs: list of "DST[:OPTIONS]"
  read_only, remove, detach, init, userns (bool), preserve_fds (int)
  cap_add, cap_drop list of capability names (chown or CAP_CHOWN; ALL)
  pid, ipc, uts, net_ns   "private" (default), "host" or "container:NAME"
  net               list of --net values: none, host, container:NAME,
                    veth:BRIDGE..., macvlan:LOWER..., a network name
  ip, mac, mtu      applied to the first network
"""
import os

from pyctr import spec as S
from pyctr.errors import PyctrError
from pyctr.state import check_name

NS_OPTIONS = (("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"))


def build(paths, opts):
    target = opts.get("target")
    if not target:
        raise PyctrError("no image or rootfs given")
    root, image = _root(paths, target, opts)
    # As docker: the image's entrypoint, then CMD (given, or the image's).
    entrypoint = list(image.entrypoint or []) if image else []
    command = entrypoint + list(opts.get("command") or (image.cmd if image else None) or [])
    if not command:
        raise PyctrError("no command given and image %r has no default" % target)

    rootless = paths.rootless
    container_id = os.urandom(6).hex()
    spec = S.Spec(
        root=root,
        id=container_id,
        hostname=opts.get("hostname") or container_id,
        name=opts.get("name") or container_id,
        remove=bool(opts.get("remove")),
        detach=bool(opts.get("detach")),
        mounts=S.default_mounts(),
        masked_paths=list(S.DEFAULT_MASKED_PATHS),
        readonly_paths=list(S.DEFAULT_READONLY_PATHS),
    )
    check_name(spec.name)
    uid, gid = _user(opts.get("user") or (image.user if image else None), root.path)
    spec.process = S.Process(
        args=command,
        env=_env(opts, image, uid),
        cwd=opts.get("workdir") or (image.workdir if image else None) or "/",
        uid=uid, gid=gid,
        capabilities=_caps(opts.get("cap_add") or [], opts.get("cap_drop") or []),
        preserve_fds=int(opts.get("preserve_fds") or 0),
        init=bool(opts.get("init")),
    )
    _mpi_launch(spec)
    for fd in range(3, 3 + spec.process.preserve_fds):
        try:
            os.fstat(fd)
        except OSError:
            raise PyctrError("--preserve-fds %d: fd %d is not open" % (
                spec.process.preserve_fds, fd))
    if not spec.process.cwd.startswith("/"):
        raise PyctrError("workdir must be an absolute path: %s" % spec.process.cwd)
    spec.mounts += _volumes(opts.get("volumes") or [])
    spec.mounts += _tmpfs(opts.get("tmpfs") or [])

    spec.namespaces.append(S.Namespace(type="mount"))
    for key, ns_type in NS_OPTIONS:
        _namespace(paths, spec, ns_type, opts.get(key) or "private")
    _network(paths, spec, opts)
    if opts.get("userns") or rootless:
        spec.namespaces.insert(0, S.Namespace(type="user"))
        from pyctr.idmap import maps_for
        spec.uid_mappings, spec.gid_mappings = maps_for(rootless)
        if rootless and spec.networks:
            raise PyctrError("rootless containers support --net=none or --net=host only")
    return spec.freeze()


def _root(paths, target, opts):
    if "/" in target or target in (".", ".."):
        path = os.path.abspath(target)
        if not os.path.isdir(path):
            raise PyctrError("rootfs %s is not a directory" % target, exit_code=125)
        return S.Root(path=path, readonly=bool(opts.get("read_only"))), None
    from pyctr import images
    image = images.lookup(paths, target)
    if image is None:
        hint = " (pyctr image build busybox)" if target == "busybox" else ""
        raise PyctrError("image %r not found%s" % (target, hint))
    return S.Root(path=image.rootfs, image=target, readonly=bool(opts.get("read_only"))), image


# What an MPI launcher (mpirun/orted, hydra) tells the rank it starts.
MPI_ENV_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "HYDRA_", "MPI_LOCAL", "MPIR_", "OPAL_", "PRTE_",
                    "UCX_", "FI_")
MPI_MARKERS = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_FD", "PMI_SIZE")


def _mpi_launch(spec):
    """`mpirun -np N pyctr run ...`: pyctr is the rank the launcher started,
    so the launcher's environment and its PMI fd go on to the workload, and
    pyctr marks the spec so that the network's MPI settings are added."""
    environ = os.environ
    if not any(k in environ for k in MPI_MARKERS):
        return
    env = dict(e.split("=", 1) for e in spec.process.env)
    for key, value in environ.items():
        if key.startswith(MPI_ENV_PREFIXES):
            env.setdefault(key, value)
    spec.process.env = ["%s=%s" % kv for kv in env.items()]
    if environ.get("PMI_FD", "").isdigit():
        spec.process.pass_fds.append(int(environ["PMI_FD"]))
    spec.annotations["pyctr.mpi"] = "launched by %s" % (
        "Open MPI" if "OMPI_COMM_WORLD_SIZE" in environ else "an MPI launcher")


def _user(user, rootfs):
    if not user:
        return 0, 0
    name, _, group = str(user).partition(":")
    uid, gid = _lookup_id(name, rootfs, "passwd"), None
    if group:
        gid = _lookup_id(group, rootfs, "group")
    elif not name.isdigit():
        gid = _passwd_gid(name, rootfs)
    return uid, gid if gid is not None else uid


def _lookup_id(name, rootfs, db):
    if name.isdigit():
        return int(name)
    for fields in _db(rootfs, db):
        if fields[0] == name:
            return int(fields[2])
    raise PyctrError("unknown %s %r in the container's /etc/%s" % (
        "user" if db == "passwd" else "group", name, db))


def _passwd_gid(name, rootfs):
    for fields in _db(rootfs, "passwd"):
        if fields[0] == name:
            return int(fields[3])
    return None


def _db(rootfs, db):
    try:
        with open(os.path.join(rootfs, "etc", db)) as f:
            return [line.split(":") for line in f if line.count(":") >= 3]
    except OSError:
        return []


def _env(opts, image, uid):
    env = {"PATH": S.DEFAULT_ENV_PATH.split("=", 1)[1], "container": "pyctr",
           "HOME": "/root" if uid == 0 else "/"}
    for item in (image.env if image else []):
        key, _, value = item.partition("=")
        env[key] = value
    for path in opts.get("env_file") or []:
        env.update(_read_env_file(path))
    for item in opts.get("env") or []:
        key, sep, value = item.partition("=")
        if not key:
            raise PyctrError("invalid environment variable %r" % item)
        if sep:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return ["%s=%s" % kv for kv in env.items()]


def _read_env_file(path):
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise PyctrError("cannot read env file %s: %s" % (path, e.strerror))
    env = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise PyctrError("%s:%d: expected KEY=VALUE" % (path, number))
        env[key.strip()] = value
    return env


def _caps(add, drop):
    def norm(name):
        n = name.lower()
        n = n[4:] if n.startswith("cap_") else n
        if n != "all" and n not in S.CAPABILITIES:
            raise PyctrError("unknown capability %r" % name)
        return n
    add, drop = [norm(c) for c in add], [norm(c) for c in drop]
    caps = set(S.DEFAULT_CAPABILITIES)
    if "all" in drop:
        caps = set()
    caps -= set(drop)
    caps |= set(S.CAPABILITIES) if "all" in add else set(add)
    return sorted(caps)


def _volumes(volumes):
    mounts = []
    for v in volumes:
        parts = v.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") \
                or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise PyctrError("invalid volume %r: expected SRC:DST[:ro|rw] with DST absolute" % v)
        src = os.path.abspath(parts[0])
        if not os.path.exists(src):
            raise PyctrError("volume source %s does not exist" % src)
        opts = ["rbind"] + (["ro"] if len(parts) == 3 and parts[2] == "ro" else [])
        mounts.append(S.Mount(destination=parts[1], type="bind", source=src, options=opts))
    return mounts


def _tmpfs(items):
    mounts = []
    for item in items:
        dst, _, options = item.partition(":")
        if not dst.startswith("/"):
            raise PyctrError("invalid --tmpfs %r: destination must be absolute" % item)
        opts = ["nosuid", "nodev"] + [o for o in options.split(",") if o]
        mounts.append(S.Mount(destination=dst, type="tmpfs", source="tmpfs", options=opts))
    return mounts


def _namespace(paths, spec, ns_type, mode):
    if mode == "private":
        spec.namespaces.append(S.Namespace(type=ns_type))
    elif mode == "host":
        pass
    elif mode.startswith("container:"):
        spec.namespaces.append(S.Namespace(type=ns_type,
                                           path=_container_ns(paths, mode[10:], ns_type)))
    else:
        raise PyctrError("invalid --%s %r: use private, host or container:NAME"
                         % (ns_type, mode))


def _container_ns(paths, name, ns_type):
    from pyctr.container import load_running
    from pyctr.syscalls import NAMESPACES
    return "/proc/%d/ns/%s" % (load_running(paths, name).pid, NAMESPACES[ns_type][1])


def _network(paths, spec, opts):
    nets = list(opts.get("net") or [])
    if opts.get("net_ns"):
        nets.insert(0, opts["net_ns"])
    if not nets:
        nets = ["none"]
    simple = [n for n in nets if n in ("none", "host") or n.startswith("container:")]
    if simple and len(nets) > 1:
        raise PyctrError("--net=%s cannot be combined with other --net options" % simple[0])
    mode = nets[0]
    if mode == "host":
        pass
    elif mode.startswith("container:"):
        _namespace(paths, spec, "network", mode)
    else:
        spec.namespaces.append(S.Namespace(type="network"))
        if mode != "none":
            from pyctr import network
            spec.networks = [network.parse(n) for n in nets]
            first = spec.networks[0]
            from pyctr.network.addr import check_mac, check_mtu
            from pyctr.network.request import check_ip
            checks = {"ip": lambda v: check_ip(str(v)), "mac": lambda v: check_mac(str(v)),
                      "mtu": check_mtu}
            for key, check in checks.items():
                if opts.get(key) is not None:
                    setattr(first, key, check(opts[key]))
    if (opts.get("ip") or opts.get("mac") or opts.get("mtu")) and not spec.networks:
        raise PyctrError("--ip/--mac/--mtu need a --net=veth:... or --net=macvlan:... network")


def load_toml(path):
    """A job file: the same keys as the options above (dashes allowed)."""
    import toml
    try:
        with open(path) as f:
            data = toml.load(f)
    except OSError as e:
        raise PyctrError("cannot read %s: %s" % (path, e.strerror))
    except toml.TomlDecodeError as e:
        raise PyctrError("%s: invalid TOML: %s" % (path, e))
    opts = {k.replace("-", "_"): v for k, v in data.items()}
    aliases = {"image": "target", "rootfs": "target", "rm": "remove", "network": "net"}
    for old, new in aliases.items():
        if old in opts:
            opts[new] = opts.pop(old)
    if isinstance(opts.get("command"), str):
        import shlex
        opts["command"] = shlex.split(opts["command"])
    if isinstance(opts.get("env"), dict):
        opts["env"] = ["%s=%s" % kv for kv in opts["env"].items()]
    if isinstance(opts.get("net"), str):
        opts["net"] = [opts["net"]]
    unknown = set(opts) - KNOWN_KEYS
    if unknown:
        raise PyctrError("%s: unknown key(s): %s" % (path, ", ".join(sorted(unknown))))
    return opts


KNOWN_KEYS = frozenset((
    "target", "command", "name", "hostname", "workdir", "user", "env", "env_file", "volumes",
    "tmpfs", "read_only", "remove", "detach", "init", "userns", "preserve_fds", "cap_add",
    "cap_drop", "pid", "ipc", "uts", "net_ns", "net", "ip", "mac", "mtu"))
