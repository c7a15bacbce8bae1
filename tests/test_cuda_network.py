"""Whole networks on the GPU (device="cuda"): inference, training, moving, saving.

Skipped with the reason (darknet_py.cuda_unavailable_reason()) where CUDA is not
available. Everything here runs the network entirely on the device; what is read
back (outputs, parameters, detections, weights files) is pulled from it.

Tolerances:
  FULL_NETS   |gpu - darknet| <= 1e-4 * max(1, |darknet|) for every recorded output
              sample, the full final output and the detections' boxes (relative to
              max(1, |box|)) and probabilities: the bound the CPU meets in
              tests/test_full_nets.py, on the same fixtures.
  ONE_STEP    |gpu - x| <= 1e-5 * max(1, max|x|) + 1e-4 * |x| per array after one training
              step, x = Darknet's recorded weights or the CPU's: the bound of
              tests/test_training_fixture.py (float32 sums in another order).
  THREE_STEPS three SGD steps, each within ONE_STEP, errors adding up: 3 x that bound
              (3e-5 scale, 3e-4 relative) for every parameter, momentum buffer and
              the three losses, GPU vs CPU.
  EXACT       moving a network between devices and saving its weights copies floats:
              the same bits.
"""
import json

import numpy as np
import pytest

import darknet_py
from darknet_py import _core
from conftest import assert_close as _assert_close, assert_detections_match, load_case, make_weights, small_yolo_cfg

pytestmark = pytest.mark.skipif(not darknet_py.cuda_available(),
                                reason=f"CUDA not available: {darknet_py.cuda_unavailable_reason()}")

NETS = ["darknet19_256", "yolov2-tiny-voc_416", "yolov2-voc_416", "yolov2_416", "yolov2-voc_608"]
REGION_NETS = [n for n in NETS if not n.startswith("darknet19")]
FULL_NETS_TOL = 1e-4
ONE_STEP = (1e-5, 1e-4)
THREE_STEPS = (3e-5, 3e-4)


def assert_close(actual, expected, tol, what):
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


# ---------------------------------------------------------------- fixtures/full_nets on the GPU

@pytest.fixture(scope="module", params=NETS)
def gpu_ran(request, weights_dir):
    case, net, _ = full_net(request.param, weights_dir, "cuda")
    out = net.forward(case.array("input"))
    return case, net, out


def test_full_net_final_output(gpu_ran):
    case, net, out = gpu_ran
    last = len(net) - 1
    want = case.array(f"L{last:02d}_output_full").astype(np.float64)
    got = out.astype(np.float64).reshape(want.shape)
    err = np.abs(got - want)
    bad = err > FULL_NETS_TOL * np.maximum(1.0, np.abs(want))
    assert not bad.any(), f"{case.dir.name} on cuda: final output {bad.sum()} values off, max err {err.max():.3g}"


def test_full_net_every_layer(gpu_ran):
    case, net, _ = gpu_ran
    stride = case.manifest["strided_sample_stride"]
    assert net.exec_options["device"] == "cuda"
    for i, layer in enumerate(net.layers):
        got = layer.output.ravel().astype(np.float64)[::stride]
        want = case.array(f"L{i:02d}_output_strided").astype(np.float64)
        assert got.shape == want.shape, f"layer {i}: {got.shape} vs {want.shape}"
        err = np.abs(got - want)
        assert (err <= FULL_NETS_TOL * np.maximum(1.0, np.abs(want))).all(), \
            f"{case.dir.name} on cuda: layer {i} ({layer.type}) max err {err.max():.3g}"


def test_darknet19_top5_on_gpu(weights_dir):
    case, net, _ = full_net("darknet19_256", weights_dir, "cuda")
    out = net.forward(case.array("input")).ravel()
    top = np.argsort(-out, kind="stable")[:5]
    assert [t["index"] for t in case.manifest["top5"]] == top.tolist()
    for t in case.manifest["top5"]:
        assert out[t["index"]] == pytest.approx(t["prob"], rel=FULL_NETS_TOL)


@pytest.mark.parametrize("name", REGION_NETS)
def test_detections_on_gpu_match_darknet(name, weights_dir):
    case, net, _ = full_net(name, weights_dir, "cuda")
    assert_detections_match(net, case, FULL_NETS_TOL)


def test_detect_command_on_gpu(tmp_path, capsys, weights_dir):
    from darknet_py.cli import main
    case = load_case("fixtures", "full_nets", "yolov2-tiny-voc_416")
    gen = case.manifest["weights_generation"]
    weights = make_weights(case.root / gen["cfg"], gen["seed"], weights_dir)
    rc = main(["detect", str(case.root / case.manifest["cfg"]), str(weights), str(case.root / "data" / "dog.jpg"),
               "--names", str(case.root / "data" / "voc.names"), "--out", str(tmp_path), "--device", "cuda"])
    assert rc == 0
    out = capsys.readouterr().out
    ref = json.loads((case.files_dir / "detections.json").read_text())
    for d in ref["detections"]:
        for label in d["labels"]:
            assert f"{label}: " in out
    assert (tmp_path / "dog_predictions.png").exists()


def test_profiler_on_gpu(weights_dir):
    case, net, _ = full_net("yolov2-tiny-voc_416", weights_dir, "cuda")
    prof = net.profile(runs=3, warmup=1)
    assert prof.device == "cuda" and prof.peak_gflops is None
    assert len(prof.layers) == len(net) and all(l.ms > 0 for l in prof.layers)
    assert prof.total_ms > 0 and "cuda (" in prof.table().splitlines()[0]
    assert net.device == "cuda"


# ---------------------------------------------------------------- training on the GPU

TRAINING_CASES = [("layers_fwd_bwd", "seen_small"), ("layers_fwd_bwd", "seen_large"), ("classifier", "softmax_cost")]


def stepped(fixture, case_name, device, steps):
    case = load_case("fixtures", fixture, case_name)
    root = case.root
    net = darknet_py.load(root / case.manifest["cfg"], root / case.manifest["weights_in"], batch=2, device=device)
    net.seen = case.values.get("seen_set", 0)
    net._net.set_training(True)
    x, truth = case.array("input"), case.array("truth")
    costs = [net.train_step(x, truth) for _ in range(steps)]
    state = {}
    for i, layer in enumerate(net.layers):
        state.update({f"L{i}.{k}": v.copy() for k, v in layer.params.items()})
        state.update({f"L{i}.{k}": v.copy() for k, v in layer.buffers.items() if k.endswith("_updates")})
    return case, net, np.array(costs), state


@pytest.mark.parametrize("fixture,case_name", TRAINING_CASES)
def test_one_gpu_step_matches_darknet(fixture, case_name, tmp_path):
    case, net, costs, _ = stepped(fixture, case_name, "cuda", 1)
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
                 f"{fixture}/{case_name}: weights after one GPU step vs Darknet")


@pytest.mark.parametrize("fixture,case_name", TRAINING_CASES)
def test_three_sgd_steps_gpu_equals_cpu(fixture, case_name):
    _, _, cpu_costs, cpu = stepped(fixture, case_name, "cpu", 3)
    _, gpu_net, gpu_costs, gpu = stepped(fixture, case_name, "cuda", 3)
    assert gpu_net.device == "cuda"
    assert_close(gpu_costs, cpu_costs, THREE_STEPS, f"{fixture}/{case_name}: losses of the 3 steps")
    assert sorted(gpu) == sorted(cpu)
    for key in sorted(cpu):
        assert_close(gpu[key], cpu[key], THREE_STEPS, f"{fixture}/{case_name}: {key} after 3 steps")


def test_multiscale_resize_on_gpu_equals_cpu():
    """Training across a resize (multi-scale) and a batch change: the device arena is resized and
    the GPU stays within THREE_STEPS of the CPU."""
    text = small_yolo_cfg(size=64, batch=2, filters=(8, 16))
    truth = np.zeros((2, 150), np.float32)
    truth[0, :5] = [.3, .4, .2, .3, 1]
    truth[1, :10] = [.6, .5, .3, .2, 2, .2, .7, .1, .2, 0]
    results = {}
    for device in ("cpu", "cuda"):
        net = darknet_py.Network.from_text(text, name="ms.cfg", batch=2, device=device)
        net.randomize(4)
        net._net.set_training(True)
        costs = []
        for size in (64, 96, 64):
            if (size, size) != (net.width, net.height):
                net.resize(size, size)
            x = np.random.default_rng([3, size]).random((2, 3, size, size), dtype=np.float32)
            costs.append(net.train_step(x, truth))
        results[device] = (np.array(costs), {f"L{i}.{k}": v.copy() for i, l in enumerate(net.layers)
                                             for k, v in l.params.items()})
    assert_close(results["cuda"][0], results["cpu"][0], THREE_STEPS, "losses across resizes")
    for k in results["cpu"][1]:
        assert_close(results["cuda"][1][k], results["cpu"][1][k], THREE_STEPS, f"{k} after resizes")


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


def test_to_cuda_and_back_keeps_weights():
    case = load_case("fixtures", "layers_fwd_bwd", "seen_small")
    root = case.root
    net = darknet_py.load(root / case.manifest["cfg"], root / case.manifest["weights_in"], batch=2)
    x, truth = case.array("input"), case.array("truth")
    before = snapshot(net)
    cpu_out = net.forward(x).copy()
    assert net.to("cuda") is net and net.device == "cuda" and net.exec_options["device"] == "cuda"
    gpu_out = net.forward(x)
    assert_close(gpu_out, cpu_out, (FULL_NETS_TOL, 0), "forward after to('cuda')")
    assert net.to("cpu") is net and net.device == "cpu"
    assert_same_bits(snapshot(net), before, "cpu -> cuda (inference) -> cpu")
    # training state (momentum) survives the trip too
    net._net.set_training(True)
    net.to("cuda")
    net.train_step(x, truth)
    on_gpu = snapshot(net)
    assert any(not np.array_equal(on_gpu[k], before[k]) for k in before), "the GPU step changed nothing"
    net.to("cpu")
    assert_same_bits(snapshot(net), on_gpu, "state after a GPU step, moved to the CPU")
    net.train_step(x, truth)  # and trains on
    assert net.device == "cpu"


@pytest.mark.parametrize("which", ["layers_fwd_bwd", "yolov2-tiny-voc_416"])
def test_save_weights_from_gpu_equals_cpu_bytes(which, tmp_path, weights_dir):
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
    gpu = darknet_py.load(cfg, weights, device="cuda")
    moved = darknet_py.load(cfg, weights).to("cuda")
    for net in (cpu, gpu, moved):
        net.forward(x)  # the GPU copies are now the live ones
    paths = {}
    for tag, net in (("cpu", cpu), ("gpu", gpu), ("moved", moved)):
        paths[tag] = tmp_path / f"{tag}.weights"
        net.save_weights(paths[tag])
    ref = paths["cpu"].read_bytes()
    assert paths["gpu"].read_bytes() == ref
    assert paths["moved"].read_bytes() == ref


# ---------------------------------------------------------------- no allocation in the steady state

def test_zero_device_allocations_after_warm_up():
    text = small_yolo_cfg(size=64, batch=4, filters=(8, 16, 32))
    train = darknet_py.Network.from_text(text, name="alloc_train.cfg", batch=4, device="cuda")
    train.randomize(1)
    train._net.set_training(True)
    infer = darknet_py.Network.from_text(text, name="alloc_infer.cfg", batch=1, device="cuda")
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
        _core.cuda_synchronize()

    steps(2)  # warm-up: parameters uploaded, arena and staging sized
    before = _core.cuda_allocation_stats()
    assert before["device_allocations"] > 0 and before["device_bytes_in_use"] > 0, before
    steps(3)
    after = _core.cuda_allocation_stats()
    for key in ("device_allocations", "device_frees", "pinned_allocations"):
        assert after[key] == before[key], f"{key}: {before[key]} -> {after[key]} in 3 warmed-up steps + forwards"
    assert after["device_bytes_in_use"] == before["device_bytes_in_use"]
