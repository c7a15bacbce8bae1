"""Darknet-style detector training: data, multi-scale, checkpoints, resume, charts.

The arithmetic (forward, region loss, backward, SGD) runs in the C++ core; the loop
around it (subdivisions, NaN stop, chart, checkpoints, Ctrl-C, resume) is training.py's,
shared with the classifier. This module adds what a detector needs: the .data file and
its labels, the detection loader and Darknet's multi-scale sizes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ._core import DarknetError
from .network import Network
# Checkpoint helpers live with the loop; re-exported here, where earlier code imported them.
from .training import (CHECKPOINT_STATE_SUFFIX, TrainingStep, TrainResult, load_training_state,  # noqa: F401
                       prepare_backup_dir, prepare_training, run_training, save_checkpoint,
                       save_scheduled_checkpoints, training_limit)


def region_info(net: Network) -> Optional[dict]:
    return net.region


def multiscale_sizes(base: int) -> List[int]:
    """Darknet picks (10..19)*32 for a 416 net; scale that range to the cfg's size."""
    lo, hi = base * 10 / 13, base * 19 / 13
    sizes = [s for s in range(32, int(hi) + 33, 32) if lo - 1e-6 <= s <= hi + 1e-6]
    return sizes or [base]


def pick_size(seed: int, iteration: int, sizes: List[int]) -> int:
    """Multi-scale size for an iteration: a pure function of (seed, iteration) so resumes repeat it."""
    rng = np.random.default_rng([seed, iteration, 0x5CA1E])
    return int(sizes[rng.integers(len(sizes))])


class MultiScale:
    """Darknet's multi-scale training as the loop's per-iteration hook: a new input size every
    10 iterations (the largest for the last 200), drawn for the block an iteration is in, so a
    run resumed in the middle of a block trains at the size a straight run had there.
    `sizes` records the size of every block trained (a resumed run's first, partial one too)."""

    BLOCK = 10

    def __init__(self, choices: List[int], seed: int, limit: int):
        self.choices, self.seed, self.limit = list(choices), int(seed), int(limit)
        self.sizes: List[int] = []
        self._first = True

    def size_at(self, iteration: int) -> int:
        block = iteration - iteration % self.BLOCK
        if block + 200 > self.limit and self.limit > 200:
            return self.choices[-1]  # Darknet finishes at the largest size
        return pick_size(self.seed, block, self.choices)

    def __call__(self, iteration: int, net: Network, loader) -> None:
        dim = self.size_at(iteration)
        if (dim, dim) != (net.width, net.height):
            loader.set_size(dim, dim)
            net.resize(dim, dim)
        if self._first or iteration % self.BLOCK == 0:
            self.sizes.append(dim)
        self._first = False


def _read_joint_data(data: str, cfg: str, region: dict, validate: bool):
    """A joint .data file checked against the region layer it trains: a tree= region with the
    same WordTree (classification-only truths train the tree's nodes)."""
    from .data.joint import read_joint_data
    if region["tree"] is None:
        raise DarknetError(f"{data} is a joint .data file (it names a classification list) but {cfg}'s region "
                           f"layer has no tree=: classification-only labels need a WordTree region layer")
    joint = read_joint_data(data, detection_classes=len(region["map"]) or None, check_images=validate)
    if list(joint.tree.names) != list(region["tree"].names):
        raise DarknetError(f"{data}: tree {joint.tree_path} differs from {cfg}'s region tree {region['tree_path']}")
    return joint


def train(data: str, cfg: str, weights: Optional[str] = None, *, max_batches: Optional[int] = None,
          seed: int = 0, backup: Optional[str] = None, workers: int = 2, clear: bool = False,
          progress: bool = True, chart: Optional[str] = None, chart_every: int = 10,
          checkpoint_every: int = 100, multiscale: Optional[bool] = None, validate: bool = True,
          time_limit: Optional[float] = None,
          on_iteration: Optional[Callable[[int, float, float], None]] = None,
          device: str = "cpu", step: Optional[TrainingStep] = None) -> TrainResult:
    """Train a detector on a Darknet .data dataset, like `darknet detector train`.

    A joint .data file (one naming a `classification` list; data/joint.py) trains
    YOLO9000-style: batches mix detection images and classification-only images, which
    the tree= region layer trains for their class alone.

    weights: initial weights (pretrained or a checkpoint); training resumes at
    seen/(batch*subdivisions) unless clear=True. Checkpoints go to
    `backup/<cfg>_<N>.weights` on Darknet's schedule (every 100 below 1000,
    then every 10000), `<cfg>_last.weights` every `checkpoint_every` and
    on Ctrl-C or a data error, `<cfg>_final.weights` at the end. Each is written with
    a `.state.npz` (momentum buffers, seen) as one unit for exact resume (training.py).
    Multi-scale (the region layer's random=1, or `multiscale`): see MultiScale.
    step: the iteration's phases (training.TrainingStep; a data-parallel trainer passes its own).
    device: "cpu" or "cuda" (the network is prepared on the host, then trains on the device;
    checkpoints read the weights back from it).
    """
    from .data.dataset import read_data_cfg, read_list, validate_dataset
    from .data.joint import JointLoader, is_joint_data
    from .data.loader import DetectionLoader

    step = step or TrainingStep()
    data_cfg = read_data_cfg(data)
    net = Network.from_cfg(str(cfg), batch=0)
    region = net.region
    if region is None:
        raise DarknetError(f"{cfg}: training needs a [region] layer")
    joint = _read_joint_data(data, cfg, region, validate) if is_joint_data(data_cfg) else None
    if joint is None:
        if "train" not in data_cfg:
            raise DarknetError(f"{data}: no 'train' list")
        paths = read_list(data_cfg.resolve("train"))
    classes = int(data_cfg.get("classes", region["classes"]))
    if classes != region["classes"]:
        raise DarknetError(f"{data}: classes={classes} but {cfg}'s region layer has classes={region['classes']}")
    backup_dir = backup or (data_cfg.resolve("backup") if "backup" in data_cfg else "backup")
    backup_dir = prepare_backup_dir(backup_dir) if step.writes else Path(backup_dir)
    if validate and joint is None:
        validate_dataset(paths, classes)

    # The writing process (rank 0 of a data-parallel job) reads the start weights; step.prepare
    # hands its state to the other ranks, which need no copy of the checkpoint directory.
    prepare_training(net, weights if step.writes else None, seed, clear, device)
    step.prepare(net)
    shard = step.shard(net)
    opts = net.options
    limit = training_limit(net, max_batches, cfg)
    use_multiscale = bool(region["random"]) if multiscale is None else bool(multiscale)
    multiscale_hook = MultiScale(multiscale_sizes(net.width), seed, limit) if use_multiscale else None

    augmentation = dict(jitter=region["jitter"], hue=opts["hue"], saturation=opts["saturation"],
                        exposure=opts["exposure"], max_boxes=region["max_boxes"], seed=seed, workers=workers,
                        flip=bool(opts.get("flip", 1)), start_batch=net.current_batch,
                        jitter_style=region["jitter_style"], shard=(shard.first, shard.images))
    images_per_iteration = net.images_per_iteration  # the global batch; this process draws its shard
    if joint is None:
        loader = DetectionLoader(paths, net.width, net.height, images_per_iteration, classes=classes, **augmentation)
    else:
        loader = JointLoader(joint.detection, joint.classification, joint.classification_nodes,
                             joint.classification_fraction, net.width, net.height, images_per_iteration,
                             classes=len(region["map"]) or classes, **augmentation)
    result = run_training(net, loader, limit, backup_dir, Path(cfg).stem, chart_path=chart, progress=progress,
                          desc="train", chart_every=chart_every, checkpoint_every=checkpoint_every,
                          time_limit=time_limit, on_iteration=on_iteration, before_iteration=multiscale_hook,
                          step=step)
    if multiscale_hook is not None:
        result.sizes = multiscale_hook.sizes
    return result
