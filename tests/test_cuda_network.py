"""Whole networks on a device, run on both device kinds: inference, training, moving, saving.

Every test takes the module-scoped `device` parameter:
  "emulated"  always runs: the CPU backend computing on separately allocated "device" memory,
              every host<->device transfer a real copy, so the device-resident protocol
              (Buffer host/device mirror, uploads, downloads when Python reads outputs or
              parameters, which copy is newest) runs exactly as on a GPU. Its arithmetic is
              the CPU's, so every comparison with device="cpu" holds EXACTLY (the same bits).
  "cuda"      skipped with the reason darknet_py.cuda_unavailable_reason() where CUDA is not
              available.
Everything here runs the network entirely on the device; what is read back (outputs,
parameters, detections, weights files) is pulled from it.

Tolerances (the same references on both devices):
  FULL_NETS   |dev - darknet| <= 1e-4 * max(1, |darknet|) for every recorded output
              sample, the full final output and the detections' boxes (relative to
              max(1, |box|)) and probabilities: the bound the CPU meets in
              tests/test_full_nets.py, on the same fixtures (so "emulated" keeps it too).
  ONE_STEP    |dev - x| <= 1e-5 * max(1, max|x|) + 1e-4 * |x| per array after one training
              step, x = Darknet's recorded weights: the bound of
              tests/test_training_fixture.py (float32 sums in another order).
  THREE_STEPS three SGD steps, each within ONE_STEP, errors adding up: 3 x that bound
              (3e-5 scale, 3e-4 relative) for every parameter, momentum buffer and
              the three losses, device vs CPU. On "emulated" (the CPU's arithmetic) every
              device-vs-CPU comparison (three steps, resizes, to() and back, forward after
              to()) is exact: tolerance (0, 0).
  EXACT       moving a network between devices and saving its weights copies floats:
              the same bits (both devices).

Arithmetic: the tolerances above are FP32's, so this module builds its networks with
cuda_math="fp32" (the convolutions as plain-FMA implicit GEMMs). The default, "tf32" (tensor
cores), is held to its own bound in test_full_net_tf32_* below:
  TF32_NET    |tf32 - darknet| <= 5e-2 * max(1, |darknet|) over the final output of a whole
              network (each convolution's operands rounded to 10-bit mantissas, about 1e-3
              relative per layer, compounding over 9 to 23 layers: a reasoned bound, not yet
              measured); the test prints the measured error.

Device-specific checks: the zero-allocation test reads _core.cuda_allocation_stats() on
"cuda" and _core.emulated_memory_stats() on "emulated", where it also counts the transfers
of a warmed-up forward and training step.
"""
import json

import numpy as np
import pytest

import darknet_py
from darknet_py import _core
from conftest import assert_close as _assert_close, assert_detections_match, load_case, make_weights, small_yolo_cfg

DEVICES = ["emulated", "cuda"]
NETS = ["darknet19_256", "yolov2-tiny-voc_416", "yolov2-voc_416", "yolov2_416", "yolov2-voc_608"]
REGION_NETS = [n for n in NETS if not n.startswith("darknet19")]
FULL_NETS_TOL = 1e-4
ONE_STEP = (1e-5, 1e-4)
THREE_STEPS = (3e-5, 3e-4)
EXACT = (0.0, 0.0)


@pytest.fixture(scope="module", autouse=True)
def fp32_convolutions():
    """Networks built in this module default to cuda_math="fp32" (see the module docstring)."""
    before = _core.cuda_math()
    _core.set_cuda_math("fp32")
    yield
    _core.set_cuda_math(before)


@pytest.fixture(scope="module", params=DEVICES)
def device(request):
    if request.param == "cuda" and not darknet_py.cuda_available():
        pytest.skip(f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")
    return request.param


def vs_cpu(device, tol):
    """The tolerance of a device-vs-CPU comparison: exact on "emulated" (the CPU's arithmetic)."""
    return EXACT if device == "emulated" else tol


def assert_close(actual, expected, tol, what):
    if tol == EXACT:  # the same bits (NaNs in the same places), same shape
        actual, expected = np.asarray(actual), np.asarray(expected)
        assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
        np.testing.assert_array_equal(actual, expected, err_msg=f"{what} (exact)")
        return
    atol, rtol = tol
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max())) if expected.size else 1.0
    _assert_close(actual, expected, atol * scale, rtol, what)


def full_net(name, weights_dir, device):
    case = load_case("fixtures", "full_nets", name)
    gen = case.manifest["weights_generation"]
    weights = make_weights(case.root / gen["cfg"], gen["seed"], weights_dir)
    net = darknet_py.load(case.root / case.manifest["cfg"], weights, device=device)
    assert net.device == device
    return case, net, weights


# ---------------------------------------------------------------- fixtures/full_nets on the device

@pytest.fixture(scope="module", params=NETS)
def dev_ran(request, device, weights_dir):
    case, net, _ = full_net(request.param, weights_dir, device)
    out = net.forward(case.array("input"))
    return case, net, out


def test_full_net_final_output(dev_ran, device):
    case, net, out = dev_ran
    last = len(net) - 1
    want = case.array(f"L{last:02d}_output_full").astype(np.float64)
    got = out.astype(np.float64).reshape(want.shape)
    err = np.abs(got - want)
    bad = err > FULL_NETS_TOL * np.maximum(1.0, np.abs(want))
    assert not bad.any(), f"{case.dir.name} on {device}: final output {bad.sum()} values off, max err {err.max():.3g}"


def test_full_net_every_layer(dev_ran, device):
    case, net, _ = dev_ran
    stride = case.manifest["strided_sample_stride"]
    assert net.exec_options["device"] == device
    for i, layer in enumerate(net.layers):
        got = layer.output.ravel().astype(np.float64)[::stride]
        want = case.array(f"L{i:02d}_output_strided").astype(np.float64)
        assert got.shape == want.shape, f"layer {i}: {got.shape} vs {want.shape}"
        err = np.abs(got - want)
        assert (err <= FULL_NETS_TOL * np.maximum(1.0, np.abs(want))).all(), \
            f"{case.dir.name} on {device}: layer {i} ({layer.type}) max err {err.max():.3g}"


TF32_NET = 5e-2


@pytest.mark.parametrize("name", ["yolov2-tiny-voc_416", "yolov2-voc_416"])
def test_full_net_tf32_final_output(name, weights_dir):
    """The default arithmetic (TF32 tensor cores) on whole networks, against Darknet's output."""
    if not darknet_py.cuda_available():
        pytest.skip(f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")
    case, net, _ = full_net(name, weights_dir, "cuda")
    net.set_exec_options(cuda_math="tf32")
    out = net.forward(case.array("input"))
    want = case.array(f"L{len(net) - 1:02d}_output_full").astype(np.float64)
    err = np.abs(out.astype(np.float64).reshape(want.shape) - want) / np.maximum(1.0, np.abs(want))
    print(f"{name}: TF32 final output, max error {err.max():.3g} relative to max(1, |darknet|), "
          f"median {np.median(err):.3g}")
    assert err.max() <= TF32_NET, f"{name}: TF32 output off by {err.max():.3g} (bound {TF32_NET})"


def test_tf32_training_steps_track_fp32(weights_dir):
    """Three TF32 training steps of a small YOLO stay close to the FP32 ones (losses within 1%)."""
    if not darknet_py.cuda_available():
        pytest.skip(f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")
    costs = {}
    for math in ("fp32", "tf32"):
        case, net, _, _ = stepped("layers_fwd_bwd", "seen_large", "cuda", 0)
        net.set_exec_options(cuda_math=math)
        x, truth = case.array("input"), case.array("truth")
        costs[math] = np.array([net.train_step(x, truth) for _ in range(3)])
    print(f"TF32 vs FP32 losses: {costs['tf32']} vs {costs['fp32']}")
    np.testing.assert_allclose(costs["tf32"], costs["fp32"], rtol=1e-2)


def test_cuda_graph_replays_equal_eager_forwards(weights_dir):
    """Batch-1 inference on CUDA records its forward as a graph on the second call and replays it
    from the third: the same bits as eager forwards (the same kernels), for new inputs, after
    weights changed through the parameter views, and after a resize (recorded again)."""
    if not darknet_py.cuda_available():
        pytest.skip(f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")
    case, graphed, weights = full_net("yolov2-tiny-voc_416", weights_dir, "cuda")
    eager = darknet_py.load(case.root / case.manifest["cfg"], weights, device="cuda")
    eager.set_exec_options(cuda_graphs=False)
    assert graphed.exec_options["cuda_graphs"] is True
    rng = np.random.default_rng(4)
    inputs = [rng.random((1, 3, 416, 416), dtype=np.float32) for _ in range(4)]
    for i, x in enumerate(inputs):
        np.testing.assert_array_equal(graphed.forward(x), eager.forward(x), err_msg=f"forward {i}")
    assert graphed._net.cuda_graph_replays == len(inputs) - 1  # recorded on the 2nd, replayed after
    assert eager._net.cuda_graph_replays == 0
    out_before = graphed.forward(inputs[0]).copy()
    for net in (graphed, eager):  # a parameter written on the host reaches the replay
        net.layers[0].params["weights"][0, 0, 0, 0] += 0.5
        net.layers[2].params["biases"][3] -= 0.25
    before = graphed._net.cuda_graph_replays
    out_after = graphed.forward(inputs[0])
    assert not np.array_equal(out_after, out_before), "the replay did not see the new weights"
    np.testing.assert_array_equal(out_after, eager.forward(inputs[0]), err_msg="after weights")
    assert graphed._net.cuda_graph_replays == before + 1
    for net in (graphed, eager):
        net.resize(320, 320)
    x = rng.random((1, 3, 320, 320), dtype=np.float32)
    for i in range(3):
        np.testing.assert_array_equal(graphed.forward(x), eager.forward(x), err_msg=f"resized forward {i}")
    assert graphed._net.cuda_graph_replays == before + 1 + 2


def test_cuda_graphs_do_not_touch_training(weights_dir):
    """Training forwards never replay: the loss reads the output on the host each step."""
    if not darknet_py.cuda_available():
        pytest.skip(f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")
    case, net, _, _ = stepped("layers_fwd_bwd", "seen_large", "cuda", 3)
    assert net._net.cuda_graph_replays == 0


def test_darknet19_top5_on_device(device, weights_dir):
    case, net, _ = full_net("darknet19_256", weights_dir, device)
    out = net.forward(case.array("input")).ravel()
    top = np.argsort(-out, kind="stable")[:5]
    assert [t["index"] for t in case.manifest["top5"]] == top.tolist()
    for t in case.manifest["top5"]:
        assert out[t["index"]] == pytest.approx(t["prob"], rel=FULL_NETS_TOL)


@pytest.mark.parametrize("name", REGION_NETS)
def test_detections_on_device_match_darknet(name, device, weights_dir):
    case, net, _ = full_net(name, weights_dir, device)
    assert_detections_match(net, case, FULL_NETS_TOL)


def test_detect_command_on_device(device, tmp_path, capsys, weights_dir):
    from darknet_py.cli import build_parser, main
    case = load_case("fixtures", "full_nets", "yolov2-tiny-voc_416")
    gen = case.manifest["weights_generation"]
    weights = make_weights(case.root / gen["cfg"], gen["seed"], weights_dir)
    argv = ["detect", str(case.root / case.manifest["cfg"]), str(weights), str(case.root / "data" / "dog.jpg"),
            "--names", str(case.root / "data" / "voc.names"), "--out", str(tmp_path)]
    if device == "cuda":
        rc = main(argv + ["--device", "cuda"])
    else:
        # --device takes only cpu|cuda (a user-facing choice): run the command itself on the
        # emulated device, everything else parsed as the CLI does.
        args = build_parser().parse_args(argv + ["--device", "cpu"])
        args.device = device
        rc = args.func(args) or 0
    assert rc == 0
    out = capsys.readouterr().out
    ref = json.loads((case.files_dir / "detections.json").read_text())
    for d in ref["detections"]:
        for label in d["labels"]:
            assert f"{label}: " in out
    assert (tmp_path / "dog_predictions.png").exists()


def test_profiler_on_device(device, weights_dir):
    case, net, _ = full_net("yolov2-tiny-voc_416", weights_dir, device)
    prof = net.profile(runs=3, warmup=1)
    assert prof.device == device
    assert len(prof.layers) == len(net) and all(l.ms > 0 for l in prof.layers)
    first = prof.table().splitlines()[0]
    assert prof.total_ms > 0 and f"{device} (" in first
    if device == "emulated":  # CPU kernels on the emulated device's memory: no peak applies
        assert prof.peak_gflops is None and all(l.pct_peak is None for l in prof.layers)
        assert "CPU kernels" in first
    else:  # CUDA events between layers, % of the measured FP32 peak (this module runs cuda_math fp32)
        assert prof.kernel.startswith("cuda fp32") and "CUDA events" in first
        assert prof.peak_gflops > 1000 and all(0 <= l.pct_peak <= 100 for l in prof.layers)
        assert prof.bandwidth_gbs > 100 and all(l.pct_roofline > 0 for l in prof.layers)
        assert "%roof" in prof.table() and "roofline: ridge" in prof.table()
        # The layers' event times add up to about the pass (launches overlap the kernels).
        assert 0.5 * prof.total_ms <= prof.layer_sum_ms <= 1.5 * prof.total_ms
    assert net.device == device


# ---------------------------------------------------------------- training on the device

TRAINING_CASES = [("layers_fwd_bwd", "seen_small"), ("layers_fwd_bwd", "seen_large"), ("classifier", "softmax_cost")]


def stepped(fixture, case_name, device, steps):
    case = load_case("fixtures", fixture, case_name)
    root = case.root
    net = darknet_py.load(root / case.manifest["cfg"], root / case.manifest["weights_in"], batch=2, device=device)
    net.seen = case.values.get("seen_set", 0)
    net.training = True
    x, truth = case.array("input"), case.array("truth")
    costs = [net.train_step(x, truth) for _ in range(steps)]
    state = {}
    for i, layer in enumerate(net.layers):
        state.update({f"L{i}.{k}": v.copy() for k, v in layer.params.items()})
        state.update({f"L{i}.{k}": v.copy() for k, v in layer.buffers.items() if k.endswith("_updates")})
    return case, net, np.array(costs), state


@pytest.mark.parametrize("fixture,case_name", TRAINING_CASES)
def test_one_device_step_matches_darknet(fixture, case_name, device, tmp_path):
    case, net, costs, _ = stepped(fixture, case_name, device, 1)
    assert costs[0] == pytest.approx(case.values["net_cost"], rel=ONE_STEP[1])
    out = tmp_path / "u.weights"
    net.save_weights(out)
    if "weights_after_update" in case.manifest:
        theirs = (case.root / case.manifest["weights_after_update"]).read_bytes()
    else:
        theirs = (case.files_dir / (case.entries["updated"]["file"] if case.has("updated") else "updated.weights")
                  ).read_bytes()
    ours = out.read_bytes()
    assert len(ours) == len(theirs) and ours[:20] == theirs[:20]
    assert_close(np.frombuffer(ours[20:], np.float32), np.frombuffer(theirs[20:], np.float32), ONE_STEP,
                 f"{fixture}/{case_name}: weights after one {device} step vs Darknet")


@pytest.mark.parametrize("fixture,case_name", TRAINING_CASES)
def test_three_sgd_steps_device_equals_cpu(fixture, case_name, device):
    tol = vs_cpu(device, THREE_STEPS)
    _, _, cpu_costs, cpu = stepped(fixture, case_name, "cpu", 3)
    _, dev_net, dev_costs, dev = stepped(fixture, case_name, device, 3)
    assert dev_net.device == device
    assert_close(dev_costs, cpu_costs, tol, f"{fixture}/{case_name}: losses of the 3 steps on {device}")
    assert sorted(dev) == sorted(cpu)
    for key in sorted(cpu):
        assert_close(dev[key], cpu[key], tol, f"{fixture}/{case_name}: {key} after 3 steps on {device}")


def test_multiscale_resize_on_device_equals_cpu(device):
    """Training across a resize (multi-scale) and a batch change: the device arena is resized and
    the device stays within THREE_STEPS of the CPU (exactly equal on "emulated")."""
    tol = vs_cpu(device, THREE_STEPS)
    text = small_yolo_cfg(size=64, batch=2, filters=(8, 16))
    truth = np.zeros((2, 150), np.float32)
    truth[0, :5] = [.3, .4, .2, .3, 1]
    truth[1, :10] = [.6, .5, .3, .2, 2, .2, .7, .1, .2, 0]
    results = {}
    for dev in ("cpu", device):
        net = darknet_py.Network.from_text(text, name="ms.cfg", batch=2, device=dev)
        net.randomize(4)
        net.training = True
        costs = []
        for size in (64, 96, 64):
            if (size, size) != (net.width, net.height):
                net.resize(size, size)
            x = np.random.default_rng([3, size]).random((2, 3, size, size), dtype=np.float32)
            costs.append(net.train_step(x, truth))
        results[dev] = (np.array(costs), {f"L{i}.{k}": v.copy() for i, l in enumerate(net.layers)
                                          for k, v in l.params.items()})
    assert_close(results[device][0], results["cpu"][0], tol, f"losses across resizes on {device}")
    assert sorted(results[device][1]) == sorted(results["cpu"][1])
    for k in results["cpu"][1]:
        assert_close(results[device][1][k], results["cpu"][1][k], tol, f"{k} after resizes on {device}")


# ---------------------------------------------------------------- moving and saving

def snapshot(net):
    out = {}
    for i, layer in enumerate(net.layers):
        out.update({f"L{i}.param.{k}": v.copy() for k, v in layer.params.items()})
        out.update({f"L{i}.buffer.{k}": v.copy() for k, v in layer.buffers.items() if k.endswith("_updates")})
    return out


def assert_same_bits(a, b, what):
    assert sorted(a) == sorted(b), what
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{what}: {k}")


def test_to_device_and_back_keeps_weights(device):
    case = load_case("fixtures", "layers_fwd_bwd", "seen_small")
    root = case.root
    net = darknet_py.load(root / case.manifest["cfg"], root / case.manifest["weights_in"], batch=2)
    x, truth = case.array("input"), case.array("truth")
    before = snapshot(net)
    cpu_out = net.forward(x).copy()
    assert net.to(device) is net and net.device == device and net.exec_options["device"] == device
    dev_out = net.forward(x)
    assert_close(dev_out, cpu_out, vs_cpu(device, (FULL_NETS_TOL, 0)), f"forward after to({device!r})")
    assert net.to("cpu") is net and net.device == "cpu"
    assert_same_bits(snapshot(net), before, f"cpu -> {device} (inference) -> cpu")
    # training state (momentum) survives the trip too
    net.training = True
    net.to(device)
    net.train_step(x, truth)
    on_dev = snapshot(net)
    assert any(not np.array_equal(on_dev[k], before[k]) for k in before), f"the {device} step changed nothing"
    net.to("cpu")
    assert_same_bits(snapshot(net), on_dev, f"state after a {device} step, moved to the CPU")
    net.train_step(x, truth)  # and trains on
    assert net.device == "cpu"


@pytest.mark.parametrize("which", ["layers_fwd_bwd", "yolov2-tiny-voc_416"])
def test_save_weights_from_device_equals_cpu_bytes(which, device, tmp_path, weights_dir):
    if which == "layers_fwd_bwd":
        case = load_case("fixtures", "layers_fwd_bwd", "seen_small")
        cfg, weights = case.root / case.manifest["cfg"], case.root / case.manifest["weights_in"]
        x = case.array("input")[:1]
    else:
        case = load_case("fixtures", "full_nets", which)
        gen = case.manifest["weights_generation"]
        cfg, weights = case.root / case.manifest["cfg"], make_weights(case.root / gen["cfg"], gen["seed"], weights_dir)
        x = case.array("input")
    cpu = darknet_py.load(cfg, weights)
    dev = darknet_py.load(cfg, weights, device=device)
    moved = darknet_py.load(cfg, weights).to(device)
    for net in (cpu, dev, moved):
        net.forward(x)  # the device copies are now the live ones
    paths = {}
    for tag, net in (("cpu", cpu), ("dev", dev), ("moved", moved)):
        paths[tag] = tmp_path / f"{tag}.weights"
        net.save_weights(paths[tag])
    ref = paths["cpu"].read_bytes()
    assert paths["dev"].read_bytes() == ref
    assert paths["moved"].read_bytes() == ref


# ---------------------------------------------------------------- no allocation in the steady state

def memory_stats(device):
    """{allocations, frees, bytes_in_use[, pinned_allocations]} of the device's memory."""
    if device == "cuda":
        s = _core.cuda_allocation_stats()
        return {"allocations": s["device_allocations"], "frees": s["device_frees"],
                "bytes_in_use": s["device_bytes_in_use"], "pinned_allocations": s["pinned_allocations"]}
    s = _core.emulated_memory_stats()
    return {k: s[k] for k in ("allocations", "frees", "bytes_in_use")}


def test_zero_device_allocations_after_warm_up(device):
    text = small_yolo_cfg(size=64, batch=4, filters=(8, 16, 32))
    train = darknet_py.Network.from_text(text, name="alloc_train.cfg", batch=4, device=device)
    train.randomize(1)
    train.training = True
    infer = darknet_py.Network.from_text(text, name="alloc_infer.cfg", batch=1, device=device)
    infer.randomize(1)
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    truth = np.zeros((4, train._net.truths), np.float32)
    for b in range(4):
        truth[b, :5] = [.2 + .15 * b, .5, .3, .2, b % 5]
    xi = x[:1].copy()

    def steps(n):
        for _ in range(n):
            train.train_step(x, truth)
        for _ in range(n):
            infer.forward(xi)
        if device == "cuda":
            _core.cuda_synchronize()

    steps(2)  # warm-up: parameters uploaded, arena and staging sized
    before = memory_stats(device)
    assert before["allocations"] > 0 and before["bytes_in_use"] > 0, before
    steps(3)
    after = memory_stats(device)
    for key in before:
        assert after[key] == before[key], f"{device} {key}: {before[key]} -> {after[key]} in 3 warmed-up steps + forwards"


def test_emulated_transfers_per_warmed_up_step():
    """On "emulated" the transfers themselves are counted (only there): after warm-up a step
    moves only what its design implies, never parameters or other layers' outputs."""
    device = "emulated"
    text = small_yolo_cfg(size=64, batch=4, filters=(8, 16, 32))
    train = darknet_py.Network.from_text(text, name="xfer_train.cfg", batch=4, device=device)
    train.randomize(1)
    train.training = True
    infer = darknet_py.Network.from_text(text, name="xfer_infer.cfg", batch=1, device=device)
    infer.randomize(1)
    assert infer.keep_outputs  # the default
    x = np.random.default_rng(0).random((4, 3, 64, 64), dtype=np.float32)
    truth = np.zeros((4, train._net.truths), np.float32)
    for b in range(4):
        truth[b, :5] = [.2 + .15 * b, .5, .3, .2, b % 5]
    xi = x[:1].copy()
    for _ in range(2):  # warm-up
        train.train_step(x, truth)
        infer.forward(xi)

    def delta(fn, n=3):
        a = _core.emulated_memory_stats()
        for _ in range(n):
            fn()
        b = _core.emulated_memory_stats()
        return {k: b[k] - a[k] for k in ("uploads", "downloads", "allocations", "frees")}

    # Forward: the input goes up (1 upload, through the backend's staging) and net.forward
    # returns the output layer's output (1 download); no parameter or other output moves.
    assert delta(lambda: infer.forward(xi)) == {"uploads": 3, "downloads": 3, "allocations": 0, "frees": 0}
    # Training step: the input goes up (1 upload; the truth stays on the host: only [softmax] and
    # [cost] read it on the device); the region loss runs on the host, as Darknet's GPU path
    # does: its activated output is read there (1 download) and its delta, written there, goes
    # up for the backward (1 upload); the cost comes back as a float.
    assert delta(lambda: train.train_step(x, truth)) == {"uploads": 6, "downloads": 3, "allocations": 0, "frees": 0}
    # Reading parameters of a network whose device copy was never written (inference): no transfer.
    assert delta(lambda: [l.params for l in infer.layers], 1)["downloads"] == 0
