"""The training step's fast CPU path (the raw convolution on the packed GEMM without an
im2col buffer, batch norm in one forward pass and two backward passes, maxpool's
unchecked interior scan) against the plain path (`reference_kernels=True`: im2col + GEMM
per image for the convolution), on a net with every
convolution shape the training path meets: 3x3 pad 1, stride 2, 5x5 pad 0, 1x1, groups,
the weight gradient per image (large maps) and with images folded into one GEMM (small
maps, in chunks), the input gradient of 'same' convolutions as a flipped-weight convolution
(the direct kernel and the packed GEMM, both adding into a delta a route already wrote),
with and without batch norm, a maxpool with border windows (size 3 stride 2) and tiny
yolo's size 2 stride 1, and a route that makes the 1x1 input gradient add up.

Tolerances: the two paths sum the same products in different orders (GEMM blocking), so
they differ by float32 rounding: ~1e-7 relative
per value, grown through 3 SGD steps; 2e-5 relative to each tensor's largest value holds
with a margin of ~10x (measured worst 2.4e-6, on a weight gradient). The scale has a floor
of 1e-2, and 1e-1 for bias updates: a conv whose output reaches batch norm only through a
linear map gets an exactly-zero bias gradient in exact arithmetic, so its biases, bias updates
and the next layer's rolling mean are pure rounding noise that two correct summation orders
do not reproduce. The fused batch norm's fma and recomputed sums move that noise up to ~2e-7
(layer 7's bias updates, whose largest value is 1e-7), which the 1e-2 floor would have held
at 2e-5, the tolerance itself. Thread counts must not change anything: the threads
split rows and columns of each GEMM, and where a GEMM's K is split (small C, long K) the
parts are fixed by the shape, never by the thread count, so 1 and 2 threads give the same
bits."""
import numpy as np
import pytest

import darknet_py
from conftest import momentum_buffers, parameters

NET = """[net]
batch=3
subdivisions=1
width=40
height=26
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.02
policy=constant

# 40x26 = 1040 pixels: the per-image weight gradient (split K)
[convolutional]
batch_normalize=1
filters=8
size=3
pad=1
activation=leaky

# stride-1 'same': the input gradient as a convolution of the delta with the flipped weights,
# 6 channels there (the direct kernel), adding into the delta the route below wrote first
[convolutional]
batch_normalize=1
filters=6
size=3
pad=1
activation=leaky

[route]
layers=-1,-2

# 36x22 = 792 pixels: the weight gradient with 2 images folded per GEMM (chunks of 2 + 1)
[convolutional]
filters=12
size=5
stride=1
padding=0
activation=leaky

[maxpool]
size=3
stride=2

# 'same' with 27 filters: the flipped-weight input gradient on the packed GEMM; the route
# below adds into the maxpool's delta first, so that input gradient must add, not overwrite
[convolutional]
batch_normalize=1
filters=27
size=3
pad=1
activation=leaky

[route]
layers=-1,-2

[convolutional]
batch_normalize=1
filters=12
size=3
stride=2
pad=1
groups=3
activation=linear

[convolutional]
batch_normalize=1
filters=10
size=1
activation=leaky

[maxpool]
size=2
stride=1

[route]
layers=-1,-2

[convolutional]
filters=7
size=1
activation=linear

[avgpool]

[softmax]

[cost]
"""
RELATIVE_TOL = 2e-5
SCALE_FLOOR = 1e-2
BIAS_UPDATES_FLOOR = 1e-1  # real bias gradients here are 0.1-1; the zero ones are ~1e-7 of noise


def _train(reference: bool, threads: int, steps: int = 3, isa: str = "auto"):
    net = darknet_py.Network.from_text(NET, name="training_kernels.cfg", batch=3)
    net.randomize(7)
    net.training = True
    net.set_exec_options(reference_kernels=reference, threads=threads, isa=isa)
    rng = np.random.default_rng(5)
    losses = []
    for _ in range(steps):
        x = rng.standard_normal((3, 3, 26, 40)).astype(np.float32)
        truth = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 3)]
        losses.append(net.train_step(x, truth))
    return losses, {**parameters(net), **momentum_buffers(net)}


# "plain": the fast path's structure (folded GEMMs, flipped-weight input gradient) on the plain
# C++ micro-kernels, without the AVX2-only direct kernels and fused batch norm.
@pytest.mark.parametrize("isa", ["auto", "plain"])
def test_fast_training_path_matches_the_plain_one(isa):
    fast_losses, fast = _train(reference=False, threads=2, isa=isa)
    ref_losses, ref = _train(reference=True, threads=2)
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=RELATIVE_TOL)
    assert fast.keys() == ref.keys() and any(k.endswith("weight_updates") for k in fast)
    for name in ref:
        floor = BIAS_UPDATES_FLOOR if name.endswith("bias_updates") else SCALE_FLOOR
        scale = max(float(np.abs(ref[name]).max()), floor)
        err = float(np.abs(fast[name] - ref[name]).max()) / scale
        assert err <= RELATIVE_TOL, f"{name}: fast vs plain training path differ by {err:.2e} of the tensor's max"


def test_fast_training_path_does_not_depend_on_threads():
    one_losses, one = _train(reference=False, threads=1)
    two_losses, two = _train(reference=False, threads=2)
    assert one_losses == two_losses
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


@pytest.mark.parametrize("w,h", [(12, 8), (11, 9)])
def test_maxpool_2x2_training_forward_matches_reference(w, h):
    """The fast 2x2/2 training forward (branchless, vectorised rows) against the reference
    scan: outputs and the argmax routing of the backward equal bit for bit, with ties
    everywhere (integer inputs: the first maximum in scan order must win), -inf values,
    and odd maps whose last row and column windows hang over the border."""
    text = (f"[net]\nbatch=2\nwidth={w}\nheight={h}\nchannels=3\n"
            "[convolutional]\nfilters=3\nsize=1\nactivation=linear\n"
            "[maxpool]\nsize=2\nstride=2\n")
    rng = np.random.default_rng(4)
    x = rng.integers(0, 3, (2, 3, h, w)).astype(np.float32)
    x[0, 0, :2, :2] = -np.inf
    x[1, 2, 2:4, 4:6] = -np.inf
    results = []
    for reference in (False, True):
        net = darknet_py.Network.from_text(text, "pool.cfg", batch=2)
        net.set_exec_options(reference_kernels=reference)
        net.training = True
        net.layers[0].params["weights"][...] = np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1)
        net.layers[0].params["biases"][...] = 0
        out = net.forward(x).copy()
        r = rng.standard_normal(out.shape).astype(np.float32) if not results else results[0][2]
        net._net.set_layer_delta(1, r.ravel())
        net._net.backward(x)
        results.append((out, net.layers[0].delta.copy(), r))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert np.count_nonzero(results[0][1]) > 0
