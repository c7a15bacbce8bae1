#!/usr/bin/env python3
"""darknet_py against the best CPU peers, same cfg, same weights, same input, same run.

    python bench/peers.py infer [--nets yolov2-voc yolov2-tiny-voc] [--size 416]
                                [--threads 2 1] [--runs 15] [--warmup 3]
    python bench/peers.py train [--nets yolov2-tiny-voc:416:8 demo] [--runs 7] [--threads 2]

Peers (the optional `bench` extra installs them: pip install ".[bench]"):
  ort            ONNX Runtime, a graph built here from the cfg with `onnx.helper` (Conv with
                 batch norm folded in, LeakyRelu, MaxPool with Darknet's padding, Concat,
                 Darknet's reorg as a Gather, the region's logistic/softmax), all graph
                 optimisations on.
  torch          PyTorch eager (`torch.no_grad`, batch norm folded), and for `train` the
                 autograd step of bench/torch_reference.py (float32, batch statistics, SGD).
  torch_compile  `torch.compile` (inductor) with freezing, inference only.

Every peer runs in its own process (each with its own OpenMP pool, the thread count set
before its libraries load); the parent asks each in turn for one timed run, so the peers
alternate run by run and see the same machine load; medians are printed with the ratio
darknet_py / peer (< 1: darknet_py is faster). Before timing, each peer's output is
compared with darknet_py's on the same input (inference: the region output; training: the
first step's cost) and the run stops if they differ.

The training peer is timed on forward + backward + SGD with the region-loss delta computed
once before timing (bench/torch_reference.py writes that loss in numpy for clarity, not
speed), so it is charged nothing for its loss; darknet_py's step includes its region loss.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

PEERS_INFER = ("darknet_py", "ort", "torch", "torch_compile")
PEERS_TRAIN = ("darknet_py", "torch")
BN_EPSILON = 1e-5
LEAKY_SLOPE = 0.1
OUTPUT_TOLERANCE = 1e-3      # relative to the output's largest magnitude: float32 summation orders differ
COST_TOLERANCE = 1e-3        # relative: the first step's cost, same weights and batch


# ------------------------------------------------------------------------------ the model, as data

def read_model(cfg: str, weights: str, size: int):
    """The cfg's layers with darknet_py's parameters (numpy), batch norm folded for inference."""
    import numpy as np
    import darknet_py
    from torch_reference import floats, read_cfg

    net = darknet_py.load(cfg, weights, batch=1)
    if (net.width, net.height) != (size, size):
        net.resize(size, size)
    layers = []
    for index, (kind, opts) in enumerate(read_cfg(cfg)[1:]):
        layer = {"kind": kind, "opts": opts}
        if kind == "convolutional":
            p = net.layers[index].params
            size_k = int(opts.get("size", 1))
            filters = int(opts["filters"])
            w = np.array(p["weights"], np.float64).reshape(filters, -1, size_k, size_k)
            b = np.array(p["biases"], np.float64)
            if int(opts.get("batch_normalize", 0)):
                scale = np.array(p["scales"], np.float64) / np.sqrt(np.array(p["rolling_variance"], np.float64)
                                                                    + BN_EPSILON)
                w = w * scale[:, None, None, None]
                b = b - np.array(p["rolling_mean"], np.float64) * scale
            layer.update(weight=w.astype(np.float32), bias=b.astype(np.float32),
                         stride=int(opts.get("stride", 1)),
                         pad=size_k // 2 if int(opts.get("pad", 0)) else int(opts.get("padding", 0)),
                         activation=opts.get("activation", "logistic"))
            if layer["activation"] not in ("leaky", "linear"):
                raise SystemExit(f"peers: activation {layer['activation']} not supported")
        elif kind == "maxpool":
            layer.update(size=int(opts.get("size", 2)), stride=int(opts.get("stride", 2)))
        elif kind == "route":
            layer["sources"] = [int(v) if int(v) >= 0 else index + int(v) for v in opts["layers"].split(",")]
        elif kind == "reorg":
            layer["stride"] = int(opts.get("stride", 2))
        elif kind == "region":
            layer.update(num=int(opts["num"]), classes=int(opts["classes"]), coords=int(opts.get("coords", 4)))
            if int(opts.get("softmax", 0)) != 1 or layer["coords"] != 4 or "tree" in opts:
                raise SystemExit("peers: region needs softmax=1, coords=4, no tree")
            layer["anchors"] = floats(opts["anchors"])
        else:
            raise SystemExit(f"peers: layer [{kind}] not supported")
        layers.append(layer)
    return net, layers


def shapes(layers, size):
    """(c, h, w) after each layer."""
    out, c, h, w = [], 3, size, size
    for layer in layers:
        kind = layer["kind"]
        if kind == "convolutional":
            k = layer["weight"].shape[2]
            h = (h + 2 * layer["pad"] - k) // layer["stride"] + 1
            w = (w + 2 * layer["pad"] - k) // layer["stride"] + 1
            c = layer["weight"].shape[0]
        elif kind == "maxpool":
            h = (h + layer["size"] - 1 - layer["size"]) // layer["stride"] + 1
            w = (w + layer["size"] - 1 - layer["size"]) // layer["stride"] + 1
        elif kind == "route":
            c = sum(out[s][0] for s in layer["sources"])
            h, w = out[layer["sources"][0]][1:]
        elif kind == "reorg":
            c, h, w = c * layer["stride"] ** 2, h // layer["stride"], w // layer["stride"]
        out.append((c, h, w))
    return out


# ------------------------------------------------------------------------------ ONNX Runtime

def onnx_model(layers, size):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from torch_reference import reorg_source_index

    nodes, inits = [], []
    dims = shapes(layers, size)
    names = []
    current = "input"
    for index, layer in enumerate(layers):
        kind, out = layer["kind"], f"l{index}"
        if kind == "convolutional":
            w, b = f"w{index}", f"b{index}"
            inits += [numpy_helper.from_array(layer["weight"], w), numpy_helper.from_array(layer["bias"], b)]
            k = layer["weight"].shape[2]
            conv_out = out if layer["activation"] == "linear" else out + "_z"
            nodes.append(helper.make_node("Conv", [current, w, b], [conv_out], kernel_shape=[k, k],
                                          strides=[layer["stride"]] * 2, pads=[layer["pad"]] * 4))
            if layer["activation"] == "leaky":
                nodes.append(helper.make_node("LeakyRelu", [conv_out], [out], alpha=LEAKY_SLOPE))
        elif kind == "maxpool":
            total = layer["size"] - 1        # Darknet pads size-1 in all, the larger half at the end
            lead = total // 2
            nodes.append(helper.make_node("MaxPool", [current], [out], kernel_shape=[layer["size"]] * 2,
                                          strides=[layer["stride"]] * 2,
                                          pads=[lead, lead, total - lead, total - lead]))
        elif kind == "route":
            srcs = [names[s] for s in layer["sources"]]
            if len(srcs) == 1:
                nodes.append(helper.make_node("Identity", srcs, [out]))
            else:
                nodes.append(helper.make_node("Concat", srcs, [out], axis=1))
        elif kind == "reorg":
            c, h, w = dims[index - 1]
            idx, flat_shape, out_shape = f"idx{index}", f"fs{index}", f"os{index}"
            inits += [numpy_helper.from_array(reorg_source_index(c, h, w, layer["stride"]).astype(np.int64), idx),
                      numpy_helper.from_array(np.array([1, c * h * w], np.int64), flat_shape),
                      numpy_helper.from_array(np.array([1, *dims[index]], np.int64), out_shape)]
            nodes += [helper.make_node("Reshape", [current, flat_shape], [out + "_flat"]),
                      helper.make_node("Gather", [out + "_flat", idx], [out + "_g"], axis=1),
                      helper.make_node("Reshape", [out + "_g", out_shape], [out])]
        elif kind == "region":
            c, h, w = dims[index - 1]
            num, classes = layer["num"], layer["classes"]
            per = [f"rs{index}", f"rb{index}", f"split{index}"]
            inits += [numpy_helper.from_array(np.array([1, num, 5 + classes, h * w], np.int64), per[0]),
                      numpy_helper.from_array(np.array([1, c, h, w], np.int64), per[1]),
                      numpy_helper.from_array(np.array([2, 2, 1, classes], np.int64), per[2])]
            parts = [out + s for s in ("_xy", "_wh", "_obj", "_cls")]
            nodes += [helper.make_node("Reshape", [current, per[0]], [out + "_r"]),
                      helper.make_node("Split", [out + "_r", per[2]], parts, axis=2),
                      helper.make_node("Sigmoid", [parts[0]], [out + "_sxy"]),
                      helper.make_node("Sigmoid", [parts[2]], [out + "_sobj"]),
                      helper.make_node("Softmax", [parts[3]], [out + "_scls"], axis=2),
                      helper.make_node("Concat", [out + "_sxy", parts[1], out + "_sobj", out + "_scls"],
                                       [out + "_cat"], axis=2),
                      helper.make_node("Reshape", [out + "_cat", per[1]], [out])]
        names.append(out)
        current = out
    c, h, w = dims[-1]
    graph = helper.make_graph(nodes, "darknet_cfg",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, c, h, w])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------------------------ PyTorch

def torch_module(layers, size):
    import torch
    import torch.nn.functional as F
    from torch_reference import reorg_source_index

    dims = shapes(layers, size)

    class DarknetCfg(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weights = torch.nn.ParameterList()
            self.biases = torch.nn.ParameterList()
            self.conv_slot = {}
            for index, layer in enumerate(layers):
                if layer["kind"] == "convolutional":
                    self.conv_slot[index] = len(self.weights)
                    self.weights.append(torch.nn.Parameter(torch.from_numpy(layer["weight"]), requires_grad=False))
                    self.biases.append(torch.nn.Parameter(torch.from_numpy(layer["bias"]), requires_grad=False))
                elif layer["kind"] == "reorg":
                    c, h, w = dims[index - 1]
                    self.register_buffer(f"reorg{index}",
                                         torch.from_numpy(reorg_source_index(c, h, w, layer["stride"])))

        def forward(self, x):
            outputs = []
            for index, layer in enumerate(layers):
                kind = layer["kind"]
                if kind == "convolutional":
                    slot = self.conv_slot[index]
                    x = F.conv2d(x, self.weights[slot], self.biases[slot], stride=layer["stride"],
                                 padding=layer["pad"])
                    if layer["activation"] == "leaky":
                        x = F.leaky_relu(x, LEAKY_SLOPE)
                elif kind == "maxpool":
                    total = layer["size"] - 1
                    lead = total // 2
                    x = F.max_pool2d(F.pad(x, (lead, total - lead, lead, total - lead), value=float("-inf")),
                                     layer["size"], layer["stride"])
                elif kind == "route":
                    x = torch.cat([outputs[s] for s in layer["sources"]], dim=1)
                elif kind == "reorg":
                    b = x.shape[0]
                    x = x.reshape(b, -1)[:, getattr(self, f"reorg{index}")].reshape(b, *dims[index])
                elif kind == "region":
                    b, c, h, w = x.shape
                    r = x.reshape(b, layer["num"], 5 + layer["classes"], h * w)
                    r = torch.cat([torch.sigmoid(r[:, :, :2]), r[:, :, 2:4], torch.sigmoid(r[:, :, 4:5]),
                                   torch.softmax(r[:, :, 5:], dim=2)], dim=2)
                    x = r.reshape(b, c, h, w)
                outputs.append(x)
            return x

    return DarknetCfg().eval()


# ------------------------------------------------------------------------------ workers

def _send(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def worker(args):
    """One peer in its own process: build, report the check value, then time one run per
    'run' line on stdin."""
    import numpy as np
    peer, mode = args.peer, args.mode
    rng = np.random.default_rng(0)
    if mode == "infer":
        net, layers = read_model(args.cfg, args.weights, args.size)
        x = rng.random((1, 3, args.size, args.size), dtype=np.float32)
        if peer == "darknet_py":
            net.set_exec_options(threads=args.threads)
            net.keep_outputs = False
            run = lambda: net.forward(x)  # noqa: E731
        elif peer == "ort":
            import onnxruntime as ort
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = ort.InferenceSession(onnx_model(layers, args.size).SerializeToString(), so,
                                           providers=["CPUExecutionProvider"])
            run = lambda: session.run(None, {"input": x})[0]  # noqa: E731
        else:
            import torch
            torch.set_num_threads(args.threads)
            module = torch_module(layers, args.size)
            xt = torch.from_numpy(x)
            if peer == "torch_compile":
                import torch._inductor.config as inductor_config
                inductor_config.freezing = True
                module = torch.compile(module)

            def run():
                with torch.no_grad():
                    return module(xt).numpy()
        out = np.asarray(run(), np.float32).reshape(-1)
        np.save(args.check, out)
        _send({"ready": peer})
    else:
        import darknet_py
        from train_speed import random_truth
        net = darknet_py.load(args.cfg, args.weights, batch=args.batch)
        if (net.width, net.height) != (args.size, args.size):
            net.resize(args.size, args.size)
        net.seen = 20000                         # past the prior-matching phase, full learning rate
        x = rng.random((args.batch, 3, args.size, args.size), dtype=np.float32)
        region = net.region
        truth = random_truth(rng, args.batch, region["truths"], region["classes"])
        if peer == "darknet_py":
            net.set_exec_options(threads=args.threads)
            cost = net.train_step(x, truth)
            run = lambda: net.train_step(x, truth)  # noqa: E731
        else:
            import torch
            import torch_reference as ref
            torch.set_num_threads(args.threads)
            model = ref.TorchYolo(args.cfg, net, dtype=torch.float32)
            trainer = ref.TorchTrainer(model, args.batch)
            trainer.seen = 20000
            xt = torch.from_numpy(x)
            raw = model.forward(xt, train=True)
            reg = model.region()
            delta, cost = ref.region_deltas(raw.detach().numpy(), truth, reg["opts"], reg["anchors"],
                                            reg["classes"], trainer.seen + args.batch)
            raw.backward(-torch.from_numpy(delta.astype(np.float32)))
            trainer.seen += args.batch
            trainer.update()
            gradient = -torch.from_numpy(delta.astype(np.float32))

            def run():
                for _, p, _ in model.trainables():
                    for v in p.values():
                        v.grad = None
                trainer.seen += args.batch
                model.forward(xt, train=True).backward(gradient)
                trainer.update()
        np.save(args.check, np.array([cost], np.float64))
        _send({"ready": peer})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t = time.perf_counter()
        run()
        _send({"seconds": time.perf_counter() - t})


class Peer:
    def __init__(self, peer, mode, cfg, weights, size, threads, batch, check):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   OPENBLAS_NUM_THREADS="1", DARKNET_PY_THREADS=str(threads))
        self.name = peer
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "_worker", "--peer", peer, "--work", mode, "--cfg", cfg, "--weights", weights,
             "--size", str(size), "--threads", str(threads), "--batch", str(batch), "--check", check],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.check = check

    def ready(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"peer {self.name} failed to start (see its stderr above)")
        return json.loads(line)

    def time_one(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["seconds"]

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait(timeout=60)


def compare(mode, peers, label, runs, warmup):
    import numpy as np
    for p in peers:
        p.ready()
    reference = np.load(peers[0].check)
    for p in peers[1:]:
        other = np.load(p.check)
        scale = max(float(np.abs(reference).max()), 1e-30)
        err = float(np.abs(other - reference).max()) / scale
        limit = OUTPUT_TOLERANCE if mode == "infer" else COST_TOLERANCE
        if not err <= limit:
            raise SystemExit(f"{label}: {p.name} differs from darknet_py by {err:.2e} (relative; limit {limit:g}); "
                             "not timing different computations")
        print(f"  {p.name}: output matches darknet_py within {err:.1e} relative")
    for _ in range(warmup):
        for p in peers:
            p.time_one()
            time.sleep(.05)   # let the other process's OpenMP threads stop spinning
    times = {p.name: [] for p in peers}
    for _ in range(runs):
        for p in peers:
            times[p.name].append(p.time_one())
            time.sleep(.05)
    for p in peers:
        p.close()
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["infer", "train", "_worker"])
    ap.add_argument("--nets", nargs="+", default=None,
                    help="infer: cfg names; train: cfg[:size[:batch]] (demo = cfg/demo.cfg at its size, batch 32)")
    ap.add_argument("--size", type=int, default=416)
    ap.add_argument("--threads", nargs="+", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--peers", default=None, help="comma-separated subset of the peers")
    ap.add_argument("--seed", type=int, default=1)
    # worker-only
    ap.add_argument("--peer"), ap.add_argument("--work"), ap.add_argument("--cfg"), ap.add_argument("--weights")
    ap.add_argument("--batch", type=int, default=1), ap.add_argument("--check")
    args = ap.parse_args(argv)
    if args.mode == "_worker":
        args.mode, args.threads = args.work, args.threads[0]
        return worker(args)

    import tempfile
    from _common import cfg_path, random_weights
    import darknet_py
    infer = args.mode == "infer"
    wanted = (args.peers.split(",") if args.peers else list(PEERS_INFER if infer else PEERS_TRAIN))
    if wanted[0] != "darknet_py":
        wanted = ["darknet_py"] + [p for p in wanted if p != "darknet_py"]
    runs = args.runs or (15 if infer else 7)
    warmup = args.warmup if args.warmup is not None else (3 if infer else 2)
    threads_list = args.threads or ([2, 1] if infer else [2])
    nets = args.nets or (["yolov2-voc", "yolov2-tiny-voc"] if infer else ["yolov2-tiny-voc:416:8", "demo"])
    print(f"darknet_py {darknet_py.__version__}, {'inference batch 1' if infer else 'training step'}; "
          f"{runs} alternating runs after {warmup} warm-up; peers {', '.join(wanted[1:])}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in nets:
            name, *rest = spec.split(":")
            if name == "demo":
                cfg = HERE.parent / "cfg" / "demo.cfg"
                size, batch = (int(rest[0]) if rest else 160), (int(rest[1]) if len(rest) > 1 else 32)
            else:
                cfg = cfg_path(name)
                size = int(rest[0]) if rest else args.size
                batch = int(rest[1]) if len(rest) > 1 else (1 if infer else 8)
            weights = random_weights(cfg, args.seed) if name != "demo" else _demo_weights(cfg, tmp, args.seed)
            for threads in threads_list:
                label = f"{name} {size} batch {batch} threads {threads}"
                print(label, flush=True)
                peers = [Peer(p, args.mode, str(cfg), str(weights), size, threads, batch,
                              str(Path(tmp) / f"{p}.npy")) for p in wanted]
                try:
                    ms = compare(args.mode, peers, label, runs, warmup)
                finally:
                    for p in peers:
                        if p.proc.poll() is None:
                            p.proc.kill()
                line = "  " + "   ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
                print(line + "   " + "   ".join(f"ratio vs {k} {ms['darknet_py'] / v:.3f}"
                                                for k, v in ms.items() if k != "darknet_py"), flush=True)
                rows.append((name, size, batch, threads, ms))
    peers_cols = wanted[1:]
    print(f"\n| net | size | batch | threads | darknet_py ms | " + " | ".join(f"{p} ms | ratio" for p in peers_cols) + " |")
    print("|---" * (5 + 2 * len(peers_cols)) + "|")
    for name, size, batch, threads, ms in rows:
        cells = " | ".join(f"{ms[p]:.1f} | **{ms['darknet_py'] / ms[p]:.2f}**" for p in peers_cols)
        print(f"| {name} | {size} | {batch} | {threads} | {ms['darknet_py']:.1f} | {cells} |")


def _demo_weights(cfg: Path, tmp: str, seed: int) -> Path:
    """The demo cfg with darknet_py's default initialisation (it has no reference weights)."""
    import darknet_py
    net = darknet_py.load(str(cfg), batch=1)
    net.randomize(seed)
    out = Path(tmp) / "demo.weights"
    net.save_weights(str(out))
    return out


if __name__ == "__main__":
    main()
