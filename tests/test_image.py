"""Image arithmetic against (a) straightforward numpy versions of Darknet's
formulas, bit for bit, and (b) Darknet's own letterboxed dog.jpg."""
import os

import numpy as np
import pytest
from PIL import Image

import darknet_py
from darknet_py import DarknetError, _core
from darknet_py.image import draw_detections, letterbox, letterbox_size, load_image, resize, save_image

from conftest import require_reference

F = np.float32


# --------------------------------------------------------------------------- numpy references
# Each follows Darknet's C expressions step by step in float32 (double where C
# uses a double literal), so equality is exact.

def np_resize(im, w, h):
    c, ih, iw = im.shape
    w_scale = F(iw - 1) / F(w - 1) if w > 1 else F(0)
    h_scale = F(ih - 1) / F(h - 1) if h > 1 else F(0)
    part = np.empty((c, ih, w), F)
    for col in range(w):
        if col == w - 1 or iw == 1:
            part[:, :, col] = im[:, :, iw - 1]
        else:
            sx = F(col) * w_scale
            ix = int(sx)
            dx = sx - F(ix)
            part[:, :, col] = (F(1) - dx) * im[:, :, ix] + dx * im[:, :, ix + 1]
    out = np.empty((c, h, w), F)
    for r in range(h):
        sy = F(r) * h_scale
        iy = int(sy)
        dy = sy - F(iy)
        out[:, r, :] = (F(1) - dy) * part[:, iy, :]
        if r == h - 1 or ih == 1:
            continue
        out[:, r, :] += dy * part[:, iy + 1, :]
    return out


def np_letterbox(im, w, h):
    _, ih, iw = im.shape
    if F(w) / F(iw) < F(h) / F(ih):
        new_w, new_h = w, (ih * w) // iw
    else:
        new_w, new_h = (iw * h) // ih, h
    out = np.full((im.shape[0], h, w), 0.5, F)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    out[:, dy:dy + new_h, dx:dx + new_w] = np_resize(im, new_w, new_h)
    return out


def np_place(im, w, h, dx, dy, canvas):
    c, ih, iw = im.shape
    padded = np.zeros((c, ih + 1, iw + 1), F)  # get_pixel_extend reads 0 outside
    padded[:, :ih, :iw] = im
    out = canvas.copy()
    for y in range(h):
        if not 0 <= y + dy < canvas.shape[1]:
            continue
        ry = (F(y) / F(h)) * F(ih)
        iy = int(np.floor(ry))
        fy = ry - F(iy)
        for x in range(w):
            if not 0 <= x + dx < canvas.shape[2]:
                continue
            rx = (F(x) / F(w)) * F(iw)
            ix = int(np.floor(rx))
            fx = rx - F(ix)
            out[:, y + dy, x + dx] = ((F(1) - fy) * (F(1) - fx) * padded[:, iy, ix] + fy * (F(1) - fx) * padded[:, iy + 1, ix]
                                      + (F(1) - fy) * fx * padded[:, iy, ix + 1] + fy * fx * padded[:, iy + 1, ix + 1])
    return out


def np_rgb_to_hsv(im):
    r, g, b = im
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    delta = mx - mn
    colored = (mx != 0) & (delta != 0)
    safe = np.where(colored, delta, F(1))
    h = np.where(r == mx, (g - b) / safe, np.where(g == mx, F(2) + (b - r) / safe, F(4) + (r - g) / safe))
    h = np.where(h < 0, h + F(6), h)
    h = (h.astype(np.float64) / 6.0).astype(F)
    s = np.where(colored, delta / np.where(mx != 0, mx, F(1)), F(0))
    return np.stack([np.where(colored, h, F(0)), s, mx]).astype(F)


def np_hsv_to_rgb(im):
    h6 = F(6) * im[0]
    s, v = im[1], im[2]
    index = np.floor(h6).astype(np.int64)
    f = h6 - index.astype(F)
    p = v * (F(1) - s)
    q = v * (F(1) - s * f)
    t = v * (F(1) - s * (F(1) - f))
    cases = [index == k for k in range(5)]
    r = np.select(cases, [v, q, p, p, t], v)
    g = np.select(cases, [t, v, v, q, p], p)
    b = np.select(cases, [p, p, t, v, v], q)
    grey = s == 0
    return np.stack([np.where(grey, v, r), np.where(grey, v, g), np.where(grey, v, b)]).astype(F)


def np_distort(im, hue, sat, exposure):
    hsv = np_rgb_to_hsv(im)
    hsv[1] *= F(sat)
    hsv[2] *= F(exposure)
    h = hsv[0] + F(hue)
    h = np.where(h > 1, h - F(1), h)
    h = np.where(h < 0, h + F(1), h)
    hsv[0] = h
    return np.clip(np_hsv_to_rgb(hsv), F(0), F(1))


def np_truth(labels, draws, net_w, net_h, max_boxes):
    rows = labels[draws["box_order"]] if len(labels) else labels
    dx, dy = F(-F(draws["dx"]) / F(net_w)), F(-F(draws["dy"]) / F(net_h))
    sx, sy = F(F(draws["nw"]) / F(net_w)), F(F(draws["nh"]) / F(net_h))
    truth = np.zeros(max_boxes * 5, F)
    kept = 0
    for i, (cls, x, y, w, h) in enumerate(rows[:, :5].astype(F)):
        if i >= max_boxes:
            break
        if x == 0 and y == 0:
            x = y = w = h = F(999999)
        else:
            left, right = x - w / F(2), x + w / F(2)
            top, bottom = y - h / F(2), y + h / F(2)
            left, right = left * sx - dx, right * sx - dx
            top, bottom = top * sy - dy, bottom * sy - dy
            if draws["flipped"]:
                left, right = F(1.0 - float(right)), F(1.0 - float(left))
            left, right, top, bottom = (F(min(max(v, F(0)), F(1))) for v in (left, right, top, bottom))
            x, y = (left + right) / F(2), (top + bottom) / F(2)
            w, h = F(min(max(right - left, F(0)), F(1))), F(min(max(bottom - top, F(0)), F(1)))
        if w < .001 or h < .001:
            continue
        truth[kept * 5:kept * 5 + 5] = (x, y, w, h, cls)
        kept += 1
    return truth


def random_image(rng, c, h, w):
    return rng.uniform(0, 1, (c, h, w)).astype(F)


# --------------------------------------------------------------------------- exact arithmetic

@pytest.mark.parametrize("src,dst", [((37, 23), (16, 11)), ((16, 11), (37, 29)), ((768, 576), (416, 312)),
                                     ((5, 7), (5, 7)), ((9, 6), (1, 4)), ((1, 1), (3, 2)), ((13, 1), (4, 3))])
def test_resize_matches_darknet_formula(src, dst):
    rng = np.random.default_rng(sum(src) + sum(dst))
    im = random_image(rng, 3, src[1], src[0])
    got = resize(im, *dst)
    want = np_resize(im, *dst)
    assert got.shape == (3, dst[1], dst[0]) and got.dtype == F
    np.testing.assert_array_equal(got, want, err_msg=f"resize {src} -> {dst}")


@pytest.mark.parametrize("src,dst", [((768, 576), (416, 416)), ((300, 500), (416, 416)), ((41, 17), (32, 48)),
                                     ((64, 64), (96, 64))])
def test_letterbox_matches_darknet_formula(src, dst):
    rng = np.random.default_rng(7)
    im = random_image(rng, 3, src[1], src[0])
    np.testing.assert_array_equal(letterbox(im, *dst), np_letterbox(im, *dst), err_msg=f"letterbox {src} -> {dst}")


def test_letterbox_size_is_darknets_integer_size():
    assert letterbox_size(768, 576, 416, 416) == (416, 312)
    assert letterbox_size(576, 768, 416, 416) == (312, 416)
    assert letterbox_size(500, 375, 608, 608) == (608, 456)


def test_uint8_conversion_is_darknets_division():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    got = _core.image_from_hwc_uint8(np.stack([pixels, 255 - pixels, pixels], axis=2))
    want = (np.arange(256, dtype=np.float64) / 255.0).astype(F).reshape(16, 16)  # (float)v / 255.
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_array_equal(got[1], want[::-1, ::-1])


@pytest.mark.parametrize("size,offset", [((20, 14), (3, 5)), ((50, 40), (-7, -3)), ((9, 30), (20, 1))])
def test_place_image_matches_darknet_formula(size, offset):
    rng = np.random.default_rng(3)
    im = random_image(rng, 3, 17, 23)
    canvas = np.full((3, 32, 36), 0.5, F)
    got = _core.place_image(im, size[0], size[1], offset[0], offset[1], canvas)
    np.testing.assert_array_equal(got, np_place(im, size[0], size[1], offset[0], offset[1], canvas))


def test_crop_repeats_edge_pixels():
    im = random_image(np.random.default_rng(4), 3, 6, 8)
    got = _core.crop_image(im, -2, 3, 12, 5)
    ys = np.clip(np.arange(5) + 3, 0, 5)
    xs = np.clip(np.arange(12) - 2, 0, 7)
    np.testing.assert_array_equal(got, im[:, ys][:, :, xs])


def test_embed_and_flip():
    rng = np.random.default_rng(5)
    src, dst = random_image(rng, 3, 4, 5), np.zeros((3, 6, 6), F)
    got = _core.embed_image(src, dst, 3, -1)
    want = dst.copy()
    want[:, 0:3, 3:6] = src[:, 1:4, 0:3]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_core.flip_image(src), src[:, :, ::-1])


def test_hsv_round_trip_and_distort_match_darknet_formula():
    rng = np.random.default_rng(6)
    im = random_image(rng, 3, 19, 21)
    im[:, 0, :5] = 0.25  # grey pixels: Darknet's 0/0 hue case
    im[:, 1, :5] = 0.0
    np.testing.assert_array_equal(_core.rgb_to_hsv(im), np_rgb_to_hsv(im))
    hsv = np_rgb_to_hsv(im)
    np.testing.assert_array_equal(_core.hsv_to_rgb(hsv), np_hsv_to_rgb(hsv))
    np.testing.assert_allclose(_core.hsv_to_rgb(_core.rgb_to_hsv(im)), im, atol=1e-6)
    for hue, sat, exp in [(0.3, 1.4, 0.7), (-0.45, 0.5, 1.5), (0.0, 1.0, 1.0)]:
        np.testing.assert_array_equal(_core.distort_image(im, hue, sat, exp), np_distort(im, hue, sat, exp),
                                      err_msg=f"distort hue={hue} sat={sat} exp={exp}")


def test_hue_shift_wraps_around():
    red = np.zeros((3, 1, 1), F)
    red[0] = 1.0
    shifted = _core.distort_image(red, -0.5, 1.0, 1.0)  # red hue 0 -> 0.5 (cyan) via wrap-around
    np.testing.assert_allclose(shifted[:, 0, 0], [0, 1, 1], atol=1e-6)


def test_correct_boxes_shift_scale_flip_clip():
    boxes = np.array([[2, 0.5, 0.5, 0.2, 0.4], [1, 0.95, 0.1, 0.3, 0.3], [4, 0, 0, 0.5, 0.5]], F)
    got = _core.correct_boxes(boxes, -0.1, 0.0, 0.5, 1.0, True)
    # box 0: left/right 0.4,0.6 -> *0.5+0.1 = 0.3,0.4 -> flipped 0.6,0.7
    np.testing.assert_allclose(got[0], [0.65, 0.5, 0.1, 0.4, 2], atol=1e-6)
    # box 1: top -0.05 clipped to 0
    np.testing.assert_allclose(got[1], [1 - (0.8 * 0.5 + 0.1 + 1.1 * 0.5 + 0.1) / 2, 0.125, 0.15, 0.25, 1], atol=1e-6)
    # x == y == 0 is Darknet's classification-only marker
    np.testing.assert_array_equal(got[2], [999999, 999999, 999999, 999999, 4])


# --------------------------------------------------------------------------- detection augmentation

def _augment(im, labels, seed, **kw):
    args = dict(net_w=64, net_h=48, jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5, flip=True, max_boxes=6)
    args.update(kw)
    return _core.augment_detection(im, labels, args["net_w"], args["net_h"], args["jitter"], args["hue"],
                                   args["saturation"], args["exposure"], args["flip"], args["max_boxes"], seed,
                                   return_draws=True), args


LABELS = np.array([[0, 0.5, 0.5, 0.3, 0.4], [3, 0.2, 0.7, 0.1, 0.2], [1, 0.9, 0.1, 0.15, 0.1],
                   [2, 0.99, 0.99, 0.0015, 0.0015], [4, 0.4, 0.3, 0.2, 0.2]], F)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 12345])
def test_augment_detection_matches_darknet_formula(seed):
    im = random_image(np.random.default_rng(seed), 3, 30, 40)
    (out, truth, draws), a = _augment(im, LABELS, seed)
    assert out.shape == (3, 48, 64) and truth.shape == (30,)
    want = np_place(im, int(F(draws["nw"])), int(F(draws["nh"])), int(F(draws["dx"])), int(F(draws["dy"])),
                    np.full((3, 48, 64), 0.5, F))
    want = np_distort(want, draws["dhue"], draws["dsat"], draws["dexp"])
    if draws["flipped"]:
        want = want[:, :, ::-1]
    np.testing.assert_array_equal(out, want, err_msg=f"seed {seed}, draws {draws}")
    np.testing.assert_array_equal(truth, np_truth(LABELS, draws, 64, 48, 6), err_msg=f"seed {seed}")
    # The draws stay within Darknet's ranges.
    assert abs(draws["aspect_w_jitter"]) <= 0.3 * 40 and abs(draws["aspect_h_jitter"]) <= 0.3 * 30
    assert abs(draws["dhue"]) <= 0.1 and 1 / 1.5 <= draws["dsat"] <= 1.5 and 1 / 1.5 <= draws["dexp"] <= 1.5
    assert sorted(draws["box_order"]) == list(range(len(LABELS)))


def test_augment_is_reproducible_and_seed_dependent():
    im = random_image(np.random.default_rng(9), 3, 30, 40)
    (a, ta, _), _ = _augment(im, LABELS, 77)
    (b, tb, _), _ = _augment(im, LABELS, 77)
    (c, _, _), _ = _augment(im, LABELS, 78)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a, c)


def test_augment_caps_boxes_before_dropping_tiny_ones():
    im = random_image(np.random.default_rng(1), 3, 30, 40)
    labels = np.array([[i % 5, 0.1 + 0.08 * i, 0.5, 0.05, 0.05] for i in range(10)], F)
    (_, truth, draws), _ = _augment(im, labels, 5, max_boxes=3, jitter=0.0, flip=False)
    assert truth.shape == (15,)
    np.testing.assert_array_equal(truth, np_truth(labels, draws, 64, 48, 3))
    # no flip, no hue: the image is only placed and distorted
    assert draws["flipped"] is False


def test_augment_without_labels_and_with_difficult_column():
    im = random_image(np.random.default_rng(2), 3, 20, 20)
    (_, truth, _), _ = _augment(im, np.zeros((0, 5), F), 1)
    assert not truth.any()
    six = np.concatenate([LABELS, np.ones((len(LABELS), 1), F)], axis=1)
    (_, t6, _), _ = _augment(im, six, 4)
    (_, t5, _), _ = _augment(im, LABELS, 4)
    np.testing.assert_array_equal(t5, t6)


@pytest.mark.parametrize("kwargs,message", [
    (dict(jitter=-0.1), "jitter must be in [0, 1)"),
    (dict(saturation=0.0), "saturation must be positive"),
    (dict(max_boxes=0), "max_boxes must be positive"),
    (dict(net_w=0), "size must be positive"),
])
def test_augment_rejects_bad_parameters(kwargs, message):
    im = random_image(np.random.default_rng(0), 3, 8, 8)
    with pytest.raises(DarknetError, match=message.replace("[", r"\[").replace(")", r"\)")):
        _augment(im, LABELS, 0, **kwargs)


def test_bad_arrays_raise_darknet_error():
    with pytest.raises(DarknetError, match=r"shape \(C, H, W\)"):
        resize(np.zeros((4, 4), F), 2, 2)
    with pytest.raises(DarknetError, match="empty image"):
        _core.resize_image(np.zeros((3, 0, 4), F), 2, 2)
    with pytest.raises(DarknetError, match="target: size must be positive"):
        resize(np.zeros((3, 4, 4), F), 0, 2)
    with pytest.raises(DarknetError, match="3 channels"):
        _core.augment_detection(np.zeros((4, 8, 8), F), LABELS, 8, 8, 0.2, 0, 1, 1, True, 5, 0)
    with pytest.raises(DarknetError, match=r"\(N, 5\) or \(N, 6\)"):
        _core.augment_detection(np.zeros((3, 8, 8), F), np.zeros((2, 4), F), 8, 8, 0.2, 0, 1, 1, True, 5, 0)
    with pytest.raises(DarknetError, match="row 1: class must be a non-negative integer"):
        _core.augment_detection(np.zeros((3, 8, 8), F), np.array([[0, .5, .5, .1, .1], [1.5, .5, .5, .1, .1]], F),
                                8, 8, 0.2, 0, 1, 1, True, 5, 0)


# --------------------------------------------------------------------------- against Darknet's own data

def test_letterbox_of_dog_matches_darknet_fixture():
    """input.npy is Darknet's letterbox_image(load_image_color(dog.jpg)). Pillow's
    JPEG decoder differs from stb_image on some pixels by a few levels; measured
    at 416: mean |diff| 2.8e-4, max 0.0113 (2.9/255), 16% of pixels differ.
    Geometry (letterbox bars exact 0.5) must match exactly."""
    dog = load_image(require_reference("data", "dog.jpg"))
    assert dog.shape == (3, 576, 768)
    for case, size in [("yolov2-voc_416", 416), ("yolov2-voc_608", 608), ("darknet19_256", 256)]:
        ref = np.load(require_reference("fixtures", "full_nets", case, "input.npy"))[0]
        ours = letterbox(dog, size, size)
        assert ours.shape == ref.shape
        new_w, new_h = letterbox_size(768, 576, size, size)
        top = (size - new_h) // 2
        bars = np.ones((size,), bool)
        bars[top:top + new_h] = False
        assert np.all(ref[:, bars] == 0.5) and np.all(ours[:, bars] == 0.5), case
        diff = np.abs(ours - ref)
        assert diff.mean() < 5e-4, f"{case}: mean |diff| {diff.mean():.3g}"
        assert diff.max() < 0.02, f"{case}: max |diff| {diff.max():.3g}"


# --------------------------------------------------------------------------- load / save / draw

def test_load_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.shape == (3, 5, 7) and loaded.dtype == F
    np.testing.assert_array_equal(loaded, (rgb.transpose(2, 0, 1) / 255.0).astype(F))
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb).convert("RGBA")), loaded)
    np.testing.assert_array_equal(load_image(rgb), loaded)
    grey = load_image(Image.fromarray(rgb[:, :, 0]))
    np.testing.assert_array_equal(grey[0], grey[2])
    palette = load_image(Image.fromarray(rgb).convert("P"))
    assert palette.shape == (3, 5, 7)
    np.testing.assert_array_equal(load_image(loaded), loaded)


def test_save_image_round_trip(tmp_path):
    im = (np.random.default_rng(1).integers(0, 256, (3, 6, 9)) / 255.0).astype(F)
    save_image(im, tmp_path / "b.png")
    np.testing.assert_array_equal(load_image(tmp_path / "b.png"), im)


def test_load_image_errors_name_the_file(tmp_path):
    with pytest.raises(DarknetError, match="missing.jpg': file not found"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(DarknetError, match="empty.jpg': file is empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DarknetError, match="text.jpg': not a recognised image format"):
        load_image(tmp_path / "text.jpg")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DarknetError, match="cut.jpg': corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(DarknetError, match="is a directory"):
        load_image(tmp_path)
    with pytest.raises(DarknetError, match=r"float image must be \(3, H, W\)"):
        load_image(np.zeros((4, 5, 5), F))
    with pytest.raises(DarknetError, match="expected a path"):
        load_image(42)


def test_draw_detections_writes_file(tmp_path):
    im = np.full((3, 60, 80), 0.2, F)
    dets = [dict(box=(40, 30, 20, 10), name="dog", prob=0.87),
            type("D", (), dict(box=(10, 10, 30, 30), name="cat", prob=0.5))()]
    out = draw_detections(im, dets, ["cat", "dog"], tmp_path / "d.png")
    assert os.path.exists(tmp_path / "d.png")
    arr = np.asarray(out)
    assert arr.shape == (60, 80, 3) and (arr != 51).any()
    draw_detections(im, dets, ["cat", "dog"], tmp_path / "d.jpg")
    assert Image.open(tmp_path / "d.jpg").size == (80, 60)
    with pytest.raises(DarknetError, match="box"):
        draw_detections(im, [dict(name="x", prob=1.0)], ["x"])


def test_draw_detections_takes_network_detections(tmp_path):
    im = np.full((3, 60, 80), 0.3, F)
    det = darknet_py.Detection(1, "dog", 0.9, 0.95, (40, 30, 20, 10))
    draw_detections(im, [det], ["cat", "dog"], tmp_path / "boxes.png")
    pixels = np.asarray(Image.open(tmp_path / "boxes.png")).astype(int)
    assert pixels.shape == (60, 80, 3)
    assert tuple(pixels[30, 30]) == darknet_py.image.class_color(1, 2)  # left edge of the box, class colour
