"""The README's main command, short: synthetic data -> k-means anchors -> training
-> mAP -> detection picture. The full `darknet-py demo` (about 8 minutes) is marked
slow (run by the manual job `.ci/slow`, which records its output under measurements/);
this short version runs in CI and asserts the loss falls and mAP > 0."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from darknet_py.demo import evaluate_detector, run_demo
from darknet_py.network import Detection


def test_demo_quick(tmp_path):
    result = run_demo(out=str(tmp_path / "demo"), quick=True, progress=False)
    losses = result["losses"]
    assert len(losses) >= 20
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    assert result["map"] > 0
    assert Path(result["detections_png"]).stat().st_size > 1000
    assert Path(result["chart"]).stat().st_size > 1000
    assert Path(result["weights"]).exists()


def test_demo_scores_every_class_above_threshold(tmp_path):
    """The demo scores as `map` does: a box counts for every class above the threshold, not only
    its best one (Darknet's validate_detector), so a second-choice class that is right is found."""
    from PIL import Image
    img = tmp_path / "a.png"
    Image.new("RGB", (100, 80)).save(img)
    (tmp_path / "a.txt").write_text("1 0.5 0.5 0.4 0.5\n")

    class Net:
        def detect(self, path, thresh, hier_thresh, nms):
            probs = np.array([.6, .3, .001], np.float32)  # best class 0; the true class 1 second
            return [Detection(0, "0", .6, .9, (50.0, 40.0, 40.0, 40.0), probs)]

    res = evaluate_detector(Net(), [str(img)], ["a", "b", "c"], progress=False)
    assert res.ap[1] == pytest.approx(1.0) and res.map == pytest.approx(1.0)


# What the README claims for the full demo: all 360 iterations of cfg/demo.cfg within the
# 7-minute training budget on 2 cores, and 74.2% mAP@0.5 for the seeded run. The run is
# deterministic for a given ISA, so the bound leaves 4 points for another kernel dispatch
# (AVX2 vs AVX-512 rounding) rather than for chance.
DEMO_ITERATIONS = 360
DEMO_MIN_MAP = 0.70


@pytest.mark.slow
def test_demo_full(tmp_path):
    result = run_demo(out=str(tmp_path / "demo"), progress=False)
    record = os.environ.get("DARKNET_PY_MEASUREMENTS")
    if record:  # .ci/slow keeps what the README's demo figures rest on
        keep = {k: result[k] for k in ("map", "iterations", "elapsed_s", "images_per_second")}
        keep.update(first_loss=result["losses"][0], last10_loss=float(np.mean(result["losses"][-10:])))
        Path(record, "demo_full.json").write_text(json.dumps(keep, indent=1) + "\n")
    assert result["iterations"] == DEMO_ITERATIONS, (
        f"the demo ran {result['iterations']} of {DEMO_ITERATIONS} iterations in its 7-minute budget: "
        "this machine is slower (or more loaded) than the README's figures assume")
    assert result["elapsed_s"] < 9 * 60
    assert result["map"] >= DEMO_MIN_MAP
