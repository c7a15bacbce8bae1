"""Shared helpers for the region/detection/tree tests: locating the Darknet
reference data and comparing arrays with the project's stated tolerance."""
import json
import os

import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Stated tolerance for float32 comparisons against Darknet: |a - ref| <= ATOL + RTOL*|ref|.
ATOL = 1e-5
RTOL = 1e-4


def reference_root():
    """The reference directory (env DARKNET_PY_REFERENCE, default ../shared/reference
    relative to the repository root); skips the test when it is missing unless
    DARKNET_PY_REQUIRE_REFERENCE=1, which turns the skip into a failure."""
    root = os.environ.get("DARKNET_PY_REFERENCE", os.path.join(REPO_ROOT, "..", "shared", "reference"))
    root = os.path.abspath(root)
    if not os.path.isfile(os.path.join(root, "README.md")):
        msg = f"Darknet reference data not found at {root} (set DARKNET_PY_REFERENCE)"
        if os.environ.get("DARKNET_PY_REQUIRE_REFERENCE") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return root


def case_dir(*parts):
    return os.path.join(reference_root(), *parts)


def load_manifest(directory):
    with open(os.path.join(directory, "manifest.json")) as f:
        return json.load(f)


def assert_close(actual, expected, what):
    """Elementwise |a - e| <= ATOL + RTOL*|e|; the message shows the worst element."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != reference {expected.shape}"
    err = np.abs(actual - expected)
    bound = ATOL + RTOL * np.abs(expected)
    bad = err > bound
    if bad.any():
        worst = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {err.size} elements outside atol={ATOL} + rtol={RTOL}*|ref|; "
            f"worst at {worst}: got {actual[worst]!r}, reference {expected[worst]!r} (max abs diff {err.max():.3g})"
        )
    return float(err.max()) if err.size else 0.0


def darknet_error():
    """darknet_py.DarknetError when the package exports it, else the core's class (the same object)."""
    import darknet_py
    from darknet_py import _core

    return getattr(darknet_py, "DarknetError", _core.DarknetError)
