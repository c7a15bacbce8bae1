"""The one training loop. Detector (train.py) and classifier (classifier.py) training run
through `run_training`; what differs is passed in: the loader, a per-iteration hook
(multi-scale resizing) and the step (`TrainingStep`: the two phases of an iteration,
so a data-parallel trainer can sum gradients across ranks between backward and update).

The loop does what Darknet's train_detector / train_classifier do around the arithmetic:
subdivisions, a NaN stop, running averages, a tqdm bar, the loss chart, checkpoints
(`_last`, Darknet's numbered backups, `_final`), Ctrl-C and resume.

A checkpoint is a weights file plus a `.state.npz` beside it (momentum buffers, `seen`,
the network generator's state for the dropout draws, and the weights file's SHA-256), written as one unit: both go to fsynced temp files; the
old state is set aside as `.state.prev.npz`, the new state renamed into place, then the
weights, then the set-aside state removed. Whenever the process dies, the weights file on
disk has a matching state (the new one, or the set-aside old one), which resume finds by
the SHA-256 and `seen`, so a resume after a kill at any point is exact. A state that
matches neither (a file copied in by hand) is refused with a warning: momentum restarts
from zero (as Darknet always does) instead of pairing two iterations.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import signal
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np

from ._core import DarknetError
from .network import Network

CHECKPOINT_STATE_SUFFIX = ".state.npz"
# The previous checkpoint's state while a new one is being renamed into place.
CHECKPOINT_PREVIOUS_STATE_SUFFIX = ".state.prev.npz"
# Temp files of an atomic write: `<target>.tmp.<pid>` (the core's save_weights uses the same form).
_TEMP_NAME = re.compile(r"\.tmp\.(\d+)$")


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


@dataclass(frozen=True)
class Shard:
    """This process's share of every global batch: slots first..first+images-1, run as
    forwards of `per_forward` images."""
    first: int
    images: int
    per_forward: int


class TrainingStep:
    """One iteration's arithmetic in the two phases the loop calls in turn: `accumulate` for
    each sub-batch (forward and backward; gradients add up in the layers' update buffers),
    then `update` once (SGD with the iteration's learning rate). A data-parallel trainer
    (distributed.DataParallelStep) overrides them to sum the gradients across ranks, and the
    hooks below to take its share of each batch and to stop every rank together.

    This one is one process: the whole batch, in the cfg's subdivisions."""

    # Whether this process writes checkpoints, the loss chart and the progress bar.
    writes = True

    def prepare(self, net: Network) -> None:
        """After prepare_training, before the loader is built (data-parallel: rank 0's state to all)."""

    def shard(self, net: Network) -> Shard:
        return Shard(0, net.images_per_iteration, net.batch)

    def accumulate(self, net: Network, x: np.ndarray, truth: np.ndarray) -> float:
        return net.accumulate(x, truth)

    def update(self, net: Network) -> None:
        net.update()

    def iteration_loss(self, net: Network, losses: List[float]) -> float:
        """The iteration's loss from this process's sub-batch losses: their mean."""
        return sum(losses) / len(losses)

    def failed(self, error: BaseException) -> None:
        """This process failed mid-iteration (data, forward); the caller re-raises `error`."""

    def agree_stop(self, reason: Optional[str]) -> Optional[str]:
        """Whether to stop after this iteration ("interrupted", "time_limit" or None): one process decides."""
        return reason


# ---------------------------------------------------------------- checkpoints

def _weights_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(directory: str) -> None:
    """Make renames inside `directory` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _momentum_arrays(net: Network) -> dict:
    arrays = {}
    for layer in net.layers:
        for name, arr in layer.update_buffers.items():
            arrays[f"L{layer.index:03d}_{name}"] = arr
    return arrays


def save_checkpoint(net: Network, path: str) -> str:
    """Weights + momentum state + seen at `path` as one unit (see the module notes)."""
    path = str(path)
    pid = os.getpid()
    weights_tmp = f"{path}.tmp.{pid}"
    state_path = path + CHECKPOINT_STATE_SUFFIX
    previous_state = path + CHECKPOINT_PREVIOUS_STATE_SUFFIX
    state_tmp = f"{state_path}.tmp.{pid}"
    try:
        net.save_weights(weights_tmp)  # fsynced by the core
        arrays = _momentum_arrays(net)
        arrays["seen"] = np.int64(net.seen)
        arrays["rng_state"] = np.array(net.rng_state)  # the dropout draws continue where they stopped
        arrays["weights_sha256"] = np.array(_weights_digest(weights_tmp))
        with open(state_tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(state_path) and os.path.exists(path):
            os.replace(state_path, previous_state)  # still matches the weights on disk
        os.replace(state_tmp, state_path)
        os.replace(weights_tmp, path)
        if os.path.exists(previous_state):
            os.remove(previous_state)
    finally:
        for leftover in (weights_tmp, state_tmp):
            if os.path.exists(leftover):
                os.remove(leftover)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    return path


def _state_paths(weights_path: str) -> List[str]:
    """Where a checkpoint's state may be: beside the weights, or set aside mid-save."""
    return [weights_path + CHECKPOINT_STATE_SUFFIX, weights_path + CHECKPOINT_PREVIOUS_STATE_SUFFIX]


def _matching_state(weights_path: str, seen: int):
    """The state file beside `weights_path` that belongs to it (by SHA-256 and seen), the
    set-aside previous one if a save was interrupted between renames; else (None, reason)."""
    digest = None
    reasons = []
    for path in _state_paths(weights_path):
        if not os.path.exists(path):
            continue
        with np.load(path) as state:
            if "weights_sha256" not in state.files:
                warnings.warn(f"{path} predates checkpoint verification: its momentum is used unverified",
                              stacklevel=4)
                return path, None
            digest = digest or _weights_digest(weights_path)
            state_seen = int(state["seen"])
            if str(state["weights_sha256"]) == digest and state_seen == seen:
                return path, None
            reasons.append(f"{path} belongs to other weights (seen={state_seen}, the weights have seen={seen})")
    return None, "; ".join(reasons)


def load_training_state(net: Network, weights_path: str) -> bool:
    """Momentum buffers saved beside `weights_path`, after the weights are loaded. Returns False
    (with a warning when a state exists) if there is none that belongs to these weights."""
    weights_path = str(weights_path)
    path, mismatch = _matching_state(weights_path, net.seen)
    if path is None:
        if mismatch:
            warnings.warn(f"{mismatch}: momentum restarts from zero", stacklevel=3)
        return False
    with np.load(path) as state:
        for layer in net.layers:
            for name, arr in layer.update_buffers.items():
                key = f"L{layer.index:03d}_{name}"
                if key in state.files:
                    src = state[key]
                    if src.shape != arr.shape:
                        raise DarknetError(f"{path}: {key} has shape {src.shape}, the network needs {arr.shape}")
                    arr[...] = src
        if "rng_state" in state.files:  # older checkpoints: the generator stays seeded by `seed`
            net.rng_state = str(state["rng_state"])
    return True


def save_scheduled_checkpoints(net: Network, iteration: int, backup_dir: Path, base: str,
                               checkpoint_every: int, save: Optional[Callable[[str], str]] = None) -> Optional[str]:
    """`_last` every checkpoint_every iterations (returns its path) and Darknet's numbered
    backups (every 100 below 1000, then every 10000). save(path): how one is written
    (default save_checkpoint; a data-parallel rank other than 0 writes nothing)."""
    save = save or (lambda path: save_checkpoint(net, path))
    last = None
    if checkpoint_every and iteration % checkpoint_every == 0:
        last = save(str(backup_dir / f"{base}_last.weights"))
    if iteration % 10000 == 0 or (iteration < 1000 and iteration % 100 == 0):
        save(str(backup_dir / f"{base}_{iteration}.weights"))
    return last


def prepare_backup_dir(backup_dir) -> Path:
    """Create the checkpoint directory, prove it writable before any training time is spent,
    and remove temp files left by writers that died mid-write."""
    backup_dir = Path(backup_dir)
    try:
        backup_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=backup_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise DarknetError(f"{backup_dir}: the checkpoint directory is not writable ({e.strerror or e})") from None
    remove_stale_temp_files(backup_dir)
    return backup_dir


def remove_stale_temp_files(directory) -> List[str]:
    """Delete `*.tmp.<pid>` files whose writing process is gone; returns their paths."""
    removed = []
    for entry in Path(directory).iterdir():
        m = _TEMP_NAME.search(entry.name)
        if not m or not entry.is_file() or _process_alive(int(m.group(1))):
            continue
        try:
            entry.unlink()
            removed.append(str(entry))
        except OSError:
            pass
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's), or not a pid we can judge: leave it
    return True


def prepare_training(net: Network, weights: Optional[str], seed: int, clear: bool, device: str = "cpu") -> None:
    """Training mode, seeded initialisation, then the weights (and momentum state) to start from;
    then the network moves to `device` (all of it is prepared on the host first, so the
    momentum state is written into host buffers and uploaded once)."""
    net.training = True  # allocates the momentum buffers the state file fills
    net.set_seed(seed)
    net.randomize(seed)  # from scratch, or the layers a partial weights file does not cover
    if weights:
        net.load_weights(weights)
        if any(os.path.exists(path) for path in _state_paths(str(weights))):
            load_training_state(net, weights)
        else:
            warnings.warn(f"{weights}: no {CHECKPOINT_STATE_SUFFIX} beside it; momentum restarts from zero "
                          "(as Darknet)", stacklevel=3)
    if clear:
        net.seen = 0
    net.to(device)


def training_limit(net: Network, max_batches: Optional[int], cfg) -> int:
    limit = int(max_batches if max_batches is not None else net.max_batches)
    if limit <= 0:
        raise DarknetError(f"{cfg}: max_batches must be > 0 (set it in [net] or pass max_batches)")
    return limit


def write_chart(path: str, result: TrainResult, start: int) -> None:
    """The loss chart, replaced atomically (a viewer never reads half a PNG)."""
    from .plot import line_chart
    n = len(result.losses)
    xs = np.arange(start + 1, start + n + 1)
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        line_chart(tmp, {"loss": (xs, result.losses), "avg loss": (xs, result.avg_losses)},
                   title="training loss", xlabel="iteration", ylabel="loss")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


# ---------------------------------------------------------------- the loop

def run_training(net: Network, loader, limit: int, backup_dir, base: str, *,
                 result: Optional[TrainResult] = None, chart_path: Optional[str] = None, progress: bool = True,
                 desc: str = "train", chart_every: int = 10, checkpoint_every: int = 100,
                 time_limit: Optional[float] = None,
                 on_iteration: Optional[Callable[[int, float, float], None]] = None,
                 before_iteration: Optional[Callable[[int, Network, object], None]] = None,
                 step: Optional[TrainingStep] = None) -> TrainResult:
    """Train `net` (prepared: training mode, weights, device) from its current iteration to `limit`.

    loader: `next_batch() -> (x, truth)` with this process's share of each batch at the network's
    size (`step.shard(net)`: batch*subdivisions images in one process), `close()`; it is closed
    when the loop ends. step: the iteration's phases (TrainingStep; distributed.DataParallelStep
    for a rank of an MPI job, which also decides who writes and when every rank stops).
    before_iteration(iteration, net, loader) runs before each batch is drawn (multi-scale
    resizing); on_iteration(iteration, loss, avg_loss) after each. The network is back at its starting size when the checkpoints at the end are
    written. Returns `result` (a TrainResult, or the caller's subclass) filled in.
    """
    result = result if result is not None else TrainResult()
    step = step or TrainingStep()
    backup_dir = Path(backup_dir)
    chart_path = chart_path or str(backup_dir / f"{base}_loss.png")
    shard = step.shard(net)
    forwards = shard.images // shard.per_forward
    images_per_iteration = net.images_per_iteration  # the whole job's, for the images/s figure
    start_w, start_h = net.width, net.height
    start = net.current_batch
    writes = step.writes

    def checkpoint(path: str) -> str:
        return save_checkpoint(net, path) if writes else path

    bar = None
    if progress and writes:
        from tqdm import tqdm
        bar = tqdm(total=limit, initial=start, unit="batch", dynamic_ncols=True, desc=desc)
    avg_loss = -1.0
    iteration = start
    t_start = time.perf_counter()
    images_done = 0
    last_good = None
    try:
        with _Interrupt() as interrupt:
            while iteration < limit:
                if before_iteration:
                    before_iteration(iteration, net, loader)
                try:
                    x, truth = loader.next_batch()
                except Exception as e:
                    step.failed(e)  # data-parallel: the other ranks learn of it and stop too
                    # Nothing of this iteration has run here: the weights are whole, keep them.
                    if iteration > start and writes:
                        if (net.width, net.height) != (start_w, start_h):
                            net.resize(start_w, start_h)
                        saved = save_checkpoint(net, str(backup_dir / f"{base}_last.weights"))
                        if hasattr(e, "add_note"):
                            e.add_note(f"training stopped at iteration {iteration}; {saved} holds its weights")
                    raise
                try:
                    if x.shape[2:] != (net.height, net.width):
                        raise DarknetError(f"loader produced {x.shape[3]}x{x.shape[2]} images, network is "
                                           f"{net.width}x{net.height}")
                    losses = [step.accumulate(net, x[sl], truth[sl])
                              for sl in (slice(s * shard.per_forward, (s + 1) * shard.per_forward)
                                         for s in range(forwards))]
                except Exception as e:
                    step.failed(e)
                    raise
                step.update(net)
                loss = step.iteration_loss(net, losses)
                iteration = net.current_batch
                images_done += images_per_iteration
                if not math.isfinite(loss):
                    result.stopped = "nan"
                    raise DarknetError(f"loss became {loss} at iteration {iteration}: stopping; the weights were not "
                                       "saved" + (f"; last good checkpoint: {last_good}" if last_good else ""))
                avg_loss = loss if avg_loss < 0 else avg_loss * .9 + loss * .1
                result.losses.append(loss)
                result.avg_losses.append(avg_loss)
                if on_iteration:
                    on_iteration(iteration, loss, avg_loss)
                if bar is not None:
                    rate = images_done / max(time.perf_counter() - t_start, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", avg=f"{avg_loss:.3f}", lr=f"{net.learning_rate:.2e}",
                                    img_s=f"{rate:.1f}", size=net.width)
                    bar.update(iteration - bar.n)
                if chart_every and iteration % chart_every == 0 and writes:
                    write_chart(chart_path, result, start)
                last_good = save_scheduled_checkpoints(net, iteration, backup_dir, base, checkpoint_every,
                                                       save=checkpoint) or last_good
                stop = "interrupted" if interrupt.hit else None
                if stop is None and time_limit is not None and time.perf_counter() - t_start > time_limit:
                    stop = "time_limit"
                stop = step.agree_stop(stop)  # data-parallel: every rank stops after the same iteration
                if stop:
                    result.stopped = stop
                    break
    finally:
        loader.close()
        if bar is not None:
            bar.close()
    result.iterations = iteration
    result.images_per_second = images_done / max(time.perf_counter() - t_start, 1e-9)
    if (net.width, net.height) != (start_w, start_h):
        net.resize(start_w, start_h)
    result.last_weights = checkpoint(str(backup_dir / f"{base}_last.weights"))
    if result.stopped in ("max_batches", "time_limit"):
        result.final_weights = checkpoint(str(backup_dir / f"{base}_final.weights"))
    if result.losses and writes:
        write_chart(chart_path, result, start)
        result.chart = chart_path
    return result
