"""Build script: compiles the C++ core (csrc/) into darknet_py._core with pybind11.

With DARKNET_PY_CUDA=1 the CUDA kernels in cuda/*.cu are compiled with nvcc and
linked in (define DN_WITH_CUDA); the default build needs no CUDA toolkit.
  DARKNET_PY_CUDA_ARCH   GPU architectures, e.g. "80;90" (default), "86", "native"
  CUDA_HOME / CUDA_PATH  toolkit root (default: from nvcc on PATH, /usr/local/cuda)
"""
import glob
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

# Compile translation units on every core (the machine has two).
ParallelCompile("DARKNET_PY_BUILD_JOBS", default=os.cpu_count() or 2).install()

HERE = os.path.dirname(os.path.abspath(__file__))
WITH_CUDA = os.environ.get("DARKNET_PY_CUDA", "0") == "1"

sources = sorted(
    os.path.relpath(p, HERE)
    for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.cpp"), recursive=True)
)

extra_compile = ["-O3", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas"]
if os.environ.get("DARKNET_PY_DEBUG"):
    extra_compile = ["-O0", "-g", "-fopenmp", "-Wall"]


def cuda_home():
    """Toolkit root holding include/cuda_runtime.h and bin/nvcc."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "include", "cuda_runtime.h")) and \
                os.path.isfile(os.path.join(c, "bin", "nvcc")):
            return c
    sys.exit("DARKNET_PY_CUDA=1 but no CUDA toolkit found (set CUDA_HOME to the directory holding bin/nvcc)")


def nvcc_arch_flags():
    archs = os.environ.get("DARKNET_PY_CUDA_ARCH", "80;90").replace(",", ";").split(";")
    archs = [a.strip() for a in archs if a.strip()]
    if archs == ["native"]:
        return ["-arch=native"]
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    # PTX of the newest architecture so later GPUs can JIT-compile it.
    flags += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
    return flags


CUDA_HOME = cuda_home() if WITH_CUDA else None
define_macros = [("DN_WITH_CUDA", "1")] if WITH_CUDA else []
library_dirs, libraries, runtime_dirs = [], [], []
if WITH_CUDA:
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
        if os.path.isdir(os.path.join(CUDA_HOME, sub)):
            library_dirs.append(os.path.join(CUDA_HOME, sub))
    libraries = ["cudart"]
    runtime_dirs = list(library_dirs)


class BuildExt(build_ext):
    """build_ext that first compiles cuda/*.cu with nvcc (in parallel) when enabled."""

    def finalize_options(self):
        super().finalize_options()
        if WITH_CUDA:  # keep CPU-only and CUDA objects apart (bind_cuda.cpp differs)
            self.build_temp = self.build_temp + "-cuda"

    def build_extensions(self):
        if WITH_CUDA:
            objects = self.compile_cuda()
            for ext in self.extensions:
                ext.extra_objects = list(ext.extra_objects or []) + objects
        super().build_extensions()

    def compile_cuda(self):
        nvcc = os.path.join(CUDA_HOME, "bin", "nvcc")
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        cu_files = sorted(glob.glob(os.path.join(HERE, "cuda", "*.cu")))
        flags = ["-std=c++17", "-O3", "-DDN_WITH_CUDA", "-Xcompiler", "-fPIC,-Wall",
                 "-I" + os.path.join(HERE, "csrc")] + nvcc_arch_flags()

        def compile_one(src):
            obj = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + ".o")
            cmd = [nvcc] + flags + ["-c", src, "-o", obj]
            print(" ".join(cmd), flush=True)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src}:\n{r.stdout}{r.stderr}")
            return obj

        jobs = int(os.environ.get("DARKNET_PY_BUILD_JOBS", os.cpu_count() or 2))
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            return list(pool.map(compile_one, cu_files))


ext = Pybind11Extension(
    "darknet_py._core",
    sources,
    include_dirs=[os.path.join(HERE, "csrc"), os.path.join(HERE, "csrc", "include")],
    cxx_std=17,
    extra_compile_args=extra_compile,
    extra_link_args=["-fopenmp"],
    define_macros=define_macros,
    library_dirs=library_dirs,
    libraries=libraries,
    runtime_library_dirs=runtime_dirs,
)

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt})
