"""Malformed cfg files give DarknetError naming file:line and key; unknown keys warn."""
import warnings

import pytest

import darknet_py
from darknet_py import DarknetError
from darknet_py.network import DarknetWarning

NET = """[net]
batch=1
width=32
height=32
channels=3
"""


def build(text, tmp_path, name="bad.cfg"):
    p = tmp_path / name
    p.write_text(text)
    return darknet_py.load(p)


def test_parses_spaces_comments_and_semicolons(tmp_path):
    text = NET.replace("width=32", "width = 32  ") + """
# a comment
; another
[convolutional]
filters = 4   # trailing comment
size=3
stride=1
pad=1
activation=leaky
"""
    net = build(text, tmp_path)
    assert net.layers[0].output_shape == (4, 32, 32)


def test_unknown_key_warns_with_file_line(tmp_path):
    text = NET + "[convolutional]\nfilters=4\nsize=3\nbogus_key=1\nactivation=leaky\n"
    with pytest.warns(DarknetWarning, match=r"bad\.cfg:9: unknown key 'bogus_key' in \[convolutional\]"):
        build(text, tmp_path)


@pytest.mark.parametrize("body,pattern", [
    ("[bogus]\nx=1\n", r"bad\.cfg:6: \[bogus\]: unknown section type"),
    ("[shortcut]\nfrom=-1\n", r"bad\.cfg:6: \[shortcut\]: layer type \[shortcut\] is not supported"),
    ("[convolutional]\nfilters=4\nsize=0\n", r"bad\.cfg:8: \[convolutional\] size=0: must be > 0"),
    ("[convolutional]\nfilters=4\nsize=3\nactivation=swishy\n", r"bad\.cfg:9: \[convolutional\] activation=swishy: unknown activation"),
    ("[convolutional]\nfilters=four\n", r"bad\.cfg:7: \[convolutional\] filters=four: expected an integer"),
    ("[convolutional]\nfilters=4\nsize=99\n", r"bad\.cfg:8: \[convolutional\] size=99: kernel 99 larger than the padded input"),
    ("[convolutional]\nfilters=4\ngroups=2\n", r"bad\.cfg:8: \[convolutional\] groups=2: input channels \(3\) not divisible"),
    ("[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-3\n", r"bad\.cfg:10: \[route\] layers=-3: layer -3 resolves to -2, outside"),
    ("[maxpool]\nsize=2\nstride=2\n[route]\nlayers=5\n", r"bad\.cfg:10: \[route\] layers=5: .*outside the earlier layers 0\.\.0"),
    ("[route]\n", r"bad\.cfg:6: \[route\]: missing required key 'layers'"),
    ("[reorg]\nstride=3\n", r"bad\.cfg:7: \[reorg\] stride=3: input 32x32 not divisible by stride"),
    ("[reorg]\nstride=2\n", r"bad\.cfg:7: \[reorg\] stride=2: reorg needs channels \(3\) divisible by stride\^2 \(4\)"),
    ("[reorg]\nstride=65536\nreverse=1\n", r"bad\.cfg:7: \[reorg\] stride=65536: reverse reorg needs channels \(3\) "
     r"divisible by stride\^2 \(4294967296\)"),
    ("[convolutional]\nfilters=4\nsize=3\n[cost]\ntype=huber\n", r"bad\.cfg:10: \[cost\] type=huber: unknown cost type"),
    ("[dropout]\nprobability=1.5\n", r"bad\.cfg:7: \[dropout\] probability=1.5: must be in \[0, 1\)"),
    ("[net]\nbatch=1\n", r"bad\.cfg:6: \[net\]: \[net\] may appear only once"),
    ("[convolutional]\nfilters=4\n[[convolutional]\n", r"bad\.cfg:8: malformed section header|bad\.cfg:8: \[\[convolutional\]: unknown section"),
    ("[convolutional]\nfilters\n", r"bad\.cfg:7: expected key=value, got 'filters'"),
])
def test_bad_layers(tmp_path, body, pattern):
    with pytest.raises(DarknetError, match=pattern):
        build(NET + body, tmp_path)


def test_route_channel_mismatch_sizes(tmp_path):
    body = "[convolutional]\nfilters=4\nsize=3\npad=1\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n"
    with pytest.raises(DarknetError, match=r"bad\.cfg:14: \[route\] layers=-1,-2: .*layer 0 is 32x32 but layer 1 is 16x16"):
        build(NET + body, tmp_path)


@pytest.mark.parametrize("net_text,pattern", [
    ("[convolutional]\nfilters=1\n", r"bad\.cfg:1: \[convolutional\]: the first section must be \[net\]"),
    ("[net]\nbatch=1\nwidth=32\nheight=32\n[maxpool]\n", r"bad\.cfg:1: \[net\]: missing required key 'channels'"),
    ("[net]\nbatch=64\nsubdivisions=5\nwidth=8\nheight=8\nchannels=3\n[maxpool]\n", r"bad\.cfg:3: \[net\] subdivisions=5: batch 64 is not divisible"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\npolicy=wobble\n[maxpool]\n", r"bad\.cfg:5: \[net\] policy=wobble: unknown policy"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\npolicy=steps\nsteps=10,20\nscales=.1\n[maxpool]\n", r"bad\.cfg:7: \[net\] scales=\.1: has 1 values but steps has 2"),
    ("[net]\nwidth=8\nheight=8\nchannels=3\n", r"defines no layers"),
    ("", r"no sections found"),
])
def test_bad_net_section(tmp_path, net_text, pattern):
    with pytest.raises(DarknetError, match=pattern):
        build(net_text, tmp_path)


def test_missing_cfg_file(tmp_path):
    with pytest.raises(DarknetError, match="cfg file not found"):
        darknet_py.load(tmp_path / "none.cfg")


def test_all_activations_parse(tmp_path):
    for act in ["logistic", "relu", "relie", "linear", "ramp", "tanh", "plse", "leaky", "elu", "loggy",
                "stair", "hardtan", "lhtan", "selu"]:
        net = build(NET + f"[convolutional]\nfilters=2\nsize=1\nactivation={act}\n", tmp_path)
        assert net.layers[0].output_shape == (2, 32, 32)
