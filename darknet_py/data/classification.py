"""Darknet's classification data conventions and a background classifier loader.

* A ``.data`` file with ``classes``, ``train``, ``valid``, ``labels`` (a file
  of label strings, one per line), optional ``names`` (display names, one per
  line, same order), ``top`` (default 5) and ``backup``.
* An image's class is the label whose string appears in the image's path as
  written in the list file (Darknet's ``strstr`` rule in load_labels_paths).
  Darknet silently sets every matching label; here exactly one label must
  match, and ``check_classification_dataset`` reports every image with no or
  several matches (with the candidates) before training starts.
* Truth is one-hot ``(batch, classes)``; for a ``[softmax] tree=`` network it is
  Darknet's ``fill_hierarchy``: the class and all its ancestors are 1, and the
  softmax groups with no label are filled with -1234 (masked in the loss).

``ClassificationLoader`` is Darknet's ``load_data_augment`` in threads: each
batch slot draws an image (with replacement) and an augmentation seed from
(seed, batch index, slot) only, so batch i is identical whatever the thread
timing, worker count or resume point. The augmentation (random scale in
[min_crop, max_crop], aspect, rotation, flip, HSV distortion) runs in C++.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from darknet_py import _core
from darknet_py._core import DarknetError
from darknet_py.image import load_image

from .dataset import _read_text_lines, image_problems_of, _resolve_relative, read_data_cfg, read_names
from .loader import PrefetchLoader, sample_seed

__all__ = [
    "ClassificationData",
    "ClassificationLoader",
    "read_classification_data",
    "read_labels_file",
    "read_image_list",
    "label_of",
    "check_classification_dataset",
    "class_truth",
    "hierarchy_predictions",
]


def read_labels_file(path) -> List[str]:
    """Darknet's labels file: one label string per line (blank lines dropped, duplicates refused)."""
    labels = [line.strip() for line in _read_text_lines(path, "labels file")]
    labels = [label for label in labels if label]
    if not labels:
        raise DarknetError(f"{path}: labels file is empty")
    seen: Dict[str, int] = {}
    for i, label in enumerate(labels):
        if label in seen:
            raise DarknetError(f"{path}: label '{label}' is listed twice (lines {seen[label] + 1} and {i + 1})")
        seen[label] = i
    return labels


def read_image_list(path) -> List[Tuple[str, str]]:
    """(path as written, path to open) for each line of an image list.

    The label rule matches against the path as written (Darknet's strstr on the
    list line), so directories above the dataset never take part; the file is
    opened at the written path if it exists, else relative to the list's directory.
    """
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for raw in _read_text_lines(path, "image list"):
        line = raw.strip()
        if line:
            out.append((line, _resolve_relative(line, base)))
    return out


def _matching_labels(path: str, labels: Sequence[str]) -> List[int]:
    return [i for i, label in enumerate(labels) if label in path]


def label_of(path: str, labels: Sequence[str]) -> int:
    """The class index of an image by Darknet's rule: the one label that is a substring of its path."""
    matches = _matching_labels(path, labels)
    if len(matches) == 1:
        return matches[0]
    raise DarknetError(_label_problem(path, labels, matches))


def _label_problem(path: str, labels: Sequence[str], matches: List[int]) -> str:
    if not matches:
        shown = ", ".join(f"'{label}'" for label in labels[:20]) + (" ..." if len(labels) > 20 else "")
        return f"{path}: no label appears in the path (labels: {shown})"
    cands = ", ".join(f"'{labels[i]}'" for i in matches)
    return f"{path}: ambiguous class, {len(matches)} labels appear in the path: {cands}"


def check_classification_dataset(entries: Sequence[Tuple[str, str]], labels: Sequence[str],
                                 check_images: Union[bool, str] = True, raise_on_error: bool = True,
                                 max_listed: int = 200) -> Tuple[np.ndarray, List[str]]:
    """Class of every image by the path rule, checking ALL images before training.

    entries: (path as written, path to open) pairs from read_image_list.
    Returns (class index per image, problems). With raise_on_error one
    DarknetError lists every problem (no match, several matches with the
    candidates, missing or unreadable images).
    """
    problems: List[str] = []
    classes = np.full(len(entries), -1, dtype=np.int64)
    if not entries:
        problems.append("the image list is empty")
    # Decoded fully (threaded): a truncated JPEG is found here, not mid-training.
    image_problems = image_problems_of([actual for _, actual in entries], check_images)
    for i, (written, actual) in enumerate(entries):
        matches = _matching_labels(written, labels)
        if len(matches) == 1:
            classes[i] = matches[0]
        else:
            problems.append(_label_problem(written, labels, matches))
        if image_problems[i]:
            problems.append(image_problems[i])
    if problems and raise_on_error:
        listed = problems[:max_listed]
        more = len(problems) - len(listed)
        tail = f"\n  ... and {more} more" if more else ""
        raise DarknetError(f"classification dataset check found {len(problems)} problem(s) in {len(entries)} "
                           f"image(s):\n  " + "\n  ".join(listed) + tail)
    return classes, problems


@dataclass
class ClassificationData:
    """A classification .data file resolved: labels, names, image lists with their classes."""

    path: str
    classes: int
    labels: List[str]
    names: List[str]
    top: int
    train: List[str]
    train_classes: np.ndarray
    valid: List[str]
    valid_classes: np.ndarray
    backup: Optional[str]


def read_classification_data(path, splits: Sequence[str] = ("train", "valid"), check_images: bool = True
                             ) -> ClassificationData:
    """Read and check a classification .data file (every listed image is checked up front)."""
    cfg = read_data_cfg(path)
    if "labels" not in cfg:
        raise DarknetError(f"{path}: no 'labels' entry (a file with one class label per line)")
    labels = read_labels_file(cfg.resolve("labels"))
    classes = int(cfg.get("classes", len(labels)))
    if classes != len(labels):
        raise DarknetError(f"{path}: classes={classes} but {cfg['labels']} lists {len(labels)} labels")
    names = read_names(cfg.resolve("names")) if "names" in cfg else list(labels)
    if len(names) < classes:
        raise DarknetError(f"{path}: names file {cfg['names']} has {len(names)} names, need {classes}")
    try:
        top = int(cfg.get("top", 5))
    except ValueError:
        raise DarknetError(f"{path}: top must be an integer, got '{cfg['top']}'") from None
    lists: Dict[str, Tuple[List[str], np.ndarray]] = {}
    problems: List[str] = []
    for split in splits:
        if split not in cfg:
            raise DarknetError(f"{path}: no '{split}' list")
        entries = read_image_list(cfg.resolve(split))
        cls, found = check_classification_dataset(entries, labels, check_images=check_images, raise_on_error=False)
        problems += [f"[{split}] {p}" for p in found]
        lists[split] = ([actual for _, actual in entries], cls)
    if problems:
        listed = problems[:200]
        tail = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        raise DarknetError(f"{path}: classification dataset check found {len(problems)} problem(s):\n  "
                           + "\n  ".join(listed) + tail)
    empty = ([], np.zeros(0, np.int64))
    return ClassificationData(str(path), classes, labels, names[:classes], top, *lists.get("train", empty),
                              *lists.get("valid", empty), cfg.get("backup"))


def class_truth(class_ids: Sequence[int], outputs: int, tree=None) -> np.ndarray:
    """Truth rows (batch, outputs): one-hot, or Darknet's fill_hierarchy for a WordTree softmax."""
    class_ids = np.asarray(class_ids, dtype=np.int64)
    truth = np.zeros((len(class_ids), outputs), dtype=np.float32)
    if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= outputs):
        raise DarknetError(f"class index out of range [0, {outputs}): {class_ids.min()}..{class_ids.max()}")
    truth[np.arange(len(class_ids)), class_ids] = 1
    if tree is not None:
        truth = _core.fill_hierarchy(truth, tree)
    return truth


def hierarchy_predictions(probs: np.ndarray, tree, only_leaves: bool = True) -> np.ndarray:
    """Darknet's hierarchy_predictions (the core's, as detection decoding uses it) on rows of
    conditional probabilities: each node's times its parent's absolute probability; non-leaves
    zeroed with only_leaves. Returns a new float32 array."""
    return _core.hierarchy_predictions(np.asarray(probs, dtype=np.float32), tree, bool(only_leaves))


class ClassificationLoader(PrefetchLoader):
    """Background classification batches: (x (batch, 3, h, w), truth (batch, outputs)).

    train=True: Darknet's load_data_augment (images drawn at random with
    replacement, random crop/aspect/rotation/flip/HSV). train=False: the
    validation input (resize_min + centred crop) of images in list order,
    cycling, no randomness. Batch i depends only on (seed, i). set_size scales
    the crop range with the width.
    """

    _name = "ClassificationLoader"

    def __init__(self, image_paths: Sequence[str], class_ids: Sequence[int], net_w: int, net_h: int, batch: int,
                 outputs: Optional[int] = None, *, tree=None, train: bool = True, min_crop: Optional[int] = None,
                 max_crop: Optional[int] = None, angle: float = 0.0, aspect: float = 1.0, hue: float = 0.0,
                 saturation: float = 1.0, exposure: float = 1.0, flip: bool = True, center: bool = False,
                 seed: int = 0, workers: int = 2, start_batch: int = 0, prefetch: Optional[int] = None,
                 shard: Optional[Tuple[int, int]] = None):
        self.image_paths = [os.fspath(p) for p in image_paths]
        self.class_ids = np.asarray(class_ids, dtype=np.int64)
        if not self.image_paths:
            raise DarknetError("ClassificationLoader: the image list is empty")
        if len(self.class_ids) != len(self.image_paths):
            raise DarknetError(f"ClassificationLoader: {len(self.image_paths)} images but {len(self.class_ids)} classes")
        self.outputs = int(outputs if outputs is not None else (tree.n if tree is not None else self.class_ids.max() + 1))
        if self.class_ids.min() < 0 or self.class_ids.max() >= self.outputs:
            raise DarknetError(f"ClassificationLoader: class ids must be in [0, {self.outputs})")
        self.tree = tree
        self.train = bool(train)
        self._base_w = int(net_w)
        self._min_crop = int(min_crop) if min_crop else int(net_w)
        self._max_crop = int(max_crop) if max_crop else 2 * int(net_w)
        self.angle, self.aspect = float(angle), float(aspect)
        self.hue, self.saturation, self.exposure = float(hue), float(saturation), float(exposure)
        self.flip, self.center = bool(flip), bool(center)
        self.seed = int(seed)
        self._start(batch, net_w, net_h, self.outputs, workers, prefetch, start_batch, shard)

    # ------------------------------------------------------------ public
    @property
    def crop_range(self) -> Tuple[int, int]:
        """(min_crop, max_crop) at the current size: the cfg's range scaled with the width."""
        ratio = self._net_w / self._base_w
        return max(1, round(self._min_crop * ratio)), max(1, round(self._max_crop * ratio))

    # ------------------------------------------------------------ one sample
    def pick(self, batch_index: int, slot: int) -> Tuple[int, int]:
        """(image index, augmentation seed) of one slot."""
        draw, augment_seed = sample_seed(self.seed, batch_index, slot)
        if self.train:
            return draw % len(self.image_paths), augment_seed
        return (batch_index * self.batch + slot) % len(self.image_paths), augment_seed

    def make_sample(self, batch_index: int, slot: int, net_w: int, net_h: int) -> Tuple[np.ndarray, int]:
        index, augment_seed = self.pick(batch_index, slot)
        path = self.image_paths[index]
        try:
            image = load_image(path)
            if self.train:
                ratio = net_w / self._base_w
                lo, hi = max(1, round(self._min_crop * ratio)), max(1, round(self._max_crop * ratio))
                x = _core.augment_classifier(image, net_w, net_h, lo, hi, self.angle, self.aspect, self.hue,
                                             self.saturation, self.exposure, self.flip, self.center, augment_seed)
            else:
                x = _core.classifier_valid_image(image, net_w, net_h)
        except DarknetError as e:
            raise DarknetError(f"{path}: {e}") from None
        return x, int(self.class_ids[index])

    def _sample(self, batch_index: int, slot: int, net_w: int, net_h: int) -> Tuple[np.ndarray, np.ndarray]:
        image, cls = self.make_sample(batch_index, slot, net_w, net_h)
        return image, class_truth([cls], self.outputs, self.tree)[0]
