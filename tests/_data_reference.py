"""Locating ../shared/reference for the data tests (env DARKNET_PY_REFERENCE;
DARKNET_PY_REQUIRE_REFERENCE=1 turns a missing reference into a failure)."""
import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def reference_dir() -> str:
    path = os.environ.get("DARKNET_PY_REFERENCE", os.path.join(REPO_ROOT, "..", "shared", "reference"))
    if os.path.isdir(path):
        return os.path.abspath(path)
    message = f"Darknet reference data not found at {path} (set DARKNET_PY_REFERENCE)"
    if os.environ.get("DARKNET_PY_REQUIRE_REFERENCE") == "1":
        pytest.fail(message)
    pytest.skip(message)
