"""Helpers shared by the bench scripts: paths, weights generation, timing."""
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("DARKNET_PY_REFERENCE", REPO.parent / "shared" / "reference"))
CACHE = Path(os.environ.get("DARKNET_PY_CACHE", Path.home() / ".cache" / "darknet_py"))


def cfg_path(name: str) -> Path:
    """A cfg by name (yolov2-voc) from the reference tree, or a path."""
    p = Path(name)
    if p.exists():
        return p
    p = REFERENCE / "cfg" / f"{name}.cfg"
    if not p.exists():
        sys.exit(f"cfg not found: {name} (looked in {REFERENCE / 'cfg'})")
    return p


def random_weights(cfg: Path, seed: int = 1) -> Path:
    """Deterministic random weights from the reference make_weights.py, cached."""
    out = CACHE / "bench_weights" / f"{cfg.stem}_seed{seed}.weights"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        subprocess.run([sys.executable, str(REFERENCE / "make_weights.py"), str(cfg), str(tmp), "--seed", str(seed)],
                       check=True, capture_output=True)
        tmp.rename(out)
    return out


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
