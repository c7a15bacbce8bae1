"""Build script: compiles the C++ core (csrc/) into darknet_py._core with pybind11.

A second, test-only module darknet_py._testing (csrc/testing/: test aids and
microbenchmark entry points; the package never imports it) links the same core
objects: the core is compiled once, into build_temp, and reused by both
modules; an object is recompiled only when its source, a csrc header or the
flags changed.

The CUDA backend (cuda/*.cu) is built automatically when a CUDA toolkit (nvcc)
is found; the CUDA runtime is linked statically, so the module still imports
and runs on the CPU on machines without a GPU or driver.
  DARKNET_PY_CUDA        unset/"auto": CUDA when the toolkit is found; "1": required
                         (error without a toolkit); "0": CPU only
  DARKNET_PY_CUDA_ARCH   GPU architectures, e.g. "80;90" (default: SASS for each,
                         plus PTX of the last), "86", "native"
  CUDA_HOME / CUDA_PATH  toolkit root (default: from nvcc on PATH, /usr/local/cuda)
  DARKNET_PY_CUDA_WERROR "0": nvcc and host-compiler warnings in cuda/ do not fail the
                         build (default: they do)
  DARKNET_PY_BUILD_JOBS  parallel compile jobs (default: all cores)
"""
import glob
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

JOBS = int(os.environ.get("DARKNET_PY_BUILD_JOBS", os.cpu_count() or 2))
ParallelCompile("DARKNET_PY_BUILD_JOBS", default=JOBS).install()

HERE = os.path.dirname(os.path.abspath(__file__))
LIB_SUBDIRS = ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
               os.path.join("targets", "sbsa-linux", "lib"))

all_sources = sorted(
    os.path.relpath(p, HERE)
    for p in glob.glob(os.path.join(HERE, "csrc", "**", "*.cpp"), recursive=True)
)
TESTING_DIR = os.path.join("csrc", "testing") + os.sep
PYTHON_DIR = os.path.join("csrc", "python") + os.sep
# The header-only C++ wrapper over the C API: no core source includes it.
CPP_WRAPPER_HEADER = os.path.join("csrc", "include", "darknet_py", "darknet_py.hpp")
CORE_MODULE_INIT = os.path.join("csrc", "python", "bindings.cpp")  # PYBIND11_MODULE(_core)
# Compiled once (BuildExt.compile_shared) and linked into _core: the core library
# (csrc/ without python/ and testing/) and the _core bridge (csrc/python/) but its module init.
shared_sources = [s for s in all_sources if not s.startswith(TESTING_DIR) and s != CORE_MODULE_INIT]
# darknet_py._testing (test-only): its own sources, plus the core library objects and
# the bridge object whose region-layer dictionaries it returns.
testing_sources = [s for s in all_sources if s.startswith(TESTING_DIR)]
testing_links = [s for s in shared_sources if not s.startswith(PYTHON_DIR)] + \
    [os.path.join("csrc", "python", "bind_detect.cpp")]
headers = sorted(  # the C API header (darknet_py.h) included: c_api.cpp depends on it; *.inc: textual includes
    os.path.relpath(p, HERE)
    for pattern in ("*.hpp", "*.h", "*.inc")
    for p in glob.glob(os.path.join(HERE, "csrc", "**", pattern), recursive=True)
)

extra_compile = ["-O3", "-fopenmp", "-fno-math-errno", "-Wall", "-Wno-unknown-pragmas"]
if os.environ.get("DARKNET_PY_DEBUG"):
    extra_compile = ["-O0", "-g", "-fopenmp", "-Wall"]


def find_cuda_home():
    """Toolkit root holding include/cuda_runtime.h and bin/nvcc, or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    candidates += ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True)
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, "include", "cuda_runtime.h")) and \
                os.path.isfile(os.path.join(c, "bin", "nvcc")):
            return c
    return None


def find_cudart_static(home):
    """Directory of libcudart_static.a inside the toolkit, or None."""
    for sub in LIB_SUBDIRS:
        d = os.path.join(home, sub)
        if os.path.isfile(os.path.join(d, "libcudart_static.a")):
            return d
    return None


def cuda_config():
    """(toolkit root, static runtime dir) when the CUDA backend is built, else (None, None)."""
    mode = os.environ.get("DARKNET_PY_CUDA", "auto").strip().lower()
    if mode in ("0", "off", "no", "false"):
        return None, None
    if mode not in ("1", "on", "yes", "true", "auto", ""):
        sys.exit(f"DARKNET_PY_CUDA={mode!r}: expected 1 (required), 0 (off) or auto")
    required = mode != "auto" and mode != ""
    home = find_cuda_home()
    libdir = find_cudart_static(home) if home else None
    if home and libdir:
        print(f"darknet_py: building the CUDA backend with {home}", flush=True)
        return home, libdir
    why = ("no CUDA toolkit found (set CUDA_HOME to the directory holding bin/nvcc)" if not home
           else f"{home} has no libcudart_static.a")
    if required:
        sys.exit(f"DARKNET_PY_CUDA=1 but {why}")
    print(f"darknet_py: CPU-only build: {why}", flush=True)
    return None, None


def nvcc_arch_flags():
    archs = os.environ.get("DARKNET_PY_CUDA_ARCH", "80;90").replace(",", ";").split(";")
    archs = [a.strip() for a in archs if a.strip()]
    if not archs:
        sys.exit("DARKNET_PY_CUDA_ARCH is empty")
    if archs == ["native"]:
        return ["-arch=native"]
    flags = []
    for a in archs:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    # PTX of the newest architecture so later GPUs can JIT-compile it.
    flags += ["-gencode", f"arch=compute_{archs[-1]},code=compute_{archs[-1]}"]
    return flags


CUDA_HOME, CUDART_DIR = cuda_config()
WITH_CUDA = CUDA_HOME is not None

define_macros, library_dirs, libraries, extra_link = [], [], [], ["-fopenmp"]
depends = list(headers)
if WITH_CUDA:
    define_macros = [("DN_WITH_CUDA", "1")]
    library_dirs = [CUDART_DIR]
    # Static runtime: no libcudart.so needed at run time; the driver (libcuda.so)
    # is opened on first use, so the module imports without one.
    libraries = ["cudart_static", "dl", "rt", "pthread"]
    # Keep the static runtime's symbols private to this module, so a process
    # that also loads a shared libcudart (PyTorch, CuPy) cannot interpose them.
    extra_link += ["-Wl,--exclude-libs,ALL"]
    depends += sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "cuda", "*.cu*")))


class BuildExt(build_ext):
    """build_ext that first compiles the shared core objects (compile_shared) and, when the
    backend is built, cuda/*.cu with nvcc (in parallel), then links _core and _testing from them."""

    def finalize_options(self):
        super().finalize_options()
        if WITH_CUDA:  # CPU-only and CUDA objects differ (DN_WITH_CUDA): keep them apart
            self.build_temp = self.build_temp + "-cuda"

    def build_extensions(self):
        # Relink when the flavour (CPU / CUDA + archs) changed since the last build
        # into this tree: the output path is the same for both.
        flavour = "cuda " + " ".join(nvcc_arch_flags()) if WITH_CUDA else "cpu"
        stamp = os.path.join(os.path.dirname(self.build_temp), "darknet_py_flavour.txt")
        old = None
        if os.path.isfile(stamp):
            with open(stamp) as f:
                old = f.read()
        rebuild = self.force  # --force; a new flavour only relinks (the objects' flags stamps tell)
        if old != flavour:
            self.force = True
        # Every object both modules link exists before either is built (so the
        # modules may build in any order, or in parallel with -j).
        core = next(e for e in self.extensions if e.name == "darknet_py._core")
        shared = dict(zip(shared_sources, self.compile_shared(core, rebuild)))
        cuda_objects = self.compile_cuda() if WITH_CUDA else []
        links = {"darknet_py._core": list(shared.values()),
                 "darknet_py._testing": [shared[s] for s in testing_links]}
        for ext in self.extensions:
            objects = links[ext.name] + cuda_objects
            ext.extra_objects = list(ext.extra_objects or []) + objects
            ext.depends = list(ext.depends) + objects  # relink when an object changed
        super().build_extensions()
        os.makedirs(os.path.dirname(stamp), exist_ok=True)
        with open(stamp, "w") as f:
            f.write(flavour)

    def compile_shared(self, ext, rebuild):
        """Compiles shared_sources with ext's flags into build_temp (as build_ext would
        for ext) and returns their objects; unless rebuild, an object is reused when it is
        newer than its source and every csrc header, and was built with the same flags."""
        objects = self.compiler.object_filenames(shared_sources, output_dir=self.build_temp)
        macros = list(ext.define_macros) + [(u,) for u in ext.undef_macros]
        flags = json.loads(json.dumps({"compiler": getattr(self.compiler, "compiler_so", None), "macros": macros,
                                       "include_dirs": ext.include_dirs, "args": ext.extra_compile_args,
                                       "debug": bool(self.debug)}))
        stamp = os.path.join(self.build_temp, "core_flags.json")
        same_flags = False
        if os.path.isfile(stamp):
            with open(stamp) as f:
                same_flags = json.load(f) == flags
        # Editing the C++ wrapper recompiles nothing: no core source includes it.
        newest_header = max((os.path.getmtime(os.path.join(HERE, h)) for h in headers
                             if not h.startswith(TESTING_DIR) and h != CPP_WRAPPER_HEADER), default=0)
        stale = [src for src, obj in zip(shared_sources, objects)
                 if rebuild or not same_flags or not os.path.isfile(obj) or
                 os.path.getmtime(obj) <= max(newest_header, os.path.getmtime(os.path.join(HERE, src)))]
        if stale:
            if os.path.isfile(stamp):  # objects from a failed run must not pass for the old flags
                os.remove(stamp)
            self.compiler.compile(stale, output_dir=self.build_temp, macros=macros, include_dirs=ext.include_dirs,
                                  debug=self.debug, extra_postargs=ext.extra_compile_args, depends=ext.depends)
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            json.dump(flags, f)
        return objects

    def compile_cuda(self):
        nvcc = os.path.join(CUDA_HOME, "bin", "nvcc")
        out_dir = os.path.join(self.build_temp, "cuda")
        os.makedirs(out_dir, exist_ok=True)
        cu_files = sorted(glob.glob(os.path.join(HERE, "cuda", "*.cu")))
        # Warnings fail the build: -Werror all-warnings also hands -Werror to the host compiler.
        werror = ["-Werror", "all-warnings"] if os.environ.get("DARKNET_PY_CUDA_WERROR", "1") != "0" else []
        flags = ["-std=c++17", "-O3", "-DDN_WITH_CUDA"] + werror + [
                 "-Xcompiler", "-fPIC,-fvisibility=hidden,-Wall,-Wextra",
                 "-I" + os.path.join(HERE, "csrc")] + nvcc_arch_flags()
        # An object is reused when it is newer than its source and every header
        # it may include, and was built with the same flags.
        inputs = [os.path.join(HERE, d) for d in depends]
        newest_header = max((os.path.getmtime(p) for p in inputs if not p.endswith(".cu")), default=0)
        stamp = os.path.join(out_dir, "flags.json")
        same_flags = False
        if os.path.isfile(stamp):
            with open(stamp) as f:
                same_flags = json.load(f) == flags

        def compile_one(src):
            obj = os.path.join(out_dir, os.path.splitext(os.path.basename(src))[0] + ".o")
            if same_flags and not self.force and os.path.isfile(obj) and \
                    os.path.getmtime(obj) > max(newest_header, os.path.getmtime(src)):
                return obj
            cmd = [nvcc] + flags + ["-c", src, "-o", obj]
            print(" ".join(cmd), flush=True)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"nvcc failed on {src}:\n{r.stdout}{r.stderr}")
            return obj

        with ThreadPoolExecutor(max_workers=max(1, JOBS)) as pool:
            objects = list(pool.map(compile_one, cu_files))
        with open(stamp, "w") as f:
            json.dump(flags, f)
        return objects




def extension(name, sources, depends):
    return Pybind11Extension(
        name,
        sources,
        include_dirs=[os.path.join(HERE, "csrc"), os.path.join(HERE, "csrc", "include")],
        cxx_std=17,
        # Copies: Pybind11Extension adds its flags to these lists in place.
        extra_compile_args=list(extra_compile),
        extra_link_args=list(extra_link),
        define_macros=list(define_macros),
        library_dirs=list(library_dirs),
        libraries=list(libraries),
        depends=depends,
    )


# The shared sources go into depends: they are inputs of both modules (and of an sdist),
# compiled by BuildExt.compile_shared rather than by build_ext.
ext_modules = [extension("darknet_py._core", [CORE_MODULE_INIT], depends + shared_sources),
               extension("darknet_py._testing", testing_sources, depends + testing_links)]

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
