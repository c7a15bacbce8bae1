"""Convolution variants against a direct convolution written here in numpy (float64: one
einsum over the channels per kernel tap of the zero-padded input), not against the
project's other path:

- shapes: grouped (groups=2, 3), 5x5, pad=0, explicit padding=, stride 2, 1x1, and 3x3
  same-size convs on odd maps whose Winograd F(4x4, 3x3) tiles are cut at the right and
  bottom edges;
- forward in inference mode on every execution path (fast kernels, each ISA, reference
  kernels, Winograd forced on and off), with and without batch_normalize
  (y = scales * (conv - rolling_mean) / sqrt(rolling_variance + 1e-5) + biases, the
  project's declared BN epsilon, then the activation);
- forward in training mode (batch statistics: mean, variance over batch x space with
  Darknet's N - 1 divisor; rolling statistics .99 / .01);
- backward: weight_updates (= -dL/dW), bias_updates, scale_updates and the input delta
  (= -dL/dx) for an output delta r, without BN (plain chain rule) and with BN (Darknet's
  batch-norm backward: mean_delta, variance_delta, normalize_delta as Darknet defines them).

Output size is Darknet's (h + 2*pad - size) / stride + 1 (integer division); pad=1 means
padding = size / 2.
"""
import zlib

import numpy as np
import pytest

import darknet_py

BN_EPS = 1e-5  # the project's declared epsilon (csrc/kernels/batchnorm.hpp): sqrt(var + 1e-5)

# Tolerances are relative to the magnitude of the sum being formed: |got - expected| <=
# TOL * (|W| * |x| convolved, and likewise for what follows the conv) + 1e-7. float32 sums
# of K <= 150 products round to a few float32 units (6e-8) of that magnitude; measured
# (2-core x86 VM, AVX2 and plain kernels) <= 2.3e-7 on every GEMM / reference path, so 1e-6
# leaves ~4x. Winograd F(4x4,3x3) goes through transforms with coefficients up to 8 and
# 1/24: measured <= 1.6e-6, bound 6e-6.
GEMM_TOL = 1e-6
WINOGRAD_TOL = 6e-6
# Backward: sums over batch x space (up to 2*11*13 = 286 products); measured <= 1.6e-7.
BACKWARD_TOL = 1e-6
# BN backward: the mean/variance corrections nearly cancel, so the bound's magnitude adds
# |r| * scale/std times the |x| (or |W|) sums; measured <= 6e-8 of that.
BN_BACKWARD_TOL = 1e-6


# ---------------------------------------------------------------- numpy reference
def out_size(n, size, stride, pad):
    return (n + 2 * pad - size) // stride + 1


def taps(x, size, stride, pad, ho, wo):
    """(ky, kx, view of the padded input that kernel tap (ky, kx) multiplies: (B, C, ho, wo))."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for ky in range(size):
        for kx in range(size):
            yield ky, kx, xp[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]


def conv_direct(x, w, stride, pad, groups):
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    b, c, h, wd = x.shape
    f, cg, size, _ = w.shape
    fg = f // groups
    ho, wo = out_size(h, size, stride, pad), out_size(wd, size, stride, pad)
    out = np.zeros((b, f, ho, wo))
    for ky, kx, patch in taps(x, size, stride, pad, ho, wo):
        for g in range(groups):
            out[:, g * fg:(g + 1) * fg] += np.einsum("bchw,fc->bfhw", patch[:, g * cg:(g + 1) * cg],
                                                      w[g * fg:(g + 1) * fg, :, ky, kx])
    return out


def conv_backward_direct(x, w, r, stride, pad, groups):
    """(dW, dx) of L = -sum(r * conv(x, w)), negated: dW = sum r * patch, dx = transposed conv of r."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    r = np.asarray(r, np.float64)
    b, c, h, wd = x.shape
    f, cg, size, _ = w.shape
    fg = f // groups
    ho, wo = r.shape[2:]
    dw = np.zeros_like(w)
    dxp = np.zeros((b, c, h + 2 * pad, wd + 2 * pad))
    for ky, kx, patch in taps(x, size, stride, pad, ho, wo):
        for g in range(groups):
            rg = r[:, g * fg:(g + 1) * fg]
            dw[g * fg:(g + 1) * fg, :, ky, kx] = np.einsum("bfhw,bchw->fc", rg, patch[:, g * cg:(g + 1) * cg])
            dxp[:, g * cg:(g + 1) * cg, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride] += \
                np.einsum("bfhw,fc->bchw", rg, w[g * fg:(g + 1) * fg, :, ky, kx])
    return dw, dxp[:, :, pad:pad + h, pad:pad + wd]


def leaky(v):
    return np.where(v > 0, v, .1 * v)


def leaky_grad_from_output(y):
    return np.where(y > 0, 1.0, .1)


# ---------------------------------------------------------------- cases
# name: (w, h, c, filters, size, stride, cfg padding line, padding in pixels, groups)
CASES = {
    "3x3_same_odd_7x5": (7, 5, 3, 4, 3, 1, "pad=1", 1, 1),
    "3x3_same_odd_13x10": (13, 10, 5, 6, 3, 1, "pad=1", 1, 1),
    "3x3_same_tiny_3x2": (3, 2, 4, 3, 3, 1, "pad=1", 1, 1),
    "3x3_pad0": (9, 7, 3, 5, 3, 1, "pad=0", 0, 1),
    "3x3_stride2_odd": (11, 9, 3, 4, 3, 2, "pad=1", 1, 1),
    "5x5_pad1": (9, 8, 3, 4, 5, 1, "pad=1", 2, 1),  # pad=1 means size/2 = 2
    "5x5_padding1": (9, 8, 3, 4, 5, 1, "padding=1", 1, 1),
    "5x5_stride2_pad0": (12, 11, 2, 3, 5, 2, "pad=0", 0, 1),
    "groups2_3x3": (8, 6, 4, 6, 3, 1, "pad=1", 1, 2),
    "groups3_3x3_stride2": (9, 7, 6, 9, 3, 2, "pad=1", 1, 3),
    "groups3_5x5": (7, 8, 6, 3, 5, 1, "pad=1", 2, 3),
    "1x1": (5, 4, 7, 6, 1, 1, "pad=0", 0, 1),
    "1x1_groups2": (5, 4, 6, 4, 1, 1, "pad=0", 0, 2),
}
WINOGRAD_CASES = [n for n, (_, _, _, _, size, stride, _, pad, groups) in CASES.items()
                  if size == 3 and stride == 1 and pad == 1 and groups == 1]
BATCH = 2


def make_net(name, bn, act="leaky", training=False, batch=BATCH):
    w, h, c, filters, size, stride, pad_line, _, groups = CASES[name]
    text = (f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n"
            f"[convolutional]\nbatch_normalize={int(bn)}\nfilters={filters}\nsize={size}\nstride={stride}\n"
            f"{pad_line}\ngroups={groups}\nactivation={act}\n")
    net = darknet_py.Network.from_text(text, f"{name}.cfg", batch=batch)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    p = net.layers[0].params
    p["weights"][...] = rng.normal(0, 1, p["weights"].shape)
    p["biases"][...] = rng.uniform(-.5, .5, p["biases"].shape)
    if bn:
        p["scales"][...] = rng.uniform(.5, 1.5, p["scales"].shape)
        p["rolling_mean"][...] = rng.uniform(-1, 1, p["rolling_mean"].shape)
        p["rolling_variance"][...] = rng.uniform(.5, 4, p["rolling_variance"].shape)
    x = rng.uniform(-1, 1, (batch, c, h, w)).astype(np.float32)
    net.training = training
    return net, x


def expected_inference(net, x, name, bn):
    _, _, _, _, size, stride, _, pad, groups = CASES[name]
    p = {k: np.asarray(v, np.float64) for k, v in net.layers[0].params.items()}
    conv = conv_direct(x, p["weights"], stride, pad, groups)
    mag = conv_direct(np.abs(x), np.abs(p["weights"]), stride, pad, groups)  # rounding scale
    per = lambda v: v[None, :, None, None]
    if bn:
        inv = p["scales"] / np.sqrt(p["rolling_variance"] + BN_EPS)
        pre = per(inv) * (conv - per(p["rolling_mean"])) + per(p["biases"])
        mag = per(np.abs(inv)) * (mag + per(np.abs(p["rolling_mean"]))) + per(np.abs(p["biases"]))
    else:
        pre = conv + per(p["biases"])
        mag = mag + per(np.abs(p["biases"]))
    return leaky(pre), mag


def check_bound(got, expected, mag, tol, what):
    err = np.abs(np.asarray(got, np.float64) - expected)
    bound = tol * mag + 1e-7
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    assert (err <= bound).all(), (f"{what}: {(err > bound).sum()} of {err.size} out of bound; worst at {worst}: "
                                  f"got {got[worst]}, expected {expected[worst]}, err {err[worst]:.3g}, "
                                  f"bound {bound[worst]:.3g}")


# ---------------------------------------------------------------- inference forward
def available_isas():
    """The kernel families this CPU runs (the best one and every one below it)."""
    from darknet_py import _core
    best = _core.cpu_kernel_best()
    order = ["plain", "avx2", "avx512"]
    return order[:order.index(best) + 1] if best in order else ["plain"]


# Parametrised over what this CPU has, so nothing is skipped.
PATHS = ["fast", "reference", "winograd_off"] + [f"isa_{i}" for i in available_isas()]


def set_path(net, path):
    if path == "reference":
        net.set_exec_options(reference_kernels=True)
    elif path.startswith("isa_"):
        net.set_exec_options(isa=path[4:])
    elif path.startswith("winograd_"):
        net.set_exec_options(winograd=path.split("_")[1])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bn", [False, True], ids=["nobn", "bn"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_inference_forward_matches_direct_convolution(name, bn, path):
    net, x = make_net(name, bn)
    set_path(net, path)
    got = net.forward(x)
    expected, mag = expected_inference(net, x, name, bn)
    check_bound(got, expected, mag, GEMM_TOL, f"{name} bn={bn} path={path}")


@pytest.mark.parametrize("isa", available_isas())
@pytest.mark.parametrize("bn", [False, True], ids=["nobn", "bn"])
@pytest.mark.parametrize("name", WINOGRAD_CASES)
def test_winograd_forced_on_matches_direct_convolution(name, bn, isa):
    """Winograd is chosen only for 3x3 / stride 1 / pad 1 / groups 1 and, in "auto", large
    layers: "on" forces it here, on maps whose sizes are not multiples of the 4x4 tile."""
    net, x = make_net(name, bn)
    net.set_exec_options(winograd="on", isa=isa)
    assert net.layers[0].uses_winograd
    got = net.forward(x)
    expected, mag = expected_inference(net, x, name, bn)
    check_bound(got, expected, mag, WINOGRAD_TOL, f"{name} bn={bn} winograd isa={isa}")
    net.set_exec_options(winograd="off")
    assert not net.layers[0].uses_winograd


def test_winograd_is_not_used_where_it_does_not_apply():
    for name in set(CASES) - set(WINOGRAD_CASES):
        net, _ = make_net(name, False)
        net.set_exec_options(winograd="on")
        assert not net.layers[0].uses_winograd, name


# ---------------------------------------------------------------- training forward and backward
def bn_train_reference(conv, p, r_after_act):
    """Darknet's batch-norm training forward and backward, float64, per filter over batch x space.
    Returns (output before activation, x_norm, mean, variance, delta into the conv, scale_updates)."""
    n = conv.shape[0] * conv.shape[2] * conv.shape[3]
    per = lambda v: v[None, :, None, None]
    mean = conv.mean(axis=(0, 2, 3))
    var = ((conv - per(mean)) ** 2).sum(axis=(0, 2, 3)) / (n - 1)  # Darknet's variance: N - 1
    x_norm = (conv - per(mean)) / np.sqrt(per(var) + BN_EPS)
    pre = per(p["scales"]) * x_norm + per(p["biases"])
    return pre, x_norm, mean, var, n


def bn_backward_reference(conv, x_norm, mean, var, n, scales, delta):
    """delta: the delta after the activation gradient. Darknet's backward_batchnorm:
    scale_updates = sum delta * x_norm; delta *= scales;
    mean_delta = sum delta * -1/sqrt(var + eps); variance_delta = sum delta * (x - mean) * -.5 (var + eps)^-1.5;
    delta = delta / sqrt(var + eps) + variance_delta * 2 (x - mean) / n + mean_delta / n."""
    per = lambda v: v[None, :, None, None]
    scale_updates = (delta * x_norm).sum(axis=(0, 2, 3))
    d = delta * per(scales)
    mean_delta = (d * (-1 / np.sqrt(per(var) + BN_EPS))).sum(axis=(0, 2, 3))
    variance_delta = (d * (conv - per(mean)) * -.5 * (per(var) + BN_EPS) ** -1.5).sum(axis=(0, 2, 3))
    d = d / np.sqrt(per(var) + BN_EPS) + per(variance_delta) * 2 * (conv - per(mean)) / n + per(mean_delta) / n
    return d, scale_updates


# "fast": the CPU's training kernels (the weight gradient one packed GEMM per image, summed
# in image order, where batch >= 2); "reference": the plain im2col + GEMM path.
@pytest.mark.parametrize("kernels", ["fast", "reference"])
@pytest.mark.parametrize("bn", [False, True], ids=["nobn", "bn"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_training_forward_and_backward_match_direct(name, bn, kernels):
    _, _, c, filters, size, stride, _, pad, groups = CASES[name]
    # A probe in front (1x1 identity, linear) so the input delta of the layer under test is readable.
    w, h = CASES[name][:2]
    text = (f"[net]\nbatch={BATCH}\nwidth={w}\nheight={h}\nchannels={c}\n"
            f"[convolutional]\nfilters={c}\nsize=1\nactivation=linear\n")
    ref_net, x = make_net(name, bn)
    _, _, _, _, _, _, pad_line, _, _ = CASES[name]
    text += (f"[convolutional]\nbatch_normalize={int(bn)}\nfilters={filters}\nsize={size}\nstride={stride}\n"
             f"{pad_line}\ngroups={groups}\nactivation=leaky\n")
    net = darknet_py.Network.from_text(text, f"{name}_train.cfg", batch=BATCH)
    probe = net.layers[0].params
    probe["weights"][...] = np.eye(c).reshape(c, c, 1, 1)
    probe["biases"][...] = 0
    for k, v in ref_net.layers[0].params.items():
        net.layers[1].params[k][...] = v
    p = {k: np.asarray(v, np.float64).copy() for k, v in net.layers[1].params.items()}
    net.training = True
    net.set_exec_options(reference_kernels=kernels == "reference")
    y = net.forward(x)

    conv = conv_direct(x, p["weights"], stride, pad, groups)
    mag = conv_direct(np.abs(x), np.abs(p["weights"]), stride, pad, groups)
    per = lambda v: v[None, :, None, None]
    if bn:
        pre, x_norm, mean, var, n = bn_train_reference(conv, p, None)
        bufs = net.layers[1].buffers
        np.testing.assert_allclose(bufs["mean"], mean, rtol=0, atol=GEMM_TOL * mag.max(), err_msg="batch mean")
        np.testing.assert_allclose(bufs["variance"], var, rtol=1e-5, atol=GEMM_TOL * mag.max() ** 2,
                                   err_msg="batch variance (N - 1)")
        np.testing.assert_allclose(net.layers[1].params["rolling_mean"], .99 * p["rolling_mean"] + .01 * mean,
                                   rtol=1e-6, atol=1e-6, err_msg="rolling mean")
        np.testing.assert_allclose(net.layers[1].params["rolling_variance"],
                                   .99 * p["rolling_variance"] + .01 * var, rtol=1e-5, atol=1e-6,
                                   err_msg="rolling variance")
        # normalised values are O(1): their error is the conv's relative to the batch std
        out_mag = per(np.abs(p["scales"]) / np.sqrt(var + BN_EPS)) * (mag + mag.mean()) + 1
    else:
        pre = conv + per(p["biases"])
        out_mag = mag + per(np.abs(p["biases"]))
    check_bound(y, leaky(pre), out_mag, GEMM_TOL, f"{name} bn={bn} {kernels} training forward")

    # backward: output delta r; the activation gradient comes from the layer's own output
    r = np.random.default_rng(1).normal(0, 1, y.shape)
    net._net.set_layer_delta(1, r.astype(np.float32).ravel())
    net._net.set_layer_delta(0, np.zeros(x.size, np.float32))
    for k, v in net.layers[1].buffers.items():
        if k.endswith("_updates"):
            v[...] = 0
    net._net.backward_layer(1, x)
    delta = r * leaky_grad_from_output(leaky(pre))
    bufs = net.layers[1].buffers
    np.testing.assert_allclose(bufs["bias_updates"], delta.sum(axis=(0, 2, 3)), rtol=BACKWARD_TOL,
                               atol=BACKWARD_TOL * np.abs(delta).sum(axis=(0, 2, 3)).max(), err_msg="bias_updates")
    tol = BACKWARD_TOL
    if bn:
        delta_bn, scale_updates = bn_backward_reference(conv, x_norm, mean, var, n, p["scales"], delta)
        np.testing.assert_allclose(bufs["scale_updates"], scale_updates, rtol=0,
                                   atol=BN_BACKWARD_TOL * np.abs(delta * x_norm).sum(axis=(0, 2, 3)).max(),
                                   err_msg="scale_updates")
        delta = delta_bn
        tol = BN_BACKWARD_TOL
    dw, dx = conv_backward_direct(x, p["weights"], delta, stride, pad, groups)
    dw_mag, dx_mag = conv_backward_direct(np.abs(x), np.abs(p["weights"]), np.abs(delta), stride, pad, groups)
    if bn:  # the BN-corrected delta is a difference of O(|r| scale/std) terms
        scale_mag = np.abs(r).max() * (np.abs(p["scales"]) / np.sqrt(var + BN_EPS)).max()
        dw_mag = dw_mag + scale_mag * conv_backward_direct(np.abs(x), np.abs(p["weights"]), np.ones_like(delta),
                                                           stride, pad, groups)[0]
        dx_mag = dx_mag + scale_mag * conv_backward_direct(np.abs(x), np.abs(p["weights"]), np.ones_like(delta),
                                                           stride, pad, groups)[1]
    check_bound(bufs["weight_updates"], dw, dw_mag, tol, f"{name} bn={bn} {kernels} weight_updates")
    check_bound(net.layers[0].delta, dx, dx_mag, tol, f"{name} bn={bn} {kernels} input delta")


def test_direct_reference_is_a_convolution():
    """The numpy reference itself: a one-hot kernel tap shifts the (padded) input; its
    backward is its adjoint (<conv(x), r> == <x, dx(r)> and == <w, dw(r)>)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 2, 5, 6))
    w = np.zeros((2, 2, 3, 3))
    w[0, 1, 0, 2] = 1  # output 0 at (i, j) = input channel 1 at (i - 1, j + 1)
    out = conv_direct(x, w, 1, 1, 1)
    np.testing.assert_array_equal(out[0, 0, 1:, :-1], x[0, 1, :-1, 1:])
    np.testing.assert_array_equal(out[0, 1], 0)
    for stride, pad, groups, size in [(1, 1, 1, 3), (2, 0, 2, 3), (2, 2, 1, 5)]:
        x = rng.normal(size=(2, 4, 9, 7))
        w = rng.normal(size=(6, 4 // groups, size, size))
        out = conv_direct(x, w, stride, pad, groups)
        r = rng.normal(size=out.shape)
        dw, dx = conv_backward_direct(x, w, r, stride, pad, groups)
        assert np.sum(out * r) == pytest.approx(np.sum(x * dx), rel=1e-12)
        assert np.sum(out * r) == pytest.approx(np.sum(w * dw), rel=1e-12)


# ---------------------------------------------------------------- the direct kernel's variants
# (W, H, C, F, batch): pixel tails of 1 and 2 past the filter-vector kernel's 3-pixel tiles,
# rows longer than its 96-pixel chunk, partial 32-filter blocks, 8-wide band tails.
DIRECT_VARIANT_SHAPES = [(19, 3, 8, 17, 1), (50, 4, 16, 32, 2), (242, 2, 9, 33, 1), (7, 5, 24, 64, 1),
                         (1, 1, 8, 40, 1), (26, 3, 64, 48, 1)]


@pytest.mark.parametrize("shape", DIRECT_VARIANT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_direct_kernel_variants_bit_identical(shape):
    """The direct 3x3 kernel's two variants (weights broadcast with pixel vectors, and the
    swapped roles for <= 64 filters) against the numpy conv here, and against each other bit
    for bit: both form every output as the same FMA chain in the same (channel, tap) order."""
    from darknet_py import _core, _testing
    w, h, c, f, batch = shape
    rng = np.random.default_rng(zlib.crc32(repr(shape).encode()))
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, 3, 3)).astype(np.float32)
    scale = rng.uniform(.5, 1.5, f).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    conv = conv_direct(x, wt, 1, 1, 1)
    expected = leaky(scale[None, :, None, None] * conv + bias[None, :, None, None])
    mag = scale[None, :, None, None] * conv_direct(np.abs(x), np.abs(wt), 1, 1, 1) + np.abs(bias)[None, :, None, None]
    isas = [i for i in available_isas() if i != "plain"]
    if not isas:
        pytest.skip("the direct kernel needs AVX2")  # never on the CI machines (AVX2 or better)
    try:
        for isa in isas:
            _core.set_cpu_kernel(isa)
            bands = _testing.conv3x3_direct(x, wt, scale, bias, "leaky", "bands")
            vectors = _testing.conv3x3_direct(x, wt, scale, bias, "leaky", "filter_vectors")
            check_bound(bands, expected, mag, GEMM_TOL, f"bands {shape} {isa}")
            check_bound(vectors, expected, mag, GEMM_TOL, f"filter_vectors {shape} {isa}")
            assert np.array_equal(bands.view(np.uint32), vectors.view(np.uint32)), f"{shape} {isa}: variants differ"
    finally:
        _core.set_cpu_kernel("auto")


def test_direct_kernel_variant_errors():
    from darknet_py import DarknetError, _testing
    x = np.zeros((1, 8, 4, 4), np.float32)
    ones = np.ones(65, np.float32)
    with pytest.raises(DarknetError, match="at most 64 filters"):
        _testing.conv3x3_direct(x, np.zeros((65, 8, 3, 3), np.float32), ones, ones, "linear", "filter_vectors")
    with pytest.raises(DarknetError, match="variant"):
        _testing.conv3x3_direct(x, np.zeros((4, 8, 3, 3), np.float32), ones[:4], ones[:4], "linear", "fast")


# ---------------------------------------------------------------- the fused 2x2 max pool
# (W, H, C, F, batch): pooled rows of 1..9 outputs (vector tails), rows past the 96-pixel
# chunk, 3 channels (bands' rule), partial filter blocks, maps taller than a thread's chunk.
FUSED_POOL_SHAPES = [(2, 2, 3, 16, 1), (18, 6, 8, 17, 2), (34, 40, 3, 32, 1), (200, 6, 16, 32, 1),
                     (14, 52, 32, 64, 1), (30, 10, 24, 40, 2)]


@pytest.mark.parametrize("act", ["leaky", "linear", "logistic"])
@pytest.mark.parametrize("variant", ["bands", "filter_vectors"])
@pytest.mark.parametrize("shape", FUSED_POOL_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_direct_fused_maxpool_is_the_pool_of_the_conv(shape, variant, act):
    """The kernel's pooled output equals Darknet's 2x2 stride-2 max pool of its unfused output
    bit for bit. Scales of both signs: a pool taken before the epilogue would pick the wrong
    pixel wherever a scale is negative."""
    from darknet_py import _core, _testing
    if not [i for i in available_isas() if i != "plain"]:
        pytest.skip("the direct kernel needs AVX2")
    w, h, c, f, batch = shape
    rng = np.random.default_rng(zlib.crc32(repr((shape, act)).encode()))
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((f, c, 3, 3)).astype(np.float32)
    scale = rng.uniform(-1.5, 1.5, f).astype(np.float32)
    bias = rng.standard_normal(f).astype(np.float32)
    for isa in [i for i in available_isas() if i != "plain"]:
        try:
            _core.set_cpu_kernel(isa)
            full = _testing.conv3x3_direct(x, wt, scale, bias, act, variant)
            pooled = _testing.conv3x3_direct(x, wt, scale, bias, act, variant, maxpool=True)
        finally:
            _core.set_cpu_kernel("auto")
        expected = full.reshape(batch, f, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        assert pooled.shape == expected.shape
        assert np.array_equal(pooled.view(np.uint32), expected.view(np.uint32)), f"{shape} {variant} {act} {isa}"


def test_direct_fused_maxpool_errors():
    from darknet_py import DarknetError, _core, _testing
    if _core.cpu_kernel_best() == "plain":
        pytest.skip("the direct kernel needs AVX2")
    ones = np.ones(4, np.float32)
    with pytest.raises(DarknetError, match="even output"):
        _testing.conv3x3_direct(np.zeros((1, 3, 5, 4), np.float32), np.zeros((4, 3, 3, 3), np.float32), ones, ones,
                                "linear", maxpool=True)
