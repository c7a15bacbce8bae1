"""The darknet-py command line on real components: detect/info/partial on Darknet
cfgs, and map/valid/anchors/train on a small synthetic dataset."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py.cli import main
from conftest import load_case, make_weights, require_reference, small_yolo_cfg



@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from darknet_py.data.synthetic import generate
    root = tmp_path_factory.mktemp("cli_syn")
    data = generate(root, n_train=8, n_valid=4, size=(64, 64), seed=1)
    cfg = root / "tiny.cfg"
    cfg.write_text(small_yolo_cfg(batch=4, filters=(8, 16), max_batches=4))
    return data, cfg, root


def test_detect_prints_and_draws(tmp_path, capsys, weights_dir):
    case = load_case("fixtures", "full_nets", "yolov2-tiny-voc_416")
    root = case.root
    gen = case.manifest["weights_generation"]
    weights = make_weights(root / gen["cfg"], gen["seed"], weights_dir)
    rc = main(["detect", str(root / case.manifest["cfg"]), str(weights), str(root / "data" / "dog.jpg"),
               "--names", str(root / "data" / "voc.names"), "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    ref = json.loads((case.files_dir / "detections.json").read_text())
    for d in ref["detections"]:
        for name in d["labels"]:
            assert f"{name}: " in out
    assert (tmp_path / "dog_predictions.png").stat().st_size > 10000


def test_info_prints_layer_table(capsys):
    assert main(["info", str(require_reference("cfg", "yolov2-voc.cfg"))]) == 0
    out = capsys.readouterr().out
    assert "reorg" in out and "route" in out and "Total BFLOPS" in out
    assert "13 x  13 x 125" in out or "13 x  13 x  125" in out.replace("x 125", "x  125")


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    bad = tmp_path / "bad.cfg"
    bad.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nsize=0\n")
    assert main(["info", str(bad)]) == 2
    assert "bad.cfg:6: [convolutional] size=0: must be > 0" in capsys.readouterr().err


def test_partial(tmp_path, synth):
    data, cfg, root = synth
    net = darknet_py.load(cfg)
    full = tmp_path / "full.weights"
    net.save_weights(full)
    out = tmp_path / "part.weights"
    assert main(["partial", str(cfg), str(full), str(out), "2"]) == 0
    n_floats = sum(v.size for l in net.layers[:2] for v in l.params.values())
    assert out.stat().st_size == 20 + 4 * n_floats


def test_train_map_valid_anchors(tmp_path, synth, capsys):
    data, cfg, root = synth
    backup = tmp_path / "backup"
    assert main(["train", str(data), str(cfg), "--max-batches", "3", "--backup", str(backup)]) == 0
    weights = backup / "tiny_final.weights"
    assert weights.exists() and (backup / "tiny_loss.png").exists()
    assert main(["map", str(data), str(cfg), str(weights), "--out", str(tmp_path / "map"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mAP" in out
    assert list((tmp_path / "map").glob("*.png"))
    assert main(["map", str(data), str(cfg), str(weights), "--sizes", "64,96", "--quiet"]) == 0
    assert main(["valid", str(data), str(cfg), str(weights), "--out", str(tmp_path / "res"), "--quiet"]) == 0
    assert len(list((tmp_path / "res").glob("comp4_det_test_*.txt"))) == 5
    assert main(["anchors", str(data), "--num", "3", "--width", "64", "--height", "64", "--quiet"]) == 0
    assert "anchors=" in capsys.readouterr().out


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "darknet_py.cli", "-h"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("detect", "info", "train", "demo", "map", "valid", "anchors", "profile", "partial"):
        assert cmd in r.stdout
