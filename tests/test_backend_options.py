"""The network's execution options and devices, on the CPU (runs everywhere).

One options object per network: {device, isa, winograd, reference_kernels,
threads}; the environment (DARKNET_PY_ISA, DARKNET_PY_WINOGRAD,
DARKNET_PY_REFERENCE_KERNELS, DARKNET_PY_THREADS) only seeds its defaults, and
set_exec_options changes them per network. The output layer is the core's
output_index (the last non-cost layer). Asking for "cuda" where it is not
available raises DarknetError with the reason, and every command that runs a
network takes --device and passes it to the network.

Tolerances, |a - b| <= tol * max(1, |b|) per value (b: the reference side):
  ISA             1e-5  the GEMM path in another CPU kernel family (plain / avx2 / avx512
                        micro-kernels): float32 sums in another order
  WINOGRAD        1e-4  Winograd F(4x4,3x3) vs the GEMM path (the transforms' rounding);
                        also Winograd in one kernel family vs another: the plain
                        transforms round every multiply and add, the vector ones fuse
                        them, so each side carries its own transform rounding (measured
                        on an AVX2 machine: 1.9e-5 between plain and avx2, beyond the GEMM
                        path's 1e-5)
  FAST_PATH       1e-4  the fast inference path (folded BN, packed GEMM, fused epilogue)
                        vs the reference kernels: tests/test_fast_path.py's bound
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import darknet_py
from darknet_py import DarknetError, _core
from darknet_py.cli import build_parser, main
from conftest import small_yolo_cfg

ISA_TOL = 1e-5
WINOGRAD_TOL = 1e-4
FAST_PATH_TOL = 1e-4

OPTION_KEYS = {"device", "isa", "winograd", "reference_kernels", "threads", "cuda_math", "cuda_graphs", "fuse_layers"}
ISA_ORDER = ["plain", "avx2", "avx512"]
BEST_ISA = _core.cpu_kernel_best()
SUPPORTED_ISAS = ISA_ORDER[:ISA_ORDER.index(BEST_ISA) + 1]
UNSUPPORTED_ISAS = ISA_ORDER[ISA_ORDER.index(BEST_ISA) + 1:]
ENV_KEYS = ("DARKNET_PY_DEVICE", "DARKNET_PY_ISA", "DARKNET_PY_WINOGRAD", "DARKNET_PY_REFERENCE_KERNELS",
            "DARKNET_PY_THREADS", "DARKNET_PY_CUDA_MATH", "DARKNET_PY_CUDA_GRAPHS", "DARKNET_PY_FUSE")


def conv(filters, size, stride=1, pad=1, bn=1, act="leaky"):
    return (f"[convolutional]\nbatch_normalize={bn}\nfilters={filters}\nsize={size}\nstride={stride}\npad={pad}\n"
            f"activation={act}\n\n")


# A small conv net whose 3x3 stride-1 convolutions have >= 32 input channels on a
# 56-wide map: Winograd F(4x4,3x3) applies to them when winograd="on".
WINO_NET = ("[net]\nbatch=2\nwidth=56\nheight=54\nchannels=3\n\n" + conv(32, 3) + conv(40, 3) +
            conv(33, 3, bn=0, act="linear") + "[maxpool]\nsize=2\nstride=2\n\n" + conv(16, 1, pad=0) +
            conv(7, 3, act="logistic"))


def randomise(net, seed):
    """Darknet-scaled weights and non-trivial BN parameters (biases, scales, rolling statistics)."""
    rng = np.random.default_rng(seed)
    net.randomize(seed)
    for layer in net.layers:
        p = layer.params
        if "biases" in p:
            p["biases"][...] = rng.uniform(-.1, .1, p["biases"].shape)
        if "scales" in p:
            p["scales"][...] = rng.uniform(.8, 1.2, p["scales"].shape)
            p["rolling_mean"][...] = rng.uniform(-.1, .1, p["rolling_mean"].shape)
            p["rolling_variance"][...] = rng.uniform(.5, 1.5, p["rolling_variance"].shape)


@pytest.fixture(scope="module")
def wino():
    net = darknet_py.Network.from_text(WINO_NET, name="wino.cfg", batch=2)
    randomise(net, 3)
    x = np.random.default_rng(4).standard_normal((2, 3, 54, 56)).astype(np.float32)
    return net, x


def forward_all(net, x):
    net.forward(x)
    return [l.output.copy() for l in net.layers]


def assert_outputs_close(got, ref, tol, what):
    assert len(got) == len(ref)
    for i, (g, r) in enumerate(zip(got, ref)):
        assert g.shape == r.shape, f"{what}: layer {i} shape {g.shape} vs {r.shape}"
        err = np.abs(g.astype(np.float64) - r)
        bound = tol * np.maximum(1.0, np.abs(r.astype(np.float64)))
        bad = err > bound
        assert not bad.any(), (f"{what}: layer {i}: {int(bad.sum())} of {bad.size} values beyond "
                               f"{tol} * max(1, |ref|); max err {err.max():.3g}")


def run_python(code, env_extra, tmp_path):
    """Runs code in a fresh interpreter (the installed package, cwd outside the checkout) with the
    DARKNET_PY_* switches removed from the environment, then env_extra added; returns its JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env.update(env_extra)
    env["PYTHONPATH"] = str(Path(darknet_py.__file__).parents[1])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


OPTIONS_SCRIPT = """
import json, darknet_py
net = darknet_py.Network.from_text("[net]\\nwidth=8\\nheight=8\\nchannels=3\\n[convolutional]\\nfilters=4\\nsize=3\\n")
seeded = net.exec_options
net.set_exec_options(isa="auto", winograd="auto", reference_kernels=False, threads=0, cuda_math="tf32",
                     cuda_graphs=True, fuse_layers=True)
print(json.dumps({"seeded": seeded, "overridden": net.exec_options}))
"""


# ---------------------------------------------------------------- defaults and the environment

def test_exec_options_defaults_in_a_clean_environment(tmp_path):
    r = run_python(OPTIONS_SCRIPT, {}, tmp_path)
    assert r["seeded"] == {"device": "cpu", "isa": BEST_ISA, "winograd": "auto", "reference_kernels": False,
                           "threads": 0, "cuda_math": "tf32", "cuda_graphs": True, "fuse_layers": True}


def test_environment_only_seeds_the_defaults(tmp_path):
    """DARKNET_PY_ISA=plain (and the other switches) reach a new network's options, and the
    network's own set_exec_options overrides them."""
    r = run_python(OPTIONS_SCRIPT, {"DARKNET_PY_ISA": "plain", "DARKNET_PY_WINOGRAD": "off",
                                    "DARKNET_PY_REFERENCE_KERNELS": "1", "DARKNET_PY_THREADS": "1",
                                    "DARKNET_PY_CUDA_MATH": "fp32", "DARKNET_PY_CUDA_GRAPHS": "0",
                                    "DARKNET_PY_FUSE": "0"}, tmp_path)
    assert r["seeded"] == {"device": "cpu", "isa": "plain", "winograd": "off", "reference_kernels": True,
                           "threads": 1, "cuda_math": "fp32", "cuda_graphs": False, "fuse_layers": False}
    assert r["overridden"] == {"device": "cpu", "isa": BEST_ISA, "winograd": "auto", "reference_kernels": False,
                               "threads": 0, "cuda_math": "tf32", "cuda_graphs": True, "fuse_layers": True}


def test_exec_options_shape_and_setters(wino):
    net, _ = wino
    opts = net.exec_options
    assert set(opts) == OPTION_KEYS
    assert opts["device"] == "cpu" and net.device == "cpu"
    assert opts["isa"] in ISA_ORDER and isinstance(opts["reference_kernels"], bool)
    assert isinstance(opts["threads"], int) and opts["threads"] >= 0
    before = dict(opts)
    try:
        assert net.set_exec_options(isa="plain", winograd="off", reference_kernels=True, threads=1,
                                    cuda_math="fp32", cuda_graphs=False, fuse_layers=False) is net
        assert net.exec_options == {"device": "cpu", "isa": "plain", "winograd": "off", "reference_kernels": True,
                                    "threads": 1, "cuda_math": "fp32", "cuda_graphs": False, "fuse_layers": False}
        assert net._net.reference_kernels is True  # the property reads the same option
        net.set_exec_options(winograd="on")  # None keeps the others
        assert net.exec_options == {"device": "cpu", "isa": "plain", "winograd": "on", "reference_kernels": True,
                                    "threads": 1, "cuda_math": "fp32", "cuda_graphs": False, "fuse_layers": False}
        net.set_exec_options(isa="auto")
        assert net.exec_options["isa"] == BEST_ISA
        net._net.reference_kernels = False
        assert net.exec_options["reference_kernels"] is False
    finally:
        net.set_exec_options(**before)
    assert net.exec_options == before


def test_options_are_per_network():
    a = darknet_py.Network.from_text(WINO_NET, name="a.cfg")
    b = darknet_py.Network.from_text(WINO_NET, name="b.cfg")
    defaults = b.exec_options
    assert a.exec_options == defaults
    changed = {"isa": "plain", "winograd": "on" if defaults["winograd"] != "on" else "off",
               "reference_kernels": not defaults["reference_kernels"], "threads": defaults["threads"] + 1}
    a.set_exec_options(**changed)
    assert a.exec_options == {**defaults, **changed}
    assert b.exec_options == defaults
    c = darknet_py.Network.from_text(WINO_NET, name="c.cfg")  # built later: the defaults, not a's options
    assert c.exec_options == defaults


# ---------------------------------------------------------------- the switches reach the kernels

@pytest.mark.parametrize("winograd,tol", [("off", ISA_TOL), ("on", WINOGRAD_TOL)])
def test_isa_plain_matches_the_others(wino, winograd, tol):
    net, x = wino
    before = net.exec_options
    try:
        net.set_exec_options(isa="plain", winograd=winograd, reference_kernels=False)
        ref = forward_all(net, x)
        for isa in SUPPORTED_ISAS[1:] + ["auto"]:
            net.set_exec_options(isa=isa)
            assert net.exec_options["isa"] == (BEST_ISA if isa == "auto" else isa)
            assert_outputs_close(forward_all(net, x), ref, tol, f"isa={isa} vs plain, winograd={winograd}")
    finally:
        net.set_exec_options(**before)


def test_winograd_on_matches_off(wino):
    net, x = wino
    before = net.exec_options
    try:
        net.set_exec_options(winograd="off", reference_kernels=False)
        off = forward_all(net, x)
        net.set_exec_options(winograd="on")
        on = forward_all(net, x)
    finally:
        net.set_exec_options(**before)
    assert_outputs_close(on, off, WINOGRAD_TOL, "winograd on vs off")
    # Winograd's transforms round differently from the GEMM path: identical bits would
    # mean the option never reached the 3x3 convolutions.
    assert not np.array_equal(on[1], off[1]), "winograd='on' gave the GEMM path's exact bits (not applied?)"


def test_winograd_option_selects_the_layers(wino):
    """The core's own report: with winograd="on" every 3x3 stride-1 convolution runs through
    Winograd, with "off" none does, and the reference kernels never do."""
    net, _ = wino
    core = net._net
    threes = [i for i, l in enumerate(net.layers) if l.type == "convolutional" and "3 x 3 / 1" in l.describe()]
    assert threes and 1 in threes and 2 in threes, [l.describe() for l in net.layers]
    before = net.exec_options
    try:
        net.set_exec_options(winograd="on", reference_kernels=False)
        assert all(core.layer_uses_winograd(i) for i in threes)
        assert not any(core.layer_uses_winograd(i) for i in range(len(net)) if i not in threes)
        net.set_exec_options(winograd="off")
        assert not any(core.layer_uses_winograd(i) for i in range(len(net)))
        net.set_exec_options(winograd="on", reference_kernels=True)
        assert not any(core.layer_uses_winograd(i) for i in range(len(net)))
    finally:
        net.set_exec_options(**before)


def test_reference_kernels_match_the_fast_path(wino):
    net, x = wino
    before = net.exec_options
    try:
        net.set_exec_options(reference_kernels=False, winograd="off")
        fast = forward_all(net, x)
        net.set_exec_options(reference_kernels=True)
        ref = forward_all(net, x)
    finally:
        net.set_exec_options(**before)
    assert_outputs_close(fast, ref, FAST_PATH_TOL, "fast path vs reference kernels")
    assert not all(np.array_equal(f, r) for f, r in zip(fast, ref)), \
        "reference_kernels=True gave the fast path's exact bits (the option does not reach the layers?)"


def test_threads_option_same_result(wino):
    net, x = wino
    before = net.exec_options
    try:
        net.set_exec_options(threads=1, winograd="off")
        one = forward_all(net, x)
        net.set_exec_options(threads=2)
        two = forward_all(net, x)
    finally:
        net.set_exec_options(**before)
    assert_outputs_close(two, one, ISA_TOL, "threads=2 vs threads=1")


# ---------------------------------------------------------------- invalid values

@pytest.mark.parametrize("kwargs", [dict(isa="sse9"), dict(winograd="sometimes"), dict(device="tpu"),
                                    dict(threads=-1)], ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_invalid_options_raise_and_change_nothing(wino, kwargs):
    net, _ = wino
    before = net.exec_options
    with pytest.raises(DarknetError):
        net.set_exec_options(**kwargs)
    assert net.exec_options == before


def test_isa_support_follows_the_cpu(wino):
    """Every family this CPU runs is accepted and runs; every other one (none on an AVX-512
    machine) is refused, naming it, with the options unchanged."""
    net, x = wino
    before = net.exec_options
    try:
        for isa in SUPPORTED_ISAS:
            net.set_exec_options(isa=isa)
            assert net.exec_options["isa"] == isa
            assert np.isfinite(net.forward(x)).all()
    finally:
        net.set_exec_options(**before)
    for isa in UNSUPPORTED_ISAS:
        with pytest.raises(DarknetError, match=isa):
            net.set_exec_options(isa=isa)
        assert net.exec_options == before
    assert len(SUPPORTED_ISAS) + len(UNSUPPORTED_ISAS) == len(ISA_ORDER) and BEST_ISA in SUPPORTED_ISAS


def test_cuda_math_switch_is_checked():
    """cuda_math is 'tf32' (the default) or 'fp32'; anything else is refused, the options unchanged.
    On the CPU it changes nothing (the switch picks the CUDA convolutions' arithmetic)."""
    net = darknet_py.Network.from_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\n")
    before = net.exec_options
    for bad in ("tf16", "FP32", ""):
        with pytest.raises(DarknetError, match="CUDA math"):
            net.set_exec_options(cuda_math=bad)
        assert net.exec_options == before
    x = np.random.default_rng(3).random((1, 3, 8, 8), dtype=np.float32)
    y = net.forward(x).copy()
    net.set_exec_options(cuda_math="fp32")
    assert net.exec_options == {**before, "cuda_math": "fp32"}
    np.testing.assert_array_equal(net.forward(x), y)
    net.set_exec_options(cuda_graphs=False)
    assert net.exec_options == {**before, "cuda_math": "fp32", "cuda_graphs": False}
    np.testing.assert_array_equal(net.forward(x), y)
    assert net._net.cuda_graph_replays == 0  # CPU networks never record


def test_invalid_device_names_raise():
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\n"
    with pytest.raises(DarknetError):
        darknet_py.Network.from_text(text, device="tpu")
    net = darknet_py.Network.from_text(text)
    with pytest.raises(DarknetError):
        net.to("tpu")
    with pytest.raises(DarknetError):
        net.to(None)
    assert net.device == "cpu"


# ---------------------------------------------------------------- devices

def test_cuda_queries_are_plain_values():
    assert isinstance(darknet_py.cuda_available(), bool)
    assert isinstance(darknet_py.cuda_built(), bool)
    reason = darknet_py.cuda_unavailable_reason()
    assert isinstance(reason, str)
    assert darknet_py.cuda_available() == _core.cuda_available()
    assert darknet_py.cuda_built() == _core.cuda_built()
    assert (reason == "") == darknet_py.cuda_available()
    if not darknet_py.cuda_built():
        assert not darknet_py.cuda_available() and _core.cuda_device_count() == 0
    stats = _core.cuda_allocation_stats()
    assert set(stats) == {"device_allocations", "device_frees", "device_bytes_in_use", "pinned_allocations"}
    if not darknet_py.cuda_available():  # nothing can have been allocated on a device
        assert all(v == 0 for v in stats.values()), stats
        with pytest.raises(DarknetError):
            _core.cuda_device_info(0)


def test_to_cpu_keeps_the_network(wino):
    net, x = wino
    out = net.forward(x).copy()
    w = net.layers[0].params["weights"].copy()
    assert net.to("cpu") is net and net.device == "cpu"
    np.testing.assert_array_equal(net.layers[0].params["weights"], w)
    np.testing.assert_array_equal(net.forward(x), out)


needs_no_cuda = pytest.mark.skipif(darknet_py.cuda_available(),
                                   reason="CUDA available: this test covers machines without a device")


@needs_no_cuda
def test_cuda_without_a_device_raises_the_reason(tmp_path):
    reason = darknet_py.cuda_unavailable_reason()
    assert reason
    text = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nfilters=4\nsize=3\n"
    cfg = tmp_path / "t.cfg"
    cfg.write_text(text)
    calls = {"Network.from_text": lambda: darknet_py.Network.from_text(text, device="cuda"),
             "Network.from_cfg": lambda: darknet_py.Network.from_cfg(str(cfg), device="cuda"),
             "load": lambda: darknet_py.load(str(cfg), device="cuda"),
             "_core.Network": lambda: _core.Network(str(cfg), 1, device="cuda")}
    for what, call in calls.items():
        with pytest.raises(DarknetError) as e:
            call()
        assert reason in str(e.value), f"{what}: {e.value!r} does not name the reason {reason!r}"
    net = darknet_py.Network.from_text(text)
    net.randomize(1)
    x = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    out = net.forward(x).copy()
    for move in (lambda: net.to("cuda"), lambda: net.set_exec_options(device="cuda")):
        with pytest.raises(DarknetError) as e:
            move()
        assert reason in str(e.value)
        # a failed move leaves a working CPU network
        assert net.device == "cpu" and net.exec_options["device"] == "cpu"
        np.testing.assert_array_equal(net.forward(x), out)


# ---------------------------------------------------------------- the output layer

CLASSIFIER = ("[net]\nbatch=2\nwidth=12\nheight=10\nchannels=3\n\n" + conv(6, 3) + "[maxpool]\nsize=2\nstride=2\n\n"
              + conv(5, 1, pad=0, bn=0, act="linear") + "[avgpool]\n\n[softmax]\ngroups=1\n\n[cost]\ntype=sse\n")


def test_output_index_is_the_last_non_cost_layer():
    net = darknet_py.Network.from_text(CLASSIFIER, name="classifier.cfg", batch=2)
    types = [l.type for l in net.layers]
    assert types == ["convolutional", "maxpool", "convolutional", "avgpool", "softmax", "cost"]
    assert net.output_index == net._net.output_index == 4
    from darknet_py.classifier import output_layer_outputs
    assert output_layer_outputs(net) == 5
    assert net._net.truths == 5
    net.randomize(2)
    x = np.random.default_rng(1).random((2, 3, 10, 12), dtype=np.float32)
    out = net.forward(x)
    np.testing.assert_array_equal(out.reshape(2, -1), net.layers[4].output.reshape(2, -1))
    np.testing.assert_allclose(out.reshape(2, -1).sum(axis=1), 1, rtol=1e-5)
    # without a [cost] layer the output layer is the last one
    plain = darknet_py.Network.from_text(CLASSIFIER.split("[cost]")[0], name="no_cost.cfg", batch=2)
    assert plain.output_index == len(plain) - 1 == 4
    det = darknet_py.Network.from_text(small_yolo_cfg(size=32, batch=1, filters=(4,)), name="det.cfg")
    assert det.layers[det.output_index].type == "region" and det.output_index == len(det) - 1


# ---------------------------------------------------------------- the command line

NETWORK_COMMANDS = ["detect", "train", "map", "valid", "profile", "classifier-train", "classifier-finetune",
                    "classifier-valid", "classifier-predict", "demo"]


def _subparsers():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_network_command_has_device(monkeypatch):
    monkeypatch.delenv("DARKNET_PY_DEVICE", raising=False)
    subs = _subparsers()
    for name in NETWORK_COMMANDS:
        assert name in subs, f"command {name} missing"
        opts = {o for a in subs[name]._actions for o in a.option_strings}
        assert "--device" in opts, f"{name} has no --device"
        assert subs[name].get_default("device") == "cpu"
    for name in ("info", "partial", "anchors"):  # no network runs
        assert "--device" not in {o for a in subs[name]._actions for o in a.option_strings}


def test_device_default_from_environment(monkeypatch, capsys):
    monkeypatch.setenv("DARKNET_PY_DEVICE", "cuda")
    args = build_parser().parse_args(["detect", "a.cfg", "a.weights", "a.jpg"])
    assert args.device == "cuda"
    args = build_parser().parse_args(["profile", "a.cfg", "--device", "cpu"])
    assert args.device == "cpu"
    monkeypatch.setenv("DARKNET_PY_DEVICE", "tpu")
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["detect", "a.cfg", "a.weights", "a.jpg"])
    assert e.value.code == 2 and "tpu" in capsys.readouterr().err
    monkeypatch.delenv("DARKNET_PY_DEVICE")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["detect", "a.cfg", "a.weights", "a.jpg", "--device", "gpu0"])


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    from darknet_py.data.synthetic import generate
    from darknet_py.data.synthetic_classes import generate_classes
    root = tmp_path_factory.mktemp("device_cli")
    data = generate(root / "det", n_train=4, n_valid=2, size=(64, 64), seed=1)
    cfg = root / "tiny.cfg"
    cfg.write_text(small_yolo_cfg(size=64, batch=2, filters=(4,), max_batches=2))
    weights = root / "tiny.weights"
    darknet_py.load(str(cfg)).save_weights(str(weights))
    cls_data = generate_classes(root / "cls", n_train=5, n_valid=5, size=(32, 32), seed=1)
    cls_cfg = root / "cls.cfg"
    cls_cfg.write_text(CLASSIFIER.replace("width=12\nheight=10", "width=32\nheight=32").replace(
        "[net]\n", "[net]\nmax_batches=2\nlearning_rate=0.01\nmomentum=0.9\ndecay=0.0005\n"))
    cls_weights = root / "cls.weights"
    from darknet_py.train import save_checkpoint
    cls_net = darknet_py.load(str(cls_cfg))
    cls_net.training = True
    save_checkpoint(cls_net, str(cls_weights))  # with its .state.npz: fine-tuning resumes without a warning
    from darknet_py.data.dataset import read_data_cfg, read_list
    image = read_list(read_data_cfg(data).resolve("valid"))[0]
    return dict(data=str(data), cfg=str(cfg), weights=str(weights), image=image, cls_data=cls_data,
                cls_cfg=str(cls_cfg), cls_weights=str(cls_weights), backup=str(root / "backup"))


def _argv(command, f):
    return {
        "detect": ["detect", f["cfg"], f["weights"], f["image"], "--out", f["backup"]],
        "train": ["train", f["data"], f["cfg"], "--max-batches", "1", "--backup", f["backup"]],
        "map": ["map", f["data"], f["cfg"], f["weights"], "--quiet"],
        "valid": ["valid", f["data"], f["cfg"], f["weights"], "--quiet", "--out", f["backup"]],
        "profile": ["profile", f["cfg"], "--runs", "1", "--warmup", "0"],
        "classifier-train": ["classifier-train", f["cls_data"], f["cls_cfg"], "--max-batches", "1",
                             "--backup", f["backup"]],
        "classifier-finetune": ["classifier-finetune", f["cls_data"], f["cls_cfg"], f["cls_weights"],
                                "--max-batches", "1", "--backup", f["backup"]],
        "classifier-valid": ["classifier-valid", f["cls_data"], f["cls_cfg"], f["cls_weights"]],
        "classifier-predict": ["classifier-predict", f["cls_cfg"], f["cls_weights"], f["image"]],
    }[command]


@needs_no_cuda
@pytest.mark.parametrize("command", [c for c in NETWORK_COMMANDS if c != "demo"])
def test_device_cuda_reaches_the_network(command, cli_files, capsys, monkeypatch):
    """`--device cuda` without CUDA: the command stops with the core's reason (so the device
    reached the network), exit status 2, no traceback."""
    monkeypatch.setenv("DARKNET_PY_PEAK_GFLOPS", "100")  # profile: no microbenchmark
    assert main(_argv(command, cli_files) + ["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert darknet_py.cuda_unavailable_reason() in err and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["detect", "profile", "classifier-predict"])
def test_device_cpu_runs(command, cli_files, capsys, monkeypatch):
    monkeypatch.setenv("DARKNET_PY_PEAK_GFLOPS", "100")
    assert main(_argv(command, cli_files) + ["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    if command == "profile":
        assert "cpu (" in out.splitlines()[0]


def test_demo_passes_device(monkeypatch):
    seen = {}
    import darknet_py.demo
    monkeypatch.setattr(darknet_py.demo, "run_demo", lambda **kw: seen.update(kw))
    monkeypatch.delenv("DARKNET_PY_DEVICE", raising=False)
    assert main(["demo", "--quick", "--device", "cuda", "--out", "unused"]) == 0
    assert seen["device"] == "cuda"
    assert main(["demo", "--quick", "--out", "unused"]) == 0
    assert seen["device"] == "cpu"
