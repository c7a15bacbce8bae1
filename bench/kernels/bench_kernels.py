#!/usr/bin/env python3
"""Kernel lab: every version of each hot kernel, validated against the plain
reference, then timed (the llm.c dev/cuda habit).

    python bench/kernels/bench_kernels.py [--threads 1] [--runs 7]
                                          [--only conv|winograd|direct|train|gemm|maxpool|reorg|region]

Versions:
  conv     reference = im2col + GEMM + separate BN/bias/activation passes
           fast      = BN folded into a per-filter scale/bias in the GEMM epilogue,
                       B panels packed straight from the image (no im2col buffer)
  winograd 3x3 stride-1 convs: reference, fast GEMM path (winograd off), Winograd
           F(4x4,3x3) with cached weights (on) and streamed (stream), and what the
           measured auto rule picks; each
           validated against the reference, then timed alternately (same run)
  direct   the direct 3x3 kernel (few channels or few filters), its two versions forced:
           v1 bands (the weights broadcast in place, 4 x 24 register bands over the
           pixels of the zero-padded input at each tap's offset) and v2 filter vectors
           (<= 64 filters: a 32-filter block of repacked weights is the vector operand,
           3 pixels broadcast, hand-scheduled 3 x 4 tile, transposed back to NCHW);
           validated against each other bit for bit and against the GEMM path, then
           timed alternately; "auto" is the rule's pick; "+pool ms" the auto pick with
           the 2x2 stride-2 max pool fused (checked bit for bit against numpy's pool of
           its unfused output) and "pool/auto" its time over the auto pick's alone
  train    one conv layer's training forward + backward (3x3, BN + leaky, batch 8-32):
           reference (reference_kernels: im2col + GEMM per image, unfused BN, col2im) vs
           fast (direct or packed conv into x, fused AVX2 batch norm keeping only x, the
           input gradient as a flipped-weight convolution, the weight gradient direct /
           folded over images / per image by shape); validated on the weight gradient
           and the input delta, then timed (Network.time_layers)
  gemm     reference (double-accumulating triple loop, validation only) and the
           packed micro-kernels: avx512 (8x48, 24 zmm accumulators), avx2 (4x24 and 8x8
           sub-tiles), plain C++ (compiler-vectorised)
  maxpool  reference (the layer's argmax loop) vs fast (vertical max into a row
           buffer, then horizontal max)
  reorg, region: one version each (memory-bound), GB/s

Napkin math:
  conv FLOPs = 2 * filters * size^2 * (c/groups) * out_h * out_w (Darknet's figure);
  at 64 flop/cycle/core (2 x 512-bit FMA) and ~3.7 GHz one core peaks near
  240 GFLOP/s, so yolov2-voc's 13x13x1024 3x3 conv (3.19 GFLOP) needs >= 13 ms on
  one core. Memory-bound kernels: bytes = read input + write output (4 B each);
  Winograd F(4x4,3x3): per 4x4 output tile the GEMMs do 36 * c * filters multiply-adds
  instead of 16 * 9 * c * filters (4x fewer; partial edge tiles waste some), plus the
  transforms: ~100 flops per input tile-channel and ~80 per output tile-filter. GFLOP/s
  printed for Winograd are "effective" (direct-conv FLOPs / time), so they compare with
  the GEMM column directly and may exceed the FMA peak.
  one core streams roughly 10-20 GB/s from DRAM, more from L2/L3: maxpool 2x2/2 on
  416x416x32 moves 22 MB + 5.5 MB -> ~2 ms at 15 GB/s.
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import darknet_py  # noqa: E402
from darknet_py import _core, _testing  # noqa: E402

# (w=h, c, filters, size, stride) of every distinct conv in yolov2-voc / tiny at 416.
CONV_SHAPES = [(416, 3, 32, 3, 1), (416, 3, 16, 3, 1), (208, 32, 64, 3, 1), (104, 64, 128, 3, 1),
               (104, 128, 64, 1, 1), (52, 128, 256, 3, 1), (52, 256, 128, 1, 1), (26, 256, 512, 3, 1),
               (26, 512, 256, 1, 1), (26, 512, 64, 1, 1), (13, 512, 1024, 3, 1), (13, 1024, 512, 1, 1),
               (13, 1024, 1024, 3, 1), (13, 1280, 1024, 3, 1), (13, 1024, 125, 1, 1)]


def median_time(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def single_layer_net(w, h, c, section, seed=0):
    net = darknet_py.Network.from_text(f"[net]\nwidth={w}\nheight={h}\nchannels={c}\n\n{section}", name="bench")
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        p = layer.params
        if p:
            p["weights"][...] = rng.standard_normal(p["weights"].shape) * np.sqrt(2 / np.prod(p["weights"].shape[1:]))
            p["biases"][...] = rng.uniform(-.1, .1, p["biases"].shape)
            if "scales" in p:
                p["scales"][...] = rng.uniform(.8, 1.2, p["scales"].shape)
                p["rolling_variance"][...] = rng.uniform(.5, 1.5, p["rolling_variance"].shape)
    return net


def versions_of_net(net, x, runs):
    """{version: median seconds} for the fast and reference paths, after checking they agree."""
    net.set_exec_options(reference_kernels=True)
    ref = net.forward(x).copy()
    t_ref = median_time(lambda: net.forward(x), runs)
    net.set_exec_options(reference_kernels=False)
    fast = net.forward(x)
    err = np.abs(fast - ref).max() / max(1.0, np.abs(ref).max())
    assert err < 1e-4, f"fast path disagrees with the reference: {err:.3g}"
    t_fast = median_time(lambda: net.forward(x), runs)
    return {"reference": t_ref, "fast": t_fast}, err


def bench_conv(runs):
    print("== conv (batch 1; BN + leaky) ==")
    print(f"{'shape':34s} {'GFLOP':>7s} {'ref ms':>8s} {'GF/s':>6s} {'fast ms':>8s} {'GF/s':>6s} {'speedup':>7s}  max rel err")
    for (s, c, f, k, st) in CONV_SHAPES:
        net = single_layer_net(s, s, c, f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize={k}\nstride={st}\n"
                                        f"pad=1\nactivation=leaky\n")
        x = np.random.default_rng(1).standard_normal((1, c, s, s)).astype(np.float32)
        t, err = versions_of_net(net, x, runs)
        fl = net.total_flops
        print(f"{s:4d}x{s:<4d}x{c:5d} -> {f:5d} {k}x{k}/{st}      {fl / 1e9:7.3f} {t['reference'] * 1e3:8.2f} "
              f"{fl / t['reference'] / 1e9:6.0f} {t['fast'] * 1e3:8.2f} {fl / t['fast'] / 1e9:6.0f} "
              f"{t['reference'] / t['fast']:6.2f}x  {err:.1e}")


WINO_SHAPES = [(416, 16, 32, 1), (208, 16, 32, 1), (208, 32, 64, 1), (104, 32, 64, 1), (104, 64, 128, 1),
               (52, 64, 128, 1), (52, 128, 256, 1), (28, 256, 512, 1), (26, 128, 256, 1), (26, 256, 512, 1),
               (14, 512, 1024, 1), (13, 256, 512, 1), (13, 512, 1024, 1), (13, 1024, 1024, 1), (7, 512, 1024, 1),
               (52, 128, 256, 2), (13, 512, 1024, 2), (30, 19, 33, 2)]
WINO_MODES = ("off", "on", "stream")  # GEMM; Winograd with cached U; Winograd with U made per call


def bench_winograd(runs):
    print("== winograd (3x3 stride 1 pad 1; BN + leaky): fast GEMM path vs Winograd F(4x4,3x3), "
          "cached (on) and streamed ==")
    print(f"{'shape':30s} {'GFLOP':>7s} {'gemm ms':>8s} {'GF/s':>6s} {'on ms':>8s} {'stream ms':>9s} "
          f"{'gemm/on':>8s} {'gemm/stream':>11s} {'auto':>5s}  max rel err (gemm, on, stream)")
    for (s, c, f, b) in WINO_SHAPES:
        section = f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
        nets = {m: single_layer_net(s, s, c, section) for m in WINO_MODES}  # one per mode: U stays cached
        x = np.random.default_rng(1).standard_normal((b, c, s, s)).astype(np.float32)
        nets["off"].set_exec_options(reference_kernels=True)
        ref = nets["off"].forward(x).copy()
        nets["off"].set_exec_options(reference_kernels=False)
        errs, times = {}, {m: [] for m in WINO_MODES}
        for m, net in nets.items():
            net.set_exec_options(winograd=m)  # a per-network option
            out = net.forward(x)
            errs[m] = np.abs(out - ref).max() / max(1.0, np.abs(ref).max())
            assert errs[m] < 1e-4, f"{m}: disagrees with the reference: {errs[m]:.3g}"
        for _ in range(runs):  # alternate: the machine's load hits all alike
            for m, net in nets.items():
                t = time.perf_counter()
                net.forward(x)
                times[m].append(time.perf_counter() - t)
        nets["on"].set_exec_options(winograd="auto")
        auto = nets["on"].layers[0].uses_winograd
        tg, tw, ts = (statistics.median(times[m]) for m in WINO_MODES)
        fl = nets["on"].total_flops * b
        print(f"{s:4d}x{s:<4d}x{c:5d} -> {f:5d} b{b}    {fl / 1e9:7.3f} {tg * 1e3:8.2f} {fl / tg / 1e9:6.0f} "
              f"{tw * 1e3:8.2f} {ts * 1e3:9.2f} {tg / tw:7.2f}x {tg / ts:10.2f}x {('wino' if auto else 'gemm'):>5s}  "
              f"{errs['off']:.1e} {errs['on']:.1e} {errs['stream']:.1e}")


def bench_gemm(runs):
    print("== gemm (C = A*B, row-major; M x N x K as conv: filters x pixels x c*k*k) ==")
    rng = np.random.default_rng(0)
    # validation on an odd size for every kernel family
    A = rng.standard_normal((37, 301)).astype(np.float32)
    B = rng.standard_normal((301, 83)).astype(np.float32)
    R = np.zeros((37, 83), np.float32)
    _testing.gemm(False, False, 37, 83, 301, 1.0, A, B, 0.0, R, reference=True)
    families = [k for k in ("avx512", "avx2", "plain")
                if ["plain", "avx2", "avx512"].index(k) <= ["plain", "avx2", "avx512"].index(_core.cpu_kernel_best())]
    for k in families:
        _core.set_cpu_kernel(k)
        C = np.zeros_like(R)
        _testing.gemm(False, False, 37, 83, 301, 1.0, A, B, 0.0, C)
        print(f"  {k:7s} max abs err vs reference on 37x83x301: {np.abs(C - R).max():.2e}")
    print(f"{'M':>6s} {'N':>7s} {'K':>6s} " + " ".join(f"{k + ' GF/s':>12s}" for k in families))
    for (M, N, K) in [(32, 173056, 27), (64, 43264, 288), (128, 10816, 576), (256, 2704, 1152), (512, 676, 2304),
                      (1024, 169, 4608), (1024, 169, 9216), (512, 169, 1024)]:
        A = rng.standard_normal((M, K)).astype(np.float32)
        B = rng.standard_normal((K, N)).astype(np.float32)
        C = np.zeros((M, N), np.float32)
        row = []
        for k in families:
            _core.set_cpu_kernel(k)
            t = median_time(lambda: _testing.gemm(False, False, M, N, K, 1.0, A, B, 0.0, C), runs if k != "plain" else 2)
            row.append(2 * M * N * K / t / 1e9)
        print(f"{M:6d} {N:7d} {K:6d} " + " ".join(f"{g:12.1f}" for g in row))
    _core.set_cpu_kernel("auto")


def bench_memory_bound(runs, only):
    cases = {
        "maxpool": [(416, 32, "[maxpool]\nsize=2\nstride=2\n"), (104, 128, "[maxpool]\nsize=2\nstride=2\n"),
                    (13, 1024, "[maxpool]\nsize=2\nstride=1\n")],
        "reorg": [(26, 64, "[reorg]\nstride=2\n")],
        "region": [(13, 125, "[region]\nanchors=1.08,1.19, 3.42,4.41, 6.63,11.38, 9.42,5.11, 16.62,10.52\n"
                             "classes=20\ncoords=4\nnum=5\n")],
    }
    for kind, shapes in cases.items():
        if only and only != kind:
            continue
        print(f"== {kind} ==")
        for (s, c, section) in shapes:
            net = single_layer_net(s, s, c, section)
            x = np.random.default_rng(1).standard_normal((1, c, s, s)).astype(np.float32)
            t, err = versions_of_net(net, x, runs)
            nbytes = 4 * (x.size + net.layers[0].output.size)
            print(f"  {s}x{s}x{c} {section.splitlines()[1]:10s} reference {t['reference'] * 1e3:7.3f} ms "
                  f"({nbytes / t['reference'] / 1e9:5.1f} GB/s)   fast {t['fast'] * 1e3:7.3f} ms "
                  f"({nbytes / t['fast'] / 1e9:5.1f} GB/s)   err {err:.1e}")


# (w=h, c, filters, batch): the demo's and yolov2-tiny-voc's training layers at their sizes.
TRAIN_SHAPES = [(160, 3, 8, 32), (80, 8, 16, 32), (40, 16, 32, 32), (20, 32, 64, 32), (10, 64, 128, 32),
                (5, 384, 256, 32), (416, 3, 16, 8), (208, 16, 32, 8), (104, 32, 64, 8), (52, 64, 128, 8),
                (26, 128, 256, 8), (13, 512, 1024, 8)]


# (w=h, c, filters) of 3x3 stride-1 layers the direct kernel takes (tiny-voc's and yolov2-voc's
# first layers, the 32->64 / 16->32 ones, and input gradients of such layers in training).
DIRECT_SHAPES = [(416, 3, 16), (416, 3, 32), (208, 16, 32), (208, 32, 64), (104, 32, 64), (104, 64, 32),
                 (52, 64, 64), (208, 32, 16)]


def bench_direct(runs):
    print("== direct 3x3 (batch 1, folded BN + leaky): v1 bands vs v2 filter vectors, alternated ==")
    print(f"{'shape':24s} {'GFLOP':>7s} {'v1 ms':>8s} {'GF/s':>6s} {'v2 ms':>8s} {'GF/s':>6s} {'v1/v2':>6s} "
          f"{'auto':>5s} {'+pool ms':>8s} {'pool/auto':>9s}  max rel err vs reference path")
    rng = np.random.default_rng(0)
    for (s, c, f) in DIRECT_SHAPES:
        x = rng.standard_normal((1, c, s, s)).astype(np.float32)
        w = (rng.standard_normal((f, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
        scale = rng.uniform(.5, 1.5, f).astype(np.float32)
        bias = rng.standard_normal(f).astype(np.float32)
        out = np.empty((1, f, s, s), np.float32)
        pooled = np.empty((1, f, s // 2, s // 2), np.float32)
        call = lambda v: (_testing.conv3x3_direct(x, w, scale, bias, "leaky", "auto", out=pooled, maxpool=True)  # noqa: E731
                          if v == "pool" else _testing.conv3x3_direct(x, w, scale, bias, "leaky", v, out=out))
        v1 = call("bands").copy()
        # the check: v1 with unit scales against the same layer on the reference path (im2col + GEMM)
        net = single_layer_net(s, s, c, f"[convolutional]\nfilters={f}\nsize=3\nstride=1\npad=1\nactivation=leaky\n")
        params = net.layers[0].params
        params["weights"][...] = w.reshape(params["weights"].shape)
        params["biases"][...] = bias
        fl = 2.0 * s * s * f * c * 9
        versions = ["bands"] + (["filter_vectors"] if f <= 64 else [])
        if "filter_vectors" in versions:
            v2 = call("filter_vectors").copy()
            assert np.array_equal(v1.view(np.uint32), v2.view(np.uint32)), f"{(s, c, f)}: v1 and v2 differ"
        got = call("pool").copy()
        assert np.array_equal(got.view(np.uint32), v1.reshape(1, f, s // 2, 2, s // 2, 2).max(axis=(3, 5)).view(np.uint32)), \
            f"{(s, c, f)}: the fused pool differs"
        versions.append("pool")
        ref = _testing.conv3x3_direct(x, w, np.ones(f, np.float32), bias, "leaky", "bands")  # unscaled
        net.set_exec_options(reference_kernels=True)
        expected = np.asarray(net.forward(x), np.float64)
        err = np.abs(ref - expected).max() / max(1.0, np.abs(expected).max())
        times = {v: [] for v in versions}
        call("bands")
        for _ in range(runs):
            for v in versions:
                t = time.perf_counter()
                call(v)
                times[v].append(time.perf_counter() - t)
        t1 = statistics.median(times["bands"])
        t2 = statistics.median(times["filter_vectors"]) if "filter_vectors" in times else float("nan")
        auto = "v2" if (16 < f <= 64 and c >= 8) else "v1"
        tp = statistics.median(times["pool"])
        ta = t2 if auto == "v2" else t1
        print(f"{s:4d}x{s:<4d}x{c:4d} -> {f:4d}   {fl / 1e9:7.3f} {t1 * 1e3:8.2f} {fl / t1 / 1e9:6.0f} "
              f"{t2 * 1e3:8.2f} {fl / t2 / 1e9:6.0f} {t1 / t2:6.2f} {auto:>5s} {tp * 1e3:8.2f} {tp / ta:9.2f}  {err:.1e}")


def bench_train(runs):
    print("== train (one 3x3 conv layer, BN + leaky, forward + backward; a 1x1 head, avgpool, softmax, cost) ==")
    print(f"{'shape':30s} {'GFLOP':>7s} {'ref fwd':>8s} {'bwd':>8s} {'fast fwd':>9s} {'bwd':>8s} {'speedup':>7s}"
          "  max rel err (weight gradient, input delta)")
    for (s, c, f, b) in TRAIN_SHAPES:
        text = (f"[net]\nbatch={b}\nwidth={s}\nheight={s}\nchannels={c}\n\n"
                f"[convolutional]\nfilters={c}\nsize=1\nactivation=leaky\n\n"  # gives layer 1 an input delta
                f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
                "[convolutional]\nfilters=5\nsize=1\nactivation=linear\n\n[avgpool]\n\n[softmax]\n\n[cost]\n")
        net = darknet_py.Network.from_text(text, name="train_bench", batch=b)
        net.randomize(3)
        net.training = True
        rng = np.random.default_rng(1)
        x = rng.standard_normal((b, c, s, s)).astype(np.float32)
        truth = np.eye(5, dtype=np.float32)[rng.integers(0, 5, b)]
        result = {}
        for name, reference in (("reference", True), ("fast", False)):
            net.set_exec_options(reference_kernels=reference)
            for layer in net.layers:
                for v in layer.update_buffers.values():
                    v[...] = 0
            net.accumulate(x, truth)
            grads = net.layers[1].update_buffers["weight_updates"].copy()
            delta_in = net.layers[0].delta.copy()
            prof = net.time_layers(x, runs, 1, True, truth)
            result[name] = (grads, delta_in, statistics.median(prof["layers"][1]),
                            statistics.median(prof["backward_layers"][1]))
        (g_ref, d_ref, f_ref, b_ref), (g_fast, d_fast, f_fast, b_fast) = result["reference"], result["fast"]
        err_g = np.abs(g_fast - g_ref).max() / max(np.abs(g_ref).max(), 1e-30)
        err_d = np.abs(d_fast - d_ref).max() / max(np.abs(d_ref).max(), 1e-30)
        assert err_g < 1e-4 and err_d < 1e-4, f"fast training path disagrees: {err_g:.3g}, {err_d:.3g}"
        fl = 3 * net.layers[1].flops * b  # per image: forward, weight gradient, input gradient
        print(f"{s:4d}x{s:<4d}x{c:4d} -> {f:4d} b{b:<3d}    {fl / 1e9:7.2f} {f_ref * 1e3:8.2f} {b_ref * 1e3:8.2f} "
              f"{f_fast * 1e3:9.2f} {b_fast * 1e3:8.2f} {(f_ref + b_ref) / (f_fast + b_fast):6.2f}x  "
              f"{err_g:.1e} {err_d:.1e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["conv", "winograd", "direct", "train", "gemm", "maxpool", "reorg", "region"])
    args = ap.parse_args()
    _core.set_num_threads(args.threads)
    print(f"threads {args.threads}, kernels {_core.cpu_kernel()}, medians of {args.runs} runs")
    if args.only in (None, "conv"):
        bench_conv(args.runs)
    if args.only in (None, "winograd"):
        bench_winograd(args.runs)
    if args.only in (None, "direct"):
        bench_direct(args.runs)
    if args.only in (None, "train"):
        bench_train(args.runs)
    if args.only in (None, "gemm"):
        bench_gemm(args.runs)
    bench_memory_bound(args.runs,
                       args.only if args.only not in ("conv", "winograd", "direct", "train", "gemm") else "none")


if __name__ == "__main__":
    main()
