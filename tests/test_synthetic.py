"""Synthetic dataset: Darknet on-disk format, valid labels, reproducible."""
import os

import numpy as np
import pytest

from darknet_py import DarknetError
from darknet_py.data import (SYNTHETIC_CLASSES, DetectionLoader, generate, read_data_cfg, read_labels, read_list,
                             read_names, validate_dataset, label_path)
from darknet_py.image import load_image


def test_generate_writes_darknet_layout(tmp_path):
    data = generate(tmp_path / "syn", n_train=12, n_valid=4, size=(96, 80), seed=1)
    cfg = read_data_cfg(data)
    assert cfg["classes"] == len(SYNTHETIC_CLASSES) == 5
    assert read_names(cfg.resolve("names")) == list(SYNTHETIC_CLASSES)
    assert os.path.isdir(cfg.resolve("backup"))
    train, valid = read_list(cfg.resolve("train")), read_list(cfg.resolve("valid"))
    assert len(train) == 12 and len(valid) == 4
    report = validate_dataset(train + valid, cfg["classes"], check_images="decode")
    assert report.ok and report.boxes >= 16
    assert (report.class_counts > 0).sum() >= 3
    image = load_image(train[0])
    assert image.shape == (3, 80, 96)
    labels = read_labels(label_path(train[0]), cfg["classes"])
    assert labels.shape[1] == 5 and 1 <= len(labels) <= 4
    assert (labels[:, 3:] > 0.02).all()  # objects are a visible size
    with DetectionLoader(train, 64, 64, batch=2, jitter=0.2, hue=0.1, saturation=1.5, exposure=1.5) as loader:
        x, truth = loader.next_batch()
    assert truth[:, 0].all()  # every image has at least one box


def test_generate_is_reproducible(tmp_path):
    a = generate(tmp_path / "a", n_train=3, n_valid=2, size=(64, 64), seed=4)
    b = generate(tmp_path / "b", n_train=5, n_valid=2, size=(64, 64), seed=4)
    c = generate(tmp_path / "c", n_train=3, n_valid=2, size=(64, 64), seed=5)
    for name in ["train_000002", "valid_000001"]:
        for kind, ext in (("images", ".jpg"), ("labels", ".txt")):
            same = (tmp_path / "a" / kind / f"{name}{ext}").read_bytes() == (tmp_path / "b" / kind / f"{name}{ext}").read_bytes()
            assert same, f"{kind}/{name}: n_train must not change other images"
    assert (tmp_path / "a" / "images" / "train_000000.jpg").read_bytes() != \
        (tmp_path / "c" / "images" / "train_000000.jpg").read_bytes()
    assert np.array_equal(load_image(str(tmp_path / "a" / "images" / "valid_000000.jpg")),
                          load_image(str(tmp_path / "b" / "images" / "valid_000000.jpg")))


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_train=0, n_valid=0), "need a positive number of images"),
    (dict(n_train=-1), "need a positive number of images"),
    (dict(size=(16, 64)), "at least 32x32"),
])
def test_generate_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(DarknetError, match=message):
        generate(tmp_path / "x", **kwargs)
