# setuptools reads cffi_modules only from setup(); everything else is in
# pyproject.toml. Every package under runtime/ is a pyctr subpackage.
import os
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class BuildWithInit(build_ext):
    """The cffi shim, and pyctr-init (csrc/init.c, the PID 1 of --init)
    next to it in the package: static, since a container's root may have
    no libc, and stripped."""

    def run(self):
        super().run()
        target = os.path.join(os.path.dirname(self.get_ext_fullpath("pyctr._shim")),
                              "pyctr-init")
        subprocess.run([os.environ.get("CC", "gcc"), "-static", "-s", "-O2", "-Wall",
                        "-o", target, "csrc/init.c", "csrc/supervise.c"], check=True)


setup(
    packages=["pyctr", "pyctr.recipes"] + ["pyctr." + p for p in find_packages("runtime")],
    cffi_modules=["csrc/build_shim.py:ffibuilder"],
    cmdclass={"build_ext": BuildWithInit},
)
