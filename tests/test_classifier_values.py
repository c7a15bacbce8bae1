"""Classifier augmentation and resume against independent expected values.

Augmentation (csrc/augment_classifier.cpp, Darknet's load_data_augment): given the draws
the core reports, the image is recomputed here in numpy from Darknet's definitions:
  random_augment_image: aspect = rand_scale(aspect), r in [min_crop, max_crop],
    min = h if h < w*aspect else int(w*aspect), scale = r / min,
    dx in +-(w*scale/aspect - W)/2, dy in +-(h*scale - W)/2 (Darknet uses the network
    WIDTH W for dy too), then rotate_crop_image: output pixel (x, y) samples the source at
    rx = cos(rad) u - sin(rad) v + w/2, ry = sin(rad) u + cos(rad) v + h/2 with
    u = (x - W/2)/scale*aspect + dx/scale*aspect, v = (y - H/2)/scale + dy/scale, bilinear
    with 0 outside the source;
  a horizontal flip when drawn;
  distort_image: RGB -> HSV, S *= dsat, V *= dexp, H += dhue wrapped into [0, 1],
    HSV -> RGB, clamped to [0, 1].
center=1: the centred min(w, h) square, resized (here: no resize needed, plain slicing).

Resume: N training steps straight give the same losses, weights, momentum and generator
state, bit for bit, as k steps, a checkpoint, and N - k more steps from that checkpoint; the
net has a [dropout] layer, whose draws must continue where they stopped (before the
checkpoint saved the generator's state, a resume re-seeded it and repeated the first
iterations' masks).
"""
import numpy as np
import pytest

from darknet_py import _core

# The core samples at float32 coordinates (rounded from the same double expression as
# here; a 1-ulp difference in the double is up to 1 float ulp, 2e-6 at 30 px, times the
# image's change per pixel, <= 1) and does the bilinear sums and the HSV round trip in
# float32. Measured over 354 draws of these cases: <= 3.7e-6 (geometry), <= 1.2e-6
# (colour alone).
AUGMENT_ATOL = 1.5e-5


def source_image(w=50, h=38, seed=0):
    rng = np.random.default_rng(seed)
    # smooth content plus noise: bilinear sampling errors would show
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 5.0), np.cos(yy / 4.0), np.sin((xx + yy) / 7.0)]) * .4 + .5
    return np.clip(base + rng.uniform(-.1, .1, base.shape), 0, 1).astype(np.float32)


def bilinear(im, x, y):
    """Darknet's bilinear_interpolate on a CHW image, 0 outside; x, y arrays of the same shape."""
    c, h, w = im.shape
    ix = np.floor(x).astype(int)
    iy = np.floor(y).astype(int)
    fx = x - ix
    fy = y - iy

    def px(xx, yy):
        inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        v = im[:, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return np.where(inside, v, 0.0)

    return ((1 - fy) * (1 - fx) * px(ix, iy) + fy * (1 - fx) * px(ix, iy + 1) + (1 - fy) * fx * px(ix + 1, iy)
            + fy * fx * px(ix + 1, iy + 1))


def rotate_crop(im, rad, s, W, H, dx, dy, aspect):
    im = np.asarray(im, np.float64)
    _, h, w = im.shape
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    u = (x - W / 2) / s * aspect + dx / s * aspect
    v = (y - H / 2) / s + dy / s
    rx = np.cos(rad) * u - np.sin(rad) * v + w / 2
    ry = np.sin(rad) * u + np.cos(rad) * v + h / 2
    # the core rounds the coordinates to float, as Darknet's float rx, ry
    return bilinear(im, rx.astype(np.float32).astype(np.float64), ry.astype(np.float32).astype(np.float64))


def rgb_to_hsv(im):
    r, g, b = im
    mx = np.max(im, axis=0)
    mn = np.min(im, axis=0)
    delta = mx - mn
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(mx > 0, delta / mx, 0.0)
        hr = (g - b) / delta
        hg = 2 + (b - r) / delta
        hb = 4 + (r - g) / delta
    hue = np.where(r == mx, hr, np.where(g == mx, hg, hb))
    hue = np.where(hue < 0, hue + 6, hue) / 6
    hue = np.where(delta > 0, hue, 0.0)  # grey: any hue (s = 0 makes it unused)
    return np.stack([hue, s, mx])


def hsv_to_rgb(hsv):
    h, s, v = hsv
    h6 = h * 6
    i = np.floor(h6)
    f = h6 - i
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    sectors = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros((3,) + h.shape)
    for k, rgb in enumerate(sectors):
        sel = (i == k) if k < 5 else (i >= 5)
        for ch in range(3):
            out[ch] = np.where(sel, rgb[ch], out[ch])
    grey = s == 0
    return np.where(grey, v, out)


def distort(im, dhue, dsat, dexp):
    hsv = rgb_to_hsv(np.asarray(im, np.float64))
    hsv[1] *= dsat
    hsv[2] *= dexp
    hue = hsv[0] + dhue
    hue = np.where(hue > 1, hue - 1, hue)
    hue = np.where(hue < 0, hue + 1, hue)
    hsv[0] = hue
    return np.clip(hsv_to_rgb(hsv), 0, 1)


AUG_CASES = {
    # (W, H, min_crop, max_crop, angle, aspect, hue, saturation, exposure, flip)
    "crop_only": (32, 32, 38, 38, 0, 1, 0, 1, 1, False),
    "scale_range": (32, 24, 30, 60, 0, 1, 0, 1, 1, False),
    "rotate_aspect": (28, 28, 32, 48, 15, 1.3, 0, 1, 1, False),
    "flip": (32, 32, 36, 44, 0, 1, 0, 1, 1, True),
    "colour": (32, 32, 38, 38, 0, 1, .2, 1.6, 1.6, False),
    "everything": (30, 26, 28, 64, 10, 1.2, .1, 1.5, 1.5, True),
    # crops smaller than the network input: the window reaches past the image (zeros there)
    "zoom_out_borders": (32, 32, 16, 24, 20, 1.2, 0, 1, 1, False),
}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize("name", sorted(AUG_CASES))
def test_augment_matches_numpy_from_the_draws(name, seed):
    W, H, lo, hi, angle, aspect, hue, sat, exp, flip = AUG_CASES[name]
    im = source_image()
    out, d = _core.augment_classifier(im, W, H, lo, hi, angle, aspect, hue, sat, exp, flip, False, seed, True)
    _, h, w = im.shape
    # the draws, within Darknet's ranges and derived as Darknet derives them
    assert lo <= d["r"] <= hi and float(d["r"]).is_integer()
    assert 1 / aspect - 1e-6 <= d["aspect"] <= aspect + 1e-6
    mn = h if h < w * d["aspect"] else int(w * d["aspect"])
    assert d["scale"] == pytest.approx(d["r"] / mn, rel=1e-7)
    assert abs(d["rad"]) <= angle * np.pi / 180 + 1e-7
    assert abs(d["dx"]) <= abs((w * d["scale"] / d["aspect"] - W) / 2) + 1e-5
    assert abs(d["dy"]) <= abs((h * d["scale"] - W) / 2) + 1e-5
    assert abs(d["dhue"]) <= hue and 1 / sat - 1e-6 <= d["dsat"] <= sat + 1e-6
    assert 1 / exp - 1e-6 <= d["dexp"] <= exp + 1e-6
    if not flip:
        assert not d["flipped"]
    expected = rotate_crop(im, d["rad"], d["scale"], W, H, d["dx"], d["dy"], d["aspect"])
    if d["flipped"]:
        expected = expected[:, :, ::-1]
    expected = distort(expected, d["dhue"], d["dsat"], d["dexp"])
    assert out.shape == (3, H, W)
    np.testing.assert_allclose(out, expected, rtol=0, atol=AUGMENT_ATOL, err_msg=f"{name} seed {seed}")


def test_flip_is_drawn_both_ways():
    im = source_image()
    flips = {bool(_core.augment_classifier(im, 32, 32, 38, 38, 0, 1, 0, 1, 1, True, False, s, True)[1]["flipped"])
             for s in range(20)}
    assert flips == {True, False}


@pytest.mark.parametrize("flip", [False, True])
def test_center_crop_is_slicing(flip):
    """center=1 with the network size equal to the image's short side: the centred square,
    unscaled (numpy slicing), flipped when drawn; colour unchanged."""
    im = source_image(w=44, h=30)
    for seed in range(6):
        out, d = _core.augment_classifier(im, 30, 30, 30, 30, 0, 1, 0, 1, 1, flip, True, seed, True)
        expected = im[:, :, 7:37]
        if d["flipped"]:
            expected = expected[:, :, ::-1]
        np.testing.assert_allclose(out, expected, rtol=0, atol=AUGMENT_ATOL)


def test_numpy_hsv_round_trip_is_identity():
    """The reference itself: distort with no change returns the image (float64)."""
    im = source_image().astype(np.float64)
    np.testing.assert_allclose(distort(im, 0, 1, 1), im, atol=1e-12)
    # and a hue shift of a full turn is no change either
    np.testing.assert_allclose(distort(im, 1.0 - 1e-12, 1, 1), im, atol=1e-9)


# ---------------------------------------------------------------- resume, bit-exact
RESUME_CFG = """[net]
batch=4
subdivisions=2
width=24
height=24
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.05
policy=poly
power=4
max_batches=6
min_crop=24
max_crop=32
angle=5
aspect=1.1
hue=.1
saturation=1.3
exposure=1.3

[convolutional]
batch_normalize=1
filters=6
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[dropout]
probability=.2

[convolutional]
filters=5
size=1
stride=1
pad=0
activation=linear

[avgpool]

[softmax]
groups=1

[cost]
type=sse
"""


@pytest.fixture(scope="module")
def tiny_shapes(tmp_path_factory):
    from darknet_py.data.synthetic_classes import generate_classes
    root = tmp_path_factory.mktemp("tiny_shapes")
    return generate_classes(root, n_train=40, n_valid=5, size=(32, 32), seed=2)


def _state(weights_path):
    data = np.load(weights_path + ".state.npz")
    return {k: data[k] for k in data.files}


@pytest.mark.parametrize("split", [3, 2])
def test_classifier_resume_is_bit_exact(tiny_shapes, tmp_path, split):
    from darknet_py.classifier import train_classifier
    cfg = tmp_path / "resume.cfg"
    cfg.write_text(RESUME_CFG)
    n = 6
    kw = dict(seed=5, progress=False, evaluate=False, workers=1, checkpoint_every=1000)
    straight = train_classifier(tiny_shapes, str(cfg), max_batches=n, backup=str(tmp_path / "a"), **kw)
    first = train_classifier(tiny_shapes, str(cfg), max_batches=split, backup=str(tmp_path / "b"), **kw)
    resumed = train_classifier(tiny_shapes, str(cfg), first.last_weights, max_batches=n,
                               backup=str(tmp_path / "c"), **kw)
    assert straight.iterations == resumed.iterations == n
    assert first.iterations == split and len(resumed.losses) == n - split
    # the losses of the resumed steps are the straight run's, exactly
    assert straight.losses[split:] == resumed.losses
    with open(straight.last_weights, "rb") as f:
        a = f.read()
    with open(resumed.last_weights, "rb") as f:
        b = f.read()
    assert a == b, "weights differ after resume"
    sa, sb = _state(straight.last_weights), _state(resumed.last_weights)
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=f"checkpoint state {k}")
    # and the run actually trained (a resume that ignored the checkpoint would differ above)
    with open(first.last_weights, "rb") as f:
        assert f.read() != a
