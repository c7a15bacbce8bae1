"""darknet_py.metrics: hand-built cases with known answers, COCO against pycocotools,
VOC against a straightforward devkit implementation written here."""
import contextlib
import io
import time

import numpy as np
import pytest
from pycocotools.coco import COCO  # test-only dependency (the `test` extra): no skip
from pycocotools.cocoeval import COCOeval

from darknet_py import DarknetError
from darknet_py.metrics import COCO_STAT_NAMES, evaluate, voc_ap

METHODS = ("voc07", "voc", "coco")


# ----------------------------------------------------------------------------- hand-built

@pytest.mark.parametrize("method", METHODS)
def test_perfect_detections_score_one(method):
    truths = [(0, 0, 10, 10, 60, 80), (0, 1, 100, 20, 180, 90), (1, 0, 5, 5, 300, 200)]
    dets = [(im, c, 0.9, x1, y1, x2, y2) for im, c, x1, y1, x2, y2 in truths]
    r = evaluate(dets, truths, method=method)
    assert r.map == pytest.approx(1.0, abs=1e-12)
    assert r.ap == {0: pytest.approx(1.0), 1: pytest.approx(1.0)}
    assert r.tp == {0: 2, 1: 1} and r.fp == {0: 0, 1: 0}
    assert r.avg_iou == pytest.approx(1.0)
    if method == "coco":
        assert r.stats[0] == pytest.approx(1.0) and r.stats[1] == pytest.approx(1.0)


@pytest.mark.parametrize("method", METHODS)
def test_duplicate_is_one_false_positive(method):
    truths = [(0, 0, 10, 10, 60, 80)]
    dets = [(0, 0, 0.9, 10, 10, 60, 80), (0, 0, 0.8, 11, 10, 60, 81)]
    r = evaluate(dets, truths, method=method, score_threshold=0.5)
    assert r.tp[0] == 1 and r.fp[0] == 1
    assert r.ap[0] == pytest.approx(1.0)  # the duplicate ranks below the full recall
    np.testing.assert_allclose(r.precision[0], [1.0, 0.5])
    np.testing.assert_allclose(r.recall[0], [1.0, 1.0])
    # a duplicate ranked first costs precision: the copy is the TP, the exact box the FP
    r2 = evaluate([(0, 0, 0.7, 10, 10, 60, 80), (0, 0, 0.8, 11, 10, 60, 81)], truths,
                  method=method, score_threshold=0.5)
    assert r2.tp[0] == 1 and r2.fp[0] == 1


def test_missed_box_halves_recall():
    truths = [(0, 0, 10, 10, 60, 80), (0, 0, 100, 100, 150, 150)]
    dets = [(0, 0, 0.9, 10, 10, 60, 80)]
    assert evaluate(dets, truths, "voc").ap[0] == pytest.approx(0.5)
    assert evaluate(dets, truths, "voc07").ap[0] == pytest.approx(6 / 11)  # t = 0, .1, ..., .5
    r = evaluate(dets, truths, "coco")
    assert r.ap50[0] == pytest.approx(51 / 101)  # recall points 0 .. .50
    assert r.recall_at[0] == pytest.approx(0.5)


@pytest.mark.parametrize("method", ("voc07", "voc"))
def test_ties_keep_input_order(method):
    truths = [(0, 0, 10, 10, 60, 80)]
    fp = (0, 0, 0.5, 200, 200, 250, 250)
    tp = (0, 0, 0.5, 10, 10, 60, 80)
    assert evaluate([tp, fp], truths, method).ap[0] == pytest.approx(1.0)
    assert evaluate([fp, tp], truths, method).ap[0] == pytest.approx(0.5)  # precision 1/2 at recall 1


def test_difficult_is_neither_tp_nor_fp():
    truths = [(0, 0, 10, 10, 60, 80, 0), (0, 0, 100, 100, 150, 150, 1)]
    dets = [(0, 0, 0.9, 100, 100, 150, 150), (0, 0, 0.8, 10, 10, 60, 80)]
    for m in ("voc07", "voc"):
        r = evaluate(dets, truths, m)
        assert r.n_truths[0] == 1
        assert r.tp[0] == 1 and r.fp[0] == 0
        assert r.ap[0] == pytest.approx(1.0)
    # in COCO the 7th column is iscrowd: the crowd match is ignored, not a false positive
    r = evaluate(dets, truths, "coco")
    assert r.n_truths[0] == 1 and r.fp[0] == 0 and r.ap[0] == pytest.approx(1.0)


def test_pixel_conventions():
    truths = [(0, 0, 1, 1, 10, 10)]
    dets = [(0, 0, 0.9, 1, 1, 10, 5)]
    # VOC +1: 10 x 5 inside 10 x 10 -> 0.5, which is not > 0.5
    assert evaluate(dets, truths, "voc", iou_threshold=0.5).tp[0] == 0
    r = evaluate(dets, truths, "voc", iou_threshold=0.4)
    assert r.tp[0] == 1 and r.avg_iou == pytest.approx(0.5)
    # COCO continuous: 9 x 4 inside 9 x 9
    r = evaluate(dets, truths, "coco", iou_threshold=0.4)
    assert r.avg_iou == pytest.approx(36 / 81)


def test_class_without_truths_and_string_image_ids():
    truths = [("a", 0, 0, 0, 10, 10)]
    dets = [("a", 0, 0.9, 0, 0, 10, 10), ("b", 2, 0.8, 0, 0, 10, 10)]
    r = evaluate(dets, truths, "voc", classes=range(3))
    assert np.isnan(r.ap[1]) and np.isnan(r.ap[2])
    assert r.map == pytest.approx(1.0)
    assert r.fp[2] == 1
    assert "100.00%" in r.table(["cat", "dog", "cow"])


def test_empty_inputs():
    r = evaluate([], [(0, 0, 0, 0, 10, 10)], "voc")
    assert r.ap[0] == 0.0 and r.map == 0.0
    r = evaluate(np.zeros((0, 7)), np.zeros((0, 6)), "coco")
    assert list(r.stats) == [-1.0] * 12


@pytest.mark.parametrize("kwargs, match", [
    (dict(detections=[(0, 0, 0.5, 0, 0, 1)], truths=[]), "detections row 0 has 6 values"),
    (dict(detections=[], truths=[(0, 0, 0, 1)]), "truths row 0 has 4 values"),
    (dict(detections=[(0, 0, "x", 0, 0, 1, 1)], truths=[]), "non-numeric"),
    (dict(detections=[(0, 0, 0.5, 5, 0, 1, 1)], truths=[]), "x2 < x1"),
    (dict(detections=[(0, 0.5, 0.5, 0, 0, 1, 1)], truths=[]), "not an integer"),
    (dict(detections=[(0, 0, np.nan, 0, 0, 1, 1)], truths=[]), "not finite"),
    (dict(detections=[], truths=[], method="voc12"), "unknown evaluation method"),
    (dict(detections=[], truths=[], iou_threshold=1.5), "iou_threshold"),
])
def test_bad_inputs(kwargs, match):
    with pytest.raises(DarknetError, match=match):
        evaluate(**kwargs)


def test_voc_ap_formula():
    rec = np.array([0.1, 0.2, 0.2, 0.4])
    prec = np.array([1.0, 1.0, 0.67, 0.8])
    assert voc_ap(rec, prec) == pytest.approx(0.2 * 1.0 + 0.2 * 0.8)
    assert voc_ap(rec, prec, True) == pytest.approx((1 + 1 + 1 + 0.8 + 0.8) / 11)


# ----------------------------------------------------------------------------- random

def _random_set(seed, n_img=25, n_cls=4, crowd=0.05, ties=True):
    """Truths, detections near them (jittered, some wrong class, some duplicates) and
    background false positives; scores rounded to 0.1 when ``ties`` so many are equal."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for im in range(n_img):
        for _ in range(rng.integers(0, 8)):
            c = int(rng.integers(n_cls))
            w, h = rng.uniform(4, 200, 2)
            x, y = rng.uniform(0, 400, 2)
            gts.append((im, c, x, y, x + w, y + h, int(rng.random() < crowd)))
            for _ in range(rng.integers(0, 3)):
                j = rng.normal(0, 0.15, 4) * [w, h, w, h]
                s = round(rng.random(), 1) if ties else rng.random()
                cc = c if rng.random() < .9 else int(rng.integers(n_cls))
                dets.append((im, cc, s, x + j[0], y + j[1], x + w + j[2], y + h + j[3]))
        for _ in range(rng.integers(0, 4)):
            c = int(rng.integers(n_cls))
            w, h = rng.uniform(2, 150, 2)
            x, y = rng.uniform(0, 400, 2)
            s = round(rng.random(), 1) if ties else rng.random()
            dets.append((im, c, s, x, y, x + w, y + h))
    dets = [d for d in dets if d[5] > d[3] and d[6] > d[4]]
    return dets, gts


def _pycocotools(dets, gts, n_img, n_cls):
    anns = [{"id": i + 1, "image_id": im, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1],
             "area": (x2 - x1) * (y2 - y1), "iscrowd": cr}
            for i, (im, c, x1, y1, x2, y2, cr) in enumerate(gts)]
    gt = COCO()
    gt.dataset = {"images": [{"id": i} for i in range(n_img)],
                  "categories": [{"id": c} for c in range(n_cls)], "annotations": anns}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        res = [{"image_id": im, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
               for im, c, s, x1, y1, x2, y2 in dets]
        ev = COCOeval(gt, gt.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed, ties", [(0, True), (1, True), (2, False), (3, True)])
def test_coco_equals_pycocotools(seed, ties):
    dets, gts = _random_set(seed, ties=ties)
    assert len(dets) > 100
    ref = _pycocotools(dets, gts, 25, 4)
    r = evaluate(dets, gts, "coco", classes=range(4))
    np.testing.assert_allclose(r.stats, ref.stats, rtol=0, atol=1e-6,
                               err_msg=f"stats {COCO_STAT_NAMES}")
    np.testing.assert_allclose(r.coco_precision, ref.eval["precision"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.coco_recall, ref.eval["recall"], rtol=0, atol=1e-6)
    assert r.map == pytest.approx(ref.stats[0], abs=1e-6)


def test_coco_max_dets_and_speed():
    """Over 100 detections in one image+class (the maxDets cut) and a few thousand in all."""
    dets, gts = _random_set(7, n_img=300, n_cls=6, ties=False)
    rng = np.random.default_rng(1)
    for _ in range(150):
        x, y = rng.uniform(0, 300, 2)
        w, h = rng.uniform(5, 100, 2)
        dets.append((0, 1, round(rng.random(), 2), x, y, x + w, y + h))
    assert len(dets) > 1500
    ref = _pycocotools(dets, gts, 300, 6)
    t = time.perf_counter()
    r = evaluate(dets, gts, "coco", classes=range(6))
    elapsed = time.perf_counter() - t
    np.testing.assert_allclose(r.stats, ref.stats, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r.coco_precision, ref.eval["precision"], rtol=0, atol=1e-6)
    assert elapsed < 5.0, f"{len(dets)} detections took {elapsed:.2f}s"


def _devkit_voc(dets, gts, cls, iou_threshold, use_07):
    """A plain transcription of the devkit's per-class loop (voc_eval.py)."""
    recs = {}
    npos = 0
    for im, c, x1, y1, x2, y2, diff in gts:
        if c != cls:
            continue
        r = recs.setdefault(im, {"bbox": [], "difficult": [], "det": []})
        r["bbox"].append([x1, y1, x2, y2])
        r["difficult"].append(bool(diff))
        r["det"].append(False)
        npos += not diff
    mine = [d for d in dets if d[1] == cls]
    mine = sorted(mine, key=lambda d: -d[2])  # Python's sort is stable
    tp = np.zeros(len(mine))
    fp = np.zeros(len(mine))
    for d, (im, _, _, bx1, by1, bx2, by2) in enumerate(mine):
        r = recs.get(im, {"bbox": [], "difficult": [], "det": []})
        ovmax, jmax = -np.inf, -1
        for j, (gx1, gy1, gx2, gy2) in enumerate(r["bbox"]):
            iw = max(min(gx2, bx2) - max(gx1, bx1) + 1.0, 0.0)
            ih = max(min(gy2, by2) - max(gy1, by1) + 1.0, 0.0)
            inters = iw * ih
            uni = (bx2 - bx1 + 1.0) * (by2 - by1 + 1.0) + (gx2 - gx1 + 1.0) * (gy2 - gy1 + 1.0) - inters
            ov = inters / uni
            if ov > ovmax:
                ovmax, jmax = ov, j
        if ovmax > iou_threshold:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1
                    r["det"][jmax] = True
                else:
                    fp[d] = 1
        else:
            fp[d] = 1
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = [0.0] + list(rec) + [1.0]
    mpre = [0.0] + list(prec) + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1)
               if mrec[i + 1] != mrec[i])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("method", ["voc07", "voc"])
def test_voc_equals_devkit(seed, method):
    dets, gts = _random_set(seed + 10, n_img=30, crowd=0.15, ties=(seed == 1))
    dets = [(im, c, s, round(x1), round(y1), round(x2), round(y2)) for im, c, s, x1, y1, x2, y2 in dets]
    gts = [(im, c, round(x1), round(y1), round(x2), round(y2), d) for im, c, x1, y1, x2, y2, d in gts]
    for thr in (0.5, 0.7):
        r = evaluate(dets, gts, method, iou_threshold=thr, classes=range(4))
        aps = [_devkit_voc(dets, gts, c, thr, method == "voc07") for c in range(4)]
        np.testing.assert_allclose([r.ap[c] for c in range(4)], aps, rtol=0, atol=1e-9)
        assert r.map == pytest.approx(np.mean(aps), abs=1e-9)


def test_numpy_array_input_matches_list_input():
    dets, gts = _random_set(4)
    a = evaluate(np.array(dets), np.array(gts), "coco")
    b = evaluate(dets, gts, "coco")
    np.testing.assert_array_equal(a.stats, b.stats)
