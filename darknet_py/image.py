"""Images as Darknet holds them: float32 arrays of shape (3, H, W), RGB in [0, 1].

Decoding is Pillow's; every pixel operation after decoding (uint8 -> float,
resize, letterbox, augmentation) runs in the C++ core with Darknet's arithmetic.
Darknet decodes JPEGs with stb_image, whose IDCT/upsampling differs from
libjpeg's by a few grey levels on some pixels, so a decoded JPEG can differ
from Darknet's by up to about 3/255 (PNG/BMP decode identically).
"""
from __future__ import annotations

import os
from typing import Any, Iterable, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from darknet_py import _core
from darknet_py._core import DarknetError

ImageLike = Union[str, os.PathLike, Image.Image, np.ndarray]

__all__ = [
    "DarknetError",
    "load_image",
    "resize",
    "letterbox",
    "letterbox_size",
    "save_image",
    "to_uint8_hwc",
    "draw_detections",
    "class_color",
]


def _wide_grey_to_uint8(values: np.ndarray, mode: str, source: str) -> np.ndarray:
    """Pillow's 32-bit grey modes (float "F", int "I": TIFF, 16-bit PNG) to 8 bits.

    Clipping them to 0..255 turned a float image in [0, 1] black and a 16-bit one white.
    The range of the values says which scale they are on: a float image within [0, 1] is
    scaled by 255; values within 0..255 are taken as 8-bit; an integer image up to 65535 is
    16-bit (the high byte, as for "I;16"); anything larger is scaled from [0, max].
    """
    if not np.all(np.isfinite(values)):
        raise DarknetError(f"{source}: image contains NaN or infinite values")
    values = np.maximum(values, 0.0)
    top = float(values.max()) if values.size else 0.0
    if mode == "F" and top <= 1.0:
        scaled = values * 255.0
    elif top <= 255.0:
        scaled = values
    elif mode == "I" and top <= 65535.0:
        return (values.astype(np.uint32) >> 8).astype(np.uint8)
    else:
        scaled = values * (255.0 / top)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _pil_to_array(img: Image.Image, source: str) -> np.ndarray:
    if img.width <= 0 or img.height <= 0:
        raise DarknetError(f"{source}: image has no pixels ({img.width}x{img.height})")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale: keep the high byte, as stb_image does for 8-bit requests.
        pixels = (np.asarray(img).astype(np.uint16) >> 8).astype(np.uint8)
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    elif img.mode in ("I", "F"):
        pixels = np.repeat(_wide_grey_to_uint8(np.asarray(img, dtype=np.float64), img.mode, source)[:, :, None], 3,
                           axis=2)
    else:
        # Alpha is dropped (not composited), palette and greyscale expanded: as
        # stb_image's 3-channel load.
        pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return _core.image_from_hwc_uint8(np.ascontiguousarray(pixels))


def _array_to_image(arr: np.ndarray, source: str) -> np.ndarray:
    if arr.size == 0:
        raise DarknetError(f"{source}: empty array of shape {arr.shape}")
    if arr.dtype == np.uint8:
        # uint8 arrays are interleaved pixels: (H, W), (H, W, 1|3|4).
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
            raise DarknetError(f"{source}: a uint8 image must be (H, W) or (H, W, 1|3|4), got {arr.shape}")
        if arr.shape[2] == 1:
            arr = np.repeat(arr, 3, axis=2)
        elif arr.shape[2] == 4:
            arr = arr[:, :, :3]
        return _core.image_from_hwc_uint8(np.ascontiguousarray(arr))
    if np.issubdtype(arr.dtype, np.floating):
        # float arrays are Darknet images: (3, H, W) in [0, 1] (a (H, W) plane is grey).
        if arr.ndim == 2:
            arr = np.repeat(arr[None], 3, axis=0)
        if arr.ndim != 3 or arr.shape[0] != 3:
            raise DarknetError(f"{source}: a float image must be (3, H, W) in [0, 1], got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise DarknetError(f"{source}: image contains NaN or infinite values")
        return np.ascontiguousarray(arr, dtype=np.float32).copy()
    raise DarknetError(f"{source}: unsupported array dtype {arr.dtype} (use uint8 HWC or float32 CHW)")


def load_image(source: ImageLike) -> np.ndarray:
    """Load an image as float32 (3, H, W), RGB in [0, 1] (Darknet's load_image_color).

    source: a file path, a PIL image (any mode), a uint8 array (H, W[, C]) of
    interleaved pixels, or a float array (3, H, W) already in Darknet layout
    (returned as a copy). EXIF orientation is ignored, as Darknet ignores it.
    Raises DarknetError naming the file for missing, unreadable, empty or
    corrupt images.
    """
    if isinstance(source, Image.Image):
        return _pil_to_array(source, "image")
    if isinstance(source, np.ndarray):
        return _array_to_image(source, "image array")
    if not isinstance(source, (str, os.PathLike)):
        raise DarknetError(f"load_image: expected a path, PIL image or numpy array, got {type(source).__name__}")
    path = os.fspath(source)
    if not os.path.exists(path):
        raise DarknetError(f"cannot load image '{path}': file not found")
    if os.path.isdir(path):
        raise DarknetError(f"cannot load image '{path}': is a directory")
    if os.path.getsize(path) == 0:
        raise DarknetError(f"cannot load image '{path}': file is empty")
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_array(img, f"image '{path}'")
    except UnidentifiedImageError:
        raise DarknetError(f"cannot load image '{path}': not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, DarknetError):
            raise
        raise DarknetError(f"cannot load image '{path}': corrupt or truncated ({e})") from None
    except Image.DecompressionBombError as e:  # pragma: no cover - needs a huge file
        raise DarknetError(f"cannot load image '{path}': {e}") from None


def _as_chw(img: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(img, np.ndarray):
        raise DarknetError(f"{what}: expected a numpy array (C, H, W), got {type(img).__name__}")
    if img.ndim != 3:
        raise DarknetError(f"{what}: expected an array of shape (C, H, W), got shape {img.shape}")
    return img


def resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's resize_image: (C, H, W) -> (C, h, w), two-pass bilinear."""
    return _core.resize_image(_as_chw(img, "resize"), int(w), int(h))


def letterbox(img: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's letterbox_image: fit inside w x h keeping the aspect, 0.5 fill, centred."""
    return _core.letterbox_image(_as_chw(img, "letterbox"), int(w), int(h))


def letterbox_size(im_w: int, im_h: int, w: int, h: int) -> tuple:
    """(new_w, new_h) of the image inside a w x h letterbox (integer, as Darknet)."""
    return _core.letterbox_size(int(im_w), int(im_h), int(w), int(h))


def to_uint8_hwc(img: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8, clamped and rounded to nearest
    (Darknet truncates, which can turn a loaded value v/255 into v-1 on save)."""
    img = _as_chw(np.asarray(img), "to_uint8_hwc")
    if img.shape[0] == 1:
        img = np.repeat(img, 3, axis=0)
    if img.shape[0] != 3:
        raise DarknetError(f"to_uint8_hwc: expected 1 or 3 channels, got shape {img.shape}")
    return np.ascontiguousarray(np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(1, 2, 0))


def save_image(img: np.ndarray, path: Union[str, os.PathLike], quality: int = 95) -> str:
    """Write a (3, H, W) float image; the format follows the extension (.png, .jpg, ...)."""
    path = os.fspath(path)
    pil = Image.fromarray(to_uint8_hwc(img), "RGB")
    try:
        if path.lower().endswith((".jpg", ".jpeg")):
            pil.save(path, quality=quality)
        else:
            pil.save(path)
    except (OSError, ValueError, KeyError) as e:
        raise DarknetError(f"cannot save image '{path}': {e}") from None
    return path


# Darknet's label palette: six anchor colours blended by class offset.
_PALETTE = ((1, 0, 1), (0, 0, 1), (0, 1, 1), (0, 1, 0), (1, 1, 0), (1, 0, 0))


def _palette_channel(channel: int, x: int, maximum: int) -> float:
    ratio = (x / maximum) * 5
    i, j = int(np.floor(ratio)), int(np.ceil(ratio))
    ratio -= i
    return (1 - ratio) * _PALETTE[i][channel] + ratio * _PALETTE[j][channel]


def class_color(class_index: int, classes: int) -> tuple:
    """The RGB colour (0-255) Darknet gives a class's boxes."""
    classes = max(int(classes), 1)
    offset = (int(class_index) * 123457) % classes
    rgb = (_palette_channel(2, offset, classes), _palette_channel(1, offset, classes),
           _palette_channel(0, offset, classes))
    return tuple(int(round(255 * v)) for v in rgb)


def _field(det: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if isinstance(det, dict) and name in det:
            return det[name]
        if hasattr(det, name):
            return getattr(det, name)
    return default


def draw_detections(img: ImageLike, detections: Iterable[Any], names: Sequence[str],
                    path: Union[str, os.PathLike, None] = None) -> Image.Image:
    """Draw labelled boxes and save to `path` (PNG/JPEG by extension) if given.

    Each detection needs .box = (x_center, y_center, w, h) in pixels, .name and
    .prob (attributes or dict keys); an optional .class_id (or the name's index
    in `names`) picks Darknet's colour for the class. Returns the PIL image.
    """
    if isinstance(img, Image.Image):
        canvas = img.convert("RGB")
    else:
        canvas = Image.fromarray(to_uint8_hwc(load_image(img)), "RGB")
    names = list(names)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    width = max(1, int(canvas.height * 0.006))
    for det in detections:
        box = _field(det, "box", "bbox")
        if box is None or len(box) != 4:
            raise DarknetError(f"draw_detections: detection without a (x, y, w, h) box: {det!r}")
        name = str(_field(det, "name", "label", default="?"))
        prob = float(_field(det, "prob", "score", "confidence", default=0.0))
        class_id = _field(det, "class_id", "cls", "class_index")
        if class_id is None:
            class_id = names.index(name) if name in names else 0
        color = class_color(int(class_id), len(names) or 1)
        x, y, w, h = (float(v) for v in box)
        left = max(0.0, x - w / 2)
        right = min(canvas.width - 1.0, x + w / 2)
        top = max(0.0, y - h / 2)
        bottom = min(canvas.height - 1.0, y + h / 2)
        if right < left or bottom < top:
            continue  # entirely outside the image
        draw.rectangle([left, top, right, bottom], outline=color, width=width)
        label = f"{name} {prob:.0%}"
        tl, tt, tr, tb = draw.textbbox((left, top), label, font=font)
        label_top = top - (tb - tt) - 2 if top - (tb - tt) - 2 >= 0 else top
        draw.rectangle([left, label_top, left + (tr - tl) + 4, label_top + (tb - tt) + 2], fill=color)
        text_color = (0, 0, 0) if sum(color) > 382 else (255, 255, 255)
        draw.text((left + 2, label_top + 1), label, fill=text_color, font=font)
    if path is not None:
        path = os.fspath(path)
        try:
            if path.lower().endswith((".jpg", ".jpeg")):
                canvas.save(path, quality=95)
            else:
                canvas.save(path)
        except (OSError, ValueError, KeyError) as e:
            raise DarknetError(f"cannot save image '{path}': {e}") from None
    return canvas
