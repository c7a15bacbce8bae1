"""Region layer: forward output, loss delta, cost, statistics and backward
against Darknet's declared-semantics fixtures, run alone on the previous layer's
recorded output; parsing and bad-input errors.

Tolerance: |ours - Darknet| <= 1e-5 + 1e-4*|Darknet| elementwise (float32 math
in a different order: exp/log rounding, -Ofast in the reference build).
"""
import os
import re
import shutil

import numpy as np
import pytest

from _region_ref import assert_close, case_dir, darknet_error, load_manifest, reference_root

from darknet_py import _core, _testing

# (case directory, cfg, region layer index): the region input is the previous layer's output.
CASES = {
    "seen_small": ("fixtures/layers_fwd_bwd/seen_small", "fixtures/layers_fwd_bwd/net.cfg", 14),
    "seen_large": ("fixtures/layers_fwd_bwd/seen_large", "fixtures/layers_fwd_bwd/net.cfg", 14),
    "tiny_tree": ("fixtures/region_tree/tiny_tree_gpu_semantics", "fixtures/region_tree/tiny_tree.cfg", 4),
    "9k": ("fixtures/region_tree/9k_gpu_semantics", "fixtures/region_tree/9k_tree.cfg", 4),
}


def run_case(name, backward=True, prev_delta=None):
    directory, cfg, layer = CASES[name]
    root = reference_root()
    directory = os.path.join(root, directory)
    manifest = load_manifest(directory)
    x = np.load(os.path.join(directory, f"L{layer - 1:02d}_output.npy"))
    truth = np.load(os.path.join(directory, "truth.npy"))
    batch, c, h, w = x.shape
    result = _testing.run_region_layer(
        os.path.join(root, cfg), batch=batch, w=w, h=h, c=c, input=x, truth=truth,
        seen=manifest["values"]["seen_during_step"], train=True, backward=backward, prev_delta=prev_delta)
    ref = lambda stem: np.load(os.path.join(directory, f"L{layer:02d}_{stem}.npy"))
    prev_ref = lambda stem: np.load(os.path.join(directory, f"L{layer - 1:02d}_{stem}.npy"))
    return result, manifest, ref, prev_ref, x


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_matches_darknet(name):
    result, manifest, ref, _, _ = run_case(name, backward=False)
    assert_close(result["output"], ref("output"), f"{name}: region output")
    assert_close(result["delta_after_forward"], ref("delta_after_forward"), f"{name}: region delta after forward")
    (cost,) = [c["cost"] for c in manifest["layer_costs"]]
    assert result["cost"] == pytest.approx(cost, rel=1e-4, abs=1e-5), f"{name}: cost"
    assert result["warnings"] == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_statistics_match_darknet_printout(name):
    result, manifest, _, _, _ = run_case(name, backward=False)
    number = r"(-?[0-9.]+|-?nan)"
    pattern = (rf"Region Avg IOU: {number}, Class: {number}, Obj: {number}, No Obj: {number}, "
               rf"Avg Recall: {number},\s+count: (\d+)")
    expected = re.match(pattern, manifest["region_stdout"][0]).groups()
    ours = re.match(pattern, result["stats"]["line"]).groups()
    assert int(ours[-1]) == int(expected[-1]) == result["stats"]["count"]
    # Darknet prints 6 decimals; float sums in another order may move the last one.
    np.testing.assert_allclose([float(v) for v in ours[:-1]], [float(v) for v in expected[:-1]], atol=2e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_backward_matches_darknet(name):
    result, _, ref, prev_ref, _ = run_case(name)
    # Darknet's L(i-1)_delta_in is exactly what the region backward adds into a
    # zero delta: layer i-1 has no other consumer.
    assert_close(result["prev_delta"], prev_ref("delta_in"), f"{name}: previous layer delta")
    assert_close(result["delta"], ref("delta"), f"{name}: region delta after backward")


@pytest.mark.parametrize("name", ["seen_small", "tiny_tree"])
def test_backward_is_logistic_gradient_scaling_added_into_previous_delta(name):
    existing = np.random.default_rng(3).normal(size=run_case(name, backward=False)[4].shape).astype(np.float32)
    result, _, _, _, _ = run_case(name, prev_delta=existing)
    info = result["info"]
    num, coords, classes = info["num"], info["coords"], info["classes"]
    out = result["output"]
    batch, _, h, w = out.shape
    expected = result["delta_after_forward"].reshape(batch, num, coords + 1 + classes, h, w).copy()
    y = out.reshape(expected.shape)
    for entry in (0, 1, coords):  # x, y, objectness pass through the logistic
        expected[:, :, entry] *= y[:, :, entry] * (1 - y[:, :, entry])
    expected = expected.reshape(out.shape)
    np.testing.assert_allclose(result["delta"], expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(result["prev_delta"], existing + expected, rtol=1e-6, atol=1e-6)


def test_inference_forward_has_no_delta_and_zero_cost():
    directory = case_dir("fixtures/layers_fwd_bwd/seen_small")
    x = np.load(os.path.join(directory, "L13_output.npy"))
    result = _testing.run_region_layer(os.path.join(reference_root(), "fixtures/layers_fwd_bwd/net.cfg"),
                                    batch=2, w=8, h=8, c=40, input=x)
    assert_close(result["output"], np.load(os.path.join(directory, "L14_output.npy")), "inference output")
    assert "delta_after_forward" not in result and result["cost"] == 0


def test_parses_every_region_key():
    root = reference_root()
    result = _testing.run_region_layer(os.path.join(root, "fixtures/region_tree/9k_tree.cfg"), batch=1, w=2, h=2,
                                    c=28269, input=np.zeros((1, 28269, 2, 2), np.float32))
    info = result["info"]
    assert (info["num"], info["classes"], info["coords"]) == (3, 9418, 4)
    np.testing.assert_allclose(info["anchors"], [0.77871, 1.14074, 3.00525, 4.31277, 9.22725, 9.61974], rtol=1e-6)
    assert info["softmax"] and info["bias_match"] and info["rescore"]
    assert (info["object_scale"], info["noobject_scale"], info["thresh"]) == (5, 1, pytest.approx(.6))
    assert info["jitter"] == pytest.approx(.2) and info["absolute"] == 1 and info["random"] == 0
    assert info["max_boxes"] == 30 and info["truths"] == 150
    assert info["tree"].n == 9418 and len(info["map"]) == 80
    assert info["tree_path"].endswith("9k.tree") and info["map_path"].endswith("coco9k.map")
    assert result["warnings"] == []


# A small region cfg (40 = 5 * (3 + 4 + 1) filters expected); line numbers matter below.
REGION_CFG = """[net]
width=64
height=64
channels=3

[region]
anchors = 0.5,0.6, 1.2,1.5, 2.0,3.5, 3.5,2.0, 5.0,5.5
bias_match=1
classes=3
coords=4
num=5
softmax=1
thresh=.6
"""


def run_text(text, c=40, w=8, h=8, cfg_file="bad.cfg", **kw):
    return _testing.run_region_layer(cfg_file, cfg_text=text, batch=1, w=w, h=h, c=c,
                                  input=np.zeros((1, c, h, w), np.float32), **kw)


def test_max_sets_truths_per_image():
    info = run_text(REGION_CFG + "max=90\n")["info"]
    assert info["max_boxes"] == 90 and info["truths"] == 450


def test_unknown_key_is_warned_with_file_and_line():
    warnings = run_text(REGION_CFG + "bogus_key=1\n")["warnings"]
    assert warnings == ["bad.cfg:14: unknown key 'bogus_key' in [region] (ignored)"]


def test_filters_mismatch_names_cfg_line_expected_and_found():
    with pytest.raises(darknet_error()) as e:
        run_text(REGION_CFG, c=38)
    msg = str(e.value)
    assert msg.startswith("bad.cfg:6:") and "region expects 40 filters in the previous layer" in msg, msg
    assert "found 38" in msg, msg


def test_bad_anchor_count_names_the_anchors_line():
    text = REGION_CFG.replace("5.0,5.5", "5.0")
    with pytest.raises(darknet_error()) as e:
        run_text(text)
    msg = str(e.value)
    assert msg.startswith("bad.cfg:7:") and "anchors" in msg and "expected 10 values" in msg and "found 9" in msg, msg


def test_non_numeric_anchor_names_the_anchors_line():
    with pytest.raises(darknet_error(), match=r"^bad\.cfg:7: .*anchors.*expected a number"):
        run_text(REGION_CFG.replace("0.5,0.6", "0.5,abc"))


def test_missing_tree_file_names_the_path_and_cfg_line(tmp_path):
    text = REGION_CFG.replace("classes=3", "classes=3\ntree=no/such/file.tree")
    cfg = str(tmp_path / "net.cfg")
    with pytest.raises(darknet_error()) as e:
        run_text(text, cfg_file=cfg)
    msg = str(e.value)
    assert msg.startswith(f"{cfg}:10:") and "no/such/file.tree" in msg and "not found" in msg, msg


def test_missing_map_file_names_the_path(tmp_path):
    text = REGION_CFG + "map=missing.map\n"
    with pytest.raises(darknet_error(), match=r"bad\.cfg:14: .*missing\.map.*not found"):
        run_text(text)


def test_tree_with_wrong_node_count_is_rejected():
    tree = os.path.join(case_dir("fixtures/region_tree"), "tiny.tree")
    text = REGION_CFG + f"tree={tree}\n"
    with pytest.raises(darknet_error(), match=r"bad\.cfg:14: .*has 12 nodes but the region has classes=3"):
        run_text(text)


def tiny_tree_cfg_text(tree_value):
    return REGION_CFG.replace("classes=3", "classes=12").replace(
        "anchors = 0.5,0.6, 1.2,1.5, 2.0,3.5, 3.5,2.0, 5.0,5.5", "anchors = 0.8,1.1, 2.5,3.0").replace(
        "num=5", "num=2") + f"tree={tree_value}\n"


def test_tree_path_is_tried_relative_to_working_directory(monkeypatch, tmp_path):
    root = reference_root()
    monkeypatch.chdir(root)
    # The cfg "lives" in an empty directory: only the working directory can resolve it.
    info = run_text(tiny_tree_cfg_text("fixtures/region_tree/tiny.tree"), c=34,
                    cfg_file=str(tmp_path / "x.cfg"))["info"]
    assert info["tree"].n == 12 and info["tree_path"] == "fixtures/region_tree/tiny.tree"


def test_tree_path_falls_back_to_cfg_directory(monkeypatch, tmp_path):
    cfg_dir = tmp_path / "model"
    cfg_dir.mkdir()
    shutil.copy(os.path.join(case_dir("fixtures/region_tree"), "tiny.tree"), cfg_dir / "my.tree")
    monkeypatch.chdir(tmp_path)  # "my.tree" is not here
    info = run_text(tiny_tree_cfg_text("my.tree"), c=34, cfg_file=str(cfg_dir / "x.cfg"))["info"]
    assert info["tree_path"] == str(cfg_dir / "my.tree")


def test_truth_class_outside_classes_is_an_error():
    truth = np.zeros((1, 150), np.float32)
    truth[0, :5] = [.5, .5, .2, .2, 7]
    with pytest.raises(darknet_error(), match=r"truth 0: class 7 outside 0\.\.2"):
        run_text(REGION_CFG, truth=truth, train=True)


def test_class_only_truth_without_tree_is_an_error():
    truth = np.zeros((1, 150), np.float32)
    truth[0, :5] = [999999, 999999, 1, 1, 1]
    with pytest.raises(darknet_error(), match=r"outside 0\.\.1.*classification-only labels need a tree="):
        run_text(REGION_CFG, truth=truth, train=True)


def test_training_without_truth_is_an_error():
    with pytest.raises(darknet_error(), match="needs truth"):
        run_text(REGION_CFG, train=True)


def test_truth_with_zero_size_is_an_error():
    truth = np.zeros((1, 150), np.float32)
    truth[0, :5] = [.5, .5, 0, .2, 1]
    with pytest.raises(darknet_error(), match=r"truth 0: size 0x0\.2 must be positive"):
        run_text(REGION_CFG, truth=truth, train=True)


@pytest.mark.parametrize("name, weights", [("tiny_tree", "tiny_tree.weights"), ("9k", "9k_tree.weights")])
def test_tree_training_step_through_the_network(name, weights):
    directory, cfg, layer = CASES[name]
    root = reference_root()
    manifest = load_manifest(os.path.join(root, directory))
    net = _core.Network(os.path.join(root, cfg), 0)
    net.load_weights(os.path.join(root, "fixtures/region_tree", weights), -1)
    net.seen = manifest["values"]["seen_set"]
    cost = net.train_step(np.load(os.path.join(root, directory, "input.npy")),
                          np.load(os.path.join(root, directory, "truth.npy")))
    (expected,) = [c["cost"] for c in manifest["layer_costs"]]
    assert cost == pytest.approx(expected, rel=1e-4)
    (info,) = _core.region_layers(net)
    assert info["index"] == layer and info["stats"]["count"] == int(manifest["region_stdout"][0].split()[-1])
