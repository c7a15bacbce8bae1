"""Every layer type and option, trained one step on the CPU and on the GPU: the same result.

One table (ROWS). Each row is a small network in cfg text: the layer under test,
alone or after a convolution, behind a probe -- a [dropout] with probability=0,
an exact identity whose delta after backward is the input gradient of the layers
behind it -- and, unless the row ends in its own loss layer ([region], [softmax],
[cost]), a [cost] type=sse that drives a real gradient. Odd shapes on purpose:
non-square maps, channel counts that are not multiples of 32, odd pooling sizes.

For each row the network is built twice from the same text, with
device="cpu" and device="cuda", given the same parameters (randomize(seed), then
the same weights file with non-trivial biases, BN scales and rolling statistics)
and the same generator seed (dropout draws), put in training mode, and run through
forward(x, truth) (truth of the network's size, net.truths), backward, update.
Compared, CPU (the reference) vs CUDA:
  L<i>.loaded.<p>       parameters as loaded (EXACT: nothing computed yet)
  net.output, L<i>.output        every layer's output after forward
  L<i>.loss_delta, cost          deltas written by the loss layers during forward; the loss
  L<i>.delta                     every layer's delta after backward
  L<i>.grad.<b>         training buffers after backward (weight/bias/scale updates, BN
                        mean/variance, x, x_norm, ...)
  L<i>.updated.<p>      parameters after the SGD update (weights, biases, scales,
                        rolling mean/variance)
  L<i>.momentum.<b>     the buffers after the update (momentum-scaled updates)
Inference rows (train=False) compare the outputs only.

Tolerance per compared array: |cuda - cpu| <= atol * max(1, max|cpu|) + rtol * |cpu|
(the array's scale bounds float32 sums in another order, as tests/test_training_fixture.py):
  EXACT       (0, 0)       data movement (maxpool, reorg, route, dropout), host draws
  LIBM        (1e-6, 1e-5) transcendental functions (CUDA's expf/logf/tanhf are within
                           2 ulp of glibc's): activations, softmax, region
  REDUCTION   (1e-5, 1e-4) sums in another order: costs, average pooling, bias sums
  GEMM        (1e-5, 1e-4) FP32 GEMM, im2col/col2im and SGD (tiles and FMA contraction
                           sum in another order)
  BATCHNORM   (1e-4, 1e-3) batch statistics, amplified by 1/sqrt(var) in the backward
  FAST_PATH   (1e-4, 1e-4) inference rows: the CPU's fast path (folded BN, packed GEMM,
                           Winograd) vs the GPU's: tests/test_fast_path.py's bound
A row states one tolerance; `tol_by` tightens or widens it per kind of array
(e.g. the loss of an otherwise exact row is a REDUCTION). On failure the whole
row -- cfg text, input shape, seeds, tolerance -- is printed.

Skipped with the reason (darknet_py.cuda_unavailable_reason()) where CUDA is not
available; test_cpu_side_of_every_row still runs every row on the CPU so the
table itself is exercised everywhere (and each training row must move its
input gradient and its parameters: no row can pass by computing nothing).
test_nvcc_compiles_cuda_sources compiles every cuda/*.cu with warnings as errors
for sm_80 and sm_90 wherever nvcc is installed.
"""
import os
import shutil
import subprocess
import sysconfig
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np
import pytest

import darknet_py
from darknet_py import _core

REPO = Path(__file__).resolve().parents[1]
CUDA_DIR = REPO / "cuda"
MASKED = -1234.0  # Darknet's "no label" truth value


class Tol(NamedTuple):
    atol: float
    rtol: float


EXACT = Tol(0.0, 0.0)
LIBM = Tol(1e-6, 1e-5)
REDUCTION = Tol(1e-5, 1e-4)
GEMM = Tol(1e-5, 1e-4)
BATCHNORM = Tol(1e-4, 1e-3)
FAST_PATH = Tol(1e-4, 1e-4)

PARAM_SEED = 5     # randomize(seed) and the weights file's perturbations
GENERATOR_SEED = 7  # set_seed: the network's generator (dropout draws)


def cuda_skip_reason() -> Optional[str]:
    if darknet_py.cuda_available():
        return None
    return f"CUDA not available: {darknet_py.cuda_unavailable_reason()}"


# ----------------------------------------------------------------- the table

# 9 nodes in 4 sibling groups: [a b] [c d e] (under a) [f g] (under b) [h i] (under c)
TREE = "a -1\nb -1\nc 0\nd 0\ne 0\nf 1\ng 1\nh 2\ni 2\n"
TREE_LEAVES = [3, 4, 5, 6, 7, 8]

PROBE = "[dropout]\nprobability=0\n\n"
SSE = "[cost]\ntype=sse\n\n"


class Row(NamedTuple):
    layers: str                 # cfg sections after the probe; {tree} = the tree file
    shape: Tuple[int, int, int, int]  # input (batch, c, h, w)
    tol: Tol
    train: bool = True
    loss: str = "sse"           # "sse": a [cost] type=sse is appended; "own": the layers end in a loss
    truth: str = "dense"        # dense | masked | region | softmax | tree | onehot
    inputs: str = "normal"      # normal | ties (small integers: equal maxima)
    seen: int = 100             # region: below 12800 the anchor-prior deltas apply
    meta: Tuple = ()            # (key, value) pairs for the truth: classes, coords, groups
    tol_by: Tuple = ()          # (kind, Tol) pairs: loaded, output, loss_delta, cost, delta, grad, updated, momentum


def conv(filters, size, stride=1, pad=None, padding=None, bn=0, act="linear", groups=1):
    p = f"padding={padding}\n" if padding is not None else f"pad={1 if pad is None else pad}\n"
    return (f"[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride={stride}\n{p}"
            f"groups={groups}\nactivation={act}\n\n")


def maxpool(size, stride, padding=None):
    return f"[maxpool]\nsize={size}\nstride={stride}\n" + (f"padding={padding}\n" if padding is not None else "") + "\n"


def region(classes, num, coords=4, softmax=1, extra=""):
    anchors = ",".join(f"{0.8 + 0.7 * i:.2f},{1.1 + 0.5 * i:.2f}" for i in range(num))
    return (f"[region]\nclasses={classes}\ncoords={coords}\nnum={num}\nanchors={anchors}\nsoftmax={softmax}\n"
            f"thresh=.6\nobject_scale=5\nnoobject_scale=1\nclass_scale=1\ncoord_scale=1\n{extra}\n")


ROWS: Dict[str, Row] = {}

# -- convolutional
ROWS.update({
    "conv_1x1_linear": Row(conv(7, 1, pad=0), (2, 5, 6, 7), GEMM),
    "conv_3x3_pad1_bn_leaky": Row(conv(6, 3, bn=1, act="leaky"), (2, 5, 7, 9), BATCHNORM),
    "conv_3x3_pad1_nobn_leaky": Row(conv(6, 3, act="leaky"), (2, 5, 7, 9), GEMM),
    "conv_3x3_stride2_bn_leaky": Row(conv(8, 3, stride=2, bn=1, act="leaky"), (2, 4, 9, 11), BATCHNORM),
    "conv_5x5_pad0_linear": Row(conv(5, 5, padding=0), (1, 3, 10, 7), GEMM),
    "conv_5x5_stride2_pad2_tanh": Row(conv(5, 5, stride=2, padding=2, act="tanh"), (2, 4, 10, 7), GEMM),
    "conv_groups3_logistic": Row(conv(9, 3, groups=3, act="logistic"), (2, 6, 6, 5), GEMM),
    "conv_groups2_bn_leaky": Row(conv(8, 3, groups=2, bn=1, act="leaky"), (2, 4, 5, 6), BATCHNORM),
    "conv_3x3_bn_multi_tile": Row(conv(70, 3, bn=1, act="leaky"), (2, 35, 19, 23), BATCHNORM),
    "conv_1x1_bn_37ch": Row(conv(33, 1, pad=0, bn=1, act="leaky"), (2, 37, 5, 6), BATCHNORM),
    "conv_batch1_bn": Row(conv(6, 3, bn=1, act="leaky"), (1, 3, 8, 5), BATCHNORM),
    "conv_two_layers_bn": Row(conv(8, 3, bn=1, act="leaky") + conv(5, 3, stride=2, bn=1, act="leaky"),
                              (2, 3, 9, 10), BATCHNORM),
    # inference: rolling statistics; the CPU runs its fast path
    "conv_3x3_bn_inference": Row(conv(6, 3, bn=1, act="leaky"), (2, 5, 7, 9), FAST_PATH, train=False),
    "conv_3x3_bn_inference_winograd_shape": Row(conv(32, 3, bn=1, act="leaky") + conv(33, 3, bn=1, act="leaky"),
                                                (1, 32, 26, 54), FAST_PATH, train=False),
    "conv_groups_inference": Row(conv(12, 3, groups=3, bn=1, act="leaky"), (2, 6, 7, 5), FAST_PATH, train=False),
})

ACTIVATIONS = ["logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu", "loggy", "stair",
               "hardtan", "lhtan", "selu"]
for _act in ACTIVATIONS:  # after a GEMM: its bound covers the activations' LIBM differences too
    ROWS[f"conv_activation_{_act}"] = Row(conv(4, 3, act=_act), (2, 3, 5, 6), GEMM)

# -- maxpool (behind the probe alone: exact), and after a convolution (tiny-yolo's 2/1)
_cost_reduction = (("cost", REDUCTION),)
ROWS.update({
    "maxpool_2_2": Row(maxpool(2, 2), (2, 5, 8, 6), EXACT, tol_by=_cost_reduction),
    "maxpool_2_1_tiny_yolo": Row(maxpool(2, 1), (2, 5, 7, 9), EXACT, tol_by=_cost_reduction),
    "maxpool_3_2_odd": Row(maxpool(3, 2), (2, 3, 9, 7), EXACT, tol_by=_cost_reduction),
    "maxpool_2_2_odd_nonsquare": Row(maxpool(2, 2), (1, 3, 7, 5), EXACT, tol_by=_cost_reduction),
    "maxpool_3_1_pad2_37ch": Row(maxpool(3, 1, padding=2), (1, 37, 6, 5), EXACT, tol_by=_cost_reduction),
    "maxpool_5_3": Row(maxpool(5, 3), (2, 4, 13, 11), EXACT, tol_by=_cost_reduction),
    "maxpool_2_1_ties": Row(maxpool(2, 1), (2, 4, 6, 5), EXACT, inputs="ties", tol_by=_cost_reduction),
    "maxpool_inference": Row(maxpool(2, 2), (2, 5, 8, 6), EXACT, train=False),
    "conv_bn_leaky_then_maxpool_2_1": Row(conv(8, 3, bn=1, act="leaky") + maxpool(2, 1), (2, 3, 7, 6), BATCHNORM),
    "conv_then_maxpool_2_2": Row(conv(6, 3, act="leaky") + maxpool(2, 2), (2, 3, 9, 8), GEMM),
})

# -- avgpool
ROWS.update({
    "avgpool_37ch": Row("[avgpool]\n\n", (2, 37, 5, 7), REDUCTION),
    "avgpool_70ch_13x13": Row("[avgpool]\n\n", (1, 70, 13, 13), REDUCTION),
    "conv_then_avgpool": Row(conv(9, 3, act="leaky") + "[avgpool]\n\n", (2, 4, 6, 7), GEMM),
})

# -- route and reorg
ROWS.update({
    # sources: an identity maxpool (size 1 stride 1) and the probe; repeated source
    "route_three_sources_exact": Row(maxpool(1, 1, padding=0) + "[route]\nlayers=-1,-2,-1\n\n", (2, 5, 6, 7),
                                     EXACT, tol_by=_cost_reduction),
    "route_two_convs": Row(conv(4, 3, act="leaky") + conv(3, 1, pad=0, act="linear") + "[route]\nlayers=-1,-2\n\n",
                           (2, 3, 6, 7), GEMM),
    "route_single_source_back": Row(conv(4, 3, act="leaky") + maxpool(2, 2) + "[route]\nlayers=-2\n\n",
                                    (2, 3, 6, 8), GEMM),
    "reorg_s2_c8_h6_w10": Row("[reorg]\nstride=2\n\n", (2, 8, 6, 10), EXACT, tol_by=_cost_reduction),
    "reorg_s3_c18_h6_w9": Row("[reorg]\nstride=3\n\n", (1, 18, 6, 9), EXACT, tol_by=_cost_reduction),
    "reorg_s2_c12_h4_w6": Row("[reorg]\nstride=2\n\n", (2, 12, 4, 6), EXACT, tol_by=_cost_reduction),
    "reorg_reverse_s2_c8_h3_w5": Row("[reorg]\nstride=2\nreverse=1\n\n", (2, 8, 3, 5), EXACT,
                                     tol_by=_cost_reduction),
    # YOLOv2's passthrough: conv, maxpool, conv, route back, reorg, route of both, 1x1 conv
    "yolov2_passthrough": Row(conv(8, 3, bn=1, act="leaky") + maxpool(2, 2) + conv(6, 1, pad=0, bn=1, act="leaky")
                              + "[route]\nlayers=-3\n\n[reorg]\nstride=2\n\n[route]\nlayers=-1,-3\n\n"
                              + conv(5, 1, pad=0), (2, 3, 8, 10), BATCHNORM),
})

# -- softmax (its own cross-entropy loss), dropout, cost
_softmax_tol = (("cost", REDUCTION),)
ROWS.update({
    "softmax_g1_n37": Row("[softmax]\n\n", (2, 37, 1, 1), LIBM, loss="own", truth="softmax",
                          meta=(("groups", 1),), tol_by=_softmax_tol),
    "softmax_g3_n45": Row("[softmax]\ngroups=3\n\n", (2, 45, 1, 1), LIBM, loss="own", truth="softmax",
                          meta=(("groups", 3),), tol_by=_softmax_tol),
    "softmax_g5_t2_n35": Row("[softmax]\ngroups=5\ntemperature=2\n\n", (2, 35, 1, 1), LIBM, loss="own",
                             truth="softmax", meta=(("groups", 5),), tol_by=_softmax_tol),
    "softmax_spatial_g4": Row("[softmax]\ngroups=4\n\n", (2, 4, 3, 3), LIBM, loss="own", truth="softmax",
                              meta=(("groups", 4),), tol_by=_softmax_tol),
    "softmax_tree": Row("[softmax]\ntree={tree}\n\n", (2, 9, 1, 1), LIBM, loss="own", truth="tree",
                        tol_by=_softmax_tol),
    "softmax_inference": Row("[softmax]\ngroups=3\n\n", (2, 45, 1, 1), LIBM, train=False),
    # a Darknet-19-style classifier head: conv+BN, maxpool, 1x1 conv, avgpool, softmax, cost
    "classifier_head": Row(conv(6, 3, bn=1, act="leaky") + maxpool(2, 2) + conv(5, 1, pad=0) + "[avgpool]\n\n"
                           + "[softmax]\n\n" + SSE, (2, 3, 8, 10), BATCHNORM, loss="own", truth="onehot",
                           meta=(("classes", 5),)),
    "dropout_p03_after_conv": Row(conv(6, 3, act="leaky") + "[dropout]\nprobability=0.3\n\n", (2, 3, 5, 7), GEMM),
    "dropout_p05_alone": Row("[dropout]\nprobability=0.5\n\n", (2, 5, 4, 7), EXACT, tol_by=_cost_reduction),
    "dropout_inference": Row("[dropout]\nprobability=0.5\n\n", (2, 5, 4, 7), EXACT, train=False),
    "cost_sse_scale1": Row(conv(5, 1, pad=0) + "[cost]\ntype=sse\n\n", (2, 4, 3, 5), GEMM, loss="own"),
    "cost_masked": Row(conv(5, 1, pad=0) + "[cost]\ntype=masked\n\n", (2, 4, 3, 5), GEMM, loss="own",
                       truth="masked"),
    "cost_L1_scale05": Row(conv(5, 1, pad=0) + "[cost]\ntype=L1\nscale=0.5\n\n", (2, 4, 3, 5), GEMM, loss="own"),
    "cost_smooth_scale2": Row(conv(5, 1, pad=0) + "[cost]\ntype=smooth\nscale=2\n\n", (2, 4, 3, 5), GEMM,
                              loss="own"),
})

# -- region (behind the probe: the loss's decisions -- best anchor, IoU > thresh -- see the same input)
_region_tol = (("cost", REDUCTION),)
ROWS.update({
    "region_flat_softmax": Row(region(4, 3, extra="bias_match=1\nrescore=1\n"), (2, 27, 4, 5), LIBM, loss="own",
                               truth="region", meta=(("classes", 4), ("coords", 4)), tol_by=_region_tol),
    "region_logistic_classes": Row(region(3, 2, softmax=0, extra="bias_match=0\nrescore=0\n"), (2, 16, 3, 6), LIBM,
                                   loss="own", truth="region", meta=(("classes", 3), ("coords", 4)),
                                   tol_by=_region_tol),
    "region_seen_large": Row(region(4, 3, extra="bias_match=1\nrescore=1\n"), (2, 27, 4, 5), LIBM, loss="own",
                             truth="region", seen=20000, meta=(("classes", 4), ("coords", 4)), tol_by=_region_tol),
    "region_tree": Row(region(9, 2, extra="tree={tree}\nbias_match=1\nrescore=1\n"), (2, 28, 3, 5), LIBM,
                       loss="own", truth="region", meta=(("classes", 9), ("coords", 4), ("leaves", 1)),
                       tol_by=_region_tol),
    "region_coords5": Row(region(3, 2, coords=5, extra="bias_match=1\nrescore=1\n"), (2, 18, 4, 4), LIBM,
                          loss="own", truth="region", meta=(("classes", 3), ("coords", 5)), tol_by=_region_tol),
    "region_background_inference": Row(region(4, 2, extra="background=1\n"), (1, 18, 5, 4), LIBM, train=False),
    "region_inference": Row(region(4, 3), (2, 27, 4, 5), LIBM, train=False),
})


# ----------------------------------------------------------------- running a row

def row_text(name: str, row: Row, tree: Path) -> str:
    b, c, h, w = row.shape
    head = (f"[net]\nbatch={b}\nwidth={w}\nheight={h}\nchannels={c}\nlearning_rate=0.01\nmomentum=0.9\n"
            f"decay=0.0005\npolicy=constant\nburn_in=0\nmax_batches=100\n\n")
    body = row.layers.replace("{tree}", str(tree))
    return head + PROBE + body + (SSE if row.loss == "sse" else "")


def describe(name: str, row: Row, text: str) -> str:
    return (f"row {name}: input {row.shape}, train={row.train}, truth={row.truth}, seen={row.seen}, "
            f"param seed {PARAM_SEED}, generator seed {GENERATOR_SEED}, tolerance {row.tol} "
            f"{dict(row.tol_by) or ''}\n--- cfg ---\n{text}-----------")


def make_truth(row: Row, truths: int, rng, tree_obj) -> np.ndarray:
    b = row.shape[0]
    meta = dict(row.meta)
    if row.truth in ("dense", "masked"):
        t = rng.normal(0, 1, (b, truths)).astype(np.float32)
        if row.truth == "masked":
            t[:, ::4] = MASKED
        return t
    if row.truth == "softmax":
        g = meta["groups"]
        p = rng.uniform(0.1, 1, (b, g, truths // g))
        t = (p / p.sum(-1, keepdims=True)).reshape(b, truths).astype(np.float32)
        t[0, :3] = 0  # zero targets skip the log term
        return t
    if row.truth == "tree":
        from darknet_py.data.classification import class_truth
        return class_truth([TREE_LEAVES[1], TREE_LEAVES[4]][:b], truths, tree_obj).astype(np.float32)
    if row.truth == "onehot":
        t = np.zeros((b, truths), np.float32)
        t[np.arange(b), rng.integers(0, meta["classes"], b)] = 1
        return t
    if row.truth == "region":
        coords, classes = meta["coords"], meta["classes"]
        per = coords + 1
        t = np.zeros((b, truths), np.float32)
        for i in range(b):
            for k in range(i + 2):
                box = [rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.5)]
                box += list(rng.uniform(0.1, 0.9, coords - 4))
                cls = TREE_LEAVES[rng.integers(len(TREE_LEAVES))] if meta.get("leaves") else rng.integers(classes)
                t[i, per * k:per * (k + 1)] = box + [cls]
        return t
    raise AssertionError(f"unknown truth kind {row.truth}")


class Prepared(NamedTuple):
    text: str
    weights: Path
    x: np.ndarray
    truth: Optional[np.ndarray]


def prepare(name: str, row: Row, tmp_dir: Path) -> Prepared:
    """The row's cfg, a weights file with non-trivial parameters, its input and truth."""
    tree = tmp_dir / "parity.tree"
    if not tree.exists():
        tree.write_text(TREE)
    text = row_text(name, row, tree)
    net = darknet_py.Network.from_text(text, name=f"{name}.cfg", batch=row.shape[0])
    net.randomize(PARAM_SEED)
    rng = np.random.default_rng([PARAM_SEED, zlib.crc32(name.encode())])
    for layer in net.layers:
        p = layer.params
        if "biases" in p:
            p["biases"][...] = rng.uniform(-0.2, 0.2, p["biases"].shape)
        if "scales" in p:
            p["scales"][...] = rng.uniform(0.8, 1.2, p["scales"].shape)
            p["rolling_mean"][...] = rng.normal(0, 0.3, p["rolling_mean"].shape)
            p["rolling_variance"][...] = rng.uniform(0.5, 2.0, p["rolling_variance"].shape)
    weights = tmp_dir / f"{name}.weights"
    net.save_weights(str(weights))
    shape = row.shape
    x = (rng.integers(0, 3, shape) if row.inputs == "ties" else rng.normal(0, 1, shape)).astype(np.float32)
    truth = None
    if row.train:
        tree_obj = _core.WordTree.read(str(tree)) if row.truth == "tree" else None
        truth = make_truth(row, net._net.truths, rng, tree_obj)
    return Prepared(text, weights, x, truth)


def run(name: str, row: Row, prep: Prepared, device: str, cuda_math: str = "fp32") -> Dict[str, np.ndarray]:
    """cuda_math: the CUDA convolutions' arithmetic; the table's tolerances are FP32's."""
    b = row.shape[0]
    net = darknet_py.Network.from_text(prep.text, name=f"{name}.cfg", batch=b, device=device)
    net.set_exec_options(cuda_math=cuda_math)
    assert net.device == device and net.exec_options["device"] == device
    net.randomize(PARAM_SEED)
    net.load_weights(str(prep.weights))
    core = net._net
    core.set_training(row.train)
    core.set_seed(GENERATOR_SEED)
    net.seen = row.seen
    n = len(net)
    r: Dict[str, np.ndarray] = {}
    for i in range(n):
        for k, v in core.layer_params(i).items():
            r[f"L{i}.loaded.{k}"] = v.copy()
    r["net.output"] = np.array(net.forward(prep.x, prep.truth))
    for i in range(n):
        r[f"L{i}.output"] = core.layer_output(i)
    if not row.train:
        return r
    r["cost"] = np.float64(core.cost)
    for i in range(n):
        r[f"L{i}.loss_delta"] = core.layer_delta(i)
    core.backward(prep.x)
    for i in range(n):
        r[f"L{i}.delta"] = core.layer_delta(i)
        for k, v in core.layer_buffers(i).items():
            r[f"L{i}.grad.{k}"] = np.array(v, copy=True)
    core.update()
    for i in range(n):
        for k, v in core.layer_params(i).items():
            r[f"L{i}.updated.{k}"] = v.copy()
        for k, v in core.layer_buffers(i).items():
            r[f"L{i}.momentum.{k}"] = np.array(v, copy=True)
    return r


def kind_of(key: str) -> str:
    if key in ("cost", "net.output"):
        return "cost" if key == "cost" else "output"
    return key.split(".")[1]


def compare(name: str, row: Row, text: str, got: Dict[str, np.ndarray], ref: Dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(ref), (f"{name}: CUDA result keys differ: only CUDA {sorted(set(got) - set(ref))}, "
                                        f"only CPU {sorted(set(ref) - set(got))}\n{describe(name, row, text)}")
    by = dict(row.tol_by)
    by.setdefault("loaded", EXACT)
    failures = []
    for key in sorted(ref):
        e = np.asarray(ref[key], np.float64).reshape(-1)
        a = np.asarray(got[key], np.float64).reshape(-1)
        if a.size != e.size:
            failures.append(f"{key}: size {a.size} != {e.size}")
            continue
        if not e.size:
            continue
        tol = by.get(kind_of(key), row.tol)
        scale = max(1.0, float(np.abs(e).max()))
        err = np.abs(a - e)
        bound = tol.atol * scale + tol.rtol * np.abs(e)
        bad = ~(err <= bound)
        if bad.any():
            i = int(np.argmax(np.where(bad, err - bound, -np.inf)))
            failures.append(f"{key}: {int(bad.sum())} of {a.size} values out of tolerance (atol={tol.atol}*{scale:.3g}, "
                            f"rtol={tol.rtol}); worst at flat index {i}: cuda {a[i]!r} vs cpu {e[i]!r}")
    assert not failures, f"{name}: CUDA differs from the CPU:\n  " + "\n  ".join(failures) + "\n" + \
        describe(name, row, text)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda_parity")


# ----------------------------------------------------------------- tests

@pytest.mark.parametrize("name", sorted(ROWS))
def test_cpu_side_of_every_row(name, tmp_dir):
    """The table on the CPU (no device needed): every row builds and runs, its arrays are
    finite, and a training row moves its input gradient and (where it has any) its parameters."""
    row = ROWS[name]
    prep = prepare(name, row, tmp_dir)
    r = run(name, row, prep, "cpu")
    for k, v in r.items():
        assert np.isfinite(np.asarray(v, np.float64)).all(), f"{name}: {k} not finite\n{describe(name, row, prep.text)}"
    if not row.train:
        return
    assert np.abs(r["L0.delta"]).max() > 0, f"{name}: no gradient reached the input\n{describe(name, row, prep.text)}"
    assert float(r["cost"]) > 0
    params = [k for k in r if ".loaded." in k]
    moved = [k for k in params if not np.array_equal(r[k], r[k.replace(".loaded.", ".updated.")])]
    assert not params or moved, f"{name}: the update changed no parameter"


def cuda_against_cpu(name: str, tmp_dir: Path, cuda_math: str = "fp32", tol: Optional[Tol] = None) -> None:
    """Row `name` on the CPU and on CUDA with `cuda_math`, compared at the row's tolerances (or
    at `tol` for every computed array)."""
    reason = cuda_skip_reason()
    if reason:
        pytest.skip(reason)
    row = ROWS[name]
    prep = prepare(name, row, tmp_dir)
    ref = run(name, row, prep, "cpu")
    got = run(name, row, prep, "cuda", cuda_math=cuda_math)
    compare(name, row if tol is None else row._replace(tol=tol, tol_by=()), prep.text, got, ref)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_cuda_matches_cpu(name, tmp_dir):
    cuda_against_cpu(name, tmp_dir)


# TF32 (the default cuda_math): the convolutions' operands rounded to 10-bit mantissas (unit
# roundoff 2^-11 per operand), float accumulation. Bound for every array of a conv row, as the
# table's (|cuda - cpu| <= atol * max(1, max|cpu|) + rtol * |cpu|): a product's relative error is
# at most ~1e-3, and K random-sign terms sum to about sqrt(K) of their absolute sum; 5e-3 of the
# array's scale covers one convolution (K = 27..150 here), its batch norm and its gradients.
TF32 = Tol(5e-3, 5e-3)
# The stair activation is a step function: a TF32 rounding next to a step moves the output by
# a whole step, so that row stays with the FP32 comparison.
CONV_ROWS = sorted(n for n in ROWS if n.startswith("conv") and n != "conv_activation_stair")


@pytest.mark.parametrize("name", CONV_ROWS)
def test_cuda_tf32_matches_cpu(name, tmp_dir):
    """The convolution rows with the tensor-core (TF32) arithmetic, within TF32's tolerance."""
    cuda_against_cpu(name, tmp_dir, cuda_math="tf32", tol=TF32)


def test_conv_rows_cover_the_implicit_gemm_cases():
    """The conv rows reach every path of cuda/conv_fast.cu: the three tile heights (<= 32, <= 64,
    more filters), 1x1, stride 2, groups, and training (forward, weight and input gradients)."""
    texts = {n: ROWS[n].layers for n in CONV_ROWS}
    filters = [int(t.split("filters=")[1].split()[0]) for t in texts.values()]
    assert min(filters) <= 32 and any(32 < f <= 64 for f in filters) and max(filters) > 64
    assert any("size=1\n" in t for t in texts.values()) and any("stride=2" in t for t in texts.values())
    assert any("groups=3" in t for t in texts.values()) and any(ROWS[n].train for n in CONV_ROWS)


@pytest.mark.parametrize("name", sorted(ROWS))
def test_emulated_device_matches_cpu_exactly(name, tmp_dir):
    """The same table on device="emulated": the CPU kernels on separately allocated device
    memory, every transfer a real copy. The arithmetic is the CPU's, so every array must be
    bit-identical: any difference is the device-residency protocol (a missed upload or
    download, a buffer read before its newest copy arrived), not rounding. Runs everywhere."""
    row = ROWS[name]
    prep = prepare(name, row, tmp_dir)
    ref = run(name, row, prep, "cpu")
    before = _core.emulated_memory_stats()
    got = run(name, row, prep, "emulated")
    after = _core.emulated_memory_stats()
    # The run really went through device memory: allocations, uploads (parameters, input) and
    # downloads (what was read back).
    for k in ("allocations", "uploads", "downloads"):
        assert after[k] > before[k], f"{name}: no emulated-device {k}"
    assert sorted(got) == sorted(ref)
    bad = [k for k in sorted(ref) if not np.array_equal(np.asarray(got[k]), np.asarray(ref[k]))]
    assert not bad, f"{name}: the emulated device differs from the CPU in {bad}\n{describe(name, row, prep.text)}"


def test_randomize_is_the_same_on_both_devices():
    reason = cuda_skip_reason()
    if reason:
        pytest.skip(reason)
    text = "[net]\nwidth=9\nheight=7\nchannels=5\n\n" + conv(6, 3, bn=1, act="leaky") + conv(4, 1, pad=0)
    a = darknet_py.Network.from_text(text, device="cpu")
    b = darknet_py.Network.from_text(text, device="cuda")
    a.randomize(11)
    b.randomize(11)
    for la, lb in zip(a.layers, b.layers):
        for k in la.params:
            np.testing.assert_array_equal(lb.params[k], la.params[k], err_msg=f"layer {la.index} {k}")


def test_cuda_device_query():
    reason = cuda_skip_reason()
    if reason:
        assert not _core.cuda_available()
        pytest.skip(reason)
    assert _core.cuda_device_count() >= 1
    info = _core.cuda_device_info(0)
    assert info["name"] and info["total_memory"] > 0 and info["multiprocessors"] > 0 and info["major"] >= 1
    _core.cuda_synchronize()


# ------------------------------------------------ compile with -Werror

ARCHS = ("80", "90")


def find_nvcc() -> Optional[str]:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if os.path.isfile("/usr/local/cuda/bin/nvcc") else None)


LAYER_NAMES = ("activation", "avgpool", "batchnorm", "convolutional", "cost", "dropout", "maxpool", "region",
               "reorg", "route", "softmax")


def test_nvcc_compiles_cuda_sources(tmp_path):
    """Every cuda/*.cu compiles for sm_80 and sm_90 (one nvcc call per file, both archs) with
    all warnings as errors, nvcc's and the host compiler's; files compile in parallel."""
    nvcc = find_nvcc()
    if not nvcc:
        pytest.skip("CUDA not available: nvcc not found (no CUDA toolkit; set CUDA_HOME)")
    sources = sorted(CUDA_DIR.rglob("*.cu"))
    assert sources, f"no CUDA sources under {CUDA_DIR}"
    # The layers' kernels stay findable by name (a file, or the text of one).
    text = "\n".join(s.read_text(errors="replace") for s in sources)
    missing = [n for n in LAYER_NAMES if not any(n in s.stem for s in sources) and n not in text]
    assert not missing, f"CUDA kernels not found for: {missing}"
    flags = ["-std=c++17", "-O2", "-DDN_WITH_CUDA", f"-I{REPO / 'csrc'}", f"-I{REPO / 'csrc' / 'include'}",
             "-Werror", "all-warnings", "-Xcompiler", "-Wall,-Wextra,-Werror"]
    for a in ARCHS:
        flags += ["-gencode", f"arch=compute_{a},code=sm_{a}"]

    def compile_one(src: Path):
        obj = tmp_path / (src.relative_to(CUDA_DIR).as_posix().replace("/", "_") + ".o")
        cmd = [nvcc] + flags + ["-c", str(src), "-o", str(obj)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return src.relative_to(REPO).as_posix(), r.returncode, (" ".join(cmd) + "\n" + r.stdout + r.stderr)

    with ThreadPoolExecutor(max_workers=max(2, min(len(sources), os.cpu_count() or 2))) as pool:
        results = list(pool.map(compile_one, sources))
    failed = [f"{n}:\n{out}" for n, rc, out in results if rc != 0]
    assert not failed, "nvcc -Werror failed:\n" + "\n".join(failed)


def test_cuda_conditional_host_sources_compile_both_ways(tmp_path):
    """Host sources with a DN_WITH_CUDA branch (the backend entry, the device bindings)
    compile warning-free with and without it: a build only ever compiles one branch."""
    cxx = shutil.which("g++") or shutil.which("c++")
    try:
        import pybind11
    except ImportError:
        pybind11 = None
    if not cxx:
        pytest.skip("no C++ compiler")
    sources = sorted(p for p in (REPO / "csrc").rglob("*.cpp") if "DN_WITH_CUDA" in p.read_text(errors="replace"))
    if not sources:
        pytest.skip("no host source has a DN_WITH_CUDA branch")
    inc = [f"-I{REPO / 'csrc'}", f"-I{REPO / 'csrc' / 'include'}", f"-I{sysconfig.get_paths()['include']}"]
    if pybind11 is not None:
        inc.append(f"-I{pybind11.get_include()}")
    elif any("python" in p.parts for p in sources):
        pytest.skip("pybind11 not importable")
    jobs = [(src, defines) for src in sources for defines in ([], ["-DDN_WITH_CUDA"])]

    def compile_one(job):
        src, defines = job
        cmd = [cxx, "-std=c++17", "-fsyntax-only", "-fopenmp", "-Wall", "-Wno-unknown-pragmas", "-Werror", *defines,
               *inc, str(src)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return f"{src.relative_to(REPO)} {defines}", r.returncode, r.stdout + r.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compile_one, jobs))
    failed = [f"{n}:\n{out}" for n, rc, out in results if rc != 0]
    assert not failed, "host sources failed to compile:\n" + "\n".join(failed)
