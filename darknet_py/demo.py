"""`darknet-py demo`: the whole YOLOv2 pipeline on built-in synthetic data.

1. generate a shapes dataset in Darknet's on-disk format,
2. choose anchors by k-means with the 1-IoU distance (paper's dimension clusters),
3. train the small YOLOv2 in cfg/demo.cfg on 2 cores (multi-scale, passthrough),
4. evaluate mAP@0.5 on held-out images and draw detections on some of them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ._core import DarknetError


def packaged_cfg(name: str) -> Path:
    """A cfg shipped with the package (repo's cfg/ in a checkout, darknet_py/cfg when installed)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "cfg" / name, here / "cfg" / name):
        if candidate.exists():
            return candidate
    try:
        from importlib.resources import files
        p = files("darknet_py.cfg") / name
        if p.is_file():
            return Path(str(p))
    except (ModuleNotFoundError, TypeError):
        pass
    raise DarknetError(f"packaged cfg {name!r} not found")


def evaluate_detector(net, image_paths, names, method: str = "voc", thresh: float = .005, progress: bool = True):
    """mAP@0.5 of `net` on labelled images, scored exactly as `darknet-py map` scores them
    (evaluate.evaluate_network: every (box, class) pair with probability >= thresh, as
    Darknet's validate_detector writes them; VOC pixel convention). Returns the EvalResult."""
    from .evaluate import evaluate_network
    res, _ = evaluate_network(net, image_paths, names, method=method, thresh=thresh, progress=progress,
                              desc="evaluate")
    return res


def draw_grid(net, image_paths, out_path: str, thresh: float = .3, columns: int = 4):
    """Detections drawn on held-out images, tiled into one picture."""
    from PIL import Image
    from .image import draw_detections, load_image
    tiles = []
    tmp_dir = Path(out_path).parent
    for i, path in enumerate(image_paths):
        img = load_image(path)
        found = net.detect(img, thresh=thresh)
        tile_path = tmp_dir / f"detections_{i:02d}.png"
        draw_detections(img, found, net.names or [], str(tile_path))
        tiles.append(Image.open(tile_path).convert("RGB"))
    if not tiles:
        raise DarknetError("no images to draw")
    w, h = tiles[0].size
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * w, rows * h), (255, 255, 255))
    for i, t in enumerate(tiles):
        sheet.paste(t.resize((w, h)), ((i % columns) * w, (i // columns) * h))
    sheet.save(out_path)
    return out_path


def run_demo(out: str = "darknet_py_demo", minutes: float = 7.0, quick: bool = False, seed: int = 0,
             progress: bool = True, device: str = "cpu") -> dict:
    from . import anchors as anchors_mod
    from .data.dataset import label_path, read_data_cfg, read_labels, read_list, read_names
    from .data.synthetic import generate
    from .network import Network
    from .train import train

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_train, n_valid = (160, 40) if quick else (2000, 200)
    t0 = time.perf_counter()
    print(f"[1/4] generating {n_train} training and {n_valid} validation images in {out_dir / 'data'}")
    data = generate(out_dir / "data", n_train=n_train, n_valid=n_valid, size=(160, 160), seed=seed)
    data_cfg = read_data_cfg(data)
    train_paths = read_list(data_cfg.resolve("train"))
    valid_paths = read_list(data_cfg.resolve("valid"))
    names = read_names(data_cfg.resolve("names"))

    cfg_text = packaged_cfg("demo.cfg").read_text()
    net_w = 160
    wh = np.concatenate([read_labels(label_path(p))[:, 3:5] for p in train_paths]) * net_w
    clusters = anchors_mod.kmeans(wh, 3, distance="iou", seed=seed)
    grid = clusters.anchors / 32.0
    anchor_line = ", ".join(f"{a:.2f},{b:.2f}" for a, b in grid)
    print(f"[2/4] k-means (1-IoU) anchors in grid units: {anchor_line}  (avg IoU {clusters.avg_iou:.3f})")
    lines = [("anchors=" + anchor_line) if l.startswith("anchors=") else l for l in cfg_text.splitlines()]
    if quick:  # small batch and short warm-up so a minute of training shows progress
        quick_keys = {"batch=": "batch=16", "burn_in=": "burn_in=10"}
        lines = [next((v for k, v in quick_keys.items() if l.startswith(k)), l) for l in lines]
    cfg_path = out_dir / "demo.cfg"
    cfg_path.write_text("\n".join(lines) + "\n")

    # quick: bounded by iterations (reproducible), with a generous time cap for slow machines
    budget = 300.0 if quick else minutes * 60
    max_batches = 100 if quick else None
    print(f"[3/4] training {cfg_path} for up to {budget / 60:.1f} minutes")
    result = train(str(data), str(cfg_path), seed=seed, backup=str(out_dir / "backup"), progress=progress,
                   chart=str(out_dir / "loss.png"), max_batches=max_batches, time_limit=budget,
                   checkpoint_every=50, device=device)
    print(f"      {result.iterations} iterations, {result.images_per_second:.1f} images/s, "
          f"loss {result.losses[0]:.2f} -> {np.mean(result.losses[-10:]):.2f}; chart: {result.chart}")

    print(f"[4/4] evaluating on {len(valid_paths)} held-out images")
    net = Network.from_cfg(str(cfg_path), batch=1, names=names, device=device)
    net.load_weights(result.final_weights or result.last_weights)
    res = evaluate_detector(net, valid_paths, names, progress=progress)
    for c in sorted(res.ap):
        print(f"      {names[c]:>10s}: AP50 {res.ap[c] * 100:5.1f}")
    print(f"      mAP@0.5 (VOC all-point) = {res.map * 100:.1f}%")
    grid_png = draw_grid(net, valid_paths[:8], str(out_dir / "detections.png"))
    elapsed = time.perf_counter() - t0
    print(f"done in {elapsed / 60:.1f} min: {grid_png}, {result.chart}, weights {result.final_weights}")
    return {"map": res.map, "iterations": result.iterations, "losses": result.losses, "chart": result.chart,
            "detections_png": grid_png, "weights": result.final_weights, "elapsed_s": elapsed,
            "images_per_second": result.images_per_second}


# ---------------------------------------------------------------- joint (YOLO9000 "Stronger")

def joint_cfg_text(tree_path: str, classes: int, size: int, batch: int, max_batches: int) -> str:
    """cfg/demo.cfg as a WordTree detector: `classes` tree nodes, a tree= region, the run's
    size, batch and schedule (steps at 78% and 92%)."""
    head = 3 * (classes + 5)  # num * (coords + objectness + classes)
    replace = {"width=": f"width={size}", "height=": f"height={size}", "batch=": f"batch={batch}",
               "max_batches=": f"max_batches={max_batches}", "burn_in=": f"burn_in={min(40, max_batches // 5)}",
               "steps=": f"steps={int(max_batches * .78)},{int(max_batches * .92)}",
               "classes=": f"classes={classes}", "filters=30": f"filters={head}"}
    lines = []
    for line in packaged_cfg("demo.cfg").read_text().splitlines():
        lines.append(next((new for key, new in replace.items() if line.startswith(key)), line))
    return "\n".join(lines) + f"\ntree={tree_path}\n"


def score_tree_detector(net, valid_paths, names, parents, progress: bool = False) -> dict:
    """AP@0.5 (VOC all-point, `map`'s code) of a WordTree detector on images labelled with fine
    nodes: every box scored for every node by its absolute probability (class_map = all nodes);
    the fine nodes against the labels, the coarse ones against the labels' parents.
    Returns {"fine": {node: AP}, "coarse": {node: AP}}."""
    from .evaluate import evaluate_network
    every_node = list(range(len(names)))
    fine, _ = evaluate_network(net, valid_paths, names, method="voc", class_map=every_node, progress=progress,
                               desc="fine")
    coarse, _ = evaluate_network(net, valid_paths, names, method="voc", class_map=every_node, progress=progress,
                                 desc="coarse", truth_classes=lambda node: parents[node])
    keep = lambda ap: {c: float(v) for c, v in ap.items() if np.isfinite(v)}  # noqa: E731
    return {"fine": keep(fine.ap), "coarse": keep(coarse.ap)}


def run_joint_demo(out: str = "darknet_py_joint_demo", quick: bool = False, seed: int = 0,
                   max_batches: Optional[int] = None, size: int = 128, progress: bool = True,
                   device: str = "cpu") -> dict:
    """YOLO9000's claim on synthetic data: a detector trained on detection images (boxes for
    shapes and for red variants) plus classification images (green and blue variants, no box)
    detects and names the green and blue variants; a baseline trained on the same detection
    images alone cannot. Both train the same cfg with the same seed and iterations.
    Reports mAP@0.5 on the fine classes never seen with a box, on the fine classes seen with a
    box, and on the coarse classes (shapes), for both, and draws the joint detector's detections."""
    from .data.dataset import read_data_cfg, read_list
    from .data.synthetic_joint import JOINT_COLOURS, generate_joint, tree_nodes
    from .network import Network
    from .train import train

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_detection, n_classification, n_valid = (48, 48, 24) if quick else (600, 600, 150)
    max_batches = int(max_batches or (30 if quick else 400))
    batch = 8 if quick else 16
    t0 = time.perf_counter()
    print(f"[1/4] generating {n_detection} detection, {n_classification} classification-only and {n_valid} "
          f"validation images in {out_dir / 'data'}")
    joint_data = generate_joint(out_dir / "data", n_detection, n_classification, n_valid, size=(size, size),
                                seed=seed, classification_fraction=0.5)
    detection_data = str(Path(joint_data).parent / "detection.data")
    nodes = tree_nodes()
    names = [name for name, _ in nodes]
    parents = [parent if parent >= 0 else node for node, (_, parent) in enumerate(nodes)]
    cfg_path = out_dir / "demo-joint.cfg"
    cfg_path.write_text(joint_cfg_text(str(Path(joint_data).parent / "shapes.tree"), len(nodes), size, batch,
                                       max_batches))

    runs = {}
    for step, (kind, data) in enumerate((("joint", joint_data), ("baseline", detection_data)), start=2):
        print(f"[{step}/4] training {kind} ({data}) for {max_batches} iterations of {batch} images")
        runs[kind] = train(data, str(cfg_path), seed=seed, backup=str(out_dir / f"backup-{kind}"),
                           progress=progress, chart=str(out_dir / f"loss-{kind}.png"), max_batches=max_batches,
                           checkpoint_every=50, device=device)
        print(f"      {runs[kind].iterations} iterations, {runs[kind].images_per_second:.1f} images/s")

    valid_paths = read_list(read_data_cfg(joint_data).resolve("valid"))
    boxed_colours = {"red"}
    unseen = [n for n, (name, parent) in enumerate(nodes) if parent >= 0 and name.split("_")[0] not in boxed_colours]
    seen = [n for n, (name, parent) in enumerate(nodes) if parent >= 0 and name.split("_")[0] in boxed_colours]
    coarse = [n for n, (_, parent) in enumerate(nodes) if parent < 0]
    print(f"[4/4] mAP@0.5 on {len(valid_paths)} held-out images (fine classes without boxes: "
          f"{', '.join(names[n] for n in unseen)})")
    report = {"max_batches": max_batches, "batch": batch, "size": size, "colours": JOINT_COLOURS}
    for kind, result in runs.items():
        net = Network.from_cfg(str(cfg_path), batch=1, names=names, device=device)
        net.load_weights(result.final_weights or result.last_weights)
        ap = score_tree_detector(net, valid_paths, names, parents, progress=progress)
        mean = lambda group, ap_of: float(np.mean([ap_of.get(n, 0.0) for n in group]))  # noqa: E731
        report[kind] = {"unseen_fine": mean(unseen, ap["fine"]), "seen_fine": mean(seen, ap["fine"]),
                        "coarse": mean(coarse, ap["coarse"]), "ap": ap, "weights": result.final_weights,
                        "losses": result.losses, "images_per_second": result.images_per_second}
        print(f"      {kind:>8s}: unseen-box fine {100 * report[kind]['unseen_fine']:5.1f}  "
              f"seen-box fine {100 * report[kind]['seen_fine']:5.1f}  shapes {100 * report[kind]['coarse']:5.1f}")
        if kind == "joint":
            report["detections_png"] = draw_grid(net, valid_paths[:8], str(out_dir / "detections.png"))
    report["elapsed_s"] = time.perf_counter() - t0
    print(f"done in {report['elapsed_s'] / 60:.1f} min: {report['detections_png']}")
    return report
