# setuptools reads cffi_modules only from setup(); everything else is in
# pyproject.toml. Every package under runtime/ is a pyctr subpackage.
import os
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class BuildWithInit(build_ext):
    """The cffi shim, and next to it in the package: pyctr-init (csrc/init.c,
    the PID 1 of --init; static, since a container's root may have no libc,
    and stripped) and pyctr-ucx-finalize.so (csrc/ucx_finalize.c, preloaded
    into MPICH ranks; see pyctr.mpi.env)."""

    def run(self):
        super().run()
        package = os.path.dirname(self.get_ext_fullpath("pyctr._shim"))
        cc = os.environ.get("CC", "gcc")
        subprocess.run([cc, "-static", "-s", "-O2", "-Wall",
                        "-o", os.path.join(package, "pyctr-init"), "csrc/init.c"], check=True)
        subprocess.run([cc, "-shared", "-fPIC", "-s", "-O2", "-Wall",
                        "-o", os.path.join(package, "pyctr-ucx-finalize.so"),
                        "csrc/ucx_finalize.c", "-ldl", "-pthread"], check=True)


setup(
    packages=["pyctr", "pyctr.recipes"] + ["pyctr." + p for p in find_packages("runtime")],
    cffi_modules=["csrc/build_shim.py:ffibuilder"],
    cmdclass={"build_ext": BuildWithInit},
)
