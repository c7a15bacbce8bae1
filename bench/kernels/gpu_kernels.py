#!/usr/bin/env python3
"""GPU kernel lab: every version of the CUDA convolution, validated against the CPU, then timed
(the llm.c dev/cuda habit; bench/kernels/bench_kernels.py is the CPU's lab).

    python bench/kernels/gpu_kernels.py [--batch 1 64] [--runs 20] [--only forward|train]
                                        [--json PATH] [--device cpu]

Versions (one convolution with batch norm and leaky, the shapes of yolov2-voc and
yolov2-tiny-voc at 416):
  v1 reference   im2col + tiled FP32 SGEMM per image, then batch norm, bias and activation as
                 separate launches (reference_kernels=True: cuda/convolutional.cu)
  v2 igemm fp32  implicit GEMM (cuda/conv_fast.cuh): no im2col buffer, the batch folded into
                 N, 3-stage cp.async pipeline, fused epilogue, split-K when the tiles cannot
                 fill the device; plain FMA (cuda_math="fp32")
  v3 igemm tf32  the same on the tensor cores: wmma m16n16k8 TF32 (cuda_math="tf32", the default)

Validation before timing, against the CPU backend on the same weights and input: v1 and v2
within 1e-4 of the largest output value, v3 within 5e-3 (TF32's 10-bit mantissas). Training
(--only train) validates the weight gradient and the input delta after one step the same way.

Timing: Network.time_layers on the device, a layer's time from CUDA events around it (no
synchronisation per layer), median of --runs after a warm-up. GFLOP/s use Darknet's FLOP
count (2 * filters * size^2 * c * out_h * out_w per image; training counts 3x: forward,
weight gradient, input gradient); "% peak" is of the device's measured peak for the version's
arithmetic (_core.cuda_peak_gflops: FP32 FMA for v1 and v2, TF32 mma.sync for v3).

--device cpu runs the same script with the CPU backend in place of the GPU (every version
then runs the CPU's kernels; the switches change nothing there): a check of the script itself
on a machine without a GPU.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if any((REPO / "darknet_py").glob("_core*")):  # an in-place build; otherwise the installed package
    sys.path.insert(0, str(REPO))
import darknet_py  # noqa: E402
from darknet_py import _core  # noqa: E402

# (w = h, c, filters, size) of yolov2-voc / yolov2-tiny-voc convolutions at 416 (all stride 1).
SHAPES = [(416, 3, 32, 3), (416, 3, 16, 3), (208, 16, 32, 3), (208, 32, 64, 3), (104, 64, 128, 3),
          (104, 128, 64, 1), (52, 128, 256, 3), (26, 256, 512, 3), (26, 512, 256, 1), (13, 512, 1024, 3),
          (13, 1024, 512, 1), (13, 1024, 1024, 3), (13, 1280, 1024, 3), (13, 1024, 125, 1)]
VERSIONS = [("v1 reference", dict(reference_kernels=True, cuda_math="fp32"), "fp32", 1e-4),
            ("v2 igemm fp32", dict(reference_kernels=False, cuda_math="fp32"), "fp32", 1e-4),
            ("v3 igemm tf32", dict(reference_kernels=False, cuda_math="tf32"), "tf32", 5e-3)]


def layer_text(s, c, f, k, batch, train):
    tail = "[cost]\ntype=sse\n" if train else ""
    return (f"[net]\nbatch={batch}\nwidth={s}\nheight={s}\nchannels={c}\nlearning_rate=0.001\nmomentum=0.9\n\n"
            f"[convolutional]\nfilters={c}\nsize=1\nactivation=linear\n\n"  # gives the layer under test an input delta
            f"[convolutional]\nbatch_normalize=1\nfilters={f}\nsize={k}\nstride=1\npad={k // 2}\nactivation=leaky\n\n"
            + tail)


def make_weights(text, path, seed):
    net = darknet_py.Network.from_text(text, name="lab.cfg")
    net.randomize(seed)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        p = layer.params
        if "biases" in p:
            p["biases"][...] = rng.uniform(-.1, .1, p["biases"].shape)
        if "scales" in p:
            p["scales"][...] = rng.uniform(.8, 1.2, p["scales"].shape)
            p["rolling_mean"][...] = rng.normal(0, .2, p["rolling_mean"].shape)
            p["rolling_variance"][...] = rng.uniform(.5, 1.5, p["rolling_variance"].shape)
    net.save_weights(str(path))


def rel_err(a, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - ref).max()) / max(float(np.abs(ref).max()), 1e-30)


def one_step(net, x, truth):
    """Gradients of one training step: the layer's weight gradient and the delta at its input."""
    for layer in net.layers:
        for v in layer.update_buffers.values():
            v[...] = 0
    net.accumulate(x, truth)
    return net.layers[1].update_buffers["weight_updates"].copy(), net.layers[0].delta.copy()


def run_shape(shape, batch, train, device, runs, peaks, tmp):
    s, c, f, k = shape
    text = layer_text(s, c, f, k, batch, train)
    weights = Path(tmp) / "lab.weights"
    make_weights(text, weights, 7)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((batch, c, s, s)).astype(np.float32)
    cpu = darknet_py.Network.from_text(text, name="lab.cfg", batch=batch)
    cpu.load_weights(str(weights))
    dev = darknet_py.Network.from_text(text, name="lab.cfg", batch=batch, device=device)
    dev.load_weights(str(weights))
    truth = None
    if train:
        for net in (cpu, dev):
            net.training = True
        truth = rng.uniform(-1, 1, (batch, cpu._net.truths)).astype(np.float32)
        ref_grad, ref_delta = one_step(cpu, x, truth)
    else:
        ref_out = cpu.forward(x).copy()
    flops = dev.layers[1].flops * batch * (3 if train else 1)
    rows = []
    for name, opts, math, tol in VERSIONS:
        dev.set_exec_options(**opts)
        if train:
            grad, delta = one_step(dev, x, truth)
            err = max(rel_err(grad, ref_grad), rel_err(delta, ref_delta))
        else:
            err = rel_err(dev.forward(x), ref_out)
        ok = err <= tol
        row = {"version": name, "max_rel_err": err, "valid": ok}
        if ok:
            prof = dev.time_layers(x, runs, 2, train, truth)
            ms = statistics.median(prof["layers"][1]) * 1e3
            if train:
                ms += statistics.median(prof["backward_layers"][1]) * 1e3
            gf = flops / (ms * 1e-3) / 1e9
            peak = peaks.get(math)
            row.update(ms=ms, gflops=gf, pct_peak=gf / peak * 100 if peak else None)
        rows.append(row)
    return flops, rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--only", choices=["forward", "train"], default=None)
    ap.add_argument("--shapes", type=int, default=None, help="only the first N shapes")
    ap.add_argument("--size-cap", type=int, default=None,
                    help="shrink maps above this size to it (a quick run; FLOPs follow the shape run)")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not darknet_py.cuda_available():
        print(f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")
        return 2
    peaks = {}
    if args.device == "cuda":
        peaks = {m: float(_core.cuda_peak_gflops(m)) for m in ("fp32", "tf32")}
        info = _core.cuda_device_info(0)
        print(f"device {info['name']} ({info['multiprocessors']} SMs), measured peak FP32 {peaks['fp32']:.0f} "
              f"GFLOP/s, TF32 (mma.sync) {peaks['tf32']:.0f} GFLOP/s")
    else:
        print("device cpu (a dry run of the lab: every version runs the CPU kernels)")
    shapes = SHAPES[:args.shapes] if args.shapes else SHAPES
    passes = [p for p in ("forward", "train") if args.only in (None, p)]
    results = []
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for mode in passes:
            train = mode == "train"
            for batch in args.batch:
                print(f"\n== {mode}, batch {batch} (conv + BN + leaky{'; forward + backward' if train else ''}) ==")
                print(f"{'shape':28s} {'GFLOP':>8s}  " + "  ".join(f"{n:>22s}" for n, *_ in VERSIONS))
                for shape in shapes:
                    s, c, f, k = shape
                    if args.size_cap:
                        s = min(s, args.size_cap)
                    try:
                        flops, rows = run_shape((s, c, f, k), batch, train, args.device, args.runs, peaks, tmp)
                    except Exception as e:  # noqa: BLE001 - report the shape and go on
                        print(f"{s:4d}x{s:<4d}x{c:4d}->{f:4d} {k}x{k}: FAILED {type(e).__name__}: {e}")
                        failed = True
                        continue
                    cells = []
                    for r in rows:
                        if not r["valid"]:
                            cells.append(f"INVALID err {r['max_rel_err']:.1e}")
                            failed = True
                        else:
                            pct = f" {r['pct_peak']:3.0f}%" if r["pct_peak"] is not None else ""
                            cells.append(f"{r['ms']:8.3f} ms {r['gflops']:6.0f}{pct}")
                    print(f"{s:4d}x{s:<4d}x{c:4d}->{f:4d} {k}x{k}   {flops / 1e9:8.3f}  " +
                          "  ".join(f"{cell:>22s}" for cell in cells), flush=True)
                    results.append({"mode": mode, "batch": batch, "shape": [s, c, f, k], "gflop": flops / 1e9,
                                    "versions": rows})
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "peaks_gflops": peaks, "results": results},
                                              indent=1))
    print("\ncolumns: median ms, GFLOP/s, % of the measured peak of the version's arithmetic")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
