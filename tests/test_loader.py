"""DetectionLoader: Darknet batch layout, determinism across thread timing, multi-scale, errors, close."""
import threading
import time

import numpy as np
import pytest
from PIL import Image

from darknet_py import DarknetError, _core
from darknet_py.data import DetectionLoader, label_path, read_labels
from darknet_py.data.loader import sample_seed
from darknet_py.image import load_image

AUG = dict(jitter=0.2, hue=0.1, saturation=1.5, exposure=1.5, max_boxes=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = root / "images" / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 30 - i, 3), dtype=np.uint8)).save(path)
        boxes = "".join(f"{(i + k) % 3} {0.2 + 0.1 * k} 0.5 0.2 0.3\n" for k in range(i + 1))
        (root / "labels" / f"{i}.txt").write_text(boxes)
        paths.append(str(path))
    return paths


def take(loader, n):
    return [loader.next_batch() for _ in range(n)]


def test_batch_layout_and_content(dataset):
    with DetectionLoader(dataset, 32, 24, batch=3, seed=11, **AUG) as loader:
        x, truth = loader.next_batch()
        assert x.shape == (3, 3, 24, 32) and x.dtype == np.float32
        assert truth.shape == (3, 4 * 5) and truth.dtype == np.float32
        assert loader.batch_index == 1
    # Slot 1 of batch 0 is exactly one Darknet augmentation with the derived seed.
    draw, aug_seed = sample_seed(11, 0, 1)
    path = dataset[draw % len(dataset)]
    image, want_truth = _core.augment_detection(load_image(path), read_labels(label_path(path)), 32, 24, 0.2, 0.1,
                                                1.5, 1.5, True, 4, aug_seed)
    np.testing.assert_array_equal(x[1], image)
    np.testing.assert_array_equal(truth[1], want_truth)
    assert (x >= 0).all() and (x <= 1).all()


def test_same_seed_same_batches_whatever_the_workers(dataset):
    with DetectionLoader(dataset, 32, 32, batch=4, seed=5, workers=1, prefetch=1, **AUG) as one:
        a = take(one, 4)
    with DetectionLoader(dataset, 32, 32, batch=4, seed=5, workers=3, prefetch=5, **AUG) as three:
        b = take(three, 4)
    with DetectionLoader(dataset, 32, 32, batch=4, seed=6, workers=2, **AUG) as other:
        c = take(other, 1)
    for (xa, ta), (xb, tb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ta, tb)
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][0], a[1][0])


def test_set_size_applies_to_batches_not_yet_handed_out(dataset):
    with DetectionLoader(dataset, 32, 32, batch=2, seed=3, workers=2, prefetch=3, **AUG) as loader:
        x0, _ = loader.next_batch()
        loader.set_size(48, 40)
        x1, t1 = loader.next_batch()
        loader.set_size(48, 40)  # same size: nothing rebuilt
        x2, _ = loader.next_batch()
        assert x0.shape[2:] == (32, 32) and x1.shape[2:] == (40, 48) and x2.shape[2:] == (40, 48)
        assert loader.size == (48, 40)
    # Batch 1 at 48x40 is the same as a loader that ran at 48x40 from its start.
    with DetectionLoader(dataset, 48, 40, batch=2, seed=3, workers=1, **AUG) as fixed:
        _, (y1, u1) = take(fixed, 2)
    np.testing.assert_array_equal(x1, y1)
    np.testing.assert_array_equal(t1, u1)


def test_worker_error_reaches_the_consumer_with_the_path(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "bad.jpg").write_text("not a jpeg")
    (tmp_path / "labels" / "bad.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with DetectionLoader([str(tmp_path / "images" / "bad.jpg")], 16, 16, batch=2, **AUG) as loader:
        with pytest.raises(DarknetError, match="bad.jpg': not a recognised image format"):
            loader.next_batch()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "ok.png")
    (tmp_path / "labels" / "ok.txt").write_text("9 0.5 0.5 0.1 0.1\n")
    with DetectionLoader([str(tmp_path / "images" / "ok.png")], 16, 16, batch=1, classes=3, **AUG) as loader:
        with pytest.raises(DarknetError, match=r"ok.txt:1: class 9 >= classes \(3\)"):
            loader.next_batch()


def test_close_stops_threads(dataset):
    before = threading.active_count()
    loader = DetectionLoader(dataset, 16, 16, batch=2, workers=2, **AUG)
    loader.next_batch()
    loader.close()
    assert threading.active_count() == before
    with pytest.raises(DarknetError, match="closed"):
        loader.next_batch()
    loader.close()  # idempotent


@pytest.mark.parametrize("kwargs,message", [
    (dict(image_paths=[]), "image list is empty"),
    (dict(batch=0), "batch must be positive"),
    (dict(net_w=0), "network size must be positive"),
    (dict(jitter=1.5), r"jitter must be in \[0, 1\)"),
    (dict(workers=0), "workers must be positive"),
])
def test_bad_arguments(dataset, kwargs, message):
    args = dict(image_paths=dataset, net_w=16, net_h=16, batch=1)
    args.update(kwargs)
    with pytest.raises(DarknetError, match=message):
        DetectionLoader(**args)


def test_start_batch_resumes_the_sequence(dataset):
    with DetectionLoader(dataset, 32, 32, batch=2, seed=8, start_batch=2, **AUG) as resumed, \
            DetectionLoader(dataset, 32, 32, batch=2, seed=8, **AUG) as fresh:
        take(fresh, 2)
        for (x, t), (y, u) in zip(take(resumed, 2), take(fresh, 2)):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(t, u)


# Floor for the loader's throughput at 416x416 with 2 worker threads, in images/s. Measured
# on the shared 2-core VM (2026-11-27) under a load average of ~4.8 from other jobs: windows
# of 16 images ran at 102-141 images/s (median 130), windows of 64 at 158-194 (median 174);
# the README's figure is ~200 unloaded. The floor is what the README's claim needs: the
# loader must outrun training, and the demo trains at 40-50 images/s (at 160x160, cheaper
# to load than 416): 50 is below half of the slowest loaded window measured. The best of
# three windows is taken, so one descheduled window on a loaded CI machine does not decide.
LOADER_FLOOR_416 = 50.0


def test_loader_throughput_at_416(dataset):
    """Images/s of the loader alone at 416x416, 2 workers (printed with -s): at least
    LOADER_FLOOR_416 in the best of three windows of 16 images after a warm-up batch."""
    with DetectionLoader(dataset, 416, 416, batch=8, seed=0, workers=2, **AUG) as loader:
        loader.next_batch()
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            take(loader, 2)
            rates.append(16 / (time.perf_counter() - start))
    rate = max(rates)
    print(f"loader: {rate:.0f} images/s at 416x416 on 2 threads (small PNGs; windows {[round(r) for r in rates]})")
    assert rate >= LOADER_FLOOR_416, f"loader {rate:.0f} images/s < floor {LOADER_FLOOR_416:.0f} (windows {rates})"
