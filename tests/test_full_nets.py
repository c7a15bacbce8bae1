"""Full original networks with regenerated random weights vs Darknet's recorded outputs.

Tolerance (issue 2): |ours - darknet| <= 1e-4 * max(1, |darknet|) for every recorded
output sample and the full final output; layer statistics (mean/std/min/max) to the
same bound, sums to 1e-4 relative of the sum of |values| (count * mean |x| bound).
"""
import hashlib
import json

import numpy as np
import pytest

import darknet_py
from conftest import Case, assert_detections_match, load_case, make_weights, reference_root, require_reference

NETS = ["darknet19_256", "yolov2-tiny-voc_416", "yolov2-voc_416", "yolov2_416", "yolov2-voc_608"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def build(case: Case, weights_dir):
    root = case.root
    gen = case.manifest["weights_generation"]
    weights = make_weights(root / gen["cfg"], gen["seed"], weights_dir)
    assert sha256(weights) == gen["sha256"], "make_weights.py did not reproduce the recorded weights"
    net = darknet_py.load(root / case.manifest["cfg"], weights)
    return net


def close_bound(expected):
    return 1e-4 * np.maximum(1.0, np.abs(expected))


@pytest.fixture(scope="module", params=NETS)
def ran(request, weights_dir):
    case = load_case("fixtures", "full_nets", request.param)
    net = build(case, weights_dir)
    x = case.array("input")
    out = net.forward(x)
    return case, net, out


def test_every_layer_matches(ran):
    case, net, out = ran
    stride = case.manifest["strided_sample_stride"]
    stats = {s["layer"]: s for s in case.manifest["layer_stats"]}
    assert len(net) == len(stats)
    for i, layer in enumerate(net.layers):
        got = layer.output.ravel().astype(np.float64)
        want = case.array(f"L{i:02d}_output_strided").astype(np.float64)
        sample = got[::stride]
        assert sample.shape == want.shape, f"layer {i}: {sample.shape} vs {want.shape}"
        err = np.abs(sample - want)
        assert (err <= close_bound(want)).all(), f"layer {i} ({layer.type}): max err {err.max():.3g}"
        st = stats[i]
        assert got.size == st["count"]
        for key, value in (("mean", got.mean()), ("std", got.std()), ("min", got.min()), ("max", got.max())):
            assert abs(value - st[key]) <= 1e-4 * max(1.0, abs(st[key])), f"layer {i} {key}: {value} vs {st[key]}"
        assert abs(got.sum() - st["sum"]) <= 1e-4 * np.abs(got).sum() + 1e-3, f"layer {i} sum"


def test_final_output_full(ran):
    case, net, out = ran
    last = len(net) - 1
    want = case.array(f"L{last:02d}_output_full").astype(np.float64)
    got = out.astype(np.float64).reshape(want.shape)
    err = np.abs(got - want)
    assert (err <= close_bound(want)).all(), f"final output max err {err.max():.3g}"


def test_darknet19_top5(weights_dir):
    case = load_case("fixtures", "full_nets", "darknet19_256")
    net = build(case, weights_dir)
    out = net.forward(case.array("input")).ravel()
    top = np.argsort(-out, kind="stable")[:5]
    assert [t["index"] for t in case.manifest["top5"]] == top.tolist()
    for t in case.manifest["top5"]:
        assert out[t["index"]] == pytest.approx(t["prob"], rel=1e-4)


REGION_NETS = [n for n in NETS if not n.startswith("darknet19")]


@pytest.mark.parametrize("name", REGION_NETS)
def test_detections_match_darknet(name, weights_dir):
    """Same count, classes, boxes (relative, 1e-4 x max(1,|v|)) and probs (1e-4) as Darknet's list."""
    case = load_case("fixtures", "full_nets", name)
    assert_detections_match(build(case, weights_dir), case, 1e-4)


# Our own image path: Pillow's JPEG decoder differs from stb_image by a few levels in
# some pixels, and that propagates. Measured on dog.jpg (letterboxed to 416): input
# max abs diff 0.011, mean 2.8e-4 (resize/letterbox themselves are Darknet-exact). Stated tolerance for detections: same labelled boxes
# and classes, box coordinates within 2% of the image size + 3% of the value (random
# weights give exp-sized boxes), probabilities within 0.05.
@pytest.mark.parametrize("name", ["yolov2-voc_416", "yolov2-tiny-voc_416"])
def test_detect_dog_with_our_image_loading(name, weights_dir):
    case = load_case("fixtures", "full_nets", name)
    ref = json.loads((case.files_dir / "detections.json").read_text())
    net = build(case, weights_dir)
    from darknet_py.image import letterbox, load_image
    img = load_image(require_reference("data", "dog.jpg"))
    sized = letterbox(img, net.width, net.height)
    diff = np.abs(sized - case.array("input")[0])
    assert diff.mean() < 1e-3 and diff.max() < 0.05, (diff.mean(), diff.max())
    w, h = ref["image_w"], ref["image_h"]
    ours = net.detect(img, thresh=ref["thresh"], hier_thresh=ref["hier_thresh"], nms=ref["nms"])
    labelled = [d for d in ref["detections"] if d["labels"]]
    strong = [d for d in labelled if max(d["prob"]) > ref["thresh"] + 0.05]
    for d in strong:
        box = np.array(d["bbox_xywh"]) * [w, h, w, h]
        cls = int(np.argmax(d["prob"]))
        match = min(ours, key=lambda o: np.abs(np.array(o.box) - box).max())
        assert (np.abs(np.array(match.box) - box) <= 0.02 * max(w, h) + 0.03 * np.abs(box)).all()
        assert match.class_id == cls
        assert abs(match.prob - max(d["prob"])) <= 0.05
    assert abs(len(ours) - len(labelled)) <= max(1, len(labelled) // 5)
