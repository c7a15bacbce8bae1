"""WordTree (.tree) and class map (.map) parsing: structure and bad-input errors."""
import os

import numpy as np
import pytest

from _region_ref import case_dir, darknet_error, reference_root

from darknet_py import _core, _testing


def test_tiny_tree_structure():
    tree = _core.WordTree.read(os.path.join(case_dir("fixtures/region_tree"), "tiny.tree"))
    assert tree.n == len(tree) == 12 and tree.groups == 5
    assert tree.names[:3] == ["animal", "vehicle", "plant"] and tree.names[10:] == ["beagle", "husky"]
    assert tree.parent == [-1, -1, -1, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert tree.group_size == [3, 3, 2, 2, 2]
    assert tree.group_offset == [0, 3, 6, 8, 10]
    assert tree.group == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    # animal -> group 1 (dog, cat, bird), vehicle -> 2, plant -> 3, dog -> 4 (beagle, husky)
    assert tree.child == [1, 2, 3, 4] + [-1] * 8
    assert tree.leaf == [0, 0, 0, 0] + [1] * 8


def independent_tree(path):
    """A second reading of the format in numpy terms (groups = runs of equal parents)."""
    parents = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            parents.append(int(parts[1]) if len(parts) > 1 else -1)
    parents = np.array(parents)
    starts = np.flatnonzero(np.r_[True, parents[1:] != parents[:-1]])
    if parents[0] != -1:  # a change from the initial "-1" opens an empty group 0
        starts = np.r_[0, starts]
    sizes = np.diff(np.r_[starts, len(parents)])
    return parents, starts, sizes


def test_9k_tree_matches_an_independent_reading():
    path = os.path.join(reference_root(), "data", "9k.tree")
    tree = _core.WordTree.read(path)
    parents, offsets, sizes = independent_tree(path)
    assert tree.n == 9418 == len(parents)
    np.testing.assert_array_equal(tree.parent, parents)
    np.testing.assert_array_equal(tree.group_offset, offsets)
    np.testing.assert_array_equal(tree.group_size, sizes)
    group = np.array(tree.group)
    np.testing.assert_array_equal(np.array(tree.group_offset)[group] <= np.arange(9418), True)
    leaf = np.ones(9418, int)
    leaf[parents[parents >= 0]] = 0
    np.testing.assert_array_equal(tree.leaf, leaf)
    child = np.array(tree.child)
    for node in np.flatnonzero(child >= 0)[:200]:
        first = tree.group_offset[child[node]]
        assert parents[first] == node


def test_coco9k_map():
    m = _core.read_map(os.path.join(reference_root(), "data", "coco9k.map"))
    assert len(m) == 80 and m[:3] == [5177, 3768, 3802]
    assert all(0 <= v < 9418 for v in m)


def test_parse_accepts_missing_parent_and_crlf():
    tree = _core.WordTree.parse("a\r\nb -1\r\nc 0\r\n\r\n", "t.tree")
    assert tree.parent == [-1, -1, 0] and tree.group_size == [2, 1] and tree.child == [1, -1, -1]


@pytest.mark.parametrize("text, line, needle", [
    ("a -1\nb 5\n", 2, "parent index 5 of 'b' must be -1 or an earlier node (0..0)"),
    ("a -1\nb 1\n", 2, "parent index 1 of 'b' must be -1 or an earlier node"),
    ("a -2\n", 1, "parent index -2 of 'a' must be -1 (the first node is a root)"),
    ("a 0\n", 1, "parent index 0 of 'a' must be -1"),
    ("a -1\nb x\n", 2, "parent index 'x' of 'b' is not an integer"),
    ("a -1\n\nb 0\n", 2, "blank line inside the tree"),
    ("a -1 extra\n", 1, "unexpected text 'extra'"),
])
def test_bad_tree_names_file_and_line(text, line, needle):
    with pytest.raises(darknet_error()) as e:
        _core.WordTree.parse(text, "bad.tree")
    msg = str(e.value)
    assert msg.startswith(f"bad.tree:{line}:") and needle in msg, msg


def test_empty_tree_and_missing_files(tmp_path):
    with pytest.raises(darknet_error(), match="bad.tree: tree file has no nodes"):
        _core.WordTree.parse("\n\n", "bad.tree")
    missing = str(tmp_path / "none.tree")
    with pytest.raises(darknet_error(), match="none.tree: cannot open tree file"):
        _core.WordTree.read(missing)
    with pytest.raises(darknet_error(), match="none.map: cannot open map file"):
        _core.read_map(str(tmp_path / "none.map"))


@pytest.mark.parametrize("text, line", [("1\nx\n", 2), ("1\n2 3\n", 2), ("1\n\n2\n", 2)])
def test_bad_map_names_file_and_line(text, line):
    with pytest.raises(darknet_error(), match=rf"^bad\.map:{line}: "):
        _core.parse_map(text, "bad.map")


def test_map_entry_outside_classes_is_rejected_by_the_region_layer(tmp_path):
    (tmp_path / "bad.map").write_text("0\n1\n3\n")
    cfg = tmp_path / "r.cfg"
    cfg.write_text("[net]\n[region]\nclasses=3\nnum=1\nmap=bad.map\n")
    with pytest.raises(darknet_error()) as e:
        _testing.run_region_layer(str(cfg), batch=1, w=2, h=2, c=8, input=np.zeros((1, 8, 2, 2), np.float32))
    msg = str(e.value)
    assert msg.startswith(str(tmp_path / "bad.map") + ":3: class 3 outside 0..2") and "r.cfg:2" in msg, msg
