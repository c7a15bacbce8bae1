"""Background detection data loader (Darknet's load_data_detection in threads).

Each batch slot picks an image at random (with replacement, as Darknet's
get_random_paths) and an augmentation seed, both derived from
(seed, batch index, slot) only, so batch i is the same whatever the thread
timing or worker count. Decoding (Pillow) and augmentation (C++) release the
GIL, so worker threads run in parallel with each other and with training.
"""
from __future__ import annotations

import abc
import os
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from darknet_py import _core
from darknet_py._core import DarknetError
from darknet_py.image import load_image

from .dataset import label_path, read_labels

__all__ = ["DetectionLoader", "PrefetchLoader", "sample_seed"]


def sample_seed(seed: int, batch_index: int, slot: int) -> Tuple[int, int]:
    """(image draw, augmentation seed) for one slot of one batch."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(batch_index), int(slot)]).generate_state(
        2, np.uint64)
    return int(state[0]), int(state[1])


class _BatchBuild:
    """A batch being filled by the workers."""

    def __init__(self, batch: int, net_w: int, net_h: int, truth_size: int):
        self.x = np.empty((batch, 3, net_h, net_w), dtype=np.float32)
        self.truth = np.zeros((batch, truth_size), dtype=np.float32)
        self.remaining = batch
        self.error: Optional[BaseException] = None


class PrefetchLoader(abc.ABC):
    """Worker threads filling batches ahead of use; the machinery shared by the
    detection and classification loaders.

    A subclass sets its own fields, then calls ``_start(...)``, and implements
    ``_sample(batch_index, slot, net_w, net_h) -> (image (3,h,w), truth row)``,
    which must be a pure function of its arguments (and the loader's seed), so
    batch i is the same whatever the thread timing or worker count.

    shard=(first, count): produce only slots first..first+count-1 of each batch of `batch`
    (a data-parallel rank's share; `batch` stays the global batch the slots are numbered in,
    so the shards of all ranks together are the batch one process draws).
    """

    _name = "PrefetchLoader"

    def _start(self, batch: int, net_w: int, net_h: int, truth_size: int, workers: int,
               prefetch: Optional[int], start_batch: int, shard: Optional[Tuple[int, int]] = None) -> None:
        if int(batch) <= 0:
            raise DarknetError(f"{self._name}: batch must be positive, got {batch}")
        first, count = (0, int(batch)) if shard is None else (int(shard[0]), int(shard[1]))
        if count <= 0 or first < 0 or first + count > int(batch):
            raise DarknetError(f"{self._name}: shard {first}..{first + count - 1} is not within a batch of {batch}")
        if int(workers) <= 0:
            raise DarknetError(f"{self._name}: workers must be positive, got {workers}")
        self._check_size(net_w, net_h)
        self.batch = int(batch)
        self.shard_first, self.shard_count = first, count
        self.prefetch = int(prefetch) if prefetch is not None else int(workers) + 1
        if self.prefetch <= 0:
            raise DarknetError(f"{self._name}: prefetch must be positive, got {prefetch}")
        self._truth_size = int(truth_size)
        self._cond = threading.Condition()
        self._net_w, self._net_h = int(net_w), int(net_h)
        self._generation = 0          # bumped by set_size: older results are discarded
        self._consumed = int(start_batch)  # index of the next batch handed out
        self._schedule = (self._consumed, 0)  # next (batch, slot) to give a worker
        self._builds: Dict[int, _BatchBuild] = {}
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"darknet-loader-{i}", daemon=True)
                         for i in range(int(workers))]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------ public

    @property
    def size(self) -> Tuple[int, int]:
        return self._net_w, self._net_h

    @property
    def batch_index(self) -> int:
        """Index of the batch the next call to next_batch returns."""
        return self._consumed

    def set_size(self, w: int, h: int) -> None:
        """Produce every batch not yet handed out at w x h (multi-scale training)."""
        self._check_size(w, h)
        with self._cond:
            if (int(w), int(h)) == (self._net_w, self._net_h):
                return
            self._net_w, self._net_h = int(w), int(h)
            self._generation += 1
            self._builds.clear()
            self._schedule = (self._consumed, 0)
            self._cond.notify_all()

    def next_batch(self) -> Tuple[np.ndarray, np.ndarray]:
        """The next (x, truth) batch; raises the worker's error (naming the file) if one failed."""
        with self._cond:
            index = self._consumed
            while True:
                if self._closed:
                    raise DarknetError(f"{self._name}: the loader is closed")
                build = self._builds.get(index)
                if build is not None and build.error is not None:
                    error = build.error
                    self._builds.pop(index)
                    self._consumed += 1
                    self._cond.notify_all()
                    raise error
                if build is not None and build.remaining == 0:
                    break
                self._cond.wait()
            self._builds.pop(index)
            self._consumed += 1
            self._cond.notify_all()
        return build.x, build.truth

    def __iter__(self):
        return self

    def __next__(self) -> Tuple[np.ndarray, np.ndarray]:
        return self.next_batch()

    def close(self) -> None:
        """Stop the workers and wait for them (in-flight images finish first)."""
        with self._cond:
            self._closed = True
            self._builds.clear()
            self._cond.notify_all()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # best effort; close() is the supported way
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    # ------------------------------------------------------------ workers

    @abc.abstractmethod
    def _sample(self, batch_index: int, slot: int, net_w: int, net_h: int) -> Tuple[np.ndarray, np.ndarray]:
        """One (image, truth) slot; every concrete loader (detection, classification, joint) defines it
        (a loader without it cannot be built: abc refuses the instance)."""

    def _check_size(self, w: int, h: int) -> None:
        if int(w) <= 0 or int(h) <= 0:
            raise DarknetError(f"{self._name}: network size must be positive, got {w}x{h}")

    def _claim(self):
        """Next slot to fill, waiting while the prefetch window is full; None when closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                batch_index, slot = self._schedule
                if batch_index < self._consumed + self.prefetch:
                    break
                self._cond.wait()
            build = self._builds.get(batch_index)
            if build is None:
                build = _BatchBuild(self.shard_count, self._net_w, self._net_h, self._truth_size)
                self._builds[batch_index] = build
            self._schedule = (batch_index, slot + 1) if slot + 1 < self.shard_count else (batch_index + 1, 0)
            return self._generation, batch_index, slot, self._net_w, self._net_h, build

    def _work(self) -> None:
        while True:
            claim = self._claim()
            if claim is None:
                return
            generation, batch_index, slot, net_w, net_h, build = claim
            error = None
            try:
                image, truth = self._sample(batch_index, self.shard_first + slot, net_w, net_h)
            except BaseException as e:  # handed to the consumer, never lost in a thread
                error = e
            with self._cond:
                if generation != self._generation or self._closed:
                    continue
                if error is not None:
                    if build.error is None:
                        build.error = error
                else:
                    build.x[slot] = image
                    build.truth[slot] = truth
                build.remaining -= 1
                if build.remaining == 0 or error is not None:
                    self._cond.notify_all()


class DetectionLoader(PrefetchLoader):
    """Prefetching loader of augmented detection batches.

    Produces ``(x, truth)``: x float32 (batch, 3, net_h, net_w), truth float32
    (batch, max_boxes*5) with rows x, y, w, h, class (zero padded), exactly the
    layout Darknet's region layer reads.

    image_paths: list of image paths (labels found with ``label_path``).
    jitter, hue, saturation, exposure: the [net]/[region] augmentation values.
    jitter_style: "crop" (YOLOv2-era Darknet: sides cut or extended, then resized) or
    "place" (pjreddie master: aspect jitter, shrunk onto grey); [region] jitter_style.
    flip: random left-right flips (Darknet always does them for detection).
    seed: with the same seed, batch i is identical across runs.
    shard: (first slot, count) of each batch this loader produces (see PrefetchLoader).
    workers: background threads; prefetch: batches prepared ahead (default workers+1).
    classes: if given, labels with class >= classes raise.

    Use ``next_batch()`` (or iterate), ``set_size(w, h)`` for multi-scale
    training (batches not yet handed out are rebuilt at the new size), and
    ``close()`` (or a ``with`` block) to stop the threads.
    """

    _name = "DetectionLoader"

    def __init__(self, image_paths: Sequence[str], net_w: int, net_h: int, batch: int, jitter: float = 0.2,
                 hue: float = 0.0, saturation: float = 1.0, exposure: float = 1.0, max_boxes: int = 30,
                 seed: int = 0, workers: int = 2, prefetch: Optional[int] = None, flip: bool = True,
                 classes: Optional[int] = None, start_batch: int = 0, jitter_style: str = "place",
                 shard: Optional[Tuple[int, int]] = None):
        self.image_paths = [os.fspath(p) for p in image_paths]
        if not self.image_paths:
            raise DarknetError("DetectionLoader: the image list is empty")
        if int(max_boxes) <= 0:
            raise DarknetError(f"DetectionLoader: max_boxes must be positive, got {max_boxes}")
        self._check_size(net_w, net_h)
        if not (0 <= float(jitter) < 1):
            raise DarknetError(f"DetectionLoader: jitter must be in [0, 1), got {jitter}")
        if not (0 <= float(hue) <= 1):
            raise DarknetError(f"DetectionLoader: hue must be in [0, 1], got {hue}")
        if float(saturation) <= 0 or float(exposure) <= 0:
            raise DarknetError(f"DetectionLoader: saturation and exposure must be positive, "
                               f"got {saturation} and {exposure}")
        if jitter_style not in ("crop", "place"):
            raise DarknetError(f"DetectionLoader: jitter_style must be 'crop' or 'place', got {jitter_style!r}")
        if jitter_style == "crop" and not float(jitter) < 0.5:
            raise DarknetError(f"DetectionLoader: jitter must be below 0.5 with jitter_style='crop', got {jitter}")
        self.jitter_style = jitter_style
        self.jitter, self.hue = float(jitter), float(hue)
        self.saturation, self.exposure = float(saturation), float(exposure)
        self.max_boxes = int(max_boxes)
        self.seed = int(seed)
        self.flip = bool(flip)
        self.classes = classes
        self._labels: Dict[str, np.ndarray] = {}
        self._start(batch, net_w, net_h, self.max_boxes * 5, workers, prefetch, start_batch, shard)

    # ------------------------------------------------------------ one sample

    def labels_for(self, image_path: str) -> np.ndarray:
        """Label rows of an image (read once, then cached)."""
        labels = self._labels.get(image_path)
        if labels is None:
            labels = read_labels(label_path(image_path), self.classes)
            self._labels[image_path] = labels
        return labels

    def make_sample(self, batch_index: int, slot: int, net_w: int, net_h: int) -> Tuple[np.ndarray, np.ndarray]:
        """The augmented (image, truth) of one slot; a pure function of its arguments and the seed."""
        image_draw, augment_seed = sample_seed(self.seed, batch_index, slot)
        path = self.image_paths[image_draw % len(self.image_paths)]
        image = load_image(path)
        labels = self.labels_for(path)
        try:
            return _core.augment_detection(image, labels, net_w, net_h, self.jitter, self.hue, self.saturation,
                                           self.exposure, self.flip, self.max_boxes, augment_seed,
                                           style=self.jitter_style)
        except DarknetError as e:
            raise DarknetError(f"{path}: {e}") from None

    _sample = make_sample
