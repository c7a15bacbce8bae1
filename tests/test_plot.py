"""darknet_py.plot: the Pillow line chart."""
import numpy as np
import pytest
from PIL import Image

from darknet_py import DarknetError
from darknet_py.plot import PALETTE, line_chart, nice_ticks


def _has_color(img, rgb, tol=30):
    a = np.asarray(img.convert("RGB")).astype(int)
    return bool(np.any(np.all(np.abs(a - np.array(rgb)) <= tol, axis=-1)))


def test_writes_png_with_series_colors(tmp_path):
    x = np.linspace(0, 1, 40)
    path = line_chart(str(tmp_path / "sub" / "pr.png"),
                      {"dog": (x, 1 - x ** 2), "cat": (x, np.sqrt(1 - x))},
                      title="PR", xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1))
    img = Image.open(path)
    assert img.format == "PNG" and img.size == (800, 520)
    assert _has_color(img, PALETTE[0]) and _has_color(img, PALETTE[1])
    assert not _has_color(img, PALETTE[2], tol=5)


def test_general_series_nan_single_point_and_size(tmp_path):
    it = np.arange(1, 501)
    loss = 40 * np.exp(-it / 100.0)
    loss[100:110] = np.nan  # a gap, not a crash
    path = line_chart(str(tmp_path / "loss.png"), {"loss": (it, loss), "best": ([250], [5.0])},
                      title="training loss", xlabel="iteration", ylabel="loss", size=(640, 400))
    img = Image.open(path)
    assert img.size == (640, 400)
    assert _has_color(img, PALETTE[1], tol=5)
    line_chart(str(tmp_path / "empty.png"), {})  # axes only
    line_chart(str(tmp_path / "flat.png"), {"c": ([1, 2, 3], [2, 2, 2])})


def test_bad_arguments(tmp_path):
    with pytest.raises(DarknetError, match="3 x values but 2 y values"):
        line_chart(str(tmp_path / "a.png"), {"s": ([1, 2, 3], [1, 2])})
    with pytest.raises(DarknetError, match="axis limits"):
        line_chart(str(tmp_path / "a.png"), {"s": ([1, 2], [1, 2])}, ylim=(1, 0))
    with pytest.raises(DarknetError, match="too small"):
        line_chart(str(tmp_path / "a.png"), {}, size=(50, 50))


def test_nice_ticks():
    ticks, step = nice_ticks(0, 1)
    assert step == pytest.approx(0.2)
    np.testing.assert_allclose(ticks, [0, .2, .4, .6, .8, 1.0])
    ticks, step = nice_ticks(3, 2000)
    assert step == 500 and ticks[0] == 500 and ticks[-1] == 2000
