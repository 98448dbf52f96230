# setuptools reads cffi_modules only from setup(); everything else is in
# pyproject.toml. Every package under runtime/ is a pyctr subpackage.
from setuptools import find_packages, setup

setup(
    packages=["pyctr", "pyctr.recipes"] + ["pyctr." + p for p in find_packages("runtime")],
    cffi_modules=["csrc/build_shim.py:ffibuilder"],
)
