"""YOLO9000-style joint training (issue 11): the joint .data file and its checks (file:line),
the mixed loader (share, labels mapped to tree nodes, Darknet's classification-only marker),
the region layer training only the class for those images, joint training through the one
loop (CLI, multi-scale, resume bit for bit) and the demo's short form."""
import math
from pathlib import Path

import numpy as np
import pytest

from darknet_py import DarknetError, Network
from darknet_py.data.joint import (CLASSIFICATION_ONLY_COORD, JointLoader, classification_truth,
                                   is_classification_slot, read_joint_data)
from darknet_py.data.loader import sample_seed
from darknet_py.data.synthetic_joint import generate_joint, tree_nodes
from darknet_py.train import train
from conftest import small_yolo_cfg

NODES = [name for name, _ in tree_nodes()]


@pytest.fixture(scope="module")
def joint_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("joint")
    return generate_joint(root, n_detection=24, n_classification=18, n_valid=6, size=(64, 64), seed=2)


def tree_cfg(tmp_path, data, size=64, random=0, lr=0.001, batch=8, subdivisions=2, name="joint.cfg"):
    text = small_yolo_cfg(size=size, batch=batch, subdivisions=subdivisions, lr=lr, random=random,
                          filters=(8, 16, 16, 16), classes=len(NODES))
    path = Path(tmp_path) / name
    path.write_text(text + f"tree={Path(data).parent / 'shapes.tree'}\n")
    return path


def edit_data(src, dst_dir, **changes):
    """A copy of the .data file with keys replaced (None removes a key)."""
    lines = []
    for line in Path(src).read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key} = {changes.pop(key)}")
            else:
                changes.pop(key)
        else:
            lines.append(line)
    lines += [f"{k} = {v}" for k, v in changes.items() if v is not None]
    path = Path(dst_dir) / "edited.data"
    path.write_text("\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ the loader

def test_loader_mixes_at_the_share_with_markers_and_mapped_labels(joint_data):
    data = read_joint_data(joint_data)
    assert data.classes == len(NODES) and len(data.detection) == 24 and len(data.classification) == 18
    assert [NODES[n] for n in data.label_nodes] == data.labels  # labels named after tree nodes
    batch, batches = 8, 3
    with JointLoader(data.detection, data.classification, data.classification_nodes, 0.25, 64, 64, batch,
                     max_boxes=30, seed=4, workers=2) as loader:
        got = [loader.next_batch() for _ in range(batches)]
    with JointLoader(data.detection, data.classification, data.classification_nodes, 0.25, 64, 64, batch,
                     max_boxes=30, seed=4, workers=1, start_batch=1) as loader:
        x1, t1 = loader.next_batch()
    np.testing.assert_array_equal(x1, got[1][0])  # batch i depends on (seed, i) only
    np.testing.assert_array_equal(t1, got[1][1])
    for b, (x, truth) in enumerate(got):
        assert x.shape == (batch, 3, 64, 64)
        marked = truth[:, 0] == CLASSIFICATION_ONLY_COORD
        assert marked.sum() == 2  # exactly a quarter of every batch of 8
        for slot in range(batch):
            assert marked[slot] == is_classification_slot(b * batch + slot, 0.25)
            row = truth[slot].reshape(30, 5)
            if marked[slot]:
                # the marker row, nothing after it; its node is the label in the drawn image's path
                assert row[0, 1] == CLASSIFICATION_ONLY_COORD and row[0, 2:4].tolist() == [1, 1]
                assert not row[1:].any()
                path = data.classification[sample_seed(4, b, slot)[0] % len(data.classification)]
                assert f"/{NODES[int(row[0, 4])]}/" in path
                np.testing.assert_array_equal(row, classification_truth(int(row[0, 4]), 30).reshape(30, 5))
            else:
                boxes = row[row[:, 0] > 0]
                assert len(boxes) and (boxes[:, :4] <= 1).all() and (boxes[:, 4] < len(NODES)).all()


def test_share_is_exact_over_a_run():
    for fraction in (0.1, 0.25, 1 / 3, 0.5):
        flags = [is_classification_slot(g, fraction) for g in range(600)]
        assert sum(flags) == math.floor(600 * fraction)


def test_labels_mapped_through_a_map_file(joint_data, tmp_path):
    labels = Path(joint_data).parent / "classification.labels"
    nodes = [NODES.index(label) for label in labels.read_text().split()]
    (tmp_path / "labels.map").write_text("".join(f"{n}\n" for n in nodes))
    data = read_joint_data(edit_data(joint_data, tmp_path, map=tmp_path / "labels.map"))
    assert data.label_nodes == nodes


# ------------------------------------------------------------------ problems up front

def _error_of(path, **kwargs):
    with pytest.raises(DarknetError) as e:
        read_joint_data(path, **kwargs)
    return str(e.value)


@pytest.mark.parametrize("changes, expected", [
    (dict(classification_fraction="1.5"), "edited.data:{line}: classification_fraction must be"),
    (dict(classification_fraction="a lot"), "edited.data:{line}: classification_fraction must be"),
    (dict(classes="7"), "edited.data:{line}: classes=7 but"),
    (dict(labels=None), "needs 'labels'"),
])
def test_bad_joint_data_file(joint_data, tmp_path, changes, expected):
    path = edit_data(joint_data, tmp_path, **changes)
    key = next(iter(changes))
    lines = [l.split("=")[0].strip() for l in path.read_text().splitlines()]
    line = lines.index(key) + 1 if key in lines else 0
    assert expected.format(line=line) in _error_of(path)


def test_bad_labels_and_map_files(joint_data, tmp_path):
    labels = (Path(joint_data).parent / "classification.labels").read_text().split()
    bad = tmp_path / "bad.labels"
    bad.write_text("\n".join(labels[:2] + ["purple_circle"] + labels[2:]) + "\n")
    assert f"bad.labels:3: label 'purple_circle' is not a node of" in _error_of(edit_data(joint_data, tmp_path,
                                                                                          labels=bad))
    bad.write_text("\n".join(labels + [labels[1]]) + "\n")
    assert f"bad.labels:{len(labels) + 1}: label '{labels[1]}' is listed twice (first at line 2)" in _error_of(
        edit_data(joint_data, tmp_path, labels=bad))

    bad_map = tmp_path / "bad.map"
    bad_map.write_text("4\n5\n7\n99\n10\n11\n")
    assert "bad.map:4: tree node 99" in _error_of(edit_data(joint_data, tmp_path, map=bad_map))
    bad_map.write_text("4\n5\nseven\n8\n10\n11\n")
    assert "bad.map:3: expected one integer" in _error_of(edit_data(joint_data, tmp_path, map=bad_map))
    bad_map.write_text("4\n5\n")
    assert "bad.map: 2 entries but" in _error_of(edit_data(joint_data, tmp_path, map=bad_map))

    bad_tree = tmp_path / "bad.tree"
    bad_tree.write_text("circle -1\nred_circle 5\n")
    assert "bad.tree:2: parent index 5" in _error_of(edit_data(joint_data, tmp_path, tree=bad_tree))


def test_every_image_and_label_problem_reported_together(joint_data, tmp_path):
    root = Path(joint_data).parent
    listed = (root / "classification.list").read_text().splitlines()
    bad_list = tmp_path / "classification.list"
    bad_list.write_text("\n".join([str(root / listed[0]), "images/classification/unlabelled/000001.png",
                                   str(root / listed[1]), str(root / "images/classification/green_circle/missing.png")])
                        + "\n")
    detection = (root / "detection.list").read_text().splitlines()
    bad_label_dir = tmp_path / "labels"
    bad_label_dir.mkdir()
    (tmp_path / "images").mkdir()
    image = tmp_path / "images" / "odd.jpg"
    image.write_bytes(Path(detection[0]).read_bytes())
    (bad_label_dir / "odd.txt").write_text("1 .5 .5 .2 .2\n40 .5 .5 .2 .2\n")
    det_list = tmp_path / "detection.list"
    det_list.write_text("\n".join(detection[:3] + [str(image)]) + "\n")
    message = _error_of(edit_data(joint_data, tmp_path, classification=bad_list, train=det_list))
    assert "3 problem(s)" in message
    assert f"{bad_list}:2: images/classification/unlabelled/000001.png: no label appears in the path" in message
    assert f"{bad_list}:4: " in message and "image file not found" in message
    assert f"{bad_label_dir / 'odd.txt'}:2: class 40 >= classes (12)" in message


def test_train_refuses_a_joint_data_file_without_a_tree_region(joint_data, tmp_path):
    cfg = tmp_path / "plain.cfg"
    cfg.write_text(small_yolo_cfg(classes=len(NODES)))
    with pytest.raises(DarknetError, match="region layer has no tree="):
        train(joint_data, cfg, max_batches=1, backup=tmp_path / "b", progress=False)


# ------------------------------------------------------------------ training

def _classification_batch(data, size=64):
    """Every classification image at the network size, with its marker truth."""
    with JointLoader(data.detection, data.classification, data.classification_nodes, 0.5, size, size, 16,
                     max_boxes=30, seed=11, jitter=0.0, hue=0.0, saturation=1.0, exposure=1.0, flip=False,
                     workers=1) as loader:
        xs, ts = [], []
        while len(xs) < 12:
            x, t = loader.next_batch()
            keep = t[:, 0] == CLASSIFICATION_ONLY_COORD
            xs += list(x[keep])
            ts += list(t[keep])
    return np.stack(xs[:12]), np.stack(ts[:12])


def _class_only_pass(net, x, truth):
    """(avg probability of the labelled node at the chosen prediction, region delta) on a
    batch of classification-only images."""
    net.forward(x, truth)
    region = net.layers[-1]
    return net.region["stats"]["avg_class"], region.delta


def test_joint_training_raises_class_only_probability_and_never_trains_their_boxes(joint_data, tmp_path):
    # classification-heavy batches: in 40 iterations the few detection images' red boxes would
    # otherwise outweigh the colour classes of these tiny nets (the demo trains longer at 0.5)
    heavy = edit_data(joint_data, tmp_path, classification_fraction=0.9)
    data = read_joint_data(heavy)
    cfg = tree_cfg(tmp_path, joint_data, lr=0.02, subdivisions=1)
    x, truth = _classification_batch(data)

    def measure(weights):
        net = Network.from_cfg(str(cfg), batch=len(x))
        net.training = True
        if weights:
            net.load_weights(weights)
        else:
            net.randomize(0)
        return _class_only_pass(net, x, truth)

    before, delta = measure(None)
    # no box delta and one trained prediction per classification-only image
    d = delta.reshape(len(x), 3, 5 + len(NODES), -1)
    assert not d[:, :, :4].any()
    class_locations = np.abs(d[:, :, 5:]).sum(axis=2) > 0
    assert (class_locations.reshape(len(x), -1).sum(axis=1) == 1).all()

    res = train(heavy, cfg, max_batches=40, seed=0, backup=tmp_path / "b", progress=False)
    assert res.stopped == "max_batches" and all(np.isfinite(res.losses))
    after, delta = measure(res.final_weights)
    assert not delta.reshape(len(x), 3, 5 + len(NODES), -1)[:, :, :4].any()
    assert after > before + 0.15, (before, after)  # measured 0.54 -> 0.84


def test_joint_resume_equals_straight_run_through_the_cli(joint_data, tmp_path, capsys):
    """`darknet-py train joint.data` then resume: bit for bit the straight run, multi-scale on."""
    from darknet_py.cli import main
    cfg = tree_cfg(tmp_path, joint_data, size=96, random=1, batch=4, subdivisions=2)
    straight = train(joint_data, cfg, max_batches=6, seed=3, backup=tmp_path / "a", progress=False)
    assert straight.sizes == [128]  # multi-scale moved the 96 cfg to 128 for this block
    assert main(["train", str(joint_data), str(cfg), "--max-batches", "3", "--seed", "3",
                 "--backup", str(tmp_path / "b")]) == 0
    assert "stopped: max_batches after 3 iterations" in capsys.readouterr().out
    first = tmp_path / "b" / "joint_final.weights"
    resumed = train(joint_data, cfg, str(first), max_batches=6, seed=3, backup=tmp_path / "b", progress=False)
    np.testing.assert_array_equal(resumed.losses, straight.losses[3:])
    assert Path(resumed.final_weights).read_bytes() == Path(straight.final_weights).read_bytes()


# ------------------------------------------------------------------ the demo

def test_tree_scoring_names_fine_and_coarse_classes(tmp_path):
    """score_tree_detector scores every node of a box: the fine node against the label, its
    parent against the label's parent, through `map`'s code (evaluate_network)."""
    from PIL import Image
    from darknet_py.demo import score_tree_detector
    from darknet_py.network import Detection
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    image = tmp_path / "images" / "a.png"
    Image.new("RGB", (100, 80)).save(image)
    green_circle, blue_square = NODES.index("green_circle"), NODES.index("blue_square")
    (tmp_path / "labels" / "a.txt").write_text(f"{green_circle} 0.5 0.5 0.4 0.5\n")
    parents = [p if p >= 0 else n for n, (_, p) in enumerate(tree_nodes())]

    class Net:
        def detect(self, path, thresh, hier_thresh, nms, class_map):
            assert list(class_map) == list(range(len(NODES)))
            probs = np.zeros(len(NODES), np.float32)
            probs[[0, green_circle, blue_square]] = (.9, .6, .2)  # circle, green_circle; a wrong fine node
            return [Detection(0, "circle", .9, .9, (50.0, 40.0, 40.0, 40.0), probs)]

    ap = score_tree_detector(Net(), [str(image)], NODES, parents)
    assert ap["fine"] == {green_circle: pytest.approx(1.0)}
    assert ap["coarse"] == {0: pytest.approx(1.0)}


def test_joint_demo_short(tmp_path):
    from darknet_py.demo import run_joint_demo
    report = run_joint_demo(str(tmp_path / "demo"), quick=True, max_batches=8, size=64, progress=False)
    for kind in ("joint", "baseline"):
        run = report[kind]
        assert len(run["losses"]) == 8 and all(np.isfinite(run["losses"]))
        if kind == "baseline":  # the joint loss swings with each batch's mix of image kinds over 8 steps
            assert np.mean(run["losses"][-3:]) < np.mean(run["losses"][:3])
        for key in ("unseen_fine", "seen_fine", "coarse"):
            assert 0 <= run[key] <= 1
        assert Path(run["weights"]).exists()
    assert Path(report["detections_png"]).stat().st_size > 1000
