"""kill -9 during training, at random points (checkpoint writes included): the checkpoint
left behind always loads, always has its own momentum state, and resumes bit-exactly."""
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

import darknet_py
from darknet_py.data.synthetic import generate
from darknet_py.train import train
from darknet_py.training import prepare_training

from _isolated import PACKAGE_ROOT, child_environment
from conftest import momentum_buffers, parameters, small_yolo_cfg

TRIALS = 20
CHILD = """
import sys
from darknet_py.train import train
train(sys.argv[1], sys.argv[2], max_batches=100000, seed=5, backup=sys.argv[3], progress=False,
      checkpoint_every=1, multiscale=False, workers=1)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    data = generate(root / "data", n_train=16, n_valid=2, size=(64, 64), seed=1)
    cfg = root / "tiny.cfg"
    cfg.write_text(small_yolo_cfg(size=64, batch=4, filters=(4, 8, 8, 8)))
    return data, cfg


def _kill_during_training(data, cfg, backup, rng):
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(data), str(cfg), str(backup)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(PACKAGE_ROOT),
                             env=child_environment())
    last = backup / "tiny_last.weights"
    deadline = time.monotonic() + 120
    while not last.exists():
        assert child.poll() is None, child.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    time.sleep(rng.uniform(0, 1.0))  # every iteration writes a checkpoint: kills land inside writes too
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stderr.close()
    return last


def test_kill_minus_9_always_leaves_a_consistent_checkpoint_that_resumes_exactly(setup, tmp_path):
    data, cfg = setup
    rng = random.Random(1234)
    resumed_exactly = 0
    for trial in range(TRIALS):
        backup = tmp_path / f"trial{trial}"
        last = _kill_during_training(data, cfg, backup, rng)
        net = darknet_py.Network.from_cfg(str(cfg), batch=0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a state from another iteration would warn here
            prepare_training(net, str(last), 0, clear=False)
        killed_at = net.current_batch
        assert killed_at >= 1, trial
        if trial % 7 == 0:  # resume two iterations and hold them against a straight run
            target = killed_at + 2
            res = train(str(data), str(cfg), str(last), max_batches=target, seed=5, backup=str(backup),
                        progress=False, checkpoint_every=1, multiscale=False, workers=1)
            straight = train(str(data), str(cfg), max_batches=target, seed=5, backup=str(tmp_path / f"s{trial}"),
                             progress=False, checkpoint_every=1, multiscale=False, workers=1)
            a = darknet_py.Network.from_cfg(str(cfg), batch=0)
            b = darknet_py.Network.from_cfg(str(cfg), batch=0)
            prepare_training(a, res.last_weights, 0, clear=False)
            prepare_training(b, straight.last_weights, 0, clear=False)
            assert a.seen == b.seen
            for state_of in (parameters, momentum_buffers):
                resumed, straight_run = state_of(a), state_of(b)
                assert resumed.keys() == straight_run.keys()
                for k, v in straight_run.items():
                    np.testing.assert_array_equal(resumed[k], v, err_msg=f"trial {trial}: {k}")
            resumed_exactly += 1
        leftovers = [p.name for p in backup.iterdir() if ".tmp." in p.name]
        # temp files of the killed writer may stay until the next run in this directory removes them
        assert all(name.startswith("tiny_") for name in leftovers), leftovers
    assert resumed_exactly == 3
