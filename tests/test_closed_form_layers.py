"""Closed-form expected values for the elementwise layers, written in numpy from
Darknet's definitions (never by calling the project's kernels):

- all 14 activations, forward and gradient (Darknet expresses each gradient through the
  activation's OUTPUT y, which fixes the value at the kinks: e.g. leaky'(0) = .1 because
  y = 0 is not > 0, stair' = 0 on its flat steps, plse/lhtan/hardtan by y's range);
- [dropout]: training keeps a unit with probability 1-p and scales it by 1/(1-p),
  inference is the identity; the backward passes delta * 1/(1-p) through kept units only
  (the mask is recovered from which outputs are zero);
- [cost] type=sse / masked / L1 / smooth with scale=: per-element error, layer cost,
  the layer's delta and what its backward adds to the previous layer;
- [softmax] with groups= and temperature=: the output and the cross-entropy delta t - p
  and cost; with tree= (WordTree): one softmax per sibling group, unlabelled groups
  (-1234) get no delta and no loss.

Each layer under test sits behind a "probe": a 1x1 linear convolution with identity
weights and zero bias, so the layer's input is exactly the network input and the
probe's delta (layer 0) is exactly what the layer's backward hands back.
"""
import numpy as np
import pytest

import darknet_py

# float32 kernels vs float64 numpy of the same formula. The values here are |v| <= ~8,
# where one float32 ulp is <= 1e-6; expf/logf in libm and numpy differ by <= ~2 ulp,
# and tanh's (e^2x - 1)/(e^2x + 1) loses ~1 ulp of 1 (1.2e-7) near 0 to cancellation.
ACT_RTOL = 4e-7
ACT_ATOL = 3e-7
# Gradient: r * g(y), with y the float32 output (up to ~2 ulp off the exact value) and g's
# slope in y up to 2 (tanh, logistic, loggy): |error| <= ~5e-7 * |r|; measured 2.5e-7.
ACT_GRAD_TOL = 1e-6
# Pure data movement / one float multiply: the same IEEE float32 product, bit for bit.
EXACT = dict(rtol=0, atol=0)

SELU_LAMBDA, SELU_ALPHA = 1.0507, 1.6732  # the rounded constants Darknet uses


def header(c, h, w, batch=2):
    return f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n"


def probe(c):
    return f"[convolutional]\nfilters={c}\nsize=1\nactivation=linear\n"


def identity_conv(layer):
    w = layer.params["weights"]
    w[...] = 0
    for i in range(w.shape[0]):
        w[i, i, 0, 0] = 1
    layer.params["biases"][...] = 0


def probed_net(body, c, h, w, batch=2, training=True):
    net = darknet_py.Network.from_text(header(c, h, w, batch) + probe(c) + body, "closed_form.cfg", batch=batch)
    identity_conv(net.layers[0])
    net.training = training
    return net


def backward_into_probe(net, layer_index, delta, x):
    """Run layer `layer_index`'s backward alone with its delta set; return the probe's delta."""
    net._net.set_layer_delta(layer_index, np.ascontiguousarray(delta, np.float32).ravel())
    net._net.set_layer_delta(0, np.zeros(x.size, np.float32))
    net._net.backward_layer(layer_index, x)
    return net.layers[0].delta


# ------------------------------------------------------------------ activations
# Darknet's definitions, float64: forward f(x) and gradient g(y) through the output.
def _f64(x):
    return np.asarray(x, np.float64)


ACTIVATIONS = {
    "linear": (lambda x: x, lambda y: np.ones_like(y)),
    "logistic": (lambda x: 1 / (1 + np.exp(-x)), lambda y: (1 - y) * y),
    "loggy": (lambda x: 2 / (1 + np.exp(-x)) - 1, lambda y: 2 * (1 - (y + 1) / 2) * ((y + 1) / 2)),
    "relu": (lambda x: np.where(x > 0, x, 0.0), lambda y: (y > 0).astype(np.float64)),
    "elu": (lambda x: np.where(x >= 0, x, np.expm1(x)), lambda y: np.where(y >= 0, 1.0, y + 1)),
    "selu": (lambda x: np.where(x >= 0, SELU_LAMBDA * x, SELU_LAMBDA * SELU_ALPHA * np.expm1(x)),
             lambda y: np.where(y >= 0, SELU_LAMBDA, y + SELU_LAMBDA * SELU_ALPHA)),
    "relie": (lambda x: np.where(x > 0, x, .01 * x), lambda y: np.where(y > 0, 1.0, .01)),
    "ramp": (lambda x: np.where(x > 0, x, 0.0) + .1 * x, lambda y: (y > 0) + .1),
    "leaky": (lambda x: np.where(x > 0, x, .1 * x), lambda y: np.where(y > 0, 1.0, .1)),
    "tanh": (lambda x: np.tanh(x), lambda y: 1 - y * y),
    "plse": (lambda x: np.where(x < -4, .01 * (x + 4), np.where(x > 4, .01 * (x - 4) + 1, .125 * x + .5)),
             lambda y: np.where((y < 0) | (y > 1), .01, .125)),
    # stair: even unit intervals are flat steps at floor(x/2); odd ones rise with slope 1.
    "stair": (lambda x: np.where(np.floor(x) % 2 == 0, np.floor(x / 2), x - np.floor(x) + np.floor(x / 2)),
              lambda y: np.where(np.floor(y) == y, 0.0, 1.0)),
    "hardtan": (lambda x: np.clip(x, -1, 1), lambda y: np.where((y > -1) & (y < 1), 1.0, 0.0)),
    "lhtan": (lambda x: np.where(x < 0, .001 * x, np.where(x > 1, .001 * (x - 1) + 1, x)),
              lambda y: np.where((y > 0) & (y < 1), 1.0, .001)),
}


def activation_inputs(c=4, h=3, w=7, batch=2):
    """Mostly points well inside the pieces (off every integer, where all kinks lie), plus
    the kinks themselves, where Darknet's output-based gradient decides the value."""
    rng = np.random.default_rng(11)
    n = batch * c * h * w
    x = rng.integers(-7, 7, n) + rng.uniform(.05, .95, n)
    kinks = [0., 1., -1., 4., -4., 2., 3., -2., -3., 5.]
    x[:len(kinks)] = kinks
    return x.reshape(batch, c, h, w).astype(np.float32)


def test_activation_table_is_the_cores():
    """The table below covers exactly the activations the core parses."""
    assert len(ACTIVATIONS) == 14
    from pathlib import Path
    src = (Path(__file__).resolve().parents[1] / "csrc/kernels/activations.hpp").read_text()
    enum = src.split("enum class Activation {")[1].split("}")[0]
    assert {e.strip().lower() for e in enum.split(",")} == set(ACTIVATIONS)


@pytest.mark.parametrize("mode", ["inference", "inference_reference", "inference_plain_isa", "training"])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activation_forward(act, mode):
    x = activation_inputs()
    net = probed_net(f"[convolutional]\nfilters=4\nsize=1\nactivation={act}\n", 4, 3, 7,
                     training=mode == "training")
    identity_conv(net.layers[1])
    if mode == "inference_reference":
        net.set_exec_options(reference_kernels=True)
    if mode == "inference_plain_isa":
        net.set_exec_options(isa="plain")
    got = net.forward(x)
    expected = ACTIVATIONS[act][0](_f64(x))
    np.testing.assert_allclose(got, expected, rtol=ACT_RTOL, atol=ACT_ATOL, err_msg=f"{act} forward ({mode})")


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_activation_gradient(act):
    x = activation_inputs()
    net = probed_net(f"[convolutional]\nfilters=4\nsize=1\nactivation={act}\n", 4, 3, 7)
    identity_conv(net.layers[1])
    y = net.forward(x)
    r = np.random.default_rng(5).normal(0, 1, x.shape).astype(np.float32)
    got = backward_into_probe(net, 1, r, x)
    # The expected gradient through Darknet's formula on the EXPECTED output (not ours), so a
    # wrong forward at a kink shows here too.
    y_expected = ACTIVATIONS[act][0](_f64(x))
    expected = r * ACTIVATIONS[act][1](y_expected)
    err = np.abs(got - expected)
    bound = ACT_GRAD_TOL * np.abs(r) + ACT_RTOL * np.abs(expected)
    i = np.unravel_index(np.argmax(err - bound), err.shape)
    assert (err <= bound).all(), f"{act} gradient at x={x[i]}: got {got[i]}, expected {expected[i]} (r={r[i]})"
    assert y.shape == x.shape


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_output_based_gradient_is_the_derivative_off_the_kinks(act):
    """The table's g(y) agrees with a central difference of f(x) away from kinks: a check of
    the expected values themselves (float64, numpy only)."""
    f, g = ACTIVATIONS[act]
    x = _f64(activation_inputs()).ravel()
    x = x[10:]  # drop the kinks
    eps = 1e-6
    numeric = (f(x + eps) - f(x - eps)) / (2 * eps)
    analytic = g(f(x))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-6, err_msg=act)


# ------------------------------------------------------------------ dropout
DROPOUT_SHAPE = (2, 4, 10, 12)  # 960 units: the dropped fraction is within 5 sigma of p


def dropout_input(shape=DROPOUT_SHAPE):
    rng = np.random.default_rng(2)
    x = rng.uniform(.1, 2, shape) * rng.choice([-1, 1], shape)  # never 0: a zero output means dropped
    return x.astype(np.float32)


@pytest.mark.parametrize("p", [0.0, 0.3, 0.5, 0.9])
def test_dropout_training_forward_and_backward(p):
    c = DROPOUT_SHAPE[1]
    net = probed_net(f"[dropout]\nprobability={p}\n", c, *DROPOUT_SHAPE[2:])
    net.set_seed(123)
    x = dropout_input()
    out = net.forward(x)
    kept = out != 0
    scale = np.float32(1) / (np.float32(1) - np.float32(p))  # Darknet: 1/(1-p) in float
    # kept units: x * scale (one float32 multiply, exact); dropped: exactly 0
    np.testing.assert_allclose(out[kept], x[kept] * scale, **EXACT)
    n = kept.size
    dropped = n - kept.sum()
    sigma = np.sqrt(n * p * (1 - p))
    assert abs(dropped - n * p) <= 5 * sigma, f"p={p}: dropped {dropped} of {n}"
    if p == 0:
        assert kept.all()
    # backward: the same mask; kept units pass delta * scale, dropped ones nothing
    r = np.random.default_rng(4).normal(0, 1, x.shape).astype(np.float32)
    got = backward_into_probe(net, 1, r, x)
    np.testing.assert_allclose(got, np.where(kept, r * scale, 0), **EXACT)


def test_dropout_backward_adds_into_the_previous_delta():
    """Darknet's dropout backward acts on the previous layer's delta; a consumer that already
    put something there keeps it (the layer adds)."""
    net = probed_net("[dropout]\nprobability=0.5\n", 4, 10, 12)
    net.set_seed(9)
    x = dropout_input()
    kept = net.forward(x) != 0
    r = np.random.default_rng(6).normal(0, 1, x.shape).astype(np.float32)
    existing = np.random.default_rng(7).normal(0, 1, x.shape).astype(np.float32)
    net._net.set_layer_delta(1, r.ravel())
    net._net.set_layer_delta(0, existing.ravel())
    net._net.backward_layer(1, x)
    np.testing.assert_allclose(net.layers[0].delta, existing + np.where(kept, r * np.float32(2), 0), **EXACT)


def test_dropout_inference_is_identity():
    net = probed_net("[dropout]\nprobability=0.7\n", 4, 10, 12, training=False)
    x = dropout_input()
    np.testing.assert_array_equal(net.forward(x), x)
    net.training = True  # dropping in training...
    assert (net.forward(x) == 0).any()
    net.training = False  # ...and the identity again once back in inference
    np.testing.assert_array_equal(net.forward(x), x)


# ------------------------------------------------------------------ [cost]
COST_C, COST_H, COST_W = 4, 3, 5


def cost_inputs(kind):
    """input, truth with truth - input away from 0 and +-1 (smooth's switch), plus exact ties."""
    rng = np.random.default_rng(3)
    shape = (2, COST_C, COST_H, COST_W)
    x = rng.uniform(-2, 2, shape).astype(np.float32)
    mag = np.where(rng.random(shape) < .5, rng.uniform(.05, .95, shape), rng.uniform(1.05, 3, shape))
    diff = (mag * rng.choice([-1, 1], shape)).astype(np.float32)
    truth = (x + diff).astype(np.float32)
    truth.flat[0] = x.flat[0]            # diff == 0 exactly
    if kind == "masked":
        truth.flat[1::7] = -1234          # Darknet's "no label" marker
    return x, truth


def cost_expected(kind, x, truth):
    """Per-element error and delta (truth side), float64, from Darknet's definitions:
    sse/masked: error d^2, delta d (d = truth - input; masked entries: 0, 0);
    L1: error |d|, delta +1 if d > 0 else -1 (Darknet's l1: d == 0 gives -1);
    smooth: |d| < 1: error d^2, delta d; else error 2|d| - 1, delta sign(d). Darknet's CPU
    smooth_l1 flips that sign for |d| >= 1; the project uses the true gradient sign
    (README, deliberate), which is what this expects."""
    d = _f64(truth) - _f64(x)
    if kind == "masked":
        d = np.where(truth == -1234, 0.0, d)
    if kind in ("sse", "masked"):
        return d * d, d
    if kind == "L1":
        return np.abs(d), np.where(d > 0, 1.0, -1.0)
    if kind == "smooth":
        small = np.abs(d) < 1
        return np.where(small, d * d, 2 * np.abs(d) - 1), np.where(small, d, np.sign(d))
    raise ValueError(kind)


# error is one float32 subtraction and square: <= 2 ulp of values up to ~9
COST_RTOL = 3e-7
COST_ATOL = 1e-7
# The layer cost is a double sum of float32 errors: float32's final rounding (6e-8 relative).
COST_SUM_RTOL = 1e-6


@pytest.mark.parametrize("scale", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("kind", ["sse", "masked", "L1", "smooth"])
def test_cost_values_and_deltas(kind, scale):
    body = f"[cost]\ntype={kind}\nscale={scale}\n"
    net = probed_net(body, COST_C, COST_H, COST_W)
    x, truth = cost_inputs(kind)
    net.forward(x, truth.reshape(2, -1))
    error, delta = cost_expected(kind, x, truth)
    layer = net.layers[1]
    np.testing.assert_allclose(layer.output, error, rtol=COST_RTOL, atol=COST_ATOL, err_msg=f"{kind} error")
    np.testing.assert_allclose(layer.delta, delta, rtol=COST_RTOL, atol=COST_ATOL, err_msg=f"{kind} delta")
    assert layer.cost == pytest.approx(error.sum(), rel=COST_SUM_RTOL)
    assert net._net.cost == pytest.approx(error.sum(), rel=COST_SUM_RTOL)  # the only loss layer
    # backward: previous delta += scale * delta
    net._net.set_layer_delta(0, np.zeros(x.size, np.float32))
    net._net.backward_layer(1, x)
    np.testing.assert_allclose(net.layers[0].delta, scale * delta, rtol=COST_RTOL, atol=COST_ATOL,
                               err_msg=f"{kind} backward, scale {scale}")


def test_cost_gpu_only_options_do_not_change_the_cpu_values():
    """ratio=, thresh= and noobject_scale= act only in Darknet's GPU cost path; the parser
    accepts them (no unknown-key warning) and the values are Darknet's CPU ones."""
    x, truth = cost_inputs("sse")
    body = "[cost]\ntype=sse\nratio=.5\nthresh=.3\nnoobject_scale=3\n"
    net = probed_net(body, COST_C, COST_H, COST_W)
    assert not net._net.warnings
    net.forward(x, truth.reshape(2, -1))
    error, delta = cost_expected("sse", x, truth)
    np.testing.assert_allclose(net.layers[1].output, error, rtol=COST_RTOL, atol=COST_ATOL)
    np.testing.assert_allclose(net.layers[1].delta, delta, rtol=COST_RTOL, atol=COST_ATOL)


def test_cost_type_names_are_darknets():
    """Darknet's [cost] reads type= (sse, masked, L1, smooth); anything else is an error."""
    for kind in ("sse", "masked", "L1", "smooth"):
        probed_net(f"[cost]\ntype={kind}\n", 2, 2, 2)
    with pytest.raises(darknet_py.DarknetError, match="unknown cost type"):
        probed_net("[cost]\ntype=l1\n", 2, 2, 2)


# ------------------------------------------------------------------ [softmax]
# exp in float32 (libm) vs float64, normalised: a few ulp of values <= 1.
SOFTMAX_RTOL = 2e-6
SOFTMAX_ATOL = 2e-7


def softmax_expected(x, groups, temperature):
    z = _f64(x).reshape(x.shape[0], groups, -1) / temperature
    z = z - z.max(axis=2, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=2, keepdims=True)).reshape(x.shape)


@pytest.mark.parametrize("groups,temperature", [(1, 1.0), (1, 2.0), (3, 0.5), (5, 3.0), (15, 1.0)])
def test_softmax_groups_temperature(groups, temperature):
    c, h, w = 5, 3, 2  # 30 inputs per image: groups of 30, 10, 6, 2
    rng = np.random.default_rng(8)
    x = rng.normal(0, 2, (2, c, h, w)).astype(np.float32)
    body = f"[softmax]\ngroups={groups}\ntemperature={temperature}\n"
    net = probed_net(body, c, h, w, training=False)
    p = softmax_expected(x, groups, temperature)
    np.testing.assert_allclose(net.forward(x), p, rtol=SOFTMAX_RTOL, atol=SOFTMAX_ATOL)
    # Training with one-hot truth per group: delta = t - p, cost = sum over t != 0 of -log p
    # (Darknet's softmax_x_ent; with one-hot t it equals -sum t log p).
    net.training = True
    n = x[0].size // groups
    truth = np.zeros((2, groups, n), np.float32)
    hot = rng.integers(0, n, (2, groups))
    for b in range(2):
        for g in range(groups):
            truth[b, g, hot[b, g]] = 1
    truth = truth.reshape(2, -1)
    net.forward(x, truth)
    layer = net.layers[1]
    np.testing.assert_allclose(layer.delta.reshape(2, -1), truth - p.reshape(2, -1), rtol=SOFTMAX_RTOL,
                               atol=SOFTMAX_ATOL)
    expected_cost = -np.log(p.reshape(2, -1)[truth > 0]).sum()
    assert layer.cost == pytest.approx(expected_cost, rel=1e-5)
    got = backward_into_probe(net, 1, layer.delta, x)
    np.testing.assert_allclose(got.reshape(2, -1), truth - p.reshape(2, -1), rtol=SOFTMAX_RTOL, atol=SOFTMAX_ATOL)


def test_dropout_generator_state_round_trip():
    """rng_state (what a training checkpoint saves) restores the draws exactly; a state that
    is not one is refused and leaves the generator as it was."""
    net = probed_net("[dropout]\nprobability=0.5\n", 4, 10, 12)
    net.set_seed(5)
    x = dropout_input()
    net.forward(x)
    saved = net.rng_state
    second = net.forward(x) != 0
    third = net.forward(x) != 0
    assert not np.array_equal(second, third)
    net.rng_state = saved
    np.testing.assert_array_equal(net.forward(x) != 0, second)
    for bad in ("", "12 34", saved + " 7"):
        with pytest.raises(darknet_py.DarknetError, match="set_rng_state"):
            net.rng_state = bad
    np.testing.assert_array_equal(net.forward(x) != 0, third)


# Darknet's tree file: "name parent_index" per node; a softmax group is a maximal run of
# consecutive nodes with the same parent.
TREE = [("a", -1), ("b", -1), ("c", 0), ("d", 0), ("e", 0), ("f", 1), ("g", 1)]
TREE_GROUPS = [[0, 1], [2, 3, 4], [5, 6]]


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_tree_softmax_per_group_with_temperature(tmp_path, temperature):
    tree = tmp_path / "tiny.tree"
    tree.write_text("".join(f"{n} {p}\n" for n, p in TREE))
    body = f"[softmax]\ngroups=1\ntemperature={temperature}\ntree={tree}\n"
    net = probed_net(body, len(TREE), 1, 1, training=False)
    x = np.random.default_rng(12).normal(0, 2, (2, len(TREE), 1, 1)).astype(np.float32)
    expected = np.zeros((2, len(TREE)))
    for g in TREE_GROUPS:
        z = x.reshape(2, -1)[:, g].astype(np.float64) / temperature
        e = np.exp(z - z.max(axis=1, keepdims=True))
        expected[:, g] = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(net.forward(x).reshape(2, -1), expected, rtol=SOFTMAX_RTOL, atol=SOFTMAX_ATOL)
    # Training with WordTree truth: the path to leaf "d" (a, then d among c/d/e) labelled,
    # the b-group {f, g} unlabelled (-1234): no delta and no loss there.
    net.training = True
    truth = np.array([[1, 0, 0, 1, 0, -1234, -1234]] * 2, np.float32)
    net.forward(x, truth)
    labelled = truth != -1234
    delta = net.layers[1].delta.reshape(2, -1)
    np.testing.assert_allclose(delta[labelled], (truth - expected)[labelled], rtol=SOFTMAX_RTOL, atol=SOFTMAX_ATOL)
    assert (delta[~labelled] == 0).all()
    assert net.layers[1].cost == pytest.approx(-np.log(expected[truth == 1]).sum(), rel=1e-5)
