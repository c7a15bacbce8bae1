"""A synthetic joint dataset for YOLO9000-style training: a WordTree whose coarse classes are
shapes and whose fine classes are colour variants of each shape.

    circle, square, triangle                       (roots: one softmax group)
    red_circle, green_circle, blue_circle          (children of circle: a group), ...

* Detection images (boxes): every shape is labelled with its fine class when its colour is
  one of ``box_colours`` (default red), else with its coarse class (the shape): the
  detector sees boxes for the shapes and for red variants only.
* Classification images (no box, one shape each): the fine classes *without* boxes
  (green_*, blue_*), found by the label-in-path rule (``images/classification/<label>/``).
* Validation images: labelled with every object's fine class (``labels`` dir), to score
  the fine classes never seen with a box against those seen with one.

Written under ``root``: ``shapes.tree``, ``shapes.names``, ``classification.labels``,
``detection.list``, ``classification.list``, ``valid.list``, ``joint.data`` (the joint
.data file), ``detection.data`` (the same detection images alone: the baseline) and
``backup/``. Every image depends only on (seed, kind, index).
"""
from __future__ import annotations

import colorsys
import os
from typing import List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from darknet_py._core import DarknetError

from .synthetic import _background, draw_shape, label_row, place_shape

__all__ = ["JOINT_SHAPES", "JOINT_COLOURS", "tree_nodes", "fine_node", "generate_joint"]

JOINT_SHAPES = ("circle", "square", "triangle")
JOINT_COLOURS = ("red", "green", "blue")
_COLOUR_HUES = {"red": 0.0, "green": 0.33, "blue": 0.62}
_KIND_IDS = {"detection": 0, "classification": 1, "valid": 2}


def tree_nodes() -> List[Tuple[str, int]]:
    """(name, parent) of every node, in .tree order: the shapes, then each shape's colours."""
    nodes = [(shape, -1) for shape in JOINT_SHAPES]
    for s, shape in enumerate(JOINT_SHAPES):
        nodes += [(f"{colour}_{shape}", s) for colour in JOINT_COLOURS]
    return nodes


def fine_node(shape: int, colour: int) -> int:
    return len(JOINT_SHAPES) + shape * len(JOINT_COLOURS) + colour


def _colour(name: str, rng: np.random.Generator) -> Tuple[int, int, int]:
    hue = (_COLOUR_HUES[name] + rng.uniform(-0.03, 0.03)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 1.0), rng.uniform(0.65, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _scene(rng: np.random.Generator, w: int, h: int, max_objects: int,
           radius_range=(0.12, 0.3)) -> Tuple[Image.Image, List[Tuple[int, int, tuple]]]:
    """An image of 1..max_objects shapes: (image, [(shape, colour, relative box)])."""
    img = _background(rng, w, h)
    draw = ImageDraw.Draw(img)
    boxes, objects = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        shape, colour = int(rng.integers(len(JOINT_SHAPES))), int(rng.integers(len(JOINT_COLOURS)))
        placed = place_shape(rng, JOINT_SHAPES[shape], w, h, boxes, 0.1, radius_range)
        if placed is None:
            continue
        box, polygon = placed
        draw_shape(draw, box, polygon, _colour(JOINT_COLOURS[colour], rng))
        boxes.append(box)
        objects.append((shape, colour, label_row(box, w, h)))
    return img, objects


def _write_labels(path: str, rows: Sequence[Tuple[int, tuple]]) -> None:
    with open(path, "w") as f:
        f.write("".join(f"{node} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for node, (x, y, bw, bh) in rows))


def generate_joint(root: Union[str, os.PathLike], n_detection: int = 300, n_classification: int = 300,
                   n_valid: int = 100, size: Tuple[int, int] = (128, 128), seed: int = 0,
                   box_colours: Sequence[str] = ("red",), classification_fraction: float = 0.25) -> str:
    """Write the dataset under root and return the path of its joint .data file."""
    counts = (int(n_detection), int(n_classification), int(n_valid))
    if min(counts) <= 0:
        raise DarknetError(f"synthetic_joint.generate_joint: need positive image counts, got {counts}")
    unknown = [c for c in box_colours if c not in JOINT_COLOURS]
    if unknown or len(set(box_colours)) >= len(JOINT_COLOURS):
        raise DarknetError(f"synthetic_joint.generate_joint: box_colours must be a proper subset of "
                           f"{JOINT_COLOURS}, got {tuple(box_colours)}")
    w, h = (int(v) for v in size)
    root = os.path.abspath(os.fspath(root))
    for sub in ("images", "labels", "backup"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    boxed = {JOINT_COLOURS.index(c) for c in box_colours}
    nodes = tree_nodes()

    def rng_for(kind: str, index: int) -> np.random.Generator:
        return np.random.default_rng([int(seed) & 0xFFFFFFFF, _KIND_IDS[kind], index, 0x9000])

    lists = {}
    for kind, count in (("detection", counts[0]), ("valid", counts[2])):
        paths = []
        for index in range(count):
            img, objects = _scene(rng_for(kind, index), w, h, max_objects=3)
            stem = f"{kind}_{index:06d}"
            image_path = os.path.join(root, "images", stem + ".jpg")
            img.save(image_path, quality=92)
            if kind == "valid":  # the truth to score: every object's fine class
                rows = [(fine_node(s, c), box) for s, c, box in objects]
            else:  # boxes name the shape, or the fine class for the boxed colours
                rows = [(fine_node(s, c) if c in boxed else s, box) for s, c, box in objects]
            _write_labels(os.path.join(root, "labels", stem + ".txt"), rows)
            paths.append(image_path)
        lists[kind] = paths

    unboxed = [fine_node(s, c) for s in range(len(JOINT_SHAPES)) for c in range(len(JOINT_COLOURS))
               if c not in boxed]
    classification = []
    for index in range(counts[1]):
        node = unboxed[index % len(unboxed)]
        rng = rng_for("classification", index)
        img = _background(rng, w, h)
        shape, colour = nodes[node][1], JOINT_COLOURS[(node - len(JOINT_SHAPES)) % len(JOINT_COLOURS)]
        box, polygon = place_shape(rng, JOINT_SHAPES[shape], w, h, [], 1.0, (0.2, 0.38))
        draw_shape(ImageDraw.Draw(img), box, polygon, _colour(colour, rng))
        rel = os.path.join("images", "classification", nodes[node][0], f"{index:06d}.png")
        os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
        img.save(os.path.join(root, rel))
        classification.append(rel)

    def write(name: str, lines: Sequence[str]) -> str:
        path = os.path.join(root, name)
        with open(path, "w") as f:
            f.write("".join(f"{line}\n" for line in lines))
        return path

    tree = write("shapes.tree", [f"{name} {parent}" for name, parent in nodes])
    names = write("shapes.names", [name for name, _ in nodes])
    labels = write("classification.labels", [nodes[n][0] for n in unboxed])
    detection_list = write("detection.list", lists["detection"])
    valid_list = write("valid.list", lists["valid"])
    classification_list = write("classification.list", classification)  # relative to root
    backup = os.path.join(root, "backup")
    common = [f"classes = {len(nodes)}", f"names = {names}", f"valid = {valid_list}", f"backup = {backup}"]
    write("detection.data", [f"train = {detection_list}"] + common)
    return write("joint.data", [f"train = {detection_list}"] + common +
                 [f"tree = {tree}", f"classification = {classification_list}", f"labels = {labels}",
                  f"classification_fraction = {classification_fraction}"])
