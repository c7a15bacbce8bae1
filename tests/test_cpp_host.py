"""The core as an installed C/C++ library: CMake builds and installs it into a temporary
prefix, the example host builds as a separate project with find_package(darknet_py) and
detects what the Python API detects (and, within the stated image-loading tolerance, what
Darknet detects), the pure C example links with nothing but the
pkg-config flags, and the C API tests run under AddressSanitizer + UBSan. A C host
(tests/c_api/net_ops.c) runs full original networks through the C API and its outputs are
compared elementwise with Darknet's full-net fixtures (the bound of test_full_nets.py),
after a full load, a partial load (cutoff), a save and reload, and a resize.

Everything builds CPU-only (-DDARKNET_PY_CUDA=OFF): the CUDA sources are compiled (with
-Werror) by the package build and tests/test_cuda_parity.py."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from conftest import REPO, load_case, make_weights, require_reference

JOBS = str(os.cpu_count() or 2)


def _run(cmd, **kwargs):
    """subprocess.run that shows the command's output when it fails."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def _require_toolchain():
    if not shutil.which("cmake"):
        pytest.skip("cmake not installed (pip install cmake)")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler")
    if not (REPO / "CMakeLists.txt").exists():
        pytest.skip("source tree not available")


@pytest.fixture(scope="module")
def prefix(tmp_path_factory):
    """The library built (Release, shared + static) and installed into a temporary prefix."""
    _require_toolchain()
    build = tmp_path_factory.mktemp("lib_build")
    prefix = tmp_path_factory.mktemp("prefix")
    _run(["cmake", "-S", REPO, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DDARKNET_PY_CUDA=OFF",
          "-DDARKNET_PY_BUILD_EXAMPLES=OFF", f"-DCMAKE_INSTALL_PREFIX={prefix}", "-DCMAKE_INSTALL_LIBDIR=lib"])
    _run(["cmake", "--build", build, "-j", JOBS])
    _run(["cmake", "--install", build])
    return prefix


@pytest.fixture(scope="module")
def hostile_include(tmp_path_factory):
    """A consumer include directory with its own network.hpp that must never be picked up."""
    d = tmp_path_factory.mktemp("consumer_include")
    (d / "network.hpp").write_text('#error "the consumer\'s network.hpp was included by a darknet_py header"\n')
    return d


def _build_host(prefix, build, hostile_include, *extra):
    _run(["cmake", "-S", REPO / "examples" / "cpp_host", "-B", build, "-DCMAKE_BUILD_TYPE=Release",
          f"-DCMAKE_PREFIX_PATH={prefix}", f"-DCMAKE_CXX_FLAGS=-I{hostile_include}", *extra])
    _run(["cmake", "--build", build, "-j", JOBS])
    return build / "cpp_host"


@pytest.fixture(scope="module")
def host_binary(prefix, hostile_include, tmp_path_factory):
    return _build_host(prefix, tmp_path_factory.mktemp("host_build"), hostile_include)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """yolov2-tiny-voc with the reference's seeded weights, dog.jpg as a PPM, and the names."""
    root = require_reference()
    cfg = require_reference("cfg", "yolov2-tiny-voc.cfg")
    names = require_reference("data", "voc.names")
    dog = require_reference("data", "dog.jpg")
    work = tmp_path_factory.mktemp("detector")
    weights = make_weights(cfg, 1, work)
    from PIL import Image
    ppm = work / "dog.ppm"
    with Image.open(dog) as im:
        im.convert("RGB").save(ppm)  # the same RGB8 pixels darknet_py.load_image reads
    return dict(root=root, cfg=cfg, weights=weights, names=names, dog=dog, ppm=ppm)


def test_install_layout(prefix):
    headers = sorted(p.relative_to(prefix / "include").as_posix() for p in (prefix / "include").rglob("*") if p.is_file())
    assert headers == ["darknet_py/darknet_py.h", "darknet_py/darknet_py.hpp"]  # no internal header
    libdir = prefix / "lib"
    assert (libdir / "libdarknet_py.a").is_file() and (libdir / "libdarknet_py.so").exists()
    for f in ("darknet_pyConfig.cmake", "darknet_pyConfigVersion.cmake", "darknet_pyTargets.cmake"):
        assert (libdir / "cmake" / "darknet_py" / f).is_file()
    pc = (libdir / "pkgconfig" / "darknet_py.pc").read_text()
    assert f"Version: {_header_version()}" in pc
    assert "-lgomp" in pc or "-lomp" in pc  # OpenMP and the C++ runtime for static links
    if shutil.which("nm"):
        symbols = _run(["nm", "-D", "--defined-only", libdir / "libdarknet_py.so"]).stdout.split("\n")
        names = sorted({line.split()[-1].split("@")[0] for line in symbols if line.strip()} - {"DARKNET_PY_0"})
        assert names and all(n.startswith("dn_") for n in names), [n for n in names if not n.startswith("dn_")]
        assert "dn_network_detect_rgb8" in names and "dn_version" in names


def _header_version():
    header = (REPO / "csrc" / "include" / "darknet_py" / "darknet_py.h").read_text()
    c_version = re.search(r'#define DARKNET_PY_VERSION_STRING "([^"]+)"', header).group(1)
    parts = [re.search(rf"#define DARKNET_PY_VERSION_{k} (\d+)", header).group(1) for k in ("MAJOR", "MINOR", "PATCH")]
    assert c_version == ".".join(parts)
    return c_version


def test_versions_agree():
    """The C header's version is the package's (pyproject.toml)."""
    c_version = _header_version()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == c_version


_LINE = re.compile(r"^(?P<name>\S+): (?P<pct>\d+)%\t\(left=(?P<l>-?\d+) top=(?P<t>-?\d+) right=(?P<r>-?\d+) "
                   r"bottom=(?P<b>-?\d+)\)$")


def _host_detections(stdout):
    """(name, percent) of each Darknet-style line and the --precise numbers under it."""
    lines, precise = [], []
    for line in stdout.splitlines():
        m = _LINE.match(line)
        if m:
            lines.append((m["name"], int(m["pct"])))
        elif line.startswith("  precise "):
            f = line.split()[1:]
            precise.append((int(f[0]), *map(float, f[1:])))
    return lines, precise


def _python_detections(d):
    from darknet_py.data.dataset import read_names
    net = darknet_py.load(d["cfg"], d["weights"], names=read_names(d["names"]))
    return net.detect(str(d["dog"]), thresh=.24, hier_thresh=.5, nms=.45)


def _assert_same_detections(stdout, expected):
    lines, precise = _host_detections(stdout)
    assert len(expected) > 0
    assert len(lines) == len(precise) == len(expected), stdout
    for (name, pct), (cls, prob, obj, x, y, w, h), e in zip(lines, precise, expected):
        assert name == e.name and cls == e.class_id
        assert pct == int(f"{e.prob * 100:.0f}")
        assert prob == pytest.approx(e.prob, rel=1e-6) and obj == pytest.approx(e.objectness, rel=1e-6)
        # Python scales boxes to pixels in double, the C API in float.
        assert (x, y, w, h) == pytest.approx(e.box, rel=1e-5, abs=1e-3)


def test_host_detects_like_python(host_binary, detector, tmp_path):
    out_image = tmp_path / "dog_annotated.ppm"
    r = _run([host_binary, detector["cfg"], detector["weights"], detector["ppm"], "--names", detector["names"],
              "--out", out_image, "--precise"])
    _assert_same_detections(r.stdout, _python_detections(detector))
    from PIL import Image
    with Image.open(out_image) as annotated, Image.open(detector["ppm"]) as original:
        assert annotated.size == original.size
        assert annotated.tobytes() != original.tobytes()  # boxes were drawn


def test_host_detections_match_darknet(host_binary, detector):
    """The C++ host's detections on dog.jpg against Darknet's list (fixtures/full_nets/
    yolov2-tiny-voc_416, same cfg and seeded weights), with test_full_nets.py's stated
    tolerance for our own image loading (Pillow's JPEG decoder differs from stb_image by a
    few levels): each labelled box above thresh + 0.05 has a host box of the same class
    within 2% of the image size + 3% of the value, its probability within 0.05; the count
    within max(1, 20%)."""
    case = load_case("fixtures", "full_nets", "yolov2-tiny-voc_416")
    gen = case.manifest["weights_generation"]
    assert (gen["cfg"], gen["seed"]) == ("cfg/yolov2-tiny-voc.cfg", 1)
    assert hashlib.sha256(detector["weights"].read_bytes()).hexdigest() == gen["sha256"]
    ref = json.loads((case.files_dir / "detections.json").read_text())
    r = _run([host_binary, detector["cfg"], detector["weights"], detector["ppm"], "--names", detector["names"],
              "--thresh", str(ref["thresh"]), "--hier-thresh", str(ref["hier_thresh"]), "--nms", str(ref["nms"]),
              "--precise"])
    _, ours = _host_detections(r.stdout)
    w, h = ref["image_w"], ref["image_h"]
    labelled = [d for d in ref["detections"] if d["labels"]]
    strong = [d for d in labelled if max(d["prob"]) > ref["thresh"] + 0.05]
    assert strong
    for d in strong:
        box = np.array(d["bbox_xywh"]) * [w, h, w, h]
        cls = int(np.argmax(d["prob"]))
        match = min(ours, key=lambda o: np.abs(np.array(o[3:]) - box).max())
        assert (np.abs(np.array(match[3:]) - box) <= 0.02 * max(w, h) + 0.03 * np.abs(box)).all(), (match, box)
        assert match[0] == cls
        assert abs(match[1] - max(d["prob"])) <= 0.05
    assert abs(len(ours) - len(labelled)) <= max(1, len(labelled) // 5), (len(ours), len(labelled))


@pytest.mark.parametrize("hier_thresh", [.5, .2])
def test_host_wordtree_detections_like_python(host_binary, detector, monkeypatch, hier_thresh):
    """A WordTree (softmax tree) region layer: hier_thresh reaches the descent through the C API."""
    root = detector["root"]
    cfg = require_reference("fixtures", "region_tree", "tiny_tree.cfg")
    weights = require_reference("fixtures", "region_tree", "tiny_tree.weights")
    monkeypatch.chdir(root)  # the cfg names its .tree relative to the reference root
    r = _run([host_binary, cfg, weights, detector["ppm"], "--thresh", ".1", "--hier-thresh", str(hier_thresh),
              "--precise"], cwd=root)
    net = darknet_py.load(cfg, weights)
    _assert_same_detections(r.stdout, net.detect(str(detector["dog"]), thresh=.1, hier_thresh=hier_thresh, nms=.45))


def test_host_static_link(prefix, hostile_include, detector, tmp_path):
    """The static archive carries its link dependencies (OpenMP, the C++ runtime)."""
    host = _build_host(prefix, tmp_path / "static_build", hostile_include, "-DCPP_HOST_STATIC=ON")
    if shutil.which("ldd"):
        assert "darknet_py" not in _run(["ldd", host]).stdout
    r = _run([host, detector["cfg"], detector["weights"], detector["ppm"], "--names", detector["names"], "--precise"])
    _assert_same_detections(r.stdout, _python_detections(detector))


def test_host_reports_errors(host_binary, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nsize=0\n")
    ppm = tmp_path / "x.ppm"
    ppm.write_bytes(b"P6\n2 2\n255\n" + bytes(12))
    r = subprocess.run([str(host_binary), str(bad), str(tmp_path / "none.weights"), str(ppm)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert "bad.cfg:6: [convolutional] size=0: must be > 0" in r.stderr


def test_c_example_links_with_pkg_config_only(prefix, detector, tmp_path):
    if not shutil.which("pkg-config"):
        pytest.skip("pkg-config not installed")
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler")
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib" / "pkgconfig"))
    flags = _run(["pkg-config", "--cflags", "--libs", "darknet_py"], env=env).stdout.split()
    exe = tmp_path / "c_host"
    _run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", REPO / "examples" / "c_host" / "detect.c",
          *flags, "-o", exe])
    run_env = dict(os.environ, LD_LIBRARY_PATH=str(prefix / "lib"))
    r = _run([exe, detector["cfg"], detector["weights"], detector["names"], detector["ppm"]], env=run_env)
    lines, _ = _host_detections(r.stdout)
    expected = _python_detections(detector)
    assert lines == [(e.name, int(f"{e.prob * 100:.0f}")) for e in expected]


def _sanitizers_link(tmp_path, sanitizers="address,undefined"):
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    src = tmp_path / "probe.cpp"
    src.write_text("int main() { return 0; }\n")
    r = subprocess.run([cxx, f"-fsanitize={sanitizers}", str(src), "-o", str(tmp_path / "probe")],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
def test_c_api_threads_under_thread_sanitizer(tmp_path):
    """TSan: networks on separate threads, and one network shared by two threads (each call
    runs or is refused with DN_BUSY). A third full build of the core, so not in the default
    run. Only the threads test: the others use OpenMP pools, and an uninstrumented libgomp's
    barriers read as races to TSan."""
    _require_toolchain()
    if sys.platform != "linux" or not _sanitizers_link(tmp_path, "thread"):
        pytest.skip("the compiler cannot link -fsanitize=thread")
    build = tmp_path / "tsan"
    _run(["cmake", "-S", REPO, "-B", build, "-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_CXX_FLAGS_DEBUG=-O1",
          "-DCMAKE_C_FLAGS_DEBUG=-O1", "-DDARKNET_PY_CUDA=OFF", "-DDARKNET_PY_BUILD_TESTS=ON",
          "-DDARKNET_PY_BUILD_SHARED=OFF", "-DDARKNET_PY_BUILD_EXAMPLES=OFF", "-DDARKNET_PY_SANITIZE=thread"])
    _run(["cmake", "--build", build, "-j", JOBS, "--target", "c_api_test"])
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1")
    r = subprocess.run(["ctest", "--output-on-failure", "-R", "c_api_threads"], cwd=build, capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]


def test_c_api_under_address_and_ub_sanitizers(tmp_path):
    """ctest under ASan + UBSan: NULLs, bad sizes and bad files on every C API function,
    load/detect/free in a loop (LeakSanitizer at exit), threads on separate and shared handles,
    and the C++ wrapper with a consumer's own network.hpp on its include path."""
    _require_toolchain()
    if sys.platform != "linux":
        pytest.skip("sanitizer run is set up for Linux")
    if not _sanitizers_link(tmp_path):
        pytest.skip("the compiler cannot link -fsanitize=address,undefined")
    build = tmp_path / "asan"
    # -O0 without debug info: an instrumented build compiles about twice as fast as at -O1
    # (measured on gemm.cpp and network.cpp) and still runs the tests' 32x32 networks in
    # seconds. Static library only: one link, the tests need no .so.
    _run(["cmake", "-S", REPO, "-B", build, "-DCMAKE_BUILD_TYPE=Debug", "-DCMAKE_CXX_FLAGS_DEBUG=-O0",
          "-DCMAKE_C_FLAGS_DEBUG=-O0", "-DDARKNET_PY_CUDA=OFF", "-DDARKNET_PY_BUILD_TESTS=ON",
          "-DDARKNET_PY_BUILD_SHARED=OFF", "-DDARKNET_PY_BUILD_EXAMPLES=OFF",
          "-DDARKNET_PY_SANITIZE=address,undefined"])
    _run(["cmake", "--build", build, "-j", JOBS])
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1", OMP_NUM_THREADS="2")
    r = subprocess.run(["ctest", "--output-on-failure"], cwd=build, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "100% tests passed" in r.stdout


# ---------------------------------------------------------------- hostile input through the C API

REORG_NET = """[net]
batch=1
width=32
height=32
channels=3

[convolutional]
filters=8
size=3
pad=1
activation=leaky

[reorg]
stride=2
"""

RESIZE_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "darknet_py/darknet_py.h"
int main(int argc, char** argv) {
  dn_network* net = NULL;
  if (dn_network_load(argv[1], argc > 2 ? argv[2] : NULL, 1, &net)) { printf("load failed: %s\n", dn_last_error()); return 1; }
  int count = 0;
  dn_network_warning_count(net, &count);
  for (int i = 0; i < count; ++i) {
    const char* text = NULL;
    dn_network_warning(net, i, &text);
    printf("warning: %s\n", text);
  }
  int b, c, h, w;
  dn_network_input_shape(net, &b, &c, &h, &w);
  size_t n = (size_t)b * c * h * w;
  float* x = (float*)calloc(n, sizeof(float));
  for (size_t i = 0; i < n; ++i) x[i] = (float)(i % 7) / 7.f;
  const float* out = NULL;
  size_t out_count = 0;
  if (dn_network_forward(net, x, n, &out, &out_count)) return 2;
  double before = 0;
  for (size_t i = 0; i < out_count; ++i) before += out[i];
  int rc = dn_network_resize(net, 33, 33);
  printf("resize rc %d: %s\n", rc, dn_last_error());
  dn_network_input_shape(net, &b, &c, &h, &w);
  printf("shape %dx%d\n", w, h);
  if (dn_network_forward(net, x, n, &out, &out_count)) { printf("forward failed: %s\n", dn_last_error()); return 3; }
  double after = 0;
  for (size_t i = 0; i < out_count; ++i) after += out[i];
  printf("same %d\n", before == after);
  dn_network_free(net);
  free(x);
  return 0;
}
"""



def test_c_api_failed_resize_keeps_network_and_warnings_retrievable(prefix, tmp_path):
    """dn_network_resize failing partway left a network that segfaulted on the next forward;
    a bigger cfg's weights loaded with a warning the C API dropped (issue 13)."""
    src = tmp_path / "resize.c"
    src.write_text(RESIZE_PROGRAM)
    exe = tmp_path / "resize"
    _run(["cc", src, f"-I{prefix / 'include'}", f"-L{prefix / 'lib'}", "-ldarknet_py",
          f"-Wl,-rpath,{prefix / 'lib'}", "-o", exe])
    cfg = tmp_path / "reorg.cfg"
    cfg.write_text(REORG_NET)
    bigger = darknet_py.Network.from_text(REORG_NET.replace("filters=8", "filters=12").replace("stride=2", "stride=1"))
    weights = tmp_path / "bigger.weights"
    bigger.save_weights(str(weights))
    proc = subprocess.run([str(exe), str(cfg), str(weights)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    assert "bytes after the last layer's weights were not used" in proc.stdout
    assert "resize rc 1:" in proc.stdout and "not divisible by stride 2" in proc.stdout
    assert "shape 32x32" in proc.stdout and "same 1" in proc.stdout


# ---------------------------------------------------------------- full networks vs Darknet, through the C API

# test_full_nets.py's bound: |ours - darknet| <= 1e-4 * max(1, |darknet|) for every value.
FULL_NETS_TOL = 1e-4


@pytest.fixture(scope="module")
def net_ops(prefix, tmp_path_factory):
    """tests/c_api/net_ops.c built against the installed library (C99, warnings as errors)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.skip("no C compiler")
    exe = tmp_path_factory.mktemp("net_ops") / "net_ops"
    _run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic", REPO / "tests" / "c_api" / "net_ops.c",
          f"-I{prefix / 'include'}", f"-L{prefix / 'lib'}", "-ldarknet_py", f"-Wl,-rpath,{prefix / 'lib'}", "-o", exe])
    return exe


def _fixture_net(name, weights_dir):
    """A full_nets case and its weights, regenerated and checked against the recorded sha256."""
    case = load_case("fixtures", "full_nets", name)
    gen = case.manifest["weights_generation"]
    weights = make_weights(case.root / gen["cfg"], gen["seed"], weights_dir)
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == gen["sha256"], \
        "make_weights.py did not reproduce the recorded weights"
    return case, weights


def _raw_input(case, path):
    np.ascontiguousarray(case.array("input"), dtype=np.float32).tofile(path)
    return path


def _full_output(case):
    full = [k for k in case.entries if k.endswith("_output_full")]
    assert len(full) == 1, full
    return case.array(full[0])


def _assert_matches_darknet(got, want, what, tol=FULL_NETS_TOL):
    got = np.asarray(got, np.float64).ravel()
    want = np.asarray(want, np.float64).ravel()
    assert got.size == want.size, f"{what}: {got.size} values, Darknet has {want.size}"
    err = np.abs(got - want)
    bad = err > tol * np.maximum(1.0, np.abs(want))
    assert not bad.any(), (f"{what}: {bad.sum()} of {bad.size} values differ from Darknet by more than "
                           f"{tol} * max(1, |v|); max err {err.max():.3g} at {int(np.argmax(err))}")


def _ops(exe, cfg, *ops, cwd=None):
    return _run([exe, cfg, *ops], cwd=cwd).stdout


def _layer_outputs(prefix, count):
    return [np.fromfile(f"{prefix}{i}.f32", np.float32) for i in range(count)]


def test_c_api_full_network_matches_darknet(net_ops, weights_dir, tmp_path):
    """yolov2-tiny-voc 416 with its recorded input: the C API's whole network output (all
    125x13x13 values) and every layer's output (Darknet's strided samples) against the fixture."""
    case, weights = _fixture_net("yolov2-tiny-voc_416", weights_dir)
    x = _raw_input(case, tmp_path / "input.f32")
    _ops(net_ops, case.root / case.manifest["cfg"], "weights", weights, "-1", "forward", x, tmp_path / "out.f32",
         "layers", tmp_path / "L")
    out = np.fromfile(tmp_path / "out.f32", np.float32)
    _assert_matches_darknet(out, _full_output(case), "C API network output")
    stride = case.manifest["strided_sample_stride"]
    layers = _layer_outputs(tmp_path / "L", len(case.manifest["layer_stats"]))
    for i, got in enumerate(layers):
        _assert_matches_darknet(got[::stride], case.array(f"L{i:02d}_output_strided"), f"C API layer {i} output")


def test_c_api_save_reloads_and_matches_python_and_the_file(net_ops, weights_dir, tmp_path):
    """dn_network_save_weights after a full load writes the loaded file byte for byte (the
    reference make_weights.py's Darknet-format file) and what the Python API saves; the saved
    file loads back through the C API and gives the same output, bit for bit."""
    case, weights = _fixture_net("yolov2-tiny-voc_416", weights_dir)
    cfg = case.root / case.manifest["cfg"]
    x = _raw_input(case, tmp_path / "input.f32")
    saved = tmp_path / "saved.weights"
    _ops(net_ops, cfg, "weights", weights, "-1", "forward", x, tmp_path / "out.f32", "save", saved)
    python_saved = tmp_path / "python.weights"
    darknet_py.load(cfg, weights).save_weights(python_saved)
    assert saved.read_bytes() == weights.read_bytes()
    assert saved.read_bytes() == python_saved.read_bytes()
    _ops(net_ops, cfg, "weights", saved, "-1", "forward", x, tmp_path / "reloaded.f32")
    reloaded = np.fromfile(tmp_path / "reloaded.f32", np.float32)
    np.testing.assert_array_equal(reloaded, np.fromfile(tmp_path / "out.f32", np.float32))
    _assert_matches_darknet(reloaded, _full_output(case), "reloaded network output")


def test_c_api_partial_load_cutoff(net_ops, weights_dir, tmp_path):
    """dn_network_load_weights with cutoff 8 on yolov2-tiny-voc: layers 0-7 (convs 0, 2, 4, 6)
    come from the file and their outputs match Darknet's; layer 8 keeps the seeded
    initialisation (its output does not match). Saved, the file holds the loaded file's
    bytes up to the end of layer 7 and other bytes after it, as the Python API saves it."""
    cutoff = 8
    case, weights = _fixture_net("yolov2-tiny-voc_416", weights_dir)
    cfg = case.root / case.manifest["cfg"]
    x = _raw_input(case, tmp_path / "input.f32")
    saved = tmp_path / "partial.weights"
    _ops(net_ops, cfg, "weights", weights, str(cutoff), "forward", x, tmp_path / "out.f32", "layers", tmp_path / "L",
         "save", saved)
    stride = case.manifest["strided_sample_stride"]
    layers = _layer_outputs(tmp_path / "L", len(case.manifest["layer_stats"]))
    for i in range(cutoff):
        _assert_matches_darknet(layers[i][::stride], case.array(f"L{i:02d}_output_strided"), f"layer {i} (loaded)")
    with pytest.raises(AssertionError, match="differ from Darknet"):
        _assert_matches_darknet(layers[cutoff][::stride], case.array(f"L{cutoff:02d}_output_strided"), "layer 8")
    python = darknet_py.load(cfg, weights, cutoff=cutoff)
    python_saved = tmp_path / "python_partial.weights"
    python.save_weights(python_saved)
    # Header (3 int32 + int64 seen) then each layer's parameters in file order, float32.
    end_of_loaded = 20 + 4 * sum(v.size for l in python.layers[:cutoff] for v in l.params.values())
    ours, source = saved.read_bytes(), weights.read_bytes()
    assert len(ours) == len(source)
    assert ours[:end_of_loaded] == source[:end_of_loaded]
    assert ours[end_of_loaded:end_of_loaded + 4 * 64] != source[end_of_loaded:end_of_loaded + 4 * 64]
    assert ours == python_saved.read_bytes()


def test_c_api_resize_matches_darknet_at_both_sizes(net_ops, weights_dir, tmp_path):
    """yolov2-voc.cfg (416) through the C API: the output at 416 matches Darknet's 416 fixture;
    dn_network_resize to 608 then matches Darknet's 608 fixture (same weights file); resized
    back to 416 the output is the first one, bit for bit."""
    case416, weights = _fixture_net("yolov2-voc_416", weights_dir)
    case608, weights608 = _fixture_net("yolov2-voc_608", weights_dir)
    assert weights608 == weights  # one file: the two fixtures differ only in the input size
    x416 = _raw_input(case416, tmp_path / "in416.f32")
    x608 = _raw_input(case608, tmp_path / "in608.f32")
    out = _ops(net_ops, case416.root / case416.manifest["cfg"], "weights", weights, "-1",
               "forward", x416, tmp_path / "a416.f32", "resize", "608", "608", "forward", x608, tmp_path / "b608.f32",
               "resize", "416", "416", "forward", x416, tmp_path / "c416.f32")
    assert "forward 1x3x608x608" in out, out
    a416 = np.fromfile(tmp_path / "a416.f32", np.float32)
    _assert_matches_darknet(a416, _full_output(case416), "output at 416")
    _assert_matches_darknet(np.fromfile(tmp_path / "b608.f32", np.float32), _full_output(case608),
                            "output after resize to 608")
    np.testing.assert_array_equal(np.fromfile(tmp_path / "c416.f32", np.float32), a416)
