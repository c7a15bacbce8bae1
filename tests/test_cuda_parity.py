"""CUDA kernels (cuda/*.cu) against their CPU references, forward and backward.

One table (CASES) over every kernel: activations, GEMM, convolutional (with and
without batch norm, groups, 1x1, strided, inference), SGD update, maxpool
(stride 1 and 2, ties), avgpool, route, reorg (C > stride^2, H != W, reverse),
softmax (groups, temperature, WordTree groups, cross-entropy), cost (sse, masked, L1, smooth), dropout
and region (flat softmax, logistic classes, background, WordTree). Odd shapes
on purpose: non-square maps, channel counts that are not multiples of 32.

The CPU reference is the C++ layer itself, run through a small network: a
[dropout] with probability=0 (an exact identity whose delta collects the input
gradient) followed by the layer under test. The CUDA side runs the same
layer's kernels through the _core.cuda_parity_* entry points.

Tolerance per compared array: |cuda - cpu| <= atol * max(1, max|cpu|) + rtol * |cpu|
  EXACT       (0, 0)       data movement and sums taken in the CPU's order
                           (maxpool, reorg, route, dropout, host-computed region loss)
  LIBM        (1e-6, 1e-5) transcendental formulas: CUDA's expf/logf/tanhf are within
                           2 ulp of glibc's
  ROUNDING    (1e-6, 1e-5) a multiply-add that nvcc contracts into one FMA (one rounding
                           fewer than the CPU's separate multiply and add: SGD, axpy)
  REDUCTION   (1e-5, 1e-4) sums in another order (GEMM tiles, block reductions)
  BATCHNORM   (1e-4, 1e-3) reductions amplified by 1/sqrt(var) and the N-1 statistics

Skipped with the reason when the extension was built without CUDA or no CUDA
device is present; test_cpu_reference_harness still runs every CPU side so the
table itself is exercised everywhere. test_nvcc_compiles_cuda_sources compiles
every cuda/*.cu with warnings as errors wherever nvcc is installed.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, NamedTuple

import numpy as np
import pytest

from darknet_py import _core
from darknet_py import DarknetError

REPO = Path(__file__).resolve().parents[1]


class Tol(NamedTuple):
    atol: float
    rtol: float


EXACT = Tol(0.0, 0.0)
LIBM = Tol(1e-6, 1e-5)
ROUNDING = Tol(1e-6, 1e-5)
REDUCTION = Tol(1e-5, 1e-4)
BATCHNORM = Tol(1e-4, 1e-3)


def cuda_skip_reason():
    if not _core.cuda_built():
        return "built without CUDA (rebuild with DARKNET_PY_CUDA=1)"
    if not _core.cuda_available():
        return "no CUDA device"
    return None


# ----------------------------------------------------------------- helpers

def net_text(body, c, h, w, batch, extra_net=""):
    return (f"[net]\nbatch={batch}\nwidth={w}\nheight={h}\nchannels={c}\nlearning_rate=0.01\nmomentum=0.9\n"
            f"decay=0.0005\n{extra_net}[dropout]\nprobability=0\n{body}")


def make_net(body, shape, train=True, name="parity.cfg"):
    b, c, h, w = shape
    net = _core.Network.from_text(net_text(body, c, h, w, b), name, batch=b)
    net.set_training(train)
    return net


def cpu_run(net, x, index=1, delta=None, truth=None):
    """Forward (training if the net is), optionally set the delta of layer `index` and
    run the backward. Returns the output, the loss delta written by the forward, the
    delta after backward and the input gradient (delta of the identity layer 0)."""
    net.forward(x, truth)
    r = {"output": net.layer_output(index)}
    if truth is not None:
        r["loss_delta"] = net.layer_delta(index)
        r["cost"] = np.float32(net.layer(index).cost)
    if delta is not None:
        net.set_layer_delta(index, np.ascontiguousarray(delta, np.float32).ravel())
    if delta is not None or truth is not None:
        net.backward(x)
        r["delta"] = net.layer_delta(index)
        r["prev_delta"] = net.layer_delta(0)
    return r


def randomize_conv(net, index, rng, rolling=False):
    p = net.layer_params(index)
    p["weights"][...] = rng.normal(0, 0.3, p["weights"].shape)
    p["biases"][...] = rng.uniform(-0.2, 0.2, p["biases"].shape)
    if "scales" in p:
        p["scales"][...] = rng.uniform(0.8, 1.2, p["scales"].shape)
        if rolling:
            p["rolling_mean"][...] = rng.normal(0, 0.3, p["rolling_mean"].shape)
            p["rolling_variance"][...] = rng.uniform(0.5, 2.0, p["rolling_variance"].shape)


TREE = "a -1\nb -1\nc 0\nd 0\ne 0\nf 1\ng 1\nh 2\ni 2\n"  # groups [a b] [c d e] [f g] [h i]


def _tree_path():
    d = Path(tempfile.gettempdir()) / f"darknet_py_cuda_parity_{os.getpid()}"
    d.mkdir(exist_ok=True)
    p = d / "parity.tree"
    p.write_text(TREE)
    return p


class Case(NamedTuple):
    cpu: Callable[[], Dict[str, np.ndarray]]
    cuda: Callable[[], Dict[str, np.ndarray]]
    tol: Dict[str, Tol]  # tolerance per compared key; "*" for the rest
    config: str


CASES: Dict[str, Case] = {}


def case(name, config, tol):
    def register(fn):
        CASES[name] = Case(lambda: fn("cpu"), lambda: fn("cuda"), tol, config)
        return fn
    return register


# ------------------------------------------------------------- activations

ACTIVATIONS = ["logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu", "loggy", "stair",
               "hardtan", "lhtan", "selu"]


def _activation_case(act):
    def run(backend):
        rng = np.random.default_rng(11)
        shape = (2, 5, 3, 7)
        x = (rng.normal(0, 3, shape)).astype(np.float32)
        d = rng.normal(0, 1, shape).astype(np.float32)
        # CPU: a 1x1 convolution with identity weights and no bias computes act(x) exactly
        # (one product by 1, the rest by 0); its delta after backward is d * gradient(y).
        net = _core.Network.from_text(
            f"[net]\nbatch=2\nwidth=7\nheight=3\nchannels=5\n[convolutional]\nfilters=5\nsize=1\n"
            f"activation={act}\n", "act.cfg", batch=2)
        net.set_training(True)
        net.layer_params(0)["weights"][...] = np.eye(5, dtype=np.float32).reshape(5, 5, 1, 1)
        net.forward(x)
        y = net.layer_output(0)
        if backend == "cpu":
            net.set_layer_delta(0, d.ravel())
            net.backward(x)
            return {"output": y, "delta": net.layer_delta(0)}
        return {"output": _core.cuda_parity_activation_forward(x, act),
                "delta": _core.cuda_parity_activation_backward(y, d, act)}
    return run


for _act in ACTIVATIONS:
    CASES[f"activation_{_act}"] = Case(
        (lambda f: lambda: f("cpu"))(_activation_case(_act)), (lambda f: lambda: f("cuda"))(_activation_case(_act)),
        {"*": LIBM}, f"activation={_act}, x ~ N(0, 3), shape (2, 5, 3, 7)")


# ------------------------------------------------------------------- GEMM

GEMMS = [(ta, tb, m, n, k, beta) for ta in (False, True) for tb in (False, True)
         for (m, n, k) in ((37, 70, 29), (130, 3, 300)) for beta in (0.0, 0.5)]


def _gemm_case(ta, tb, m, n, k, beta):
    def run(backend):
        rng = np.random.default_rng(5)
        a = rng.normal(0, 1, (k, m) if ta else (m, k)).astype(np.float32)
        b = rng.normal(0, 1, (n, k) if tb else (k, n)).astype(np.float32)
        c = rng.normal(0, 1, (m, n)).astype(np.float32)
        if beta == 0.0:
            c[...] = np.nan  # beta == 0 must not read C
        alpha = 0.75
        if backend == "cpu":  # the CPU gemm's contract, in float64
            opa = a.T if ta else a
            opb = b.T if tb else b
            ref = alpha * (opa.astype(np.float64) @ opb.astype(np.float64))
            if beta != 0.0:
                ref += beta * c
            return {"C": ref.astype(np.float32)}
        return {"C": _core.cuda_parity_gemm(ta, tb, alpha, a, b, beta, c)}
    return run


for _g in GEMMS:
    _name = "gemm_{}{}_{}x{}x{}_beta{}".format("T" if _g[0] else "N", "T" if _g[1] else "N", *_g[2:])
    _fn = _gemm_case(*_g)
    CASES[_name] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn), {"*": REDUCTION},
                        f"trans_a={_g[0]} trans_b={_g[1]} M={_g[2]} N={_g[3]} K={_g[4]} alpha=0.75 beta={_g[5]}")


# ----------------------------------------------------------- convolutional

CONVS = {
    # name: (cfg body, input shape (b, c, h, w), train, prev_delta nonzero)
    "conv3x3_bn_leaky": ("filters=6\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky", (2, 5, 7, 9), True, False),
    "conv3x3_s2_pad0_linear": ("filters=7\nsize=3\nstride=2\npadding=0\nactivation=linear", (2, 3, 9, 11), True,
                               True),
    "conv1x1_bn_adds_into_prev": ("filters=33\nsize=1\nbatch_normalize=1\nactivation=leaky", (2, 37, 5, 6), True,
                                  True),
    "conv_groups3_logistic": ("filters=9\nsize=3\npad=1\ngroups=3\nactivation=logistic", (2, 6, 6, 5), True, True),
    "conv5x5_s2_pad2_tanh": ("filters=5\nsize=5\nstride=2\npad=1\nactivation=tanh", (1, 4, 10, 7), True, False),
    "conv3x3_bn_multi_tile": ("filters=70\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky", (2, 35, 19, 23),
                              True, True),
    "conv3x3_bn_inference": ("filters=6\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky", (2, 5, 7, 9), False,
                             False),
}


def _conv_case(body, shape, train, nonzero_prev):
    def run(backend):
        rng = np.random.default_rng(21)
        net = make_net("[convolutional]\n" + body + "\n", shape, train=train)
        randomize_conv(net, 1, rng, rolling=not train)
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        l = net.layer(1)
        out_shape = (shape[0], l.out_c, l.out_h, l.out_w)
        d = rng.normal(0, 1, out_shape).astype(np.float32) if train else None
        prev = rng.normal(0, 1, shape).astype(np.float32) if nonzero_prev else None
        if backend == "cuda":
            return dict(_core.cuda_parity_convolutional(net, 1, x, delta=d, prev_delta=prev, train=train))
        r = cpu_run(net, x, delta=d)
        params, bufs = net.layer_params(1), net.layer_buffers(1)
        for k in ("rolling_mean", "rolling_variance"):
            if k in params:
                r[k] = params[k].copy()
        if train:
            for k in ("x", "x_norm", "mean", "variance", "weight_updates", "bias_updates", "scale_updates"):
                if k in bufs:
                    r[k] = bufs[k].copy()
            if prev is not None:
                r["prev_delta"] = prev + r["prev_delta"]
        return r
    return run


for _name, (_body, _shape, _train, _prev) in CONVS.items():
    _fn = _conv_case(_body, _shape, _train, _prev)
    _bn = "batch_normalize" in _body
    CASES[_name] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn),
                        {"*": BATCHNORM if _bn else REDUCTION, "prev_delta": BATCHNORM if _bn else REDUCTION},
                        f"[convolutional] {_body.replace(chr(10), ' ')}; input {_shape}; train={_train}; "
                        f"prev_delta={'random' if _prev else 'zeros'}")


def _conv_update_case(body, shape):
    def run(backend):
        rng = np.random.default_rng(23)
        net = make_net("[convolutional]\n" + body + "\n", shape)
        randomize_conv(net, 1, rng)
        x = rng.uniform(-1, 1, shape).astype(np.float32)
        l = net.layer(1)
        d = rng.normal(0, 1, (shape[0], l.out_c, l.out_h, l.out_w)).astype(np.float32)
        cpu_run(net, x, delta=d)  # fills the updates on the CPU
        opts = net.options
        if backend == "cuda":
            return dict(_core.cuda_parity_convolutional_update(net, 1, opts["batch"], net.learning_rate,
                                                               opts["momentum"], opts["decay"]))
        net.update()
        p, b = net.layer_params(1), net.layer_buffers(1)
        r = {k: p[k].ravel().copy() for k in ("weights", "biases", "scales") if k in p}
        r.update({k: b[k].ravel().copy() for k in ("weight_updates", "bias_updates", "scale_updates") if k in b})
        return r
    return run


for _name, _body, _shape in (("conv_update_bn", "filters=6\nsize=3\npad=1\nbatch_normalize=1\nactivation=leaky",
                              (2, 5, 7, 9)),
                             ("conv_update_plain", "filters=7\nsize=3\nstride=2\nactivation=linear", (2, 3, 9, 11))):
    _fn = _conv_update_case(_body, _shape)
    CASES[_name] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn), {"*": ROUNDING},
                        f"SGD update after a CPU backward; [convolutional] {_body.replace(chr(10), ' ')}; "
                        f"input {_shape}; lr 0.01 momentum 0.9 decay 0.0005 batch 2")


# ----------------------------------------------------------------- pooling

MAXPOOLS = {
    "maxpool_2_2": (2, 2, None, (2, 5, 8, 6), False),
    "maxpool_2_1_stride1": (2, 1, None, (2, 5, 7, 9), False),
    "maxpool_3_2": (3, 2, None, (2, 3, 9, 7), False),
    "maxpool_3_1_pad2": (3, 1, 2, (1, 37, 6, 5), False),
    "maxpool_2_1_ties": (2, 1, None, (2, 4, 6, 5), True),
}


def _maxpool_case(size, stride, padding, shape, ties):
    def run(backend):
        rng = np.random.default_rng(31)
        x = (rng.integers(0, 3, shape) if ties else rng.normal(0, 1, shape)).astype(np.float32)
        pad = size - 1 if padding is None else padding
        oh, ow = (shape[2] + pad - size) // stride + 1, (shape[3] + pad - size) // stride + 1
        d = rng.normal(0, 1, (shape[0], shape[1], oh, ow)).astype(np.float32)
        if backend == "cuda":
            r = dict(_core.cuda_parity_maxpool(x, size, stride, pad, delta=d))
            r.pop("argmax")
            return r
        body = f"[maxpool]\nsize={size}\nstride={stride}\n" + (f"padding={padding}\n" if padding is not None else "")
        r = cpu_run(make_net(body, shape), x, delta=d)
        r.pop("delta")  # the layer's own delta is the input d
        return r
    return run


for _name, _args in MAXPOOLS.items():
    _fn = _maxpool_case(*_args)
    CASES[_name] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn),
                        {"*": EXACT, "delta": EXACT},
                        f"[maxpool] size={_args[0]} stride={_args[1]} padding={_args[2]}; input {_args[3]}; "
                        f"ties={_args[4]}")


def _avgpool_case(shape):
    def run(backend):
        rng = np.random.default_rng(41)
        x = rng.normal(0, 1, shape).astype(np.float32)
        d = rng.normal(0, 1, shape[:2]).astype(np.float32)
        prev = rng.normal(0, 1, shape).astype(np.float32)
        if backend == "cuda":
            return dict(_core.cuda_parity_avgpool(x, delta=d, prev_delta=prev))
        r = cpu_run(make_net("[avgpool]\n", shape), x, delta=d)
        r["output"] = r["output"].reshape(shape[:2])
        r.pop("delta")
        r["prev_delta"] = prev + r["prev_delta"]
        return r
    return run


for _shape in ((2, 37, 5, 7), (1, 70, 13, 13)):
    _fn = _avgpool_case(_shape)
    CASES[f"avgpool_{'x'.join(map(str, _shape))}"] = Case(
        (lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn),
        {"output": REDUCTION, "prev_delta": EXACT}, f"[avgpool]; input {_shape}; prev_delta random")


# ------------------------------------------------------------- route, reorg

def _route_case(backend):
    # Sources: layer 1 = maxpool size=1 stride=1 padding=0 (an exact identity whose backward
    # adds its delta into layer 0) and layer 0; route layers=-1,-2,-1 -> (L1, L0, L1).
    shape = (2, 5, 6, 7)
    rng = np.random.default_rng(51)
    x = rng.normal(0, 1, shape).astype(np.float32)
    d = rng.normal(0, 1, (2, 15, 6, 7)).astype(np.float32)
    if backend == "cuda":
        r = _core.cuda_parity_route([x, x, x], delta=d.reshape(2, -1))
        p = r["prev_deltas"]
        # CPU order: route adds slices 0 and 2 into L1's delta and slice 1 into L0's; L1's
        # backward then adds its delta into L0's.
        l1 = p[0] + p[2]
        return {"output": r["output"].reshape(d.shape), "l1_delta": l1, "l0_delta": p[1] + l1}
    net = make_net("[maxpool]\nsize=1\nstride=1\npadding=0\n[route]\nlayers=-1,-2,-1\n", shape)
    net.forward(x)
    out = net.layer_output(2)
    net.set_layer_delta(2, d.ravel())
    net.backward(x)
    return {"output": out, "l1_delta": net.layer_delta(1), "l0_delta": net.layer_delta(0)}


CASES["route_three_sources"] = Case(lambda: _route_case("cpu"), lambda: _route_case("cuda"), {"*": EXACT},
                                    "[route] layers=-1,-2,-1 over an identity maxpool and the input; (2, 5, 6, 7)")

REORGS = {
    "reorg_s2_c8_h6_w10": (2, False, (2, 8, 6, 10)),
    "reorg_s3_c18_h6_w9": (3, False, (1, 18, 6, 9)),
    "reorg_reverse_s2_c8_h3_w5": (2, True, (2, 8, 3, 5)),
}


def _reorg_case(stride, reverse, shape):
    def run(backend):
        rng = np.random.default_rng(61)
        x = rng.normal(0, 1, shape).astype(np.float32)
        prev = rng.normal(0, 1, shape).astype(np.float32)
        net = make_net(f"[reorg]\nstride={stride}\nreverse={int(reverse)}\n", shape)
        l = net.layer(1)
        d = rng.normal(0, 1, (shape[0], l.out_c, l.out_h, l.out_w)).astype(np.float32)
        if backend == "cuda":
            return dict(_core.cuda_parity_reorg(x, stride, reverse, delta=d, prev_delta=prev))
        r = cpu_run(net, x, delta=d)
        r.pop("delta")
        r["prev_delta"] = prev + r["prev_delta"]
        return r
    return run


for _name, _args in REORGS.items():
    _fn = _reorg_case(*_args)
    CASES[_name] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn), {"*": EXACT},
                        f"[reorg] stride={_args[0]} reverse={_args[1]}; input {_args[2]}; prev_delta random")


# ------------------------------------------------ softmax, cost, dropout

def _softmax_case(groups, temperature, n):
    def run(backend):
        rng = np.random.default_rng(71)
        x = rng.normal(0, 2, (2, n)).astype(np.float32)
        p = rng.uniform(0.1, 1, (2, groups, n // groups))
        truth = (p / p.sum(-1, keepdims=True)).reshape(2, n).astype(np.float32)
        truth[0, :3] = 0  # zero targets skip the log term
        if backend == "cuda":
            r = dict(_core.cuda_parity_softmax(x, groups, temperature, truth=truth))
            r["loss_delta"] = r.pop("delta")
            r["cost"] = np.float32(r["cost"])
            return r
        net = make_net(f"[softmax]\ngroups={groups}\ntemperature={temperature}\n", (2, n, 1, 1))
        r = cpu_run(net, x.reshape(2, n, 1, 1), truth=truth)
        r.pop("delta")
        return {k: (v.reshape(2, n) if np.ndim(v) else v) for k, v in r.items()}
    return run


def _softmax_tree_case(backend):
    rng = np.random.default_rng(73)
    n = 9  # the nodes of TREE: groups [a b] [c d e] [f g] [h i]
    x = rng.normal(0, 2, (2, n)).astype(np.float32)
    truth = np.zeros((2, n), np.float32)
    truth[0, [0, 3]] = 1  # a, then d under a
    truth[1, [1, 6]] = 1  # b, then g under b
    tree = str(_tree_path())
    if backend == "cuda":
        r = dict(_core.cuda_parity_softmax(x, truth=truth, tree=tree))
        r["loss_delta"] = r.pop("delta")
        r["cost"] = np.float32(r["cost"])
        return r
    net = make_net(f"[softmax]\ntree={tree}\n", (2, n, 1, 1))
    r = cpu_run(net, x.reshape(2, n, 1, 1), truth=truth)
    r.pop("delta")
    return {k: (v.reshape(2, n) if np.ndim(v) else v) for k, v in r.items()}


CASES["softmax_tree"] = Case(lambda: _softmax_tree_case("cpu"), lambda: _softmax_tree_case("cuda"),
                             {"*": LIBM, "cost": REDUCTION},
                             "[softmax] tree= (9 nodes in 4 sibling groups); input (2, 9); one-hot path truth")


for _g, _t, _n in ((1, 1.0, 37), (3, 1.0, 45), (5, 2.0, 35)):
    _fn = _softmax_case(_g, _t, _n)
    CASES[f"softmax_g{_g}_t{_t:g}_n{_n}"] = Case(
        (lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn), {"*": LIBM, "cost": REDUCTION},
        f"[softmax] groups={_g} temperature={_t}; input (2, {_n}); truth: per-group distributions")


def _cost_case(kind, scale):
    def run(backend):
        rng = np.random.default_rng(81)
        n = 45
        x = rng.normal(0, 1.5, (2, n)).astype(np.float32)
        truth = rng.normal(0, 1.5, (2, n)).astype(np.float32)
        if kind == "masked":
            truth[:, ::4] = -1234  # Darknet's "no label" marker
        if backend == "cuda":
            r = dict(_core.cuda_parity_cost(x, truth, kind, scale))
            r["loss_delta"] = r.pop("delta")
            r["cost"] = np.float32(r["cost"])
            return r
        net = make_net(f"[cost]\ntype={kind}\nscale={scale}\n", (2, n, 1, 1))
        r = cpu_run(net, x.reshape(2, n, 1, 1), truth=truth)
        r.pop("delta")  # the cost layer keeps its forward delta; prev_delta is what backward adds
        return {k: (v.reshape(2, n) if np.ndim(v) else v) for k, v in r.items()}
    return run


for _k, _s in (("sse", 1.0), ("masked", 1.0), ("L1", 0.5), ("smooth", 2.0)):
    _fn = _cost_case(_k, _s)
    CASES[f"cost_{_k}"] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn),
                               {"*": EXACT, "cost": REDUCTION, "prev_delta": ROUNDING},
                               f"[cost] type={_k} scale={_s}; input (2, 45)")


def _dropout_case(train):
    def run(backend):
        rng = np.random.default_rng(91)
        shape = (2, 5, 4, 7)
        p = 0.3
        x = (rng.uniform(0.5, 1.5, shape) * rng.choice([-1, 1], shape)).astype(np.float32)  # never 0
        d = rng.normal(0, 1, shape).astype(np.float32)
        net = make_net(f"[dropout]\nprobability={p}\n", shape, train=train)
        net.set_seed(7)
        if not train:
            net.forward(x)
            if backend == "cpu":
                return {"output": net.layer_output(1)}
            return {"output": _core.cuda_parity_dropout(x, np.zeros_like(x), p, train=False)["output"]}
        r = cpu_run(net, x, delta=d)
        if backend == "cpu":
            r.pop("delta")
            return r
        # The CPU draws come from the network's generator; draws that give the CPU's mask.
        kept = r["output"] != 0
        draws = np.where(kept, (1 + p) / 2, p / 2).astype(np.float32)
        return dict(_core.cuda_parity_dropout(x, draws, p, train=True, delta=d))
    return run


for _train in (True, False):
    _fn = _dropout_case(_train)
    CASES[f"dropout_{'train' if _train else 'inference'}"] = Case(
        (lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn), {"*": EXACT},
        f"[dropout] probability=0.3 train={_train}; input (2, 5, 4, 7)")


# ------------------------------------------------------------------ region

REGIONS = {
    "region_softmax": ("softmax=1", 4, 3, (2, 5, 4), True),
    "region_logistic_classes": ("softmax=0", 3, 2, (2, 6, 3), True),
    "region_background": ("softmax=1\nbackground=1", 4, 2, (1, 4, 5), False),
    "region_tree": ("softmax=1\ntree={tree}", 9, 2, (2, 5, 3), True),
}


def _region_case(opts, classes, num, dims, train):
    def run(backend):
        rng = np.random.default_rng(101)
        batch, w, h = dims
        c = num * (classes + 5)
        anchors = ",".join(f"{0.8 + 0.7 * i:.2f},{1.1 + 0.5 * i:.2f}" for i in range(num))
        body = (f"[region]\nclasses={classes}\ncoords=4\nnum={num}\nanchors={anchors}\nbias_match=1\nrescore=1\n"
                f"thresh=.6\nobject_scale=5\nnoobject_scale=1\nclass_scale=1\ncoord_scale=1\n"
                + opts.format(tree=_tree_path()) + "\n")
        shape = (batch, c, h, w)
        net = make_net(body, shape, train=train)
        net.seen = 100
        x = rng.normal(0, 1, shape).astype(np.float32)
        truth = None
        if train:
            truth = np.zeros((batch, net.truths), np.float32)
            for b in range(batch):
                for t in range(b + 2):
                    truth[b, 5 * t:5 * t + 5] = [rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9),
                                                 rng.uniform(0.1, 0.5), rng.uniform(0.1, 0.5),
                                                 rng.integers(0, classes)]
        if backend == "cuda":
            r = dict(_core.cuda_parity_region(net, 1, x, truth=truth, seen=100))
            if "cost" in r:
                r["cost"] = np.float32(r["cost"])
            return r
        return cpu_run(net, x, truth=truth)
    return run


for _name, _args in REGIONS.items():
    _fn = _region_case(*_args)
    CASES[_name] = Case((lambda f: lambda: f("cpu"))(_fn), (lambda f: lambda: f("cuda"))(_fn),
                        {"*": LIBM, "loss_delta": EXACT, "cost": EXACT},
                        f"[region] {_args[0]} classes={_args[1]} num={_args[2]} (batch, w, h)={_args[3]} "
                        f"train={_args[4]}")


# ------------------------------------------------------------------- tests

def compare(name, got, ref):
    c = CASES[name]
    keys = sorted(ref)
    assert keys, f"{name}: CPU reference returned nothing"
    for k in keys:
        assert k in got, f"{name}: CUDA result lacks '{k}' (has {sorted(got)})\nconfig: {c.config}"
        tol = c.tol.get(k, c.tol.get("*", EXACT))
        a = np.asarray(got[k], np.float64)
        e = np.asarray(ref[k], np.float64)
        assert a.size == e.size, f"{name}/{k}: size {a.size} != {e.size}\nconfig: {c.config}"
        a, e = a.reshape(-1), e.reshape(-1)
        scale = max(1.0, float(np.nanmax(np.abs(e))) if e.size else 1.0)
        err = np.abs(a - e)
        bound = tol.atol * scale + tol.rtol * np.abs(e)
        same_nan = np.isnan(a) & np.isnan(e)
        bad = ~same_nan & ~(err <= bound)
        if bad.any():
            i = int(np.argmax(np.where(bad, err - bound, -np.inf)))
            raise AssertionError(
                f"{name}/{k}: {int(bad.sum())} of {a.size} values out of tolerance "
                f"(atol={tol.atol}*{scale:.3g}, rtol={tol.rtol}); worst at flat index {i}: "
                f"cuda {a[i]!r} vs cpu {e[i]!r}\nconfig: {c.config}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_reference_harness(name):
    """Every CPU side of the table runs (no device needed) and returns finite arrays."""
    ref = CASES[name].cpu()
    assert ref
    for k, v in ref.items():
        v = np.asarray(v)
        assert v.size and (np.isfinite(v).all() or name.startswith("gemm")), f"{name}/{k} not finite"


@pytest.mark.parametrize("name", sorted(CASES))
def test_cuda_matches_cpu(name):
    reason = cuda_skip_reason()
    if reason:
        pytest.skip(reason)
    ref = CASES[name].cpu()
    got = CASES[name].cuda()
    compare(name, got, ref)


def test_cuda_device_query():
    reason = cuda_skip_reason()
    if reason:
        assert not _core.cuda_available()
        assert _core.cuda_device_count() == 0 or not _core.cuda_built()
        pytest.skip(reason)
    info = _core.cuda_device_info(0)
    assert info["name"] and info["total_memory"] > 0 and info["multiprocessors"] > 0


def test_parity_functions_raise_without_cuda():
    """Without CUDA (or without a device) the entry points raise DarknetError, never abort."""
    if cuda_skip_reason() is None:
        pytest.skip("a CUDA device is present")
    x = np.zeros((1, 2, 4, 4), np.float32)
    calls = [lambda: _core.cuda_parity_maxpool(x, 2, 2, 1),
             lambda: _core.cuda_parity_avgpool(x),
             lambda: _core.cuda_parity_reorg(x, 2),
             lambda: _core.cuda_parity_activation_forward(x, "leaky"),
             lambda: _core.cuda_device_info(0)]
    for call in calls:
        with pytest.raises(DarknetError, match="built without CUDA|no CUDA device|does not exist"):
            call()


# ------------------------------------------------ compile with -Werror

def find_nvcc():
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return shutil.which("nvcc") or (
        "/usr/local/cuda/bin/nvcc" if os.path.isfile("/usr/local/cuda/bin/nvcc") else None)


def test_nvcc_compiles_cuda_sources(tmp_path):
    """Every cuda/*.cu compiles for one architecture with all warnings as errors
    (nvcc's and the host compiler's), in parallel."""
    nvcc = find_nvcc()
    if not nvcc:
        pytest.skip("nvcc not found (set CUDA_HOME)")
    sources = sorted((REPO / "cuda").glob("*.cu"))
    expected = {"activation", "avgpool", "batchnorm", "common", "convolutional", "cost", "dropout", "maxpool",
                "region", "reorg", "route", "softmax"}
    assert expected <= {s.stem for s in sources}, f"missing CUDA sources: {expected - {s.stem for s in sources}}"
    flags = ["-std=c++17", "-arch=sm_80", "-O2", "-DDN_WITH_CUDA", "-Werror", "all-warnings",
             "-Xcompiler", "-Wall,-Wextra,-Werror", f"-I{REPO / 'csrc'}"]

    def compile_one(src):
        cmd = [nvcc] + flags + ["-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return src.name, r.returncode, r.stdout + r.stderr

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(compile_one, sources))
    failed = [f"{n}:\n{out}" for n, rc, out in results if rc != 0]
    assert not failed, "nvcc -Werror failed:\n" + "\n".join(failed)


def test_bind_cuda_compiles_both_ways(tmp_path):
    """csrc/python/bind_cuda.cpp compiles warning-free with and without DN_WITH_CUDA
    (the CUDA branch is otherwise only compiled by a CUDA build)."""
    cxx = shutil.which("g++") or shutil.which("c++")
    try:
        import pybind11
    except ImportError:
        pytest.skip("pybind11 not importable")
    if not cxx:
        pytest.skip("no C++ compiler")
    inc = [f"-I{REPO / 'csrc'}", f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}"]
    src = str(REPO / "csrc" / "python" / "bind_cuda.cpp")

    def compile_one(defines):
        cmd = [cxx, "-std=c++17", "-O0", "-Wall", "-Werror", "-fPIC", *defines, *inc, "-c", src,
               "-o", str(tmp_path / f"bind_cuda{len(defines)}.o")]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return defines, r.returncode, r.stdout + r.stderr

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(compile_one, ([], ["-DDN_WITH_CUDA"])))
    failed = [f"{d}:\n{out}" for d, rc, out in results if rc != 0]
    assert not failed, "bind_cuda.cpp failed to compile:\n" + "\n".join(failed)
