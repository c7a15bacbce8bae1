"""Dimension clusters (YOLOv2 section 2, "Dimension Clusters"): k-means over box sizes.

Boxes are only widths and heights, compared as if they shared a centre, so the IoU of
a box ``(w, h)`` and an anchor ``(aw, ah)`` is
``min(w, aw) * min(h, ah) / (w * h + aw * ah - min(w, aw) * min(h, ah))``.  The
clustering distance is ``1 - IoU`` (``distance="iou"``, the paper's choice) or the
squared Euclidean distance of ``(w, h)`` (``distance="sse"``, the baseline of the
paper's Table 1).  Seeding is k-means++ under the chosen distance, the update takes
the mean width and height of each cluster, an emptied cluster is re-seeded at the box
farthest from its centre, and of several seeded restarts the one with the best
objective (average IoU, or sum of squares for ``"sse"``) is kept.

Units are whatever the caller passes; the IoU clustering is invariant to scaling
either axis, the SSE clustering is not.  The ``anchors`` command passes region-layer
grid units (pixels / 32), the units of a ``[region]`` ``anchors=`` line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["KMeansResult", "kmeans", "avg_iou", "iou_wh", "sweep", "anchors_line", "parse_ks"]

DISTANCES = ("iou", "sse")


def _error(message: str) -> Exception:
    from darknet_py import DarknetError  # lazy: keeps this module importable alone

    return DarknetError(message)


@dataclass
class KMeansResult:
    """``anchors``: (k, 2) widths/heights sorted by area (then width); ``avg_iou``: mean
    over boxes of the best IoU with an anchor; ``assignments``: each box's cluster (an
    index into ``anchors``); ``objective``: the minimised quantity of the kept restart
    (``1 - avg_iou`` for ``"iou"``, the sum of squared distances for ``"sse"``)."""

    anchors: np.ndarray
    avg_iou: float
    assignments: np.ndarray
    distance: str
    objective: float
    iterations: int
    restarts: int
    seed: int

    def line(self, decimals: int = 4) -> str:
        return anchors_line(self.anchors, decimals)


def _check_wh(wh, what="wh") -> np.ndarray:
    try:
        a = np.asarray(wh, dtype=np.float64)
    except (TypeError, ValueError):
        raise _error(f"{what} must be an (N, 2) array of box widths and heights") from None
    if a.size == 0:
        raise _error(f"{what} is empty: no boxes to cluster (are the label files empty?)")
    if a.ndim != 2 or a.shape[1] != 2:
        raise _error(f"{what} must be an (N, 2) array of box widths and heights; got shape {a.shape}")
    bad = ~np.isfinite(a).all(axis=1) | (a <= 0).any(axis=1)
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise _error(f"{what} row {i} is not a positive finite width/height: {a[i].tolist()} "
                     f"({int(bad.sum())} such rows)")
    return a


def iou_wh(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, K) IoU of boxes and anchors aligned at a common centre."""
    wh = np.asarray(wh, dtype=np.float64)
    anchors = np.asarray(anchors, dtype=np.float64)
    inter = (np.minimum(wh[:, None, 0], anchors[None, :, 0])
             * np.minimum(wh[:, None, 1], anchors[None, :, 1]))
    union = wh[:, None, 0] * wh[:, None, 1] + anchors[None, :, 0] * anchors[None, :, 1] - inter
    return inter / union


def avg_iou(wh, anchors) -> float:
    """Mean over boxes of the largest centre-aligned IoU with any anchor."""
    wh = _check_wh(wh)
    anchors = _check_wh(anchors, "anchors")
    return float(np.mean(np.max(iou_wh(wh, anchors), axis=1)))


def _dist(wh, centres, distance):
    if distance == "iou":
        return 1.0 - iou_wh(wh, centres)
    d = wh[:, None, :] - centres[None, :, :]
    return np.einsum("nkc,nkc->nk", d, d)


def _seed_pp(wh, k, distance, rng):
    n = len(wh)
    idx = [int(rng.integers(n))]
    dmin = _dist(wh, wh[idx], distance)[:, 0]
    for _ in range(1, k):
        w = dmin ** 2 if distance == "iou" else dmin  # D(x)^2 (SSE is already squared)
        total = w.sum()
        if total > 0:
            j = int(rng.choice(n, p=w / total))
        else:  # every box coincides with a chosen centre
            j = int(rng.integers(n))
        idx.append(j)
        dmin = np.minimum(dmin, _dist(wh, wh[j:j + 1], distance)[:, 0])
    return wh[idx].copy()


def _lloyd(wh, centres, distance, max_iter):
    k = len(centres)
    assign = None
    it = 0
    for it in range(1, max_iter + 1):
        d = _dist(wh, centres, distance)
        new = np.argmin(d, axis=1)
        counts = np.bincount(new, minlength=k)
        if (counts == 0).any():  # re-seed empty clusters at the farthest boxes
            far = np.argsort(-d[np.arange(len(wh)), new], kind="stable")
            used = set()
            for c in np.nonzero(counts == 0)[0]:
                for j in far:
                    if j not in used:
                        used.add(int(j))
                        new[j] = c
                        break
            counts = np.bincount(new, minlength=k)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        nz = counts > 0
        for c in range(2):
            sums = np.bincount(assign, weights=wh[:, c], minlength=k)
            centres[nz, c] = sums[nz] / counts[nz]
    d = _dist(wh, centres, distance)
    assign = np.argmin(d, axis=1)
    if distance == "iou":
        objective = float(np.mean(d[np.arange(len(wh)), assign]))
    else:
        objective = float(np.sum(d[np.arange(len(wh)), assign]))
    return centres, assign, objective, it


def kmeans(wh, k: int, distance: str = "iou", seed: int = 0, restarts: int = 5,
           max_iter: int = 300) -> KMeansResult:
    """Cluster box sizes ``wh`` (N, 2) into ``k`` anchors; see the module docstring.

    The same ``seed`` gives the same anchors.  Raises ``DarknetError`` for an empty or
    non-positive ``wh``, ``k < 1``, ``k`` larger than the number of boxes, or an unknown
    ``distance``.
    """
    if distance not in DISTANCES:
        raise _error(f"unknown k-means distance {distance!r}; expected 'iou' or 'sse'")
    wh = _check_wh(wh)
    if int(k) != k or k < 1:
        raise _error(f"k must be a positive integer, got {k!r}")
    k = int(k)
    if k > len(wh):
        raise _error(f"cannot make k={k} clusters from {len(wh)} boxes: k is larger than the "
                     f"number of boxes")
    if restarts < 1 or max_iter < 1:
        raise _error(f"restarts and max_iter must be >= 1 (got {restarts}, {max_iter})")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        centres = _seed_pp(wh, k, distance, rng)
        centres, assign, obj, it = _lloyd(wh, centres, distance, max_iter)
        if best is None or obj < best[2] - 1e-15:
            best = (centres, assign, obj, it)
    centres, assign, obj, it = best
    order = np.lexsort((centres[:, 0], centres[:, 0] * centres[:, 1]))
    inverse = np.empty(k, dtype=np.int64)
    inverse[order] = np.arange(k)
    anchors = centres[order]
    return KMeansResult(
        anchors=anchors,
        avg_iou=float(np.mean(np.max(iou_wh(wh, anchors), axis=1))),
        assignments=inverse[assign], distance=distance, objective=obj, iterations=it,
        restarts=restarts, seed=seed)


def anchors_line(anchors, decimals: int = 4) -> str:
    """The ``anchors=`` line of a ``[region]`` section: ``anchors=w1,h1, w2,h2, ...``."""
    a = np.asarray(anchors, dtype=np.float64).reshape(-1, 2)
    return "anchors=" + ", ".join(f"{w:.{decimals}f},{h:.{decimals}f}" for w, h in a)


def parse_ks(text: str) -> List[int]:
    """``"1..15"`` / ``"1-15"`` / ``"1,3,5"`` / ``"5"`` -> a sorted list of distinct K."""
    out = set()
    try:
        for part in str(text).split(","):
            part = part.strip()
            if not part:
                continue
            sep = ".." if ".." in part else ("-" if "-" in part[1:] else None)
            if sep:
                lo, hi = part.split(sep, 1)
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise _error(f"bad K range {text!r}: use e.g. 1..15, 1-15 or 1,3,5") from None
    if not out or min(out) < 1:
        raise _error(f"bad K range {text!r}: K values must be >= 1")
    return sorted(out)


def sweep(wh, ks: Sequence[int] = range(1, 16), seed: int = 0, restarts: int = 5,
          max_iter: int = 300, given: Optional[np.ndarray] = None) -> List[Dict]:
    """For each K: average IoU of IoU clustering and of SSE clustering, and of the
    ``given`` anchors where K equals their number (the paper's Table 1 and Figure 2).

    Returns rows ``{"k", "iou", "sse", "given", "anchors_iou", "anchors_sse"}`` with
    ``given`` None for other K.
    """
    wh = _check_wh(wh)
    ks = list(ks)
    if max(ks) > len(wh):
        raise _error(f"cannot sweep to k={max(ks)} with {len(wh)} boxes: k is larger than the "
                     f"number of boxes")
    given_iou = None
    if given is not None:
        given = _check_wh(np.asarray(given, dtype=np.float64).reshape(-1, 2), "given anchors")
        given_iou = avg_iou(wh, given)
    rows = []
    for k in ks:
        ri = kmeans(wh, k, "iou", seed, restarts, max_iter)
        rs = kmeans(wh, k, "sse", seed, restarts, max_iter)
        rows.append(dict(k=k, iou=ri.avg_iou, sse=rs.avg_iou,
                         given=given_iou if given is not None and len(given) == k else None,
                         anchors_iou=ri.anchors, anchors_sse=rs.anchors))
    return rows
