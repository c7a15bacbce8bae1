"""Joint detection + classification data (YOLO9000's "Stronger"): detection images with
boxes and classification images with one WordTree label and no box, mixed in every batch.

A joint ``.data`` file is a detection ``.data`` file with four more keys::

    classes = 12                       # WordTree nodes (the [region] layer's classes=)
    tree = shapes.tree                 # the WordTree (the same file as the region's tree=)
    train = detection.list             # detection images; labels/*.txt rows 'class x y w h'
    classification = classification.list   # classification-only images, no label files
    labels = classification.labels     # label strings: an image's label is the one in its path
    map = classification.map           # optional: line i = the tree node of label i
    classification_fraction = 0.25     # share of every batch's images that are classification-only
    names, valid, backup               # as for detection

Detection label classes are tree nodes, or go through the [region] layer's ``map=`` when it
has one (as COCO classes through coco9k.map). A classification label is a tree node by
``map`` (Darknet's .map format, one integer per line), else by its name in the tree.

A classification image is augmented as a detection image with no boxes (same jitter, flip
and colour) and its truth is Darknet's classification-only marker: one row
``CLASSIFICATION_ONLY_COORD, CLASSIFICATION_ONLY_COORD, 1, 1, node``. The region layer
(csrc/layers/region.cpp, Darknet's CUDA path) recognises it by both centre coordinates above
100000: it trains only the class (the node and its ancestors) at the prediction most
confident about that class, and no box.

Which slots of a batch are classification-only is a pure function of the global image index
(batch index * batch + slot): slot g is one when floor((g+1)*f) > floor(g*f), so the share is
exact over a run, evenly spread through each batch and its subdivisions, and a resumed run
draws the same batches.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from darknet_py import _core
from darknet_py._core import DarknetError
from darknet_py.image import load_image

from .classification import _label_problem, _matching_labels
from .dataset import _image_problem, _read_text_lines, _resolve_relative, read_data_cfg, read_list, read_names
from .dataset import validate_dataset
from .loader import DetectionLoader, sample_seed

__all__ = ["CLASSIFICATION_ONLY_COORD", "JointData", "JointLoader", "is_joint_data", "read_joint_data",
           "classification_truth", "is_classification_slot"]

# Darknet's classification-only truth: x and y far outside the image (the region layer
# tests x > 100000 and y > 100000; Darknet's own data use 999999).
CLASSIFICATION_ONLY_COORD = 999999.0
JOINT_KEYS = ("tree", "train", "classification", "labels", "classification_fraction")


def is_joint_data(data_cfg) -> bool:
    """A .data file is joint when it names a classification list."""
    return "classification" in data_cfg


def classification_truth(node: int, max_boxes: int) -> np.ndarray:
    """The truth row of a classification-only image: the marker box labelled with `node`."""
    truth = np.zeros(max_boxes * 5, dtype=np.float32)
    truth[:5] = (CLASSIFICATION_ONLY_COORD, CLASSIFICATION_ONLY_COORD, 1.0, 1.0, float(node))
    return truth


def is_classification_slot(global_index: int, fraction: float) -> bool:
    return math.floor((global_index + 1) * fraction) > math.floor(global_index * fraction)


@dataclass
class JointData:
    """A joint .data file resolved and checked."""

    path: str
    classes: int                      # tree nodes
    tree: object                      # _core.WordTree
    tree_path: str
    names: List[str]
    detection: List[str]              # detection image paths
    classification: List[str]         # classification image paths
    classification_nodes: np.ndarray  # tree node of each classification image
    classification_fraction: float
    labels: List[str]
    label_nodes: List[int]            # tree node of each label
    backup: Optional[str]


def _numbered_lines(path: str, what: str) -> List[Tuple[int, str]]:
    return [(n, line.strip()) for n, line in enumerate(_read_text_lines(path, what), start=1) if line.strip()]


def _fraction(cfg) -> float:
    text = str(cfg["classification_fraction"])
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise DarknetError(f"{cfg.where('classification_fraction')}: classification_fraction must be a number in "
                           f"(0, 1) (the share of every batch's images that are classification-only), got '{text}'")
    return value


def _label_nodes(cfg, labels_path: str, tree) -> Tuple[List[str], List[int]]:
    """The labels and the tree node of each: by the map file, else by name in the tree."""
    numbered = _numbered_lines(labels_path, "labels file")
    if not numbered:
        raise DarknetError(f"{labels_path}: labels file is empty")
    labels = [label for _, label in numbered]
    first_line = {}
    for number, label in numbered:
        if label in first_line:
            raise DarknetError(f"{labels_path}:{number}: label '{label}' is listed twice (first at line "
                               f"{first_line[label]})")
        first_line[label] = number
    if "map" in cfg:
        map_path = cfg.resolve("map")
        nodes = list(_core.read_map(map_path))  # file:line for a malformed line
        if len(nodes) != len(labels):
            raise DarknetError(f"{map_path}: {len(nodes)} entries but {labels_path} lists {len(labels)} labels "
                               f"(line i of the map is the tree node of label i)")
        for i, node in enumerate(nodes):
            if not 0 <= node < tree.n:
                raise DarknetError(f"{map_path}:{i + 1}: tree node {node} (label '{labels[i]}') outside "
                                   f"0..{tree.n - 1} of {tree.file}")
        return labels, nodes
    index = {name: i for i, name in enumerate(tree.names)}
    nodes = []
    for number, label in numbered:
        if label not in index:
            raise DarknetError(f"{labels_path}:{number}: label '{label}' is not a node of {tree.file} "
                               f"(name a tree node, or give 'map =' with the node of each label)")
        nodes.append(index[label])
    return labels, nodes


def _classification_images(list_path: str, labels: Sequence[str], label_nodes: Sequence[int],
                            check_images: bool) -> Tuple[List[str], np.ndarray, List[str]]:
    """(paths to open, tree node per image, problems as 'list:line: ...')."""
    base = os.path.dirname(os.path.abspath(list_path))
    paths, nodes, problems = [], [], []
    entries = _numbered_lines(list_path, "image list")
    if not entries:
        problems.append(f"{list_path}: the classification list is empty")
    for number, written in entries:
        where = f"{list_path}:{number}"
        matches = _matching_labels(written, labels)  # Darknet's label-in-path rule, on the path as written
        if len(matches) != 1:
            problems.append(f"{where}: {_label_problem(written, labels, matches)}")
            continue
        actual = _resolve_relative(written, base)
        if check_images:
            problem = _image_problem(actual, decode=False)
            if problem:
                problems.append(f"{where}: {problem}")
                continue
        paths.append(actual)
        nodes.append(label_nodes[matches[0]])
    return paths, np.asarray(nodes, dtype=np.int64), problems


def read_joint_data(path, detection_classes: Optional[int] = None, check_images: bool = True) -> JointData:
    """Read a joint .data file and check everything before training: the tree, labels, map,
    every classification image's label and every detection label file. Structural problems
    (a missing key, a bad tree/labels/map file) raise at once; image and label problems are
    collected and raised together, each with file:line.

    detection_classes: the bound of detection label classes (the length of the region
    layer's map= when it has one); default the tree's node count.
    """
    cfg = read_data_cfg(path)
    missing = [key for key in JOINT_KEYS if key not in cfg]
    if missing:
        raise DarknetError(f"{path}: a joint .data file needs {', '.join(repr(k) for k in missing)} "
                           f"(keys: {', '.join(JOINT_KEYS)}, optional map)")
    tree_path = cfg.resolve("tree")
    tree = _core.WordTree.read(tree_path)  # file:line for a malformed tree
    classes = int(cfg.get("classes", tree.n))
    if classes != tree.n:
        raise DarknetError(f"{cfg.where('classes')}: classes={classes} but {tree_path} has {tree.n} nodes")
    fraction = _fraction(cfg)
    labels, label_nodes = _label_nodes(cfg, cfg.resolve("labels"), tree)
    names = read_names(cfg.resolve("names")) if "names" in cfg else list(tree.names)
    if len(names) < classes:
        raise DarknetError(f"{cfg.where('names')}: {cfg['names']} has {len(names)} names, the tree has {classes} "
                           f"nodes")

    classification, nodes, problems = _classification_images(cfg.resolve("classification"), labels, label_nodes,
                                                              check_images)
    detection = read_list(cfg.resolve("train"))
    report = validate_dataset(detection, int(detection_classes or classes), check_images=check_images,
                              raise_on_error=False)
    problems += report.problems
    if problems:
        listed = problems[:200]
        tail = f"\n  ... and {len(problems) - 200} more" if len(problems) > 200 else ""
        raise DarknetError(f"{path}: joint dataset check found {len(problems)} problem(s):\n  " + "\n  ".join(listed)
                           + tail)
    return JointData(str(path), classes, tree, tree_path, names[:classes], detection, classification, nodes,
                     fraction, labels, label_nodes, cfg.get("backup"))


class JointLoader(DetectionLoader):
    """Prefetching loader of mixed batches: detection images (augmented as DetectionLoader
    does, with their boxes) and, at `classification_fraction` of the slots, classification
    images (the same augmentation, no boxes) whose truth is the classification-only marker
    labelled with their tree node. Batch i depends only on (seed, i), like the other loaders.
    Every DetectionLoader option applies to both kinds of image.
    """

    _name = "JointLoader"

    def __init__(self, detection_paths: Sequence[str], classification_paths: Sequence[str],
                 classification_nodes: Sequence[int], classification_fraction: float, net_w: int, net_h: int,
                 batch: int, **detection_options):
        self.classification_paths = [os.fspath(p) for p in classification_paths]
        self.classification_nodes = np.asarray(classification_nodes, dtype=np.int64)
        self.classification_fraction = float(classification_fraction)
        if not 0 < self.classification_fraction < 1:
            raise DarknetError(f"JointLoader: classification_fraction must be in (0, 1), got {classification_fraction}")
        if not self.classification_paths:
            raise DarknetError("JointLoader: the classification image list is empty")
        if len(self.classification_nodes) != len(self.classification_paths):
            raise DarknetError(f"JointLoader: {len(self.classification_paths)} classification images but "
                               f"{len(self.classification_nodes)} nodes")
        super().__init__(detection_paths, net_w, net_h, batch, **detection_options)

    def is_classification(self, batch_index: int, slot: int) -> bool:
        return is_classification_slot(batch_index * self.batch + slot, self.classification_fraction)

    def make_sample(self, batch_index: int, slot: int, net_w: int, net_h: int) -> Tuple[np.ndarray, np.ndarray]:
        if not self.is_classification(batch_index, slot):
            return DetectionLoader.make_sample(self, batch_index, slot, net_w, net_h)
        image_draw, augment_seed = sample_seed(self.seed, batch_index, slot)
        index = image_draw % len(self.classification_paths)
        path = self.classification_paths[index]
        no_boxes = np.zeros((0, 5), dtype=np.float32)
        try:
            x, _ = _core.augment_detection(load_image(path), no_boxes, net_w, net_h, self.jitter, self.hue,
                                           self.saturation, self.exposure, self.flip, self.max_boxes, augment_seed,
                                           style=self.jitter_style)
        except DarknetError as e:
            raise DarknetError(f"{path}: {e}") from None
        return x, classification_truth(int(self.classification_nodes[index]), self.max_boxes)

    _sample = make_sample
