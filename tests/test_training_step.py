"""SGD details: subdivisions accumulate like one big batch, learning-rate policies
with burn_in follow Darknet's formulas, and training refuses bad truth."""
import math

import numpy as np
import pytest

import darknet_py
from darknet_py import DarknetError

NET = """[net]
batch={batch}
subdivisions={subdivisions}
width=32
height=32
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.01
policy=constant

[convolutional]
filters=8
size=3
stride=2
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=16
size=3
pad=1
activation=leaky

[convolutional]
filters=20
size=1
activation=linear

[region]
anchors=1,1, 2,2
classes=5
coords=4
num=2
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
thresh=.6
"""


def make(batch, subdivisions):
    net = darknet_py.Network.from_text(NET.format(batch=batch, subdivisions=subdivisions), "sub.cfg", batch=0)
    rng = np.random.default_rng(3)
    for layer in net.layers:
        for k, v in layer.params.items():
            v[...] = rng.normal(0, .3, v.shape)
    net.training = True
    return net


def data(n=8):
    rng = np.random.default_rng(4)
    x = rng.uniform(0, 1, (n, 3, 32, 32)).astype(np.float32)
    truth = np.zeros((n, 30 * 5), np.float32)
    for i in range(n):
        for j in range(1 + i % 3):
            truth[i, j * 5:j * 5 + 5] = [rng.uniform(.1, .9), rng.uniform(.1, .9), rng.uniform(.1, .5),
                                         rng.uniform(.1, .5), rng.integers(0, 5)]
    return x, truth


def test_subdivisions_accumulate_like_one_batch():
    """No BN here: batch statistics would differ per sub-batch (as in Darknet)."""
    x, truth = data(8)
    one = make(8, 1)
    assert one.batch == 8
    one.train_step(x, truth)
    four = make(8, 4)
    assert four.batch == 2
    for s in range(4):
        before = {i: {k: v.copy() for k, v in l.params.items()} for i, l in enumerate(four.layers)}
        four.train_step(x[2 * s:2 * s + 2], truth[2 * s:2 * s + 2])
        if s < 3:  # no update until the 4th sub-batch
            for i, l in enumerate(four.layers):
                for k, v in l.params.items():
                    np.testing.assert_array_equal(v, before[i][k])
    assert four.seen == one.seen == 8
    for a, b in zip(one.layers, four.layers):
        for k in a.params:
            np.testing.assert_allclose(b.params[k], a.params[k], rtol=1e-5, atol=1e-6, err_msg=k)


POLICIES = {
    "constant": ("", lambda b: 0.01),
    "step": ("step=10\nscale=.5\n", lambda b: 0.01 * 0.5 ** (b // 10)),
    "steps": ("steps=5,20\nscales=.1,.5\n", lambda b: 0.01 * (1 if b < 5 else .1 if b < 20 else .05)),
    "exp": ("gamma=.9\n", lambda b: 0.01 * 0.9 ** b),
    "poly": ("power=2\nmax_batches=50\n", lambda b: 0.01 * (1 - b / 50) ** 2),
    "sig": ("gamma=.5\nstep=10\n", lambda b: 0.01 / (1 + math.exp(.5 * (b - 10)))),
}


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_learning_rate_policy(policy):
    extra, formula = POLICIES[policy]
    text = NET.format(batch=2, subdivisions=1).replace("policy=constant\n", f"policy={policy}\n{extra}")
    net = darknet_py.Network.from_text(text, "lr.cfg", batch=0)
    for b in (0, 1, 4, 5, 9, 10, 19, 20, 33):
        net.seen = b * 2
        assert net.learning_rate == pytest.approx(formula(b), rel=1e-5), (policy, b)


def test_burn_in():
    text = NET.format(batch=2, subdivisions=1).replace("policy=constant\n", "policy=constant\nburn_in=100\npower=4\n")
    net = darknet_py.Network.from_text(text, "lr.cfg", batch=0)
    for b in (0, 10, 50, 99, 100, 500):
        net.seen = b * 2
        want = 0.01 * (b / 100) ** 4 if b < 100 else 0.01
        assert net.learning_rate == pytest.approx(want, rel=1e-5, abs=1e-12)


def test_random_policy_is_reproducible():
    text = NET.format(batch=2, subdivisions=1).replace("policy=constant\n", "policy=random\npower=1\n")
    a = darknet_py.Network.from_text(text, "lr.cfg", batch=0)
    b = darknet_py.Network.from_text(text, "lr.cfg", batch=0)
    rates = []
    for n in range(1, 6):
        a.seen = b.seen = n * 2
        assert a.learning_rate == b.learning_rate
        rates.append(a.learning_rate)
    assert all(0 <= r <= 0.01 for r in rates) and len(set(rates)) > 1


def test_bad_truth_is_refused():
    net = make(2, 1)
    x, truth = data(2)
    with pytest.raises(DarknetError, match="truth has 10 floats but the network needs"):
        net.train_step(x, truth[:, :5])
    bad = truth.copy()
    bad[0, 4] = 7  # class >= classes
    with pytest.raises(DarknetError, match="class"):
        net.train_step(x, bad)
    with pytest.raises(DarknetError, match="input is 3x16x16"):
        net.train_step(x[:, :, :16, :16], truth)
