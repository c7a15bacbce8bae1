"""darknet_py.train end to end on a small synthetic dataset: the loss falls,
resume reproduces a straight run bit for bit, Ctrl-C saves _last, a NaN loss
stops cleanly, bad labels are reported before training, a killed writer never
replaces a good weights file."""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py import DarknetError
from darknet_py.train import train
from conftest import small_yolo_cfg



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from darknet_py.data.synthetic import generate
    root = tmp_path_factory.mktemp("synthetic")
    return generate(root, n_train=32, n_valid=8, size=(64, 64), seed=3)


def write_cfg(tmp_path, lr=0.001, random=0, name="tiny.cfg"):
    p = tmp_path / name
    p.write_text(small_yolo_cfg(batch=8, subdivisions=2, lr=lr, random=random))
    return p


def weights_bytes(path):
    return Path(path).read_bytes()


def test_loss_falls(dataset, tmp_path):
    cfg = write_cfg(tmp_path, lr=0.001)
    res = train(dataset, cfg, max_batches=30, seed=0, backup=tmp_path / "b", progress=False)
    assert res.stopped == "max_batches" and res.iterations == 30
    assert np.mean(res.losses[-5:]) < 0.8 * np.mean(res.losses[:5])
    assert Path(res.final_weights).exists() and Path(res.chart).exists()
    net = darknet_py.load(cfg, res.final_weights)
    assert net.seen == 30 * 8


def test_resume_equals_straight_run(dataset, tmp_path):
    """Train 6 then resume to 10 == train 10 (same seed), incl. multi-scale and momentum."""
    cfg = write_cfg(tmp_path, random=1)
    straight = train(dataset, cfg, max_batches=10, seed=5, backup=tmp_path / "a", progress=False)
    first = train(dataset, cfg, max_batches=6, seed=5, backup=tmp_path / "b", progress=False)
    resumed = train(dataset, cfg, first.final_weights, max_batches=10, seed=5, backup=tmp_path / "b",
                    progress=False)
    assert resumed.iterations == 10 and len(resumed.losses) == 4
    np.testing.assert_array_equal(resumed.losses, straight.losses[6:])
    assert weights_bytes(resumed.final_weights) == weights_bytes(straight.final_weights)
    assert len(set(straight.sizes)) >= 1 and all(s % 32 == 0 for s in straight.sizes)


def test_ctrl_c_saves_last(dataset, tmp_path):
    cfg = write_cfg(tmp_path)

    def interrupt(iteration, loss, avg):
        if iteration == 3:
            os.kill(os.getpid(), signal.SIGINT)

    res = train(dataset, cfg, max_batches=50, seed=0, backup=tmp_path / "b", progress=False, on_iteration=interrupt)
    assert res.stopped == "interrupted" and res.iterations == 3
    assert res.final_weights is None
    net = darknet_py.load(cfg, res.last_weights)
    assert net.seen == 3 * 8


def test_nan_loss_stops_and_keeps_last_good(dataset, tmp_path):
    cfg = write_cfg(tmp_path, lr=1e9)
    backup = tmp_path / "b"
    with pytest.raises(DarknetError, match="loss became (nan|inf)"):
        train(dataset, cfg, max_batches=40, seed=0, backup=backup, progress=False, checkpoint_every=1)
    last = backup / "tiny_last.weights"
    if last.exists():  # whatever was saved holds finite numbers
        net = darknet_py.load(cfg, last)
        assert all(np.isfinite(v).all() for l in net.layers for v in l.params.values())


def test_bad_labels_reported_before_training(tmp_path):
    from darknet_py.data.synthetic import generate
    data = generate(tmp_path / "d", n_train=4, n_valid=1, size=(64, 64), seed=1)
    from darknet_py.data.dataset import label_path, read_data_cfg, read_list
    imgs = read_list(read_data_cfg(data)["train"])
    Path(label_path(imgs[1])).write_text("0 0.5 0.5 0.2 0.2\n9 0.5 0.5 0.2 0.2\n")
    Path(label_path(imgs[2])).write_text("1 0.5 1.7 0.2 0.2\n")
    Path(label_path(imgs[3])).unlink()
    calls = []
    with pytest.raises(DarknetError) as err:
        train(data, write_cfg(tmp_path), max_batches=2, backup=tmp_path / "b", progress=False,
              on_iteration=lambda *a: calls.append(a))
    msg = str(err.value)
    assert f"{label_path(imgs[1])}:2" in msg and f"{label_path(imgs[2])}:1" in msg and "not found" in msg
    assert not calls


def test_killed_writer_never_replaces_good_file(tmp_path):
    """SIGKILL a process in the middle of repeated saves: the target is always complete."""
    cfg = write_cfg(tmp_path)
    target = tmp_path / "w.weights"
    net = darknet_py.load(cfg)
    net.save_weights(target)
    size = target.stat().st_size
    script = textwrap.dedent(f"""
        import darknet_py
        net = darknet_py.load({str(cfg)!r})
        i = 0
        while True:
            i += 1
            net.seen = i
            net.save_weights({str(target)!r})
    """)
    # Run outside the checkout so the installed package (with its extension) is imported.
    env = {**os.environ, "PYTHONPATH": str(Path(darknet_py.__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    seen_values = set()
    try:
        import time
        deadline = time.monotonic() + 60
        checks = 0
        while checks < 60 and time.monotonic() < deadline:
            assert proc.poll() is None, f"writer died: {proc.stderr.read().decode()}"
            data = target.read_bytes()
            assert len(data) == size
            seen_values.add(darknet_py.load(cfg, target).seen)  # always loads: never a partial file
            if len(seen_values) > 1:  # count checks only once the writer is replacing the file
                checks += 1
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(seen_values) > 1, "the writer never replaced the file while we watched"
    assert target.stat().st_size == size
    darknet_py.load(cfg, target)
