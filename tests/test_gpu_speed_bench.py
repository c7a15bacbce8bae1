"""bench/gpu_speed.py (darknet_py on CUDA against PyTorch + cuDNN) runs end to end in its CPU dry-run
mode, and refuses --device cuda with exit status 2 where there is no GPU.

Needs PyTorch, an optional peer the package and CI never install: the tests carry the
torch_reference marker, so conftest deselects them where torch is missing (no skip in the run)."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, require_reference

pytestmark = pytest.mark.torch_reference

SCRIPT = REPO / "bench" / "gpu_speed.py"


def _run(*args, cache=None, timeout=240):
    env = dict(os.environ)
    if cache is not None:
        env["DARKNET_PY_CACHE"] = str(cache)     # the bench's random-weights cache, not ~/.cache
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=str(REPO))


def test_cpu_dry_run_prints_checks_table_and_json(tmp_path):
    import torch  # noqa: F401  (deselected by conftest where torch is not installed: never a skip)
    require_reference("cfg", "yolov2-tiny-voc.cfg")
    require_reference("make_weights.py")
    out = tmp_path / "gpu_speed.json"
    r = _run("--device", "cpu", "--nets", "yolov2-tiny-voc", "--size", "64", "--batch-large", "2",
             "--budget", "0.05", "--warmup", "1", "--no-compile", "--json", str(out), cache=tmp_path / "cache")
    text = r.stdout + r.stderr
    assert r.returncode == 0, text
    assert "check yolov2-tiny-voc b1: torch output matches darknet_py within" in r.stdout, text
    assert "first-step cost matches darknet_py within" in r.stdout, text
    assert "| net | case | metric | darknet_py | torch | ratio vs torch |" in r.stdout, text
    for case in ("forward b1", "forward b2", "train b2"):
        assert f"| yolov2-tiny-voc | {case} |" in r.stdout, text
    assert "batch-1 latency <= 0.8x PyTorch eager" in r.stdout, text

    data = json.loads(out.read_text())
    assert data["failures"] == []
    assert data["environment"]["torch"] and data["environment"]["darknet_py"]
    cases = data["results"]["yolov2-tiny-voc"]
    assert set(cases) == {"b1", "batch", "train"}
    for case, peers in cases.items():
        assert set(peers) == {"darknet_py", "torch"}, case
        for numbers in peers.values():
            assert numbers["runs"] >= 3 and numbers["ms"] > 0 and numbers["images_per_s"] > 0
    assert all(c["ok"] for c in data["checks"]) and len(data["checks"]) == 3
    assert len(data["targets"]) == 3


def test_cuda_without_a_device_exits_2():
    import torch
    import darknet_py
    if torch.cuda.is_available() and darknet_py.cuda_available():
        pytest.skip("CUDA available: this tests the message where there is no GPU")
    r = _run("--device", "cuda", "--nets", "yolov2-tiny-voc", timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "CUDA not available" in r.stderr
    assert "--device cpu" in r.stderr
    assert "| net |" not in r.stdout
