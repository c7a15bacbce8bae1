#!/usr/bin/env python3
"""Per-layer training cost of a cfg's 3x3 convolutions against PyTorch's own fused layers.

    python bench/torch_conv_layers.py [--cfg cfg/demo.cfg] [--size 160] [--batch 32]
                                      [--threads 2] [--rounds 2]

bench/peers.py times the whole training step against bench/torch_reference.py, which writes
Darknet's batch norm out as tensor ops (several passes). This script asks a harder question:
for each convolutional layer of the cfg (3x3 with batch norm and leaky), the forward and
backward time of darknet_py's layer (`Network.time_layers`, training mode, the whole net)
against `nn.Conv2d` + `nn.BatchNorm2d` (training) + `leaky_relu` in PyTorch eager, on the
same input shape and batch. The two alternate round by round in one process; each time is
the median of 5 runs. The first layer's input gradient is not computed by either. PyTorch
is optional (pip install ".[bench]").
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def torch_layer_times(torch, shape, batch, runs=5):
    c, h, w, f = shape
    conv = torch.nn.Conv2d(c, f, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(f)
    x = torch.randn(batch, c, h, w, requires_grad=c != 3)
    fwd, bwd = [], []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        y = torch.nn.functional.leaky_relu(bn(conv(x)), 0.1)
        t1 = time.perf_counter()
        y.backward(torch.ones_like(y))
        t2 = time.perf_counter()
        if i >= 2:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return statistics.median(fwd), statistics.median(bwd)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cfg", default="cfg/demo.cfg")
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    import torch
    import darknet_py
    from train_speed import random_truth
    torch.set_num_threads(args.threads)
    net = darknet_py.load(args.cfg, batch=args.batch)
    if (net.width, net.height) != (args.size, args.size):
        net.resize(args.size, args.size)
    net.set_exec_options(threads=args.threads)
    net.seen = 20000
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
    truth = random_truth(rng, args.batch, net._net.truths, net.region["classes"])
    convs = []
    for i, layer in enumerate(net.layers):
        text = layer.describe().split()
        # "conv  F  S x S / STRIDE  W x H x C  ->  ...": the 3x3 stride-1 layers
        if text[0] == "conv" and text[2] == "3" and text[6] == "1":
            w, h, c, f = int(text[7]), int(text[9]), int(text[11]), int(text[1])
            convs.append((i, (c, h, w, f)))
    print(f"{args.cfg} at {args.size}, batch {args.batch}, {args.threads} thread(s); ms, median of 5 per round")
    print("layer  shape                   | darknet_py fwd  bwd | torch fwd  bwd")
    totals = {"dn": [], "torch": []}
    for r in range(args.rounds):
        prof = net.time_layers(x, 5, 1, True, truth)
        dn_sum = torch_sum = 0.0
        for i, shape in convs:
            fd, bd = (statistics.median(prof[k][i]) for k in ("layers", "backward_layers"))
            ft, bt = torch_layer_times(torch, shape, args.batch)
            dn_sum += fd + bd
            torch_sum += ft + bt
            c, h, w, f = shape
            print(f"{i:5d}  {w}x{h}x{c}->{f}".ljust(31) + f"| {fd * 1e3:8.1f} {bd * 1e3:6.1f}   | "
                  f"{ft * 1e3:7.1f} {bt * 1e3:6.1f}")
        totals["dn"].append(dn_sum)
        totals["torch"].append(torch_sum)
        print(f"round {r + 1}: sum darknet_py {dn_sum * 1e3:.0f} ms, torch {torch_sum * 1e3:.0f} ms, "
              f"ratio {dn_sum / torch_sum:.2f}")


if __name__ == "__main__":
    main()
