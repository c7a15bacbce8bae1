"""CUDA vs CPU timings of whole networks (random weights): forward at batch 1
and 8, and one training step (forward + backward + update) at batch 8.

    python tools/gpu_bench.py [--cfg cfg/yolov2-tiny-voc.cfg ...] [--budget 4] [--devices cuda,cpu]

Prints one line per (cfg, device, pass): median ms over the timed runs and
images/s, then the CPU/CUDA speed-up. Each case runs one warm-up and then
repeats until `--budget` seconds or `--runs` runs (at least 2). A CUDA forward
returns the output on the host, so its time includes the download.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import darknet_py as dp

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CFGS = ["cfg/yolov2-tiny-voc.cfg", "cfg/yolov2-voc.cfg"]


def box_truth(batch, truths, rng):
    t = np.zeros((batch, truths), np.float32)
    for b in range(batch):
        t[b, :5] = [rng.uniform(.2, .8), rng.uniform(.2, .8), rng.uniform(.1, .4), rng.uniform(.1, .4), 0]
    return t


def timed(fn, budget, max_runs):
    fn()  # warm-up: first-touch allocations, uploads, caches
    times = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < 2 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", action="append", help="cfg files (default: yolov2-tiny-voc, yolov2-voc)")
    ap.add_argument("--devices", default="cuda,cpu")
    ap.add_argument("--budget", type=float, default=4.0, help="seconds of timed runs per case")
    ap.add_argument("--runs", type=int, default=20, help="most timed runs per case")
    args = ap.parse_args()
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    if "cuda" in devices and not dp.cuda_available():
        print(f"CUDA not available ({dp.cuda_unavailable_reason()}): CPU only")
        devices = [d for d in devices if d != "cuda"]
    cfgs = args.cfg or [str(REPO / c) for c in DEFAULT_CFGS]

    results = {}  # (cfg, pass) -> {device: ms}
    print(f"{'cfg':<22} {'device':<6} {'pass':<14} {'ms':>10} {'images/s':>10} {'runs':>5}", flush=True)
    for cfg in cfgs:
        name = Path(cfg).stem
        rng = np.random.default_rng(0)
        for device in devices:
            for batch in (1, 8):
                try:
                    net = dp.load(cfg, batch=batch, seed=1, device=device)
                    x = rng.random((batch, net._net.channels, net._net.height, net._net.width), dtype=np.float32)
                    passes = [(f"forward b{batch}", lambda: net.forward(x))]
                    if batch == 8:
                        truth = box_truth(batch, net._net.truths, rng)
                        passes.append((f"train_step b{batch}", lambda: net.train_step(x, truth)))
                    for label, fn in passes:
                        ms, runs = timed(fn, args.budget, args.runs)
                        ms *= 1e3
                        results.setdefault((name, label), {})[device] = ms
                        print(f"{name:<22} {device:<6} {label:<14} {ms:10.2f} {batch * 1e3 / ms:10.1f} {runs:5d}",
                              flush=True)
                    del net
                except Exception as e:  # report and go on with the next case
                    print(f"{name:<22} {device:<6} batch {batch}: FAILED: {type(e).__name__}: {e}", flush=True)
    if "cuda" in devices and "cpu" in devices:
        print("\nspeed-up (CPU ms / CUDA ms)")
        for (name, label), by_device in results.items():
            if "cuda" in by_device and "cpu" in by_device:
                print(f"  {name:<22} {label:<14} {by_device['cpu'] / by_device['cuda']:8.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
