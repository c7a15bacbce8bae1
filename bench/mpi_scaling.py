#!/usr/bin/env python3
"""Data-parallel scaling on one machine, bytes communicated per step, and a paper estimate
for 8 machines (README "Data-parallel training on MPI").

    python bench/mpi_scaling.py [--iterations 6] [--repeats 2] [--bandwidth-gbit 10]

1. Throughput of `darknet-py train` on the demo detector (cfg/demo.cfg at 160x160, multi-scale
   off, global batch 32) on the synthetic shapes: 1 rank x 2 threads against
   `mpirun -n 2` x 1 thread (and 1 rank x 1 thread, the baseline both scale from), run
   alternately `--repeats` times (the machine may be shared: read the rows, not one number).
   Threads are the core's DARKNET_PY_THREADS.
2. Bytes one rank sends into the iteration's allreduce (gradients + BN rolling statistics +
   loss and failure flag, float32) and the stop vote, for the demo net and yolov2-voc at 416.
3. The measured time of that allreduce on 2 ranks here, against the measured compute time
   of an iteration.
4. A paper estimate for 8 machines training yolov2-voc (batch 64): compute per machine from
   this machine's measured training GFLOP/s (the demo net's, applied to yolov2-voc's FLOPs),
   communication as a ring allreduce (each rank sends and receives 2(N-1)/N of the buffer)
   at the stated network bandwidth, no overlap of communication with the backward.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bucket_bytes(cfg: str, size: int) -> tuple:
    """(allreduce payload bytes per iteration, forward FLOPs per image) of a cfg at size x size."""
    import darknet_py
    from darknet_py.distributed import _rolling_statistics, _update_buffers
    net = darknet_py.Network.from_cfg(cfg, batch=1)
    net.resize(size, size)
    net.training = True
    floats = sum(a.size for a in _update_buffers(net) + _rolling_statistics(net)) + 2
    return 4 * floats, net.total_flops


def launcher() -> list:
    mpirun = shutil.which("mpirun", path=str(Path(sys.executable).parent)) or shutil.which("mpirun")
    if not mpirun:
        sys.exit("mpirun not found: pip install '.[mpi]'")
    return [mpirun, "--oversubscribe"]


def env(threads: int) -> dict:
    e = dict(os.environ, DARKNET_PY_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
             OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    return e


def images_per_second(cmd: list, threads: int) -> float:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env(threads), stdin=subprocess.DEVNULL)
    m = re.search(r"([0-9.]+) images/s", out.stdout)
    if out.returncode or not m:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return float(m.group(1))


def time_allreduce(nbytes: int, runs: int) -> None:
    """Under mpirun: median seconds of an in-place float32 allreduce of nbytes (printed by rank 0)."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    buf = np.ones(nbytes // 4, np.float32)
    times = []
    for _ in range(runs + 1):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t0)
    if comm.Get_rank() == 0:
        print(f"allreduce_seconds {statistics.median(times[1:]):.6f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--bandwidth-gbit", type=float, default=10.0, help="assumed network bandwidth (Gbit/s)")
    ap.add_argument("--allreduce-bytes", type=int, help=argparse.SUPPRESS)  # the timing run under mpirun
    args = ap.parse_args()
    if args.allreduce_bytes:
        return time_allreduce(args.allreduce_bytes, 10)

    from darknet_py.data.synthetic import generate
    work = Path(tempfile.mkdtemp(prefix="mpi_scaling_"))
    try:
        data = generate(work / "data", n_train=64, n_valid=2, size=(160, 160), seed=0)
        cfg = work / "demo.cfg"
        cfg.write_text((REPO / "cfg" / "demo.cfg").read_text().replace("random=1", "random=0"))
        train = ["-m", "darknet_py.cli", "train", data, str(cfg), "--max-batches", str(args.iterations),
                 "--checkpoint-every", "0", "--backup"]
        single, one, two = [], [], []
        for r in range(args.repeats):
            single.append(images_per_second([sys.executable] + train + [str(work / f"single{r}")], threads=1))
            one.append(images_per_second([sys.executable] + train + [str(work / f"one{r}")], threads=2))
            two.append(images_per_second(launcher() + ["-n", "2", sys.executable] + train + [str(work / f"two{r}")],
                                         threads=1))
            print(f"repeat {r}: 1 rank x 1 thread {single[-1]:.1f}, 1 rank x 2 threads {one[-1]:.1f}, "
                  f"2 ranks x 1 thread {two[-1]:.1f} images/s", flush=True)
        base = statistics.median(single)
        print(f"median: 1 rank x 1 thread {base:.1f}; 1 rank x 2 threads {statistics.median(one):.1f} "
              f"({statistics.median(one) / base:.2f}x); 2 ranks x 1 thread {statistics.median(two):.1f} images/s "
              f"({statistics.median(two) / base:.2f}x)")

        demo_bytes, demo_flops = bucket_bytes(str(cfg), 160)
        yolo_bytes, yolo_flops = bucket_bytes(str(REPO / "cfg" / "yolov2-voc.cfg"), 416)
        print(f"allreduce payload per iteration: demo {demo_bytes / 1e6:.2f} MB, yolov2-voc {yolo_bytes / 1e6:.1f} MB "
              f"(+8 bytes of stop vote); a ring allreduce sends and receives 2(N-1)/N of it per rank")
        out = subprocess.run(launcher() + ["-n", "2", sys.executable, __file__, "--allreduce-bytes", str(demo_bytes)],
                             capture_output=True, text=True, env=env(1), stdin=subprocess.DEVNULL)
        m = re.search(r"allreduce_seconds ([0-9.]+)", out.stdout)
        if not m:
            sys.exit(f"allreduce timing failed:\n{out.stdout}\n{out.stderr}")
        allreduce = float(m.group(1))
        iteration = 32 / statistics.median(two)
        print(f"2 ranks here: allreduce of the demo's {demo_bytes / 1e6:.2f} MB {allreduce * 1e3:.2f} ms, "
              f"iteration {iteration * 1e3:.0f} ms: communication {100 * allreduce / iteration:.2f}% of an iteration")

        # Paper estimate: 8 machines, yolov2-voc at 416, global batch 64.
        train_gflops = statistics.median(one) * 3 * demo_flops / 1e9  # forward + backward ~ 3x forward
        per_image = 3 * yolo_flops / (train_gflops * 1e9)
        n, batch, bandwidth = 8, 64, args.bandwidth_gbit * 1e9 / 8
        compute = batch / n * per_image
        comm = 2 * (n - 1) / n * yolo_bytes / bandwidth
        print(f"this machine trains at ~{train_gflops:.1f} GFLOP/s (demo net, 1 rank x 2 threads); yolov2-voc at 416: "
              f"{3 * yolo_flops / 1e9:.0f} GFLOP per image trained, {per_image:.1f} s per image here")
        print(f"8 machines like this one, batch 64, {args.bandwidth_gbit:g} Gbit/s: compute {compute:.1f} s, allreduce "
              f"{comm:.2f} s per iteration -> speedup {n * compute / (compute + comm):.2f}x of 8 "
              f"(efficiency {100 * compute / (compute + comm):.1f}%)")
        for speedup in (10, 100, 1000):
            c = compute / speedup
            print(f"  machines {speedup}x faster than this one: compute {c:.2f} s, allreduce {comm:.2f} s -> "
                  f"{n * c / (c + comm):.2f}x of 8")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
