"""Darknet dataset conventions, label validation (file:line), the threaded loader
and the synthetic generator."""
import time
from pathlib import Path

import numpy as np
import pytest

from darknet_py import DarknetError
from darknet_py.data.dataset import label_path, read_data_cfg, read_labels, read_list, validate_dataset
from darknet_py.data.loader import DetectionLoader
from darknet_py.data.synthetic import SYNTHETIC_CLASSES, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("syn"), n_train=12, n_valid=4, size=(64, 48), seed=2)


@pytest.mark.parametrize("image,label", [
    ("/d/VOC2007/JPEGImages/000001.jpg", "/d/VOC2007/labels/000001.txt"),
    ("/d/coco/images/train2014/x.png", "/d/coco/labels/train2014/x.txt"),
    ("data/raw/a.JPEG", "data/labels/a.txt"),
    ("rel/images/b.bmp", "rel/labels/b.txt"),
])
def test_label_path_substitution(image, label):
    assert label_path(image) == label


def test_data_file_and_lists(synth):
    cfg = read_data_cfg(synth)
    assert cfg["classes"] == len(SYNTHETIC_CLASSES)
    train = read_list(cfg["train"])
    assert len(train) == 12 and all(Path(p).exists() for p in train)
    rows = read_labels(label_path(train[0]), classes=cfg["classes"])
    assert rows.shape[1] == 5 and len(rows) >= 1
    assert ((rows[:, 1:] > 0) & (rows[:, 1:] <= 1)).all()
    report = validate_dataset(train, cfg["classes"])
    assert report is not None


def test_data_file_errors(tmp_path):
    p = tmp_path / "x.data"
    p.write_text("classes = 3\ntrain = t.txt\nbogus line\n")
    with pytest.raises(DarknetError, match=r"x\.data:3: expected 'key = value'"):
        read_data_cfg(p)
    p.write_text("classes = zero\n")
    with pytest.raises(DarknetError, match=r"x\.data:1: classes must be a positive integer"):
        read_data_cfg(p)
    with pytest.raises(DarknetError, match="not found|cannot"):
        read_list(tmp_path / "missing.txt")


def test_validate_reports_every_problem(tmp_path):
    images = tmp_path / "images"
    labels = tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    from PIL import Image
    paths = []
    for i in range(5):
        p = images / f"{i}.jpg"
        Image.new("RGB", (16, 16)).save(p)
        paths.append(str(p))
    (labels / "0.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (labels / "1.txt").write_text("0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n")   # class >= classes
    (labels / "2.txt").write_text("1 0.5 1.5 0.1 0.1\n")                       # outside [0,1]
    (labels / "3.txt").write_text("1 0.5 0.5 0.1\n")                           # malformed
    Path(paths[4]).write_bytes(b"garbage")                                      # unreadable image, no label
    with pytest.raises(DarknetError) as e:
        validate_dataset(paths, classes=3)
    msg = str(e.value)
    assert f"{labels / '1.txt'}:2" in msg and "class 3" in msg
    assert f"{labels / '2.txt'}:1" in msg and "y=1.5" in msg
    assert f"{labels / '3.txt'}:1" in msg
    assert "4.jpg" in msg and "4.txt" in msg


def test_loader_is_deterministic_and_resizable(synth):
    paths = read_list(read_data_cfg(synth)["train"])
    kw = dict(jitter=.2, hue=.1, saturation=1.5, exposure=1.5, max_boxes=10, seed=11)
    with DetectionLoader(paths, 64, 64, 4, workers=1, **kw) as a, DetectionLoader(paths, 64, 64, 4, workers=2, **kw) as b:
        for _ in range(3):
            xa, ta = a.next_batch()
            xb, tb = b.next_batch()
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ta, tb)
        assert xa.shape == (4, 3, 64, 64) and ta.shape == (4, 50)
        a.set_size(96, 96)
        x, t = a.next_batch()
        assert x.shape == (4, 3, 96, 96)
    # Resuming at batch k gives batch k of a fresh run.
    with DetectionLoader(paths, 64, 64, 4, start_batch=2, **kw) as c, DetectionLoader(paths, 64, 64, 4, **kw) as d:
        for _ in range(2):
            d.next_batch()
        np.testing.assert_array_equal(c.next_batch()[0], d.next_batch()[0])


def test_loader_error_names_file(synth, tmp_path):
    paths = read_list(read_data_cfg(synth)["train"])[:2]
    bad = tmp_path / "images" / "bad.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"broken")
    with DetectionLoader([str(bad)] + paths, 32, 32, 3, seed=0) as loader:
        with pytest.raises(DarknetError, match="bad"):
            for _ in range(5):
                loader.next_batch()


def test_loader_throughput_keeps_up(synth):
    """Images/s of the loader alone (printed; not a timed assertion beyond 'it runs')."""
    paths = read_list(read_data_cfg(synth)["train"])
    with DetectionLoader(paths, 416, 416, 8, seed=0, workers=2) as loader:
        loader.next_batch()
        t = time.perf_counter()
        for _ in range(3):
            loader.next_batch()
        rate = 24 / (time.perf_counter() - t)
    print(f"loader: {rate:.0f} images/s at 416x416 on 2 threads")
    assert rate > 0
