"""A tiny line-chart writer on Pillow alone (no matplotlib): PR curves, average IoU vs
K, training loss.

``line_chart(path, {"name": (xs, ys), ...}, title, xlabel, ylabel)`` draws every
series as a polyline (NaN/inf values break the line), with axes, "nice" ticks and
grid lines, axis labels, a title and a legend, and writes a PNG.  ``xlim`` / ``ylim``
fix an axis range; otherwise it spans the data, widened to whole tick steps.
"""
from __future__ import annotations

import math
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

__all__ = ["line_chart", "nice_ticks", "PALETTE"]

PALETTE = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)


def _error(message: str) -> Exception:
    from darknet_py import DarknetError  # lazy: keeps this module importable alone

    return DarknetError(message)


def nice_ticks(lo: float, hi: float, target: int = 6) -> Tuple[np.ndarray, float]:
    """Tick positions on round steps (1, 2, 2.5, 5 x 10^n) covering ``[lo, hi]``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(target - 1, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = mag * 10
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw * (1 - 1e-9):
            step = m * mag
            break
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    ticks = np.arange(first, last + 1) * step
    return ticks, step


def _fmt_tick(v: float, step: float) -> str:
    if abs(v) < step * 1e-6:
        v = 0.0
    if step >= 1 and abs(v) < 1e6:
        return f"{v:.0f}" if float(v).is_integer() else f"{v:g}"
    if abs(v) >= 1e6 or (step < 1e-4):
        return f"{v:.3g}"
    decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    if abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1  # 2.5 x 10^n steps
    return f"{v:.{decimals}f}"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _text_size(draw, text, font):
    l, t, r, b = draw.textbbox((0, 0), text, font=font)
    return r - l, b - t


def _limits(values: Sequence[np.ndarray], lim):
    if lim is not None:
        lo, hi = float(lim[0]), float(lim[1])
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise _error(f"axis limits must be finite with low < high, got {lim!r}")
        ticks, step = nice_ticks(lo, hi)
        return lo, hi, ticks[(ticks >= lo - 1e-9 * step) & (ticks <= hi + 1e-9 * step)], step
    finite = [v[np.isfinite(v)] for v in values]
    finite = [v for v in finite if v.size]
    if finite:
        lo = float(min(v.min() for v in finite))
        hi = float(max(v.max() for v in finite))
    else:
        lo, hi = 0.0, 1.0
    ticks, step = nice_ticks(lo, hi)
    # widen to whole steps so the frame starts and ends on a tick
    lo2 = math.floor(lo / step + 1e-9) * step
    hi2 = math.ceil(hi / step - 1e-9) * step
    if hi2 <= lo2:
        hi2 = lo2 + step
    ticks = np.arange(round(lo2 / step), round(hi2 / step) + 1) * step
    return lo2, hi2, ticks, step


def line_chart(path: str, series: Dict[str, Tuple[Sequence[float], Sequence[float]]],
               title: str = "", xlabel: str = "", ylabel: str = "",
               xlim: Optional[Tuple[float, float]] = None,
               ylim: Optional[Tuple[float, float]] = None,
               size: Tuple[int, int] = (800, 520), markers: bool = False,
               legend: bool = True) -> str:
    """Write a PNG line chart of ``series`` (name -> (xs, ys)) to ``path``; returns path.

    A series of one point is drawn as a dot; ``markers=True`` dots every point.
    """
    from PIL import Image, ImageDraw

    data = {}
    for name, xy in series.items():
        try:
            xs, ys = xy
            xs = np.asarray(xs, dtype=np.float64).ravel()
            ys = np.asarray(ys, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise _error(f"series {name!r} must be a pair (xs, ys) of numbers") from None
        if xs.shape != ys.shape:
            raise _error(f"series {name!r}: {xs.size} x values but {ys.size} y values")
        data[str(name)] = (xs, ys)
    W, H = int(size[0]), int(size[1])
    if W < 200 or H < 150:
        raise _error(f"chart size {size!r} is too small (at least 200 x 150)")

    x0, x1, xticks, xstep = _limits([v[0] for v in data.values()], xlim)
    y0, y1, yticks, ystep = _limits([v[1] for v in data.values()], ylim)

    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font = _font(13)
    tfont = _font(16)
    ylabels = [_fmt_tick(v, ystep) for v in yticks]
    tick_w = max([_text_size(draw, s, font)[0] for s in ylabels] + [0])
    _, th = _text_size(draw, "0", font)
    left = 14 + (th + 8 if ylabel else 0) + tick_w + 8
    right = W - 20
    top = 14 + (_text_size(draw, title, tfont)[1] + 12 if title else 6)
    bottom = H - (14 + th + 8 + (th + 10 if xlabel else 0))
    if right - left < 50 or bottom - top < 50:
        raise _error(f"chart size {size!r} leaves no room for the plot")

    def px(x):
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y):
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    grid = (225, 225, 225)
    axis = (40, 40, 40)
    for v, s in zip(yticks, ylabels):
        y = py(v)
        draw.line([(left, y), (right, y)], fill=grid)
        draw.line([(left - 4, y), (left, y)], fill=axis)
        tw, _ = _text_size(draw, s, font)
        draw.text((left - 6 - tw, y - th / 2 - 1), s, fill=axis, font=font)
    for v in xticks:
        x = px(v)
        s = _fmt_tick(v, xstep)
        draw.line([(x, top), (x, bottom)], fill=grid)
        draw.line([(x, bottom), (x, bottom + 4)], fill=axis)
        tw, _ = _text_size(draw, s, font)
        draw.text((x - tw / 2, bottom + 6), s, fill=axis, font=font)
    draw.rectangle([left, top, right, bottom], outline=axis)
    if title:
        tw, _ = _text_size(draw, title, tfont)
        draw.text(((left + right) / 2 - tw / 2, 10), title, fill=(0, 0, 0), font=tfont)
    if xlabel:
        tw, _ = _text_size(draw, xlabel, font)
        draw.text(((left + right) / 2 - tw / 2, H - th - 12), xlabel, fill=axis, font=font)
    if ylabel:
        tw, h2 = _text_size(draw, ylabel, font)
        lab = Image.new("RGB", (tw + 4, h2 + 6), "white")
        ImageDraw.Draw(lab).text((2, 0), ylabel, fill=axis, font=font)
        lab = lab.rotate(90, expand=True)
        img.paste(lab, (10, int((top + bottom) / 2 - lab.size[1] / 2)))

    # series, clipped to the frame
    plot = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    pdraw = ImageDraw.Draw(plot)
    for i, (name, (xs, ys)) in enumerate(data.items()):
        color = PALETTE[i % len(PALETTE)]
        ok = np.isfinite(xs) & np.isfinite(ys)
        pts = [(px(x), py(y)) if o else None for x, y, o in zip(xs, ys, ok)]
        run = []
        for p in pts + [None]:
            if p is None:
                if len(run) >= 2:
                    pdraw.line(run, fill=color + (255,), width=2, joint="curve")
                elif len(run) == 1:
                    x, y = run[0]
                    pdraw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color + (255,))
                run = []
            else:
                run.append(p)
        if markers:
            for p in pts:
                if p is not None:
                    pdraw.ellipse([p[0] - 3, p[1] - 3, p[0] + 3, p[1] + 3], fill=color + (255,))
    mask = Image.new("L", (W, H), 0)
    ImageDraw.Draw(mask).rectangle([left + 1, top + 1, right - 1, bottom - 1], fill=255)
    clipped = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    clipped.paste(plot, (0, 0), mask)
    img.paste(clipped, (0, 0), clipped)

    if legend and data:
        names = list(data)
        lw = max(_text_size(draw, n, font)[0] for n in names) + 34
        lh = len(names) * (th + 8) + 8
        bx1, by0 = right - 8, top + 8
        bx0 = max(left + 8, bx1 - lw)
        draw.rectangle([bx0, by0, bx1, by0 + lh], fill=(255, 255, 255), outline=(160, 160, 160))
        for i, n in enumerate(names):
            color = PALETTE[i % len(PALETTE)]
            y = by0 + 6 + i * (th + 8) + th / 2
            draw.line([(bx0 + 6, y), (bx0 + 24, y)], fill=color, width=3)
            draw.text((bx0 + 30, y - th / 2 - 1), n, fill=axis, font=font)

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    img.save(path, format="PNG")
    return path
