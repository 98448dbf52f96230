"""cffi build script: compiles csrc/shim.c, child.c and supervise.c into the extension `pyctr._shim`.

API (out-of-line) mode, so the compiler checks every prototype against the
system headers at install time and no libffi call happens at run time.
"""
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
# shim.h is the one list of prototypes; cffi's parser takes it minus
# preprocessor lines.
HEADER = (HERE / "shim.h").read_text()
ffibuilder.cdef("\n".join(l for l in HEADER.splitlines() if not l.startswith("#")))
ffibuilder.set_source(
    "pyctr._shim",
    '#include "shim.h"',
    sources=["csrc/shim.c", "csrc/child.c", "csrc/supervise.c"],  # relative: setuptools rejects absolute paths
    include_dirs=["csrc"],
    libraries=["dl"],  # libseccomp is dlopen'ed when a filter is first built (shim.c)
    extra_compile_args=["-O2", "-Wall"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
