"""A built-in synthetic classification dataset in Darknet's on-disk format.

One filled shape per image (circle, square, triangle, cross, star: the five
classes of ``synthetic.py``), at a random size, position and small rotation,
on the same textured backgrounds. With probability ``color_cue`` the shape has
its class's base colour, otherwise a random hue, so colour alone is not enough
and the network has to learn the outlines.

Layout written under ``root`` (the class is the directory name, which is how
Darknet's classifier finds it: the label that appears in the path)::

    images/train/star/000012.png ...   images/valid/circle/000003.png ...
    train.list  valid.list  labels.txt  shapes.names  shapes.data  backup/

List files hold paths relative to ``root`` (resolved against the list's
directory), so directory names above the dataset never take part in the
label-in-path rule. Every image depends only on (seed, split, index).
"""
from __future__ import annotations

import colorsys
import os
from typing import Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from darknet_py._core import DarknetError

from .synthetic import SYNTHETIC_CLASSES, _background, _class_color, _shape_points

__all__ = ["SYNTHETIC_CLASSES", "generate_classes", "make_class_image"]

_SPLIT_IDS = {"train": 0, "valid": 1}


def make_class_image(rng: np.random.Generator, class_id: int, w: int, h: int, color_cue: float = 0.5) -> Image.Image:
    """One image with a single shape of class `class_id`."""
    img = _background(rng, w, h)
    draw = ImageDraw.Draw(img)
    side = min(w, h)
    name = SYNTHETIC_CLASSES[class_id]
    radius = rng.uniform(0.2, 0.38) * side
    cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
    if rng.uniform() < color_cue:
        color = _class_color(class_id, rng)
    else:
        r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
        color = (int(r * 255), int(g * 255), int(b * 255))
    outline = tuple(int(c * 0.6) for c in color)
    if name == "circle":
        rx, ry = radius * rng.uniform(0.85, 1.0), radius * rng.uniform(0.85, 1.0)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=color, outline=outline, width=2)
    else:
        polygon = _shape_points(name, rng) * radius + (cx, cy)
        draw.polygon([tuple(p) for p in polygon], fill=color, outline=outline)
    return img


def generate_classes(root: Union[str, os.PathLike], n_train: int = 500, n_valid: int = 100,
                     size: Tuple[int, int] = (96, 96), seed: int = 0, color_cue: float = 0.5) -> str:
    """Write the dataset under root and return the path of its ``.data`` file.

    Classes cycle through the five shapes (balanced splits).
    """
    n_train, n_valid = int(n_train), int(n_valid)
    if n_train < 0 or n_valid < 0 or n_train + n_valid == 0:
        raise DarknetError(f"synthetic_classes.generate_classes: need a positive number of images, got "
                           f"n_train={n_train}, n_valid={n_valid}")
    w, h = (int(v) for v in size)
    if w < 16 or h < 16:
        raise DarknetError(f"synthetic_classes.generate_classes: images must be at least 16x16, got {w}x{h}")
    if not 0 <= color_cue <= 1:
        raise DarknetError(f"synthetic_classes.generate_classes: color_cue must be in [0, 1], got {color_cue}")
    root = os.path.abspath(os.fspath(root))
    os.makedirs(os.path.join(root, "backup"), exist_ok=True)
    for split, count in (("train", n_train), ("valid", n_valid)):
        rel_paths = []
        for index in range(count):
            class_id = index % len(SYNTHETIC_CLASSES)
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _SPLIT_IDS[split], index, 0xC1A55])
            img = make_class_image(rng, class_id, w, h, color_cue)
            rel = os.path.join("images", split, SYNTHETIC_CLASSES[class_id], f"{index:06d}.png")
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            img.save(os.path.join(root, rel))
            rel_paths.append(rel)
        with open(os.path.join(root, f"{split}.list"), "w") as f:
            f.write("".join(p + "\n" for p in rel_paths))
    labels_path = os.path.join(root, "labels.txt")
    with open(labels_path, "w") as f:
        f.write("".join(name + "\n" for name in SYNTHETIC_CLASSES))
    names_path = os.path.join(root, "shapes.names")
    with open(names_path, "w") as f:
        f.write("".join(name + "\n" for name in SYNTHETIC_CLASSES))
    data_path = os.path.join(root, "shapes.data")
    with open(data_path, "w") as f:
        f.write(f"classes = {len(SYNTHETIC_CLASSES)}\n"
                f"train = {os.path.join(root, 'train.list')}\n"
                f"valid = {os.path.join(root, 'valid.list')}\n"
                f"labels = {labels_path}\n"
                f"names = {names_path}\n"
                f"backup = {os.path.join(root, 'backup')}\n"
                f"top = 2\n")
    return data_path
