"""Seccomp: the syscall filter a container's processes run under.

A profile is an OCI `linux.seccomp` object (default action, architectures,
rules that allow or deny syscalls, optionally by argument). It comes from
pyctr's default (the file seccomp.default next to this module, resolved
for the container's capabilities and this machine), from
`--security-opt seccomp=FILE.json`, or from an OCI bundle's config.json;
`--security-opt seccomp=unconfined` means none.

The profile is compiled to a BPF program with libseccomp in the parent,
while the spec is built: a bad profile fails before anything exists. The
child only hands the program to the kernel, in C, right before execve
(csrc/shim.c pyctr_exec), so nothing pyctr does runs under it. `pyctr
exec` compiles the same profile from the container's config.json.
"""
import marshal

from pyctr import posixos as os  # os without its import cost: see posixos
from pyctr import fileio
from pyctr.errors import PyctrError
from pyctr.spec import Record

DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp.default")

# libseccomp's action values (kernel ABI: SECCOMP_RET_*); ERRNO and TRACE
# carry a 16-bit number.
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000, "SCMP_ACT_ALLOW": 0x7fff0000,
}
OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
             "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
EPERM = 1
ARCH_PREFIX = "SCMP_ARCH_"
# Go's names for machines (Docker profiles' includes/excludes) -> uname -m.
GO_MACHINES = {"amd64": "x86_64", "arm64": "aarch64", "386": "x86"}


class ArgCompare(Record):
    """Syscall argument `index` compared by `op` with `value`; for
    SCMP_CMP_MASKED_EQ, (arg & value) == value_two."""
    __slots__ = ("index", "value", "value_two", "op")
    DEFAULTS = {"value_two": 0}


class SyscallRule(Record):
    """`action` (an OCI SCMP_ACT_* name) for the syscalls `names` when all
    of `args` hold; `errno` for SCMP_ACT_ERRNO/TRACE (None: EPERM)."""
    __slots__ = ("names", "action", "errno", "args")
    DEFAULTS = {"args": list}


class Seccomp(Record):
    """A profile as OCI has it, plus `program`: the BPF compiled from it
    (bytes, struct sock_filter[]), which the child loads."""
    __slots__ = ("default_action", "default_errno", "architectures", "syscalls", "program")
    DEFAULTS = {"default_errno": None, "architectures": list, "syscalls": list,
                "program": b""}

    def to_oci(self):
        out = {"defaultAction": self.default_action, "architectures": list(self.architectures),
               "syscalls": []}
        if self.default_errno is not None:
            out["defaultErrnoRet"] = self.default_errno
        for rule in self.syscalls:
            item = {"names": list(rule.names), "action": rule.action}
            if rule.errno is not None:
                item["errnoRet"] = rule.errno
            if rule.args:
                item["args"] = [{"index": a.index, "value": a.value, "valueTwo": a.value_two,
                                 "op": a.op} for a in rule.args]
            out["syscalls"].append(item)
        return out


# -- where a profile comes from -------------------------------------------------
def for_run(paths, security_opts, capabilities):
    """`--security-opt` values (and the container's capabilities, which the
    default profile depends on) -> a compiled Seccomp, or None (unconfined)."""
    choice = None
    if isinstance(security_opts, str):  # a TOML job may give one as a string
        security_opts = [security_opts]
    for opt in security_opts or []:
        key, _, value = str(opt).partition("=")
        if key != "seccomp" or not value:
            raise PyctrError("unsupported --security-opt %r: pyctr knows seccomp=unconfined "
                             "and seccomp=FILE.json" % opt)
        choice = value
    if choice == "unconfined":
        return None
    if choice is None:
        return default_for(paths, capabilities)
    return compiled(paths, from_oci(_read_json(choice), choice, capabilities), choice)


def for_bundle(linux, capabilities, paths=None):
    """An OCI bundle's linux.seccomp -> a compiled Seccomp; None if it has none
    (the runtime spec: no seccomp field, no filter). With paths, from the
    compile cache when it was compiled before (podman's bundles carry the
    same profile every time: ~15 ms of every `create`)."""
    where = "config.json linux.seccomp"
    raw = linux.get("seccomp")
    if raw is None:
        return None
    profile = from_oci(raw, where, capabilities)
    return compiled(paths, profile, where) if paths else compile_profile(profile, where)


def for_exec(paths, config):
    """`pyctr exec`: the profile the container was started with (its config.json)."""
    raw = (config.get("linux") or {}).get("seccomp")
    if raw is None:
        return None
    caps = [c[4:].lower() for c in config["process"]["capabilities"]["bounding"]]
    where = "the container's seccomp profile"
    return compiled(paths, from_oci(raw, where, caps), where)


def _read_json(path):
    import json  # not jsonio: its scanner has no error message for bad JSON
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except OSError as e:
        raise PyctrError("seccomp profile %s: %s" % (path, e.strerror)) from e
    except ValueError as e:  # UnicodeDecodeError too
        raise PyctrError("seccomp profile %s: invalid JSON: %s" % (path, e)) from e


# -- the default ---------------------------------------------------------------
def default_for(paths, capabilities):
    """The default profile for these capabilities, compiled: from its entry
    in the compile cache when it was resolved here before, else resolved,
    compiled and kept. Every `pyctr run` resolved seccomp.default and hashed
    the result for the program's key (~0.6 ms of CPU in a fresh process);
    this entry's key is what the resolution depends on instead
    (_default_key), and reading it costs less than half of that."""
    try:
        path = _default_entry_path(paths, capabilities)
    except OSError:
        path = None  # its inputs cannot be told: resolved anew, nothing kept
    profile = _read_default_entry(path) if path else None
    if profile is None:
        profile = compiled(paths, default_profile(capabilities), "the default seccomp profile")
        rules = tuple((tuple(r.names), r.action, r.errno,
                       tuple((a.index, a.value, a.value_two, a.op) for a in r.args))
                      for r in profile.syscalls)
        if path:
            _store(path, marshal.dumps((profile.default_action, profile.default_errno,
                                        tuple(profile.architectures), rules, profile.program)))
    return profile


def _default_key(capabilities):
    """What default_profile's result depends on: the capabilities, machine
    and kernel, and seccomp.default and this module as installed (their
    mtime and size, as the code pack tells a changed module: an upgrade or
    an edit makes a new key, never a stale hit)."""
    stamp = []
    for name in (DEFAULT_FILE, __file__):
        st = os.stat(name)
        stamp.append((st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev))
    uname = os.uname()
    return "%s %s %r %r %r" % (CACHE_VERSION, uname.machine, _kernel_version(uname.release),
                               sorted(set(capabilities)), stamp)


def _default_entry_path(paths, capabilities):
    return os.path.join(cache_dir(paths), "default-" + _digest(_default_key(capabilities)))


def _read_default_entry(path):
    """The Seccomp an entry holds, or None if it is missing or not one
    default_for wrote (then it is made anew)."""
    try:
        action, errno, arches, rules, program = marshal.loads(fileio.read(path))
        profile = Seccomp(default_action=action, default_errno=errno,
                          architectures=list(arches), program=program,
                          syscalls=[SyscallRule(names=list(names), action=rule_action,
                                                errno=rule_errno,
                                                args=[ArgCompare(index=i, value=v, value_two=v2,
                                                                 op=op)
                                                      for i, v, v2, op in args])
                                    for names, rule_action, rule_errno, args in rules])
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not (isinstance(program, bytes) and program and len(program) % 8 == 0 and
            action in ACTIONS and all(r.action in ACTIONS for r in profile.syscalls)):
        return None
    return profile


def default_profile(capabilities, machine=None, kernel=None):
    """pyctr's default profile resolved for these capabilities, this machine
    (uname -m) and kernel: the conditions of seccomp.default decided now."""
    machine = machine or os.uname().machine
    kernel = kernel or _kernel_version(os.uname().release)
    caps = set(capabilities)
    with open(DEFAULT_FILE) as f:
        lines = f.read().splitlines()
    arches, rules = {}, []
    header = names = None
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            header, names = line.strip("[]").split(), []
            if header[0] == "arch":
                arches[header[1]] = names
            else:
                rule = _default_rule(header, names, caps, machine, kernel)
                if rule:
                    rules.append(rule)
            continue
        names.extend(line.split())
    return Seccomp(default_action="SCMP_ACT_ERRNO", default_errno=EPERM,
                   architectures=[ARCH_PREFIX + a.upper() for a in arches.get(machine, [])],
                   syscalls=rules)


def _default_rule(header, names, caps, machine, kernel):
    """One [section] of seccomp.default -> a SyscallRule (its `names` list
    fills as the lines after it are read), or None if its conditions fail."""
    import errno as errnos
    action, _, errno_name = header[0].partition("=")
    rule = SyscallRule(names=names, action="SCMP_ACT_" + action.upper(),
                       errno=getattr(errnos, errno_name) if errno_name else None)
    for word in header[1:]:
        negate = word.startswith("!")
        key, _, value = word.lstrip("!").partition("=")
        if key == "cap":
            holds = value in caps
        elif key == "arch":
            holds = machine in value.split(",")
        elif key == "kernel":
            holds = kernel >= _kernel_version(value)
        else:
            rule.args.append(_default_arg(word))
            continue
        if holds == negate:
            return None
    return rule


def _default_arg(word):
    """argN==V, argN!=V, argN&MASK==V"""
    for text, op in (("==", "SCMP_CMP_EQ"), ("!=", "SCMP_CMP_NE")):
        left, sep, value = word.partition(text)
        if sep:
            index, _, mask = left[3:].partition("&")
            if mask:
                return ArgCompare(index=int(index), value=int(mask), value_two=int(value),
                                  op="SCMP_CMP_MASKED_EQ")
            return ArgCompare(index=int(index), value=int(value), op=op)
    raise ValueError("seccomp.default: bad condition %r" % word)


def _kernel_version(release):
    parts = []
    for part in release.split(".")[:2]:
        digits = ""
        for c in part:
            if not c.isdigit():
                break
            digits += c
        parts.append(int(digits or 0))
    return tuple(parts)


# -- OCI linux.seccomp -----------------------------------------------------------
_TOP_KEYS = {"defaultAction", "defaultErrnoRet", "architectures", "syscalls", "flags",
             # Docker's profile format, a superset of OCI's:
             "archMap", "comment"}
_RULE_KEYS = {"names", "name", "action", "errnoRet", "args", "includes", "excludes", "comment"}
_ARG_KEYS = {"index", "value", "valueTwo", "op"}


def from_oci(raw, where, capabilities, machine=None, kernel=None):
    """An OCI linux.seccomp object (Docker's profile format is accepted too:
    archMap, and includes/excludes on caps, arches, minKernel) -> Seccomp.
    Anything pyctr cannot enforce as written is one PyctrError."""
    machine = machine or os.uname().machine
    kernel = kernel or _kernel_version(os.uname().release)

    def fail(what):
        return PyctrError("%s: %s" % (where, what))

    if not isinstance(raw, dict):
        raise fail("expected a JSON object")
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise fail("unsupported field(s) %s (pyctr has no seccomp notify listener)"
                   % ", ".join(sorted(unknown)))
    if raw.get("flags"):
        raise fail("unsupported flags %s" % raw["flags"])
    default = _action(raw.get("defaultAction"), fail, "defaultAction")
    profile = Seccomp(default_action=default,
                      default_errno=_errno(raw.get("defaultErrnoRet"), fail, "defaultErrnoRet"))
    arches = _list(raw.get("architectures"), fail, "architectures")
    for entry in _list(raw.get("archMap"), fail, "archMap"):
        if not isinstance(entry, dict):
            raise fail("archMap: expected objects")
        if entry.get("architecture") == ARCH_PREFIX + machine.upper():
            arches = [entry["architecture"]] + _list(entry.get("subArchitectures"), fail,
                                                     "subArchitectures")
    for arch in arches:
        if not isinstance(arch, str) or not arch.startswith(ARCH_PREFIX):
            raise fail("architecture %r: expected SCMP_ARCH_..." % (arch,))
    profile.architectures = list(arches)
    caps = {"CAP_" + c.upper() for c in capabilities}
    for number, item in enumerate(_list(raw.get("syscalls"), fail, "syscalls")):
        here = "syscalls[%d]" % number
        if not isinstance(item, dict):
            raise fail("%s: expected an object" % here)
        unknown = set(item) - _RULE_KEYS
        if unknown:
            raise fail("%s: unsupported field(s) %s" % (here, ", ".join(sorted(unknown))))
        if not _wanted(item, caps, machine, kernel, fail, here):
            continue
        names = item.get("names") or ([item["name"]] if item.get("name") else [])
        if not isinstance(names, list) or not names or \
                not all(isinstance(n, str) and n for n in names):
            raise fail("%s: names must be a non-empty list of syscall names" % here)
        rule = SyscallRule(names=list(names), action=_action(item.get("action"), fail, here),
                           errno=_errno(item.get("errnoRet"), fail, here + ".errnoRet"))
        for arg in _list(item.get("args"), fail, here + ".args"):
            rule.args.append(_arg(arg, fail, here))
        profile.syscalls.append(rule)
    return profile


def _list(value, fail, what):
    if value is None:
        return []
    if not isinstance(value, list):
        raise fail("%s: expected a list" % what)
    return value


def _action(name, fail, what):
    if name == "SCMP_ACT_NOTIFY":
        raise fail("%s: SCMP_ACT_NOTIFY is not supported (pyctr has no notify listener)" % what)
    if name not in ACTIONS:
        raise fail("%s: unknown action %r (one of %s)" % (what, name, ", ".join(ACTIONS)))
    return name


def _errno(value, fail, what):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xffff:
        raise fail("%s: expected a number 0..65535, not %r" % (what, value))
    return value


def _number(value, fail, what):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise fail("%s: expected an unsigned 64-bit number, not %r" % (what, value))
    return value


def _arg(arg, fail, here):
    if not isinstance(arg, dict) or set(arg) - _ARG_KEYS:
        raise fail("%s.args: expected objects of %s" % (here, ", ".join(sorted(_ARG_KEYS))))
    index = arg.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise fail("%s.args: index must be 0..5, not %r" % (here, index))
    if arg.get("op") not in OPERATORS:
        raise fail("%s.args: unknown op %r (one of %s)" % (here, arg.get("op"),
                                                          ", ".join(OPERATORS)))
    return ArgCompare(index=index, value=_number(arg.get("value", 0), fail, here + ".value"),
                      value_two=_number(arg.get("valueTwo", 0), fail, here + ".valueTwo"),
                      op=arg["op"])


def _wanted(item, caps, machine, kernel, fail, here):
    """Docker's includes/excludes: does this rule apply to this container here?"""
    for key, want in (("includes", True), ("excludes", False)):
        cond = item.get(key) or {}
        if not isinstance(cond, dict) or set(cond) - {"caps", "arches", "minKernel"}:
            raise fail("%s.%s: pyctr knows caps, arches and minKernel" % (here, key))
        checks = []
        if cond.get("caps"):
            checks.append(all(c in caps for c in _list(cond["caps"], fail, here)) if want
                          else any(c in caps for c in _list(cond["caps"], fail, here)))
        if cond.get("arches"):
            ours = {GO_MACHINES.get(a, a) for a in _list(cond["arches"], fail, here)}
            checks.append(machine in ours)
        if cond.get("minKernel"):
            if not isinstance(cond["minKernel"], str):
                raise fail("%s.%s.minKernel: expected a string like \"4.8\"" % (here, key))
            checks.append(kernel >= _kernel_version(cond["minKernel"]))
        if want and not all(checks):
            return False
        if not want and any(checks):
            return False
    return True


# -- compiling -------------------------------------------------------------------
def action_value(action, errno):
    value = ACTIONS[action]
    if action in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        value |= (EPERM if errno is None and action == "SCMP_ACT_ERRNO" else errno or 0)
    return value


CACHE_VERSION = "1"


def compiled(paths, profile, where):
    """`profile` with its program, from the cache in the state root when this
    profile was compiled before: libseccomp takes ~15 ms for the default's
    three architectures, a cache read ~0.1 ms. The key is the whole profile."""
    path = _cache_path(paths, profile)
    try:
        with open(path, "rb") as f:
            program = f.read()
        if program and len(program) % 8 == 0:
            profile.program = program
            return profile
    except OSError:
        pass
    compile_profile(profile, where)
    _store(path, profile.program)
    return profile


def _store(path, data):
    """Write a cache entry whole (a reader sees the old one or the new one)."""
    try:
        cache = os.path.dirname(path)
        if not os.path.isdir(cache):
            os.mkdir(cache, 0o700)  # in the state root, never a new tree
        fileio.replace(path, data)
    except OSError:
        pass  # a read-only or full state root: compile again next time


def gc(paths):
    """`pyctr gc`: the compile cache keeps only the entries of the default
    profile a plain `pyctr run` uses (its program, which `pyctr exec` finds
    by the profile, and its resolved entry). Entries are kept by profile, so
    one of a profile no longer used (an older default, another bundle's)
    would stay for good; a loaded filter needs no entry, and the next start
    of another profile compiles it once again. Returns what it removed, for
    `pyctr gc` to print."""
    from pyctr import spec
    keep = {os.path.basename(_cache_path(paths, default_profile(spec.DEFAULT_CAPABILITIES))),
            os.path.basename(_default_entry_path(paths, spec.DEFAULT_CAPABILITIES))}
    cache = cache_dir(paths)
    try:
        names = os.listdir(cache)
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        if name not in keep:
            try:
                os.unlink(os.path.join(cache, name))
            except OSError:
                continue
            removed.append("compiled seccomp profile %s" % os.path.join(cache, name))
    return removed


def cache_dir(paths):
    """Where compiled profiles are kept: the state root's seccomp/."""
    return os.path.join(paths.root, "seccomp")


def _cache_path(paths, profile):
    text = "%s %s %r" % (CACHE_VERSION, os.uname().machine, profile)
    return os.path.join(cache_dir(paths), _digest(text) + ".bpf")


def _digest(text):
    try:
        from _blake2 import blake2b  # what hashlib uses, without loading OpenSSL
    except ImportError:
        from hashlib import blake2b
    return blake2b(text.encode(), digest_size=20).hexdigest()


def compile_profile(profile, where):
    """Compile with libseccomp; sets and returns profile (its .program)."""
    from pyctr._shim import ffi, lib

    def fail(what):
        return PyctrError("%s: %s" % (where, what), ffi.errno)  # str() adds strerror

    default = action_value(profile.default_action, profile.default_errno)
    ctx = lib.pyctr_seccomp_new(default)
    if ctx == ffi.NULL:
        raise fail("cannot start a filter")
    try:
        for arch in profile.architectures:
            if lib.pyctr_seccomp_arch(ctx, arch[len(ARCH_PREFIX):].lower().encode()) < 0:
                raise fail("architecture %s" % arch)
        for rule in profile.syscalls:
            action = action_value(rule.action, rule.errno)
            if action == default:
                continue  # libseccomp refuses it; it changes nothing
            # Comparisons of one argument in one rule would AND to nothing
            # useful: then each is a rule of its own (ORed), as runc does.
            indexes = [a.index for a in rule.args]
            groups = [rule.args] if len(set(indexes)) == len(indexes) else \
                [[a] for a in rule.args]
            for name in rule.names:
                nr = lib.pyctr_seccomp_syscall(name.encode())
                if nr == -1:
                    continue  # a syscall this libseccomp does not know: as runc, skip it
                for args in groups:
                    count = len(args)
                    rc = lib.pyctr_seccomp_rule(
                        ctx, action, nr, count,
                        ffi.new("unsigned int[]", [a.index for a in args] or [0]),
                        ffi.new("int[]", [OPERATORS[a.op] for a in args] or [0]),
                        ffi.new("uint64_t[]", [a.value for a in args] or [0]),
                        ffi.new("uint64_t[]", [a.value_two for a in args] or [0]))
                    if rc < 0:
                        raise fail("cannot add the rule for %s" % name)
        fd = os.memfd_create("pyctr-seccomp", os.MFD_CLOEXEC)
        try:
            if lib.pyctr_seccomp_export(ctx, fd) < 0:
                raise fail("cannot export the filter")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            profile.program = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.pyctr_seccomp_free(ctx)
    return profile
