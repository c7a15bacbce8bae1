"""The fast CPU inference path (folded BN, fused epilogue, packed GEMM micro-kernels,
im2col-free packing, vectorised maxpool) against the plain reference path.

Tolerance: |fast - reference| <= tol * max(1, |reference|) for every layer output,
with tol measured (2026-11-27, this repo's shared 2-core VM, AVX2 and plain kernels):
  full networks (the five full-net fixtures, up to 31 layers): worst 1.64e-5 (yolov2 /
    yolov2-voc, a deep GEMM layer); 2.0e-7 on each first layer, where no earlier
    difference has accumulated; the Winograd layers 9.0e-6; with Winograd off the worst
    is still 1.47e-5 (the difference accumulates with depth, whatever the kernel).
    FULL_NET_TOL = 3e-5.
  the odd-shape nets (2-7 layers, every kernel family, batch 1 and 2): worst 1.53e-6
    (maxpools, avx2); 2-3e-7 on each first layer (the GEMM path's own rounding).
    ODD_NET_TOL = 5e-6 (margin for AVX-512, not measured here).
  Winograd F(4x4,3x3) forced on every 3x3 layer of the odd shapes: worst 5.7e-5 on the
    first layer with 300 input channels (2700-term sums), 1.4e-5 to 3.2e-5 with 17-40
    channels, 3e-7 on the one-tile map. WINOGRAD_TOL = 1e-4.
GEMM micro-kernels against gemm_reference (double
accumulation) to 1e-5 * (sum of |a||b| terms), for every CPU kernel family this
machine supports. No timing assertions here: benchmarks live in bench/.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py import _core, _testing
from conftest import load_case, make_weights, require_reference

FULL_NETS = ["darknet19_256", "yolov2-tiny-voc_416", "yolov2-voc_416", "yolov2_416", "yolov2-voc_608"]
KERNELS = [k for k in ("avx512", "avx2", "plain")
           if ["plain", "avx2", "avx512"].index(k) <= ["plain", "avx2", "avx512"].index(_core.cpu_kernel_best())]


@pytest.fixture
def kernel(request):
    _core.set_cpu_kernel(request.param)
    yield request.param
    _core.set_cpu_kernel("auto")


FULL_NET_TOL = 3e-5
ODD_NET_TOL = 5e-6
WINOGRAD_TOL = 1e-4


def bound(ref, tol):
    return tol * np.maximum(1.0, np.abs(ref))


def compare_paths(net: darknet_py.Network, x: np.ndarray, what: str, tol: float = ODD_NET_TOL):
    """Runs the fast and the reference path on x; checks every layer's output to tol * max(1, |ref|)."""
    core = net._net
    core.reference_kernels = False
    net.forward(x)
    fast = [l.output for l in net.layers]
    core.reference_kernels = True
    try:
        net.forward(x)
        ref = [l.output for l in net.layers]
    finally:
        core.reference_kernels = False
    for i, (f, r) in enumerate(zip(fast, ref)):
        err = np.abs(f.astype(np.float64) - r)
        bad = err > bound(r, tol)
        assert not bad.any(), (f"{what}: layer {i} ({net.layers[i].describe().strip()}): {bad.sum()} values off "
                               f"by more than {tol:g} * max(1, |ref|), max err {err.max():.3g}")


# ---------------------------------------------------------------- full networks
@pytest.mark.parametrize("name", FULL_NETS)
def test_full_net_fast_equals_reference(name, weights_dir):
    case = load_case("fixtures", "full_nets", name)
    gen = case.manifest["weights_generation"]
    weights = make_weights(case.root / gen["cfg"], gen["seed"], weights_dir)
    net = darknet_py.load(case.root / case.manifest["cfg"], weights)
    compare_paths(net, case.array("input"), name, FULL_NET_TOL)


# ---------------------------------------------------------------- odd shapes
def randomise(net, seed):
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        p = layer.params
        if not p:
            continue
        fan_in = np.prod(p["weights"].shape[1:])
        p["weights"][...] = rng.standard_normal(p["weights"].shape) * np.sqrt(2.0 / fan_in)
        p["biases"][...] = rng.uniform(-.1, .1, p["biases"].shape)
        if "scales" in p:
            p["scales"][...] = rng.uniform(.8, 1.2, p["scales"].shape)
            p["rolling_mean"][...] = rng.uniform(-.1, .1, p["rolling_mean"].shape)
            p["rolling_variance"][...] = rng.uniform(.5, 1.5, p["rolling_variance"].shape)


def conv(filters, size, stride=1, pad=1, bn=1, act="leaky", groups=1, padding=None):
    extra = f"padding={padding}\n" if padding is not None else f"pad={pad}\n"
    return (f"[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride={stride}\n{extra}"
            f"groups={groups}\nactivation={act}\n")


def maxpool(size, stride):
    return f"[maxpool]\nsize={size}\nstride={stride}\n"


ODD_NETS = {
    # non-square maps, channels not multiples of 16, every layer shape class
    "nonsquare_3x3": (23, 17, 5, [conv(19, 3), conv(33, 3, bn=0, act="linear"), conv(7, 1, pad=0)]),
    "stride2_and_1x1": (31, 20, 3, [conv(17, 3, stride=2), conv(50, 1, pad=0, act="relu"),
                                     conv(9, 3, stride=2, bn=0, act="logistic")]),
    "groups": (14, 18, 6, [conv(12, 3, groups=3), conv(10, 1, pad=0, groups=2), conv(4, 3, groups=2, act="tanh")]),
    "padding0_and_5x5": (21, 26, 4, [conv(11, 3, pad=0), conv(13, 5, padding=2, act="elu"),
                                     conv(3, 5, padding=0, bn=0, act="linear")]),
    "maxpools": (27, 19, 3, [conv(8, 3), maxpool(2, 2), conv(21, 3), maxpool(2, 1), maxpool(3, 2),
                             conv(16, 1, pad=0), maxpool(3, 1)]),
    "reorg_route": (24, 16, 3, [conv(10, 3), maxpool(2, 2), conv(12, 3), "[reorg]\nstride=2\n",
                                conv(6, 1, pad=0), "[route]\nlayers=-1,-2\n", conv(5, 1, pad=0)]),
    "wide_k": (9, 11, 300, [conv(130, 3), conv(257, 1, pad=0, act="linear")]),
}


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("name", sorted(ODD_NETS))
def test_odd_shapes_fast_equals_reference(name, batch):
    w, h, c, layers = ODD_NETS[name]
    text = f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n\n" + "\n".join(layers)
    net = darknet_py.Network.from_text(text, name=name, batch=batch)
    randomise(net, 7)
    x = np.random.default_rng(3).standard_normal((batch, c, h, w)).astype(np.float32)
    for k in KERNELS:
        # this network's kernels (the ISA is a per-network option); the GEMM and direct paths at
        # their own bound (Winograd, which auto would pick for wide_k, has its tests below)
        net.set_exec_options(isa=k, winograd="off")
        assert net.exec_options["isa"] == k
        compare_paths(net, x, f"{name} batch {batch} kernels {k}")


def test_params_written_after_forward_are_used():
    """Weights changed through the numpy views after a forward affect the next forward."""
    text = "[net]\nwidth=10\nheight=8\nchannels=3\n\n" + conv(6, 3)
    net = darknet_py.Network.from_text(text)
    randomise(net, 1)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 10)).astype(np.float32)
    a = net.forward(x).copy()
    p = net.layers[0].params
    p["weights"][...] *= 2
    p["rolling_mean"][...] += 0.5
    b = net.forward(x)
    assert not np.allclose(a, b)
    compare_paths(net, x, "after writes")


# ---------------------------------------------------------------- GEMM
GEMM_SIZES = [(1, 1, 1), (7, 5, 3), (8, 48, 256), (9, 17, 33), (13, 50, 300), (33, 97, 513), (125, 169, 700),
              (64, 1000, 40), (3, 2000, 9),
              # small C, long K: the split-K path (weight gradients of early layers)
              (16, 27, 9000), (5, 70, 4100)]


@pytest.mark.parametrize("kernel", KERNELS, indirect=True)
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
def test_gemm_matches_reference(kernel, trans_a, trans_b):
    rng = np.random.default_rng(5)
    for (M, N, K) in GEMM_SIZES:
        for alpha, beta in ((1.0, 0.0), (0.7, 0.3), (1.0, 1.0)):
            A = rng.standard_normal((K, M) if trans_a else (M, K)).astype(np.float32)
            B = rng.standard_normal((N, K) if trans_b else (K, N)).astype(np.float32)
            C0 = rng.standard_normal((M, N)).astype(np.float32)
            fast, ref = C0.copy(), C0.copy()
            _testing.gemm(trans_a, trans_b, M, N, K, alpha, A, B, beta, fast)
            _testing.gemm(trans_a, trans_b, M, N, K, alpha, A, B, beta, ref, reference=True)
            a = A.T if trans_a else A
            b = B.T if trans_b else B
            scale = np.abs(alpha) * (np.abs(a).astype(np.float64) @ np.abs(b)) + np.abs(beta * C0)
            err = np.abs(fast.astype(np.float64) - ref)
            assert (err <= 1e-5 * scale + 1e-6).all(), (
                f"kernel={kernel} ta={trans_a} tb={trans_b} M={M} N={N} K={K} alpha={alpha} beta={beta}: "
                f"max err {err.max():.3g}")


SPLIT_K_SCRIPT = """
import hashlib, sys
import numpy as np
from darknet_py import _core, _testing
_core.set_cpu_kernel(sys.argv[1])
rng = np.random.default_rng(3)
out = []
for (M, N, K, ta, tb) in [(16, 27, 20000, False, True), (8, 100, 6000, True, False), (40, 33, 3000, False, False)]:
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = np.ones((M, N), np.float32)
    _testing.gemm(ta, tb, M, N, K, 1.0, A, B, 1.0, C)
    out.append(C.tobytes())
print(hashlib.sha256(b"".join(out)).hexdigest())
"""


@pytest.mark.parametrize("kernel_name", KERNELS)
def test_split_k_gemm_is_the_same_for_any_thread_count(kernel_name):
    """The split-K path cuts K into parts fixed by the shape, never by the thread count, so a
    training step gives the same bits on 1 and 2 threads (tests/test_training_kernels.py
    relies on it)."""
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, DARKNET_PY_THREADS=threads)
        r = subprocess.run([sys.executable, "-c", SPLIT_K_SCRIPT, kernel_name], env=env, capture_output=True,
                           text=True, timeout=300, cwd=str(Path(darknet_py.__file__).parent.parent))
        assert r.returncode == 0, r.stderr
        digests.append(r.stdout.strip())
    assert digests[0] == digests[1]


def test_gemm_leading_dimensions():
    """Sub-matrix views: lda/ldb/ldc larger than the logical sizes."""
    rng = np.random.default_rng(1)
    M, N, K = 19, 37, 45
    A = rng.standard_normal((M, K + 5)).astype(np.float32)
    B = rng.standard_normal((K + 2, N + 7)).astype(np.float32)
    C = np.zeros((M + 1, N + 3), np.float32)
    R = C.copy()
    _testing.gemm(False, False, M, N, K, 1.0, A, B, 0.0, C)
    _testing.gemm(False, False, M, N, K, 1.0, A, B, 0.0, R, reference=True)
    np.testing.assert_allclose(C, R, rtol=1e-5, atol=1e-5)
    assert (C[M:] == 0).all() and (C[:, N:] == 0).all()


def test_package_never_imports_the_testing_module():
    """darknet_py._testing is test-only: no module of the package imports it."""
    import ast
    package = Path(darknet_py.__file__).parent
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, (ast.Import, ast.ImportFrom)) else []) + \
                ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            assert not any(n.split(".")[-1] == "_testing" for n in names), f"{path}:{node.lineno} imports _testing"


def test_cpu_kernel_selection():
    assert _core.cpu_kernel() in ("avx512", "avx2", "plain")
    with pytest.raises(darknet_py.DarknetError):
        _core.set_cpu_kernel("sse9")
    _core.set_cpu_kernel("plain")
    assert _core.cpu_kernel() == "plain"
    _core.set_cpu_kernel("auto")
    assert _core.cpu_kernel() == _core.cpu_kernel_best()


# Widths around the direct kernel's 24- and 8-pixel bands, strips of 1-8 filters, 1-24 channels;
# the filter-vector variant (>= 8 channels, 17-64 filters): pixel tails of 1 and 2 (3-pixel
# tiles), partial 32-filter blocks, rows longer than its 240-pixel chunk.
DIRECT_SHAPES = [(1, 1, 3, 8), (7, 3, 1, 5), (8, 2, 3, 13), (17, 4, 16, 9), (23, 5, 24, 16), (25, 3, 3, 33),
                 (47, 2, 8, 7), (50, 6, 24, 40), (33, 9, 5, 1), (19, 7, 40, 64), (26, 4, 64, 17), (11, 5, 64, 65),
                 (31, 3, 8, 32), (250, 2, 8, 33), (482, 2, 12, 24), (2, 3, 16, 48)]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("shape", DIRECT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_direct_3x3_small_channels(shape, batch):
    """3x3 stride-1 convs with at most 24 channels (on AVX2 up to 64 with at most 64 filters) run
    the direct kernel (no im2col panels) on AVX2/AVX-512, the packed GEMM on plain C++ (and 64
    channels with 65 filters); every layer against the reference, each family."""
    w, h, c, f = shape
    text = (f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n\n" + conv(f, 3) +
            conv(5, 3, bn=0, act="linear") + conv(4, 3, act="logistic"))
    net = darknet_py.Network.from_text(text, name="direct", batch=batch)
    randomise(net, 7)
    x = np.random.default_rng(3).standard_normal((batch, c, h, w)).astype(np.float32)
    for k in KERNELS:
        net.set_exec_options(isa=k)
        compare_paths(net, x, f"direct {shape} batch {batch} kernels {k}")


@pytest.mark.parametrize("w,h", [(16, 6), (34, 7), (48, 4), (61, 5), (104, 3), (13, 13)])
@pytest.mark.parametrize("size,stride", [(2, 2), (2, 1), (3, 2)])
def test_inference_maxpool_bit_equal_to_reference(w, h, size, stride):
    """The inference maxpool (AVX2 rows for 2x2 / 2: 8 outputs per step plus a scalar tail)
    gives the reference scan's bits, ties, -inf and NaN (Darknet's `val > max` skips a NaN
    that is not first in its window) included."""
    c = 3
    text = f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n" + maxpool(size, stride)
    net = darknet_py.Network.from_text(text, name="pool")
    rng = np.random.default_rng(w * 100 + h)
    x = rng.integers(-3, 4, size=(1, c, h, w)).astype(np.float32)  # many ties
    x[0, 0, ::2, ::3] = -np.inf
    x[0, 1, 1::2, 1::5] = np.nan
    x[0, 2] = -np.inf  # whole plane: every window's maximum is -inf
    outs = {}
    for k in KERNELS:
        for reference in (False, True):
            net.set_exec_options(isa=k, reference_kernels=reference)
            outs[(k, reference)] = net.forward(x).copy()
    expected = outs[(KERNELS[-1], True)]
    for key, got in outs.items():
        np.testing.assert_array_equal(got.view(np.uint32), expected.view(np.uint32), err_msg=f"{key}")


# ---------------------------------------------------------------- profiler
def test_profile_api_and_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DARKNET_PY_PEAK_GFLOPS", "100")  # no microbenchmark in tests
    text = "[net]\nwidth=32\nheight=24\nchannels=3\n\n" + conv(8, 3) + maxpool(2, 2) + conv(5, 1, pad=0)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(text)
    net = darknet_py.load(str(cfg))
    prof = net.profile(runs=3, warmup=1)
    assert len(prof.layers) == 3
    assert prof.peak_gflops == 100 * _core.get_num_threads()
    assert abs(sum(l.share for l in prof.layers) - 1) < 1e-6
    assert prof.layers[0].flops == net.layers[0].flops
    assert "Total BFLOPs" in prof.table()
    from darknet_py.profile import profile_main, register_commands
    import argparse
    ap = argparse.ArgumentParser()
    register_commands(ap.add_subparsers(dest="command"))
    args = ap.parse_args(["profile", str(cfg), "--runs", "2", "--warmup", "0", "--json", "--backward"])
    assert profile_main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["layers"]) == 3 and data["total_backward_ms"] is not None
    args = ap.parse_args(["profile", str(cfg), "--runs", "2", "--csv", "--size", "64"])
    assert profile_main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("index,type") and len(out) == 4
    assert not net.training


# ---------------------------------------------------------------- Winograd F(4x4,3x3)
@pytest.fixture
def winograd_on():
    _core.set_winograd("on")  # every 3x3 stride-1 pad-1 conv, whatever the measured auto rule picks
    yield
    _core.set_winograd("auto")


@pytest.fixture(params=["on", "stream"])
def winograd_forced(request):
    """Every 3x3 stride-1 pad-1 conv through Winograd: cached transformed weights ('on') or the
    weights transformed per call ('stream', tiles as the GEMM rows)."""
    _core.set_winograd(request.param)
    yield request.param
    _core.set_winograd("auto")


# H, W not multiples of 4, channels not multiples of 16 nor of the streamed variant's 64-channel
# blocks, wide K (several GEMM K blocks), many tiles (several 48-tile panels and, streamed, several
# 64-tile blocks), filters over one 48-filter panel and not a multiple of 8, tiny maps (one partial
# tile).
WINO_SHAPES = [(23, 17, 19, 33), (9, 11, 300, 130), (13, 13, 5, 7), (30, 26, 17, 40), (3, 2, 4, 3),
               (61, 45, 24, 20), (13, 13, 70, 101)]


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("shape", WINO_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_winograd_odd_shapes(shape, batch, winograd_forced):
    w, h, c, f = shape
    text = (f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\n\n" + conv(f, 3) +
            conv(f + 3, 3, bn=0, act="linear") + conv(5, 3, act="logistic"))
    net = darknet_py.Network.from_text(text, name="wino", batch=batch)
    randomise(net, 11)
    x = np.random.default_rng(5).standard_normal((batch, c, h, w)).astype(np.float32)
    assert all(net.layers[i].uses_winograd for i in range(3))
    for k in KERNELS:
        net.set_exec_options(isa=k)  # also reaches the Winograd transforms
        compare_paths(net, x, f"winograd {winograd_forced} {shape} batch {batch} kernels {k}", WINOGRAD_TOL)


def test_winograd_auto_rule_streams_deep_short_maps():
    """The measured auto rule: 13x13 and 26x26 layers with many channels take the streamed
    variant (no transformed-weights cache), shallow ones stay on the GEMM."""
    text = ("[net]\nwidth=13\nheight=13\nchannels=256\n\n" + conv(512, 3) + conv(32, 3) + conv(64, 1))
    net = darknet_py.Network.from_text(text, name="auto")
    net.set_exec_options(winograd="auto")
    assert [net.layers[i].uses_winograd for i in range(3)] == [True, False, False]
    randomise(net, 4)
    x = np.random.default_rng(2).standard_normal((1, 256, 13, 13)).astype(np.float32)
    compare_paths(net, x, "auto rule, 13x13 256->512 streamed", WINOGRAD_TOL)


def test_winograd_sees_weight_changes(winograd_on):
    """The cached transformed weights are rebuilt whenever the weights change (checksum of their bits)."""
    text = "[net]\nwidth=20\nheight=14\nchannels=6\n\n" + conv(9, 3)
    net = darknet_py.Network.from_text(text, name="wino")
    randomise(net, 2)
    x = np.random.default_rng(1).standard_normal((1, 6, 14, 20)).astype(np.float32)
    before = net.forward(x).copy()
    w = net.layers[0].params["weights"]  # a view held across forwards
    w[3, 2, 1, 1] += 0.5
    compare_paths(net, x, "after a one-float edit through a held view", WINOGRAD_TOL)
    assert not np.allclose(net.forward(x), before)
    w[...] = 0
    out = net.forward(x)
    p = net.layers[0].params
    pre = p["biases"] - p["rolling_mean"] * p["scales"] / np.sqrt(p["rolling_variance"] + 1e-5)
    np.testing.assert_allclose(out[0, :, 5, 7], np.where(pre > 0, pre, 0.1 * pre), rtol=1e-5, atol=1e-6)


def test_winograd_mode_errors():
    with pytest.raises(darknet_py.DarknetError):
        _core.set_winograd("sometimes")
    assert _core.winograd() == "auto"


# ---------------------------------------------------------------- inference output pool
def test_output_pool_same_results_and_kept_outputs():
    w, h, c, layers = ODD_NETS["reorg_route"]
    text = f"[net]\nbatch=2\nwidth={w}\nheight={h}\nchannels={c}\n\n" + "\n".join(layers)
    net = darknet_py.Network.from_text(text, name="pool", batch=2)
    randomise(net, 4)
    x = np.random.default_rng(6).standard_normal((2, c, h, w)).astype(np.float32)
    full = [l.output for l in (net.forward(x), net)[1].layers]
    net.keep_outputs = False
    out = net.forward(x).copy()
    np.testing.assert_array_equal(out, full[-1])
    assert net._net.pool_floats < sum(f.size for f in full)
    assert net.output_kept(len(net) - 1)
    for i, f in enumerate(full):
        if net.output_kept(i):
            np.testing.assert_array_equal(net.layers[i].output, f)
        else:
            with pytest.raises(darknet_py.DarknetError, match="keep_outputs"):
                net.layers[i].output
    assert not all(net.output_kept(i) for i in range(len(net)))
    net.keep_outputs = True  # back to owned outputs
    net.forward(x)
    for i, f in enumerate(full):
        np.testing.assert_array_equal(net.layers[i].output, f)


# Peak RSS of `darknet-py detect` on yolov2-voc 416 (random weights, 202.7 MB file), measured
# on the shared 2-core VM (2026-11-27, three runs each, +-0.1 MB; 313.2 MB for the shipped CLI
# since the streamed Winograd took over the 52x52 layers, two runs):
#   the CLI as shipped (activation pool, Winograd "auto"): 327.3 MB
#   pool, DARKNET_PY_WINOGRAD=off:                          305.0 MB
#   without the pool (cli.py's keep_outputs = False removed): 376.4 MB, Winograd off: 356.5 MB
# The bound, weights + 140 MB = 342.7 MB, sits between the two: 15 MB above the shipped CLI
# (other numpy/Pillow builds on another machine) and 14 MB under the smallest run without
# the pool, so a detect that keeps every layer's output fails it.
RSS_ABOVE_WEIGHTS = 140e6


def test_detect_peak_rss_yolov2_voc(weights_dir, tmp_path):
    """Peak RSS of `darknet-py detect` on yolov2-voc 416 <= weights size + 140 MB: holds with the
    activation pool, fails without it (a memory bound, not timing)."""
    import subprocess
    import sys
    cfg = require_reference("cfg", "yolov2-voc.cfg")
    img = require_reference("data", "dog.jpg")
    weights = make_weights(cfg, 1, weights_dir)
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stderr.write(r.stderr); assert r.returncode == 0, r.returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    res = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "darknet_py.cli", "detect", str(cfg),
                          str(weights), str(img), "--out", str(tmp_path)], capture_output=True, text=True,
                         # outside the checkout, so the installed package (with its extension) is imported
                         cwd=tmp_path, env={**os.environ,
                                            "PYTHONPATH": str(Path(darknet_py.__file__).resolve().parents[1])})
    assert res.returncode == 0, res.stderr
    peak = int(res.stdout.strip().splitlines()[-1]) * 1024  # ru_maxrss is in KiB on Linux
    bound = weights.stat().st_size + RSS_ABOVE_WEIGHTS
    assert peak <= bound, (f"peak RSS {peak / 1e6:.1f} MB > weights {weights.stat().st_size / 1e6:.1f} MB + "
                           f"{RSS_ABOVE_WEIGHTS / 1e6:.0f} MB")
