"""Run a snippet in a child Python so a crash (SIGSEGV, SIGFPE, abort) or a hang fails one
test instead of killing pytest. The child imports the darknet_py this pytest imported (the
installed package in CI, the checkout after an in-place build)."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import darknet_py

REPO = Path(__file__).resolve().parents[1]
# The directory holding the darknet_py package under test. Children run there, with it on
# PYTHONPATH: run from the checkout's root, a child would import the checkout's darknet_py,
# which has no compiled core when the package was installed with pip (as in CI).
PACKAGE_ROOT = Path(darknet_py.__file__).resolve().parents[1]


def child_environment(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PACKAGE_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_isolated(code: str, timeout: float = 60, env=None) -> str:
    """Runs `code`; returns its stdout. Fails (AssertionError) on a signal, a non-zero exit
    or a timeout, quoting the child's stderr."""
    child_env = child_environment(**(env or {}))
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=child_env, cwd=str(PACKAGE_ROOT))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"child did not finish in {timeout} s (a hang)") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise AssertionError(f"child crashed with {name}\nstderr:\n{proc.stderr[-3000:]}")
    if proc.returncode != 0:
        raise AssertionError(f"child exited with {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}")
    return proc.stdout
