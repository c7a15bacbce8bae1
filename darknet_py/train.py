"""Darknet-style detector training: data, multi-scale, checkpoints, resume, charts.

The arithmetic (forward, region loss, backward, SGD) runs in the C++ core through
`Network.train_step`; this module schedules it the way Darknet's train_detector does.
"""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from . import _core
from ._core import DarknetError
from .network import Network

CHECKPOINT_STATE_SUFFIX = ".state.npz"


@dataclass
class TrainResult:
    iterations: int = 0
    losses: List[float] = field(default_factory=list)
    avg_losses: List[float] = field(default_factory=list)
    final_weights: Optional[str] = None
    last_weights: Optional[str] = None
    chart: Optional[str] = None
    stopped: str = "max_batches"   # or "time_limit", "interrupted", "nan"
    images_per_second: float = 0.0
    sizes: List[int] = field(default_factory=list)


def region_info(net: Network) -> Optional[dict]:
    layers = _core.region_layers(net._net)
    return layers[-1] if layers else None


def multiscale_sizes(base: int) -> List[int]:
    """Darknet picks (10..19)*32 for a 416 net; scale that range to the cfg's size."""
    lo, hi = base * 10 / 13, base * 19 / 13
    sizes = [s for s in range(32, int(hi) + 33, 32) if lo - 1e-6 <= s <= hi + 1e-6]
    return sizes or [base]


def pick_size(seed: int, iteration: int, sizes: List[int]) -> int:
    """Multi-scale size for an iteration: a pure function of (seed, iteration) so resumes repeat it."""
    rng = np.random.default_rng([seed, iteration, 0x5CA1E])
    return int(sizes[rng.integers(len(sizes))])


def save_training_state(net: Network, weights_path: str) -> str:
    """Momentum buffers next to a weights file (Darknet loses them on resume; we keep them)."""
    arrays = {}
    for layer in net.layers:
        for name, arr in layer.buffers.items():
            if name.endswith("_updates"):
                arrays[f"L{layer.index:03d}_{name}"] = arr
    path = str(weights_path) + CHECKPOINT_STATE_SUFFIX
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_training_state(net: Network, weights_path: str) -> bool:
    path = str(weights_path) + CHECKPOINT_STATE_SUFFIX
    if not os.path.exists(path):
        return False
    with np.load(path) as state:
        for layer in net.layers:
            bufs = layer.buffers
            for name, arr in bufs.items():
                key = f"L{layer.index:03d}_{name}"
                if key in state.files:
                    src = state[key]
                    if src.shape != arr.shape:
                        raise DarknetError(f"{path}: {key} has shape {src.shape}, the network needs {arr.shape}")
                    arr[...] = src
    return True


def save_checkpoint(net: Network, path: str) -> str:
    net.save_weights(path)  # temp file + fsync + rename inside the core
    save_training_state(net, path)
    return path


def prepare_training(net: Network, weights: Optional[str], seed: int, clear: bool, device: str = "cpu") -> None:
    """Training mode, seeded initialisation, then the weights (and momentum state) to start from;
    then the network moves to `device` (all of it is prepared on the host first, so the
    momentum state is written into host buffers and uploaded once)."""
    net._net.set_training(True)  # allocates the momentum buffers the state file fills
    net._net.set_seed(seed)
    net.randomize(seed)  # from scratch, or the layers a partial weights file does not cover
    if weights:
        net.load_weights(weights)
        if not load_training_state(net, weights):
            import warnings
            warnings.warn(f"{weights}: no {CHECKPOINT_STATE_SUFFIX} beside it; momentum restarts from zero "
                          "(as Darknet)", stacklevel=3)
    if clear:
        net.seen = 0
    net.to(device)


def save_scheduled_checkpoints(net: Network, iteration: int, backup_dir: Path, base: str,
                               checkpoint_every: int) -> Optional[str]:
    """`_last` every checkpoint_every iterations (returns its path) and Darknet's numbered
    backups (every 100 below 1000, then every 10000)."""
    last = None
    if checkpoint_every and iteration % checkpoint_every == 0:
        last = save_checkpoint(net, str(backup_dir / f"{base}_last.weights"))
    if iteration % 10000 == 0 or (iteration < 1000 and iteration % 100 == 0):
        save_checkpoint(net, str(backup_dir / f"{base}_{iteration}.weights"))
    return last


class _Interrupt:
    """Turns the first Ctrl-C into a flag so the step in flight finishes and _last is saved."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread
            self._old = None
        return self

    def _handler(self, signum, frame):
        if self.hit:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.hit = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def train(data: str, cfg: str, weights: Optional[str] = None, *, max_batches: Optional[int] = None,
          seed: int = 0, backup: Optional[str] = None, workers: int = 2, clear: bool = False,
          progress: bool = True, chart: Optional[str] = None, chart_every: int = 10,
          checkpoint_every: int = 100, multiscale: Optional[bool] = None, validate: bool = True,
          time_limit: Optional[float] = None,
          on_iteration: Optional[Callable[[int, float, float], None]] = None,
          device: str = "cpu") -> TrainResult:
    """Train a detector on a Darknet .data dataset, like `darknet detector train`.

    weights: initial weights (pretrained or a checkpoint); training resumes at
    seen/(batch*subdivisions) unless clear=True. Checkpoints go to
    `backup/<cfg>_<N>.weights` on Darknet's schedule (every 100 below 1000,
    then every 10000), `<cfg>_last.weights` every `checkpoint_every` and
    on Ctrl-C, `<cfg>_final.weights` at the end. Each is written to a temp file,
    fsynced and renamed, with a `.state.npz` of momentum buffers for exact resume.
    device: "cpu" or "cuda" (the network is prepared on the host, then trains on the device;
    checkpoints read the weights back from it).
    """
    from .data.dataset import read_data_cfg, read_list, validate_dataset
    from .data.loader import DetectionLoader

    data_cfg = read_data_cfg(data)
    if "train" not in data_cfg:
        raise DarknetError(f"{data}: no 'train' list")
    paths = read_list(data_cfg.resolve("train"))
    net = Network.from_cfg(str(cfg), batch=0)
    region = region_info(net)
    if region is None:
        raise DarknetError(f"{cfg}: training needs a [region] layer")
    classes = int(data_cfg.get("classes", region["classes"]))
    if classes != region["classes"]:
        raise DarknetError(f"{data}: classes={classes} but {cfg}'s region layer has classes={region['classes']}")
    if validate:
        validate_dataset(paths, classes)

    prepare_training(net, weights, seed, clear, device)

    opts = net.options
    batch, subdivisions = net.batch, opts["subdivisions"]
    images_per_iteration = batch * subdivisions
    limit = int(max_batches if max_batches is not None else opts["max_batches"])
    if limit <= 0:
        raise DarknetError(f"{cfg}: max_batches must be > 0 (set it in [net] or pass max_batches)")
    backup_dir = Path(backup or (data_cfg.resolve("backup") if "backup" in data_cfg else "backup"))
    backup_dir.mkdir(parents=True, exist_ok=True)
    base = Path(cfg).stem
    chart_path = chart or str(backup_dir / f"{base}_loss.png")
    use_multiscale = bool(region["random"]) if multiscale is None else bool(multiscale)
    sizes = multiscale_sizes(net.width) if use_multiscale else [net.width]
    base_w, base_h = net.width, net.height

    start = net._net.current_batch
    result = TrainResult()
    loader = DetectionLoader(paths, net.width, net.height, images_per_iteration, jitter=region["jitter"],
                             hue=opts["hue"], saturation=opts["saturation"], exposure=opts["exposure"],
                             max_boxes=region["max_boxes"], seed=seed, workers=workers, classes=classes,
                             flip=bool(opts.get("flip", 1)), start_batch=start)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=limit, initial=start, unit="batch", dynamic_ncols=True, desc="train")
    avg_loss = -1.0
    iteration = start
    t_start = time.perf_counter()
    images_done = 0
    last_good = None
    try:
        with _Interrupt() as interrupt:
            while iteration < limit:
                if use_multiscale and iteration % 10 == 0:
                    dim = pick_size(seed, iteration, sizes)
                    if iteration + 200 > limit and limit > 200:
                        dim = sizes[-1]  # Darknet finishes at the largest size
                    if (dim, dim) != (net.width, net.height):
                        loader.set_size(dim, dim)
                        net.resize(dim, dim)
                    result.sizes.append(dim)
                x, truth = loader.next_batch()
                if x.shape[2:] != (net.height, net.width):
                    raise DarknetError(f"loader produced {x.shape[3]}x{x.shape[2]} images, network is "
                                       f"{net.width}x{net.height}")
                loss = 0.0
                for s in range(subdivisions):
                    sl = slice(s * batch, (s + 1) * batch)
                    loss += net.train_step(x[sl], truth[sl])
                loss /= subdivisions
                iteration = net._net.current_batch
                images_done += images_per_iteration
                if not math.isfinite(loss):
                    result.stopped = "nan"
                    msg = (f"loss became {loss} at iteration {iteration}: stopping; the weights were not saved"
                           + (f"; last good checkpoint: {last_good}" if last_good else ""))
                    raise DarknetError(msg)
                avg_loss = loss if avg_loss < 0 else avg_loss * .9 + loss * .1
                result.losses.append(loss)
                result.avg_losses.append(avg_loss)
                if on_iteration:
                    on_iteration(iteration, loss, avg_loss)
                if bar is not None:
                    rate = images_done / max(time.perf_counter() - t_start, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", avg=f"{avg_loss:.3f}", lr=f"{net._net.learning_rate:.2e}",
                                    img_s=f"{rate:.1f}", size=net.width)
                    bar.update(iteration - bar.n)
                if chart_every and iteration % chart_every == 0:
                    _write_chart(chart_path, result, start)
                last_good = save_scheduled_checkpoints(net, iteration, backup_dir, base, checkpoint_every) or last_good
                if interrupt.hit:
                    result.stopped = "interrupted"
                    break
                if time_limit is not None and time.perf_counter() - t_start > time_limit:
                    result.stopped = "time_limit"
                    break
    finally:
        loader.close()
        if bar is not None:
            bar.close()
    result.iterations = iteration
    result.images_per_second = images_done / max(time.perf_counter() - t_start, 1e-9)
    if (net.width, net.height) != (base_w, base_h):
        net.resize(base_w, base_h)
    result.last_weights = save_checkpoint(net, str(backup_dir / f"{base}_last.weights"))
    if result.stopped in ("max_batches", "time_limit"):
        result.final_weights = save_checkpoint(net, str(backup_dir / f"{base}_final.weights"))
    if result.losses:
        _write_chart(chart_path, result, start)
        result.chart = chart_path
    return result


def _write_chart(path: str, result: TrainResult, start: int) -> None:
    from .plot import line_chart
    n = len(result.losses)
    xs = np.arange(start + 1, start + n + 1)
    line_chart(path, {"loss": (xs, result.losses), "avg loss": (xs, result.avg_losses)},
               title="training loss", xlabel="iteration", ylabel="loss")
