# setuptools reads cffi_modules only from setup(); everything else is in
# pyproject.toml.
from setuptools import setup

setup(
    packages=["pyctr", "pyctr.network", "pyctr.oci", "pyctr.bench", "pyctr.recipes"],
    cffi_modules=["csrc/build_shim.py:ffibuilder"],
)
