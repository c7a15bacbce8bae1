"""The README's main command, short: synthetic data -> k-means anchors -> training
-> mAP -> detection picture. The full `darknet-py demo` (about 8 minutes) is marked
slow; this short version runs in CI and asserts the loss falls and mAP > 0."""
from pathlib import Path

import numpy as np
import pytest

from darknet_py.demo import run_demo


def test_demo_quick(tmp_path):
    result = run_demo(out=str(tmp_path / "demo"), quick=True, progress=False)
    losses = result["losses"]
    assert len(losses) >= 20
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    assert result["map"] > 0
    assert Path(result["detections_png"]).stat().st_size > 1000
    assert Path(result["chart"]).stat().st_size > 1000
    assert Path(result["weights"]).exists()


@pytest.mark.slow
def test_demo_full(tmp_path):
    result = run_demo(out=str(tmp_path / "demo"), progress=False)
    assert result["elapsed_s"] < 12 * 60
    assert result["map"] > 0.3
