"""Every original Darknet cfg loads without warnings; the project's own cfg/ files
describe the same architectures (layer types, shapes, parameter counts)."""
import warnings
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from conftest import REPO, require_reference

ORIGINAL = ["yolov2.cfg", "yolov2-voc.cfg", "yolov2-tiny.cfg", "yolov2-tiny-voc.cfg", "yolo9000.cfg",
            "darknet19.cfg", "darknet19_448.cfg", "darknet9000.cfg"]
OURS = ["yolov2.cfg", "yolov2-voc.cfg", "yolov2-tiny.cfg", "yolov2-tiny-voc.cfg", "darknet19.cfg",
        "darknet19_448.cfg"]


def shapes(net):
    return [(l.type, l.input_shape, l.output_shape) for l in net.layers]


def n_params(net):
    return sum(v.size for l in net.layers for v in l.params.values())


@pytest.mark.parametrize("name", ORIGINAL)
def test_original_cfg_loads_cleanly(name):
    path = require_reference("cfg", name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = darknet_py.load(path)
    assert len(net) > 10
    assert net.total_flops > 1e9


@pytest.mark.parametrize("name", OURS)
def test_project_cfg_matches_original(name):
    ref = darknet_py.load(require_reference("cfg", name))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = darknet_py.load(REPO / "cfg" / name)
    assert shapes(ours) == shapes(ref)
    assert n_params(ours) == n_params(ref)


def test_yolo9000_tree_softmax_groups():
    net = darknet_py.load(require_reference("cfg", "darknet9000.cfg"))
    net.resize(64, 64)  # small input keeps the test fast; the tree softmax is per location
    out = net.forward(np.random.default_rng(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32)).ravel()
    from darknet_py import _core
    tree = _core.WordTree.read(str(require_reference("data", "9k.tree")))
    assert out.size == tree.n
    for off, size in zip(tree.group_offset, tree.group_size):
        assert abs(out[off:off + size].sum() - 1.0) < 1e-4


def test_tree_softmax_missing_file(tmp_path):
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=3\n[convolutional]\nfilters=3\nsize=1\n"
                   "[avgpool]\n[softmax]\ntree=nowhere.tree\n")
    with pytest.raises(darknet_py.DarknetError, match=r"t\.cfg:10: \[softmax\] tree=nowhere\.tree: file 'nowhere\.tree' not found"):
        darknet_py.load(cfg)
