"""Shared test helpers: locating Darknet reference data and regenerating weights."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ skips in CI
# Under DARKNET_PY_REQUIRE_REFERENCE=1 (CI: .ci/run) a test may skip only for a reason in an
# allowed category; any other skip is turned into a failure (pytest_runtest_makereport
# below) and every skip reason is listed at the end of the run (pytest_terminal_summary).
# A category is a prefix the skip message must start with.
ALLOWED_SKIP_CATEGORIES = {
    # No CUDA device, driver or toolkit on this machine (or a build without CUDA): the
    # CUDA tests cannot run; everything else must. darknet_py.cuda_unavailable_reason()
    # follows the prefix.
    "CUDA not available:": "GPU absence (no CUDA device, driver or toolkit, or a build without CUDA)",
    # The converse, on a GPU machine: tests of what happens WITHOUT a device (the reason
    # --device cuda reports) cannot run where one is present. CI machines have no GPU, so
    # these never skip there.
    "CUDA available:": "GPU presence (a test of the no-device behaviour, on a machine with a device)",
}


_SKIPS = pytest.StashKey[list]()
_DESELECTED_TORCH = pytest.StashKey[list]()


def require_everything() -> bool:
    return os.environ.get("DARKNET_PY_REQUIRE_REFERENCE") == "1"


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def skip_allowed(reason: str) -> bool:
    return any(reason.startswith(prefix) for prefix in ALLOWED_SKIP_CATEGORIES)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    item.config.stash.setdefault(_SKIPS, []).append((item.nodeid, reason))
    if require_everything() and not skip_allowed(reason):
        report.outcome = "failed"
        report.longrepr = (f"skipped for a reason that is not an allowed category under "
                           f"DARKNET_PY_REQUIRE_REFERENCE=1: {reason!r}\nallowed skip reasons start with: "
                           + ", ".join(repr(p) for p in ALLOWED_SKIP_CATEGORIES))


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "torch_reference: compares with the PyTorch reference (bench/torch_reference.py); "
                   "deselected, with a line in the summary, where torch is not installed")


def pytest_collection_modifyitems(config, items):
    """The PyTorch-reference tests need torch, an optional peer that the package and CI never
    install: where it is missing they are deselected (not skipped) and the summary says so.
    DARKNET_PY_TORCH_REFERENCE=1 keeps them selected (a missing torch then fails them)."""
    if importlib.util.find_spec("torch") is not None or os.environ.get("DARKNET_PY_TORCH_REFERENCE") == "1":
        return
    torch_items = [i for i in items if i.get_closest_marker("torch_reference")]
    if torch_items:
        config.hook.pytest_deselected(items=torch_items)
        items[:] = [i for i in items if not i.get_closest_marker("torch_reference")]
        config.stash[_DESELECTED_TORCH] = [i.nodeid for i in torch_items]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skips = config.stash.get(_SKIPS, [])
    torch_items = config.stash.get(_DESELECTED_TORCH, [])
    if torch_items:
        terminalreporter.write_sep("-", f"{len(torch_items)} PyTorch-reference tests deselected: torch is not "
                                        "installed (optional peer; pip install torch)")
    if not skips:
        return
    by_reason = {}
    for nodeid, reason in skips:
        by_reason.setdefault(reason, []).append(nodeid)
    terminalreporter.write_sep("-", f"skip reasons ({len(skips)} skips)")
    for reason, ids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        verdict = "allowed" if skip_allowed(reason) else (
            "NOT ALLOWED (failed)" if require_everything() else "not allowed in CI")
        terminalreporter.write_line(f"{len(ids):4d} x [{verdict}] {reason}   e.g. {ids[0]}")


def reference_root() -> Path:
    return Path(os.environ.get("DARKNET_PY_REFERENCE", REPO.parent / "shared" / "reference"))


def require_reference(*parts) -> Path:
    """Path inside the reference tree; skip (or fail in CI) when it is missing."""
    path = reference_root().joinpath(*parts)
    if not path.exists():
        msg = f"reference data missing: {path}"
        if os.environ.get("DARKNET_PY_REQUIRE_REFERENCE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


class Case:
    """A fixture case directory: manifest + arrays resolved as files_dir/file."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.manifest = json.loads((directory / "manifest.json").read_text())
        self.root = reference_root()
        files_dir = self.manifest.get("files_dir")
        self.files_dir = self.root / files_dir if files_dir else directory
        self.entries = {Path(f["file"]).stem: f for f in self.manifest.get("files", [])}

    def has(self, name):
        return name in self.entries

    def array(self, name) -> np.ndarray:
        return np.load(self.files_dir / self.entries[name]["file"])

    @property
    def values(self):
        return self.manifest.get("values", {})


def load_case(*parts) -> Case:
    return Case(require_reference(*parts))


_WEIGHTS_CACHE = {}


def make_weights(cfg: Path, seed: int, out_dir: Path, **kwargs) -> Path:
    """Regenerate a weights file with the reference make_weights.py (numpy only)."""
    key = (str(cfg), seed, tuple(sorted(kwargs.items())))
    if key in _WEIGHTS_CACHE and _WEIGHTS_CACHE[key].exists():
        return _WEIGHTS_CACHE[key]
    out = out_dir / f"{Path(cfg).stem}_seed{seed}.weights"
    cmd = [sys.executable, str(reference_root() / "make_weights.py"), str(cfg), str(out), "--seed", str(seed)]
    for k, v in kwargs.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    subprocess.run(cmd, check=True, capture_output=True)
    _WEIGHTS_CACHE[key] = out
    return out


def assert_close(actual, expected, atol, rtol, what=""):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    bad = err > bound
    if bad.any():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} values out of tolerance (atol={atol}, rtol={rtol}); "
            f"worst at {i}: got {actual[i]}, expected {expected[i]}, max abs err {err.max():.3g}")


def momentum_buffers(net) -> dict:
    """Copies of every layer's *_updates buffer (SGD momentum), keyed by layer index and name."""
    return {f"{l.index}{k}": v.copy() for l in net.layers for k, v in l.buffers.items() if k.endswith("_updates")}


def parameters(net) -> dict:
    """Copies of every layer's parameters, keyed by layer index and name."""
    return {f"{l.index}{k}": v.copy() for l in net.layers for k, v in l.params.items()}


def small_yolo_cfg(size=64, batch=8, subdivisions=1, lr=0.001, random=0, filters=(8, 16, 32, 32),
                   max_batches=200, classes=5):
    """A small YOLOv2-style detector cfg (BN convs + maxpools, 1x1 head, [region])."""
    text = (f"[net]\nbatch={batch}\nsubdivisions={subdivisions}\nwidth={size}\nheight={size}\nchannels=3\n"
            f"momentum=0.9\ndecay=0.0005\nlearning_rate={lr}\nburn_in=0\npolicy=constant\n"
            f"max_batches={max_batches}\nsaturation=1.5\nexposure=1.5\nhue=.1\n")
    for f in filters:
        text += (f"\n[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\npad=1\nactivation=leaky\n"
                 "\n[maxpool]\nsize=2\nstride=2\n")
    text += f"\n[convolutional]\nfilters={3 * (classes + 5)}\nsize=1\nactivation=linear\n"
    text += (f"\n[region]\nanchors=1,1, 1.5,1.5, 2.5,2.5\nclasses={classes}\ncoords=4\nnum=3\nsoftmax=1\n"
             f"jitter=.2\nrescore=1\nobject_scale=5\nnoobject_scale=1\nclass_scale=1\ncoord_scale=1\n"
             f"thresh=.6\nrandom={random}\n")
    return text


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


def assert_detections_match(net, case, tol: float) -> None:
    """Forward the fixture's input and compare net.detections with Darknet's labelled list:
    same count and classes; boxes within tol * max(1, |v|), probabilities and objectness within tol."""
    import json
    ref = json.loads((case.files_dir / "detections.json").read_text())
    net.forward(case.array("input"))
    w, h = ref["image_w"], ref["image_h"]
    ours = net.detections(w, h, thresh=ref["thresh"], hier_thresh=ref["hier_thresh"], nms=ref["nms"])
    labelled = [d for d in ref["detections"] if d["labels"]]
    assert len(ours) == len(labelled) == ref["num_with_any_label"]
    for d in labelled:
        probs = np.array(d["prob"])
        cls = int(np.argmax(probs))
        box = np.array(d["bbox_xywh"]) * [w, h, w, h]
        match = min(ours, key=lambda o: np.abs(np.array(o.box) - box).max())
        assert np.abs(np.array(match.box) - box).max() <= tol * max(1.0, np.abs(box).max()), (match.box, box)
        assert match.class_id == cls
        assert match.prob == pytest.approx(probs[cls], abs=tol)
        assert match.objectness == pytest.approx(d["objectness"], abs=tol)
        np.testing.assert_allclose(match.probs, probs, atol=tol)
