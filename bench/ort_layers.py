#!/usr/bin/env python3
"""Per-layer race against ONNX Runtime: where the whole-net ratio of bench/peers.py comes from.

    python bench/ort_layers.py [yolov2-voc] [--size 416] [--threads 1] [--rounds 5]

The same cfg and random weights (bench/peers.py builds the ONNX graph from the cfg); ONNX
Runtime's own profiler gives each node's kernel time (`enable_profiling`), darknet_py's
profiler each layer's (`Network.time_layers`). The two run in one process, alternated
round by round (the shared VMs drift by 1.5x within minutes), and each layer keeps its
fastest round on both sides. Prints one row per layer: ms of both, the ratio
(darknet_py / ONNX Runtime, below 1 is faster) and GFLOP/s of both.

    python bench/ort_layers.py [NET] --phases [--rounds 40]

splits instead by the shared VM's phases: one ONNX Runtime run and one darknet_py pass per
round, and the rounds whose darknet_py total is above 1.25x the fastest count as slow; each
layer's median in the fast and in the slow rounds on both sides, and the slowdown factor.

ONNX Runtime's graph optimiser turns the convolutions into NCHWc nodes (channels blocked
by 8 on AVX2, 16 on AVX-512) with the weights reordered once at load: a direct
convolution whose vector operand is the packed weights. darknet_py's convolutions are the
packed GEMM (weights read in place) or Winograd; both sides fold batch norm.
"""
import argparse
import collections
import json
import os
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("net", nargs="?", default="yolov2-voc")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=3, help="forwards per round on each side")
    ap.add_argument("--phases", action="store_true",
                    help="per-layer medians in the fast and the slow rounds (one run per side per round)")
    args = ap.parse_args(argv)
    if args.phases:
        args.runs = 1
    os.environ["OMP_NUM_THREADS"] = str(args.threads)   # before any OpenMP runtime loads
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("ort_layers needs onnxruntime and onnx (pip install '.[bench]')")
    import numpy as np
    from _common import cfg_path, random_weights
    from peers import onnx_model, read_model

    cfg = cfg_path(args.net)
    weights = random_weights(cfg)
    net, layers = read_model(str(cfg), str(weights), args.size)
    net.set_exec_options(threads=args.threads)
    net.keep_outputs = False   # as bench/peers.py infer: pooled outputs, conv + 2x2 max pool fused
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)

    profile_dir = tempfile.mkdtemp(prefix="ort_layers_")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(profile_dir, "ort")
    session = ort.InferenceSession(onnx_model(layers, args.size).SerializeToString(), opts,
                                   providers=["CPUExecutionProvider"])
    session.run(None, {"input": x})   # warm-up (weights reordered on the first run)
    net.forward(x)

    dn_best = [float("inf")] * len(net.layers)
    dn_rounds = []   # --phases: per round, each layer's ms
    for _ in range(args.rounds):
        for _ in range(args.runs):
            session.run(None, {"input": x})
        raw = net.time_layers(x, args.runs, 0, False)
        dn_rounds.append([times[0] * 1e3 for times in raw["layers"]])
        for i, times in enumerate(raw["layers"]):
            dn_best[i] = min(dn_best[i], min(times) * 1e3)
    events = json.load(open(session.end_profiling()))
    if args.phases:
        return print_phases(cfg.name, args, net, dn_rounds, events)

    # Node names are the cfg layer they came from ("l12", "l12_nchwc"); the graph's own
    # reorder/reshape nodes have other names and are summed as "other".
    ort_runs = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            ort_runs[e["name"]].append(e["dur"] / 1e3)
    ort_best = collections.defaultdict(float)
    for name, durations in ort_runs.items():
        # A node runs once per session.run: the fastest run of the first (warm-up) excluded.
        fastest = min(durations[1:] or durations)
        ort_best[layer_key(name)] += fastest

    print(f"{cfg.name} {args.size}x{args.size}, batch 1, {args.threads} thread(s); fastest of "
          f"{args.rounds} alternated rounds x {args.runs} runs per layer")
    print(f"{'layer':>5} {'type':14} {'darknet_py ms':>13} {'ort ms':>8} {'ratio':>6} {'dn GF/s':>8} {'ort GF/s':>8}")
    total_dn = total_ort = 0.0
    for i, layer in enumerate(net.layers):
        dn_ms, ort_ms = dn_best[i], ort_best.get(i, 0.0)
        total_dn += dn_ms
        total_ort += ort_ms
        flops = layer.flops
        gf = lambda ms: f"{flops / (ms * 1e6):8.1f}" if ms > 0 and flops else f"{'':8}"  # noqa: E731
        if net.fused_with_next(i):   # the pair's time is the conv's: compare with both ORT nodes
            ort_ms += ort_best.get(i + 1, 0.0)
            total_ort += ort_best.get(i + 1, 0.0)
        ratio = f"{dn_ms / ort_ms:6.2f}" if ort_ms > 0 else f"{'':6}"
        note = ""
        if net.fused_with_next(i):
            note = "  (+ the next layer, fused)"
        elif i > 0 and net.fused_with_next(i - 1):
            print(f"{i:5d} {layer.type[:14]:14} {'fused above':>13}")
            continue
        print(f"{i:5d} {layer.type[:14]:14} {dn_ms:13.2f} {ort_ms:8.2f} {ratio} {gf(dn_ms)} {gf(ort_ms)}{note}")
    other = ort_best.get("other", 0.0)
    total_ort += other
    print(f"{'':5} {'(ort reorders)':14} {'':13} {other:8.2f}")
    print(f"total: darknet_py {total_dn:.1f} ms, ONNX Runtime {total_ort:.1f} ms, ratio {total_dn / total_ort:.2f}")


def layer_key(node_name):
    """The cfg layer a profiled ONNX node came from ("l12", "l12_nchwc"), else "other"."""
    m = re.match(r"l(\d+)(_|$)", node_name)
    return int(m.group(1)) if m else "other"


def print_phases(cfg_name, args, net, dn_rounds, events):
    import statistics
    nodes = sorted((e["ts"], layer_key(e["name"]), e["dur"] / 1e3) for e in events
                   if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"))
    ort_rounds = []   # a run starts where layer 0's node comes after layer 0 was already seen
    for _, key, ms in nodes:
        if key == 0 and (not ort_rounds or 0 in ort_rounds[-1]):
            ort_rounds.append(collections.defaultdict(float))
        if ort_rounds:
            ort_rounds[-1][key] += ms
    ort_rounds = ort_rounds[1:]            # the warm-up run
    n = min(len(ort_rounds), len(dn_rounds))
    totals = [sum(r) for r in dn_rounds[:n]]
    slow = [i for i in range(n) if totals[i] > 1.25 * min(totals)]
    fast = [i for i in range(n) if i not in slow]
    med = lambda xs: statistics.median(xs) if xs else float("nan")  # noqa: E731
    print(f"{cfg_name} {args.size}x{args.size}, batch 1, {args.threads} thread(s); {n} rounds, "
          f"{len(fast)} fast and {len(slow)} slow (darknet_py total > 1.25x its fastest)")
    print(f"{'layer':>5} {'type':14} {'dn fast':>8} {'dn slow':>8} {'x':>5} {'ort fast':>8} {'ort slow':>8} {'x':>5}")
    sums = [0.0] * 4
    for layer in range(len(net.layers)):
        row = [med([dn_rounds[i][layer] for i in fast]), med([dn_rounds[i][layer] for i in slow]),
               med([ort_rounds[i].get(layer, 0.0) for i in fast]), med([ort_rounds[i].get(layer, 0.0) for i in slow])]
        sums = [a + b for a, b in zip(sums, row)]
        ratio = lambda a, b: f"{b / a:5.2f}" if a > 0 else f"{'':5}"  # noqa: E731
        print(f"{layer:5d} {net.layers[layer].type[:14]:14} {row[0]:8.2f} {row[1]:8.2f} {ratio(row[0], row[1])} "
              f"{row[2]:8.2f} {row[3]:8.2f} {ratio(row[2], row[3])}")
    other = [med([ort_rounds[i].get("other", 0.0) for i in fast]), med([ort_rounds[i].get("other", 0.0) for i in slow])]
    print(f"summed: darknet_py fast {sums[0]:.1f} ms, slow {sums[1]:.1f}; ONNX Runtime fast "
          f"{sums[2] + other[0]:.1f}, slow {sums[3] + other[1]:.1f} (reorders included); "
          f"ratio fast {sums[0] / (sums[2] + other[0]):.2f}, slow {sums[1] / (sums[3] + other[1]):.2f}")


if __name__ == "__main__":
    main()
