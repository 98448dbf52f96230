# setuptools reads cffi_modules only from setup(); everything else is in
# pyproject.toml. Every package under runtime/ is a pyctr subpackage.
import os
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


class BuildWithInit(build_ext):
    """The cffi shim, and next to it in the package the static programs:
    pyctr-init (csrc/init.c, the PID 1 of --init: static, since a
    container's root may have no libc), pyctr-monitor (csrc/monitor.c,
    the parent of a running container once Python has handed over: static,
    so it maps no shared library and costs the fewest pages) and
    pyctr-front (csrc/front.c, the `pyctr` command: static, so its exec
    costs no dynamic linking), pyctr-netlink-send (csrc/netlink_send.c: a
    device delete whose kernel wait nobody pays), all stripped; and pyctr-ucx-finalize.so
    (csrc/ucx_finalize.c, preloaded into MPICH ranks; see pyctr.mpi.env)."""

    PROGRAMS = {"pyctr-init": ("csrc/init.c", "csrc/supervise.c"),
                "pyctr-monitor": ("csrc/monitor.c", "csrc/supervise.c"),
                "pyctr-front": ("csrc/front.c",),
                "pyctr-netlink-send": ("csrc/netlink_send.c",)}

    def run(self):
        super().run()
        package = os.path.dirname(self.get_ext_fullpath("pyctr._shim"))
        cc = os.environ.get("CC", "gcc")
        for name, sources in self.PROGRAMS.items():
            subprocess.run([cc, "-static", "-s", "-O2", "-Wall",
                            "-o", os.path.join(package, name), *sources], check=True)
        subprocess.run([cc, "-shared", "-fPIC", "-s", "-O2", "-Wall",
                        "-o", os.path.join(package, "pyctr-ucx-finalize.so"),
                        "csrc/ucx_finalize.c", "-ldl", "-pthread"], check=True)


setup(
    packages=["pyctr", "pyctr.recipes"] + ["pyctr." + p for p in find_packages("runtime")],
    cffi_modules=["csrc/build_shim.py:ffibuilder"],
    cmdclass={"build_ext": BuildWithInit},
)
