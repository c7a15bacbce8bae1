"""Regression tests for issue 13 (hostile input, faults, threads): each test is named after
the crash or the silent damage it pins down. Anything that used to kill the process runs
in a child (tests/_isolated.py), so a regression fails one test instead of pytest."""
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import darknet_py
from darknet_py import DarknetError
from darknet_py.data.dataset import validate_dataset
from darknet_py.image import load_image
from _isolated import PACKAGE_ROOT, child_environment, run_isolated

NET = """[net]
batch=1
width=32
height=32
channels=3
"""

SMALL = NET + """
[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=8
size=1
activation=linear
"""


def build(text, tmp_path, name="bad.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return darknet_py.load(p)


def write(tmp_path, text, name="bad.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------- crashes and hangs

def test_reorg_stride_65536_is_an_error_not_sigfpe(tmp_path):
    """stride*stride overflowed to 0 and was divided by (SIGFPE), also in `darknet-py info`."""
    cfgs = {
        "reverse": NET + "[reorg]\nstride=65536\nreverse=1\n",
        "forward": NET + "[reorg]\nstride=65536\n",
        "divisible": NET.replace("channels=3", "channels=1048576").replace("width=32", "width=128")
        .replace("height=32", "height=1") + "[reorg]\nstride=1024\nreverse=1\n",
        "too_big": NET + "[reorg]\nstride=2048\nreverse=1\n",
    }
    for name, text in cfgs.items():
        path = write(tmp_path, text, f"{name}.cfg")
        out = run_isolated(f"""
            import darknet_py
            try:
                darknet_py.load({str(path)!r})
                print("loaded")
            except darknet_py.DarknetError as e:
                print("error:", e)
        """)
        assert out.startswith("error:") and "[reorg]" in out, (name, out)
        cli = subprocess.run([sys.executable, "-m", "darknet_py.cli", "info", str(path)], capture_output=True, text=True,
                             timeout=60, cwd=str(PACKAGE_ROOT), env=child_environment())
        assert cli.returncode == 2 and "darknet-py: error:" in cli.stderr, (name, cli.returncode, cli.stderr)


def test_maxpool_huge_size_is_refused_not_a_hang(tmp_path):
    """size=1e9 stride=1 loaded, and the first forward never finished."""
    path = write(tmp_path, NET + "[maxpool]\nsize=1000000000\nstride=1\n")
    out = run_isolated(f"""
        import darknet_py
        try:
            darknet_py.load({str(path)!r})
            print("loaded")
        except darknet_py.DarknetError as e:
            print("error:", e)
    """, timeout=30)
    assert "error:" in out and "size=1000000000: must be <= 1024" in out


@pytest.mark.parametrize("key,value", [("width", "1000000000"), ("height", "1000000000"), ("channels", "1000000000"),
                                       ("width", "1000000000.0")])
def test_width_height_1e9_overflow_is_refused(tmp_path, key, value):
    """width=height=1e9 loaded through a signed overflow of w*h*c."""
    text = NET.replace(f"{key}={32 if key != 'channels' else 3}", f"{key}={value}") + "[maxpool]\nsize=2\nstride=2\n"
    with pytest.raises(DarknetError, match=rf"bad\.cfg:\d+: \[net\] {key}={value}: must be in \[1, \d+\]"):
        build(text, tmp_path)


def test_big_input_within_limits_is_refused_by_the_memory_limit_naming_layer_and_bytes(tmp_path):
    text = NET.replace("width=32", "width=2048").replace("height=32", "height=2048") + \
        "[convolutional]\nfilters=64\nsize=1\nactivation=linear\n"
    with pytest.raises(DarknetError, match=r"bad\.cfg:6: \[convolutional\]: building the network: layer 0 \(convolutional\) needs 68719477760 bytes "
                                           r"of buffers .* at batch 64, over the memory limit of 34359738368 bytes"):
        darknet_py.Network.from_text(text, "bad.cfg", batch=64)
    darknet_py.Network.from_text(text, "bad.cfg", batch=1)  # the same cfg fits at batch 1


def test_region_max_1e9_is_refused_not_an_overflow(tmp_path):
    text = NET + "[convolutional]\nfilters=30\nsize=1\nactivation=linear\n[region]\nclasses=1\nnum=5\nmax=1000000000\n"
    with pytest.raises(DarknetError, match=r"\[region\] max=1000000000: must be <= 65536"):
        build(text, tmp_path)


def test_huge_conv_filters_refused_before_allocating(tmp_path):
    text = NET + "[convolutional]\nfilters=1048576\nsize=1024\nactivation=linear\npad=1\n"
    with pytest.raises(DarknetError, match=r"\[convolutional\]"):
        build(text, tmp_path)
    text = NET.replace("channels=3", "channels=65536") + "[convolutional]\nfilters=65536\nsize=3\npad=1\n"
    with pytest.raises(DarknetError, match=r"the weights need 154618822656 bytes, more than the memory limit"):
        build(text, tmp_path)


def test_route_repeated_layers_channel_overflow_refused(tmp_path):
    text = NET.replace("width=32", "width=2").replace("height=32", "height=2") + \
        "[convolutional]\nfilters=1024\nsize=1\n[route]\nlayers=" + ",".join(["-1"] * 1025) + "\n"
    with pytest.raises(DarknetError, match=r"channels in all, more than the limit"):
        build(text, tmp_path)


def test_update_when_not_training_raises_not_segfault():
    out = run_isolated(f"""
        import darknet_py
        net = darknet_py.Network.from_text({SMALL!r})
        try:
            net._net.update()
            print("updated")
        except darknet_py.DarknetError as e:
            print("error:", e)
    """)
    assert "error: update needs the network in training mode" in out


def test_numpy_views_kept_across_resize_batch_change_and_set_training_stay_valid():
    """A view from layer.buffers/params written after the buffer was reallocated corrupted the heap."""
    out = run_isolated(f"""
        import gc, numpy as np, darknet_py
        net = darknet_py.Network.from_text({SMALL!r})
        net._net.set_training(True)
        bufs = [net.layers[i].buffers for i in range(3)]
        params = [net.layers[i].params for i in range(3)]
        x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
        net.forward(x)
        net.resize(64, 64)
        net._net.set_batch(4)
        net._net.set_training(False)
        net._net.set_training(True)
        net._net.set_batch(2)
        gc.collect()
        for d in bufs + params:
            for name, a in d.items():
                a[...] = 7.0  # must write into memory the array owns a share of
                assert float(a.sum()) == 7.0 * a.size, name
        # Parameter views stay attached to the network across all of the above.
        assert float(net.layers[0].params["weights"].sum()) == 7.0 * params[0]["weights"].size
        net.randomize(1)
        w = params[0]["weights"]
        assert np.array_equal(w, net.layers[0].params["weights"]), "randomize detached the weights view"
        del net
        gc.collect()
        w[...] = 1.0  # the network is gone; the view keeps its storage
        print("ok", float(w.sum()))
    """)
    assert out.startswith("ok")


REORG_NET = NET + """
[convolutional]
filters=8
size=3
pad=1
activation=leaky

[reorg]
stride=2
"""


def test_failed_resize_leaves_network_as_it_was(tmp_path):
    """A resize that failed partway left later layers at the old size: the next forward segfaulted."""
    out = run_isolated(f"""
        import numpy as np, darknet_py
        net = darknet_py.Network.from_text({REORG_NET!r})
        x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
        before = net.forward(x)
        try:
            net.resize(33, 33)  # the conv takes 33x33, then the reorg refuses (33 is odd)
            print("resized")
        except darknet_py.DarknetError as e:
            print("error:", e)
        assert (net.width, net.height) == (32, 32), (net.width, net.height)
        assert [l.output_shape for l in net.layers] == [(8, 32, 32), (32, 16, 16)]
        assert np.array_equal(before, net.forward(x))
        print("same")
    """)
    assert "error:" in out and "not divisible by stride 2" in out and out.strip().endswith("same")


def test_failed_batch_change_over_memory_limit_leaves_network_as_it_was():
    net = darknet_py.Network.from_text(SMALL)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    before = net.forward(x)
    old = darknet_py.memory_limit()
    try:
        darknet_py.set_memory_limit(net._net.planned_bytes * 3)
        with pytest.raises(DarknetError, match=r"set_batch: layer \d+ \(\w+\) needs \d+ bytes.*over the memory limit"):
            net._net.set_batch(64)
        assert net.batch == 1 and all(net._net.layer(i).batch == 1 for i in range(len(net)))
        np.testing.assert_array_equal(net.forward(x), before)
        with pytest.raises(DarknetError, match=r"resize: layer .* over the memory limit"):
            net.resize(320, 320)
        assert (net.width, net.height) == (32, 32)
        np.testing.assert_array_equal(net.forward(x), before)
    finally:
        darknet_py.set_memory_limit(old)


def test_set_training_over_memory_limit_rolls_back():
    net = darknet_py.Network.from_text(SMALL)
    old = darknet_py.memory_limit()
    try:
        darknet_py.set_memory_limit(net._net.planned_bytes + 16)
        with pytest.raises(DarknetError, match=r"set_training: .* in training mode, over the memory limit"):
            net._net.set_training(True)
        assert not net._net.training and net.layers[0].delta is None
    finally:
        darknet_py.set_memory_limit(old)


def test_memory_limit_is_overridable_by_environment():
    out = run_isolated("""
        import darknet_py
        print(darknet_py.memory_limit())
        darknet_py.set_memory_limit("1G")
        print(darknet_py.memory_limit())
        darknet_py.set_memory_limit(None)
        print(darknet_py.memory_limit())
    """, env={"DARKNET_PY_MEMORY_LIMIT": "64M"})
    assert out.split() == [str(64 << 20), str(1 << 30), str(64 << 20)]


# ---------------------------------------------------------------- silent damage: cfg values

@pytest.mark.parametrize("line,pattern", [
    ("learning_rate=nan", r"learning_rate=nan: expected a finite number"),
    ("learning_rate=-0.001", r"learning_rate=-0.001: must be >= 0"),
    ("learning_rate=inf", r"learning_rate=inf: expected a finite number"),
    ("momentum=-0.5", r"momentum=-0.5: must be in \[0, 1\]"),
    ("momentum=nan", r"momentum=nan: expected a finite number"),
    ("decay=-1", r"decay=-1: must be in \[0, 1\]"),
    ("burn_in=-5", r"burn_in=-5: must be in \[0, "),
    ("hue=93", r"hue=93: must be in \[0, 1\]"),
    ("saturation=-1", r"saturation=-1: must be in"),
    ("adam=1", r"adam=1: the Adam optimiser is not supported"),
    ("batch=1000000", r"batch=1000000: must be in \[1, 65536\]"),
    ("policy=steps\nsteps=100,50\nscales=.1,.1", r"steps=100,50: steps must not decrease"),
    ("policy=steps\nsteps=-5\nscales=.1", r"steps=-5: steps must be >= -1"),
    ("policy=steps\nsteps=10\nscales=nan", r"scales=nan: expected a finite number"),
    ("policy=steps\nsteps=10\nscales=-1", r"scales=-1: scales must be in \[0, 1000\]"),
    ("policy=step\nstep=0", r"step=0: must be in \[1, "),
])
def test_meaningless_net_values_are_refused(tmp_path, line, pattern):
    with pytest.raises(DarknetError, match=r"bad\.cfg:\d+: \[net\] " + pattern):
        build(NET + line + "\n[maxpool]\nsize=2\nstride=2\n", tmp_path)


REGION = NET + "[convolutional]\nfilters=30\nsize=1\nactivation=linear\n[region]\nclasses=1\nnum=5\n"


@pytest.mark.parametrize("line,pattern", [
    ("thresh=nan", r"thresh=nan: expected a finite number"),
    ("thresh=-1", r"thresh=-1: must be in \[0, 1\]"),
    ("jitter=-0.2", r"jitter=-0.2: must be in \[0, 0.99\]"),
    ("jitter=1.5", r"jitter=1.5: must be in \[0, 0.99\]"),
    ("coord_scale=-1", r"coord_scale=-1: must be in \[0, 1e\+06\]"),
    ("object_scale=nan", r"object_scale=nan: expected a finite number"),
    ("classfix=1", r"classfix=1: a non-zero classfix is not supported"),
    ("anchors=nan,1,1,1,1,1,1,1,1,1", r"anchors=.*expected a finite number"),
])
def test_meaningless_region_values_are_refused(tmp_path, line, pattern):
    with pytest.raises(DarknetError, match=r"bad\.cfg:\d+: \[region\] " + pattern):
        build(REGION + line + "\n", tmp_path)


def test_darknet_read_but_unused_region_keys_stay_quiet(tmp_path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build(REGION + "absolute=1\nlog=0\nsqrt=1\nclassfix=0\n", tmp_path)


def test_non_utf8_cfg_is_darknet_error_with_file_line(tmp_path):
    p = tmp_path / "bad.cfg"
    p.write_bytes(NET.encode() + b"[convolutional]\nfilters=4\nacti\xffvation=leaky\n")
    with pytest.raises(DarknetError, match=r"bad\.cfg:8: not UTF-8 text \(byte 0xFF at column 5\)"):
        darknet_py.load(p)
    p.write_bytes(NET.encode() + b"[convolutional]\n\xc3\x28=1\n")
    with pytest.raises(DarknetError, match=r"bad\.cfg:7: not UTF-8"):
        darknet_py.load(p)
    p.write_bytes(NET.encode() + b"[maxpool]\nsize=2\x00\n")
    with pytest.raises(DarknetError, match=r"bad\.cfg:7: NUL byte"):
        darknet_py.load(p)


# ---------------------------------------------------------------- silent damage: weights

def _saved(tmp_path, text=SMALL):
    net = darknet_py.Network.from_text(text)
    net.randomize(3)
    path = tmp_path / "good.weights"
    net.save_weights(str(path))
    return net, path, bytearray(path.read_bytes())


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_weights_with_nan_or_inf_are_refused_and_nothing_loads(tmp_path, value):
    net, path, data = _saved(tmp_path)
    struct.pack_into("<f", data, len(data) - 4, value)  # the last weight of the last layer
    bad = tmp_path / "bad.weights"
    bad.write_bytes(bytes(data))
    target = darknet_py.Network.from_text(SMALL)
    before = {k: v.copy() for k, v in target.layers[0].params.items()}
    with pytest.raises(DarknetError, match=r"layer 2 \(convolutional\) weights\[\d+\] is -?(nan|inf).*nothing was loaded"):
        target.load_weights(str(bad))
    for k, v in before.items():
        np.testing.assert_array_equal(target.layers[0].params[k], v)
    assert target.seen == 0


def test_weights_seen_at_or_above_2_63_is_refused(tmp_path):
    _, _, data = _saved(tmp_path)
    struct.pack_into("<Q", data, 12, 1 << 63)
    bad = tmp_path / "bad.weights"
    bad.write_bytes(bytes(data))
    net = darknet_py.Network.from_text(SMALL)
    with pytest.raises(DarknetError, match=r"'seen' = 9223372036854775808 images is not a valid count"):
        net.load_weights(str(bad))
    assert net.seen == 0


@pytest.mark.parametrize("major,minor", [(-1, -1), (0, -1), (-1, 2)])
def test_weights_negative_header_version_is_refused_not_shifted(tmp_path, major, minor):
    _, _, data = _saved(tmp_path)
    struct.pack_into("<ii", data, 0, major, minor)
    bad = tmp_path / "bad.weights"
    bad.write_bytes(bytes(data))
    with pytest.raises(DarknetError, match=rf"header version {major}\.{minor}\.0 is not a Darknet weights version"):
        darknet_py.Network.from_text(SMALL).load_weights(str(bad))


def test_bigger_cfg_weights_into_smaller_net_warns_and_records_the_warning(tmp_path):
    big = darknet_py.Network.from_text(SMALL + "[convolutional]\nfilters=4\nsize=1\n")
    path = tmp_path / "big.weights"
    big.save_weights(str(path))
    small = darknet_py.Network.from_text(SMALL)
    with pytest.warns(darknet_py.network.DarknetWarning, match=r"bytes after the last layer's weights were not used"):
        small.load_weights(str(path))
    assert any("were not used" in w for w in small._net.warnings)  # what dn_network_warnings returns


def test_save_weights_with_nul_byte_in_path_is_refused(tmp_path):
    """'a.weights\\0x' used to write (and rename over) 'a.weights'."""
    net, path, data = _saved(tmp_path)
    victim = tmp_path / "victim.weights"
    victim.write_bytes(b"precious")
    with pytest.raises(DarknetError, match="NUL byte"):
        net.save_weights(str(victim) + "\0.tmp")
    assert victim.read_bytes() == b"precious"
    assert not list(tmp_path.glob("victim.weights.tmp*"))
    with pytest.raises(DarknetError, match="NUL byte"):
        net.load_weights(str(path) + "\0x")


def test_negative_seen_is_refused():
    net = darknet_py.Network.from_text(SMALL)
    with pytest.raises(DarknetError, match="seen must be >= 0"):
        net.seen = -1


# ---------------------------------------------------------------- images and data

def test_pillow_mode_f_and_i_images_keep_their_range(tmp_path):
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    f_img = Image.fromarray(ramp, mode="F")
    got = load_image(f_img)
    np.testing.assert_allclose(got[0], np.rint(ramp * 255) / 255, atol=1e-6)  # was all black
    i16 = (ramp * 65535).astype(np.int32)
    i_img = Image.fromarray(i16, mode="I")
    got = load_image(i_img)
    np.testing.assert_allclose(got[1], (i16 >> 8).astype(np.uint8) / 255, atol=1e-6)  # was white
    small = Image.fromarray((ramp * 200).astype(np.int32), mode="I")
    np.testing.assert_allclose(load_image(small)[2], (ramp * 200).astype(np.uint8) / 255, atol=1e-6)
    tif = tmp_path / "float.tif"
    f_img.save(tif)
    np.testing.assert_allclose(load_image(str(tif))[0], np.rint(ramp * 255) / 255, atol=1e-6)
    with pytest.raises(DarknetError, match="NaN or infinite"):
        load_image(Image.fromarray(np.full((4, 4), np.nan, dtype=np.float32), mode="F"))


def _dataset(tmp_path, label_text, jpeg_bytes=None):
    images = tmp_path / "images"
    labels = tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    img = images / "a.jpg"
    if jpeg_bytes is None:
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(img, quality=90)
    else:
        img.write_bytes(jpeg_bytes)
    (labels / "a.txt").write_text(label_text)
    return img


def test_truncated_jpeg_is_found_by_the_dataset_check(tmp_path):
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good, quality=90)
    img = _dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n", good.read_bytes()[:-600])
    with pytest.raises(DarknetError, match=r"a\.jpg: unreadable image \(.*truncated"):
        validate_dataset([img], classes=1)
    assert validate_dataset([img], classes=1, check_images="verify", raise_on_error=False).ok  # the old header check


def test_label_at_origin_is_flagged_as_the_classification_only_marker(tmp_path):
    img = _dataset(tmp_path, "0 0.5 0.5 0.2 0.2\n0 0 0 0.3 0.3\n")
    with pytest.raises(DarknetError, match=r"a\.txt:2: box centre \(0, 0\) is Darknet's classification-only marker"):
        validate_dataset([img], classes=1)
    assert validate_dataset([img], classes=1, class_only_labels=True).boxes == 2


def test_cli_detect_outputs_with_the_same_stem_do_not_overwrite_each_other():
    from darknet_py.cli import _prediction_names
    assert _prediction_names(["a/dog.jpg", "b/dog.png", "cat.jpg", "c/dog.jpg"]) == [
        "dog_predictions.png", "dog_2_predictions.png", "cat_predictions.png", "dog_3_predictions.png"]
    names = _prediction_names(["dog_2.jpg", "a/dog.jpg", "b/dog.jpg"])
    assert len(set(names)) == 3


def test_non_utf8_tree_file_is_darknet_error_with_file_line(tmp_path):
    from darknet_py import _core
    p = tmp_path / "bad.tree"
    p.write_bytes(b"n01 -1\nn0\xff2 0\n")
    with pytest.raises(DarknetError, match=r"bad\.tree:2: not UTF-8 text"):
        _core.WordTree.read(str(p))


def test_batch_override_over_the_limit_is_refused():
    with pytest.raises(DarknetError, match=r"batch 1000000 is larger than the limit 65536"):
        darknet_py.Network.from_text(SMALL, batch=1000000)
    with pytest.raises(DarknetError, match=r"batch must be in \[1, 65536\]"):
        darknet_py.Network.from_text(SMALL)._net.set_batch(70000)


def test_truncated_jpeg_is_found_by_the_classification_dataset_check(tmp_path):
    from darknet_py.data.classification import check_classification_dataset
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good, quality=90)
    bad = tmp_path / "cat_1.jpg"
    bad.write_bytes(good.read_bytes()[:-600])
    _, problems = check_classification_dataset([(str(bad), str(bad))], ["cat"], raise_on_error=False)
    assert any("truncated" in p for p in problems), problems


@pytest.mark.parametrize("line,pattern", [
    ("learning_rate=-1", r"\[convolutional\] learning_rate=-1: must be in \[0, 1000\]"),
    ("learning_rate=nan", r"\[convolutional\] learning_rate=nan: expected a finite number"),
    ("size=2000", r"\[convolutional\] size=2000: must be <= 1024"),
    ("filters=2000000", r"\[convolutional\] filters=2000000: must be <= 1048576"),
])
def test_meaningless_conv_values_are_refused(tmp_path, line, pattern):
    with pytest.raises(DarknetError, match=r"bad\.cfg:\d+: " + pattern):
        build(NET + "[convolutional]\nfilters=4\nsize=1\n" + line + "\n", tmp_path)
