"""Darknet dataset conventions: .data files, image lists, label paths, labels, validation."""
import os

import numpy as np
import pytest
from PIL import Image

from darknet_py import DarknetError
from darknet_py.data import label_path, read_data_cfg, read_labels, read_list, read_names, validate_dataset


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_data_cfg(tmp_path):
    p = write(tmp_path / "voc.data", "# VOC\nclasses= 20\n\ntrain  = train.txt\nvalid = /abs/2007_test.txt\n"
                                    "; note\nnames = data/voc.names\nbackup = backup\neval=voc\n")
    cfg = read_data_cfg(p)
    assert cfg == {"classes": 20, "train": "train.txt", "valid": "/abs/2007_test.txt", "names": "data/voc.names",
                   "backup": "backup", "eval": "voc"}
    assert cfg.path == str(p)
    write(tmp_path / "train.txt", "")
    assert cfg.resolve("train") == str(tmp_path / "train.txt")  # not in cwd: relative to the .data file
    assert cfg.resolve("valid") == "/abs/2007_test.txt"
    with pytest.raises(DarknetError, match="no 'map' entry"):
        cfg.resolve("map")


@pytest.mark.parametrize("text,message", [
    ("classes=2\ntrain\n", r"bad.data:2: expected 'key = value', got 'train'"),
    ("classes=two\n", r"bad.data:1: classes must be a positive integer, got 'two'"),
    ("classes=0\n", r"bad.data:1: classes must be a positive integer, got 0"),
    ("train=a\n = b\n", r"bad.data:2: missing key"),
    ("train=a\ntrain=b\n", r"bad.data:2: 'train' is given twice"),
])
def test_read_data_cfg_errors(tmp_path, text, message):
    with pytest.raises(DarknetError, match=message):
        read_data_cfg(write(tmp_path / "bad.data", text))


def test_missing_files_raise(tmp_path):
    with pytest.raises(DarknetError, match="cannot open data file .*nope.data': file not found"):
        read_data_cfg(tmp_path / "nope.data")
    with pytest.raises(DarknetError, match="cannot open image list"):
        read_list(tmp_path / "nope.txt")
    with pytest.raises(DarknetError, match="cannot open label file"):
        read_labels(tmp_path / "nope.txt")


def test_read_list_resolves_against_list_dir(tmp_path):
    write(tmp_path / "images" / "a.jpg", "x")
    lst = write(tmp_path / "list.txt", "images/a.jpg\n\n  /abs/b.jpg  \nimages/missing.jpg\n")
    assert read_list(lst) == [str(tmp_path / "images" / "a.jpg"), "/abs/b.jpg", "images/missing.jpg"]


def test_read_names(tmp_path):
    assert read_names(write(tmp_path / "n.names", "cat\ndog \n\n")) == ["cat", "dog"]


@pytest.mark.parametrize("image,label", [
    ("/d/VOCdevkit/VOC2007/JPEGImages/000001.jpg", "/d/VOCdevkit/VOC2007/labels/000001.txt"),
    ("/d/coco/images/train2014/COCO_1.jpg", "/d/coco/labels/train2014/COCO_1.txt"),
    ("/d/raw/x.png", "/d/labels/x.txt"),
    ("data/images/a.JPEG", "data/labels/a.txt"),
    ("data/images/a.jpeg", "data/labels/a.txt"),
    ("data/images/a.bmp", "data/labels/a.txt"),
    ("data/images/a.PNG", "data/labels/a.txt"),
    ("x/images/y/images/z.jpg", "x/labels/y/images/z.txt"),  # first occurrence only, as Darknet
    ("/home/rawdata/images/z.jpg", "/home/labelsdata/labels/z.txt"),  # Darknet's 'raw' replacement quirk
    ("flat/z.jpg", "flat/z.txt"),
])
def test_label_path(image, label):
    assert label_path(image) == label


def test_read_labels(tmp_path):
    five = read_labels(write(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.3\n\n14 0.1 0.2 0.05 0.06\n"))
    assert five.dtype == np.float32 and five.shape == (2, 5)
    np.testing.assert_allclose(five[1], [14, 0.1, 0.2, 0.05, 0.06])
    six = read_labels(write(tmp_path / "b.txt", "0 0.5 0.5 0.2 0.3 1\n3 0.5 0.5 0.2 0.3\n"))
    assert six.shape == (2, 6) and list(six[:, 5]) == [1, 0]
    assert read_labels(write(tmp_path / "c.txt", "")).shape == (0, 5)


@pytest.mark.parametrize("text,message", [
    ("0 0.5 0.5 0.2\n", r"bad.txt:1: expected 'class x y w h \[difficult\]', got 4 field\(s\)"),
    ("0 0.5 0.5 0.2 0.2\ncat 0.5 0.5 0.2 0.2\n", r"bad.txt:2: class 'cat' is not an integer"),
    ("1.5 0.5 0.5 0.2 0.2\n", r"bad.txt:1: class '1.5' is not a non-negative integer"),
    ("1 0.5 abc 0.2 0.2\n", r"bad.txt:1: y 'abc' is not a number"),
    ("1 0.5 0.5 nan 0.2\n", r"bad.txt:1: w 'nan' is not finite"),
    ("5 0.5 0.5 0.2 0.2\n", r"bad.txt:1: class 5 >= classes \(5\)"),
])
def test_read_labels_errors(tmp_path, text, message):
    with pytest.raises(DarknetError, match=message):
        read_labels(write(tmp_path / "bad.txt", text), classes=5)


def make_dataset(tmp_path, labels):
    """Images under images/, labels under labels/; labels maps stem -> text or None (no label file)."""
    paths = []
    for stem, text in labels.items():
        image = tmp_path / "images" / f"{stem}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (16, 12), (100, 50, 25)).save(image)
        if text is not None:
            write(tmp_path / "labels" / f"{stem}.txt", text)
        paths.append(str(image))
    return paths


def test_validate_dataset_ok(tmp_path):
    paths = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1 1\n", "b": ""})
    write(tmp_path / "list.txt", "\n".join(paths))
    report = validate_dataset(tmp_path / "list.txt", classes=2, check_images="decode")
    assert report.ok and report.images == 2 and report.boxes == 2 and list(report.class_counts) == [1, 1]


def test_validate_dataset_reports_every_problem(tmp_path):
    paths = make_dataset(tmp_path, {
        "good": "0 0.5 0.5 0.2 0.2\n",
        "badclass": "0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n",
        "outside": "1 1.2 0.5 0.2 0.2\n",
        "zero": "1 0.5 0.5 0 0.2\n",
        "malformed": "1 0.5 0.5\n",
        "difficult": "1 0.5 0.5 0.1 0.1 3\n",
        "nolabel": None,
    })
    (tmp_path / "images" / "corrupt.jpg").write_text("garbage")
    write(tmp_path / "labels" / "corrupt.txt", "0 0.5 0.5 0.1 0.1\n")
    paths += [str(tmp_path / "images" / "corrupt.jpg"), str(tmp_path / "images" / "gone.jpg")]
    write(tmp_path / "labels" / "gone.txt", "")
    with pytest.raises(DarknetError) as info:
        validate_dataset(paths, classes=3)
    text = str(info.value)
    assert "found 8 problem(s) in 9 image(s)" in text
    for fragment in ["badclass.txt:2: class 7 >= classes (3)",
                     "outside.txt:1: x=1.2 is outside [0, 1]",
                     "zero.txt:1: box size w=0 h=0.2 must be > 0",
                     "malformed.txt:1: expected 'class x y w h [difficult]', got 3 field(s)",
                     "difficult.txt:1: difficult flag must be 0 or 1, got 3",
                     "nolabel.txt: label file not found (for image",
                     "corrupt.jpg: not a recognised image format",
                     "gone.jpg: image file not found"]:
        assert fragment in text, fragment
    report = validate_dataset(paths, classes=3, raise_on_error=False)
    assert len(report.problems) == 8 and report.boxes == 3  # good, badclass line 1, corrupt.txt


def test_validate_dataset_empty_list_and_bad_classes(tmp_path):
    with pytest.raises(DarknetError, match="the image list is empty"):
        validate_dataset([], classes=2)
    with pytest.raises(DarknetError, match="classes must be positive"):
        validate_dataset(["a.jpg"], classes=0)
