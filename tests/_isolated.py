"""Run a snippet in a child Python so a crash (SIGSEGV, SIGFPE, abort) or a hang fails one
test instead of killing pytest. The child imports darknet_py from this checkout."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_isolated(code: str, timeout: float = 60, env=None) -> str:
    """Runs `code`; returns its stdout. Fails (AssertionError) on a signal, a non-zero exit
    or a timeout, quoting the child's stderr."""
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = str(REPO) + os.pathsep + child_env.get("PYTHONPATH", "")
    if env:
        child_env.update(env)
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=child_env, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        raise AssertionError(f"child did not finish in {timeout} s (a hang)") from None
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise AssertionError(f"child crashed with {name}\nstderr:\n{proc.stderr[-3000:]}")
    if proc.returncode != 0:
        raise AssertionError(f"child exited with {proc.returncode}\nstderr:\n{proc.stderr[-3000:]}")
    return proc.stdout
