"""Image arithmetic: Darknet-exact resize/letterbox (vs an independent numpy
implementation of Darknet's formulas), loading errors, drawing, augmentation."""
import numpy as np
import pytest
from PIL import Image

import darknet_py
from darknet_py import DarknetError, _core
from darknet_py.image import draw_detections, letterbox, load_image, resize
from conftest import require_reference


def numpy_resize(im, w, h):
    """Darknet's resize_image, written out in float32 numpy."""
    c, ih, iw = im.shape
    f = np.float32
    part = np.zeros((c, ih, w), f)
    w_scale = f(iw - 1) / f(w - 1) if w > 1 else f(0)
    h_scale = f(ih - 1) / f(h - 1) if h > 1 else f(0)
    for col in range(w):
        if col == w - 1 or iw == 1:
            part[:, :, col] = im[:, :, iw - 1]
        else:
            sx = f(col) * w_scale
            ix = int(sx)
            dx = f(sx - f(ix))
            part[:, :, col] = (f(1) - dx) * im[:, :, ix] + dx * im[:, :, ix + 1]
    out = np.zeros((c, h, w), f)
    for r in range(h):
        sy = f(r) * h_scale
        iy = int(sy)
        dy = f(sy - f(iy))
        out[:, r, :] = (f(1) - dy) * part[:, iy, :]
        if r == h - 1 or ih == 1:
            continue
        out[:, r, :] += dy * part[:, iy + 1, :]
    return out


def numpy_letterbox(im, w, h):
    c, ih, iw = im.shape
    if w / iw < h / ih:
        new_w, new_h = w, (ih * w) // iw
    else:
        new_h, new_w = h, (iw * h) // ih
    boxed = np.full((c, h, w), 0.5, np.float32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = numpy_resize(im, new_w, new_h)
    return boxed


@pytest.mark.parametrize("src,dst", [((37, 23), (16, 16)), ((20, 30), (41, 17)), ((64, 48), (64, 48)),
                                     ((9, 7), (3, 5)), ((5, 5), (13, 29))])
def test_resize_matches_darknet_formula(src, dst):
    im = np.random.default_rng(0).uniform(0, 1, (3, src[1], src[0])).astype(np.float32)
    np.testing.assert_allclose(resize(im, *dst), numpy_resize(im, *dst), rtol=0, atol=2e-7)


@pytest.mark.parametrize("src,dst", [((768, 576), (416, 416)), ((300, 500), (416, 416)), ((50, 50), (64, 32))])
def test_letterbox_matches_darknet_formula(src, dst):
    im = np.random.default_rng(1).uniform(0, 1, (3, src[1], src[0])).astype(np.float32)
    np.testing.assert_allclose(letterbox(im, *dst), numpy_letterbox(im, *dst), rtol=0, atol=2e-7)


def test_letterbox_dog_close_to_darknet():
    """Pillow vs stb_image JPEG decoding differ slightly; measured max 0.011, mean 2.8e-4."""
    ref = np.load(require_reference("fixtures", "full_nets", "yolov2-voc_416", "input.npy"))[0]
    ours = letterbox(load_image(require_reference("data", "dog.jpg")), 416, 416)
    d = np.abs(ours - ref)
    assert d.mean() < 1e-3 and d.max() < 0.05


@pytest.mark.parametrize("content,pattern", [
    (None, "file not found"), (b"", "file is empty"), (b"not an image at all", "not a recognised image format"),
])
def test_bad_images(tmp_path, content, pattern):
    p = tmp_path / "x.jpg"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(DarknetError, match=pattern):
        load_image(p)


def test_truncated_jpeg(tmp_path):
    good = tmp_path / "g.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DarknetError, match="b.jpg"):
        load_image(bad)


def test_modes_and_arrays():
    gray = Image.fromarray(np.full((5, 7), 255, np.uint8), "L")
    a = load_image(gray)
    assert a.shape == (3, 5, 7) and a.dtype == np.float32 and np.allclose(a, 1)
    with pytest.raises(DarknetError):
        resize(np.zeros((3, 4)), 2, 2)
    with pytest.raises(DarknetError):
        resize(np.zeros((3, 4, 4), np.float32), 0, 2)


def test_draw_detections_writes_image(tmp_path):
    img = np.full((3, 60, 80), .3, np.float32)
    det = darknet_py.Detection(1, "dog", .9, .95, (40, 30, 20, 10))
    out = tmp_path / "boxes.png"
    draw_detections(img, [det], ["cat", "dog"], out)
    pixels = np.asarray(Image.open(out))
    assert pixels.shape == (60, 80, 3)
    assert (np.abs(pixels.astype(int) - int(.3 * 255)).sum(-1) > 30).any()  # something was drawn


def test_augmentation_is_seeded_and_boxes_follow_flip():
    rng = np.random.default_rng(2)
    im = rng.uniform(0, 1, (3, 48, 64)).astype(np.float32)
    boxes = np.array([[1, .25, .5, .2, .3]], np.float32)
    a = _core.augment_detection(im, boxes, 32, 32, 0.0, 0.0, 1.0, 1.0, True, 4, 7, True)
    b = _core.augment_detection(im, boxes, 32, 32, 0.0, 0.0, 1.0, 1.0, True, 4, 7, True)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    x, y, w, h, cls = a[1][:5]
    assert cls == 1 and w > 0 and h > 0
    expected_x = 1 - .25 if a[2]["flipped"] else .25
    assert abs(x - expected_x) < 0.1  # no jitter: only the aspect fit moves the box
