"""Where yolo9000.cfg's time goes: the forward at 544 and a training step (forward +
backward with truth boxes), and the share of the [region] layer (9418-node tree softmax,
then the loss) in each.

    python bench/yolo9000_profile.py [--runs 5] [--step-size 288] [--batch 2]

The region layer's time in the step comes from the profiler (forward with truth, and
backward). Its split into tree softmax and loss comes from the region layer alone on the
step's output shape, timed alternately without truth (activation: logistic + tree
softmax) and with truth (activation + loss), fastest of --runs each: the difference of two
whole-network medians is lost in the noise of a shared machine. The training truth has two COCO boxes (through coco9k.map) in image 0 and a
classification-only label (Darknet's marker) in the others. Random weights (He-normal).
"""
import argparse
import os
import time

import numpy as np

import darknet_py
from darknet_py.data import CLASSIFICATION_ONLY_COORD
from darknet_py.profile import profile_network

from _common import REFERENCE

COCO_DOG = 16


def region_ms(prof, backward=False):
    layer = next(l for l in prof.layers if l.type == "region")
    return layer.backward_ms if backward else layer.ms


def split_region_forward(net, truth, runs):
    """(activation ms, loss ms) of the network's region layer alone on its output shape."""
    region = net.region
    text = open("cfg/yolo9000.cfg").read()
    channels = region["num"] * (region["coords"] + 1 + region["classes"])
    alone = darknet_py.Network.from_text(
        f"[net]\nwidth={region['w']}\nheight={region['h']}\nchannels={channels}\n" + text[text.index("[region]"):],
        "cfg/yolo9000_region.cfg", batch=net.batch)
    x = np.random.default_rng(0).normal(0, 2, (net.batch, channels, region["h"], region["w"])).astype(np.float32)
    infer, train = [], []
    for _ in range(runs):
        alone.training = False
        t = time.perf_counter()
        alone.forward(x)
        infer.append(time.perf_counter() - t)
        alone.training = True
        t = time.perf_counter()
        alone.forward(x, truth)
        train.append(time.perf_counter() - t)
    return min(infer) * 1e3, (min(train) - min(infer)) * 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--step-size", type=int, default=288)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()

    os.chdir(REFERENCE)  # the cfg's tree=/map= are relative to the reference root
    net = darknet_py.Network.from_cfg("cfg/yolo9000.cfg", batch=args.batch)
    net.randomize(seed=9000, init="normal")

    net.set_batch(1)
    fwd = profile_network(net, runs=args.runs, warmup=1, batch=1)
    print(f"forward at {net.width}: {fwd.total_ms:.0f} ms; region (tree softmax) "
          f"{region_ms(fwd):.1f} ms = {region_ms(fwd) / fwd.layer_sum_ms:.1%}")

    net.set_batch(args.batch)
    net.resize(args.step_size, args.step_size)
    region = net.region
    truth = np.zeros((args.batch, region["truths"]), np.float32)
    truth[0, :10] = [.5, .5, .3, .4, COCO_DOG, .3, .6, .2, .2, 0]
    truth[1:, :5] = [CLASSIFICATION_ONLY_COORD, CLASSIFICATION_ONLY_COORD, 1, 1, region["map"][COCO_DOG]]
    step = profile_network(net, runs=args.runs, warmup=1, backward=True, truth=truth)
    step_ms = step.layer_sum_ms + sum(l.backward_ms for l in step.layers)
    region_fwd, region_bwd = region_ms(step), region_ms(step, backward=True)
    activation, loss = split_region_forward(net, truth, args.runs)
    print(f"training step at {args.step_size}, batch {args.batch}: {step_ms:.0f} ms (forward {step.total_ms:.0f}, "
          f"backward {step.total_backward_ms:.0f}); region {region_fwd + region_bwd:.1f} ms = "
          f"{(region_fwd + region_bwd) / step_ms:.1%} (forward {region_fwd:.1f}, backward {region_bwd:.1f})")
    print(f"  region layer alone at {region['w']}x{region['h']}, batch {args.batch}: tree softmax (+ logistic) "
          f"{activation:.1f} ms, loss {loss:.1f} ms -> {activation / step_ms:.1%} and {loss / step_ms:.1%} of the step")
    print(f"threads {step.threads}, {step.device_name}")


if __name__ == "__main__":
    main()
