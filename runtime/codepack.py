"""The code pack: pyctr's modules compiled into one file, which the
installed `pyctr` command imports them from (pyctr.launcher).

Importing a module from its directory costs a dozen syscalls (the path
finder's stats, then open, fstat, ioctl, lseek, read, close of the .pyc)
and the finder's Python code; a `pyctr run` imports ~25 of pyctr's
modules, and a syscall costs ~5 us on these VMs. From the pack, a module
is one stat (its source unchanged?), one pread and an unmarshal.

  __pycache__/codepack.<cache tag>.bin:
    magic (importlib's, this Python's bytecode) | head length (8 bytes)
    | marshal((FORMAT, {name: (is_package, source path, mtime_ns, size,
    offset, length)}, {verb: [name, ...]})) | the modules' marshalled
    code, back to back

Written at install time (pyctr.launcher.write), next to the .pyc files
compileall writes. A module whose source changed since (or one not in the
pack) is imported the usual way: the pack can be stale, never wrong.

Preloading: even from the pack, an import runs importlib's own Python
code (module locks, the finders, the spec, the module's attributes),
~35 us a module on these VMs and more in a fresh process. The modules a
verb is known to need (PRELOAD) are put in an order at build time, each
after the pyctr modules its top level imports (read from the source);
once the CLI knows the verb, preload() runs them in that order straight
from the pack, and the verb's imports then find them loaded. Where the modules' top-level imports
form a cycle, that verb gets no order: a cycle's modules see each other
half-run, and only the order of the imports themselves says which half.
"""
import marshal
import sys

from pyctr import posixos as os  # os without its import cost: see posixos


# Not packed: tools no verb on the command's hot paths imports.
LEFT_OUT = ("pyctr.bench", "pyctr.cluster", "pyctr.testbed", "pyctr.slurmbed")

FORMAT = 2

# verb -> the modules it imports on its common path (those their top level
# imports come along): `pyctr run` of an image without a network, `exec` in
# a running container. (An engine's `create`: no gain measured.)
PRELOAD = {"run": ("pyctr.cgroups", "pyctr.specgen", "pyctr.container", "pyctr.images"),
           "exec": ("pyctr.cgroups", "pyctr.identity", "pyctr.enter", "pyctr.seccomp",
                    "pyctr.container")}


def path(package_dir):
    return os.path.join(package_dir, "__pycache__",
                        "codepack.%s.bin" % sys.implementation.cache_tag)


def _magic():
    return sys.modules["_frozen_importlib_external"].MAGIC_NUMBER


def build(package_dir, preload=None):
    """Write the pack of the package at `package_dir` (the `pyctr` dir);
    `preload` is PRELOAD's like, by default PRELOAD."""
    import ast
    parent = os.path.dirname(os.path.abspath(package_dir))
    index, blobs, offset, trees = {}, [], 0, {}
    for top, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            source = os.path.join(top, name)
            module = os.path.relpath(source, parent)[:-3].replace(os.sep, ".")
            is_package = module.endswith(".__init__")
            if is_package:
                module = module[:-len(".__init__")]
            if module.startswith(LEFT_OUT) or module == "pyctr":
                continue
            with open(source, "rb") as f:
                text = f.read()
            st = os.stat(source)
            trees[module] = ast.parse(text, source)
            blob = marshal.dumps(compile(trees[module], source, "exec", dont_inherit=True))
            index[module] = (is_package, source, st.st_mtime_ns, st.st_size, offset, len(blob))
            blobs.append(blob)
            offset += len(blob)
    # Only the package's own modules (and subpackages) are preloaded: their
    # parent, the package, is loaded by then, as importlib has it for any
    # module; a module further down is imported the usual way, when asked.
    top = os.path.basename(os.path.abspath(package_dir))
    eligible = {m for m in index if m.rpartition(".")[0] == top}
    imports = {m: _top_imports(m, index[m][0], trees[m], index) for m in index}
    orders = {}
    for verb, entries in (PRELOAD if preload is None else preload).items():
        order = _order(entries, imports, eligible)
        if order:
            orders[verb] = order
    head = marshal.dumps((FORMAT, index, orders))
    target = path(package_dir)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = "%s.%d.tmp" % (target, os.getpid())
    with open(tmp, "wb") as f:
        f.write(_magic() + len(head).to_bytes(8, "little") + head + b"".join(blobs))
    os.rename(tmp, target)
    return target


def _top_imports(module, is_package, tree, known):
    """The packed modules `module`'s code imports when it runs: imports
    anywhere but in a function's body (a class body runs at import too)."""
    import ast
    package = module if is_package else module.rpartition(".")[0]
    found = set()

    def add(name):
        parts = name.split(".")
        for n in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
            if ".".join(parts[:n]) in known:
                found.add(".".join(parts[:n]))

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    up = package.split(".")
                    up = up[:len(up) - child.level + 1]
                    base = ".".join(up + ([base] if base else []))
                add(base)
                for alias in child.names:
                    add(base + "." + alias.name)
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def _order(entries, imports, eligible):
    """The `eligible` ones of `entries` and of what their top levels import,
    each after its imports (depth first); None if any of those modules,
    eligible or not, import each other in a cycle, or an entry is not
    eligible."""
    order, done, running = [], set(), set()

    def visit(name):
        if name in done:
            return True
        if name in running:
            return False
        running.add(name)
        for other in sorted(imports[name]):
            if not visit(other):
                return False
        running.discard(name)
        done.add(name)
        if name in eligible:
            order.append(name)
        return True

    for entry in entries:
        if entry not in eligible or not visit(entry):
            return None
    return order


class _Finder:
    """A meta path finder serving the pack's modules (the loader too)."""

    def __init__(self, index, fd, start, pack, orders=None):
        self.index, self.fd, self.start, self.pack = index, fd, start, pack
        self.orders = orders or {}
        st = os.fstat(fd)
        self.identity = (st.st_dev, st.st_ino)

    def _open(self):
        """The pack's fd, opened again if the process closed it meanwhile
        (a daemon closing every fd it inherited; the number may even have
        been reused for another file); None if the pack is gone."""
        try:
            st = os.fstat(self.fd)
            if (st.st_dev, st.st_ino) == self.identity:
                return self.fd
        except OSError:
            pass
        try:  # non-blocking: after pivot_root this path is the container's (a FIFO?)
            fd = os.open(self.pack, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.identity:  # rebuilt since, or not ours
            os.close(fd)
            return None
        self.fd = fd
        return fd

    def find_spec(self, name, search_path=None, target=None):
        entry = self.index.get(name)
        if entry is None or self._open() is None:
            return None
        is_package, source, mtime_ns, size = entry[:4]
        try:
            st = os.stat(source)
        except OSError:
            return None
        if st.st_mtime_ns != mtime_ns or st.st_size != size:
            return None  # changed since the pack was made: the usual import
        spec = sys.modules["_frozen_importlib"].ModuleSpec(name, self, origin=source,
                                                           is_package=is_package)
        spec.has_location = True
        if is_package:
            spec.submodule_search_locations = [os.path.dirname(source)]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        offset, length = self.index[module.__spec__.name][4:]
        exec(marshal.loads(os.pread(self.fd, length, self.start + offset)), module.__dict__)

    def preload(self, verb):
        """Run `verb`'s modules in their order, each with the attributes
        importlib gives it (spec, loader, file, package, path); stop at the
        first that is not as packed (its source changed) or fails: it and
        the rest are then imported the usual way, where they are."""
        loaded = []
        for name in self.orders.get(verb, ()):
            if name in sys.modules:
                continue
            spec = self.find_spec(name)
            if spec is None or name.rpartition(".")[0] not in sys.modules:
                break  # changed since packed, or its package not loaded (importlib's first step)
            module = type(sys)(name)
            module.__spec__, module.__loader__, module.__file__ = spec, self, spec.origin
            module.__package__ = name if spec.submodule_search_locations is not None else \
                name.rpartition(".")[0]
            if spec.submodule_search_locations is not None:
                module.__path__ = spec.submodule_search_locations
            sys.modules[name] = module
            try:
                self.exec_module(module)
            except BaseException as e:
                del sys.modules[name]  # as importlib leaves a module that failed
                if not isinstance(e, Exception):
                    raise  # an interrupt stays one
                break
            loaded.append(name)
        for name in loaded:  # a package's attribute for each of its modules
            up, _, attr = name.rpartition(".")
            if up in sys.modules:
                setattr(sys.modules[up], attr, sys.modules[name])


def preload(verb):
    """The CLI knows its verb: load its modules now, if they come from a pack."""
    for finder in sys.meta_path:
        if isinstance(finder, _Finder):
            finder.preload(verb)
            return


# The pack stays open for imports to come, near the top of the fd table
# (posixos.dup_high, as cgroups.warm_up's fd).
FD_ROOM = 80


def install(package_dir):
    """Import pyctr's modules from the pack from now on, if there is one
    for this Python. Reads its index; each module is read when imported."""
    try:
        low = os.open(path(package_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fd = os.dup_high(low, FD_ROOM)
    except OSError:
        return False  # no fd left: the usual imports
    finally:
        os.close(low)
    magic = _magic()
    head = os.pread(fd, 65536, 0)
    start = len(magic) + 8
    end = start + int.from_bytes(head[len(magic):start], "little")
    if head[:len(magic)] != magic or len(head) < start:
        os.close(fd)
        return False
    if end > len(head):
        head += os.pread(fd, end - len(head), len(head))
    data = marshal.loads(head[start:end])
    if not (isinstance(data, tuple) and len(data) == 3 and data[0] == FORMAT):
        os.close(fd)  # another pyctr's pack: its modules the usual way
        return False
    _, index, orders = data
    sys.meta_path.insert(0, _Finder(index, fd, end, path(package_dir), orders))
    return True
