"""The core builds as a plain C++ library (CMake) and a C++ host runs a network
without Python, giving the same output as the Python binding."""
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from conftest import REPO, load_case


@pytest.fixture(scope="module")
def host_binary(tmp_path_factory):
    if not shutil.which("cmake"):
        pytest.skip("cmake not installed")
    if not (REPO / "CMakeLists.txt").exists():
        pytest.skip("source tree not available")
    build = tmp_path_factory.mktemp("cpp_build")
    # CPU-only here: the CUDA sources are compiled (with -Werror) by the package build and
    # tests/test_cuda_parity.py; compiling them again would double this test's time.
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    "-DDARKNET_PY_CUDA=OFF"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j", str(os.cpu_count() or 2), "--target", "cpp_host"],
                   check=True, capture_output=True)
    return build / "cpp_host"


def test_cpp_host_matches_python(host_binary, tmp_path):
    case = load_case("fixtures", "classifier", "softmax_cost")
    cfg = case.root / case.manifest["cfg"]
    weights = case.root / case.manifest["weights_in"]
    x = case.array("input")[:1]
    raw = tmp_path / "input.f32"
    x.astype(np.float32).tofile(raw)
    out = subprocess.run([str(host_binary), str(cfg), str(weights), str(raw)], check=True, capture_output=True,
                         text=True).stdout
    fields = out.split()
    total = float(fields[fields.index("sum") + 1])
    first = float(fields[fields.index("first") + 1])
    ref = darknet_py.load(cfg, weights).forward(x).ravel()
    assert first == pytest.approx(float(ref[0]), rel=1e-5)
    assert total == pytest.approx(float(ref.astype(np.float64).sum()), rel=1e-5)


def test_cpp_host_reports_errors(host_binary, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nsize=0\n")
    r = subprocess.run([str(host_binary), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "bad.cfg:6: [convolutional] size=0: must be > 0" in r.stderr
