"""Fused layers at inference: a [convolutional] and the 2x2 stride-2 [maxpool] after it run as
one kernel (the direct 3x3 kernel and both Winograd variants pool in their epilogues; Network
plans the pairs when outputs are not kept). The fused result must be the unfused pair's bit for bit, in every network
shape that allows a pair, and the pairs that must not fuse (a route reads the conv, a
stride-1 pool, an odd map, kept outputs, reference kernels, fuse_layers off) must not.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import darknet_py
from darknet_py import _core
from test_fast_path import conv, maxpool, randomise

needs_direct = pytest.mark.skipif(_core.cpu_kernel_best() == "plain", reason="the direct kernel needs AVX2")

# Every pair fuses: 3->16 (bands), 16->32 and 32->24 (filter vectors), the last 1x1 is the output.
# conv 2's input (pool 1's output) may share memory with pool 3's output in the unfused plan:
# fused, the pair reads the one while it writes the other, so the plan must keep them apart (the
# maps are taller than a thread's row chunk, so the kernel reads input rows after writing some).
CHAIN = ("[net]\nwidth=24\nheight=96\nchannels=3\n\n" + conv(16, 3) + maxpool(2, 2) + conv(32, 3) + maxpool(2, 2) +
         conv(24, 3, bn=0) + maxpool(2, 2) + conv(5, 1, act="linear"))
CHAIN_FUSED = [0, 2, 4]

# Only conv 5 fuses: pool 1 is stride 1, conv 2 is read by the route, pool 8's map is odd (6x5).
MIXED = ("[net]\nwidth=12\nheight=10\nchannels=3\n\n" + conv(8, 3) + maxpool(2, 1) + conv(16, 3) + maxpool(2, 2) +
         "[route]\nlayers=-2\n\n" + conv(16, 3) + maxpool(2, 2) + conv(8, 3) + maxpool(2, 2) + conv(4, 1, act="linear"))
MIXED_FUSED = [5]


def make(text, batch, seed):
    net = darknet_py.Network.from_text(text, name="fusion", batch=batch)
    randomise(net, seed)
    x = np.random.default_rng(seed).standard_normal((batch, net.channels, net.height, net.width)).astype(np.float32)
    return net, x


def fused_pairs(net):
    return [i for i in range(len(net)) if net.fused_with_next(i)]


@needs_direct
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("text,expected", [(CHAIN, CHAIN_FUSED), (MIXED, MIXED_FUSED)], ids=["chain", "mixed"])
def test_fused_network_equals_unfused_bit_for_bit(text, expected, batch, threads):
    net, x = make(text, batch, 3)
    net.set_exec_options(threads=threads)
    kept = net.forward(x).copy()              # keep_outputs (the default): nothing fuses
    assert fused_pairs(net) == []
    net.keep_outputs = False
    fused = net.forward(x).copy()
    assert fused_pairs(net) == expected
    assert all(not net.output_kept(i) for i in expected)
    assert np.array_equal(fused.view(np.uint32), kept.view(np.uint32))
    net.set_exec_options(fuse_layers=False)  # planned again without pairs
    assert not net.exec_options["fuse_layers"]
    unfused = net.forward(x).copy()
    assert fused_pairs(net) == []
    assert np.array_equal(unfused.view(np.uint32), kept.view(np.uint32))
    net.set_exec_options(fuse_layers=True)   # and with them again
    again = net.forward(x).copy()
    assert fused_pairs(net) == expected
    assert np.array_equal(again.view(np.uint32), kept.view(np.uint32))


@needs_direct
def test_yolov2_tiny_voc_fuses_its_pairs():
    """The shipped tiny cfg: the 416x416 3->16, 208x208 16->32 and 104x104 32->64 layers take the
    direct kernel (the last by the Winograd rule's direct-first clause), 52x52 64->128 the cached
    Winograd and 26x26 128->256 the streamed one; all five fuse their 2x2 stride-2 pools (the
    13x13 layer's pool is stride 1)."""
    from pathlib import Path
    cfg = Path(__file__).resolve().parent.parent / "cfg" / "yolov2-tiny-voc.cfg"
    net = darknet_py.load(str(cfg))
    randomise(net, 8)
    x = np.random.default_rng(1).random((1, 3, 416, 416), dtype=np.float32)
    kept = net.forward(x).copy()
    net.keep_outputs = False
    out = net.forward(x)
    assert fused_pairs(net) == [0, 2, 4, 6, 8]
    assert np.array_equal(out.view(np.uint32), kept.view(np.uint32))


@needs_direct
def test_fusion_off_where_it_must_be():
    net, x = make(CHAIN, 1, 5)
    net.keep_outputs = False
    net.set_exec_options(reference_kernels=True)   # the plain kernels run every layer alone
    net.forward(x)
    assert fused_pairs(net) == []
    net.set_exec_options(reference_kernels=False, winograd="off", isa="plain")  # the GEMM: no pooling epilogue
    net.forward(x)
    assert fused_pairs(net) == []
    net.set_exec_options(winograd="auto", isa="auto")
    net.forward(x)
    assert fused_pairs(net) == CHAIN_FUSED
    net.training = True
    net.forward(x)
    assert fused_pairs(net) == []


@needs_direct
def test_profile_gives_the_pair_to_the_conv():
    net, x = make(CHAIN, 1, 6)
    net.keep_outputs = False
    raw = net.time_layers(x, 2, 1, False)
    for i in CHAIN_FUSED:
        assert all(t > 0 for t in raw["layers"][i])
        assert all(t == 0 for t in raw["layers"][i + 1])


def test_fuse_environment_default(tmp_path):
    """DARKNET_PY_FUSE seeds a new network's fuse_layers (a fresh interpreter on the package this
    test imported, run outside the checkout so an uncompiled source tree is not picked up)."""
    from pathlib import Path
    code = "import darknet_py; n = darknet_py.Network.from_text('[net]\\nwidth=4\\nheight=4\\nchannels=1\\n\\n" \
           "[maxpool]\\nsize=2\\nstride=2\\n', name='e'); print(n.exec_options['fuse_layers'])"
    for value, expected in [("0", "False"), ("1", "True"), ("", "True")]:
        env = dict(os.environ, DARKNET_PY_FUSE=value, PYTHONPATH=str(Path(darknet_py.__file__).parents[1]))
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                             timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.strip() == expected, (value, out.stdout, out.stderr)


# The second conv's 10x22 map ends part-way through its 4x4 Winograd tiles (10 = 2 tiles + 2,
# 22 = 5 + 2); channels past one streamed depth (64).
WINOGRAD_CHAIN = ("[net]\nwidth=20\nheight=44\nchannels=80\n\n" + conv(72, 3) + maxpool(2, 2) +
                  conv(40, 3, bn=0, act="relu") + maxpool(2, 2) + conv(6, 1, act="linear"))


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("mode", ["on", "stream"])
def test_winograd_fused_pool_equals_unfused(mode, batch):
    """Both Winograd variants pool the activated 4x4 output tiles (even maps: no window straddles
    two tiles); the result is the unfused pair's bit for bit, on every kernel family."""
    for isa in [k for k in ("avx512", "avx2", "plain")
                if ["plain", "avx2", "avx512"].index(k) <= ["plain", "avx2", "avx512"].index(_core.cpu_kernel_best())]:
        net, x = make(WINOGRAD_CHAIN, batch, 9)
        net.set_exec_options(winograd=mode, isa=isa)
        assert net.layers[0].uses_winograd and net.layers[2].uses_winograd
        kept = net.forward(x).copy()
        net.keep_outputs = False
        out = net.forward(x).copy()
        assert fused_pairs(net) == [0, 2], isa
        assert np.array_equal(out.view(np.uint32), kept.view(np.uint32)), (mode, batch, isa)
