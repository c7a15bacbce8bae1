#!/usr/bin/env python3
"""Training throughput (images/s) of net.train_step with random data.

    python bench/train_speed.py [--cfg yolov2-tiny-voc] [--size 416] [--batch 8]
                                [--steps 5] [--threads N] [--profile]

Random images and 1-3 random boxes per image (x, y, w, h, class in Darknet's
truth layout), batch 8 (one sub-batch), learning rate as in the cfg. The
forward/backward/update timings are the core's training path (the fast
inference kernels are not used while training). --profile prints the
per-layer forward and backward times of one more pass.
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import cfg_path  # noqa: E402


def random_truth(rng, batch, truths, classes=20):
    t = np.zeros((batch, truths), np.float32)
    for b in range(batch):
        for i in range(rng.integers(1, 4)):
            w, h = rng.uniform(.05, .5, 2)
            x, y = rng.uniform(w / 2, 1 - w / 2), rng.uniform(h / 2, 1 - h / 2)
            t[b, 5 * i:5 * i + 5] = (x, y, w, h, rng.integers(0, classes))
    return t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default="yolov2-tiny-voc")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    import darknet_py
    from darknet_py import _core
    if args.threads:
        _core.set_num_threads(args.threads)
    net = darknet_py.load(str(cfg_path(args.cfg)), batch=args.batch)
    if (net.width, net.height) != (args.size, args.size):
        net.resize(args.size, args.size)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
    truth = random_truth(rng, args.batch, net._net.truths, net.region["classes"])
    net.train_step(x, truth)  # warm-up: allocates training buffers
    ts = []
    for _ in range(args.steps):
        t = time.perf_counter()
        loss = net.train_step(x, truth)
        ts.append(time.perf_counter() - t)
    med = statistics.median(ts)
    print(f"{args.cfg} {args.size}x{args.size} batch {args.batch}, {_core.get_num_threads()} thread(s), kernels "
          f"{_core.cpu_kernel()}: {med * 1e3:.0f} ms/step (median of {args.steps}), "
          f"{args.batch / med:.2f} images/s, loss {loss:.3f}")
    if args.profile:
        prof = net.profile(runs=1, warmup=0, backward=True, x=x)
        print(prof.table())


if __name__ == "__main__":
    main()
