"""The ``map``, ``valid`` and ``anchors`` commands of ``darknet-py``.

``register_commands(subparsers)`` adds the three subcommands to an argparse
subparsers object; each sets ``func`` to its handler (``handler(args) -> int``).

Box conventions written and scored here (see :mod:`darknet_py.metrics`):

* VOC (``comp4_det_test_<class>.txt``, ``--method voc07|voc``): Darknet's ``valid``
  convention, 1-based inclusive pixels: ``x1 = xc - w/2 + 1``, ``x2 = xc + w/2 + 1``,
  clamped to ``[1, width]`` (y likewise).  Ground truth from a label line
  ``class xc yc w h`` (normalised) is turned into the same convention, which recovers
  the VOC annotation's corners exactly for labels made by Darknet's ``voc_label.py``.
* COCO (``coco_results.json``, ``--method coco``): continuous coordinates,
  ``x1 = xc - w/2``, ``x2 = xc + w/2``, clamped to ``[0, width]``; the JSON holds
  ``bbox = [x1, y1, x2 - x1, y2 - y1]``.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = [
    "register_commands", "cmd_map", "cmd_valid", "cmd_anchors",
    "collect_detections", "load_truths", "detection_rows", "evaluate_network",
    "COCO_CATEGORY_IDS",
]

# COCO's category ids of its 80 detection classes, in the order of coco.names.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51,
    52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)


def _error(message: str) -> Exception:
    from darknet_py import DarknetError

    return DarknetError(message)


def _dataset():
    """The dataset helpers (read_data_cfg, read_list, label_path, read_labels)."""
    from darknet_py.data import dataset

    return dataset


def _load_net(cfg: str, weights: Optional[str], device: str = "cpu"):
    import darknet_py

    return darknet_py.load(cfg, weights, device=device)


def _tqdm(it, **kw):
    from tqdm import tqdm

    return tqdm(it, **kw)


# ----------------------------------------------------------------------------- inputs

def read_image_list(data_path: str, key: str) -> Tuple[Dict[str, str], List[str]]:
    """The .data file's options and the image paths of its ``key`` list (train/valid)."""
    ds = _dataset()
    if not os.path.isfile(data_path):
        raise _error(f"data file {data_path!r} not found")
    data = ds.read_data_cfg(data_path)
    lst = data.get(key)
    if not lst:
        raise _error(f"{data_path}: no '{key}=' entry (the list of {key} images)")
    if not os.path.isfile(lst):
        raise _error(f"{data_path}: {key} list {lst!r} not found")
    images = [p for p in ds.read_list(lst) if str(p).strip()]
    if not images:
        raise _error(f"{data_path}: {key} list {lst!r} is empty: no images to use")
    return data, images


def class_names(data: Dict[str, str], net=None) -> List[str]:
    names = getattr(net, "names", None) if net is not None else None
    if names:
        return [str(n) for n in names]
    path = data.get("names")
    if path and os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
        if names:
            return names
    n = int(data.get("classes", 0) or 0)
    if n <= 0:
        raise _error("no class names: the network has none and the .data file gives neither "
                     "'names=' nor 'classes='")
    return [str(i) for i in range(n)]


def image_size(path: str) -> Tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError) as e:
        raise _error(f"cannot read image {path!r}: {e}") from None


def _read_labels(ds, image_path: str) -> np.ndarray:
    lp = ds.label_path(image_path)
    try:
        lab = np.asarray(ds.read_labels(lp), dtype=np.float64)
    except Exception as e:
        from darknet_py import DarknetError

        if isinstance(e, (DarknetError, OSError, ValueError)):
            raise _error(f"labels of image {image_path!r} ({lp}): {e}") from None
        raise
    if lab.size == 0:
        return np.zeros((0, 5))
    if lab.ndim != 2 or lab.shape[1] < 5:
        raise _error(f"labels of image {image_path!r} ({lp}): expected rows "
                     f"'class x y w h [difficult]', got shape {lab.shape}")
    return lab


def _corners(xc, yc, w, h, img_w, img_h, convention):
    xc, yc, w, h = (np.asarray(v, dtype=np.float64) for v in (xc, yc, w, h))
    if convention == "voc":
        x1, y1 = xc - w / 2 + 1, yc - h / 2 + 1
        x2, y2 = xc + w / 2 + 1, yc + h / 2 + 1
        lo = 1.0
    else:
        x1, y1 = xc - w / 2, yc - h / 2
        x2, y2 = xc + w / 2, yc + h / 2
        lo = 0.0
    return x1, y1, x2, y2, lo


def load_truths(images: Sequence[str], convention: str, n_classes: Optional[int] = None,
                sizes: Optional[Sequence[Tuple[int, int]]] = None) -> List[tuple]:
    """Ground-truth rows ``(image_index, class, x1, y1, x2, y2, difficult)`` in pixels."""
    ds = _dataset()
    rows = []
    for i, path in enumerate(images):
        lab = _read_labels(ds, path)
        if not len(lab):
            continue
        W, H = sizes[i] if sizes is not None else image_size(path)
        if n_classes is not None:
            bad = (lab[:, 0] < 0) | (lab[:, 0] >= n_classes) | (lab[:, 0] != np.round(lab[:, 0]))
            if bad.any():
                raise _error(f"labels of image {path!r}: class {lab[bad][0, 0]:g} is not in "
                             f"0..{n_classes - 1}")
        x1, y1, x2, y2, _ = _corners(lab[:, 1] * W, lab[:, 2] * H, lab[:, 3] * W, lab[:, 4] * H,
                                     W, H, convention)
        diff = lab[:, 5] if lab.shape[1] > 5 else np.zeros(len(lab))
        for j in range(len(lab)):
            rows.append((i, int(lab[j, 0]), x1[j], y1[j], x2[j], y2[j], int(diff[j] != 0)))
    return rows


def detection_rows(image_id, dets, img_w: int, img_h: int, thresh: float, n_classes: int,
                   convention: str) -> List[tuple]:
    """``(image_id, class, score, x1, y1, x2, y2)`` rows for one image's detections, one per
    class whose probability is ``>= thresh`` (Darknet's ``valid``: every class of a box),
    boxes clamped to the image as Darknet's ``valid`` clamps them."""
    rows = []
    seen = set()
    for d in dets:
        xc, yc, w, h = (float(v) for v in d.box)
        x1, y1, x2, y2, lo = _corners(xc, yc, w, h, img_w, img_h, convention)
        x1, y1 = max(float(x1), lo), max(float(y1), lo)
        x2, y2 = min(float(x2), float(img_w)), min(float(y2), float(img_h))
        x2, y2 = max(x2, x1), max(y2, y1)
        probs = getattr(d, "probs", None)
        pairs = None
        if probs is not None:
            p = np.asarray(probs, dtype=np.float64).ravel()
            if p.size == n_classes:
                js = np.nonzero((p > 0) & (p >= thresh))[0]
                pairs = [(int(j), float(p[j])) for j in js]
        if pairs is None:
            pairs = [(int(d.class_id), float(d.prob))] if float(d.prob) >= thresh else []
        for j, s in pairs:
            key = (j, x1, y1, x2, y2, s)
            if key in seen:  # one Detection per class of the same box: count it once
                continue
            seen.add(key)
            rows.append((image_id, j, s, x1, y1, x2, y2))
    return rows


def collect_detections(net, images: Sequence[str], thresh: float = .005, hier_thresh: float = .5,
                       nms: float = .45, progress: bool = True, desc: str = "detect", class_map=None):
    """Run ``net.detect`` over ``images``: (list of per-image Detection lists, image sizes,
    seconds spent inside ``detect``). class_map: WordTree nodes to score (Network.detections)."""
    extra = {} if class_map is None else {"class_map": class_map}
    out, sizes = [], []
    spent = 0.0
    for path in _tqdm(images, desc=desc, unit="img", disable=not progress, file=sys.stderr):
        sizes.append(image_size(path))
        t = time.perf_counter()
        dets = net.detect(path, thresh=thresh, hier_thresh=hier_thresh, nms=nms, **extra)
        spent += time.perf_counter() - t
        out.append(list(dets))
    return out, sizes, spent


def evaluate_network(net, images, names, method="voc07", thresh=.005, hier_thresh=.5, nms=.45,
                     iou=.5, conf_thresh=.25, progress=True, desc="map", class_map=None, truth_classes=None):
    """Detect over ``images`` and score against their labels: (EvalResult, images/s).

    class_map: for a WordTree net, the tree node scored as class j (see Network.detections).
    truth_classes: a function relabelling the label files' class ids (e.g. a fine node to its
    parent, to score the coarse classes of the same images)."""
    from darknet_py.metrics import evaluate

    convention = "coco" if method == "coco" else "voc"
    dets, sizes, spent = collect_detections(net, images, thresh, hier_thresh, nms, progress, desc, class_map)
    truths = load_truths(images, convention, len(names), sizes)
    if truth_classes is not None:
        truths = [(i, int(truth_classes(c)), *rest) for i, c, *rest in truths]
    rows = []
    for i, (d, (w, h)) in enumerate(zip(dets, sizes)):
        rows.extend(detection_rows(i, d, w, h, thresh, len(names), convention))
    res = evaluate(rows, truths, method=method, iou_threshold=iou, score_threshold=conf_thresh,
                   classes=range(len(names)))
    return res, (len(images) / spent if spent > 0 else float("inf"))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


def _parse_sizes(text: str) -> List[int]:
    try:
        sizes = [int(s) for s in str(text).replace(" ", "").split(",") if s]
    except ValueError:
        raise _error(f"bad --sizes {text!r}: use e.g. 288,352,416") from None
    bad = [s for s in sizes if s <= 0 or s % 32]
    if not sizes or bad:
        raise _error(f"bad --sizes {text!r}: sizes must be positive multiples of 32")
    return sizes


# ----------------------------------------------------------------------------- map

def write_pr_curves(res, names: Sequence[str], out_dir: str) -> List[str]:
    from darknet_py.plot import line_chart

    paths = []
    for c in res.classes:
        c = int(c)
        if not res.n_truths.get(c):
            continue
        name = names[c] if c < len(names) else str(c)
        rec, prec = res.recall[c], res.precision[c]
        path = os.path.join(out_dir, f"pr_{c:03d}_{_safe(name)}.png")
        line_chart(path, {f"{name} (AP {100 * res.ap[c]:.2f}%)": (rec, prec)},
                   title=f"precision / recall: {name} ({res.method}, IoU {res.iou_threshold:g})",
                   xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        paths.append(path)
    return paths


def cmd_map(args) -> int:
    data, images = read_image_list(args.data, "valid")
    if args.limit:
        images = images[: args.limit]
    method = args.method or ("coco" if str(data.get("eval", "")).strip() == "coco" else "voc07")
    sizes = _parse_sizes(args.sizes) if args.sizes else None
    net = _load_net(args.cfg, args.weights, args.device)
    names = class_names(data, net)
    common = dict(method=method, thresh=args.thresh, hier_thresh=args.hier_thresh, nms=args.nms,
                  iou=args.iou, conf_thresh=args.conf_thresh, progress=not args.quiet)
    if sizes is None:
        res, ips = evaluate_network(net, images, names, desc=f"map {net.width}x{net.height}", **common)
        print(res.table(names))
        print(f"{len(images)} images, {ips:.2f} images/s (network {net.width}x{net.height})")
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            with open(os.path.join(args.out, "map.txt"), "w", encoding="utf-8") as f:
                f.write(res.table(names) + "\n")
            paths = write_pr_curves(res, names, args.out)
            print(f"wrote {len(paths)} PR curves and map.txt to {args.out}")
        return 0

    w0, h0 = net.width, net.height
    rows = []
    try:
        for s in sizes:
            net.resize(s, s)
            res, ips = evaluate_network(net, images, names, desc=f"map {s}x{s}", **common)
            rows.append((s, res.map, ips))
            print(f"{s}x{s}: mAP {100 * res.map:.2f}%  {ips:.2f} images/s", flush=True)
    finally:
        net.resize(w0, h0)
    label = {"voc07": "mAP (VOC07 11-pt)", "voc": "mAP (VOC all-pt)", "coco": "mAP@[.5:.95]"}[method]
    table = [f"{'size':>9}  {label:>18}  {'images/s':>9}"]
    for s, m, ips in rows:
        table.append(f"{f'{s}x{s}':>9}  {100 * m:>17.2f}%  {ips:>9.2f}")
    text = "\n".join(table)
    print(text)
    if args.out:
        from darknet_py.plot import line_chart

        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "sizes.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        line_chart(os.path.join(args.out, "sizes.png"),
                   {"input sizes": ([r[2] for r in rows], [100 * r[1] for r in rows])},
                   title="speed / accuracy by input size", xlabel="images/s",
                   ylabel=f"{label} (%)", markers=True)
    return 0


# ----------------------------------------------------------------------------- valid

def _coco_image_id(path: str):
    stem = os.path.splitext(os.path.basename(path))[0]
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else stem


def cmd_valid(args) -> int:
    data, images = read_image_list(args.data, "valid")
    if args.limit:
        images = images[: args.limit]
    net = _load_net(args.cfg, args.weights, args.device)
    names = class_names(data, net)
    dets, sizes, spent = collect_detections(net, images, args.thresh, args.hier_thresh, args.nms,
                                            not args.quiet, "valid")
    out = args.out
    os.makedirs(out, exist_ok=True)
    is_coco = str(data.get("eval", "")).strip() == "coco" and len(names) == len(COCO_CATEGORY_IDS)
    files = [open(os.path.join(out, f"{args.prefix}{n}.txt"), "w", encoding="utf-8") for n in names]
    results = []
    try:
        for path, d, (w, h) in zip(images, dets, sizes):
            stem = os.path.splitext(os.path.basename(path))[0]
            for _, j, s, x1, y1, x2, y2 in detection_rows(stem, d, w, h, args.thresh, len(names), "voc"):
                files[j].write(f"{stem} {s:f} {x1:f} {y1:f} {x2:f} {y2:f}\n")
            img_id = _coco_image_id(path)
            for _, j, s, x1, y1, x2, y2 in detection_rows(img_id, d, w, h, args.thresh, len(names), "coco"):
                results.append({"image_id": img_id,
                                "category_id": COCO_CATEGORY_IDS[j] if is_coco else j,
                                "bbox": [round(x1, 4), round(y1, 4), round(x2 - x1, 4), round(y2 - y1, 4)],
                                "score": round(s, 6)})
    finally:
        for f in files:
            f.close()
    jpath = os.path.join(out, "coco_results.json")
    with open(jpath, "w", encoding="utf-8") as f:
        json.dump(results, f)
    print(f"{len(images)} images ({len(images) / spent if spent > 0 else float('inf'):.2f} images/s): "
          f"wrote {len(names)} {args.prefix}<class>.txt files and {jpath} ({len(results)} boxes)")
    return 0


# ----------------------------------------------------------------------------- anchors

def _cfg_anchors(path: str) -> np.ndarray:
    """The ``anchors=`` of the last [region] section of a cfg (text lookup of one key)."""
    if not os.path.isfile(path):
        raise _error(f"cfg {path!r} not found")
    section, found = None, None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].split(";", 1)[0].strip()
            if line.startswith("["):
                section = line.strip("[] ").lower()
            elif section in ("region", "yolo") and "=" in line:
                k, v = line.split("=", 1)
                if k.strip() == "anchors":
                    found = v
    if found is None:
        raise _error(f"{path}: no anchors= in a [region] section")
    return _parse_anchor_text(found, path)


def _parse_anchor_text(text: str, where: str) -> np.ndarray:
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise _error(f"{where}: bad anchors {text!r}") from None
    if not vals or len(vals) % 2:
        raise _error(f"{where}: anchors need an even number of values, got {len(vals)}")
    return np.asarray(vals).reshape(-1, 2)


def load_train_wh(data_path: str, width: int, height: int, progress: bool = False) -> np.ndarray:
    """Box (w, h) of every training label, in region grid units (pixels / 32) at
    network size ``width`` x ``height``."""
    ds = _dataset()
    _, images = read_image_list(data_path, "train")
    parts = []
    for path in _tqdm(images, desc="labels", unit="img", disable=not progress, file=sys.stderr):
        lab = _read_labels(ds, path)
        if not len(lab):
            continue
        wh = lab[:, 3:5] * np.array([width / 32.0, height / 32.0])
        bad = ~np.isfinite(wh).all(axis=1) | (wh <= 0).any(axis=1)
        if bad.any():
            raise _error(f"labels of image {path!r} ({ds.label_path(path)}): a box has a "
                         f"non-positive width or height: {lab[bad][0].tolist()}")
        parts.append(wh)
    if not parts:
        raise _error(f"{data_path}: the training labels hold no boxes")
    return np.concatenate(parts)


def cmd_anchors(args) -> int:
    from darknet_py.anchors import kmeans, parse_ks, sweep

    if args.num < 1:
        raise _error(f"--num must be >= 1, got {args.num}")
    if args.width <= 0 or args.height <= 0 or args.width % 32 or args.height % 32:
        raise _error(f"--width/--height must be positive multiples of 32, got {args.width}x{args.height}")
    given = None
    if args.given:
        given = _parse_anchor_text(args.given, "--given")
    elif args.cfg:
        given = _cfg_anchors(args.cfg)
    wh = load_train_wh(args.data, args.width, args.height, progress=not args.quiet)
    distance = "sse" if args.sse else "iou"
    res = kmeans(wh, args.num, distance, seed=args.seed, restarts=args.restarts)
    print(f"{len(wh)} boxes, k={args.num}, distance {'SSE' if args.sse else '1 - IoU'}, "
          f"network {args.width}x{args.height}, seed {args.seed}")
    print(f"{'#':>3}  {'w (cells)':>10}  {'h (cells)':>10}  {'w (px)':>8}  {'h (px)':>8}")
    for i, (w, h) in enumerate(res.anchors):
        print(f"{i:>3}  {w:>10.4f}  {h:>10.4f}  {32 * w:>8.1f}  {32 * h:>8.1f}")
    print(res.line())
    print(f"avg IoU = {100 * res.avg_iou:.2f}%")
    if given is not None:
        from darknet_py.anchors import avg_iou

        print(f"given anchors ({len(given)}): avg IoU = {100 * avg_iou(wh, given):.2f}%")
    if args.sweep:
        ks = parse_ks(args.sweep)
        rows = sweep(wh, ks, seed=args.seed, restarts=args.restarts, given=given)
        lines = [f"{'K':>3}  {'IoU clustering':>14}  {'SSE clustering':>14}  {'given anchors':>13}"]
        for r in rows:
            g = f"{100 * r['given']:.2f}%" if r["given"] is not None else "-"
            lines.append(f"{r['k']:>3}  {100 * r['iou']:>13.2f}%  {100 * r['sse']:>13.2f}%  {g:>13}")
        text = "\n".join(lines)
        print(text)
        out = args.out or "."
        os.makedirs(out, exist_ok=True)
        from darknet_py.plot import line_chart

        series = {"IoU clustering (1 - IoU)": ([r["k"] for r in rows], [100 * r["iou"] for r in rows]),
                  "SSE clustering": ([r["k"] for r in rows], [100 * r["sse"] for r in rows])}
        if given is not None:
            series[f"given anchors (K={len(given)})"] = ([len(given)], [100 * avg_iou(wh, given)])
        png = os.path.join(out, "anchors_sweep.png")
        line_chart(png, series, title="dimension clusters: average IoU vs K",
                   xlabel="number of clusters K", ylabel="average IoU (%)", markers=True)
        with open(os.path.join(out, "anchors_sweep.txt"), "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"wrote {png}")
    return 0


# ----------------------------------------------------------------------------- argparse

def _add_detect_options(p, thresh_default):
    p.add_argument("data", help=".data file (valid=, names=, classes=, eval=)")
    p.add_argument("cfg", help="network cfg")
    p.add_argument("weights", help="weights file")
    p.add_argument("--thresh", type=float, default=thresh_default,
                   help=f"detection threshold (default {thresh_default})")
    p.add_argument("--hier-thresh", type=float, default=.5, help="WordTree threshold (default .5)")
    p.add_argument("--nms", type=float, default=.45, help="NMS IoU (default .45)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from darknet_py.cli import add_device_argument

    add_device_argument(p)


def register_commands(subparsers) -> None:
    """Add ``map``, ``valid`` and ``anchors`` to an argparse subparsers object."""
    p = subparsers.add_parser("map", help="mean average precision over the .data valid list",
                              description="Run the network over the valid list and report "
                                          "per-class AP and mAP (VOC07 11-point, VOC all-point "
                                          "or COCO), PR curves, and with --sizes a speed/"
                                          "accuracy table over input sizes.")
    _add_detect_options(p, .005)
    p.add_argument("--iou", type=float, default=.5, help="IoU for a match (default .5)")
    p.add_argument("--method", choices=("voc07", "voc", "coco"), default=None,
                   help="voc07 (11-point), voc (all-point) or coco; default coco when the "
                        ".data says eval=coco, else voc07")
    p.add_argument("--conf-thresh", type=float, default=.25,
                   help="score for the TP/FP/precision/recall columns (default .25)")
    p.add_argument("--sizes", default=None, help="evaluate at these input sizes, e.g. "
                                                "288,352,416,480,544,608")
    p.add_argument("--out", default=None, help="directory for PR curve PNGs and the table")
    p.set_defaults(func=cmd_map)

    p = subparsers.add_parser("valid", help="write comp4_det_test_<class>.txt files and a COCO JSON",
                              description="Run the network over the valid list; write Darknet/VOC "
                                          "comp4 files (1-based pixels) and coco_results.json.")
    _add_detect_options(p, .005)
    p.add_argument("--out", default="results", help="output directory (default results)")
    p.add_argument("--prefix", default="comp4_det_test_", help="per-class file prefix")
    p.set_defaults(func=cmd_valid)

    p = subparsers.add_parser("anchors", help="k-means dimension clusters over the training labels",
                              description="Cluster the training boxes' sizes into K anchors "
                                          "(distance 1 - IoU, or --sse) in region grid units.")
    p.add_argument("data", help=".data file (train=)")
    p.add_argument("--num", type=int, required=True, help="number of anchors K")
    p.add_argument("--width", type=int, required=True, help="network width in pixels")
    p.add_argument("--height", type=int, required=True, help="network height in pixels")
    p.add_argument("--sse", action="store_true", help="Euclidean (SSE) clustering instead of 1 - IoU")
    p.add_argument("--sweep", default=None, help="K range for the avg IoU vs K table/PNG, e.g. 1..15")
    p.add_argument("--cfg", default=None, help="compare with this cfg's [region] anchors")
    p.add_argument("--given", default=None, help="compare with these anchors (w1,h1,w2,h2,...)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--restarts", type=int, default=5, help="k-means restarts (default 5)")
    p.add_argument("--out", default=None, help="directory for the sweep PNG and table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_anchors)
