#!/usr/bin/env python3
"""darknet_py vs OpenCV's Darknet importer, same cfg + weights, alternating runs.

    python bench/vs_opencv.py [--nets yolov2-tiny-voc yolov2-voc] [--size 416]
                              [--threads 2 1] [--runs 15] [--warmup 3]

Both load the same cfg and the same random weights (reference make_weights.py,
seed 1), run batch 1 on the same random input, one darknet_py run then one
OpenCV run, repeated; prints each median and the ratio darknet_py / OpenCV
(< 1 means darknet_py is faster). Only ratios from one run are meaningful on a
shared, noisy machine. Needs `pip install "opencv-python-headless<5"` (the
`bench` extra): OpenCV 5 dropped the Darknet importer.

This process sets OPENBLAS_NUM_THREADS=1 for itself (numpy's own OpenBLAS
thread pool otherwise spins next to the measured code); darknet_py does not use
a BLAS: its GEMM is its own (the kernel family in use is printed).
"""
import argparse
import os
import statistics
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cfg_path, random_weights, timed  # noqa: E402

# Original Darknet (AlexeyAB build, AVX + OpenMP) from ../shared/reference/README.md, medians in ms.
DARKNET_MS = {("yolov2-voc", 416, 1): 1749, ("yolov2-voc", 416, 2): 1038,
              ("yolov2-tiny-voc", 416, 1): 423, ("yolov2-tiny-voc", 416, 2): 324}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", nargs="+", default=["yolov2-tiny-voc", "yolov2-voc"])
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--threads", nargs="+", type=int, default=[2, 1])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    try:
        import cv2
    except ImportError:
        sys.exit('OpenCV is needed: pip install "opencv-python-headless<5"')
    import darknet_py
    from darknet_py import _core

    print(f"darknet_py kernels: {_core.cpu_kernel()}   OpenCV {cv2.__version__}   "
          f"size {args.size}, batch 1, {args.runs} alternating runs after {args.warmup} warm-up")
    rows = []
    for name in args.nets:
        cfg = cfg_path(name)
        weights = random_weights(cfg, args.seed)
        net = darknet_py.load(str(cfg), str(weights), batch=1)
        if net.width != args.size or net.height != args.size:
            net.resize(args.size, args.size)
        cvnet = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
        for threads in args.threads:
            _core.set_num_threads(threads)
            cv2.setNumThreads(threads)
            ours, theirs = [], []

            def run_ours():
                net.forward(x)

            def run_cv():
                cvnet.setInput(x)
                cvnet.forward()

            for _ in range(args.warmup):
                run_ours()
                run_cv()
            for _ in range(args.runs):
                ours.append(timed(run_ours))
                theirs.append(timed(run_cv))
            mo, mc = statistics.median(ours) * 1e3, statistics.median(theirs) * 1e3
            gflops = net.total_flops / (mo * 1e-3) / 1e9
            dk = DARKNET_MS.get((name, args.size, threads))
            rows.append((name, threads, mo, mc, mo / mc, gflops, dk))
            print(f"{name:16s} {args.size} threads={threads}: darknet_py {mo:7.1f} ms ({gflops:5.0f} GFLOP/s)   "
                  f"OpenCV {mc:7.1f} ms   ratio {mo / mc:.3f}" +
                  (f"   [original Darknet, reference README: {dk} ms]" if dk else ""), flush=True)
    print("\n| net | threads | darknet_py ms | OpenCV ms | ratio | darknet_py GFLOP/s |")
    print("|---|---|---|---|---|---|")
    for name, threads, mo, mc, r, g, _ in rows:
        print(f"| {name} {args.size} | {threads} | {mo:.1f} | {mc:.1f} | {r:.3f} | {g:.0f} |")


if __name__ == "__main__":
    main()
