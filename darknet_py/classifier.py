"""Darknet-19-style classifier training, evaluation and the paper's
high-resolution classifier fine-tuning ("Better": train at 224, then fine-tune
10 epochs at 448 before detection), as `darknet classifier train/valid/predict`.

The arithmetic (forward, softmax cross-entropy + [cost], backward, SGD with the
cfg's momentum/decay/LR policy) runs in the C++ core through
the one training loop (training.py: subdivisions, checkpoints, resume, Ctrl-C,
the loss chart); data comes from `data.classification.ClassificationLoader`
(Darknet's load_data_augment in C++, in threads).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from . import _core
from ._core import DarknetError
from .network import Network
from .training import (TrainingStep, TrainResult, prepare_backup_dir, prepare_training, run_training,
                       training_limit)

__all__ = ["ClassifierTrainResult", "FineTuneResult", "train_classifier", "evaluate_classifier", "fine_tune_highres",
           "predict_classes", "register_commands"]


@dataclass
class ClassifierTrainResult(TrainResult):
    top1: Optional[float] = None   # on the valid list after training (when evaluated)
    top5: Optional[float] = None
    size: int = 0                  # input size trained at


@dataclass
class FineTuneResult:
    low_size: int
    high_size: int
    top1_low: float             # the low-resolution net evaluated at its own size
    top1_high_before: float     # the same weights resized to the high size, before fine-tuning
    top1_high_after: float      # after fine-tuning at the high size
    top5_high_after: float
    train: ClassifierTrainResult
    net: Network


# ---------------------------------------------------------------- helpers

def output_layer_outputs(net: Network) -> int:
    """Values per image of the output layer (the last non-cost layer: the core's output_index)."""
    c, h, w = net.layers[net.output_index].output_shape
    return c * h * w


def softmax_tree(net: Network):
    """The WordTree of the net's [softmax] tree= layer, or None."""
    return net.softmax_tree


def _check_outputs(net: Network, data, cfg) -> None:
    outputs = output_layer_outputs(net)
    if outputs != data.classes:
        raise DarknetError(f"{data.path}: {data.classes} labels but {cfg}'s output layer has {outputs} values "
                           f"(the last convolution needs filters={data.classes})")


def _eval_net(net: Network, size: Optional[int]):
    """Switch to inference (and size) for evaluation; returns a restore callable."""
    was_training = net.training
    w0, h0, b0 = net.width, net.height, net.batch
    if was_training:
        net.training = False
    if size and (size, size) != (w0, h0):
        net.resize(size, size)

    def restore():
        if (net.width, net.height) != (w0, h0):
            net.resize(w0, h0)
        net.set_batch(b0)
        if was_training:
            net.training = True
    return restore


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values per row, largest first (stable for ties, as a sort)."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    return order[..., :k]


def predict_classes(net: Network, images: np.ndarray, tree=None) -> np.ndarray:
    """Class scores (N, classes) for a batch of network-sized images; for a WordTree
    softmax, Darknet's hierarchy_predictions (absolute leaf probabilities)."""
    from .data.classification import hierarchy_predictions
    out = net.forward(images).reshape(len(images), -1)
    if tree is not None:
        out = hierarchy_predictions(out, tree, only_leaves=True)
    return out


def evaluate_classifier(net: Network, data, size: Optional[int] = None, batch: int = 32, top: int = 5,
                        limit: Optional[int] = None) -> Dict[str, float]:
    """Top-1 / top-k accuracy on the .data file's valid list, as `darknet classifier valid`.

    data: a .data path or a ClassificationData. Each image gets Darknet's
    validation input (resize_min to the size, centred crop); a tree softmax is
    scored with hierarchy_predictions over the leaves. `size` evaluates at
    another input size (the network is resized and restored). The network's
    training state, size and batch are restored afterwards.
    Returns {"top1", "top5" (top-k with k=top), "images", "size"}.
    """
    from .data.classification import ClassificationData, read_classification_data
    from .image import load_image
    if not isinstance(data, ClassificationData):
        data = read_classification_data(data, splits=("valid",))
    paths, classes = data.valid, data.valid_classes
    if limit is not None:
        paths, classes = paths[:limit], classes[:limit]
    if not paths:
        raise DarknetError(f"{data.path}: the valid list is empty")
    tree = softmax_tree(net)
    restore = _eval_net(net, size)
    hit1 = hitk = 0
    try:
        w, h = net.width, net.height
        for start in range(0, len(paths), batch):
            chunk = paths[start:start + batch]
            x = np.stack([_core.classifier_valid_image(load_image(p), w, h) for p in chunk])
            scores = predict_classes(net, x, tree)
            best = top_k(scores, top)
            truth = classes[start:start + batch]
            hit1 += int(np.sum(best[:, 0] == truth))
            hitk += int(np.sum(np.any(best == truth[:, None], axis=1)))
        used = (w, h)
    finally:
        restore()
    n = len(paths)
    return {"top1": hit1 / n, "top5": hitk / n, "images": n, "size": used[0]}


# ---------------------------------------------------------------- training

def _make_loader(net: Network, data, seed: int, workers: int, start: int, images_per_iteration: int,
                 tree, base_w: Optional[int] = None, shard=None):
    from .data.classification import ClassificationLoader
    opts = net.options
    base_w = base_w or net.width
    return ClassificationLoader(data.train, data.train_classes, net.width, net.height, images_per_iteration,
                                output_layer_outputs(net), tree=tree, train=True,
                                min_crop=opts["min_crop"] * net.width // base_w,
                                max_crop=opts["max_crop"] * net.width // base_w, angle=opts["angle"],
                                aspect=opts["aspect"], hue=opts["hue"], saturation=opts["saturation"],
                                exposure=opts["exposure"], flip=bool(opts.get("flip", 1)),
                                center=bool(opts.get("center", 0)), seed=seed, workers=workers, start_batch=start,
                                shard=shard)


def train_classifier(data, cfg: str, weights: Optional[str] = None, *, max_batches: Optional[int] = None,
                     seed: int = 0, backup: Optional[str] = None, time_limit: Optional[float] = None,
                     progress: bool = True, workers: int = 2, clear: bool = False, chart: Optional[str] = None,
                     chart_every: int = 10, checkpoint_every: int = 100, evaluate: bool = True,
                     on_iteration: Optional[Callable[[int, float, float], None]] = None,
                     return_net: bool = False, validate: bool = True, device: str = "cpu",
                     step: Optional[TrainingStep] = None):
    """Train a classifier on a Darknet classification .data file, like `darknet classifier train`.

    [net] batch/subdivisions, learning rate and policy (Darknet-19: poly,
    power 4), momentum, decay and the augmentation (min_crop, max_crop,
    aspect, angle, hue, saturation, exposure, flip) come from the cfg. Every
    image's class is checked up front (label-in-path rule). weights: initial
    weights or a checkpoint (resumes at seen/(batch*subdivisions) unless
    clear). Checkpoints as train.py: `<backup>/<cfg>_<N>.weights`,
    `_last`, `_final`, each with a `.state.npz` for exact resume.
    With evaluate, top-1/top-k on the valid list are filled in.
    validate=False skips opening every image up front (the label rule is always checked).
    device: "cpu" or "cuda" (prepared on the host, then trained and evaluated on the device).
    step: the iteration's phases (training.TrainingStep; a data-parallel trainer passes its own).
    Returns a ClassifierTrainResult (and the Network with return_net).
    """
    from .data.classification import read_classification_data
    data_obj = read_classification_data(data, check_images=validate)
    net = Network.from_cfg(str(cfg), batch=0, names=data_obj.names)
    _check_outputs(net, data_obj, cfg)
    tree = softmax_tree(net)
    step = step or TrainingStep()
    backup_dir = backup or data_obj.backup or "backup"
    backup_dir = prepare_backup_dir(backup_dir) if step.writes else Path(backup_dir)
    prepare_training(net, weights if step.writes else None, seed, clear, device)  # as train.py
    step.prepare(net)
    limit = training_limit(net, max_batches, cfg)
    shard = step.shard(net)
    loader = _make_loader(net, data_obj, seed, workers, net.current_batch, net.images_per_iteration, tree,
                          shard=(shard.first, shard.images))
    result = run_training(net, loader, limit, backup_dir, Path(cfg).stem, result=ClassifierTrainResult(size=net.width),
                          chart_path=chart, progress=progress, desc="classifier", chart_every=chart_every,
                          checkpoint_every=checkpoint_every, time_limit=time_limit, on_iteration=on_iteration,
                          step=step)
    if evaluate and data_obj.valid and step.writes:  # rank 0 evaluates a data-parallel job
        acc = evaluate_classifier(net, data_obj, top=data_obj.top)
        result.top1, result.top5 = acc["top1"], acc["top5"]
    return (result, net) if return_net else result


def fine_tune_highres(data, cfg: str, weights: str, *, scale: float = 2.0, size: Optional[int] = None,
                      max_batches: int = 50, learning_rate: Optional[float] = None, lr_scale: float = 0.1,
                      seed: int = 0, backup: Optional[str] = None, time_limit: Optional[float] = None,
                      progress: bool = True, workers: int = 2, chart: Optional[str] = None,
                      checkpoint_every: int = 0, on_iteration=None, device: str = "cpu") -> FineTuneResult:
    """YOLOv2's high-resolution classifier step: take a classifier trained at the
    cfg's (low) size, `net.resize()` it to `size` (default scale x the cfg size,
    e.g. 224 -> 448), and continue training for `max_batches` batches at a lower
    learning rate (`learning_rate`, default lr_scale x the cfg's), with the
    cfg's policy restarted from 0 over those batches and the crop range scaled
    with the size. Reports top-1 of the low-res net at its own size, and at the
    high size before and after fine-tuning. Checkpoints are
    `<backup>/<cfg>_<size>_{last,final}.weights` (weights files hold no size).
    """
    from .data.classification import read_classification_data
    data_obj = read_classification_data(data)
    net = Network.from_cfg(str(cfg), batch=0, names=data_obj.names)
    _check_outputs(net, data_obj, cfg)
    tree = softmax_tree(net)
    backup_dir = prepare_backup_dir(backup or data_obj.backup or "backup")
    prepare_training(net, weights, seed, clear=True, device=device)  # a new schedule: the fine-tune's own max_batches
    low = net.width
    high = int(size) if size else int(round(low * scale))
    if high <= 0:
        raise DarknetError(f"fine_tune_highres: size must be positive, got {high}")
    top = data_obj.top
    top1_low = evaluate_classifier(net, data_obj, top=top)["top1"] if data_obj.valid else float("nan")
    base_w = net.width
    net.resize(high, int(round(net.height * high / low)))
    top1_before = evaluate_classifier(net, data_obj, top=top)["top1"] if data_obj.valid else float("nan")
    net.base_learning_rate = learning_rate if learning_rate is not None else net.base_learning_rate * lr_scale
    net.max_batches = max_batches
    loader = _make_loader(net, data_obj, seed + 1, workers, 0, net.batch * net.subdivisions, tree, base_w=base_w)
    result = run_training(net, loader, int(max_batches), backup_dir, f"{Path(cfg).stem}_{high}",
                          result=ClassifierTrainResult(size=net.width), chart_path=chart, progress=progress,
                          desc=f"fine-tune {high}", chart_every=10, checkpoint_every=checkpoint_every,
                          time_limit=time_limit, on_iteration=on_iteration)
    acc = evaluate_classifier(net, data_obj, top=top) if data_obj.valid else {"top1": float("nan"),
                                                                              "top5": float("nan")}
    result.top1, result.top5 = acc["top1"], acc["top5"]
    return FineTuneResult(low, high, top1_low, top1_before, acc["top1"], acc["top5"], result, net)


# ---------------------------------------------------------------- CLI

def _names_for(args_names) -> Optional[List[str]]:
    if args_names:
        from .data.dataset import read_names
        return read_names(args_names)
    return None


def cmd_classifier_train(args):
    from .cli import print_training_result, training_ranks
    with training_ranks(args.device) as step:
        res = train_classifier(args.data, args.cfg, args.weights, max_batches=args.max_batches, seed=args.seed,
                               backup=args.backup, clear=args.clear, workers=args.workers,
                               checkpoint_every=args.checkpoint_every, time_limit=args.time_limit,
                               device=args.device, step=step)
    if step is not None and not step.writes:
        return 0  # rank 0 reports
    print_training_result(res)
    if res.top1 is not None:
        print(f"valid: top-1 {res.top1:.4f}, top-5 {res.top5:.4f}")
    print(f"weights: {res.final_weights or res.last_weights}; loss chart: {res.chart}")
    return 0


def cmd_classifier_finetune(args):
    from .distributed import require_one_process
    require_one_process("classifier-finetune")
    res = fine_tune_highres(args.data, args.cfg, args.weights, scale=args.scale, size=args.size,
                            max_batches=args.max_batches, lr_scale=args.lr_scale, seed=args.seed,
                            backup=args.backup, device=args.device)
    print(f"top-1 at {res.low_size}: {res.top1_low:.4f}")
    print(f"top-1 at {res.high_size} before fine-tuning: {res.top1_high_before:.4f}")
    print(f"top-1 at {res.high_size} after {res.train.iterations} batches: {res.top1_high_after:.4f} "
          f"(top-5 {res.top5_high_after:.4f})")
    print(f"weights: {res.train.final_weights or res.train.last_weights}")
    return 0


def cmd_classifier_valid(args):
    from .data.classification import read_classification_data
    from .network import load
    data = read_classification_data(args.data, splits=("valid",))
    net = load(args.cfg, args.weights, batch=1, device=args.device)
    acc = evaluate_classifier(net, data, size=args.size, top=data.top)
    print(f"{acc['images']} images at {acc['size']}x{acc['size']}: top-1 {acc['top1']:.4f}, "
          f"top-{data.top} {acc['top5']:.4f}")
    return 0


def cmd_classifier_predict(args):
    from .image import load_image
    from .network import load
    names = _names_for(args.names)
    net = load(args.cfg, args.weights, batch=1, device=args.device)
    tree = softmax_tree(net)
    if names is None and tree is not None:
        names = list(tree.names)
    for path in args.images:
        x = _core.classifier_valid_image(load_image(path), net.width, net.height)
        t0 = time.perf_counter()
        scores = predict_classes(net, x[None], tree)[0]
        ms = (time.perf_counter() - t0) * 1000
        print(f"{path}: Predicted in {ms:.1f} milliseconds.")
        for i in top_k(scores, min(args.top, len(scores))):
            name = names[i] if names and i < len(names) else str(i)
            print(f"{scores[i] * 100:5.2f}%: {name}")
    return 0


def register_commands(subparsers) -> None:
    from .cli import add_device_argument, add_training_arguments
    t = subparsers.add_parser("classifier-train", help="train a classifier on a Darknet classification .data file")
    add_training_arguments(t)
    t.set_defaults(func=cmd_classifier_train)

    f = subparsers.add_parser("classifier-finetune",
                              help="high-resolution fine-tuning: resize a trained classifier (2x) and train on")
    f.add_argument("data")
    f.add_argument("cfg")
    f.add_argument("weights")
    f.add_argument("--scale", type=float, default=2.0)
    f.add_argument("--size", type=int, help="target input size (overrides --scale)")
    f.add_argument("--max-batches", type=int, default=50)
    f.add_argument("--lr-scale", type=float, default=0.1, help="learning rate = lr_scale x the cfg's")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--backup")
    add_device_argument(f)
    f.set_defaults(func=cmd_classifier_finetune)

    v = subparsers.add_parser("classifier-valid", help="top-1 / top-5 accuracy on the valid list")
    v.add_argument("data")
    v.add_argument("cfg")
    v.add_argument("weights")
    v.add_argument("--size", type=int, help="evaluate at this input size (resizes the network)")
    add_device_argument(v)
    v.set_defaults(func=cmd_classifier_valid)

    p = subparsers.add_parser("classifier-predict", help="top classes of images")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("images", nargs="+")
    p.add_argument("--names", help="class names file (one per line)")
    p.add_argument("--top", type=int, default=5)
    add_device_argument(p)
    p.set_defaults(func=cmd_classifier_predict)
