"""Smoke test of the CUDA backend on whole networks (run it under compute-sanitizer).

    python tools/gpu_smoke.py            # from the repo root, with darknet_py installed

Twice: with the CUDA convolutions in "fp32" (plain FMA; CPU vs CUDA within 1e-3 of the
largest magnitude) and in "tf32" (tensor cores, the default; within 2e-2).

For each network: the same seeded weights on "cpu" and "cuda", an inference
forward, three training steps and inference forwards after them, compared CPU
vs CUDA (and the allocation counters: a warmed-up step allocates nothing); a
trained CPU network moved to CUDA and back. Networks: cfg/demo.cfg (conv, maxpool,
route, reorg, region), cfg/demo-classifier.cfg (avgpool, softmax, cost), and
two small text cfgs for dropout, stride-1 maxpool, reverse reorg, a WordTree
softmax and a WordTree region. Exit status 0 when every check passed.
"""
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

import darknet_py as dp
from darknet_py import _core

REPO = Path(__file__).resolve().parents[1]
REL_TOL = {"fp32": 1e-3, "tf32": 2e-2}  # CPU vs CUDA, relative to the output's largest magnitude

TREE = "a -1\nb -1\nc 0\nd 0\ne 0\nf 1\ng 1\n"  # groups {a,b} {c,d,e} {f,g}

OPS_CFG = """[net]
batch=2
width=24
height=24
channels=3
learning_rate=0.01
momentum=0.9
decay=0.0005

[convolutional]
batch_normalize=1
filters=12
size=3
stride=1
pad=1
activation=leaky

[dropout]
probability=0.3

[maxpool]
size=3
stride=1

[convolutional]
batch_normalize=1
filters=8
size=1
stride=1
pad=0
activation=logistic

[reorg]
stride=2
reverse=1

[convolutional]
filters=7
size=3
stride=2
pad=1
activation=linear

[avgpool]

[softmax]
tree={tree}
"""

TREE_REGION_CFG = """[net]
batch=2
width=32
height=32
channels=3
learning_rate=0.01
momentum=0.9
decay=0.0005

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=12
size=1
stride=1
pad=1
activation=linear

[region]
anchors=1.0,1.5
classes=7
coords=4
num=1
softmax=1
tree={tree}
"""


def box_truth(batch, truths, classes, rng):
    """Two boxes per image (x, y, w, h, class), the rest zero (a zero x ends the list)."""
    t = np.zeros((batch, truths), np.float32)
    for b in range(batch):
        for k in range(min(2, truths // 5)):
            t[b, 5 * k:5 * k + 5] = [rng.uniform(.2, .8), rng.uniform(.2, .8), rng.uniform(.1, .4),
                                     rng.uniform(.1, .4), rng.integers(0, classes)]
    return t


def class_truth(batch, truths, rng, tree=False):
    t = np.zeros((batch, truths), np.float32)
    for b in range(batch):
        if tree:  # a leaf and its parent, as fill_hierarchy would
            t[b, 0], t[b, 3] = 1, 1
        else:
            t[b, rng.integers(0, truths)] = 1
    return t


def rel_diff(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0), 1e-12)
    return float(np.abs(a - b).max(initial=0) / scale)


def make_pair(build, seed=1):
    nets = []
    for device in ("cpu", "cuda"):
        net = build(device)
        net.randomize(seed)
        net._net.set_seed(seed)  # dropout draws: the same units dropped on both devices
        nets.append(net)
    return nets


def check_net(name, build, truth_fn, failures, math):
    print(f"== {name} [cuda_math={math}]", flush=True)
    name = f"{name} [{math}]"
    t0 = time.perf_counter()
    cpu, gpu = make_pair(build)
    rng = np.random.default_rng(0)
    batch = cpu._net.batch
    x = rng.random((batch, cpu._net.channels, cpu._net.height, cpu._net.width), dtype=np.float32)
    truth = truth_fn(batch, cpu._net.truths, rng)

    def compare(what, a, b):
        d = rel_diff(a, b)
        finite = bool(np.isfinite(a).all() and np.isfinite(b).all())
        ok = finite and d <= REL_TOL[math]
        print(f"  {what:<28} rel diff {d:.2e} {'ok' if ok else 'FAIL'}{'' if finite else ' (non-finite)'}",
              flush=True)
        if not ok:
            failures.append(f"{name}: {what} rel diff {d:.2e} finite={finite}")

    compare("forward", cpu.forward(x), gpu.forward(x))
    stats = getattr(_core, "cuda_allocation_stats", None)

    def no_allocation(what, fn):
        # A warmed-up step must not allocate device or pinned memory.
        before = stats() if stats else None
        result = fn()
        if stats:
            after = stats()
            same = before == after
            print(f"  {what:<28} {'no allocation' if same else 'ALLOCATED'} ({before} -> {after})", flush=True)
            if not same:
                failures.append(f"{name}: a warmed-up {what} allocated memory")
        return result

    for step in range(3):
        c_cpu = cpu.train_step(x, truth)
        c_gpu = no_allocation(f"train_step {step}", lambda: gpu.train_step(x, truth)) if step == 2 else \
            gpu.train_step(x, truth)
        compare(f"train_step {step} cost", [c_cpu], [c_gpu])
    for net in (cpu, gpu):
        net._net.set_training(False)
    compare("forward after training", cpu.forward(x), gpu.forward(x))
    compare("forward again", cpu.forward(x), no_allocation("forward", lambda: gpu.forward(x)))
    # Moving a trained CPU network to the GPU and back keeps its results.
    ref = cpu.forward(x)
    cpu.to("cuda")
    compare("to('cuda') forward", ref, cpu.forward(x))
    cpu.to("cpu")
    compare("to('cpu') forward", ref, cpu.forward(x))
    print(f"  {time.perf_counter() - t0:.1f} s", flush=True)


def main():
    print(f"darknet_py {dp.__version__} from {Path(dp.__file__).parent}")
    print(f"cuda_built={dp.cuda_built()} cuda_available={dp.cuda_available()} {dp.cuda_unavailable_reason()}")
    if not dp.cuda_available():
        print("CUDA not available: nothing to check")
        return 2
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "smoke.tree"
        tree.write_text(TREE)
        cases = [
            ("demo.cfg (conv/maxpool/route/reorg/region)",
             lambda d: dp.Network.from_cfg(str(REPO / "cfg" / "demo.cfg"), batch=2, device=d),
             lambda b, n, r: box_truth(b, n, 5, r)),
            ("demo-classifier.cfg (avgpool/softmax/cost)",
             lambda d: dp.Network.from_cfg(str(REPO / "cfg" / "demo-classifier.cfg"), batch=2, device=d),
             lambda b, n, r: class_truth(b, n, r)),
            ("ops (dropout/maxpool s1/reverse reorg/tree softmax)",
             lambda d: dp.Network.from_text(OPS_CFG.format(tree=tree), "ops.cfg", batch=2, device=d),
             lambda b, n, r: class_truth(b, n, r, tree=True)),
            ("tree region",
             lambda d: dp.Network.from_text(TREE_REGION_CFG.format(tree=tree), "tree_region.cfg", batch=2,
                                            device=d),
             lambda b, n, r: box_truth(b, n, 7, r)),
        ]
        for math in ("fp32", "tf32"):
            _core.set_cuda_math(math)  # networks built from here on
            for name, build, truth_fn in cases:
                try:
                    check_net(name, build, truth_fn, failures, math)
                except Exception:  # report and go on with the next network
                    traceback.print_exc()
                    failures.append(f"{name} [{math}]: exception")
    print("\nFAILURES:\n  " + "\n  ".join(failures) if failures else "\nall smoke checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
