"""Region detection decoding (get_network_boxes), letterbox correction, WordTree
descent and do_nms_sort against Darknet's full-network fixtures.

Tolerance: |ours - Darknet| <= 1e-5 + 1e-4*|Darknet| elementwise. Pre-NMS
arrays are compared elementwise (index = anchor*W*H + row*W + col). The
post-NMS array order depends on the C library's qsort, so post-NMS results are
compared as sets of detections matched by box.
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from _region_ref import ATOL, RTOL, assert_close, case_dir, darknet_error, load_manifest, reference_root

from darknet_py import _core, _testing

REGION_NETS = ["yolov2-voc_416", "yolov2-tiny-voc_416", "yolov2_416", "yolov2-voc_608"]


class FullNet:
    def __init__(self, name):
        self.root = reference_root()
        self.dir = case_dir("fixtures/full_nets", name)
        self.manifest = load_manifest(self.dir)
        self.cfg = os.path.join(self.root, self.manifest["cfg"])
        self.output = np.load(sorted(glob.glob(os.path.join(self.dir, "L*_output_full.npy")))[-1])
        self.input_shape = np.load(os.path.join(self.dir, "input.npy"), mmap_mode="r").shape
        self.image_w, self.image_h = self.manifest["values"]["image_wh"]
        v = self.manifest["values"]
        self.thresh, self.hier_thresh, self.nms = v["thresh"], v["hier_thresh"], v["nms"]
        _, c, h, w = self.output.shape
        # The region section as our parser reads it (num, classes, coords, anchors).
        self.info = _testing.run_region_layer(self.cfg, batch=1, w=w, h=h, c=c,
                                           input=np.zeros((1, c, h, w), np.float32))["info"]

    def ref(self, stem):
        return np.load(os.path.join(self.dir, stem + ".npy"))

    def decode(self, **kw):
        i = self.info
        args = dict(thresh=self.thresh, hier_thresh=self.hier_thresh)
        args.update(kw)
        return _core.region_detections(self.output[0], i["num"], i["classes"], i["coords"], i["anchors"],
                                       self.image_w, self.image_h, self.input_shape[3], self.input_shape[2], **args)


@pytest.fixture(scope="module", params=REGION_NETS)
def full_net(request):
    return FullNet(request.param)


def test_before_nms_matches_darknet_elementwise(full_net):
    boxes, objectness, probs = full_net.decode()
    assert len(boxes) == full_net.manifest["values"]["nboxes"]
    assert_close(boxes, full_net.ref("dets_bbox_before_nms"), f"{full_net.dir}: boxes before NMS")
    assert_close(objectness, full_net.ref("dets_objectness_before_nms"), f"{full_net.dir}: objectness before NMS")
    assert_close(probs, full_net.ref("dets_prob_before_nms"), f"{full_net.dir}: probs before NMS")


def match_by_box(boxes, query):
    """Index of the row of `boxes` closest to `query` (max abs difference)."""
    err = np.abs(boxes - np.asarray(query)[None, :]).max(axis=1)
    return int(np.argmin(err)), float(err.min())


def test_after_nms_matches_darknet_as_a_set(full_net):
    boxes, objectness, probs, index = _core.do_nms_sort(*full_net.decode(), full_net.nms)
    ref_boxes = full_net.ref("dets_bbox_after_nms")
    ref_obj = full_net.ref("dets_objectness_after_nms")
    ref_probs = full_net.ref("dets_prob_after_nms")
    assert sorted(index) == list(range(len(boxes)))
    # Entries with objectness 0 are at the end in both; their count agrees.
    live = objectness > 0
    assert live.sum() == (ref_obj > 0).sum() and not live[live.sum():].any()
    for k in range(len(ref_boxes)):
        i, err = match_by_box(boxes, ref_boxes[k])
        assert err <= ATOL + RTOL * np.abs(ref_boxes[k]).max(), f"Darknet entry {k}: no box within tolerance"
        assert_close(objectness[i], ref_obj[k], f"objectness of Darknet entry {k}")
        assert_close(probs[i], ref_probs[k], f"probs of Darknet entry {k}")


def test_labelled_detections_match_detections_json(full_net):
    boxes, objectness, probs, _ = _core.do_nms_sort(*full_net.decode(), full_net.nms)
    with open(os.path.join(full_net.dir, "detections.json")) as f:
        expected = json.load(f)
    with open(os.path.join(full_net.root, expected["names"])) as f:
        names = [line.strip() for line in f if line.strip()]
    listed = np.flatnonzero(objectness > 0)
    assert len(listed) == expected["num_listed"]
    labelled = 0
    used = set()
    for det in expected["detections"]:
        i, err = match_by_box(boxes[listed], det["bbox_xywh"])
        i = int(listed[i])
        assert i not in used
        used.add(i)
        assert err <= ATOL + RTOL * max(abs(v) for v in det["bbox_xywh"]), f"no box for {det}"
        assert_close(objectness[i], det["objectness"], "objectness")
        assert_close(probs[i], det["prob"], "prob vector")
        labels = {names[j]: float(probs[i, j]) for j in np.flatnonzero(probs[i] > 0)}
        assert labels.keys() == det["labels"].keys()
        for name, p in det["labels"].items():
            assert labels[name] == pytest.approx(p, rel=RTOL, abs=ATOL)
        labelled += bool(labels)
    assert labelled == expected["num_with_any_label"]


def raw_boxes(output, anchors, num, classes, coords):
    """Boxes relative to the network input straight from the output (numpy)."""
    _, c, h, w = output.shape
    o = output[0].reshape(num, coords + 1 + classes, h, w).astype(np.float64)
    cols = np.arange(w)[None, None, :]
    rows = np.arange(h)[None, :, None]
    a = np.asarray(anchors).reshape(num, 2)
    x = (cols + o[:, 0]) / w
    y = (rows + o[:, 1]) / h
    bw = np.exp(o[:, 2]) * a[:, 0, None, None] / w
    bh = np.exp(o[:, 3]) * a[:, 1, None, None] / h
    return np.stack([x, y, bw, bh], -1).reshape(-1, 4)


def test_plain_resize_keeps_network_relative_boxes_and_pixels_scale():
    net = FullNet("yolov2-voc_416")
    i = net.info
    boxes, _, _ = net.decode(letterbox=False)
    np.testing.assert_allclose(boxes, raw_boxes(net.output, i["anchors"], i["num"], i["classes"], i["coords"]),
                               rtol=1e-5, atol=1e-6)
    pixels, _, _ = net.decode(letterbox=False, relative=False)
    np.testing.assert_allclose(pixels, boxes * [net.image_w, net.image_h, net.image_w, net.image_h], rtol=1e-6)


def test_letterbox_correction_formula():
    net = FullNet("yolov2-voc_416")
    i = net.info
    boxes, _, _ = net.decode()
    raw = raw_boxes(net.output, i["anchors"], i["num"], i["classes"], i["coords"])
    # 768x576 into 416x416: new_w = 416, new_h = 576*416//768 = 312 (integer, as Darknet).
    new_h = 576 * 416 // 768
    expected = raw.copy()
    expected[:, 1] = (raw[:, 1] - (416 - new_h) / 2 / 416) / (new_h / 416)
    expected[:, 3] = raw[:, 3] * 416 / new_h
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-6)


# ---- WordTree decoding (no Darknet fixture: checked against a numpy reading of the rules) ----

def np_hierarchy(probs, parent):
    p = probs.astype(np.float32).copy()
    for j in range(len(parent)):
        if parent[j] >= 0:
            p[j] *= p[parent[j]]
    return p


def np_top_prediction(p, tree, thresh):
    prob, group = 1.0, 0
    while True:
        off, size = tree.group_offset[group], tree.group_size[group]
        vals = p[off:off + size]
        best = int(np.argmax(vals)) if (vals > 0).any() else 0
        best_val = vals[best] if (vals > 0).any() else 0.0
        node = off + best
        if prob * best_val > thresh:
            prob *= best_val
            group = tree.child[node]
            if group < 0:
                return node
        elif group == 0:
            return node
        else:
            return tree.parent[tree.group_offset[group]]


def tiny_tree_output(h=3, w=5, seed=0):
    """Activated output of the tiny-tree region (2 anchors, 12 classes) on random logits."""
    root = reference_root()
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2, (1, 34, h, w)).astype(np.float32)
    r = _testing.run_region_layer(os.path.join(root, "fixtures/region_tree/tiny_tree.cfg"), batch=1, w=w, h=h,
                               c=34, input=x)
    return r["output"], r["info"]


@pytest.mark.parametrize("hier_thresh", [0.0, 0.3, 0.6, 0.99])
def test_tree_detection_descends_the_hierarchy(hier_thresh):
    out, info = tiny_tree_output()
    tree = info["tree"]
    thresh = .2
    boxes, objectness, probs = _core.region_detections(out[0], 2, 12, 4, info["anchors"], 100, 60, 5 * 32, 3 * 32,
                                                       thresh=thresh, hier_thresh=hier_thresh, tree=tree)
    o = out[0].reshape(2, 17, 3, 5)
    seen_nodes = set()
    for n in range(2):
        for row in range(3):
            for col in range(5):
                k = n * 15 + row * 5 + col
                obj = o[n, 4, row, col]
                assert objectness[k] == pytest.approx(obj if obj > thresh else 0)
                p = np_hierarchy(o[n, 5:, row, col], tree.parent)
                top = np_top_prediction(p, tree, hier_thresh)
                seen_nodes.add(top)
                expected = np.zeros(12, np.float32)
                expected[top] = obj if obj > thresh else 0
                np.testing.assert_allclose(probs[k], expected, rtol=1e-6)
    # Coverage of the descent's exits: with no threshold every descent ends at a
    # leaf; a middling one also stops at inner nodes; .99 stops at the roots.
    if hier_thresh == 0.0:
        assert all(tree.leaf[t] for t in seen_nodes)
    elif hier_thresh == 0.3:
        assert any(tree.leaf[t] for t in seen_nodes) and any(not tree.leaf[t] for t in seen_nodes)
    elif hier_thresh == 0.99:
        assert seen_nodes <= {0, 1, 2}


def test_tree_detection_with_class_map():
    out, info = tiny_tree_output(seed=1)
    tree = info["tree"]
    cmap = [10, 4, 7, 0]
    _, objectness, probs = _core.region_detections(out[0], 2, 12, 4, info["anchors"], 160, 96, 160, 96,
                                                   thresh=.1, tree=tree, map=cmap)
    o = out[0].reshape(2, 17, -1)
    for k in range(30):
        n, cell = divmod(k, 15)
        p = np_hierarchy(o[n, 5:, cell], tree.parent) * o[n, 4, cell]
        expected = np.zeros(12, np.float32)
        expected[:4] = np.where(p[cmap] > .1, p[cmap], 0)
        np.testing.assert_allclose(probs[k], expected, rtol=1e-5, atol=1e-7)


def test_hierarchical_detections_of_the_9k_fixture_output():
    directory = case_dir("fixtures/region_tree/9k_gpu_semantics")
    out = np.load(os.path.join(directory, "L04_output.npy"))[1]
    root = reference_root()
    tree = _core.WordTree.read(os.path.join(root, "data/9k.tree"))
    cmap = _core.read_map(os.path.join(root, "data/coco9k.map"))
    anchors = [0.77871, 1.14074, 3.00525, 4.31277, 9.22725, 9.61974]
    _, objectness, probs = _core.region_detections(out, 3, 9418, 4, anchors, 16, 16, 16, 16, thresh=0.0,
                                                   tree=tree, map=cmap)
    o = out.reshape(3, 9423, 4)
    for k in range(12):
        n, cell = divmod(k, 4)
        p = np_hierarchy(o[n, 5:, cell], tree.parent) * o[n, 4, cell]
        np.testing.assert_allclose(probs[k, :80], np.where(p[cmap] > 0, p[cmap], 0), rtol=1e-5, atol=1e-9)
        assert not probs[k, 80:].any()


# ---- NMS ----

def test_nms_suppresses_overlaps_per_class_and_moves_empty_entries_last():
    boxes = np.array([[.5, .5, .2, .2], [.52, .5, .2, .2], [.1, .1, .1, .1], [.5, .5, .2, .2]], np.float32)
    objectness = np.array([.9, .8, 0, .7], np.float32)
    probs = np.array([[.6, 0], [.7, .5], [0, 0], [0, .4]], np.float32)
    b, o, p, index = _core.do_nms_sort(boxes, objectness, probs, .45)
    assert index[-1] == 2 and o[-1] == 0  # objectness 0 swapped to the end
    by_input = {int(i): row for i, row in zip(index, p)}
    # class 0: box 1 (.7) beats the overlapping box 0 (.6); class 1: box 1 (.5) beats box 3 (.4)
    np.testing.assert_array_equal(by_input[1], np.float32([.7, .5]))
    np.testing.assert_array_equal(by_input[0], [0, 0])
    np.testing.assert_array_equal(by_input[3], [0, 0])
    np.testing.assert_array_equal(b[np.argsort(index)], boxes)


def test_nms_keeps_separate_boxes():
    boxes = np.array([[.2, .2, .1, .1], [.8, .8, .1, .1]], np.float32)
    _, _, p, _ = _core.do_nms_sort(boxes, np.ones(2, np.float32), np.full((2, 1), .5, np.float32), .45)
    np.testing.assert_array_equal(p, [[.5], [.5]])


def test_bad_detection_inputs():
    err = darknet_error()
    with pytest.raises(err, match=r"boxes must be \(N, 4\)"):
        _core.do_nms_sort(np.zeros((3, 3), np.float32), np.zeros(3, np.float32), np.zeros((3, 2), np.float32), .5)
    with pytest.raises(err, match=r"objectness must be \(N,\) with N = 3"):
        _core.do_nms_sort(np.zeros((3, 4), np.float32), np.zeros(2, np.float32), np.zeros((3, 2), np.float32), .5)
    out = np.zeros((40, 8, 8), np.float32)
    with pytest.raises(err, match=r"has 40 channels, num\*\(coords\+1\+classes\) = 45"):
        _core.region_detections(out, 5, 4, 4, [1.0] * 10, 64, 64, 64, 64)
    with pytest.raises(err, match="anchors: expected 10 values, found 8"):
        _core.region_detections(out, 5, 3, 4, [1.0] * 8, 64, 64, 64, 64)
    with pytest.raises(err, match="bad sizes image 0x64"):
        _core.region_detections(out, 5, 3, 4, [1.0] * 10, 0, 64, 64, 64)


# ---- through the network ----

def fwd_bwd_network(batch=0):
    root = reference_root()
    net = _core.Network(os.path.join(root, "fixtures/layers_fwd_bwd/net.cfg"), batch)
    net.load_weights(os.path.join(root, "fixtures/layers_fwd_bwd/net.weights"), -1)
    return net


def test_network_overload_equals_decoding_the_layer_output():
    net = fwd_bwd_network()
    x = np.load(os.path.join(case_dir("fixtures/layers_fwd_bwd/seen_small"), "input.npy"))
    net.forward(x, None)
    info = _core.region_layers(net)[0]
    out = net.layer_output(14)
    for image in range(2):
        ours = _core.get_network_boxes(net, 640, 480, thresh=.3, batch_index=image)
        direct = _core.region_detections(out[image], info["num"], info["classes"], info["coords"], info["anchors"],
                                         640, 480, 64, 64, thresh=.3)
        for a, b in zip(ours, direct):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(darknet_error(), match="image 2 outside the batch of 2"):
        _core.get_network_boxes(net, 640, 480, batch_index=2)


def test_training_step_statistics_through_the_network():
    case = case_dir("fixtures/layers_fwd_bwd/seen_small")
    manifest = load_manifest(case)
    net = fwd_bwd_network()
    cost = net.train_step(np.load(os.path.join(case, "input.npy")), np.load(os.path.join(case, "truth.npy")))
    assert cost == pytest.approx(manifest["layer_costs"][0]["cost"], rel=1e-4)
    (info,) = _core.region_layers(net)
    assert info["stats"]["count"] == 7 and info["stats"]["avg_obj"] == pytest.approx(0.660553, abs=2e-6)


def test_resized_network_has_a_new_region_grid():
    net = fwd_bwd_network(batch=1)
    net.resize(96, 80)
    info = _core.region_layers(net)[0]
    assert (info["w"], info["h"]) == (12, 10)
    net.forward(np.random.default_rng(0).uniform(0, 1, (1, 3, 80, 96)).astype(np.float32), None)
    boxes, objectness, probs = _core.get_network_boxes(net, 96, 80, thresh=0.0)
    assert boxes.shape == (5 * 12 * 10, 4) and probs.shape == (600, 3)
    # Column and row of every prediction: box centres lie in their own cell.
    cells = np.arange(600) % 120
    np.testing.assert_array_equal(np.floor(boxes[:, 0] * 12), cells % 12)
    np.testing.assert_array_equal(np.floor(boxes[:, 1] * 10), cells // 12)


def test_end_to_end_tiny_voc_detections(tmp_path):
    """Full network forward on the recorded input, then get_network_boxes (weights
    regenerated with the reference make_weights.py, sha256 checked)."""
    net_case = FullNet("yolov2-tiny-voc_416")
    gen = net_case.manifest["weights_generation"]
    weights = tmp_path / "tiny.weights"
    subprocess.run([sys.executable, os.path.join(net_case.root, "make_weights.py"), net_case.cfg, str(weights),
                    "--seed", str(gen["seed"])], check=True, capture_output=True)
    import hashlib
    # A different file is a failure, as in test_full_nets.py: the fixture's outputs belong to those weights.
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == gen["sha256"], \
        "make_weights.py did not reproduce the recorded weights (numpy version?)"
    net = _core.Network(net_case.cfg, 1)
    net.load_weights(str(weights), -1)
    net.forward(np.load(os.path.join(net_case.dir, "input.npy")), None)
    boxes, objectness, probs = _core.get_network_boxes(net, net_case.image_w, net_case.image_h, net_case.thresh,
                                                       net_case.hier_thresh)
    assert_close(boxes, net_case.ref("dets_bbox_before_nms"), "end-to-end boxes")
    assert_close(objectness, net_case.ref("dets_objectness_before_nms"), "end-to-end objectness")
    assert_close(probs, net_case.ref("dets_prob_before_nms"), "end-to-end probs")
