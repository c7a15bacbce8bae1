"""A built-in synthetic detection dataset in Darknet's on-disk format.

Five classes of filled shapes (circle, square, triangle, cross, star), each
with its own base colour (hue, saturation and brightness jittered), at several
sizes and small rotations, on smooth textured noisy backgrounds, sometimes
overlapping a little. Small enough to learn in minutes at 160-224 px.

Layout written under ``root``::

    images/train_000000.jpg ...   labels/train_000000.txt ...
    train.txt  valid.txt  synthetic.names  synthetic.data  backup/

Every image depends only on (seed, split, index): changing n_train does not
change the validation images.
"""
from __future__ import annotations

import colorsys
import math
import os
from typing import List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from darknet_py._core import DarknetError

__all__ = ["SYNTHETIC_CLASSES", "generate", "make_image"]

SYNTHETIC_CLASSES = ("circle", "square", "triangle", "cross", "star")
# Base hue per class (0-1): red, green, blue, yellow, magenta.
_CLASS_HUES = (0.0, 0.33, 0.62, 0.15, 0.83)
_SPLIT_IDS = {"train": 0, "valid": 1}


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Smooth random colour field + a few faint strokes + pixel noise (greyish, so shapes stand out)."""
    coarse = rng.uniform(70, 190, size=(rng.integers(3, 7), rng.integers(3, 7), 3))
    grey = coarse.mean(axis=2, keepdims=True)
    coarse = grey + 0.35 * (coarse - grey)  # desaturate the background
    field = Image.fromarray(coarse.astype(np.uint8), "RGB").resize((w, h), Image.BICUBIC)
    draw = ImageDraw.Draw(field)
    for _ in range(int(rng.integers(0, 5))):
        level = int(rng.integers(60, 200))
        points = [tuple(rng.uniform(0, [w, h])) for _ in range(2)]
        draw.line(points, fill=(level, level, level), width=int(rng.integers(1, 4)))
    pixels = np.asarray(field, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(3, 12), size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape_points(name: str, rng: np.random.Generator) -> np.ndarray:
    """Outline of a unit-size shape centred on 0 (polygon shapes only)."""
    if name == "square":
        pts = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
        pts[:, 0] *= rng.uniform(0.8, 1.0)
    elif name == "triangle":
        pts = np.array([[0, -1], [1, 0.8], [-1, 0.8]], dtype=np.float64)
    elif name == "cross":
        t = rng.uniform(0.25, 0.4)
        pts = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1], [-t, t], [-1, t],
                        [-1, -t], [-t, -t]], dtype=np.float64)
    elif name == "star":
        inner = rng.uniform(0.38, 0.5)
        angles = -math.pi / 2 + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    else:  # pragma: no cover - guarded by the caller
        raise DarknetError(f"unknown shape '{name}'")
    return _rotate(pts, rng.uniform(-0.35, 0.35))


def _class_color(class_id: int, rng: np.random.Generator) -> Tuple[int, int, int]:
    hue = (_CLASS_HUES[class_id] + rng.uniform(-0.04, 0.04)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two (left, top, right, bottom) boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def place_shape(rng: np.random.Generator, name: str, w: int, h: int, boxes: Sequence[Sequence[float]],
                max_overlap: float, radius_range: Tuple[float, float] = (0.07, 0.25), attempts: int = 20):
    """Size, place and outline a shape that overlaps the `boxes` already placed by at most
    `max_overlap` IoU: ((left, top, right, bottom), polygon or None for a circle), or None when
    there is no room after `attempts` tries."""
    side = min(w, h)
    for _attempt in range(attempts):
        radius = rng.uniform(*radius_range) * side
        cx, cy = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
        if name == "circle":
            rx, ry = radius * rng.uniform(0.85, 1.0), radius * rng.uniform(0.85, 1.0)
            box = (cx - rx, cy - ry, cx + rx, cy + ry)
            polygon = None
        else:
            polygon = _shape_points(name, rng) * radius + (cx, cy)
            box = (polygon[:, 0].min(), polygon[:, 1].min(), polygon[:, 0].max(), polygon[:, 1].max())
        box = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], w - 1.0), min(box[3], h - 1.0))
        if all(_iou(box, other) <= max_overlap for other in boxes):
            return box, polygon
    return None


def draw_shape(draw: ImageDraw.ImageDraw, box, polygon, color: Tuple[int, int, int]) -> None:
    outline = tuple(int(c * 0.6) for c in color)
    if polygon is None:
        draw.ellipse(box, fill=color, outline=outline, width=2)
    else:
        draw.polygon([tuple(p) for p in polygon], fill=color, outline=outline)


def label_row(box, w: int, h: int) -> Tuple[float, float, float, float]:
    """Darknet's relative (x, y, w, h) of a (left, top, right, bottom) pixel box."""
    left, top, right, bottom = box
    return (left + right) / 2 / w, (top + bottom) / 2 / h, (right - left) / w, (bottom - top) / h


def make_image(rng: np.random.Generator, w: int, h: int, max_objects: int = 4,
               max_overlap: float = 0.15) -> Tuple[Image.Image, List[Tuple[int, float, float, float, float]]]:
    """One synthetic image and its Darknet label rows (class, x, y, w, h; relative)."""
    img = _background(rng, w, h)
    draw = ImageDraw.Draw(img)
    boxes: List[Tuple[float, float, float, float]] = []
    labels = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        class_id = int(rng.integers(0, len(SYNTHETIC_CLASSES)))
        placed = place_shape(rng, SYNTHETIC_CLASSES[class_id], w, h, boxes, max_overlap)
        if placed is None:
            continue  # no room left for this object
        box, polygon = placed
        draw_shape(draw, box, polygon, _class_color(class_id, rng))
        boxes.append(box)
        labels.append((class_id, *label_row(box, w, h)))
    return img, labels


def generate(root: Union[str, os.PathLike], n_train: int = 400, n_valid: int = 100,
             size: Tuple[int, int] = (224, 224), seed: int = 0, quality: int = 92) -> str:
    """Write the dataset under root and return the path of its ``.data`` file.

    size: (w, h) of every image. Paths in the list and .data files are absolute
    (Darknet resolves them against the working directory).
    """
    n_train, n_valid = int(n_train), int(n_valid)
    if n_train < 0 or n_valid < 0 or n_train + n_valid == 0:
        raise DarknetError(f"synthetic.generate: need a positive number of images, got n_train={n_train}, "
                           f"n_valid={n_valid}")
    w, h = (int(v) for v in size)
    if w < 32 or h < 32:
        raise DarknetError(f"synthetic.generate: images must be at least 32x32, got {w}x{h}")
    root = os.path.abspath(os.fspath(root))
    image_dir, label_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    for directory in (image_dir, label_dir, os.path.join(root, "backup")):
        os.makedirs(directory, exist_ok=True)

    for split, count in (("train", n_train), ("valid", n_valid)):
        paths = []
        for index in range(count):
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, _SPLIT_IDS[split], index])
            img, labels = make_image(rng, w, h)
            stem = f"{split}_{index:06d}"
            image_path = os.path.join(image_dir, stem + ".jpg")
            img.save(image_path, quality=quality)
            with open(os.path.join(label_dir, stem + ".txt"), "w") as f:
                for class_id, x, y, bw, bh in labels:
                    f.write(f"{class_id} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n")
            paths.append(image_path)
        with open(os.path.join(root, f"{split}.txt"), "w") as f:
            f.write("".join(p + "\n" for p in paths))

    names_path = os.path.join(root, "synthetic.names")
    with open(names_path, "w") as f:
        f.write("".join(name + "\n" for name in SYNTHETIC_CLASSES))
    data_path = os.path.join(root, "synthetic.data")
    with open(data_path, "w") as f:
        f.write(f"classes = {len(SYNTHETIC_CLASSES)}\n"
                f"train = {os.path.join(root, 'train.txt')}\n"
                f"valid = {os.path.join(root, 'valid.txt')}\n"
                f"names = {names_path}\n"
                f"backup = {os.path.join(root, 'backup')}\n")
    return data_path
