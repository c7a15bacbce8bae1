"""Darknet .weights reading/writing: header versions, round trips, partial loads, bad files."""
import warnings

import numpy as np
import pytest

import darknet_py
from darknet_py import DarknetError
from conftest import load_case, require_reference


@pytest.fixture(scope="module")
def io_case():
    return load_case("fixtures", "weights_io", "loaded_params")


def _load(case, name):
    root = case.root
    info = case.manifest["weights_files"][name]
    net = darknet_py.load(root / case.manifest["cfg"], root / info["file"])
    return net, info


@pytest.mark.parametrize("name", ["v0.1.0_seen12345", "v0.2.0_seen12345", "v0.2.0_seen4294967303"])
def test_versions_load_identically(io_case, name):
    net, info = _load(io_case, name)
    assert net.seen == info["seen_read_by_darknet"]
    for i, layer in enumerate(net.layers):
        for pname, arr in layer.params.items():
            key = f"L{i:02d}_{pname}"
            assert io_case.has(key), key
            np.testing.assert_array_equal(arr.ravel(), io_case.array(key).ravel(), err_msg=key)


@pytest.mark.parametrize("name", ["v0.2.0_seen12345", "v0.2.0_seen4294967303"])
def test_round_trip_byte_for_byte(io_case, name, tmp_path):
    net, info = _load(io_case, name)
    out = tmp_path / "rt.weights"
    net.save_weights(out)
    assert out.read_bytes() == (io_case.root / info["file"]).read_bytes()


def test_v01_saves_as_v02_with_same_params(io_case, tmp_path):
    net, info = _load(io_case, "v0.1.0_seen12345")
    out = tmp_path / "v02.weights"
    net.save_weights(out)
    header = np.fromfile(out, dtype=np.int32, count=3)
    assert header.tolist() == [0, 2, 0]
    assert np.fromfile(out, dtype=np.uint64, count=1, offset=12)[0] == 12345
    src = (io_case.root / info["file"]).read_bytes()
    assert out.read_bytes()[20:] == src[16:]


def test_partial_load_cutoff(io_case, tmp_path):
    root = io_case.root
    info = io_case.manifest["weights_files"]["v0.2.0_seen12345"]
    net = darknet_py.load(root / io_case.manifest["cfg"], root / info["file"], cutoff=1)
    np.testing.assert_array_equal(net.layers[0].params["weights"].ravel(), io_case.array("L00_weights").ravel())
    # Untouched beyond the cutoff: still load()'s seeded random initialisation (seed 0).
    fresh = darknet_py.load(root / io_case.manifest["cfg"])
    np.testing.assert_array_equal(net.layers[2].params["weights"], fresh.layers[2].params["weights"])
    # A file holding only the first layer (like darknet19_448.conv.23) loads with cutoff.
    part = tmp_path / "part.weights"
    net.save_weights(part, cutoff=1)
    net2 = darknet_py.load(root / io_case.manifest["cfg"], part, cutoff=1)
    np.testing.assert_array_equal(net2.layers[0].params["weights"], net.layers[0].params["weights"])


def test_truncated_file_names_layer_and_counts(io_case, tmp_path):
    src = (io_case.root / io_case.manifest["weights_files"]["v0.2.0_seen12345"]["file"]).read_bytes()
    bad = tmp_path / "short.weights"
    bad.write_bytes(src[:-40])
    net = darknet_py.load(io_case.root / io_case.manifest["cfg"])
    before = net.layers[0].params["weights"].copy()
    with pytest.raises(DarknetError, match=r"truncated weights: layer 2 \(convolutional\) weights expects 160 floats but only 150 remain"):
        net.load_weights(bad)
    np.testing.assert_array_equal(net.layers[0].params["weights"], before)  # nothing half-loaded


def test_tiny_file_and_missing_file(io_case, tmp_path):
    cfg = io_case.root / io_case.manifest["cfg"]
    tiny = tmp_path / "tiny.weights"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(DarknetError, match="not a Darknet weights file"):
        darknet_py.load(cfg, tiny)
    with pytest.raises(DarknetError, match="weights file not found"):
        darknet_py.load(cfg, tmp_path / "nope.weights")


def test_trailing_data_warns(io_case, tmp_path):
    src = (io_case.root / io_case.manifest["weights_files"]["v0.2.0_seen12345"]["file"]).read_bytes()
    big = tmp_path / "big.weights"
    big.write_bytes(src + b"\x00" * 64)
    with pytest.warns(darknet_py.network.DarknetWarning, match="64 bytes after the last layer"):
        darknet_py.load(io_case.root / io_case.manifest["cfg"], big)


def test_save_is_atomic(io_case, tmp_path, monkeypatch):
    """A failed write never replaces a good file, and leaves no temp file behind."""
    net, _ = _load(io_case, "v0.2.0_seen12345")
    target = tmp_path / "good.weights"
    net.save_weights(target)
    good = target.read_bytes()
    # Saving into a directory we cannot create files in fails cleanly.
    with pytest.raises(DarknetError, match="cannot open"):
        net.save_weights(tmp_path / "missing_dir" / "x.weights")
    # Simulate a writer killed mid-write: a stale partial temp file must not affect the target.
    (tmp_path / "good.weights.tmp.99999").write_bytes(good[:100])
    net.seen = 7
    net.save_weights(target)
    assert target.read_bytes()[:12] == good[:12] and target.stat().st_size == len(good)
    assert not any(p.name.startswith("good.weights.tmp.") and p.name != "good.weights.tmp.99999" for p in tmp_path.iterdir())
