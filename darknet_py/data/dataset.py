"""Darknet's on-disk dataset conventions.

* A ``.data`` file: ``key = value`` lines (``classes``, ``train``, ``valid``,
  ``names``, ``backup``, ``eval``, ...); ``#`` or ``;`` start a comment line.
* Image list files: one image path per line. A relative path that does not
  exist as given (Darknet resolves against the working directory) is resolved
  against the list file's directory.
* Label files: the image path with the first ``images``, ``JPEGImages`` and
  ``raw`` replaced by ``labels`` (each once, in that order, anywhere in the
  path, as Darknet does) and the image extension replaced by ``.txt``. One
  ``class x y w h`` line per object, centre and size relative to the image,
  optionally a 6th ``difficult`` column (0/1, VOC style).

Stable API (also used by evaluation): ``read_data_cfg``, ``read_list``,
``label_path``, ``read_labels``, ``read_names``, ``validate_dataset``.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from darknet_py._core import DarknetError

PathLike = Union[str, os.PathLike]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPG", ".JPEG", ".PNG")

__all__ = [
    "DataConfig",
    "read_data_cfg",
    "read_list",
    "read_names",
    "label_path",
    "read_labels",
    "validate_dataset",
    "DatasetReport",
    "IMAGE_EXTENSIONS",
]


class DataConfig(dict):
    """The key/value pairs of a ``.data`` file (a dict; ``classes`` is an int,
    every other value the string as written).

    ``path`` is the file it came from; ``resolve(key)`` returns the path a value
    names, as written if it exists (Darknet's working-directory rule), otherwise
    relative to the ``.data`` file's directory.
    """

    def __init__(self, values: Dict[str, object], path: str, lines: Optional[Dict[str, int]] = None):
        super().__init__(values)
        self.path = path
        self.lines = dict(lines or {})

    def where(self, key: str) -> str:
        """``file:line`` of a key's line (just the file when the key is absent), for error messages."""
        return f"{self.path}:{self.lines[key]}" if key in self.lines else self.path

    def resolve(self, key: str) -> str:
        if key not in self:
            raise DarknetError(f"{self.path}: no '{key}' entry")
        return _resolve_relative(str(self[key]), os.path.dirname(os.path.abspath(self.path)))


def _resolve_relative(path: str, base_dir: str) -> str:
    path = os.path.expanduser(path)
    if os.path.isabs(path) or os.path.exists(path):
        return path
    candidate = os.path.join(base_dir, path)
    return candidate if os.path.exists(candidate) else path


def _read_text_lines(path: PathLike, what: str) -> List[str]:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DarknetError(f"cannot open {what} '{path}': file not found")
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read().splitlines()
    except OSError as e:
        raise DarknetError(f"cannot read {what} '{path}': {e.strerror or e}") from None


def read_data_cfg(path: PathLike) -> DataConfig:
    """Parse a Darknet ``.data`` file into a DataConfig (a dict).

    Raises DarknetError with ``file:line`` for a line without ``=``, an empty
    key, a repeated key, or a ``classes`` value that is not a positive integer.
    """
    path = os.fspath(path)
    values: Dict[str, object] = {}
    lines: Dict[str, int] = {}
    for number, raw in enumerate(_read_text_lines(path, "data file"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if "=" not in line:
            raise DarknetError(f"{path}:{number}: expected 'key = value', got '{line}'")
        key, value = (part.strip() for part in line.split("=", 1))
        if not key:
            raise DarknetError(f"{path}:{number}: missing key before '='")
        if key in values:
            raise DarknetError(f"{path}:{number}: '{key}' is given twice")
        if key == "classes":
            try:
                classes = int(value)
            except ValueError:
                raise DarknetError(f"{path}:{number}: classes must be a positive integer, got '{value}'") from None
            if classes <= 0:
                raise DarknetError(f"{path}:{number}: classes must be a positive integer, got {classes}")
            values[key] = classes
        else:
            values[key] = value
        lines[key] = number
    return DataConfig(values, path, lines)


def read_list(path: PathLike) -> List[str]:
    """Read an image list (one path per line; blank lines skipped).

    Paths that do not exist as given and are relative are resolved against the
    list file's directory (when that exists); otherwise they are kept as given.
    """
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    entries = []
    for raw in _read_text_lines(path, "image list"):
        line = raw.strip()
        if line:
            entries.append(_resolve_relative(line, base))
    return entries


def read_names(path: PathLike) -> List[str]:
    """Read a names file: one class name per line (trailing blank lines dropped)."""
    lines = [line.strip() for line in _read_text_lines(path, "names file")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _replace_first(text: str, old: str, new: str) -> str:
    return text.replace(old, new, 1)


def label_path(image_path: PathLike) -> str:
    """The label file Darknet reads for an image.

    ``images``, ``JPEGImages`` and ``raw`` are each replaced once by ``labels``
    (first occurrence in the whole path, in that order, as Darknet), and an
    image extension (.jpg .jpeg .png .bmp .JPG .JPEG .PNG) becomes ``.txt``.
    Darknet replaces the first ``.jpg``/``.png``/``.JPG``/``.JPEG`` found
    anywhere in the path; replacing the final extension gives the same result
    for ordinary paths and also handles .jpeg, .bmp and .PNG.
    """
    path = os.fspath(image_path)
    for directory in ("images", "JPEGImages", "raw"):
        path = _replace_first(path, directory, "labels")
    stem, ext = os.path.splitext(path)
    if ext in IMAGE_EXTENSIONS:
        path = stem + ".txt"
    return path


def _parse_label_line(fields: Sequence[str]) -> List[float]:
    """One label line -> [class, x, y, w, h, difficult]; raises ValueError with a reason."""
    if len(fields) not in (5, 6):
        raise ValueError(f"expected 'class x y w h [difficult]', got {len(fields)} field(s)")
    try:
        cls = float(fields[0])
    except ValueError:
        raise ValueError(f"class '{fields[0]}' is not an integer") from None
    if not math.isfinite(cls) or cls != int(cls) or cls < 0:
        raise ValueError(f"class '{fields[0]}' is not a non-negative integer")
    values = [cls]
    for name, field in zip(("x", "y", "w", "h", "difficult"), fields[1:]):
        try:
            v = float(field)
        except ValueError:
            raise ValueError(f"{name} '{field}' is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"{name} '{field}' is not finite")
        values.append(v)
    if len(values) == 5:
        values.append(0.0)
    return values


def _coordinate_problem(x: float, y: float, w: float, h: float) -> Optional[str]:
    if w <= 0 or h <= 0:
        return f"box size w={w:g} h={h:g} must be > 0"
    for name, v in (("x", x), ("y", y), ("w", w), ("h", h)):
        if v < 0 or v > 1:
            return f"{name}={v:g} is outside [0, 1] (coordinates are relative to the image)"
    return None


def read_labels(path: PathLike, classes: Optional[int] = None) -> np.ndarray:
    """Read a label file into float32 rows ``class, x, y, w, h`` (N, 5), or
    ``class, x, y, w, h, difficult`` (N, 6) when any line has a 6th column.

    An empty file gives shape (0, 5). Raises DarknetError with ``file:line`` for
    a malformed line, or a class >= ``classes`` when classes is given. Box
    coordinates are not range-checked here (``validate_dataset`` does that).
    """
    path = os.fspath(path)
    rows = []
    has_difficult = False
    for number, raw in enumerate(_read_text_lines(path, "label file"), start=1):
        fields = raw.split()
        if not fields:
            continue
        try:
            row = _parse_label_line(fields)
        except ValueError as e:
            raise DarknetError(f"{path}:{number}: {e}") from None
        if classes is not None and row[0] >= classes:
            raise DarknetError(f"{path}:{number}: class {int(row[0])} >= classes ({classes})")
        has_difficult |= len(fields) == 6
        rows.append(row)
    columns = 6 if has_difficult else 5
    if not rows:
        return np.zeros((0, columns), dtype=np.float32)
    return np.asarray(rows, dtype=np.float32)[:, :columns]


class DatasetReport:
    """What validate_dataset saw: counts, per-class box counts and problems."""

    def __init__(self, images: int, boxes: int, class_counts: np.ndarray, problems: List[str]):
        self.images = images
        self.boxes = boxes
        self.class_counts = class_counts
        self.problems = problems

    @property
    def ok(self) -> bool:
        return not self.problems

    def __repr__(self) -> str:
        return f"DatasetReport(images={self.images}, boxes={self.boxes}, problems={len(self.problems)})"


def _class_only_problem(x: float, y: float) -> Optional[str]:
    if x == 0 and y == 0:
        return ("box centre (0, 0) is Darknet's classification-only marker: the box is dropped and the "
                "label trains only the class, which needs a tree= region layer (pass class_only_labels=True "
                "if that is meant)")
    return None


def _image_problem(path: str, decode: bool) -> Optional[str]:
    if not os.path.isfile(path):
        return f"{path}: image file not found"
    if os.path.getsize(path) == 0:
        return f"{path}: image file is empty"
    try:
        with Image.open(path) as img:
            if img.width <= 0 or img.height <= 0:
                return f"{path}: image has no pixels"
            if decode:
                img.load()
            else:
                img.verify()
    except UnidentifiedImageError:
        return f"{path}: not a recognised image format"
    except (OSError, SyntaxError, ValueError) as e:
        return f"{path}: unreadable image ({e})"
    return None


def image_problems_of(paths: Sequence[str], check_images: Union[bool, str] = True) -> List[Optional[str]]:
    """The problem with each image (None when fine). check_images: True/"decode" decodes
    fully (a truncated JPEG passes Pillow's verify()), "verify" checks the header only,
    False checks nothing. Pillow releases the GIL while decoding, so a few threads make the
    full decode affordable on long lists."""
    if not check_images:
        return [None] * len(paths)
    decode = check_images != "verify"
    workers = max(1, min(8, os.cpu_count() or 1)) if decode and len(paths) > 16 else 1
    if workers == 1:
        return [_image_problem(p, decode) for p in paths]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: _image_problem(p, decode), paths))


def validate_dataset(image_paths: Union[Iterable[PathLike], PathLike], classes: int, check_images: Union[bool, str] = True,
                     raise_on_error: bool = True, max_listed: int = 200,
                     class_only_labels: bool = False) -> DatasetReport:
    """Check every image and label before training and report ALL problems.

    image_paths: a list of image paths, or the path of an image list file.
    check_images: True (or "decode") decodes every image fully, on a few threads, so a
    truncated JPEG is found here and not in the middle of training; "verify" only reads
    the header and Pillow's verify() (faster, misses truncation); False skips images.
    Problems found: missing/unreadable/empty/truncated images, missing label files,
    malformed label lines, class >= classes, coordinates outside [0, 1],
    w or h <= 0, a box at (0, 0) (Darknet's classification-only marker, accepted with
    class_only_labels=True), each with file:line. With raise_on_error one DarknetError
    lists them all (at most max_listed lines, then a count); otherwise the
    report carries them.
    """
    if isinstance(image_paths, (str, os.PathLike)):
        image_paths = read_list(image_paths)
    image_paths = [os.fspath(p) for p in image_paths]
    if int(classes) <= 0:
        raise DarknetError(f"validate_dataset: classes must be positive, got {classes}")
    classes = int(classes)
    problems: List[str] = []
    class_counts = np.zeros(classes, dtype=np.int64)
    boxes = 0
    if not image_paths:
        problems.append("the image list is empty")
    image_problems = image_problems_of(image_paths, check_images)
    for image, problem in zip(image_paths, image_problems):
        if problem:
            problems.append(problem)
        labels = label_path(image)
        if labels == image:
            problems.append(f"{image}: cannot derive a label path (no images/JPEGImages/raw directory "
                            f"and no image extension in {IMAGE_EXTENSIONS})")
            continue
        if not os.path.isfile(labels):
            problems.append(f"{labels}: label file not found (for image {image})")
            continue
        try:
            lines = _read_text_lines(labels, "label file")
        except DarknetError as e:
            problems.append(str(e))
            continue
        for number, raw in enumerate(lines, start=1):
            fields = raw.split()
            if not fields:
                continue
            where = f"{labels}:{number}"
            try:
                cls, x, y, w, h, difficult = _parse_label_line(fields)
            except ValueError as e:
                problems.append(f"{where}: {e}")
                continue
            if cls >= classes:
                problems.append(f"{where}: class {int(cls)} >= classes ({classes})")
                continue
            coordinate = _coordinate_problem(x, y, w, h) or (None if class_only_labels else _class_only_problem(x, y))
            if coordinate:
                problems.append(f"{where}: {coordinate}")
                continue
            if difficult not in (0.0, 1.0):
                problems.append(f"{where}: difficult flag must be 0 or 1, got {difficult:g}")
                continue
            class_counts[int(cls)] += 1
            boxes += 1
    report = DatasetReport(len(image_paths), boxes, class_counts, problems)
    if problems and raise_on_error:
        listed = problems[:max_listed]
        more = len(problems) - len(listed)
        text = "\n  ".join(listed)
        tail = f"\n  ... and {more} more" if more else ""
        raise DarknetError(f"dataset check found {len(problems)} problem(s) in {len(image_paths)} image(s):\n  "
                           f"{text}{tail}")
    return report
