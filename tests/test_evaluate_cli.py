"""The map / valid / anchors commands (darknet_py.evaluate) with a fake network and a
fake dataset module, on small hand-written label files: no core, no real model."""
import argparse
import json
import os
import types

import numpy as np
import pytest
from PIL import Image

from darknet_py import DarknetError
from darknet_py import evaluate as ev

NAMES = ["cat", "dog", "bird"]
# image name -> (size, label lines "class xc yc w h [difficult]" normalised)
IMAGES = {
    "img_000001": ((200, 100), ["0 0.25 0.5 0.2 0.4", "1 0.7 0.5 0.3 0.6"]),
    "img_000002": ((160, 160), ["2 0.5 0.5 0.5 0.5", "0 0.2 0.2 0.1 0.1 1"]),
    "img_000003": ((100, 120), ["1 0.5 0.4 0.8 0.6"]),
}


# ----------------------------------------------------------------------------- fakes

def _fake_dataset():
    """The dataset helpers' documented behaviour, minimal: key=value .data files, one path a
    line lists, images/ -> labels/ with .txt, label rows 'class x y w h [difficult]'."""

    def read_data_cfg(path):
        out = {}
        for line in open(path):
            line = line.split("#")[0].strip()
            if "=" in line:
                k, v = line.split("=", 1)
                out[k.strip()] = v.strip()
        return out

    def read_list(path):
        return [line.strip() for line in open(path) if line.strip()]

    def label_path(image_path):
        d, f = os.path.split(image_path)
        return os.path.join(os.path.dirname(d), "labels", os.path.splitext(f)[0] + ".txt")

    def read_labels(path, classes=None):
        rows = []
        for i, line in enumerate(open(path), 1):
            if not line.strip():
                continue
            try:
                vals = [float(v) for v in line.split()]
            except ValueError:
                raise DarknetError(f"{path}:{i}: bad label line {line.strip()!r}") from None
            if len(vals) not in (5, 6):
                raise DarknetError(f"{path}:{i}: bad label line {line.strip()!r}")
            rows.append(vals + [0.0] * (6 - len(vals)))
        return np.array(rows).reshape(-1, 6)

    return types.SimpleNamespace(read_data_cfg=read_data_cfg, read_list=read_list,
                                 label_path=label_path, read_labels=read_labels)


class FakeNet:
    """Detects the labelled boxes exactly (plus one low-score false positive per image);
    ``resize`` changes the reported size and, below 416, shrinks the boxes."""

    def __init__(self, root, names=NAMES):
        self.root = root
        self.names = names
        self.width = self.height = 416
        self.resizes = []
        self.calls = []

    def resize(self, w, h):
        self.resizes.append((w, h))
        self.width, self.height = w, h

    def detect(self, image, thresh=.24, hier_thresh=.5, nms=.45):
        self.calls.append((image, thresh, hier_thresh, nms))
        stem = os.path.splitext(os.path.basename(image))[0]
        (W, H), lines = IMAGES[stem]
        scale = 1.0 if self.width >= 416 else 0.5
        out = []
        for k, line in enumerate(lines):
            c, x, y, w, h = (float(v) for v in line.split()[:5])
            probs = np.zeros(len(NAMES))
            probs[int(c)] = 0.9 - 0.1 * k
            out.append(types.SimpleNamespace(class_id=int(c), name=NAMES[int(c)], prob=probs[int(c)],
                                             objectness=0.95, probs=probs,
                                             box=(x * W, y * H, w * W * scale, h * H * scale)))
        probs = np.zeros(len(NAMES))
        probs[0] = 0.01
        out.append(types.SimpleNamespace(class_id=0, name="cat", prob=0.01, objectness=0.1, probs=probs,
                                         box=(W - 2.0, H - 2.0, 6.0, 6.0)))
        return out


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    img_dir = tmp_path / "images"
    lab_dir = tmp_path / "labels"
    img_dir.mkdir()
    lab_dir.mkdir()
    paths = []
    for stem, ((w, h), lines) in IMAGES.items():
        p = img_dir / f"{stem}.png"
        Image.new("RGB", (w, h), (90, 120, 150)).save(p)
        (lab_dir / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        paths.append(str(p))
    (tmp_path / "valid.txt").write_text("\n".join(paths) + "\n")
    (tmp_path / "train.txt").write_text("\n".join(paths) + "\n")
    (tmp_path / "names.txt").write_text("\n".join(NAMES) + "\n")
    data = tmp_path / "voc.data"
    data.write_text(f"classes = 3\ntrain = {tmp_path / 'train.txt'}\nvalid = {tmp_path / 'valid.txt'}\n"
                    f"names = {tmp_path / 'names.txt'}\nbackup = backup\n")
    monkeypatch.setattr(ev, "_dataset", _fake_dataset)
    net = FakeNet(tmp_path)
    monkeypatch.setattr(ev, "_load_net", lambda cfg, weights, device="cpu": net)
    return types.SimpleNamespace(root=tmp_path, data=str(data), paths=paths, net=net)


def _run(argv):
    parser = argparse.ArgumentParser(prog="darknet-py")
    ev.register_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


# ----------------------------------------------------------------------------- map

@pytest.mark.parametrize("method", ["voc07", "voc", "coco"])
def test_map_perfect_detector(dataset, capsys, method):
    out = dataset.root / "out"
    assert _run(["map", dataset.data, "x.cfg", "x.weights", "--method", method, "--quiet",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "= 1.000000" in text
    for name in NAMES:
        assert name in text
    # one PR curve per class with truths, and the table
    pngs = sorted(p for p in os.listdir(out) if p.endswith(".png"))
    assert pngs == ["pr_000_cat.png", "pr_001_dog.png", "pr_002_bird.png"]
    assert (out / "map.txt").read_text().strip().endswith("1.000000")
    # Darknet's validation thresholds reach detect()
    assert dataset.net.calls[0][1:] == (.005, .5, .45)


def test_map_table_counts(dataset, capsys):
    _run(["map", dataset.data, "c", "w", "--quiet", "--conf-thresh", ".25"])
    text = capsys.readouterr().out
    # 4 non-difficult objects found at score >= .25, the .01 false positives below it
    assert "TP 4, FP 0" in text
    res, _ = ev.evaluate_network(dataset.net, dataset.paths, NAMES, method="voc", conf_thresh=0.005,
                                 progress=False)
    assert res.total_fp == 3 and res.total_tp == 4  # the 0.01 boxes now count
    assert res.n_truths == {0: 1, 1: 2, 2: 1}  # the difficult cat is not counted


def test_map_sizes_table_resizes_in_place(dataset, capsys):
    out = dataset.root / "sz"
    _run(["map", dataset.data, "c", "w", "--quiet", "--sizes", "320,416", "--out", str(out)])
    text = capsys.readouterr().out
    assert dataset.net.resizes == [(320, 320), (416, 416), (416, 416)]  # restored afterwards
    lines = [ln for ln in text.splitlines() if ln.strip().startswith(("320x320", "416x416"))]
    table = lines[-2:]
    assert table[0].split()[0] == "320x320" and table[1].split()[0] == "416x416"
    m320 = float(table[0].split()[1].rstrip("%"))
    m416 = float(table[1].split()[1].rstrip("%"))
    assert m416 == pytest.approx(100.0) and m320 < m416
    assert (out / "sizes.png").exists() and (out / "sizes.txt").exists()


@pytest.mark.parametrize("sizes", ["300", "a,b", ","])
def test_map_bad_sizes(dataset, sizes):
    with pytest.raises(DarknetError, match="bad --sizes"):
        _run(["map", dataset.data, "c", "w", "--quiet", "--sizes", sizes])


def test_missing_and_empty_valid_list(dataset):
    data = dataset.root / "missing.data"
    data.write_text(f"classes=3\nvalid = {dataset.root / 'nope.txt'}\n")
    with pytest.raises(DarknetError, match="valid list .*nope.txt.* not found"):
        _run(["map", str(data), "c", "w", "--quiet"])
    (dataset.root / "empty.txt").write_text("\n\n")
    data.write_text(f"classes=3\nvalid = {dataset.root / 'empty.txt'}\n")
    with pytest.raises(DarknetError, match="valid list .*empty.txt.* is empty"):
        _run(["valid", str(data), "c", "w", "--quiet"])
    data.write_text("classes=3\n")
    with pytest.raises(DarknetError, match="no 'valid=' entry"):
        _run(["map", str(data), "c", "w", "--quiet"])
    with pytest.raises(DarknetError, match="data file .* not found"):
        _run(["map", str(dataset.root / "nothing.data"), "c", "w", "--quiet"])


def test_bad_label_line_names_the_image(dataset):
    (dataset.root / "labels" / "img_000002.txt").write_text("2 0.5 0.5 0.5\n")
    with pytest.raises(DarknetError, match=r"img_000002\.png.*bad label line"):
        _run(["map", dataset.data, "c", "w", "--quiet"])


def test_label_class_out_of_range(dataset):
    (dataset.root / "labels" / "img_000003.txt").write_text("7 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DarknetError, match="class 7 is not in 0..2"):
        _run(["map", dataset.data, "c", "w", "--quiet"])


# ----------------------------------------------------------------------------- valid

def test_valid_writes_comp4_and_coco_json(dataset, capsys):
    out = dataset.root / "results"
    assert _run(["valid", dataset.data, "c", "w", "--quiet", "--out", str(out)]) == 0
    files = sorted(os.listdir(out))
    assert files == ["coco_results.json", "comp4_det_test_bird.txt", "comp4_det_test_cat.txt",
                     "comp4_det_test_dog.txt"]
    cat = (out / "comp4_det_test_cat.txt").read_text().splitlines()
    # img_000001: cat at (50, 50) size 40x40 -> Darknet's +1 corners 31 31 71 71
    assert "img_000001 0.900000 31.000000 31.000000 71.000000 71.000000" in cat
    # the FP near the corner is clamped to the image: x2 = 200, y2 = 100
    assert "img_000001 0.010000 196.000000 96.000000 200.000000 100.000000" in cat
    assert len(cat) == 5  # 2 cats + 3 corner boxes
    coco = json.loads((out / "coco_results.json").read_text())
    first = [d for d in coco if d["image_id"] == 1 and d["category_id"] == 0 and d["score"] == 0.9]
    assert first == [{"image_id": 1, "category_id": 0, "bbox": [30.0, 30.0, 40.0, 40.0], "score": 0.9}]
    assert len(coco) == 4 + 1 + 3  # every labelled object (the difficult one too) + FPs
    # the files score like the in-process map
    rows = []
    for j, n in enumerate(NAMES):
        for line in (out / f"comp4_det_test_{n}.txt").read_text().splitlines():
            stem, s, *box = line.split()
            rows.append((stem, j, float(s), *map(float, box)))
    truths = ev.load_truths(dataset.paths, "voc", 3)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in dataset.paths]
    truths = [(stems[t[0]],) + tuple(t[1:]) for t in truths]
    from darknet_py.metrics import evaluate
    assert evaluate(rows, truths, "voc07").map == pytest.approx(1.0)


def test_valid_coco_category_ids(dataset, capsys, monkeypatch):
    names = [f"c{i}" for i in range(80)]
    dataset.net.names = names
    with open(dataset.data, "a") as f:
        f.write("eval = coco\n")
    out = dataset.root / "coco"
    _run(["valid", dataset.data, "c", "w", "--quiet", "--out", str(out)])
    assert len([p for p in os.listdir(out) if p.endswith(".txt")]) == 80
    cats = {d["category_id"] for d in json.loads((out / "coco_results.json").read_text())}
    assert cats == {1, 2, 3}  # COCO ids of classes 0, 1, 2


def test_detection_rows_one_detection_per_class_counted_once():
    probs = np.array([0.6, 0.3, 0.0])
    box = (50.0, 50.0, 20.0, 10.0)
    d = [types.SimpleNamespace(class_id=0, prob=0.6, probs=probs, box=box),
         types.SimpleNamespace(class_id=1, prob=0.3, probs=probs, box=box)]
    rows = ev.detection_rows(7, d, 100, 100, 0.2, 3, "coco")
    assert rows == [(7, 0, 0.6, 40.0, 45.0, 60.0, 55.0), (7, 1, 0.3, 40.0, 45.0, 60.0, 55.0)]
    # without a probability vector: the best class only
    d = [types.SimpleNamespace(class_id=2, prob=0.5, probs=None, box=box)]
    assert ev.detection_rows(0, d, 100, 100, 0.2, 3, "voc") == [(0, 2, 0.5, 41.0, 46.0, 61.0, 56.0)]


# ----------------------------------------------------------------------------- anchors

def test_anchors_command(dataset, capsys):
    assert _run(["anchors", dataset.data, "--num", "2", "--width", "416", "--height", "416",
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "5 boxes, k=2" in text
    line = [ln for ln in text.splitlines() if ln.startswith("anchors=")][0]
    vals = np.array([float(v) for v in line[len("anchors="):].split(",")]).reshape(-1, 2)
    # grid units = normalised * 416 / 32 = * 13
    wh = np.array([[0.2, 0.4], [0.3, 0.6], [0.5, 0.5], [0.1, 0.1], [0.8, 0.6]]) * 13
    from darknet_py.anchors import kmeans
    np.testing.assert_allclose(vals, kmeans(wh, 2).anchors, atol=1e-4)
    assert "avg IoU = " in text


def test_anchors_sweep_table_and_png(dataset, capsys):
    cfg = dataset.root / "net.cfg"
    cfg.write_text("[net]\nwidth=416\n[region]\nanchors = 1.0,1.0, 5,5  # two\nnum=2\n")
    out = dataset.root / "anc"
    _run(["anchors", dataset.data, "--num", "2", "--width", "416", "--height", "416", "--quiet",
          "--sweep", "1..4", "--cfg", str(cfg), "--out", str(out)])
    text = capsys.readouterr().out
    rows = [ln.split() for ln in text.splitlines()
            if len(ln.split()) == 4 and ln.split()[1].endswith("%")]
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert rows[1][3] != "-" and rows[0][3] == "-"  # the given anchors sit at K=2
    assert (out / "anchors_sweep.png").exists()
    assert (out / "anchors_sweep.txt").read_text().startswith("  K")


def test_anchors_k_larger_than_boxes(dataset):
    with pytest.raises(DarknetError, match="k=9 clusters from 5 boxes"):
        _run(["anchors", dataset.data, "--num", "9", "--width", "416", "--height", "416", "--quiet"])


def test_anchors_bad_inputs(dataset):
    with pytest.raises(DarknetError, match="multiples of 32"):
        _run(["anchors", dataset.data, "--num", "2", "--width", "400", "--height", "416"])
    (dataset.root / "labels" / "img_000001.txt").write_text("0 0.5 0.5 0 0.2\n")
    with pytest.raises(DarknetError, match="img_000001.*non-positive width or height"):
        _run(["anchors", dataset.data, "--num", "2", "--width", "416", "--height", "416", "--quiet"])
    (dataset.root / "labels" / "img_000001.txt").write_text("0 0.5 x 0.1 0.2\n")
    with pytest.raises(DarknetError, match="img_000001.*bad label line"):
        _run(["anchors", dataset.data, "--num", "2", "--width", "416", "--height", "416", "--quiet"])
    with pytest.raises(DarknetError, match="even number"):
        _run(["anchors", dataset.data, "--num", "2", "--width", "416", "--height", "416", "--quiet",
              "--given", "1,2,3"])
