"""Build script: compiles the C++ core (csrc/) into darknet_py._core with pybind11."""
import glob
import os
import sys

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# Compile translation units on every core (the machine has two).
ParallelCompile("DARKNET_PY_BUILD_JOBS", default=os.cpu_count() or 2).install()

HERE = os.path.dirname(os.path.abspath(__file__))
sources = sorted(
    os.path.relpath(p, HERE)
    for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.cpp"), recursive=True)
)

extra_compile = ["-O3", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas"]
if os.environ.get("DARKNET_PY_DEBUG"):
    extra_compile = ["-O0", "-g", "-fopenmp", "-Wall"]

ext = Pybind11Extension(
    "darknet_py._core",
    sources,
    include_dirs=[os.path.join(HERE, "csrc"), os.path.join(HERE, "csrc", "include")],
    cxx_std=17,
    extra_compile_args=extra_compile,
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=[ext], cmdclass={"build_ext": build_ext})
