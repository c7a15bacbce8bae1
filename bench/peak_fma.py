#!/usr/bin/env python3
"""FMA peak of this machine (GFLOP/s) on 1 and 2 threads, cached for the profiler.

    python bench/peak_fma.py [--threads 1 2] [--refresh]

Napkin math: each thread runs 16 independent chains of 512-bit FMAs (AVX-512;
12 chains of 256-bit on AVX2): 16 lanes x 2 flops per FMA; two FMA ports with
4-cycle latency need >= 8 chains in flight. Expect 64 flop/cycle/core on
AVX-512 machines with two FMA units (e.g. 3.7 GHz -> ~240 GFLOP/s per core).
The cached value (~/.cache/darknet_py/peak.json) is the max over 7 repeats.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from darknet_py import _core  # noqa: E402
from darknet_py.profile import peak_gflops  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--refresh", action="store_true", help="measure again instead of reading the cache")
    args = ap.parse_args()
    print(f"kernels: {_core.cpu_kernel_best()}")
    for t in args.threads:
        g = peak_gflops(t, refresh=args.refresh)
        r = _core.peak_gflops(threads=t, repeats=5)
        print(f"{t} thread(s): cached peak {g:7.1f} GFLOP/s   this run: median {r['gflops']:7.1f}, "
              f"max {r['max_gflops']:7.1f}")


if __name__ == "__main__":
    main()
