"""Bounded fuzzing in the test suite (tools/fuzz.py has the long campaign): for every file
format the product reads, hypothesis-generated inputs must end in success or DarknetError.
Each target runs in a child process so a crash or hang fails its test instead of pytest.
DARKNET_PY_FUZZ_EXAMPLES scales the number of inputs per target (default 60)."""
import json
import os
import signal
import subprocess
import sys

import pytest

from _isolated import PACKAGE_ROOT, REPO, child_environment

pytest.importorskip("hypothesis")

TARGETS = ["cfg", "weights", "labels", "list", "data", "names", "tree", "map", "image"]
EXAMPLES = int(os.environ.get("DARKNET_PY_FUZZ_EXAMPLES", "60"))


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_ends_in_success_or_darknet_error(target):
    env = child_environment(DARKNET_PY_MEMORY_LIMIT="256M")
    cmd = [sys.executable, str(REPO / "tools" / "fuzz.py"), "--target", target, "--examples", str(EXAMPLES),
           "--seed", "13"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=str(PACKAGE_ROOT))
    except subprocess.TimeoutExpired:
        pytest.fail(f"fuzz target {target}: no result in 240 s (a hang)")
    if proc.returncode < 0:
        pytest.fail(f"fuzz target {target}: crashed with {signal.Signals(-proc.returncode).name}\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, f"fuzz target {target}: property failed\n{proc.stderr[-5000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["inputs"] > 0 and counts["inputs"] == counts["ok"] + counts["refused"]
