"""yolo9000.cfg at full scale (issue 11, step 4): the 9418-node WordTree region loads from
the reference cfg, detects on dog.jpg at 544 without NaN, names boxes by descending the
tree with hier_thresh, and trains a step (288, batch 2) with a COCO box through coco9k.map
and a classification-only label. Also the CPU tree softmax, which now runs one WordTree
group over a whole plane at a time, against the formula computed per cell."""
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py import _core
from darknet_py.data import CLASSIFICATION_ONLY_COORD
from conftest import require_reference

COCO_DOG = 16  # the COCO class index of "dog", a tree node through coco9k.map


@pytest.fixture(scope="module")
def reference_files():
    return {
        "cfg": require_reference("cfg", "yolo9000.cfg"),
        "names": require_reference("data", "9k.names"),
        "tree": require_reference("data", "9k.tree"),
        "map": require_reference("data", "coco9k.map"),
        "image": require_reference("data", "dog.jpg"),
    }


@pytest.fixture(scope="module")
def tree(reference_files):
    return _core.WordTree.read(str(reference_files["tree"]))


def assert_all_finite(net):
    for i, layer in enumerate(net.layers):
        assert np.isfinite(layer.output).all(), f"layer {i} ({layer.type}) output has NaN/inf"
        if layer.delta is not None:
            assert np.isfinite(layer.delta).all(), f"layer {i} ({layer.type}) delta has NaN/inf"
        for key, value in layer.params.items():
            assert np.isfinite(value).all(), f"layer {i} ({layer.type}) {key} has NaN/inf"


def load_yolo9000(reference_files, batch, tmp_path, monkeypatch):
    """From an unrelated working directory: tree=data/9k.tree and map=data/coco9k.map are
    found through the cfg's parent directory (the reference root)."""
    monkeypatch.chdir(tmp_path)
    names = Path(reference_files["names"]).read_text().splitlines()
    net = darknet_py.Network.from_cfg(str(reference_files["cfg"]), batch=batch, names=names)
    # He-normal, as the reference make_weights.py draws (uniform init shrinks the signal
    # over 23 convolutions to objectness 0.5 everywhere, which would test little).
    net.randomize(seed=9000, init="normal")
    return net


def test_paths_resolve_through_the_cfg_parents(reference_files, tmp_path, monkeypatch):
    net = load_yolo9000(reference_files, 1, tmp_path, monkeypatch)
    region = net.region
    assert region["classes"] == 9418 and region["num"] == 3
    assert Path(region["tree_path"]).resolve() == Path(reference_files["tree"]).resolve()
    assert Path(region["map_path"]).resolve() == Path(reference_files["map"]).resolve()
    assert region["tree"].n == 9418 and len(region["map"]) == 80


def test_detects_at_544_with_wordtree_names(reference_files, tree, tmp_path, monkeypatch):
    net = load_yolo9000(reference_files, 1, tmp_path, monkeypatch)
    assert (net.width, net.height) == (544, 544)
    image_w, image_h = 768, 576  # dog.jpg
    dets = net.detect(str(reference_files["image"]), thresh=.24, hier_thresh=.5, nms=.45)
    assert_all_finite(net)
    out = net.layers[net.output_index].output
    assert out.shape == (1, 3 * (4 + 1 + 9418), 17, 17)
    # Every group of every prediction is a distribution.
    classes = out.reshape(3, 4 + 1 + 9418, 17 * 17)[:, 5:, :]
    group_sums = np.add.reduceat(classes.astype(np.float64), np.asarray(tree.group_offset), axis=1)
    np.testing.assert_allclose(group_sums, 1.0, atol=1e-4)

    names = net.names
    assert dets, "random weights still give objectness ~0.5 > thresh: expected boxes"
    for d in dets:
        assert 0 <= d.class_id < 9418 and d.name == names[d.class_id]
        assert np.isfinite(d.box).all() and np.isfinite(d.probs).all() and .24 < d.prob <= 1

    # The same output decoded with other hier_thresh values: 0 descends to a leaf,
    # 1 never leaves the root group.
    leaves = net.detections(image_w, image_h, thresh=.24, hier_thresh=0, nms=.45)
    roots = net.detections(image_w, image_h, thresh=.24, hier_thresh=1, nms=.45)
    assert leaves and roots
    assert all(tree.leaf[d.class_id] for d in leaves)
    assert all(tree.group[d.class_id] == 0 for d in roots)
    # Darknet's map= decoding: class j is the absolute probability of coco9k.map's node j.
    mapped = net.detections(image_w, image_h, thresh=.01, hier_thresh=.5, nms=.45, class_map=net.region["map"])
    assert mapped
    for d in mapped:
        assert d.class_id < 80 and np.isfinite(d.probs).all() and not d.probs[80:].any()


def test_training_step_at_288_without_nan(reference_files, tmp_path, monkeypatch):
    net = load_yolo9000(reference_files, 2, tmp_path, monkeypatch)
    net.resize(288, 288)
    net.training = True
    # Past burn_in=1000 batches: at seen=0 the learning rate is 0 and the step would change nothing.
    net.seen = 2000 * net.batch
    assert net.learning_rate > 0
    region = net.region
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 288, 288), dtype=np.float32)
    truth = np.zeros((2, region["max_boxes"] * 5), np.float32)
    truth[0, :10] = [.5, .5, .3, .4, COCO_DOG, .3, .6, .2, .2, 0]  # COCO boxes, through map=
    truth[1, :5] = [CLASSIFICATION_ONLY_COORD, CLASSIFICATION_ONLY_COORD, 1, 1, region["map"][COCO_DOG]]
    before = net.layers[23].params["weights"].copy()

    loss = net.train_step(x, truth)
    assert np.isfinite(loss) and loss > 0
    stats = net.region["stats"]
    assert stats["count"] == 2 and stats["class_count"] == 3  # 2 boxes + 1 classification-only label
    assert_all_finite(net)
    assert not np.array_equal(net.layers[23].params["weights"], before), "the step updated nothing"
    assert np.isfinite(net.train_step(x, truth))


@pytest.mark.parametrize("w, h, batch", [(9, 7, 2), (17, 17, 1), (5, 3, 1)])
def test_tree_softmax_matches_the_per_cell_formula(tree, reference_files, w, h, batch):
    """The [region] tree softmax per group at every cell: exp(x - max) / sum in float32, as
    kernels/region_formulas.hpp region_softmax (rtol covers numpy's exp vs expf)."""
    net = region_only_net(reference_files, w, h, batch)
    x = np.random.default_rng(w * h).normal(0, 4, (batch, 3 * (5 + 9418), h, w)).astype(np.float32)
    out = net.forward(x)
    planes = x.reshape(batch, 3, 5 + 9418, h * w)
    got = out.reshape(batch, 3, 5 + 9418, h * w)
    np.testing.assert_allclose(got[:, :, :2], 1 / (1 + np.exp(-planes[:, :, :2].astype(np.float64))), rtol=1e-5)
    np.testing.assert_array_equal(got[:, :, 2:4], planes[:, :, 2:4])
    for offset, size in zip(tree.group_offset, tree.group_size):
        group = planes[:, :, 5 + offset:5 + offset + size].astype(np.float64)
        e = np.exp(group - group.max(axis=2, keepdims=True))
        np.testing.assert_allclose(got[:, :, 5 + offset:5 + offset + size], e / e.sum(axis=2, keepdims=True),
                                   rtol=2e-5, atol=1e-7, err_msg=f"group at {offset} ({size} nodes), {w}x{h}")


def region_only_net(reference_files, w, h, batch):
    cfg = Path(reference_files["cfg"]).read_text()
    region = cfg[cfg.index("[region]"):].replace("tree=data/9k.tree", f"tree={reference_files['tree']}")
    region = region.replace("map = data/coco9k.map", f"map = {reference_files['map']}")
    return darknet_py.Network.from_text(f"[net]\nwidth={w}\nheight={h}\nchannels={3 * (5 + 9418)}\n{region}",
                                        "region_only.cfg", batch=batch)


def test_profile_times_the_loss_on_given_truth(reference_files):
    """profile_network(truth=...) trains the timed passes on those boxes (the default is
    no boxes, which times only the region layer's no-object loss)."""
    from darknet_py import DarknetError
    from darknet_py.profile import profile_network
    net = region_only_net(reference_files, 3, 3, 2)
    truth = np.zeros((2, net.region["truths"]), np.float32)
    truth[0, :10] = [.5, .5, .3, .4, COCO_DOG, .2, .7, .2, .2, 0]
    truth[1, :5] = [CLASSIFICATION_ONLY_COORD, CLASSIFICATION_ONLY_COORD, 1, 1, net.region["map"][COCO_DOG]]
    prof = profile_network(net, runs=1, warmup=0, backward=True, truth=truth)
    assert prof.layers[0].backward_ms is not None
    stats = net.region["stats"]
    assert (stats["count"], stats["class_count"]) == (2, 3)
    profile_network(net, runs=1, warmup=0, backward=True)
    assert net.region["stats"]["count"] == 0
    with pytest.raises(DarknetError, match="truth must be"):
        profile_network(net, runs=1, warmup=0, backward=True, truth=truth[:, :10])
    with pytest.raises(DarknetError, match="only with backward"):
        profile_network(net, runs=1, warmup=0, truth=truth)
