"""The CUDA kernels of cuda/conv_fast.cuh and cuda/batchnorm.cuh, run on the CPU.

tests/cuda_emulation/*_host.cpp compile the kernels with g++ (emulation.hpp: one std::thread
per CUDA thread, a barrier for __syncthreads, a warp barrier around a shared table for
__shfl_down_sync, nvcuda::wmma's TF32 API with its alignment rules checked, cp.async copies that
land only when a wait_group retires them); the hardware itself and the timings are what only a
GPU run checks. The TF32 path is held against float64 convolutions of the TF32-rounded operands
within 1e-5, so every fragment must land where it belongs.

Convolutions: the same planner, loaders, pipeline stages, split-K partials and epilogue run as
on the device, and each result is held against a float64 numpy convolution: forward (raw and
with folded batch norm, bias and activation), weight gradient and input gradient, on odd shapes
(channels and filters not multiples of 8 or 32, non-square maps, stride 2, 1x1, groups, valid
padding) and with K split or not. Tolerance: 1e-4 of the largest reference value.

Element-wise ops (fill, axpy, sgd, activate, gradient): the 128-bit kernel (float4 groups,
32-bit indices, the n % 4 tail) and the scalar fallback for unaligned arrays, against numpy of
the CPU's formulas, exactly (the same float operations).

Batch norm: the multi-block per-filter sums (one chunk and several) and the fused training
passes in CudaBackend's launch sequences, against float64 numpy of Darknet's formulas
(variance with N-1; mean_delta, variance_delta, normalize_delta). Tolerance: 1e-5 of each
array's largest value.
"""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted((REPO / "tests" / "cuda_emulation").glob("*_host.cpp"))
TOL = 1e-4
LINEAR, LEAKY = 3, 7  # dn::Activation (csrc/kernels/activations.hpp)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    lib = tmp_path_factory.mktemp("emu") / "conv_fast_host.so"
    cmd = [cxx, "-std=c++17", "-O1", "-pthread", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
           "-Wno-unknown-pragmas", f"-I{REPO / 'csrc'}", f"-I{REPO / 'cuda'}", *map(str, SOURCES), "-o", str(lib)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    h = ctypes.CDLL(str(lib))
    fp = ctypes.POINTER(ctypes.c_float)
    ip = ctypes.POINTER(ctypes.c_int)
    h.emu_conv.argtypes = [ctypes.c_int] * 10 + [fp, fp, fp, fp, fp, fp, fp, ctypes.c_int, ctypes.c_int, ip,
                                                  ctypes.c_char_p, ctypes.c_int]
    h.emu_conv.restype = ctypes.c_int
    h.emu_plan.argtypes = [ctypes.c_int] * 6 + [ip, ip]
    h.emu_set_tf32.argtypes = [ctypes.c_int]
    h.emu_set_tf32(0)
    h.emu_conv_stats.argtypes = [ctypes.c_int] * 9 + [fp, fp, fp, fp, fp, ctypes.c_int, ip, ip, ctypes.c_char_p,
                                                      ctypes.c_int]
    h.emu_plan.restype = ctypes.c_int
    i, c = ctypes.c_int, ctypes.c_char_p
    h.emu_bn_mean_variance.argtypes = [fp, i, i, i, fp, fp, i, ip, c, i]
    h.emu_bn_backward_scale.argtypes = [fp, fp, i, i, i, fp, i, c, i]
    h.emu_bn_backward_delta.argtypes = [fp, fp, fp, i, i, i, fp, fp, fp, i, c, i]
    h.emu_bn_train_normalize.argtypes = [fp, fp, fp, fp, i, i, i, i, fp, fp, fp, c, i]
    h.emu_bn_train_backward.argtypes = [fp, i, fp, fp, fp, fp, fp, i, i, i, fp, fp, fp, fp, fp, i, ip, c, i]
    f = ctypes.c_float
    h.emu_elementwise.argtypes = [i, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, f, f, f, i]
    h.emu_elementwise.restype = i
    return h


def _ptr(a):
    return None if a is None else a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


def run(h, op, shape, inp, a, out, multiprocessors, bias=None, bn=None, act=LINEAR):
    batch, c, hh, w, filters, size, stride, pad, groups = shape
    err = ctypes.create_string_buffer(512)
    splits = ctypes.c_int(0)
    bn = bn or (None, None, None)
    rc = h.emu_conv(op, batch, c, hh, w, filters, size, stride, pad, groups, _ptr(inp), _ptr(a), _ptr(out),
                    _ptr(bias), _ptr(bn[0]), _ptr(bn[1]), _ptr(bn[2]), act, multiprocessors, ctypes.byref(splits),
                    err, len(err))
    assert rc == 0, err.value.decode()
    return splits.value


def out_size(n, size, stride, pad):
    return (n + 2 * pad - size) // stride + 1


def im2col(x, size, stride, pad):
    """(batch, c, h, w) -> (batch, c*size*size, oh*ow), Darknet's row order, float64."""
    b, c, h, w = x.shape
    oh, ow = out_size(h, size, stride, pad), out_size(w, size, stride, pad)
    xp = np.zeros((b, c, h + 2 * pad, w + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + w] = x
    cols = np.empty((b, c, size, size, oh, ow))
    for ky in range(size):
        for kx in range(size):
            cols[:, :, ky, kx] = xp[:, :, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride]
    return cols.reshape(b, c * size * size, oh * ow), oh, ow


def conv_ref(x, wts, shape):
    batch, c, h, w, filters, size, stride, pad, groups = shape
    cg, fg = c // groups, filters // groups
    out = []
    for g in range(groups):
        cols, oh, ow = im2col(x[:, g * cg:(g + 1) * cg].astype(np.float64), size, stride, pad)
        wg = wts[g * fg:(g + 1) * fg].reshape(fg, -1).astype(np.float64)
        out.append(np.einsum("fk,bkn->bfn", wg, cols))
    return np.concatenate(out, axis=1).reshape(batch, filters, oh, ow)


def weight_grad_ref(x, delta, shape):
    batch, c, h, w, filters, size, stride, pad, groups = shape
    cg, fg = c // groups, filters // groups
    grads = []
    for g in range(groups):
        cols, _, _ = im2col(x[:, g * cg:(g + 1) * cg].astype(np.float64), size, stride, pad)
        d = delta[:, g * fg:(g + 1) * fg].reshape(batch, fg, -1).astype(np.float64)
        grads.append(np.einsum("bfn,bkn->fk", d, cols))
    return np.concatenate(grads, axis=0).reshape(filters, cg, size, size)


def input_grad_ref(delta, wts, shape):
    """The adjoint of the convolution (col2im of W^T delta), float64."""
    batch, c, h, w, filters, size, stride, pad, groups = shape
    assert groups == 1
    oh, ow = out_size(h, size, stride, pad), out_size(w, size, stride, pad)
    cols = np.einsum("fk,bfn->bkn", wts.reshape(filters, -1).astype(np.float64),
                     delta.reshape(batch, filters, -1).astype(np.float64)).reshape(batch, c, size, size, oh, ow)
    xp = np.zeros((batch, c, h + 2 * pad, w + 2 * pad))
    for ky in range(size):
        for kx in range(size):
            xp[:, :, ky:ky + stride * oh:stride, kx:kx + stride * ow:stride] += cols[:, :, ky, kx]
    return xp[:, :, pad:pad + h, pad:pad + w]


def close(got, ref, what, tol=TOL):
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(got.astype(np.float64) - ref).max()) / scale
    assert err <= tol, f"{what}: max error {err:.2e} of the largest value (tolerance {tol:g})"


# batch, c, h, w, filters, size, stride, pad, groups
SHAPES = [
    (2, 3, 7, 9, 5, 3, 1, 1, 1),       # few channels and filters, non-square, K = 27 (scalar weight copies)
    (1, 10, 11, 6, 40, 3, 2, 1, 1),    # stride 2, 40 filters (64-row tile)
    (2, 17, 5, 7, 70, 1, 1, 0, 1),     # 1x1, 70 filters (128-row tile), K = 17
    (1, 8, 6, 6, 16, 1, 1, 0, 1),      # 1x1, K = 8 (16-byte weight copies)
    (2, 12, 6, 5, 8, 3, 1, 1, 2),      # groups
    (1, 6, 9, 8, 33, 3, 1, 0, 1),      # valid padding, 33 filters
    (3, 5, 13, 13, 130, 3, 1, 1, 1),   # 13x13, 130 filters: two row tiles, N spanning images
    (1, 4, 5, 6, 7, 5, 1, 2, 1),       # 5x5 'same'
    (2, 40, 8, 7, 24, 3, 1, 1, 1),     # forward K = 360: split on a big device
    (4, 3, 20, 17, 10, 3, 1, 1, 1),    # weight-gradient K = 4 * 340: split on a big device
]


def expect_split(gemm_k, multiprocessors, splits):
    """On a 132-SM device a GEMM of a few tiles with K >= 8 k-tiles is split; on 1 SM never."""
    if multiprocessors == 1:
        assert splits == 1
    elif gemm_k >= 8 * 32:
        assert splits > 1


def shape_id(s):
    return "b{}c{}_{}x{}_f{}_k{}s{}p{}g{}".format(*s)


def make(shape, seed):
    batch, c, h, w, filters, size, stride, pad, groups = shape
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (batch, c, h, w)).astype(np.float32)
    wts = rng.uniform(-1, 1, (filters, c // groups, size, size)).astype(np.float32)
    oh, ow = out_size(h, size, stride, pad), out_size(w, size, stride, pad)
    return rng, x, wts, oh, ow


@pytest.mark.parametrize("multiprocessors", [1, 132], ids=["whole-K", "split-K"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_forward_raw_and_inference(emu, shape, multiprocessors):
    batch, c, h, w, filters, size, stride, pad, groups = shape
    rng, x, wts, oh, ow = make(shape, 1)
    ref = conv_ref(x, wts, shape)
    out = np.full((batch, filters, oh, ow), np.nan, np.float32)
    splits = run(emu, 1, shape, x, wts, out, multiprocessors)
    close(out, ref, f"raw forward ({splits} splits)")
    expect_split(c // groups * size * size, multiprocessors, splits)
    # Inference: folded batch norm, bias, leaky.
    bias = rng.uniform(-1, 1, filters).astype(np.float32)
    gamma = rng.uniform(-2, 2, filters).astype(np.float32)  # negative scales too
    mean = rng.uniform(-1, 1, filters).astype(np.float32)
    var = rng.uniform(.1, 2, filters).astype(np.float32)
    out[:] = np.nan
    run(emu, 0, shape, x, wts, out, multiprocessors, bias=bias, bn=(gamma, mean, var), act=LEAKY)
    s = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + 1e-5)
    y = ref * s[None, :, None, None] + (bias - mean * s)[None, :, None, None]
    close(out, np.where(y > 0, y, .1 * y), "inference forward")
    out[:] = np.nan
    run(emu, 0, shape, x, wts, out, multiprocessors, bias=bias)  # no batch norm, linear
    close(out, ref + bias[None, :, None, None], "inference forward, bias only")


def tf32(a):
    """Operands as the kernels round them (__float_to_tf32: nearest, ties away from zero)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    finite = (u & 0x7f800000) != 0x7f800000
    u = np.where(finite, (u + 0x1000) & 0xffffe000, u).astype(np.uint32)
    return u.view(np.float32)


@pytest.mark.parametrize("multiprocessors", [1, 132], ids=["whole-K", "split-K"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_tf32_tensor_core_path(emu, shape, multiprocessors):
    """The TF32 path (wmma fragments: warp tiling, row- and column-major B, the C tile's store)
    through emulation.hpp's wmma, against float64 convolutions of the TF32-rounded operands: the
    fragments must land where the FP32 path's register tiles do (only float accumulation order
    differs, within 1e-5)."""
    batch, c, h, w, filters, size, stride, pad, groups = shape
    rng, x, wts, oh, ow = make(shape, 8)
    emu.emu_set_tf32(1)
    try:
        out = np.full((batch, filters, oh, ow), np.nan, np.float32)
        splits = run(emu, 1, shape, x, wts, out, multiprocessors)
        ref = conv_ref(tf32(x), tf32(wts), shape)
        assert np.abs(ref - conv_ref(x, wts, shape)).max() > 0  # the rounding is visible at all
        close_tf32 = lambda got, want, what: close(got, want, what, tol=1e-5)  # noqa: E731
        close_tf32(out, ref, f"TF32 forward ({splits} splits)")
        delta = rng.uniform(-1, 1, (batch, filters, oh, ow)).astype(np.float32)
        grad = np.zeros(wts.shape, np.float32)
        run(emu, 2, shape, x, delta, grad, multiprocessors)
        close_tf32(grad, weight_grad_ref(tf32(x), tf32(delta), shape), "TF32 weight gradient")
        if stride == 1 and groups == 1 and pad == size // 2:
            prev = np.zeros(x.shape, np.float32)
            run(emu, 3, shape, delta, wts, prev, multiprocessors)
            close_tf32(prev, input_grad_ref(tf32(delta), tf32(wts), shape), "TF32 input gradient")
    finally:
        emu.emu_set_tf32(0)


@pytest.mark.parametrize("multiprocessors", [1, 132], ids=["whole-K", "split-K"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_training_forward_with_batch_statistics(emu, shape, multiprocessors):
    """The raw forward of a batch-norm layer with its mean and variance (N-1) per filter from the
    epilogue's per-tile sums, or from the batch-norm reduction where K is split."""
    batch, c, h, w, filters, size, stride, pad, groups = shape
    rng, x, wts, oh, ow = make(shape, 4)
    ref = conv_ref(x, wts, shape)
    out = np.full((batch, filters, oh, ow), np.nan, np.float32)
    mean = np.full(filters, np.nan, np.float32)
    var = np.full(filters, np.nan, np.float32)
    splits, from_epilogue = ctypes.c_int(0), ctypes.c_int(0)
    err = ctypes.create_string_buffer(512)
    rc = emu.emu_conv_stats(batch, c, h, w, filters, size, stride, pad, groups, _ptr(x), _ptr(wts), _ptr(out),
                            _ptr(mean), _ptr(var), multiprocessors, ctypes.byref(splits), ctypes.byref(from_epilogue),
                            err, len(err))
    assert rc == 0, err.value.decode()
    assert from_epilogue.value == (splits.value == 1)
    close(out, ref, "raw forward")
    n = batch * oh * ow
    m64 = ref.sum(axis=(0, 2, 3)) / n
    v64 = ((ref - m64[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / (n - 1)
    for got, want, what in ((mean, m64, "mean"), (var, v64, "variance")):
        err_rel = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-30)
        assert err_rel <= 1e-5, f"{what} ({'epilogue' if from_epilogue.value else 'reduction'}): {err_rel:.2e}"


@pytest.mark.parametrize("multiprocessors", [1, 132], ids=["whole-K", "split-K"])
@pytest.mark.parametrize("shape", SHAPES, ids=shape_id)
def test_weight_gradient_accumulates(emu, shape, multiprocessors):
    batch, c, h, w, filters, size, stride, pad, groups = shape
    rng, x, wts, oh, ow = make(shape, 2)
    delta = rng.uniform(-1, 1, (batch, filters, oh, ow)).astype(np.float32)
    start = rng.uniform(-1, 1, wts.shape).astype(np.float32)
    grad = start.copy()
    splits = run(emu, 2, shape, x, delta, grad, multiprocessors)
    close(grad, start + weight_grad_ref(x, delta, shape), f"weight gradient ({splits} splits)")
    expect_split(batch * oh * ow, multiprocessors, splits)


@pytest.mark.parametrize("multiprocessors", [1, 132], ids=["whole-K", "split-K"])
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[6] == 1 and s[8] == 1 and s[7] == s[5] // 2],
                         ids=shape_id)
def test_input_gradient_accumulates(emu, shape, multiprocessors):
    batch, c, h, w, filters, size, stride, pad, groups = shape
    rng, x, wts, oh, ow = make(shape, 3)
    delta = rng.uniform(-1, 1, (batch, filters, oh, ow)).astype(np.float32)
    start = rng.uniform(-1, 1, x.shape).astype(np.float32)
    prev = start.copy()
    splits = run(emu, 3, shape, delta, wts, prev, multiprocessors)  # the image operand is the delta
    close(prev, start + input_grad_ref(delta, wts, shape), f"input gradient ({splits} splits)")
    expect_split(filters * size * size, multiprocessors, splits)


def test_planner_splits_only_when_the_device_would_idle(emu):
    tile, splits = ctypes.c_int(0), ctypes.c_int(0)

    def plan(op, M, N, K, groups=1, sms=132):
        assert emu.emu_plan(op, M, N, K, groups, sms, ctypes.byref(tile), ctypes.byref(splits)) == 0
        return tile.value, splits.value

    # yolov2-voc 13x13 1024 -> 1024 at batch 1: 8 x 2 tiles on 132 SMs -> split K (at most 32 ways).
    t, s = plan(0, 1024, 169, 9216)
    assert t == 128 and 8 <= s <= 32
    # The same layer at batch 64 fills the device: no split.
    assert plan(0, 1024, 64 * 169, 9216) == (128, 1)
    # First layer's weight gradient at batch 64 (32 x 27, K = 64 * 416 * 416): one tile, many splits.
    t, s = plan(2, 32, 27, 64 * 416 * 416)
    assert t == 32 and s == 256
    # Tile rows follow the filters.
    assert plan(0, 16, 100000, 27)[0] == 32 and plan(0, 48, 100000, 27)[0] == 64
    # Small K is never split.
    assert plan(0, 1024, 169, 100)[1] == 1


def test_errors_are_reported_not_crashes(emu):
    err = ctypes.create_string_buffer(512)
    splits = ctypes.c_int(0)
    x = np.zeros((1, 4, 5, 5), np.float32)
    wts = np.zeros((4, 4, 3, 3), np.float32)
    prev = np.zeros_like(x)
    # Input gradient of a stride-2 conv is not a forward convolution: refused with a message.
    rc = emu.emu_conv(3, 1, 4, 5, 5, 4, 3, 2, 1, 1, _ptr(x), _ptr(wts), _ptr(prev), None, None, None, None, LINEAR, 1,
                      ctypes.byref(splits), err, len(err))
    assert rc == 1 and b"same" in err.value


# ---------------------------------------------------------------- batch norm

BN_TOL = 1e-5
EPS = 1e-5
# batch, filters, spatial (h * w): one chunk per filter, and several (>= 2 * 4096 elements per
# filter with many multiprocessors to fill)
BN_SHAPES = [(2, 5, 7 * 9), (3, 3, 100 * 110), (1, 19, 13 * 13), (4, 2, 64 * 64)]


def bn_close(got, ref, what):
    ref = np.asarray(ref, np.float64)
    scale = max(float(np.abs(ref).max()), 1e-30)
    err = float(np.abs(np.asarray(got, np.float64) - ref).max()) / scale
    assert err <= BN_TOL, f"{what}: max error {err:.2e} of the largest value (tolerance {BN_TOL:g})"


def bn_data(shape, seed):
    batch, filters, spatial = shape
    rng = np.random.default_rng(seed)
    x = (rng.normal(0.5, 2.0, (batch, filters, spatial))).astype(np.float32)
    return rng, x


def stats64(x):
    x = x.astype(np.float64)
    n = x.shape[0] * x.shape[2]
    mean = x.sum(axis=(0, 2)) / n
    var = ((x - mean[None, :, None]) ** 2).sum(axis=(0, 2)) / (n - 1)
    return mean, var, n


def call(fn, *args):
    err = ctypes.create_string_buffer(512)
    assert fn(*args, err, len(err)) == 0, err.value.decode()


@pytest.mark.parametrize("sms", [1, 132], ids=["few-SMs", "many-SMs"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "b{}f{}s{}".format(*s))
def test_bn_statistics_and_sums(emu, shape, sms):
    batch, filters, spatial = shape
    rng, x = bn_data(shape, 5)
    mean = np.full(filters, np.nan, np.float32)
    var = np.full(filters, np.nan, np.float32)
    chunks = ctypes.c_int(0)
    call(emu.emu_bn_mean_variance, _ptr(x), batch, filters, spatial, _ptr(mean), _ptr(var), sms, ctypes.byref(chunks))
    m64, v64, n = stats64(x)
    bn_close(mean, m64, f"mean ({chunks.value} chunks)")
    bn_close(var, v64, f"variance ({chunks.value} chunks)")
    if sms > 1 and batch * spatial >= 2 * 4096:
        assert chunks.value > 1
    delta = rng.normal(0, 1, x.shape).astype(np.float32)
    x_norm = rng.normal(0, 1, x.shape).astype(np.float32)
    start = rng.normal(0, 1, filters).astype(np.float32)
    bias_upd, scale_upd = start.copy(), start.copy()
    call(emu.emu_bn_backward_scale, None, _ptr(delta), batch, filters, spatial, _ptr(bias_upd), sms)
    call(emu.emu_bn_backward_scale, _ptr(x_norm), _ptr(delta), batch, filters, spatial, _ptr(scale_upd), sms)
    bn_close(bias_upd, start + delta.astype(np.float64).sum(axis=(0, 2)), "bias gradient")
    bn_close(scale_upd, start + (delta.astype(np.float64) * x_norm).sum(axis=(0, 2)), "scale gradient")


def bn_delta_ref(d, x, mean, var, n):
    """Darknet's mean_delta, variance_delta and normalize_delta in float64 from float32 inputs."""
    mean, var = mean.astype(np.float64), var.astype(np.float64)
    xc = x.astype(np.float64) - mean[None, :, None]
    md = d.sum(axis=(0, 2)) * (-1 / np.sqrt(var + EPS))
    vd = (d * xc).sum(axis=(0, 2)) * -.5 * (var + EPS) ** -1.5
    out = d / np.sqrt(var + EPS)[None, :, None] + vd[None, :, None] * 2 * xc / n + md[None, :, None] / n
    return md, vd, out


@pytest.mark.parametrize("sms", [1, 132], ids=["few-SMs", "many-SMs"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "b{}f{}s{}".format(*s))
def test_bn_backward_delta(emu, shape, sms):
    batch, filters, spatial = shape
    rng, x = bn_data(shape, 6)
    mean, var, n = stats64(x)
    mean, var = mean.astype(np.float32), var.astype(np.float32)
    delta = rng.normal(0, 1, x.shape).astype(np.float32)
    d_ref = delta.astype(np.float64)
    md, vd = np.full(filters, np.nan, np.float32), np.full(filters, np.nan, np.float32)
    call(emu.emu_bn_backward_delta, _ptr(x), _ptr(mean), _ptr(var), batch, filters, spatial, _ptr(md), _ptr(vd),
         _ptr(delta), sms)
    md_ref, vd_ref, out_ref = bn_delta_ref(d_ref, x, mean, var, n)
    bn_close(md, md_ref, "mean_delta")
    bn_close(vd, vd_ref, "variance_delta")
    bn_close(delta, out_ref, "input delta")


@pytest.mark.parametrize("keep_x_norm", [True, False], ids=["x_norm kept", "x_norm derived"])
@pytest.mark.parametrize("sms", [1, 132], ids=["few-SMs", "many-SMs"])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "b{}f{}s{}".format(*s))
def test_bn_fused_training_passes(emu, shape, sms, keep_x_norm):
    """bn_train_normalize then bn_train_backward (leaky), as a convolution's training step runs them."""
    batch, filters, spatial = shape
    rng, x = bn_data(shape, 7)
    mean, var, n = stats64(x)
    mean, var = mean.astype(np.float32), var.astype(np.float32)
    scales = rng.uniform(.5, 1.5, filters).astype(np.float32)
    biases = rng.uniform(-.5, .5, filters).astype(np.float32)
    out = np.full(x.shape, np.nan, np.float32)
    x_norm = np.full(x.shape, np.nan, np.float32) if keep_x_norm else None
    call(emu.emu_bn_train_normalize, _ptr(mean), _ptr(var), _ptr(scales), _ptr(biases), batch, filters, spatial,
         LEAKY, _ptr(x), _ptr(out), _ptr(x_norm))
    inv_std = (1 / np.sqrt(var.astype(np.float64) + EPS))[None, :, None]
    xn_ref = (x.astype(np.float64) - mean[None, :, None]) * inv_std
    y_ref = xn_ref * scales[None, :, None] + biases[None, :, None]
    y_ref = np.where(y_ref > 0, y_ref, .1 * y_ref)
    bn_close(out, y_ref, "training forward output")
    if keep_x_norm:
        bn_close(x_norm, xn_ref, "x_norm")
    delta = rng.normal(0, 1, x.shape).astype(np.float32)
    through = delta.astype(np.float64) * np.where(out > 0, 1.0, .1)
    start = rng.normal(0, 1, filters).astype(np.float32)
    bias_upd, scale_upd = start.copy(), start.copy()
    md, vd = np.full(filters, np.nan, np.float32), np.full(filters, np.nan, np.float32)
    chunks = ctypes.c_int(0)
    call(emu.emu_bn_train_backward, _ptr(out), LEAKY, _ptr(x), _ptr(x_norm), _ptr(mean), _ptr(var), _ptr(scales),
         batch, filters, spatial, _ptr(bias_upd), _ptr(scale_upd), _ptr(md), _ptr(vd), _ptr(delta), sms,
         ctypes.byref(chunks))
    bn_close(bias_upd, start + through.sum(axis=(0, 2)), f"bias gradient ({chunks.value} chunks)")
    bn_close(scale_upd, start + (through * xn_ref).sum(axis=(0, 2)), "scale gradient")
    md_ref, vd_ref, out_ref = bn_delta_ref(through * scales[None, :, None], x, mean, var, n)
    bn_close(md, md_ref, "mean_delta")
    bn_close(vd, vd_ref, "variance_delta")
    bn_close(delta, out_ref, "input delta")


# ---------------------------------------------------------------- element-wise

def aligned(n, offset):
    """A float32 array of n elements starting `offset` floats past a 16-byte boundary."""
    raw = np.empty(n + 8, np.float32)
    start = (-raw.ctypes.data // 4) % 4 + offset
    return raw[start:start + n]


@pytest.mark.parametrize("offset", [0, 1], ids=["aligned", "unaligned"])
@pytest.mark.parametrize("n", [1, 7, 64, 4 * 1000 + 3])
def test_elementwise_ops_exact(emu, n, offset):
    rng = np.random.default_rng(n + offset)

    def arrays():
        a, b = aligned(n, offset), aligned(n, offset)
        a[:] = rng.normal(0, 1, n)
        b[:] = rng.normal(0, 1, n)
        return a, b

    def run(op, a, b, p0=0.0, p1=0.0, p2=0.0, act=LINEAR):
        width = emu.emu_elementwise(op, a.ctypes.data, None if b is None else b.ctypes.data, n, p0, p1, p2, act)
        assert width == (4 if offset == 0 else 1)

    a, _ = arrays()
    run(0, a, None, 2.5)
    np.testing.assert_array_equal(a, np.full(n, 2.5, np.float32))
    a, b = arrays()
    want = (a + np.float32(.3) * b).astype(np.float32)
    run(1, a, b, .3)
    np.testing.assert_array_equal(a, want)
    a, b = arrays()  # sgd with decay: update += decay * param; param += step * update; update *= momentum
    upd = (b + np.float32(-.01) * a).astype(np.float32)
    par = (a + np.float32(.05) * upd).astype(np.float32)
    upd = (upd * np.float32(.9)).astype(np.float32)
    run(2, a, b, .05, -.01, .9)
    np.testing.assert_array_equal(a, par)
    np.testing.assert_array_equal(b, upd)
    a, _ = arrays()
    want = np.where(a > 0, a, np.float32(.1) * a).astype(np.float32)
    run(3, a, None, act=LEAKY)
    np.testing.assert_array_equal(a, want)
    a, b = arrays()  # gradient: a (delta) *= leaky'(b (y))
    want = (a * np.where(b > 0, np.float32(1), np.float32(.1))).astype(np.float32)
    run(4, a, b, act=LEAKY)
    np.testing.assert_array_equal(a, want)
