"""Detection metrics: PASCAL VOC mAP (2007 11-point, 2010+ all-point) and COCO mAP.

One entry point, :func:`evaluate`, scores detections against ground truth with one of
three standard methods and returns an :class:`EvalResult`.

Inputs
------
``detections``: rows ``(image_id, class_id, score, x1, y1, x2, y2)``;
``truths``: rows ``(image_id, class_id, x1, y1, x2, y2[, flag])``.  Both may be numpy
arrays or any sequence of sequences.  ``image_id`` may be any hashable value (an int, a
file stem, ...); ``class_id`` must be an integer.  Boxes are corners in image pixels.

Pixel conventions (each method follows its own standard)
--------------------------------------------------------
* ``"voc07"`` and ``"voc"`` use the PASCAL VOC devkit convention: coordinates are
  *inclusive integer pixel indices*, so a box's width is ``x2 - x1 + 1`` and its
  height ``y2 - y1 + 1``; the intersection is ``max(0, min(x2) - max(x1) + 1)`` times
  the same for y.  (Darknet's ``valid`` output and its label converter use exactly
  this convention: ``x1 = x_center - w/2 + 1``.)  The optional 7th truth column is
  VOC's ``difficult`` flag: a detection whose best overlap is a difficult object is
  neither a true nor a false positive, and difficult objects do not count in recall.
* ``"coco"`` uses COCO's *continuous* coordinates: width ``x2 - x1``, no ``+1``;
  a box's area for the small/medium/large ranges is ``width * height`` of its box
  (detections and truths alike).  The optional 7th truth column is COCO's
  ``iscrowd`` flag (crowd regions are ignored, matched by intersection over the
  detection's area and may absorb any number of detections); without it no
  truth is crowd.

Matching rules
--------------
* VOC (the devkit's ``VOCevaldet`` as ported to Python in ``voc_eval.py``, the
  script Darknet ships): per class, detections in decreasing score order; each is
  compared with every ground-truth box of its class in its image and takes the one of
  largest overlap (the first on a tie); it is a true positive when that overlap is
  ``> iou_threshold`` and the object is not difficult and not yet detected, else a
  false positive (a duplicate never falls back to a second-best object).  Precision
  is ``tp / max(tp + fp, eps)``; ``voc07`` averages the maximum precision at recall
  ``>= t`` for ``t`` in ``numpy.arange(0, 1.1, 0.1)`` (11 points), ``voc`` integrates
  the monotone precision envelope over recall (area under the curve).  Equal scores
  keep the input order (a stable sort, as MATLAB's ``sort``).
* COCO: exactly pycocotools' ``COCOeval`` for ``iouType="bbox"``: IoU thresholds
  ``.50:.05:.95``, 101 recall points, area ranges all/small (< 32^2)/medium/large
  (> 96^2), ``maxDets`` 1/10/100 per image and class, greedy matching per image and
  class in score order preferring non-ignored truths (the last of equal IoUs wins),
  unmatched detections outside an area range ignored.  Images are ordered by sorted
  ``image_id``; equal scores keep image order, then input order, as COCOeval's
  mergesorts do.  ``stats`` holds the 12 standard numbers in pycocotools' order
  (:data:`COCO_STAT_NAMES`), ``-1`` where undefined, as pycocotools reports them.

Only numpy is used; matching is vectorised across images (one step per detection
rank) so tens of thousands of detections evaluate in well under a second.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import numpy as np

__all__ = [
    "evaluate",
    "EvalResult",
    "METHODS",
    "COCO_STAT_NAMES",
    "COCO_IOU_THRESHOLDS",
    "COCO_RECALL_THRESHOLDS",
    "COCO_MAX_DETS",
    "COCO_AREA_RANGES",
    "voc_ap",
]

METHODS = ("voc07", "voc", "coco")

COCO_STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl",
    "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)
# The same expressions COCOeval's Params uses, so the float values are identical.
COCO_IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
COCO_RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
COCO_MAX_DETS = (1, 10, 100)
COCO_AREA_RANGES = ((0 ** 2, 1e5 ** 2), (0 ** 2, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e5 ** 2))
COCO_AREA_LABELS = ("all", "small", "medium", "large")

# Cap on the elements of one (detections x areas x thresholds x truths) block.
_BLOCK = 1 << 21


def _error(message: str) -> Exception:
    from darknet_py import DarknetError  # lazy: keeps this module importable alone

    return DarknetError(message)


@dataclass
class EvalResult:
    """What :func:`evaluate` returns.

    Per-class values are dicts keyed by class id.  ``ap[c]`` is ``nan`` for a class with
    no (non-difficult / non-crowd) ground truth; ``map`` averages the others.

    ``precision[c]`` / ``recall[c]`` are the raw curves, one point per detection of
    class ``c`` in decreasing score order (VOC), or, for COCO, at ``iou_threshold``,
    area "all", 100 detections per image.  ``tp``/``fp``/``precision_at``/``recall_at``
    count the detections with ``score >= score_threshold`` under the same matching,
    and ``avg_iou`` is the mean IoU of those true positives with their objects (as
    AlexeyAB's ``detector map`` reports it).
    """

    method: str
    iou_threshold: float
    score_threshold: float
    classes: np.ndarray
    map: float
    ap: Dict[int, float]
    precision: Dict[int, np.ndarray]
    recall: Dict[int, np.ndarray]
    scores: Dict[int, np.ndarray]
    n_truths: Dict[int, int]
    n_detections: Dict[int, int]
    tp: Dict[int, int]
    fp: Dict[int, int]
    precision_at: Dict[int, float]
    recall_at: Dict[int, float]
    total_tp: int = 0
    total_fp: int = 0
    total_truths: int = 0
    avg_iou: float = float("nan")
    # COCO only
    stats: Optional[np.ndarray] = None
    ap50: Dict[int, float] = field(default_factory=dict)
    ap75: Dict[int, float] = field(default_factory=dict)
    coco_precision: Optional[np.ndarray] = None  # (T, R, K, A, M) as COCOeval.eval["precision"]
    coco_recall: Optional[np.ndarray] = None  # (T, K, A, M) as COCOeval.eval["recall"]

    @property
    def precision_at_thresh(self) -> float:
        d = self.total_tp + self.total_fp
        return self.total_tp / d if d else float("nan")

    @property
    def recall_at_thresh(self) -> float:
        return self.total_tp / self.total_truths if self.total_truths else float("nan")

    @property
    def f1_at_thresh(self) -> float:
        p, r = self.precision_at_thresh, self.recall_at_thresh
        return 2 * p * r / (p + r) if p + r > 0 else float("nan")

    def coco_stats(self) -> Dict[str, float]:
        if self.stats is None:
            raise _error(f"coco_stats() needs method='coco' (this result is {self.method!r})")
        return dict(zip(COCO_STAT_NAMES, (float(s) for s in self.stats)))

    def table(self, names=None) -> str:
        """A per-class text table (AP, TP, FP, precision, recall) followed by the totals."""
        def name(c):
            if names is not None and 0 <= c < len(names):
                return str(names[c])
            return str(c)

        width = max([len("class")] + [len(name(int(c))) for c in self.classes])
        lines = [f"{'class':<{width}}  {'AP':>7}  {'truths':>6}  {'TP':>6}  {'FP':>6}  "
                 f"{'prec':>6}  {'recall':>6}"]
        for c in self.classes:
            c = int(c)
            lines.append(
                f"{name(c):<{width}}  {_pct(self.ap[c]):>7}  {self.n_truths[c]:>6d}  "
                f"{self.tp[c]:>6d}  {self.fp[c]:>6d}  {_fmt(self.precision_at[c]):>6}  "
                f"{_fmt(self.recall_at[c]):>6}")
        label = {"voc07": "mAP (VOC2007 11-point)", "voc": "mAP (VOC all-point)",
                 "coco": "mAP@[.5:.95] (COCO)"}[self.method]
        lines.append(
            f"score >= {self.score_threshold:g}: TP {self.total_tp}, FP {self.total_fp}, "
            f"precision {_fmt(self.precision_at_thresh)}, recall "
            f"{_fmt(self.recall_at_thresh)}, F1 {_fmt(self.f1_at_thresh)}, "
            f"average IoU {_pct(self.avg_iou)}")
        if self.stats is not None:
            lines.append("  ".join(f"{n} {s:.4f}" for n, s in zip(COCO_STAT_NAMES, self.stats)))
        lines.append(f"{label} @ IoU {self.iou_threshold:g} = {self.map:.6f}" if self.method != "coco"
                     else f"{label} = {self.map:.6f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _fmt(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{x:.4f}"


def _pct(x: float) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.2f}%"


# ----------------------------------------------------------------------------- inputs

def _split_rows(rows: Any, what: str, n_min: int, n_max: int):
    """-> (list of ids, float array (N, n_max - 1)), missing optional columns as 0."""
    ncols = n_max - 1
    if rows is None:
        return [], np.zeros((0, ncols))
    if isinstance(rows, np.ndarray) and rows.dtype != object:
        if rows.size == 0:
            return [], np.zeros((0, ncols))
        if rows.ndim != 2 or not n_min <= rows.shape[1] <= n_max:
            raise _error(f"{what} must be rows of {n_min} to {n_max} values; got an array of shape "
                         f"{rows.shape}")
        try:
            nums = rows[:, 1:].astype(np.float64)
        except (TypeError, ValueError) as e:
            raise _error(f"{what}: non-numeric values: {e}") from None
        if nums.shape[1] < ncols:
            nums = np.concatenate([nums, np.zeros((len(nums), ncols - nums.shape[1]))], axis=1)
        return rows[:, 0].tolist(), nums
    rows = list(rows)
    nums = np.zeros((len(rows), ncols))
    ids = []
    for i, r in enumerate(rows):
        r = list(r)
        if not n_min <= len(r) <= n_max:
            raise _error(f"{what} row {i} has {len(r)} values {r!r}; expected {n_min} to {n_max}")
        ids.append(r[0])
        try:
            nums[i, : len(r) - 1] = [float(v) for v in r[1:]]
        except (TypeError, ValueError):
            raise _error(f"{what} row {i} has a non-numeric value: {r!r}") from None
    return ids, nums


def _check_boxes(what, boxes, scores=None):
    if len(boxes) == 0:
        return
    vals = boxes if scores is None else np.column_stack([scores, boxes])
    if not np.all(np.isfinite(vals)):
        i = int(np.nonzero(~np.all(np.isfinite(vals), axis=1))[0][0])
        raise _error(f"{what} row {i}: a box coordinate or score is not finite: {vals[i].tolist()}")
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if np.any(bad):
        i = int(np.nonzero(bad)[0][0])
        raise _error(f"{what} row {i}: box has x2 < x1 or y2 < y1: {boxes[i].tolist()}")


def _class_ids(what, values):
    cls = np.asarray(values, dtype=np.float64)
    if len(cls) and (not np.all(np.isfinite(cls)) or np.any(cls != np.round(cls))):
        i = int(np.nonzero(~np.isfinite(cls) | (cls != np.round(cls)))[0][0])
        raise _error(f"{what} row {i}: class id {values[i]!r} is not an integer")
    return cls.astype(np.int64)


def _image_index(det_ids, gt_ids):
    keys = list(det_ids) + list(gt_ids)
    uniq = set(keys)
    try:
        order = sorted(uniq)
    except TypeError:  # mixed id types: order by type name, then text
        order = sorted(uniq, key=lambda v: (type(v).__name__, str(v)))
    pos = {v: i for i, v in enumerate(order)}
    idx = np.fromiter((pos[v] for v in keys), dtype=np.int64, count=len(keys))
    return idx[: len(det_ids)], idx[len(det_ids):], order


# ----------------------------------------------------------------------------- helpers

def _group_ranks(sorted_keys: np.ndarray) -> np.ndarray:
    """Rank of each element inside its run of equal keys (keys already sorted)."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    start = np.ones(n, dtype=bool)
    start[1:] = sorted_keys[1:] != sorted_keys[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    return np.arange(n) - first


def _pad_truths(g_group: np.ndarray, n_groups: int):
    """Truth indices padded per group: (n_groups, Gmax) int (-1 pad), valid mask."""
    order = np.argsort(g_group, kind="stable")
    rank = _group_ranks(g_group[order])
    gmax = int(rank.max()) + 1 if len(rank) else 0
    pos = np.full((n_groups, gmax), -1, dtype=np.int64)
    pos[g_group[order], rank] = order
    return pos, pos >= 0


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a VOC recall/precision curve (the devkit formula).

    ``use_07_metric``: 11-point interpolation, mean over ``t`` in
    ``numpy.arange(0, 1.1, 0.1)`` of ``max(prec[rec >= t])`` (0 when empty);
    otherwise the area under the monotone precision envelope (VOC2010+).
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ts = np.arange(0.0, 1.1, 0.1)
        if len(rec) == 0:
            return 0.0
        # max precision at recall >= t: suffix maximum of precision, first index with rec >= t
        suffix = np.maximum.accumulate(prec[::-1])[::-1]
        ok = rec[None, :] >= ts[:, None]
        has = ok.any(axis=1)
        first = np.argmax(ok, axis=1)
        p = np.where(has, suffix[first], 0.0)
        return float(np.sum(p / 11.0))
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


# ----------------------------------------------------------------------------- evaluate

def evaluate(detections, truths, method: str = "voc07", iou_threshold: float = 0.5,
             score_threshold: float = 0.25, classes=None) -> EvalResult:
    """Score ``detections`` against ``truths`` (see the module docstring for the formats,
    the pixel convention of each method and the matching rules).

    ``method``: ``"voc07"`` (VOC2007 11-point), ``"voc"`` (VOC2010+ all-point) or
    ``"coco"`` (mAP@[.5:.95] and the 11 other COCO numbers).
    ``iou_threshold``: the overlap for a match in the VOC methods; for COCO the
    threshold of the per-class curves and counts (``map`` is always @[.5:.95]).
    ``score_threshold``: detections counted in ``tp``/``fp``/``avg_iou``.
    ``classes``: class ids to report (default: every id seen in either input); a class
    without truths gets ``ap = nan`` and does not enter ``map``.
    """
    if method not in METHODS:
        raise _error(f"unknown evaluation method {method!r}; expected one of {', '.join(METHODS)}")
    if not 0.0 < float(iou_threshold) < 1.0:
        raise _error(f"iou_threshold must be in (0, 1), got {iou_threshold!r}")
    d_ids, d_num = _split_rows(detections, "detections", 7, 7)
    g_ids, g_num = _split_rows(truths, "truths", 6, 7)
    d_cls = _class_ids("detections", d_num[:, 0])
    g_cls = _class_ids("truths", g_num[:, 0])
    d_score = d_num[:, 1]
    d_box = d_num[:, 2:6]
    g_box = g_num[:, 1:5]
    g_flag = g_num[:, 5] != 0
    _check_boxes("detections", d_box, d_score)
    _check_boxes("truths", g_box)
    d_img, g_img, _ = _image_index(d_ids, g_ids)

    if classes is None:
        cls_list = np.unique(np.concatenate([d_cls, g_cls]))
    else:
        cls_list = np.unique(np.asarray(list(classes), dtype=np.int64))
    # detections of classes not reported are dropped; truths likewise
    keep_d = np.isin(d_cls, cls_list)
    keep_g = np.isin(g_cls, cls_list)
    args = dict(
        d_img=d_img[keep_d], d_cls=np.searchsorted(cls_list, d_cls[keep_d]),
        d_score=d_score[keep_d], d_box=d_box[keep_d],
        g_img=g_img[keep_g], g_cls=np.searchsorted(cls_list, g_cls[keep_g]),
        g_box=g_box[keep_g], g_flag=g_flag[keep_g], n_cls=len(cls_list),
        iou_threshold=float(iou_threshold), score_threshold=float(score_threshold),
    )
    if method == "coco":
        res = _coco(**args)
    else:
        res = _voc(use07=(method == "voc07"), **args)
    return _result(method, float(iou_threshold), float(score_threshold), cls_list, res)


def _result(method, iou_threshold, score_threshold, cls_list, res) -> EvalResult:
    ids = [int(c) for c in cls_list]
    per = res["per_class"]
    ap = {c: per[k]["ap"] for k, c in enumerate(ids)}
    finite = [v for v in ap.values() if np.isfinite(v)]
    if method == "coco":
        mAP = float(res["stats"][0])
    else:
        mAP = float(np.mean(finite)) if finite else float("nan")
    tps = [per[k]["tp"] for k in range(len(ids))]
    fps = [per[k]["fp"] for k in range(len(ids))]
    ious = res["tp_ious"]
    out = EvalResult(
        method=method, iou_threshold=iou_threshold, score_threshold=score_threshold,
        classes=np.asarray(ids, dtype=np.int64), map=mAP, ap=ap,
        precision={c: per[k]["precision"] for k, c in enumerate(ids)},
        recall={c: per[k]["recall"] for k, c in enumerate(ids)},
        scores={c: per[k]["scores"] for k, c in enumerate(ids)},
        n_truths={c: int(per[k]["npos"]) for k, c in enumerate(ids)},
        n_detections={c: int(len(per[k]["scores"])) for k, c in enumerate(ids)},
        tp={c: int(t) for c, t in zip(ids, tps)},
        fp={c: int(f) for c, f in zip(ids, fps)},
        precision_at={c: (t / (t + f) if t + f else float("nan")) for c, t, f in zip(ids, tps, fps)},
        recall_at={c: (per[k]["tp"] / per[k]["npos"] if per[k]["npos"] else float("nan"))
                   for k, c in enumerate(ids)},
        total_tp=int(sum(tps)), total_fp=int(sum(fps)),
        total_truths=int(sum(per[k]["npos"] for k in range(len(ids)))),
        avg_iou=float(np.mean(ious)) if len(ious) else float("nan"),
    )
    if method == "coco":
        out.stats = res["stats"]
        out.ap50 = {c: per[k]["ap50"] for k, c in enumerate(ids)}
        out.ap75 = {c: per[k]["ap75"] for k, c in enumerate(ids)}
        out.coco_precision = res["precision"]
        out.coco_recall = res["recall"]
    return out


def _groups(d_img, d_cls, g_img, g_cls, n_cls):
    dkey = d_img * n_cls + d_cls
    gkey = g_img * n_cls + g_cls
    ukeys = np.unique(np.concatenate([dkey, gkey]))
    return dkey, np.searchsorted(ukeys, dkey), np.searchsorted(ukeys, gkey), len(ukeys)


# ----------------------------------------------------------------------------- VOC

def _voc(d_img, d_cls, d_score, d_box, g_img, g_cls, g_box, g_flag, n_cls,
         iou_threshold, score_threshold, use07):
    difficult = g_flag
    _, d_grp, g_grp, n_groups = _groups(d_img, d_cls, g_img, g_cls, n_cls)
    pos, valid = _pad_truths(g_grp, n_groups)
    n_det = len(d_score)

    # best overlap (VOC +1 convention) of each detection over the truths of its image+class
    ovmax = np.full(n_det, -np.inf)
    jmax = np.full(n_det, -1, dtype=np.int64)
    if n_det and pos.shape[1]:
        step = max(1, _BLOCK // pos.shape[1])
        for s in range(0, n_det, step):
            sl = slice(s, s + step)
            gi = pos[d_grp[sl]]  # (n, Gmax)
            ok = valid[d_grp[sl]]
            gb = g_box[np.maximum(gi, 0)]  # (n, Gmax, 4)
            bb = d_box[sl][:, None, :]
            iw = np.maximum(np.minimum(gb[..., 2], bb[..., 2]) - np.maximum(gb[..., 0], bb[..., 0]) + 1.0, 0.0)
            ih = np.maximum(np.minimum(gb[..., 3], bb[..., 3]) - np.maximum(gb[..., 1], bb[..., 1]) + 1.0, 0.0)
            inters = iw * ih
            uni = ((bb[..., 2] - bb[..., 0] + 1.0) * (bb[..., 3] - bb[..., 1] + 1.0)
                   + (gb[..., 2] - gb[..., 0] + 1.0) * (gb[..., 3] - gb[..., 1] + 1.0) - inters)
            with np.errstate(divide="ignore", invalid="ignore"):
                ov = np.where(ok, inters / uni, -np.inf)
            j = np.argmax(ov, axis=1)
            ovmax[sl] = ov[np.arange(len(j)), j]
            jmax[sl] = np.where(ok.any(axis=1), gi[np.arange(len(j)), j], -1)

    # score order per class; a detection is a TP if it is the first (in that order) whose
    # best overlap above the threshold is a given non-difficult object
    order = np.lexsort((np.arange(n_det), -d_score, d_cls))
    hit = (ovmax > iou_threshold) & (jmax >= 0)
    diff_hit = hit & difficult[np.maximum(jmax, 0)] if len(difficult) else np.zeros(n_det, bool)
    cand = hit & ~diff_hit
    cand_o = cand[order]
    tp_o = np.zeros(n_det, dtype=bool)
    if cand_o.any():
        cidx = np.nonzero(cand_o)[0]
        _, first = np.unique(jmax[order][cidx], return_index=True)
        tp_o[cidx[first]] = True
    fp_o = ~tp_o & ~diff_hit[order]

    cls_o = d_cls[order]
    bounds = np.searchsorted(cls_o, np.arange(n_cls + 1))
    npos_all = np.bincount(g_cls[~difficult], minlength=n_cls) if len(g_cls) else np.zeros(n_cls, int)
    above_o = d_score[order] >= score_threshold
    per = []
    for k in range(n_cls):
        sl = slice(bounds[k], bounds[k + 1])
        tp = np.cumsum(tp_o[sl]).astype(np.float64)
        fp = np.cumsum(fp_o[sl]).astype(np.float64)
        npos = int(npos_all[k])
        prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if npos:
            rec = tp / float(npos)
            ap = voc_ap(rec, prec, use07)
        else:
            rec = np.full(len(tp), np.nan)
            ap = float("nan")
        a = above_o[sl]
        per.append(dict(ap=ap, precision=prec, recall=rec, scores=d_score[order][sl], npos=npos,
                        tp=int(np.count_nonzero(tp_o[sl] & a)),
                        fp=int(np.count_nonzero(fp_o[sl] & a))))
    tp_ious = ovmax[order][tp_o & above_o]
    return dict(per_class=per, tp_ious=tp_ious)


# ----------------------------------------------------------------------------- COCO

def _coco(d_img, d_cls, d_score, d_box, g_img, g_cls, g_box, g_flag, n_cls,
          iou_threshold, score_threshold):
    crowd = g_flag
    iou_thrs = COCO_IOU_THRESHOLDS
    T = len(iou_thrs)
    near = np.nonzero(np.isclose(iou_thrs, iou_threshold, rtol=0, atol=1e-12))[0]
    if len(near):
        t_curve = int(near[0])
        thrs = iou_thrs
    else:  # an extra threshold for the curves only
        t_curve = T
        thrs = np.concatenate([iou_thrs, [iou_threshold]])
    thr_eff = np.minimum(thrs, 1 - 1e-10)
    TT = len(thrs)
    areas = np.asarray(COCO_AREA_RANGES, dtype=np.float64)
    A = len(areas)
    max_dets = COCO_MAX_DETS

    # COCO boxes are [x, y, w, h]; IoU as pycocotools' bbIou computes it
    dxywh = np.column_stack([d_box[:, 0], d_box[:, 1], d_box[:, 2] - d_box[:, 0], d_box[:, 3] - d_box[:, 1]])
    gxywh = np.column_stack([g_box[:, 0], g_box[:, 1], g_box[:, 2] - g_box[:, 0], g_box[:, 3] - g_box[:, 1]])
    d_area = dxywh[:, 2] * dxywh[:, 3]
    g_area = gxywh[:, 2] * gxywh[:, 3]
    g_ign = crowd[:, None] | (g_area[:, None] < areas[None, :, 0]) | (g_area[:, None] > areas[None, :, 1])  # (G, A)
    d_out = (d_area[:, None] < areas[None, :, 0]) | (d_area[:, None] > areas[None, :, 1])  # (D, A)

    # detections per image+class in score order (ties: input order), top maxDets[-1] kept
    dkey, d_grp, g_grp, n_groups = _groups(d_img, d_cls, g_img, g_cls, n_cls)
    order = np.lexsort((np.arange(len(d_score)), -d_score, dkey))
    rank = _group_ranks(dkey[order])
    keep = rank < max_dets[-1]
    order, rank = order[keep], rank[keep]
    n = len(order)
    o_grp = d_grp[order]
    o_box = dxywh[order]

    pos, valid = _pad_truths(g_grp, n_groups)
    gmax = pos.shape[1]
    grp_crowd = np.where(valid, crowd[np.maximum(pos, 0)], False) if gmax else np.zeros((n_groups, 0), bool)
    grp_ign = (np.where(valid[:, None, :], np.moveaxis(g_ign[np.maximum(pos, 0)], 2, 1), True)
               if gmax else np.zeros((n_groups, A, 0), bool))  # (n_groups, A, Gmax)

    dtm = np.zeros((n, A, TT), dtype=bool)  # matched
    dt_ig = np.zeros((n, A, TT), dtype=bool)  # matched to an ignored truth
    m_iou = np.zeros((n, A, TT))
    if n and gmax:
        gtm = np.zeros((n_groups, A, TT, gmax), dtype=bool)
        by_rank = np.argsort(rank, kind="stable")
        rank_bounds = np.searchsorted(rank[by_rank], np.arange(int(rank.max()) + 2))
        chunk = max(1, _BLOCK // (A * TT * gmax))
        for r in range(len(rank_bounds) - 1):
            sel_all = by_rank[rank_bounds[r]:rank_bounds[r + 1]]  # one detection per group
            for c in range(0, len(sel_all), chunk):
                sel = sel_all[c:c + chunk]
                g = o_grp[sel]
                gi = pos[g]
                ok_g = valid[g]
                ious = _bb_iou(o_box[sel], gxywh[np.maximum(gi, 0)], grp_crowd[g])
                ious = np.where(ok_g, ious, -1.0)  # (s, Gmax)
                ign = grp_ign[g][:, :, None, :]  # (s, A, 1, Gmax)
                avail = ok_g[:, None, None, :] & (~gtm[g] | grp_crowd[g][:, None, None, :])
                ok = avail & (ious[:, None, None, :] >= thr_eff[None, None, :, None])
                ok_reg = ok & ~ign
                cand = np.where(ok_reg.any(axis=-1, keepdims=True), ok_reg, ok)
                has = cand.any(axis=-1)  # (s, A, TT)
                sc = np.where(cand, ious[:, None, None, :], -np.inf)
                m = gmax - 1 - np.argmax(sc[..., ::-1], axis=-1)  # last of the maxima
                dtm[sel] = has
                dt_ig[sel] = has & np.take_along_axis(
                    np.broadcast_to(ign, has.shape + (gmax,)), m[..., None], axis=-1)[..., 0]
                m_iou[sel] = np.where(has, np.take_along_axis(
                    np.broadcast_to(ious[:, None, None, :], has.shape + (gmax,)), m[..., None], axis=-1)[..., 0], 0)
                si, ai, ti = np.nonzero(has)
                gtm[g[si], ai, ti, m[si, ai, ti]] = True
    dt_ig |= ~dtm & d_out[order][:, :, None]

    # accumulate as COCOeval.accumulate: per class, all images, by score then image, input order
    o_img = d_img[order]
    o_score = d_score[order]
    o_cls = d_cls[order]
    glob = np.lexsort((order, o_img, -o_score))
    by_cls = glob[np.argsort(o_cls[glob], kind="stable")]
    cls_bounds = np.searchsorted(o_cls[by_cls], np.arange(n_cls + 1))
    npig = np.zeros((n_cls, A), dtype=np.int64)
    for a in range(A):
        if len(g_cls):
            npig[:, a] = np.bincount(g_cls[~g_ign[:, a]], minlength=n_cls)
    R = len(COCO_RECALL_THRESHOLDS)
    M = len(max_dets)
    precision = -np.ones((T, R, n_cls, A, M))
    recall = -np.ones((T, n_cls, A, M))
    per = []
    tp_ious = []
    for k in range(n_cls):
        idx_k = by_cls[cls_bounds[k]:cls_bounds[k + 1]]
        rank_k = rank[idx_k]
        curve = None
        for a in range(A):
            if npig[k, a] == 0:
                continue
            for mi, md in enumerate(max_dets):
                idx = idx_k[rank_k < md]
                nd = len(idx)
                matched = dtm[idx, a, :].T  # (TT, nd)
                ignored = dt_ig[idx, a, :].T
                tps = matched & ~ignored
                fps = ~matched & ~ignored
                tp_sum = np.cumsum(tps, axis=1).astype(np.float64)
                fp_sum = np.cumsum(fps, axis=1).astype(np.float64)
                rc = tp_sum / npig[k, a]
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                if a == 0 and md == max_dets[-1]:
                    above = o_score[idx] >= score_threshold
                    sel_tp = tps[t_curve] & above
                    curve = (pr[t_curve].copy(), rc[t_curve].copy(), o_score[idx],
                             int(np.count_nonzero(sel_tp)),
                             int(np.count_nonzero(fps[t_curve] & above)))
                    tp_ious.append(m_iou[idx, a, t_curve][sel_tp])
                recall[:, k, a, mi] = rc[:T, -1] if nd else 0
                env = np.maximum.accumulate(pr[:T, ::-1], axis=1)[:, ::-1] if nd else pr[:T]
                for t in range(T):
                    inds = np.searchsorted(rc[t], COCO_RECALL_THRESHOLDS, side="left")
                    q = np.zeros(R)
                    ok = inds < nd
                    q[ok] = env[t, inds[ok]]
                    precision[t, :, k, a, mi] = q
        if curve is None:  # no (non-crowd) truths of this class: every kept detection is an FP
            idx = idx_k[rank_k < max_dets[-1]]
            fps = ~dtm[idx, 0, t_curve] & ~dt_ig[idx, 0, t_curve]
            curve = (np.zeros(len(idx)), np.full(len(idx), np.nan), o_score[idx], 0,
                     int(np.count_nonzero(fps & (o_score[idx] >= score_threshold))))
        p_k = precision[:, :, k, 0, M - 1]
        has_k = npig[k, 0] > 0
        per.append(dict(
            ap=float(np.mean(p_k)) if has_k else float("nan"),
            ap50=float(np.mean(p_k[0])) if has_k else float("nan"),
            ap75=float(np.mean(p_k[np.nonzero(iou_thrs == .75)[0]])) if has_k else float("nan"),
            precision=curve[0], recall=curve[1], scores=curve[2], npos=int(npig[k, 0]),
            tp=curve[3], fp=curve[4]))

    stats = _coco_summarize(precision, recall)
    return dict(per_class=per, stats=stats, precision=precision, recall=recall,
                tp_ious=np.concatenate(tp_ious) if tp_ious else np.zeros(0))


def _bb_iou(dxywh: np.ndarray, gxywh: np.ndarray, gcrowd: np.ndarray) -> np.ndarray:
    """pycocotools' bbIou for each detection (s, 4) against its truths (s, G, 4)."""
    d = dxywh[:, None, :]
    da = d[..., 2] * d[..., 3]
    ga = gxywh[..., 2] * gxywh[..., 3]
    w = np.minimum(d[..., 2] + d[..., 0], gxywh[..., 2] + gxywh[..., 0]) - np.maximum(d[..., 0], gxywh[..., 0])
    h = np.minimum(d[..., 3] + d[..., 1], gxywh[..., 3] + gxywh[..., 1]) - np.maximum(d[..., 1], gxywh[..., 1])
    inter = w * h
    u = np.where(gcrowd, da, da + ga - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((w > 0) & (h > 0), inter / u, 0.0)


def _coco_summarize(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """COCOeval.summarize()'s 12 numbers (-1 where no value is defined)."""
    iou = COCO_IOU_THRESHOLDS
    md = list(COCO_MAX_DETS)

    def summ(ap, iou_thr=None, area=0, max_det=100):
        m = md.index(max_det)
        s = precision if ap else recall
        if iou_thr is not None:
            s = s[np.nonzero(iou_thr == iou)[0]]
        s = s[:, :, :, area, m] if ap else s[:, :, area, m]
        v = s[s > -1]
        return -1.0 if v.size == 0 else float(np.mean(v))

    return np.array([
        summ(1), summ(1, .5, 0, md[2]), summ(1, .75, 0, md[2]),
        summ(1, None, 1, md[2]), summ(1, None, 2, md[2]), summ(1, None, 3, md[2]),
        summ(0, None, 0, md[0]), summ(0, None, 0, md[1]), summ(0, None, 0, md[2]),
        summ(0, None, 1, md[2]), summ(0, None, 2, md[2]), summ(0, None, 3, md[2]),
    ])
