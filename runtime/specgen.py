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
  security_opt      list: seccomp=unconfined or seccomp=FILE.json
  net               list of --net values: none, host, container:NAME,
                    veth:BRIDGE..., macvlan:LOWER..., a network name
  ip, mac, mtu      applied to the first network
  memory, memory_swap, cpus, cpu_shares, cpuset_cpus, cpuset_mems, pids_limit,
  device, cgroupns  cgroup limits and devices (see resources.from_options)
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import identity, inroot, seccomp
from pyctr.spec import (DEFAULT_ENV_PATH, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
                        Mount, Namespace, Process, Root, Spec, default_mounts)
from pyctr.errors import PyctrError
from pyctr.state import check_name

NS_OPTIONS = (("pid", "pid"), ("ipc", "ipc"), ("uts", "uts"), ("cgroupns", "cgroup"))


def build(paths, opts):
    check_types(opts)
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
    spec = Spec(
        root=root,
        id=container_id,
        hostname=opts.get("hostname") or container_id,
        name=opts.get("name") or container_id,
        remove=bool(opts.get("remove")),
        detach=bool(opts.get("detach")),
        mounts=default_mounts(),
        masked_paths=list(DEFAULT_MASKED_PATHS),
        readonly_paths=list(DEFAULT_READONLY_PATHS),
    )
    check_name(spec.name)
    check_hostname(spec.hostname)
    uid, gid = identity.resolve_user(opts.get("user") or (image.user if image else None),
                                     root.path)
    spec.process = Process(
        args=command,
        env=_env(opts, image, uid),
        cwd=opts.get("workdir") or (image.workdir if image else None) or "/",
        uid=uid, gid=gid,
        capabilities=identity.podman_capabilities(uid, opts.get("cap_add") or [],
                                                  opts.get("cap_drop") or []),
        preserve_fds=opts.get("preserve_fds") or 0,
        init=bool(opts.get("init")),
    )
    _mpi_launch(spec)
    identity.check_passed_fds(spec.process)
    spec.seccomp = seccomp.for_run(paths, opts.get("security_opt"),
                                   spec.process.capabilities.bounding)
    if not spec.process.cwd.startswith("/"):
        raise PyctrError("workdir must be an absolute path: %s" % spec.process.cwd)
    from pyctr import resources
    spec.resources = resources.from_options(opts, rootless)
    spec.mounts += _volumes(opts.get("volumes") or [])
    spec.mounts += _tmpfs(opts.get("tmpfs") or [])

    spec.namespaces.append(Namespace(type="mount"))
    for key, ns_type in NS_OPTIONS:
        _namespace(paths, spec, ns_type, opts.get(key) or "private")
    _network(paths, spec, opts)
    if "SLURM_STEP_ID" in os.environ:  # an srun task (pyctr.slurm.task has the test)
        from pyctr import slurm
        slurm.apply(spec, opts, os.environ)
    if opts.get("userns") or rootless:
        spec.namespaces.insert(0, Namespace(type="user"))
        from pyctr.idmap import keep_id, maps_for
        if rootless and "pyctr.mpi" in spec.annotations and spec.process.uid == 0 \
                and not opts.get("user"):
            # A user's MPI rank runs as the user: Open MPI's PMIx server
            # takes a rank only if it reports mpirun's own uid.
            spec.uid_mappings, spec.gid_mappings = keep_id()
            spec.process.uid, spec.process.gid = os.geteuid(), os.getegid()
            spec.process.capabilities = identity.podman_capabilities(
                spec.process.uid, opts.get("cap_add") or [], opts.get("cap_drop") or [])
            if not any(m.destination == "/tmp" for m in spec.mounts):
                # the launchers' session files; the image's /tmp is root's
                spec.mounts += _tmpfs(["/tmp"])
        else:
            spec.uid_mappings, spec.gid_mappings = maps_for(rootless)
        if rootless and spec.networks:
            from pyctr.network import rootless as user_networks
            user_networks.check(spec.networks)
    identity.check_ids(spec.process, spec.uid_mappings, spec.gid_mappings)
    return spec.freeze()


def _root(paths, target, opts):
    if "/" in target or target in (".", ".."):
        path = os.path.abspath(target)
        if not os.path.isdir(path):
            raise PyctrError("rootfs %s is not a directory" % target, exit_code=125)
        return Root(path=path, readonly=bool(opts.get("read_only"))), None
    from pyctr import images
    image = images.lookup(paths, target)
    if image is None:
        hint = " (pyctr image build busybox)" if target == "busybox" else ""
        raise PyctrError("image %r not found%s" % (target, hint))
    return Root(path=image.rootfs, image=target, readonly=bool(opts.get("read_only"))), image


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
    inherit_env(spec, environ, MPI_ENV_PREFIXES)
    pmi_fd = environ.get("PMI_FD", "")
    if pmi_fd.isascii() and pmi_fd.isdigit():
        spec.process.pass_fds.append(int(pmi_fd))
    spec.annotations["pyctr.mpi"] = "launched by %s" % (
        "Open MPI" if "OMPI_COMM_WORLD_SIZE" in environ else "an MPI launcher")


def inherit_env(spec, environ, prefixes):
    """The variables of `environ` whose names start with `prefixes` go on to
    the workload, unless the spec sets them already."""
    env = dict(e.split("=", 1) for e in spec.process.env)
    for key, value in environ.items():
        if key.startswith(prefixes):
            env.setdefault(key, value)
    spec.process.env = ["%s=%s" % kv for kv in env.items()]


def check_hostname(name):
    """What sethostname(2) takes: 1..64 bytes (and no NUL, checked with
    the types)."""
    try:
        size = len(name.encode())
    except UnicodeEncodeError as e:
        raise PyctrError("hostname %r is not valid text" % name) from e
    if not 1 <= size <= 64:
        raise PyctrError("hostname %r must be 1 to 64 bytes long" % name)


def _env(opts, image, uid):
    env = {"PATH": DEFAULT_ENV_PATH.split("=", 1)[1], "container": "pyctr",
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
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8").splitlines()
    except OSError as e:
        raise PyctrError("cannot read env file %s: %s" % (path, e.strerror)) from e
    except UnicodeDecodeError as e:
        raise PyctrError("env file %s: not UTF-8 text (byte %d)" % (path, e.start)) from e
    env = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise PyctrError("%s:%d: expected KEY=VALUE" % (path, number))
        if "\0" in line:
            raise PyctrError("%s:%d: a NUL byte is not allowed" % (path, number))
        env[key.strip()] = value
    return env


def _volumes(volumes):
    mounts = []
    for v in volumes:
        parts = v.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/") \
                or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise PyctrError("invalid volume %r: expected SRC:DST[:ro|rw] with DST absolute" % v)
        dst = inroot.destination(parts[1], "invalid volume %r" % v)
        src = os.path.abspath(parts[0])
        if not os.path.exists(src):
            raise PyctrError("volume source %s does not exist" % src)
        opts = ["rbind"] + (["ro"] if len(parts) == 3 and parts[2] == "ro" else [])
        mounts.append(Mount(destination=dst, type="bind", source=src, options=opts))
    return mounts


def _tmpfs(items):
    mounts = []
    for item in items:
        dst, _, options = item.partition(":")
        dst = inroot.destination(dst, "invalid --tmpfs %r" % item)
        opts = ["nosuid", "nodev"] + [o for o in options.split(",") if o]
        mounts.append(Mount(destination=dst, type="tmpfs", source="tmpfs", options=opts))
    return mounts


def _namespace(paths, spec, ns_type, mode):
    if mode == "private":
        spec.namespaces.append(Namespace(type=ns_type))
    elif mode == "host":
        pass
    elif mode.startswith("container:"):
        spec.namespaces.append(Namespace(type=ns_type,
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
        spec.namespaces.append(Namespace(type="network"))
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
    from pyctr import tomlio
    data = tomlio.load(path, "job file")
    opts = {k.replace("-", "_"): v for k, v in data.items()}
    aliases = {"image": "target", "rootfs": "target", "rm": "remove", "network": "net",
               "devices": "device"}
    for old, new in aliases.items():
        if old in opts:
            opts[new] = opts.pop(old)
    unknown = set(opts) - set(OPTION_TYPES)
    if unknown:
        raise PyctrError("%s: unknown key(s): %s" % (path, ", ".join(sorted(unknown))))
    if isinstance(opts.get("command"), str):
        import shlex
        try:
            opts["command"] = shlex.split(opts["command"])
        except ValueError as e:
            raise PyctrError("%s: command: %s" % (path, e)) from e
    if isinstance(opts.get("env"), dict):
        env = opts["env"]
        if not all(isinstance(v, (str, int, float)) for v in env.values()):
            raise PyctrError("%s: [env] values must be strings or numbers" % path)
        opts["env"] = ["%s=%s" % kv for kv in env.items()]
    for key in ("net", "device"):
        if isinstance(opts.get(key), str):
            opts[key] = [opts[key]]
    check_types(opts, path + ": ")
    return opts


STR, STRINGS, BOOL, INT, USER, VALUE = "a string", "a list of strings", "true or false", \
    "a whole number", "a user (UID[:GID] or NAME[:GROUP])", "a number or a string"
OPTION_TYPES = {
    "target": STR, "command": STRINGS, "name": STR, "hostname": STR, "workdir": STR,
    "user": USER, "env": STRINGS, "env_file": STRINGS, "volumes": STRINGS, "tmpfs": STRINGS,
    "read_only": BOOL, "remove": BOOL, "detach": BOOL, "init": BOOL, "userns": BOOL,
    "preserve_fds": INT, "cap_add": STRINGS, "cap_drop": STRINGS, "pid": STR, "ipc": STR,
    "uts": STR, "net_ns": STR, "net": STRINGS, "ip": STR, "mac": STR, "mtu": INT,
    # cgroup limits and devices: values checked by resources.from_options
    "memory": VALUE, "memory_swap": VALUE, "cpus": VALUE, "cpu_shares": VALUE,
    "cpuset_cpus": VALUE, "cpuset_mems": VALUE, "pids_limit": VALUE, "device": STRINGS,
    "cgroupns": STR, "security_opt": STRINGS,
}


def check_types(opts, where=""):
    """Each option has the type its key wants (a TOML file can hold any),
    and no string holds a NUL byte (no kernel interface takes one)."""
    for key, value in opts.items():
        want = OPTION_TYPES.get(key)
        if want is None or value is None:
            continue
        if want == STRINGS:
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            texts = value if ok else []
        else:
            ok = isinstance(value, {STR: str, BOOL: bool, INT: int, USER: (str, int),
                                    VALUE: (str, int, float)}[want]) \
                and (want == BOOL or not isinstance(value, bool))
            texts = [value] if isinstance(value, str) else []
        if not ok:
            raise PyctrError("%s%s must be %s, not %r" % (where, key, want, value))
        if any("\0" in t for t in texts):
            raise PyctrError("%s%s: a NUL byte is not allowed" % (where, key))
