"""An independent PyTorch reference of a Darknet YOLOv2 training step.

PyTorch is optional here (``pip install torch``); the package and CI never need it.

What is independent of darknet_py: the cfg reading, the network (torch conv / manual
batch norm in training mode / leaky / maxpool / route / reorg), every gradient (torch
autograd, so batch norm's backward is the exact derivative of its forward), Darknet's
region loss deltas (numpy, written from the YOLOv2 region-layer semantics), the learning
rate schedule and Darknet's SGD with momentum and decay. Shared with darknet_py: only the
starting parameters (copied from a darknet_py Network) and the batches.

    python bench/torch_reference.py steps [--steps 5]        # gradients + weights vs darknet_py
    python bench/torch_reference.py curves --batches 1500     # learning curves in lockstep

Known, stated differences from Darknet's arithmetic (and so from darknet_py, which follows
Darknet): Darknet's batch-norm backward uses the biased 1/N in the variance term while
its forward normalises by the unbiased variance; autograd differentiates the forward
exactly. The difference is O(1/N) relative (N = batch x H x W per filter), which sets the
tolerance of the gradient comparison.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - optional dependency
    torch = None

BN_EPSILON = 1e-5     # inside the square root, as in Darknet's forward
LEAKY_SLOPE = 0.1
PRIOR_MATCH_IMAGES = 12800   # Darknet's region loss pulls every box to its anchor until then


# ------------------------------------------------------------------------------ cfg

def read_cfg(path_or_text: str):
    """[(section, {key: value})] of a Darknet cfg (comments and blank lines dropped)."""
    text = Path(path_or_text).read_text() if "\n" not in path_or_text else path_or_text
    sections = []
    for raw in text.splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append((line.strip("[]").strip(), {}))
        else:
            key, value = line.split("=", 1)
            sections[-1][1][key.strip()] = value.strip()
    return sections


def floats(value: str):
    return [float(v) for v in value.split(",") if v.strip()]


# ------------------------------------------------------------------------------ model

class TorchYolo:
    """The cfg's layers as torch ops, parameters copied from a darknet_py Network."""

    def __init__(self, cfg_path: str, dn_net, darknet_bn_backward: bool = False, dtype=None):
        # darknet_bn_backward: batch norm's input gradient by Darknet's formula (biased 1/N in
        # the variance term) instead of autograd's exact derivative; isolates that quirk.
        self.darknet_bn_backward = darknet_bn_backward
        self.retain_outputs = False
        self.dtype = dtype or torch.float64   # float64 for gradient checks, float32 for curves
        sections = read_cfg(cfg_path)
        self.net_options = sections[0][1]
        self.layers = []
        self.params = []     # per layer: dict name -> tensor (requires_grad for trainables)
        for index, (kind, opts) in enumerate(sections[1:]):
            if kind not in ("convolutional", "maxpool", "route", "reorg", "region"):
                raise ValueError(f"torch reference: layer type [{kind}] not supported")
            layer = {"kind": kind, "opts": opts}
            p = {}
            if kind == "convolutional":
                dn_params = dn_net.layers[index].params
                layer["bn"] = int(opts.get("batch_normalize", 0)) == 1
                layer["stride"] = int(opts.get("stride", 1))
                size = int(opts.get("size", 1))
                layer["padding"] = size // 2 if int(opts.get("pad", 0)) else int(opts.get("padding", 0))
                layer["activation"] = opts.get("activation", "logistic")
                filters = int(opts["filters"])
                w = torch.tensor(np.array(dn_params["weights"]), dtype=self.dtype)
                p["weights"] = w.reshape(filters, -1, size, size).clone().requires_grad_(True)
                p["biases"] = torch.tensor(np.array(dn_params["biases"]), dtype=self.dtype).requires_grad_(True)
                if layer["bn"]:
                    p["scales"] = torch.tensor(np.array(dn_params["scales"]), dtype=self.dtype).requires_grad_(True)
                    p["rolling_mean"] = torch.tensor(np.array(dn_params["rolling_mean"]), dtype=self.dtype)
                    p["rolling_variance"] = torch.tensor(np.array(dn_params["rolling_variance"]),
                                                         dtype=self.dtype)
            elif kind == "route":
                layer["sources"] = [int(v) if int(v) >= 0 else index + int(v) for v in opts["layers"].split(",")]
            elif kind == "region":
                layer["anchors"] = np.array(floats(opts["anchors"]), dtype=np.float64).reshape(-1, 2)
                layer["classes"] = int(opts["classes"])
                layer["num"] = int(opts["num"])
                if int(opts.get("softmax", 0)) != 1 or int(opts.get("coords", 4)) != 4:
                    raise ValueError("torch reference: region needs softmax=1, coords=4")
            self.layers.append(layer)
            self.params.append(p)
        # Darknet's momentum buffers hold the negative gradient (sign as Darknet's *_updates).
        self.momentum_buffers = [{k: torch.zeros_like(v) for k, v in p.items() if v.requires_grad}
                                 for p in self.params]

    def trainables(self):
        for p, m in zip(self.params, self.momentum_buffers):
            for name in m:
                yield name, p, m

    def forward(self, x, train: bool):
        outputs = []
        for layer, p in zip(self.layers, self.params):
            kind = layer["kind"]
            if kind == "convolutional":
                z = F.conv2d(x, p["weights"], stride=layer["stride"], padding=layer["padding"])
                if layer["bn"]:
                    if train:
                        mean = z.mean(dim=(0, 2, 3))
                        var = z.var(dim=(0, 2, 3), unbiased=True)
                        with torch.no_grad():
                            p["rolling_mean"].mul_(.99).add_(.01 * mean)
                            p["rolling_variance"].mul_(.99).add_(.01 * var)
                    else:
                        mean, var = p["rolling_mean"], p["rolling_variance"]
                    if train and self.darknet_bn_backward:
                        z = DarknetBatchNormBackward.apply(z, mean, var)
                    else:
                        z = (z - mean[None, :, None, None]) / torch.sqrt(var + BN_EPSILON)[None, :, None, None]
                    z = z * p["scales"][None, :, None, None]
                z = z + p["biases"][None, :, None, None]
                if layer["activation"] == "leaky":
                    z = F.leaky_relu(z, LEAKY_SLOPE)
                elif layer["activation"] != "linear":
                    raise ValueError(f"torch reference: activation {layer['activation']} not supported")
                x = z
            elif kind == "maxpool":
                size, stride = int(layer["opts"].get("size", 2)), int(layer["opts"].get("stride", 2))
                # Darknet pads size-1 in total, on the right/bottom first (offset -pad/2 = 0 for size 2).
                pad_total = size - 1
                lead = pad_total // 2
                x = F.pad(x, (lead, pad_total - lead, lead, pad_total - lead), value=-math.inf)
                out_w = (x.shape[3] - size) // stride + 1
                x = F.max_pool2d(x, size, stride)[:, :, :, :out_w]
            elif kind == "route":
                x = torch.cat([outputs[s] for s in layer["sources"]], dim=1)
            elif kind == "reorg":
                x = darknet_reorg(x, int(layer["opts"].get("stride", 2)))
            elif kind == "region":
                pass  # the region layer works on the raw predictions (see region_deltas)
            if self.retain_outputs and x.requires_grad:
                x.retain_grad()   # layer deltas for diagnostics (compare with layer_delta)
            outputs.append(x)
        self.outputs = outputs
        return x

    def region(self):
        return self.layers[-1]


class DarknetBatchNormBackward(torch.autograd.Function if torch is not None else object):
    """x_hat = (z - mean) / sqrt(var + eps) with Darknet's backward: the statistics' terms
    use 2 (z - mean) / N for the variance although the forward's variance divides by N - 1."""

    @staticmethod
    def forward(ctx, z, mean, var):
        inv_std = 1 / torch.sqrt(var + BN_EPSILON)
        ctx.save_for_backward(z, mean, var)
        return (z - mean[None, :, None, None]) * inv_std[None, :, None, None]

    @staticmethod
    def backward(ctx, grad):
        z, mean, var = ctx.saved_tensors
        n = z.shape[0] * z.shape[2] * z.shape[3]
        centred = z - mean[None, :, None, None]
        mean_delta = grad.sum(dim=(0, 2, 3)) * (-1 / torch.sqrt(var + BN_EPSILON))
        var_delta = (grad * centred).sum(dim=(0, 2, 3)) * (-.5 * (var + BN_EPSILON) ** -1.5)
        dz = (grad / torch.sqrt(var + BN_EPSILON)[None, :, None, None]
              + var_delta[None, :, None, None] * 2 * centred / n + mean_delta[None, :, None, None] / n)
        return dz, None, None


def reorg_source_index(c: int, h: int, w: int, stride: int) -> np.ndarray:
    """Darknet's [reorg] (its reorg_cpu with forward=0) as a gather: a fixed permutation of the
    flat (C, H, W) input, output read as (C*s*s, H/s, W/s). Output position i + W*(j + H*k)
    (k < C, j < H, i < W) takes the input's flat element w2 + W*s*(h2 + H*s*c2) with
    c2 = k mod C/s^2, offset = k div C/s^2, w2 = i*s + offset mod s, h2 = j*s + offset div s.
    Returns those flat input indices in output order."""
    k = np.arange(c)[:, None, None]
    j = np.arange(h)[None, :, None]
    i = np.arange(w)[None, None, :]
    small_c = c // (stride * stride)
    c2, offset = k % small_c, k // small_c
    w2 = i * stride + offset % stride
    h2 = j * stride + offset // stride
    return (w2 + w * stride * (h2 + h * stride * c2)).reshape(-1)


def darknet_reorg(x, stride: int):
    """Darknet's [reorg] on a (batch, C, H, W) tensor (see reorg_source_index)."""
    batch, c, h, w = x.shape
    flat = x.reshape(batch, -1)
    return flat[:, torch.as_tensor(reorg_source_index(c, h, w, stride))].reshape(batch, c * stride * stride,
                                                                                h // stride, w // stride)


# ------------------------------------------------------------------------------ region loss

def _iou(ax, ay, aw, ah, bx, by, bw, bh):
    """IoU of centre-format boxes (broadcasting)."""
    ow = np.minimum(ax + aw / 2, bx + bw / 2) - np.maximum(ax - aw / 2, bx - bw / 2)
    oh = np.minimum(ay + ah / 2, by + bh / 2) - np.maximum(ay - ah / 2, by - bh / 2)
    inter = np.where((ow > 0) & (oh > 0), ow * oh, 0.0)
    union = aw * ah + bw * bh - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-300), 0.0)


def region_deltas(raw: np.ndarray, truth: np.ndarray, opts: dict, anchors: np.ndarray, classes: int,
                  seen: int):
    """Darknet's YOLOv2 region loss as deltas (negative gradients) w.r.t. the raw predictions.

    raw: (batch, num*(5+classes), H, W); truth: (batch, boxes*5) rows x, y, w, h, class.
    Returns (delta with the same shape as raw, cost = sum of squared deltas before the
    logistic gradient, as Darknet reports it).
    """
    batch, _, h, w = raw.shape
    num = anchors.shape[0]
    p = raw.reshape(batch, num, 5 + classes, h, w).astype(np.float64)
    sig = lambda v: 1 / (1 + np.exp(-v))
    out = p.copy()
    out[:, :, 0:2] = sig(p[:, :, 0:2])
    out[:, :, 4] = sig(p[:, :, 4])
    e = np.exp(p[:, :, 5:] - p[:, :, 5:].max(axis=2, keepdims=True))
    out[:, :, 5:] = e / e.sum(axis=2, keepdims=True)

    thresh = float(opts.get("thresh", .5))
    object_scale = float(opts.get("object_scale", 1))
    noobject_scale = float(opts.get("noobject_scale", 1))
    class_scale = float(opts.get("class_scale", 1))
    coord_scale = float(opts.get("coord_scale", 1))
    rescore = int(opts.get("rescore", 0)) == 1
    bias_match = int(opts.get("bias_match", 0)) == 1

    jj, ii = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    aw = anchors[:, 0][:, None, None]
    ah = anchors[:, 1][:, None, None]
    delta = np.zeros_like(out)

    def box_of(b, n, j, i):
        return ((i + out[b, n, 0, j, i]) / w, (j + out[b, n, 1, j, i]) / h,
                np.exp(out[b, n, 2, j, i]) * anchors[n, 0] / w, np.exp(out[b, n, 3, j, i]) * anchors[n, 1] / h)

    def box_delta(b, n, j, i, tx, ty, tw, th, scale):
        px, py, pw, ph = box_of(b, n, j, i)
        iou = float(_iou(px, py, pw, ph, tx, ty, tw, th))
        delta[b, n, 0, j, i] = scale * (tx * w - i - out[b, n, 0, j, i])
        delta[b, n, 1, j, i] = scale * (ty * h - j - out[b, n, 1, j, i])
        delta[b, n, 2, j, i] = scale * (math.log(tw * w / anchors[n, 0]) - out[b, n, 2, j, i])
        delta[b, n, 3, j, i] = scale * (math.log(th * h / anchors[n, 1]) - out[b, n, 3, j, i])
        return iou

    boxes_per_image = truth.shape[1] // 5
    for b in range(batch):
        rows = truth[b].reshape(boxes_per_image, 5).astype(np.float64)
        count = 0
        while count < boxes_per_image and rows[count, 0] != 0:
            count += 1
        rows = rows[:count]
        # every prediction: no-object unless it overlaps a truth by more than thresh
        px = (ii[None] + out[b, :, 0]) / w
        py = (jj[None] + out[b, :, 1]) / h
        pw = np.exp(out[b, :, 2]) * aw / w
        ph = np.exp(out[b, :, 3]) * ah / h
        best = np.zeros((num, h, w))
        for t in rows:
            best = np.maximum(best, _iou(px, py, pw, ph, t[0], t[1], t[2], t[3]))
        delta[b, :, 4] = np.where(best > thresh, 0.0, noobject_scale * (0 - out[b, :, 4]))
        if seen < PRIOR_MATCH_IMAGES:
            for n in range(num):
                for j in range(h):
                    for i in range(w):
                        box_delta(b, n, j, i, (i + .5) / w, (j + .5) / h, anchors[n, 0] / w, anchors[n, 1] / h, .01)
        for tx, ty, tw, th, cls in rows:
            i, j = int(tx * w), int(ty * h)
            best_n, best_iou = 0, 0.0
            for n in range(num):
                if bias_match:
                    pw_n, ph_n = anchors[n, 0] / w, anchors[n, 1] / h
                else:
                    _, _, pw_n, ph_n = box_of(b, n, j, i)
                iou = float(_iou(0, 0, pw_n, ph_n, 0, 0, tw, th))
                if iou > best_iou:
                    best_n, best_iou = n, iou
            iou = box_delta(b, best_n, j, i, tx, ty, tw, th, coord_scale * (2 - tw * th))
            target = iou if rescore else 1.0
            delta[b, best_n, 4, j, i] = object_scale * (target - out[b, best_n, 4, j, i])
            onehot = np.zeros(classes)
            onehot[int(cls)] = 1
            delta[b, best_n, 5:, j, i] = class_scale * (onehot - out[b, best_n, 5:, j, i])
    cost = float((delta ** 2).sum())
    # back through the logistic activations of x, y and objectness (Darknet's GPU path and
    # darknet_py); w, h are linear and the class delta is already w.r.t. the softmax logits
    for entry in (0, 1, 4):
        delta[:, :, entry] *= out[:, :, entry] * (1 - out[:, :, entry])
    return delta.reshape(raw.shape), cost


# ------------------------------------------------------------------------------ training step

def learning_rate(net_options: dict, batch_num: int) -> float:
    base = float(net_options.get("learning_rate", .001))
    burn_in = int(net_options.get("burn_in", 0))
    power = float(net_options.get("power", 4))
    if batch_num < burn_in:
        return base * (batch_num / burn_in) ** power
    policy = net_options.get("policy", "constant")
    if policy == "constant":
        return base
    if policy != "steps":
        raise ValueError(f"torch reference: policy {policy} not supported")
    rate = base
    for step, scale in zip(floats(net_options.get("steps", "")), floats(net_options.get("scales", ""))):
        if step > batch_num:
            break
        rate *= scale
    return rate


class TorchTrainer:
    """Darknet's training step on the torch model: seen += batch, forward (BN batch
    statistics), region deltas, backward (autograd), SGD with Darknet's momentum/decay."""

    def __init__(self, model: TorchYolo, batch: int):
        self.model = model
        self.batch = batch
        self.seen = 0
        opts = model.net_options
        self.momentum = float(opts.get("momentum", .9))
        self.decay = float(opts.get("decay", .0001))

    def forward_backward(self, x: np.ndarray, truth: np.ndarray):
        """Returns (cost, gradients as Darknet's *_updates: minus dCost/dparam, summed over the batch)."""
        self.seen += self.batch
        for _, p, _ in self.model.trainables():
            for v in p.values():
                if v.grad is not None:
                    v.grad = None
        xt = torch.tensor(x, dtype=self.model.dtype)
        raw = self.model.forward(xt, train=True)
        region = self.model.region()
        delta, cost = region_deltas(raw.detach().numpy(), truth, region["opts"], region["anchors"],
                                    region["classes"], self.seen)
        raw.backward(-torch.tensor(delta, dtype=self.model.dtype))
        return cost

    def update(self):
        batch_num = self.seen // self.batch
        lr = learning_rate(self.model.net_options, batch_num)
        with torch.no_grad():
            for name, p, m in self.model.trainables():
                param, buf = p[name], m[name]
                buf.add_(-param.grad)          # Darknet's *_updates accumulate -gradient
                if name == "weights":
                    buf.add_(-self.decay * self.batch * param)
                param.add_(lr / self.batch * buf)
                buf.mul_(self.momentum)
        return lr

    def step(self, x, truth):
        cost = self.forward_backward(x, truth)
        self.update()
        return cost

    def copy_into(self, dn_net):
        """Write the torch parameters (and rolling statistics) into a darknet_py Network."""
        for layer, p in zip(dn_net.layers, self.model.params):
            if not p:
                continue
            views = layer.params
            for name, value in p.items():
                views[name][...] = value.detach().numpy().reshape(views[name].shape).astype(np.float32)


# ------------------------------------------------------------------------------ comparisons

def _shapes_data(root: Path, n_train: int, n_valid: int, seed: int):
    from darknet_py.data.synthetic import generate
    from darknet_py.data.dataset import read_data_cfg, read_list, read_names
    data = generate(root, n_train=n_train, n_valid=n_valid, size=(160, 160), seed=seed)
    cfg = read_data_cfg(data)
    return read_list(cfg.resolve("train")), read_list(cfg.resolve("valid")), read_names(cfg.resolve("names"))


def _recipe_cfg(out_dir: Path, batch: int, max_batches: int, learning_rate_value: float, burn_in: int,
                size: int = 160) -> Path:
    """The project's demo cfg with the issue's recipe: lr, burn-in, steps at 70%/90%, fixed size."""
    from darknet_py.demo import packaged_cfg
    keys = {"batch": batch, "subdivisions": 1, "learning_rate": learning_rate_value, "burn_in": burn_in,
            "max_batches": max_batches,
            "steps": f"{int(max_batches * .7)},{int(max_batches * .9)}", "width": size, "height": size,
            "random": 0}
    lines = []
    for line in packaged_cfg("demo.cfg").read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}={keys[key]}" if "=" in line and key in keys else line)
    path = out_dir / "recipe.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


def compare_steps(steps: int = 5, batch: int = 8, seed: int = 3, init: str = "uniform", seen_start: int = 0,
                  out_dir: str = "torch_reference_out", verbose: bool = True, darknet_bn_backward: bool = False,
                  n_images: int = 64):
    """darknet_py vs the torch reference for `steps` training steps from the same parameters
    on the same batches. Returns one dict per step: cost_darknet_py, cost_reference, and
    gradients / parameters: {"layer.name": relative difference} (max |a - b| over the
    tensor's max magnitude; gradients as Darknet's *_updates before the update)."""
    import darknet_py
    from darknet_py.data.loader import DetectionLoader
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_paths, _, _ = _shapes_data(out / "data", n_images, 1, seed)
    cfg = _recipe_cfg(out, batch, 100, .001, 4)
    net = darknet_py.Network.from_cfg(str(cfg), batch=batch)
    net.randomize(seed, init=init)
    net._net.set_training(True)
    net.seen = seen_start
    model = TorchYolo(str(cfg), net, darknet_bn_backward)
    trainer = TorchTrainer(model, batch)
    trainer.seen = seen_start
    rows = []
    with DetectionLoader(train_paths, 160, 160, batch, jitter=.2, hue=.1, saturation=1.5, exposure=1.5,
                         seed=seed, workers=1) as loader:
        for step in range(steps):
            x, truth = loader.next_batch()
            # darknet_py: forward + backward, gradients read before the update
            net.seen += batch
            net._net.forward(x, truth)
            cost_dn = float(net._net.cost)
            net._net.backward(x)
            cost_ref = trainer.forward_backward(x, truth)
            grads, params = {}, {}
            for layer, p, m in zip(net.layers, model.params, model.momentum_buffers):
                if not m:
                    continue
                updates = layer.buffers
                for name in m:
                    dn_update = np.array(updates[{"weights": "weight_updates", "biases": "bias_updates",
                                                  "scales": "scale_updates"}[name]]).ravel()
                    # torch's buffer is momentum * previous; the current step adds -grad
                    ref_update = (m[name] - p[name].grad).detach().numpy().ravel()
                    grads[f"{layer.index}.{name}"] = _relative(dn_update, ref_update)
            net._net.update()
            trainer.update()
            for layer, p in zip(net.layers, model.params):
                for name, value in p.items():
                    params[f"{layer.index}.{name}"] = _relative(np.array(layer.params[name]).ravel(),
                                                                value.detach().numpy().ravel())
            rows.append({"cost_darknet_py": cost_dn, "cost_reference": cost_ref, "gradients": grads,
                         "parameters": params})
            if verbose:
                print(f"step {step + 1}: cost darknet_py {cost_dn:10.4f}  reference {cost_ref:10.4f}  "
                      f"relative differences: gradients max {max(grads.values()):.1e} median "
                      f"{np.median(list(grads.values())):.1e}, parameters max {max(params.values()):.1e} "
                      f"median {np.median(list(params.values())):.1e}", flush=True)
    return rows


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| relative to the larger array's max magnitude (one tensor's scale)."""
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1e-12)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / scale)


def learning_curves(batches: int = 1500, batch: int = 32, eval_at=(500, 1000, 1500), seed: int = 0,
                    init: str = "uniform", with_reference: bool = True, out_dir: str = "torch_reference_out",
                    n_train: int = 2000, n_valid: int = 200, threads: int = 2, jitter_style: str = "place",
                    size: int = 160):
    """Train darknet_py and the torch reference in lockstep on identical batches from the
    same initial parameters; VOC mAP@0.5 of both (scored by the same evaluator) at eval_at."""
    import darknet_py
    from darknet_py.data.loader import DetectionLoader
    from darknet_py.demo import evaluate_detector
    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_paths, valid_paths, names = _shapes_data(out / "data", n_train, n_valid, seed)
    cfg = _recipe_cfg(out, batch, batches, .001, 100, size)
    net = darknet_py.Network.from_cfg(str(cfg), batch=batch)
    net.set_exec_options(threads=threads)
    net.randomize(seed, init=init)
    net._net.set_training(True)
    trainer = TorchTrainer(TorchYolo(str(cfg), net, dtype=torch.float32), batch) if with_reference else None
    evaluator = darknet_py.Network.from_cfg(str(cfg), batch=1)
    results = []
    t_dn = t_ref = 0.0
    with DetectionLoader(train_paths, size, size, batch, jitter=.2, hue=.1, saturation=1.5, exposure=1.5,
                         seed=seed, workers=1, jitter_style=jitter_style) as loader:
        for it in range(1, batches + 1):
            x, truth = loader.next_batch()
            t0 = time.perf_counter()
            cost_dn = net.train_step(x, truth)
            t1 = time.perf_counter()
            cost_ref = trainer.step(x, truth) if trainer else float("nan")
            t_dn += t1 - t0
            t_ref += time.perf_counter() - t1
            if it % 25 == 0:
                print(f"{it:5d}  cost darknet_py {cost_dn:9.3f}  reference {cost_ref:9.3f}  "
                      f"({t_dn / it:.2f} s / {t_ref / it:.2f} s per step)", flush=True)
            if it in eval_at:
                row = {"batches": it}
                for label, source in (("darknet_py", net), ("reference", trainer)):
                    if source is None:
                        continue
                    if source is net:
                        for dst, src in zip(evaluator.layers, net.layers):
                            for name, view in dst.params.items():
                                view[...] = src.params[name]
                    else:
                        source.copy_into(evaluator)
                    res = evaluate_detector(evaluator, valid_paths, names, progress=False)
                    row[label] = res.map
                print("eval", row, flush=True)
                results.append(row)
    return results


def main(argv=None):
    if torch is None:
        sys.exit("torch_reference needs PyTorch (pip install torch)")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("steps", help="gradients and parameters after each step vs darknet_py")
    s.add_argument("--steps", type=int, default=5)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--seen", type=int, default=0, help="seen at the start (>= 12800: no prior matching)")
    s.add_argument("--init", default="uniform")
    s.add_argument("--darknet-bn-backward", action="store_true",
                   help="the reference's BN backward by Darknet's formula instead of autograd")
    c = sub.add_parser("curves", help="learning curves in lockstep, mAP of both")
    c.add_argument("--batches", type=int, default=1500)
    c.add_argument("--batch", type=int, default=32)
    c.add_argument("--init", default="uniform")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--no-reference", action="store_true", help="train darknet_py alone (init comparisons)")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--jitter-style", default="place", choices=("place", "crop"))
    c.add_argument("--size", type=int, default=160, help="network input size (images are 160x160)")
    c.add_argument("--images", type=int, default=2000, help="training images (plus a tenth held out)")
    c.add_argument("--eval", default="500,1000,1500", help="batches at which both are scored")
    c.add_argument("--out", default="torch_reference_out")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    if args.cmd == "steps":
        compare_steps(args.steps, args.batch, seen_start=args.seen, init=args.init,
                      darknet_bn_backward=args.darknet_bn_backward)
    else:
        evals = [int(b) for b in args.eval.split(",") if int(b) <= args.batches] or [args.batches]
        rows = learning_curves(args.batches, args.batch, evals, args.seed, args.init, not args.no_reference,
                               args.out, n_train=args.images, n_valid=max(args.images // 10, 1),
                               threads=args.threads, jitter_style=args.jitter_style, size=args.size)
        for r in rows:
            print(r)


if __name__ == "__main__":
    main()
