"""Shared helpers for the region/detection/tree tests: locating the Darknet
reference data and comparing arrays with the project's stated tolerance."""
import json
import os

import numpy as np
import pytest

from conftest import assert_close as _assert_close, require_reference

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Stated tolerance for float32 comparisons against Darknet: |a - ref| <= ATOL + RTOL*|ref|.
ATOL = 1e-5
RTOL = 1e-4


def reference_root():
    """The reference directory as a string; skips (or fails under
    DARKNET_PY_REQUIRE_REFERENCE=1) when it is missing — conftest's rule."""
    return str(require_reference())


def case_dir(*parts):
    return os.path.join(reference_root(), *parts)


def load_manifest(directory):
    with open(os.path.join(directory, "manifest.json")) as f:
        return json.load(f)


def assert_close(actual, expected, what):
    """Elementwise |a - e| <= ATOL + RTOL*|e| (conftest's check); returns the max abs diff."""
    _assert_close(actual, expected, ATOL, RTOL, what)
    diff = np.abs(np.asarray(actual, np.float64) - np.asarray(expected, np.float64))
    return float(diff.max()) if diff.size else 0.0


def darknet_error():
    """darknet_py.DarknetError when the package exports it, else the core's class (the same object)."""
    import darknet_py
    from darknet_py import _core

    return getattr(darknet_py, "DarknetError", _core.DarknetError)
