"""The one training loop (darknet_py.training): both trainers go through it, its two phases
equal the core's train_step, multi-scale resumes mid-block at the straight run's size, and a
checkpoint is written and verified as one unit (weights + momentum + seen)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py import DarknetError
from darknet_py.train import MultiScale, multiscale_sizes, pick_size, train
from darknet_py.training import (CHECKPOINT_STATE_SUFFIX, TrainingStep, prepare_backup_dir, prepare_training,
                                 remove_stale_temp_files, run_training, save_checkpoint)
from conftest import momentum_buffers, small_yolo_cfg

PACKAGE = Path(darknet_py.__file__).resolve().parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from darknet_py.data.synthetic import generate
    root = tmp_path_factory.mktemp("synthetic")
    return generate(root, n_train=32, n_valid=8, size=(96, 96), seed=3)


class CountingStep(TrainingStep):
    def __init__(self):
        self.accumulated = 0
        self.updates = 0

    def accumulate(self, net, x, truth):
        self.accumulated += 1
        return super().accumulate(net, x, truth)

    def update(self, net):
        self.updates += 1
        super().update(net)


# ---------------------------------------------------------------- the facade and the phases

def test_nothing_outside_network_py_reaches_into_the_core_network():
    reach = re.compile(r"\._net\b")
    offenders = [f"{p.relative_to(PACKAGE)}:{i}" for p in sorted(PACKAGE.rglob("*.py")) if p.name != "network.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if reach.search(line)]
    assert not offenders


def test_accumulate_then_update_equals_train_step(tmp_path):
    """The loop's two phases are the core's train_step split in two: same weights, bit for bit."""
    cfg = tmp_path / "t.cfg"
    cfg.write_text(small_yolo_cfg(batch=8, subdivisions=2))
    rng = np.random.default_rng(0)
    x = rng.random((8, 3, 64, 64), dtype=np.float32)
    truth = np.zeros((8, 30 * 5), np.float32)
    truth[:, :5] = [.5, .5, .3, .4, 2]
    fused, phased = darknet_py.load(cfg, batch=0, seed=1), darknet_py.load(cfg, batch=0, seed=1)
    for net in (fused, phased):
        net.training = True
    fused_loss = [fused.train_step(x[:4], truth[:4]), fused.train_step(x[4:], truth[4:])]
    phased_loss = [phased.accumulate(x[:4], truth[:4]), phased.accumulate(x[4:], truth[4:])]
    untouched = phased.layers[0].params["weights"].copy()
    np.testing.assert_array_equal(untouched, darknet_py.load(cfg, batch=0, seed=1).layers[0].params["weights"])
    phased.update()
    assert fused_loss == phased_loss and fused.seen == phased.seen == 8 and phased.current_batch == 1
    for a, b in zip(fused.layers, phased.layers):
        for name, value in a.params.items():
            np.testing.assert_array_equal(value, b.params[name], err_msg=f"layer {a.index} {name}")


def test_network_facade_training_state(tmp_path):
    cfg = tmp_path / "t.cfg"
    cfg.write_text(small_yolo_cfg(batch=8, subdivisions=2, lr=0.01, random=1, max_batches=77))
    net = darknet_py.Network.from_cfg(str(cfg), batch=0)
    assert not net.training and net.subdivisions == 2 and net.max_batches == 77
    net.training = True
    assert net.training and net.current_batch == 0
    assert net.base_learning_rate == pytest.approx(0.01) and net.learning_rate == pytest.approx(0.01)
    net.base_learning_rate, net.max_batches = 0.5, 9
    assert net.base_learning_rate == 0.5 and net.max_batches == 9
    net.seen = 16
    assert net.batch == 4 and net.current_batch == 2  # Darknet's batch: the cfg's batch / subdivisions
    region = net.region
    assert region["classes"] == 5 and region["random"] == 1 and region["jitter"] == pytest.approx(.2)
    assert net.softmax_tree is None
    with pytest.raises(DarknetError, match="max_batches"):
        net.max_batches = 0


# ---------------------------------------------------------------- one loop for both trainers

def test_detector_and_classifier_train_through_the_one_loop(dataset, tmp_path):
    from test_classifier_training import CFG as CLASSIFIER_CFG
    from darknet_py.classifier import train_classifier
    from darknet_py.data.synthetic_classes import generate_classes
    cfg = tmp_path / "d.cfg"
    cfg.write_text(small_yolo_cfg(batch=8, subdivisions=2))
    detector_step = CountingStep()
    det = train(dataset, cfg, max_batches=3, backup=tmp_path / "d", progress=False, step=detector_step)
    assert (detector_step.accumulated, detector_step.updates) == (6, 3) and det.iterations == 3
    shapes = generate_classes(tmp_path / "shapes", n_train=16, n_valid=4, seed=0)
    classifier_step = CountingStep()
    cls = train_classifier(shapes, str(CLASSIFIER_CFG), max_batches=2, backup=str(tmp_path / "c"), progress=False,
                           evaluate=False, step=classifier_step)
    subdivisions = darknet_py.Network.from_cfg(str(CLASSIFIER_CFG)).subdivisions
    assert (classifier_step.accumulated, classifier_step.updates) == (2 * subdivisions, 2) and cls.iterations == 2


# ---------------------------------------------------------------- multi-scale resume

def test_multiscale_size_is_the_blocks():
    hook = MultiScale([96, 128, 160], seed=3, limit=1000)
    for it in (0, 7, 23, 399, 805):
        assert hook.size_at(it) == pick_size(3, it - it % 10, [96, 128, 160])
    assert hook.size_at(799) == hook.size_at(790)
    assert all(hook.size_at(it) == 160 for it in range(810, 1000))  # the last 200 (Darknet): the largest


def test_resume_mid_multiscale_block_trains_at_the_straight_runs_size(dataset, tmp_path):
    """Stop at 6 (inside the block 0..9), resume to 10: the resumed run must train 6..9 at the
    size the straight run drew for that block, not at the cfg's size (issue 15)."""
    sizes = multiscale_sizes(96)
    assert sizes == [96, 128]
    seed = next(s for s in range(100) if pick_size(s, 0, sizes) == 128)  # a block drawn away from the cfg's 96
    cfg = tmp_path / "ms.cfg"
    cfg.write_text(small_yolo_cfg(size=96, batch=8, subdivisions=2, random=1))
    straight = train(dataset, cfg, max_batches=10, seed=seed, backup=tmp_path / "a", progress=False, workers=1)
    first = train(dataset, cfg, max_batches=6, seed=seed, backup=tmp_path / "b", progress=False, workers=1,
                  checkpoint_every=0)
    resumed = train(dataset, cfg, first.last_weights, max_batches=10, seed=seed, backup=tmp_path / "b",
                    progress=False, workers=1)
    assert straight.sizes == [128] and resumed.sizes == [128]
    np.testing.assert_array_equal(resumed.losses, straight.losses[6:])
    assert Path(resumed.final_weights).read_bytes() == Path(straight.final_weights).read_bytes()


# ---------------------------------------------------------------- checkpoints as one unit

def _trained_net(tmp_path, seed=0):
    cfg = tmp_path / "c.cfg"
    cfg.write_text(small_yolo_cfg(batch=4, subdivisions=1))
    net = darknet_py.Network.from_cfg(str(cfg), batch=0)
    prepare_training(net, None, seed, clear=False)
    rng = np.random.default_rng(seed)
    truth = np.zeros((4, 150), np.float32)
    truth[:, :5] = [.5, .5, .3, .4, 1]
    net.train_step(rng.random((4, 3, 64, 64), dtype=np.float32), truth)
    return cfg, net


def test_checkpoint_round_trip_restores_momentum(tmp_path):
    cfg, net = _trained_net(tmp_path)
    path = save_checkpoint(net, str(tmp_path / "w.weights"))
    assert sorted(os.listdir(tmp_path)) == ["c.cfg", "w.weights", "w.weights" + CHECKPOINT_STATE_SUFFIX]
    with np.load(path + CHECKPOINT_STATE_SUFFIX) as state:
        assert int(state["seen"]) == 4 and len(str(state["weights_sha256"])) == 64
    resumed = darknet_py.Network.from_cfg(str(cfg), batch=0)
    prepare_training(resumed, path, 9, clear=False)
    saved = momentum_buffers(net)
    assert any(np.any(v) for v in saved.values())
    for k, v in momentum_buffers(resumed).items():
        np.testing.assert_array_equal(v, saved[k])


def test_state_from_another_iteration_is_refused(tmp_path):
    """A crash between the state's rename and the weights' leaves a new state beside old weights:
    resume warns and starts momentum from zero instead of mixing the two iterations."""
    cfg, net = _trained_net(tmp_path)
    path = save_checkpoint(net, str(tmp_path / "w.weights"))
    later = str(tmp_path / "later.weights")
    net.train_step(np.zeros((4, 3, 64, 64), np.float32), np.zeros((4, 150), np.float32))
    save_checkpoint(net, later)
    os.replace(later + CHECKPOINT_STATE_SUFFIX, path + CHECKPOINT_STATE_SUFFIX)
    resumed = darknet_py.Network.from_cfg(str(cfg), batch=0)
    with pytest.warns(UserWarning, match="belongs to other weights"):
        prepare_training(resumed, path, 0, clear=False)
    assert resumed.seen == 4 and not any(np.any(v) for v in momentum_buffers(resumed).values())


def test_stale_temp_files_removed_live_ones_kept(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"x_last.weights.tmp.{gone.pid}"
    ours = tmp_path / f"x_last.weights.tmp.{os.getpid()}"
    unrelated = tmp_path / "notes.tmp.txt"
    for p in (stale, ours, unrelated):
        p.write_bytes(b"partial")
    assert remove_stale_temp_files(tmp_path) == [str(stale)]
    assert not stale.exists() and ours.exists() and unrelated.exists()


def test_backup_dir_checked_before_training(dataset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = tmp_path / "t.cfg"
    cfg.write_text(small_yolo_cfg(batch=8, subdivisions=2))
    calls = []
    with pytest.raises(DarknetError, match="checkpoint directory is not writable"):
        train(dataset, cfg, max_batches=2, backup=blocker / "backup", progress=False,
              on_iteration=lambda *a: calls.append(a))
    assert not calls


def test_data_error_mid_run_saves_last_before_raising(dataset, tmp_path):
    from darknet_py.data.dataset import read_data_cfg, read_list
    from darknet_py.data.loader import DetectionLoader
    cfg = tmp_path / "t.cfg"
    cfg.write_text(small_yolo_cfg(batch=8, subdivisions=2))
    net = darknet_py.Network.from_cfg(str(cfg), batch=0)
    prepare_training(net, None, 0, clear=False)
    paths = read_list(read_data_cfg(dataset).resolve("train"))

    class FailsAtThird(DetectionLoader):
        def next_batch(self):
            if self.batch_index == 2:
                raise DarknetError("broken.jpg: cannot decode")
            return super().next_batch()

    loader = FailsAtThird(paths, 64, 64, 8, workers=1)
    backup = prepare_backup_dir(tmp_path / "b")
    with pytest.raises(DarknetError, match="broken.jpg") as err:
        run_training(net, loader, 10, backup, "t", progress=False)
    last = backup / "t_last.weights"
    assert any("t_last.weights holds its weights" in note for note in getattr(err.value, "__notes__", [str(last)]))
    assert darknet_py.load(cfg, last).seen == 2 * 8
    assert not [p for p in os.listdir(backup) if ".tmp." in p]
