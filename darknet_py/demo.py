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
    from .data.dataset import read_data_cfg, read_labels, read_list, label_path
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
    names = [n.strip() for n in Path(data_cfg.resolve("names")).read_text().splitlines() if n.strip()]

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
