"""A container's resources: the typed Resources record (limits, device
policy, cgroup path), read from podman-style options (CLI and TOML jobs) or
an OCI bundle's linux.resources, checked before clone, and the cgroup files
each limit becomes (v1 and v2). cgroups.py writes them; devices.py holds
the device rules.
"""

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr.errors import PyctrError
from pyctr.spec import Record

CFS_PERIOD = 100000
MIN_MEMORY = 6 * 1024 * 1024  # podman's lower bound: less cannot start a process


class Resources(Record):
    """Limits and the device policy, as podman options and OCI
    linux.resources give them. None means "not set" (the host's default).

    memory, memory_swap, memory_reservation in bytes; memory_swap is memory
    plus swap (-1: unlimited), as podman's --memory-swap; cpu_quota and
    cpu_period in microseconds; pids_limit -1 is unlimited.
    device_rules: devices.Rule list added after the default policy;
    devices: devices.Device nodes to make in /dev (and allow);
    path: linux.cgroupsPath, None for pyctr's own group."""
    __slots__ = ("memory", "memory_swap", "memory_reservation", "cpu_shares", "cpu_quota",
                 "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit", "device_rules",
                 "devices", "path")
    DEFAULTS = {"device_rules": list, "devices": list}

    LIMITS = ("memory", "memory_swap", "memory_reservation", "cpu_shares", "cpu_quota",
              "cpu_period", "cpuset_cpus", "cpuset_mems", "pids_limit")

    def limits(self):
        """The settings that are set, as {name: value} (for inspect)."""
        return {name: getattr(self, name) for name in self.LIMITS
                if getattr(self, name) is not None}

    def oci_linux(self):
        """linux.resources, linux.devices and linux.cgroupsPath of config.json."""
        linux = {"resources": self.to_oci()}
        if self.devices:
            linux["devices"] = [d.to_oci() for d in self.devices]
        if self.path:
            linux["cgroupsPath"] = self.path
        return linux

    def to_oci(self):
        """linux.resources as the OCI runtime spec writes it."""
        out = {}
        memory = {"limit": self.memory, "swap": self.memory_swap,
                  "reservation": self.memory_reservation}
        cpu = {"shares": self.cpu_shares, "quota": self.cpu_quota, "period": self.cpu_period,
               "cpus": self.cpuset_cpus, "mems": self.cpuset_mems}
        for key, values in (("memory", memory), ("cpu", cpu)):
            values = {k: v for k, v in values.items() if v is not None}
            if values:
                out[key] = values
        if self.pids_limit is not None:
            out["pids"] = {"limit": self.pids_limit}
        from pyctr import devices
        out["devices"] = [r.to_oci() for r in devices.policy(self)]
        return out


# -- parsing (CLI/TOML and OCI), all before clone --------------------------

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_bytes(option, text):
    """podman's sizes: 512m, 1g, 1.5g, 1024 (bytes); k/m/g/t, optionally
    followed by b or ib, any case."""
    raw = str(text).strip().lower()
    for suffix in ("ib", "b"):
        if raw.endswith(suffix) and raw[:-len(suffix)][-1:] in "kmgt" and len(raw) > len(suffix):
            raw = raw[:-len(suffix)]
            break
    unit = raw[-1:] if raw[-1:] in _UNITS and raw[-1:] else ""
    number = raw[:-1] if unit else raw
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not number or not 0 <= value < 1 << 50 or number.startswith(("+", "-")):
        raise PyctrError("invalid %s %r: expected a size such as 512m or 2g" % (option, text))
    return int(value * _UNITS[unit])


def parse_cpu_list(option, text):
    """A cpuset list (0-3,6): checked here, kept as the kernel reads it."""
    text = str(text).strip()
    try:
        for part in text.split(","):
            first, dash, last = part.partition("-")
            if not first.isdigit() or (dash and (not last.isdigit() or int(last) < int(first))):
                raise ValueError(part)
    except ValueError as e:
        raise PyctrError("invalid %s %r: expected a list such as 0-3,6" % (option, text)) from e
    return text


def expand_cpu_list(text):
    numbers = set()
    for part in text.split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        numbers.update(range(int(first), int(last or first) + 1))
    return numbers


def _int(option, value, low, high=None):
    try:
        number = int(value)
        if isinstance(value, float) or isinstance(value, bool):
            raise ValueError(value)
    except (TypeError, ValueError) as e:
        raise PyctrError("invalid %s %r: expected a whole number" % (option, value)) from e
    if number < low or (high is not None and number > high):
        raise PyctrError("invalid %s %d: allowed range is %d..%s" % (
            option, number, low, high if high is not None else "any"))
    return number


def from_options(opts, rootless=False):
    """CLI/TOML keys (memory, memory_swap, cpus, cpu_shares, cpuset_cpus,
    cpuset_mems, pids_limit, device) -> Resources."""
    res = Resources()
    if rootless:
        asked = [k for k in OPTION_KEYS if opts.get(k) not in (None, [])]
        if asked:
            raise PyctrError("--%s needs root: rootless containers get no cgroup of their own"
                             % asked[0].replace("_", "-"))
        return res
    if opts.get("memory") is not None:
        res.memory = parse_bytes("--memory", opts["memory"])
    if opts.get("memory_swap") is not None:
        swap = str(opts["memory_swap"]).strip()
        res.memory_swap = -1 if swap == "-1" else parse_bytes("--memory-swap", swap)
    if opts.get("cpus") is not None:
        try:
            cpus = float(opts["cpus"])
        except (TypeError, ValueError) as e:
            raise PyctrError("invalid --cpus %r: expected a number such as 1.5"
                             % (opts["cpus"],)) from e
        if not 0.01 <= cpus <= os.cpu_count():
            raise PyctrError("invalid --cpus %s: allowed range is 0.01..%d (the host's CPUs)"
                             % (opts["cpus"], os.cpu_count()))
        res.cpu_period, res.cpu_quota = CFS_PERIOD, int(round(cpus * CFS_PERIOD))
    if opts.get("cpu_shares") is not None:
        res.cpu_shares = _int("--cpu-shares", opts["cpu_shares"], 2, 262144)
    if opts.get("cpuset_cpus") is not None:
        res.cpuset_cpus = parse_cpu_list("--cpuset-cpus", opts["cpuset_cpus"])
    if opts.get("cpuset_mems") is not None:
        res.cpuset_mems = parse_cpu_list("--cpuset-mems", opts["cpuset_mems"])
    if opts.get("pids_limit") is not None:
        limit = _int("--pids-limit", opts["pids_limit"], -1)
        res.pids_limit = -1 if limit == 0 else limit  # podman: 0 and -1 mean unlimited
    if opts.get("device"):
        from pyctr import devices
        if not isinstance(opts["device"], (list, tuple)) or not all(
                isinstance(d, str) for d in opts["device"]):
            raise PyctrError("device must be a list of HOST[:CONTAINER][:PERMISSIONS] strings")
        for text in opts["device"]:
            devices.add_option(res, text)
    check(res)
    return res


OPTION_KEYS = ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "cpuset_mems",
               "pids_limit", "device")


def from_oci(linux):
    """linux.resources, linux.devices and linux.cgroupsPath -> Resources.
    Settings pyctr cannot honour are refused, never dropped silently."""
    from pyctr import devices
    resources = linux.get("resources") or {}
    res = Resources()
    _refuse(resources, "linux.resources", ("memory", "cpu", "pids", "devices"))
    memory = resources.get("memory") or {}
    _refuse(memory, "linux.resources.memory", ("limit", "swap", "reservation"))
    res.memory, res.memory_swap, res.memory_reservation = (
        _oci_int(memory, key, "memory") for key in ("limit", "swap", "reservation"))
    cpu = resources.get("cpu") or {}
    _refuse(cpu, "linux.resources.cpu", ("shares", "quota", "period", "cpus", "mems"))
    res.cpu_shares, res.cpu_quota, res.cpu_period = (
        _oci_int(cpu, key, "cpu") for key in ("shares", "quota", "period"))
    if cpu.get("cpus"):
        res.cpuset_cpus = parse_cpu_list("linux.resources.cpu.cpus", cpu["cpus"])
    if cpu.get("mems"):
        res.cpuset_mems = parse_cpu_list("linux.resources.cpu.mems", cpu["mems"])
    if res.memory is not None and res.memory < 0:
        res.memory = None  # -1: no limit
    res.pids_limit = _oci_int(resources.get("pids") or {}, "limit", "pids")
    if res.pids_limit is not None and res.pids_limit <= 0:
        res.pids_limit = -1
    if res.cpu_quota is not None and res.cpu_quota <= 0:
        res.cpu_quota = None  # -1: no quota
    if res.cpu_quota and not res.cpu_period:
        res.cpu_period = CFS_PERIOD
    res.device_rules = [devices.rule_from_oci(r) for r in resources.get("devices") or []]
    res.devices = [devices.device_from_oci(d) for d in linux.get("devices") or []]
    path = linux.get("cgroupsPath")
    if path:
        res.path = oci_path(str(path))
    check(res)
    return res


def _refuse(section, where, known):
    if not isinstance(section, dict):
        raise PyctrError("%s must be an object" % where)
    for key, value in section.items():
        if key not in known and value not in (None, {}, [], 0, False):
            raise PyctrError("%s.%s is not supported by pyctr" % (where, key))


def _oci_int(section, key, where):
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise PyctrError("linux.resources.%s.%s must be an integer" % (where, key))
    return value


def oci_path(path):
    """linux.cgroupsPath: a cgroupfs path, or systemd's slice:prefix:name
    (podman's default), turned into the path systemd would use."""
    parts = path.split(":")
    if len(parts) == 3 and not path.startswith("/"):
        slice_name, prefix, name = parts
        slices = []
        if slice_name and slice_name != "-.slice":
            stem = slice_name[:-len(".slice")] if slice_name.endswith(".slice") else slice_name
            words = stem.split("-")
            slices = ["-".join(words[:i]) + ".slice" for i in range(1, len(words) + 1)]
        path = "/" + "/".join(slices + ["%s-%s.scope" % (prefix, name) if prefix else name])
    if ".." in path.split("/") or "\0" in path:
        raise PyctrError("invalid linux.cgroupsPath %r" % path)
    return path.rstrip("/") or None


def check(res):
    """Checks that need no host: podman's rules for the values' relations."""
    if res.memory is not None and res.memory < MIN_MEMORY:
        raise PyctrError("--memory %d is below the minimum of 6m" % res.memory)
    if res.memory_swap is not None and res.memory_swap != -1:
        if res.memory is None:
            raise PyctrError("--memory-swap needs --memory")
        if res.memory_swap < res.memory:
            raise PyctrError("--memory-swap must be at least --memory (it is memory plus swap)")
    if res.cpu_shares is not None and not 2 <= res.cpu_shares <= 262144:
        raise PyctrError("cpu shares %d: allowed range is 2..262144" % res.cpu_shares)
    if res.cpu_period is not None and not 1000 <= res.cpu_period <= 1000000:
        raise PyctrError("cpu period %d: allowed range is 1000..1000000" % res.cpu_period)
    if res.cpu_quota is not None and res.cpu_quota < 1000:
        raise PyctrError("cpu quota %d: the minimum is 1000" % res.cpu_quota)


# -- the settings as files --------------------------------------------------------

def limit_files(res, version, memsw=True):
    """Resources -> [(controller, file, value)] in the order to write them
    (pure: unit-tested). memsw: the v1 host accounts swap (memsw files)."""
    files = []
    swap = res.memory_swap
    if swap is None and res.memory is not None:
        swap = 2 * res.memory  # podman: as much swap as memory, unless told
    if version == 1:
        if res.memory is not None:
            files.append(("memory", "memory.limit_in_bytes", res.memory))
            if memsw:
                files.append(("memory", "memory.memsw.limit_in_bytes", swap))
            elif res.memory_swap not in (None, -1):
                raise PyctrError("--memory-swap: this host does not account swap "
                                 "(no memory.memsw.limit_in_bytes; boot with swapaccount=1)")
        if res.memory_reservation is not None:
            files.append(("memory", "memory.soft_limit_in_bytes", res.memory_reservation))
        if res.cpu_shares is not None:
            files.append(("cpu", "cpu.shares", res.cpu_shares))
        if res.cpu_quota is not None:
            files.append(("cpu", "cpu.cfs_period_us", res.cpu_period or CFS_PERIOD))
            files.append(("cpu", "cpu.cfs_quota_us", res.cpu_quota))
    else:
        if res.memory is not None:
            files.append(("memory", "memory.max", res.memory))
            files.append(("memory", "memory.swap.max",
                          "max" if swap == -1 else swap - res.memory))
        if res.memory_reservation is not None:
            files.append(("memory", "memory.low", res.memory_reservation))
        if res.cpu_shares is not None:
            # runc's mapping of v1 shares [2, 262144] onto v2 weight [1, 10000]
            files.append(("cpu", "cpu.weight", 1 + (res.cpu_shares - 2) * 9999 // 262142))
        if res.cpu_quota is not None:
            files.append(("cpu", "cpu.max", "%d %d" % (res.cpu_quota,
                                                      res.cpu_period or CFS_PERIOD)))
    if res.cpuset_cpus is not None:
        files.append(("cpuset", "cpuset.cpus", res.cpuset_cpus))
    if res.cpuset_mems is not None:
        files.append(("cpuset", "cpuset.mems", res.cpuset_mems))
    if res.pids_limit is not None:
        files.append(("pids", "pids.max", "max" if res.pids_limit < 0 else res.pids_limit))
    return files
