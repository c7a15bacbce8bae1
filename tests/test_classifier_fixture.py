"""Classifier fixture: conv+BN, maxpool, 1x1 conv, avgpool, softmax, cost vs Darknet,
one full training step (forward, backward, update)."""
import numpy as np
import pytest

import darknet_py
from conftest import assert_close, load_case, require_reference

ATOL, RTOL = 1e-5, 1e-4  # float32 sums in a different order than Darknet


@pytest.fixture(scope="module")
def stepped():
    case = load_case("fixtures", "classifier", "softmax_cost")
    root = case.root
    net = darknet_py.load(root / case.manifest["cfg"], root / case.manifest["weights_in"], batch=2)
    x = case.array("input")
    truth = case.array("truth")
    net.training = True
    before = {i: {k: v.copy() for k, v in net.layers[i].params.items()} for i in (0, 2)}
    cost = net.train_step(x, truth)
    return case, net, cost, before


def test_costs(stepped):
    case, net, cost, _ = stepped
    costs = {c["layer"]: c["cost"] for c in case.manifest["layer_costs"]}
    assert net.layers[4].cost == pytest.approx(costs[4], rel=1e-5)
    assert net.layers[5].cost == pytest.approx(costs[5], rel=1e-5)
    assert cost == pytest.approx(case.values["net_cost"], rel=1e-5)


def test_forward_and_backward_arrays(stepped):
    case, net, _, before = stepped
    for i, layer in enumerate(net.layers):
        assert_close(layer.output.ravel(), case.array(f"L{i:02d}_output").ravel(), ATOL, RTOL, f"L{i} output")
        assert_close(layer.delta.ravel(), case.array(f"L{i:02d}_delta").ravel(), ATOL, RTOL, f"L{i} delta")
    bufs = net.layers[0].buffers
    for name, key in [("bn_mean", "mean"), ("bn_variance", "variance"), ("bn_x", "x"), ("bn_x_norm", "x_norm")]:
        assert_close(bufs[key].ravel(), case.array(f"L00_{name}").ravel(), ATOL, RTOL, f"L00 {name}")
    for i in (0, 2):
        for name in ("weights", "biases") + (("scales",) if i == 0 else ()):
            assert_close(before[i][name].ravel(), case.array(f"L{i:02d}_{name}_before").ravel(), 0, 0, f"L{i} {name} before")


def test_update(stepped):
    case, net, _, _ = stepped
    for i in (0, 2):
        params, bufs = net.layers[i].params, net.layers[i].buffers
        for name in ("weights", "biases") + (("scales", "rolling_mean", "rolling_variance") if i == 0 else ()):
            assert_close(params[name].ravel(), case.array(f"L{i:02d}_{name}_after").ravel(), ATOL, RTOL, f"L{i} {name} after")
        for name in ("weight_updates", "bias_updates") + (("scale_updates",) if i == 0 else ()):
            assert_close(bufs[name].ravel(), case.array(f"L{i:02d}_{name}_after").ravel(), ATOL, RTOL, f"L{i} {name} after")


def test_saved_weights_equal_darknet(stepped, tmp_path):
    case, net, _, _ = stepped
    out = tmp_path / "updated.weights"
    net.save_weights(out)
    ours = np.fromfile(out, dtype=np.uint8)
    theirs = np.fromfile(case.files_dir / case.entries["updated"]["file"] if case.has("updated") else
                         case.files_dir / "updated.weights", dtype=np.uint8)
    assert ours.size == theirs.size
    assert bytes(ours[:20]) == bytes(theirs[:20])  # header incl. seen
    assert_close(ours[20:].view(np.float32), theirs[20:].view(np.float32), ATOL, RTOL, "updated.weights params")
