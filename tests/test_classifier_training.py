"""Classifier side: Darknet's classification data conventions (label in path,
hierarchical truth), the C++ classifier augmentation, the threaded loader,
Darknet-19-style training on synthetic shapes, the high-resolution fine-tune
step of YOLOv2, and the classifier-* commands."""
import os
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py import _core
from darknet_py.classifier import evaluate_classifier, fine_tune_highres, train_classifier
from darknet_py.cli import main
from darknet_py.data.classification import (ClassificationLoader, check_classification_dataset, class_truth,
                                            hierarchy_predictions, label_of, read_classification_data,
                                            read_image_list)
from darknet_py.data.synthetic_classes import SYNTHETIC_CLASSES, generate_classes
from conftest import require_reference

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "cfg" / "demo-classifier.cfg"
LABELS = list(SYNTHETIC_CLASSES)  # circle square triangle cross star


# ---------------------------------------------------------------- label-from-path rule

def test_label_of_path():
    assert label_of("images/train/star/000012.png", LABELS) == 4
    assert label_of("/data/x/circle_01.jpg", LABELS) == 0


def test_label_of_ambiguous_names_candidates():
    with pytest.raises(darknet_py.DarknetError) as e:
        label_of("images/star/circle_1.png", LABELS)
    msg = str(e.value)
    assert "images/star/circle_1.png" in msg and "ambiguous" in msg
    assert "'star'" in msg and "'circle'" in msg and "'square'" not in msg


def test_label_of_missing():
    with pytest.raises(darknet_py.DarknetError) as e:
        label_of("images/hexagon/1.png", LABELS)
    assert "images/hexagon/1.png" in str(e.value) and "no label" in str(e.value)


def test_dataset_check_reports_all_images(tmp_path):
    paths = ["a/star/1.png", "a/hexagon/2.png", "a/cross/square.png", "a/circle/3.png"]
    for p in paths:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        from PIL import Image
        Image.new("RGB", (8, 8)).save(tmp_path / p)
    (tmp_path / "train.list").write_text("".join(p + "\n" for p in paths) + "a/triangle/missing.png\n")
    entries = read_image_list(tmp_path / "train.list")
    with pytest.raises(darknet_py.DarknetError) as e:
        check_classification_dataset(entries, LABELS)
    msg = str(e.value)
    assert "3 problem(s) in 5 image(s)" in msg
    assert "a/hexagon/2.png: no label" in msg
    assert "a/cross/square.png: ambiguous" in msg and "'square', 'cross'" in msg
    assert "missing.png: image file not found" in msg
    classes, problems = check_classification_dataset(entries[:1] + entries[3:4], LABELS)
    assert list(classes) == [4, 0] and not problems


def test_data_file_errors(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "train.list").write_text("")
    (tmp_path / "bad.data").write_text(f"classes = 3\ntrain = {tmp_path / 'train.list'}\n"
                                       f"labels = {tmp_path / 'labels.txt'}\n")
    with pytest.raises(darknet_py.DarknetError, match="classes=3 but .* lists 2 labels"):
        read_classification_data(tmp_path / "bad.data", splits=("train",))
    (tmp_path / "nolabels.data").write_text("classes = 2\n")
    with pytest.raises(darknet_py.DarknetError, match="no 'labels' entry"):
        read_classification_data(tmp_path / "nolabels.data")


# ---------------------------------------------------------------- hierarchical truth

@pytest.fixture(scope="module")
def tiny_tree():
    return _core.WordTree.read(str(require_reference("fixtures", "region_tree", "tiny.tree")))


def test_hierarchical_truth(tiny_tree):
    names = list(tiny_tree.names)
    assert names[:4] == ["animal", "vehicle", "plant", "dog"]
    m = -1234.0
    truth = class_truth([names.index("beagle"), names.index("cat")], tiny_tree.n, tiny_tree)
    # beagle: itself, dog, animal = 1; vehicle/plant subtrees masked; husky 0 (same group as beagle)
    #        animal vehicle plant dog cat bird car truck tree flower beagle husky
    expect0 = [1, 0, 0, 1, 0, 0, m, m, m, m, 1, 0]
    expect1 = [1, 0, 0, 0, 1, 0, m, m, m, m, m, m]  # cat: dog's children masked
    np.testing.assert_array_equal(truth[0], expect0)
    np.testing.assert_array_equal(truth[1], expect1)
    with pytest.raises(darknet_py.DarknetError, match="12 nodes"):
        _core.fill_hierarchy(np.zeros((1, 5), np.float32), tiny_tree)


def test_tree_softmax_masks_unlabelled_groups(tiny_tree, tmp_path):
    tree_path = require_reference("fixtures", "region_tree", "tiny.tree")
    net = darknet_py.Network.from_text(f"[net]\nbatch=2\nwidth=1\nheight=1\nchannels=12\n\n[softmax]\n"
                                       f"tree={tree_path}\n", batch=2)
    net.training = True
    x = np.random.default_rng(0).normal(size=(2, 12, 1, 1)).astype(np.float32)
    truth = class_truth([10, 4], 12, tiny_tree)
    out = net.forward(x, truth).reshape(2, 12)
    for g, (off, size) in enumerate(zip(tiny_tree.group_offset, tiny_tree.group_size)):
        np.testing.assert_allclose(out[:, off:off + size].sum(axis=1), 1, rtol=1e-5)
    delta = net.layers[0].delta.reshape(2, 12)
    masked = truth == -1234
    assert masked.any() and np.all(delta[masked] == 0)
    np.testing.assert_allclose(delta[~masked], (truth - out)[~masked], rtol=1e-6)
    labelled = truth == 1
    assert net.layers[0].cost == pytest.approx(float(-np.log(out[labelled]).sum()), rel=1e-5)


def test_hierarchy_predictions(tiny_tree):
    p = np.full(12, 0.5, np.float32)
    h = hierarchy_predictions(p, tiny_tree)
    names = list(tiny_tree.names)
    assert h[names.index("beagle")] == pytest.approx(0.125)  # .5 * dog .5 * animal .5
    assert h[names.index("cat")] == pytest.approx(0.25)
    assert h[names.index("dog")] == 0  # not a leaf


def test_hierarchy_predictions_is_the_cores(tiny_tree):
    """One implementation: the core's (detection decoding uses it too), over rows of any batch shape."""
    p = np.random.default_rng(1).uniform(size=(2, 3, 12)).astype(np.float32)
    h = hierarchy_predictions(p, tiny_tree, only_leaves=False)
    assert h.shape == p.shape and h.dtype == np.float32
    np.testing.assert_array_equal(h[1, 2], _core.hierarchy_predictions(p[1, 2], tiny_tree, False))
    with pytest.raises(darknet_py.DarknetError, match="11 values but .* has 12 nodes"):
        hierarchy_predictions(p[..., :11], tiny_tree)


# ---------------------------------------------------------------- augmentation (C++)

def _image(w=50, h=40, seed=0):
    return np.random.default_rng(seed).uniform(size=(3, h, w)).astype(np.float32)


def test_augment_classifier_seeded_and_in_range():
    im = _image()
    a, da = _core.augment_classifier(im, 32, 32, 32, 64, 10, 1.2, .1, 1.5, 1.5, True, False, 7, True)
    b = _core.augment_classifier(im, 32, 32, 32, 64, 10, 1.2, .1, 1.5, 1.5, True, False, 7)
    c = _core.augment_classifier(im, 32, 32, 32, 64, 10, 1.2, .1, 1.5, 1.5, True, False, 8)
    assert a.shape == (3, 32, 32) and np.array_equal(a, b) and not np.array_equal(a, c)
    assert 0 <= a.min() and a.max() <= 1
    assert 32 <= da["r"] <= 64 and 1 / 1.2 - 1e-6 <= da["aspect"] <= 1.2 + 1e-6
    assert abs(da["rad"]) <= 10 * np.pi / 180 + 1e-6 and abs(da["dhue"]) <= .1


def test_augment_identity_draws_reproduce_crop():
    # No aspect/angle/colour change, crop range = image size: a centred, unscaled window.
    im = _image(40, 40)
    out, d = _core.augment_classifier(im, 40, 40, 40, 40, 0, 1, 0, 1, 1, False, False, 3, True)
    assert d["scale"] == 1 and d["dx"] == 0 and d["dy"] == 0
    np.testing.assert_allclose(out, im, atol=1e-6)
    ref = _core.rotate_crop_image(im, 0.0, 1.0, 40, 40, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(ref, im, atol=1e-6)


def test_validation_crop_is_resize_min_then_centre():
    im = _image(60, 45)
    out = _core.classifier_valid_image(im, 30, 30)
    resized = _core.resize_min(im, 30)
    assert resized.shape == (3, 30, 40)
    np.testing.assert_array_equal(out, _core.crop_image(resized, 5, 0, 30, 30))
    np.testing.assert_array_equal(_core.resize_image(im, 40, 30), resized)
    centre = _core.center_crop_image(im, 30, 30)
    np.testing.assert_array_equal(centre, _core.resize_image(_core.crop_image(im, 7, 0, 45, 45), 30, 30))
    with pytest.raises(darknet_py.DarknetError):
        _core.augment_classifier(im[:1], 30, 30, 30, 60)


# ---------------------------------------------------------------- synthetic data and loader

@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return generate_classes(root, n_train=300, n_valid=100, size=(96, 96), seed=0)


def test_synthetic_layout(shapes):
    data = read_classification_data(shapes)
    assert data.classes == 5 and data.labels == LABELS and data.top == 2
    assert len(data.train) == 300 and len(data.valid) == 100
    assert list(np.bincount(data.train_classes)) == [60] * 5
    rel = read_image_list(Path(shapes).parent / "train.list")[12][0]
    assert rel == os.path.join("images", "train", "triangle", "000012.png")


def test_loader_deterministic(shapes):
    data = read_classification_data(shapes)
    kw = dict(min_crop=64, max_crop=80, aspect=1.15, angle=7, hue=.1, saturation=1.5, exposure=1.5, seed=3)
    with ClassificationLoader(data.train, data.train_classes, 64, 64, 6, 5, workers=1, **kw) as a, \
            ClassificationLoader(data.train, data.train_classes, 64, 64, 6, 5, workers=3, **kw) as b, \
            ClassificationLoader(data.train, data.train_classes, 64, 64, 6, 5, workers=2, start_batch=2, **kw) as c:
        batches_a = [a.next_batch() for _ in range(3)]
        batches_b = [b.next_batch() for _ in range(3)]
        x2, t2 = c.next_batch()
    for (xa, ta), (xb, tb) in zip(batches_a, batches_b):
        assert xa.shape == (6, 3, 64, 64) and ta.shape == (6, 5)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)
        assert np.all(ta.sum(axis=1) == 1)
    np.testing.assert_array_equal(x2, batches_a[2][0])
    assert not np.array_equal(batches_a[0][0], batches_a[1][0])
    # truth matches the image's class from its path
    index, _ = ClassificationLoader.pick(a, 0, 0)
    assert np.argmax(batches_a[0][1][0]) == data.train_classes[index]


def test_loader_set_size_and_validation_mode(shapes):
    data = read_classification_data(shapes)
    with ClassificationLoader(data.valid, data.valid_classes, 64, 64, 4, 5, train=False, workers=2) as v:
        x0, t0 = v.next_batch()
        v.set_size(96, 96)
        x1, t1 = v.next_batch()
        assert v.crop_range == (96, 192)
    assert x0.shape == (4, 3, 64, 64) and x1.shape == (4, 3, 96, 96)
    from darknet_py.image import load_image
    np.testing.assert_array_equal(x0[1], _core.classifier_valid_image(load_image(data.valid[1]), 64, 64))
    assert list(np.argmax(t1, axis=1)) == list(data.valid_classes[4:8])


# ---------------------------------------------------------------- training, fine-tuning, CLI

@pytest.fixture(scope="module")
def one_thread():
    # The test machine's cores are shared: one OpenMP thread avoids oversubscription stalls.
    before = _core.get_num_threads()
    _core.set_num_threads(1)
    yield
    _core.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory, one_thread):
    backup = tmp_path_factory.mktemp("backup")
    result, net = train_classifier(shapes, str(CFG), max_batches=100, seed=1, backup=str(backup), progress=False,
                                   return_net=True)
    return result, net, backup


def test_training_beats_chance(trained):
    result, net, backup = trained
    assert result.stopped == "max_batches" and result.iterations == 100
    assert np.isfinite(result.losses).all()
    assert np.mean(result.losses[-10:]) < np.mean(result.losses[:10])
    # 5 balanced classes: chance is 0.2
    assert result.top1 >= 0.4, result.top1
    assert result.top5 >= result.top1
    assert Path(result.final_weights).exists() and Path(result.chart).exists()
    assert Path(result.final_weights + ".state.npz").exists()
    assert net.width == 64


def test_evaluate_restores_network(trained, shapes):
    _, net, _ = trained
    acc = evaluate_classifier(net, shapes, size=96, limit=20)
    assert acc["size"] == 96 and acc["images"] == 20 and 0 <= acc["top1"] <= 1
    assert (net.width, net.height) == (64, 64) and net.layers[-1].delta is not None


def test_fine_tune_highres(trained, shapes, tmp_path):
    result, net, _ = trained
    before = darknet_py.load(str(CFG), result.final_weights).layers[0].params["weights"].copy()
    ft = fine_tune_highres(shapes, str(CFG), result.final_weights, scale=2.0, max_batches=4, seed=2,
                           backup=str(tmp_path), progress=False)
    assert (ft.low_size, ft.high_size) == (64, 128)
    assert ft.net.width == 128 and ft.train.size == 128 and ft.train.iterations == 4
    assert ft.top1_low == pytest.approx(result.top1)
    for v in (ft.top1_high_before, ft.top1_high_after, ft.top5_high_after):
        assert 0 <= v <= 1
    assert ft.net.base_learning_rate == pytest.approx(0.01)
    after = ft.net.layers[0].params["weights"]
    assert not np.allclose(before, after)
    assert Path(ft.train.final_weights).name == "demo-classifier_128_final.weights"


def test_cli_commands(trained, shapes, tmp_path, capsys):
    result, _, _ = trained
    weights = result.final_weights
    assert main(["classifier-valid", shapes, str(CFG), weights]) == 0
    out = capsys.readouterr().out
    assert "100 images at 64x64: top-1" in out and "top-2" in out
    assert main(["classifier-valid", shapes, str(CFG), weights, "--size", "96"]) == 0
    assert "at 96x96" in capsys.readouterr().out
    image = read_classification_data(shapes).valid[3]
    names = str(Path(shapes).parent / "shapes.names")
    assert main(["classifier-predict", str(CFG), weights, image, "--names", names, "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(image) and len(lines) == 4
    assert all(line.split(": ")[1] in LABELS for line in lines[1:])
    assert main(["classifier-train", shapes, str(CFG), "--max-batches", "2", "--backup", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "after 2 iterations" in out and (tmp_path / "demo-classifier_final.weights").exists()
    assert main(["classifier-finetune", shapes, str(CFG), weights, "--max-batches", "1", "--backup",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "top-1 at 64:" in out and "top-1 at 128 before fine-tuning:" in out and "after 1 batches" in out
    (tmp_path / "bad.data").write_text("classes = 5\n")
    assert main(["classifier-valid", str(tmp_path / "bad.data"), str(CFG), weights]) == 2
    assert "no 'labels' entry" in capsys.readouterr().err


def test_resume_from_last_checkpoint(shapes, tmp_path, one_thread):
    first = train_classifier(shapes, str(CFG), max_batches=3, seed=4, backup=str(tmp_path), progress=False,
                             evaluate=False)
    assert first.iterations == 3 and first.top1 is None
    resumed = train_classifier(shapes, str(CFG), first.last_weights, max_batches=5, seed=4, backup=str(tmp_path),
                               progress=False, evaluate=False)
    assert resumed.iterations == 5 and len(resumed.losses) == 2


TREE_CFG = """[net]
batch=8
subdivisions=1
width=32
height=32
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.05
policy=poly
power=4
max_batches=6
min_crop=32
max_crop=40

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=7
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1
tree={tree}

[cost]
type=masked
"""


def test_wordtree_classifier_path(shapes, tmp_path, capsys, one_thread):
    # A 7-node tree over the shapes: round {circle}, angular {square, triangle, cross, star}.
    nodes = [("round", -1), ("angular", -1), ("circle", 0), ("square", 1), ("triangle", 1), ("cross", 1),
             ("star", 1)]
    (tmp_path / "shapes.tree").write_text("".join(f"{n} {p}\n" for n, p in nodes))
    (tmp_path / "tree_labels.txt").write_text("".join(n + "\n" for n, _ in nodes))
    root = Path(shapes).parent
    (tmp_path / "tree.data").write_text(f"classes = 7\ntrain = {root / 'train.list'}\nvalid = {root / 'valid.list'}\n"
                                        f"labels = {tmp_path / 'tree_labels.txt'}\nbackup = {tmp_path}\n")
    cfg = tmp_path / "tree.cfg"
    cfg.write_text(TREE_CFG.format(tree=tmp_path / "shapes.tree"))
    data = read_classification_data(tmp_path / "tree.data")
    assert set(data.train_classes) == {2, 3, 4, 5, 6}  # leaves only: the rule never picks round/angular
    result = train_classifier(str(tmp_path / "tree.data"), str(cfg), progress=False)
    assert result.iterations == 6 and np.isfinite(result.losses).all()
    assert 0 <= result.top1 <= 1
    image = data.valid[0]
    assert main(["classifier-predict", str(cfg), result.final_weights, image, "--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all(line.split(": ")[1] in {"circle", "square", "triangle", "cross", "star"} for line in lines[1:])
