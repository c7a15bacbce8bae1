#!/usr/bin/env python3
"""darknet_py on CUDA against PyTorch + cuDNN: same card, same process, same cfg, same weights.

    python bench/gpu_speed.py [--nets yolov2-voc yolov2-tiny-voc] [--size 416] [--batch-large 64]
                              [--budget 3] [--runs N] [--warmup 3] [--no-compile] [--compile-train]
                              [--cuda-math tf32|fp32] [--torch-math tf32|fp32] [--json PATH]
    python bench/gpu_speed.py --device cpu       # dry run without a GPU: small sizes, CPU everywhere

Cases, each for every peer (issue 9, item 5):
  forward b1     latency of one image, median ms (lower is better)
  forward b64    throughput at batch 64 (--batch-large), images/s (higher is better)
  train b64      one training step at batch 64: forward, region-loss backward, SGD update, images/s

Peers:
  darknet_py     Network on device "cuda": forward(x) takes the host array and returns the output on the
                 host (upload and download included); train_step(x, truth) with `seen` past the
                 prior-matching phase (as bench/peers.py train and bench/train_speed.py). The exec option
                 `cuda_math` (tf32 | fp32) is set when this build has it (--cuda-math).
  torch          PyTorch eager: inference is bench/peers.py's torch_module (the cfg as torch ops, batch
                 norm folded, torch.no_grad), input already on the device, output copied to the host with
                 `.cpu()` (as darknet_py returns it; --torch-host-input also charges the input upload);
                 training is bench/torch_reference.py's autograd step (float32, batch statistics,
                 Darknet's SGD), the region-loss delta computed once before timing as bench/peers.py
                 train does (so PyTorch is charged nothing for its loss; darknet_py's step includes its
                 region loss) and its batch norm written out as tensor ops (not cuDNN's fused kernel).
  torch_compile  the same module through `torch.compile` (inductor, freezing), inference only unless
                 --compile-train (the training forward through torch.compile, autograd backward).
                 Compile time is reported apart and not timed; a failing compile is reported and skipped.

PyTorch settings: TF32 on for matmul and cuDNN (--torch-math tf32, the default; fp32 turns it off),
cudnn.benchmark on, module and input in channels_last.

Before timing a net, darknet_py's and PyTorch's outputs on the same input are compared (largest
difference relative to the largest magnitude; limit 2e-2 on CUDA because of TF32, 1e-4 on the CPU);
a mismatch is printed and that net is not timed. The training case compares the first step's cost.
Every case runs --warmup untimed passes per peer, then the peers alternate run by run (one process,
one GPU, torch.cuda.synchronize() around every timed run) until --budget seconds (per case, all its
peers together) have passed or --runs rounds (at least 3), and reports medians. The ratio is
darknet_py / PyTorch of the case's metric: latency for b1 (< 1: darknet_py is faster), images/s for
the others (> 1: darknet_py is faster); the issue's targets are printed next to them. A failure of
one peer or case is printed and the rest still runs; the exit status is 1 if anything failed (a
mismatch included), 2 if CUDA is not available.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
if any((REPO / "darknet_py").glob("_core*")):
    # the checkout's in-place build; otherwise the installed package (main() imports darknet_py before
    # bench/peers.py, whose import puts the checkout on the path)
    sys.path.insert(0, str(REPO))

NETS = ["yolov2-voc", "yolov2-tiny-voc"]
CASES = ("b1", "batch", "train")
OUTPUT_TOLERANCE = {"cuda": 2e-2, "cpu": 1e-4}    # relative to the output's largest magnitude
COST_TOLERANCE = {"cuda": 2e-2, "cpu": 1e-3}      # relative: the first training step's cost
# The targets, darknet_py / PyTorch eager of the case's metric.
TARGETS = {"b1": ("<=", 0.8, "batch-1 latency <= 0.8x PyTorch eager"),
           "batch": (">=", 0.7, "batch-{n} forward throughput >= 0.7x PyTorch (cuDNN TF32)"),
           "train": (">=", 0.5, "batch-{n} training-step throughput >= 0.5x PyTorch")}
DRY_RUN = {"size": 96, "batch_large": 4}           # --device cpu defaults
EXIT_FAILED, EXIT_NO_CUDA = 1, 2
MIN_RUNS = 3


def _default_reference():
    """bench/_common.py reads DARKNET_PY_REFERENCE (default ../shared/reference); a checkout with
    its own shared/reference (as on the GPU machine) is used when the variable is not set."""
    if "DARKNET_PY_REFERENCE" not in os.environ:
        for r in (REPO / "shared" / "reference", REPO.parent / "shared" / "reference"):
            if r.is_dir():
                os.environ["DARKNET_PY_REFERENCE"] = str(r)
                return


_default_reference()


class Terminated(BaseException):
    """SIGTERM (a `timeout` around the run): stop timing, still print the table and write the JSON."""


def _terminate(signum, frame):
    raise Terminated(f"signal {signum}")


class Failures:
    """Everything that went wrong, printed where it happened and listed at the end."""

    def __init__(self):
        self.items = []

    def add(self, what: str, exc: BaseException | None = None):
        if exc is None:
            line = what
        else:
            line = f"{what}: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        self.items.append(line)
        print(f"  FAILED {line}", flush=True)
        if exc is not None:
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            summary = "".join(tb[-4:]).rstrip()
            print("    " + summary.replace("\n", "\n    "), flush=True)


# ------------------------------------------------------------------------------ environment

def cuda_unavailable(darknet_py):
    """Why --device cuda cannot run here ("" when it can)."""
    reasons = []
    if not darknet_py.cuda_available():
        reasons.append(f"darknet_py: {darknet_py.cuda_unavailable_reason() or 'no usable CUDA device'}")
    try:
        import torch
    except ImportError:
        return "; ".join(reasons + ["PyTorch is not installed"])
    if not torch.cuda.is_available():
        reasons.append(f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                       f"built for CUDA {torch.version.cuda})")
    return "; ".join(reasons)


def git_commit():
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        changed = len([line for line in dirty.stdout.splitlines() if line.strip()])
        return head.stdout.strip() + (f" (+{changed} changed files)" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return None


def torch_setup(args):
    """PyTorch's settings; returns them as printed and recorded."""
    import torch
    tf32 = args.torch_math == "tf32"
    settings = {}
    for name, target in (("matmul.allow_tf32", torch.backends.cuda.matmul), ("cudnn.allow_tf32", torch.backends.cudnn)):
        try:
            target.allow_tf32 = tf32
            settings[name] = bool(target.allow_tf32)
        except Exception as e:  # a torch without the legacy switch: say so, go on
            settings[name] = f"not set ({type(e).__name__}: {e})"
    torch.backends.cudnn.benchmark = True
    settings["cudnn.benchmark"] = bool(torch.backends.cudnn.benchmark)
    settings["memory_format"] = "channels_last"
    settings["inference batch norm"] = "folded into the convolutions"
    return settings


def environment(args, darknet_py):
    import torch
    env = {"device": args.device, "darknet_py_path": str(Path(darknet_py.__file__).parent),
           "python": platform.python_version(), "torch": torch.__version__,
           "torch_cuda": torch.version.cuda, "cudnn": None, "gpu": None,
           "darknet_py": getattr(darknet_py, "__version__", None), "git_commit": git_commit(),
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    try:
        env["cudnn"] = torch.backends.cudnn.version()
    except Exception:
        pass
    if args.device == "cuda":
        try:
            env["gpu"] = torch.cuda.get_device_name()
        except Exception as e:
            env["gpu"] = f"CUDA device (get_device_name failed: {type(e).__name__}: {e})"
        try:
            p = torch.cuda.get_device_properties(torch.cuda.current_device())
            env["gpu_memory_gib"] = round(p.total_memory / 2 ** 30, 1)
            env["gpu_capability"] = f"{p.major}.{p.minor}"
        except Exception:
            pass
        try:
            from darknet_py import _core
            env["darknet_py_gpu"] = dict(_core.cuda_device_info(0))
        except Exception:
            pass
    return env


# ------------------------------------------------------------------------------ the nets

def resolve_net(name: str, seed: int, tmp: str):
    """(cfg, weights, where the weights come from): the cfg as bench/peers.py finds it (a path, or by
    name in the reference tree) and the reference make_weights.py's random weights; without the
    reference data, the project's cfg/ and darknet_py's own random initialisation."""
    import _common
    import darknet_py
    if Path(name).exists() or (_common.REFERENCE / "cfg" / f"{name}.cfg").exists():
        cfg = Path(_common.cfg_path(name))
        if (_common.REFERENCE / "make_weights.py").exists():
            try:
                return cfg, Path(_common.random_weights(cfg, seed)), f"make_weights.py --seed {seed}"
            except Exception as e:
                print(f"  make_weights.py failed ({type(e).__name__}: {e}); darknet_py's random initialisation",
                      flush=True)
    elif (REPO / "cfg" / f"{name}.cfg").exists():
        cfg = REPO / "cfg" / f"{name}.cfg"
        print(f"  no reference data under {_common.REFERENCE}: {cfg.relative_to(REPO)} with darknet_py's random "
              "initialisation", flush=True)
    else:
        raise FileNotFoundError(f"cfg not found: {name} (looked in {_common.REFERENCE / 'cfg'} and {REPO / 'cfg'})")
    net = darknet_py.load(str(cfg), batch=1)
    net.randomize(seed)
    out = Path(tmp) / f"{cfg.stem}_init{seed}.weights"
    net.save_weights(str(out))
    return cfg, out, f"darknet_py randomize({seed})"


def exec_options(net) -> dict:
    opts = net.exec_options
    return dict(opts() if callable(opts) else opts)


def darknet_net(cfg, weights, batch, size, args, failures, label, inference=True):
    """A darknet_py Network on args.device with args.cuda_math where the build has the option;
    returns (net, the math it uses as text)."""
    import darknet_py
    net = darknet_py.load(str(cfg), str(weights), batch=batch, device=args.device)
    if (net.width, net.height) != (size, size):
        net.resize(size, size)
    if inference:
        try:
            net.keep_outputs = False      # the pooled activations, as bench/peers.py infer
        except Exception as e:
            print(f"  note: keep_outputs=False not applied ({type(e).__name__}: {e})", flush=True)
    opts = exec_options(net)
    if "cuda_math" not in opts:
        math = "default (this darknet_py has no cuda_math exec option)"
    elif args.device != "cuda":
        math = f"n/a on the CPU (cuda_math={opts['cuda_math']})"
    else:
        try:
            net.set_exec_options(cuda_math=args.cuda_math)
        except Exception as e:
            failures.add(f"{label}: darknet_py set_exec_options(cuda_math={args.cuda_math!r})", e)
        math = str(exec_options(net).get("cuda_math"))
    return net, math


def torch_device(device: str) -> str:
    """Where the PyTorch peers run (the same device as darknet_py)."""
    return device


def torch_device_tensor(x, device):
    import torch
    return torch.from_numpy(x).to(torch_device(device)).contiguous(memory_format=torch.channels_last)


def install_device_reorg(ref):
    """torch_reference.darknet_reorg builds its gather index on the host at every call (a host-to-device
    copy and a stall inside every CUDA forward): wrapped here with the index cached on the input's
    device (same permutation, reorg_source_index). bench/peers.py's torch_module keeps its index in
    a buffer already."""
    import torch
    if getattr(ref.darknet_reorg, "_cached_on_device", False):
        return
    cache = {}

    def darknet_reorg(x, stride: int):
        batch, c, h, w = x.shape
        key = (c, h, w, stride, x.device)
        if key not in cache:
            cache[key] = torch.as_tensor(ref.reorg_source_index(c, h, w, stride), device=x.device)
        return x.reshape(batch, -1)[:, cache[key]].reshape(batch, c * stride * stride, h // stride, w // stride)

    darknet_reorg._cached_on_device = True
    ref.darknet_reorg = darknet_reorg


def torch_train_model(cfg, cpu_net, device):
    """bench/torch_reference.py's TorchYolo (float32) and TorchTrainer with every tensor moved to
    `device`, convolution weights in channels_last."""
    import torch
    import torch_reference as ref
    install_device_reorg(ref)
    model = ref.TorchYolo(str(cfg), cpu_net, dtype=torch.float32)
    for p in model.params:
        for name, value in list(p.items()):
            t = value.detach().to(torch_device(device))
            if t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            p[name] = t.requires_grad_(value.requires_grad)
    model.momentum_buffers = [{k: torch.zeros_like(v) for k, v in p.items() if v.requires_grad}
                              for p in model.params]
    return model


# ------------------------------------------------------------------------------ timing

class Runner:
    def __init__(self, name, fn):
        self.name, self.fn, self.times = name, fn, []


def synchronizer(device):
    """Waits for all queued GPU work: torch's and darknet_py's (its own stream; both runtimes use the
    device's primary context, so either call alone should do; both are cheap)."""
    if device != "cuda":
        return lambda: None
    import torch
    from darknet_py import _core
    darknet_sync = getattr(_core, "cuda_synchronize", lambda: None)

    def sync():
        darknet_sync()
        torch.cuda.synchronize()
    return sync


def time_case(label, runners, args, sync, failures):
    """Warm-up, then the peers alternate run by run (the starting peer rotates) until --budget seconds
    (the case's peers together) or --runs rounds; at least MIN_RUNS rounds. A peer that raises is
    dropped from the case."""
    def once(fn):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    alive = []
    for r in runners:
        try:
            for _ in range(args.warmup):
                once(r.fn)
            alive.append(r)
        except Exception as e:
            failures.add(f"{label}: {r.name} warm-up", e)
    if not any(a.name == "darknet_py" for a in alive) or len(alive) < 2:
        print(f"  {label}: nothing to compare after the warm-up, not timed", flush=True)
        return []
    max_rounds = max(MIN_RUNS, args.runs) if args.runs else None
    deadline = time.perf_counter() + args.budget
    rounds = 0
    while alive and (rounds < MIN_RUNS or (time.perf_counter() < deadline
                                           and (max_rounds is None or rounds < max_rounds))):
        k = rounds % len(alive)
        for r in alive[k:] + alive[:k]:
            try:
                r.times.append(once(r.fn))
            except Exception as e:
                failures.add(f"{label}: {r.name} timed run", e)
                alive = [a for a in alive if a is not r]
        if not any(a.name == "darknet_py" for a in alive):
            break
        rounds += 1
    return [r for r in alive if len(r.times) >= MIN_RUNS]


def relative_error(reference, other):
    import numpy as np
    a = np.asarray(reference, np.float64).reshape(-1)
    b = np.asarray(other, np.float64).reshape(-1)
    if a.shape != b.shape:
        return float("inf"), f"shapes differ: {a.size} vs {b.size} values"
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("inf"), "non-finite values"
    scale = max(float(np.abs(a).max()), 1e-30)
    return float(np.abs(a - b).max()) / scale, ""


def check(label, what, reference, other, limit, failures, checks):
    err, why = relative_error(reference, other)
    checks.append({"case": label, "peer": what, "relative_error": err if err != float("inf") else None,
                   "limit": limit, "ok": err <= limit})
    if err <= limit:
        print(f"  check {label}: {what} output matches darknet_py within {err:.1e} relative (limit {limit:g})",
              flush=True)
        return True
    failures.add(f"{label}: MISMATCH: {what} differs from darknet_py by {err:.2e} relative (limit {limit:g})"
                 + (f" ({why})" if why else "") + "; not timing different computations")
    return False


def tf32_diagnosis(module, x, darknet_out, torch_out, notes, name):
    """After a mismatch on CUDA: PyTorch once more with TF32 off, to tell arithmetic noise from a
    different computation."""
    import torch
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            fp32 = module(torch_device_tensor(x, "cuda")).cpu().numpy()
        dn_err, _ = relative_error(darknet_out, fp32)
        torch_err, _ = relative_error(fp32, torch_out)
        line = (f"darknet_py vs PyTorch fp32 {dn_err:.2e}, PyTorch ({'TF32' if saved[1] else 'fp32'}) vs "
                f"PyTorch fp32 {torch_err:.2e} (relative)")
        notes.setdefault("mismatch diagnosis", {})[name] = line
        print(f"  diagnosis {name}: {line}", flush=True)
    except Exception as e:
        print(f"  diagnosis {name} failed: {type(e).__name__}: {e}", flush=True)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


# ------------------------------------------------------------------------------ one net

def run_net(name, args, tmp, failures, results, checks, notes):
    import numpy as np
    import torch
    import darknet_py
    from peers import read_model, torch_module
    import torch_reference as ref
    from train_speed import random_truth

    device, size, big = args.device, args.size, args.batch_large
    sync = synchronizer(device)
    tol = args.tolerance or OUTPUT_TOLERANCE[device]
    t_net = time.perf_counter()
    print(f"\n{name} {size}x{size}", flush=True)
    try:
        cfg, weights, origin = resolve_net(name, args.seed, tmp)
        cpu_net, layers = read_model(str(cfg), str(weights), size)   # parameters, BN folded (peers.py)
    except (Exception, SystemExit) as e:
        failures.add(f"{name}: cfg / weights / model", e)
        return
    print(f"  cfg {cfg}, weights {origin}", flush=True)
    rng = np.random.default_rng(args.seed)
    x1 = rng.random((1, 3, size, size), dtype=np.float32)
    xb = rng.random((big, 3, size, size), dtype=np.float32)
    per_net = results.setdefault(name, {})

    def free():
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    # ---- the inference peers and the net's output check (batch 1, eager) ----
    module, compiled, compile_failed = None, None, args.no_compile
    try:
        module = torch_module(layers, size).to(torch_device(device), memory_format=torch.channels_last)
    except Exception as e:
        failures.add(f"{name}: torch module", e)
    dn1 = None
    try:
        dn1, math = darknet_net(cfg, weights, 1, size, args, failures, f"{name} b1")
        notes.setdefault("darknet_py cuda_math", {})[name] = math
        print(f"  darknet_py cuda math: {math}", flush=True)
        ref_out = np.array(dn1.forward(x1), np.float32)
    except Exception as e:
        failures.add(f"{name}: darknet_py batch 1", e)
        return
    if module is None:
        failures.add(f"{name}: no PyTorch module: output check impossible, net not timed")
        return
    try:
        with torch.no_grad():
            eager_out = module(torch_device_tensor(x1, device)).cpu().numpy()
    except Exception as e:
        failures.add(f"{name}: torch eager forward", e)
        return
    if not check(f"{name} b1", "torch", ref_out, eager_out, tol, failures, checks):
        if device == "cuda":
            tf32_diagnosis(module, x1, ref_out, eager_out, notes, name)
        print(f"  {name}: MISMATCH, skipping this net (--tolerance sets the limit)", flush=True)
        return

    def torch_forward(mod, x_host, x_dev):
        if args.torch_host_input:
            def run():
                with torch.no_grad():
                    return mod(torch_device_tensor(x_host, device)).cpu()
        else:
            def run():
                with torch.no_grad():
                    return mod(x_dev).cpu()
        return run

    def compiled_module():
        nonlocal compiled, compile_failed
        if compiled is None and not compile_failed:
            try:
                import torch._inductor.config as inductor_config
                inductor_config.freezing = True
                compiled = torch.compile(module, dynamic=False)
            except Exception as e:
                failures.add(f"{name}: torch.compile", e)
                compile_failed = True
        return None if compile_failed else compiled

    for case in [c for c in CASES if c in args.cases]:
        batch = 1 if case == "b1" else big
        label = f"{name} {case_name(case, big)}"
        runners, dn, x_dev, run, out, reference = [], None, None, None, None, None
        try:
            if case in ("b1", "batch"):
                x = x1 if case == "b1" else xb
                x_dev = torch_device_tensor(x, device)
                if case == "b1":
                    dn = dn1
                    reference = ref_out
                else:
                    dn, _ = darknet_net(cfg, weights, batch, size, args, failures, label)
                    reference = np.array(dn.forward(x), np.float32)
                runners.append(Runner("darknet_py", lambda dn=dn, x=x: dn.forward(x)))
                peers = [("torch", module)]
                if compiled_module() is not None:
                    peers.append(("torch_compile", compiled))
                for peer, mod in peers:
                    try:
                        t = time.perf_counter()
                        run = torch_forward(mod, x, x_dev)
                        out = run().numpy()      # first call: compiles (torch_compile), tunes cuDNN
                        sync()
                        if peer == "torch_compile":
                            seconds = time.perf_counter() - t
                            notes.setdefault("compile seconds", {})[label] = round(seconds, 1)
                            print(f"  {peer} {case_name(case, big)}: first call (compile) {seconds:.1f} s",
                                  flush=True)
                        if case == "b1" and peer == "torch":
                            ok = True            # checked above
                        else:
                            ok = check(label, peer, reference, out, tol, failures, checks)
                        if ok:
                            runners.append(Runner(peer, run))
                    except Exception as e:
                        failures.add(f"{label}: {peer}", e)
                        if peer == "torch_compile":
                            compile_failed = True
            else:
                runners = train_runners(name, label, cfg, weights, cpu_net, size, batch, args, rng, failures,
                                        checks, notes, ref, random_truth, sync)
        except Exception as e:
            failures.add(f"{label}: setup", e)
        if not runners or runners[0].name != "darknet_py" or len(runners) < 2:
            if runners:
                print(f"  {label}: nothing to compare with, not timed", flush=True)
            runners = []
        else:
            timed = time_case(label, runners, args, sync, failures)
            row = per_net.setdefault(case, {})
            for r in timed:
                ms = statistics.median(r.times) * 1e3
                row[r.name] = {"ms": ms, "images_per_s": batch * 1e3 / ms, "runs": len(r.times),
                               "min_ms": min(r.times) * 1e3, "times_ms": [round(t * 1e3, 4) for t in r.times]}
                print(f"  {label:<28} {r.name:<14} {ms:10.2f} ms {batch * 1e3 / ms:10.1f} images/s "
                      f"({len(r.times)} runs)", flush=True)
        del runners
        dn = x_dev = run = out = reference = None   # the case's device tensors and networks
        free()
    del dn1, module, compiled
    free()
    print(f"  {name}: {time.perf_counter() - t_net:.0f} s", flush=True)


def train_runners(name, label, cfg, weights, cpu_net, size, batch, args, rng, failures, checks, notes, ref,
                  random_truth, sync):
    """darknet_py's train_step and torch_reference's step (eager; compiled forward with --compile-train)
    on the same batch, their first step's costs compared."""
    import numpy as np
    import torch
    device = args.device
    dn, _ = darknet_net(cfg, weights, batch, size, args, failures, label, inference=False)
    subdivisions = getattr(dn, "subdivisions", 1)
    if subdivisions != 1:
        print(f"  note: [net] subdivisions={subdivisions}: darknet_py updates every {subdivisions} steps",
              flush=True)
    dn.seen = 20000                         # past the prior-matching phase, full region loss
    x = rng.random((batch, 3, size, size), dtype=np.float32)
    region = dn.region
    truth = random_truth(rng, batch, region["truths"], region["classes"])
    dn_cost = float(dn.train_step(x, truth))  # also allocates the training buffers
    runners = [Runner("darknet_py", lambda: dn.train_step(x, truth))]
    xt = torch_device_tensor(x, device)
    limit = args.tolerance or COST_TOLERANCE[device]

    def torch_peer(peer, compile_forward):
        model = torch_train_model(cfg, cpu_net, device)
        trainer = ref.TorchTrainer(model, batch)
        trainer.seen = 20000
        forward = (lambda t: model.forward(t, train=True))
        if compile_forward:
            forward = torch.compile(forward, dynamic=False)
        t0 = time.perf_counter()
        raw = forward(xt)
        reg = model.region()
        delta, cost = ref.region_deltas(raw.detach().cpu().numpy(), truth, reg["opts"], reg["anchors"],
                                        reg["classes"], trainer.seen + batch)
        gradient = torch.empty_like(raw)
        gradient.copy_(torch.from_numpy(-delta.astype(np.float32)))
        raw.backward(gradient)
        trainer.seen += batch
        trainer.update()
        sync()
        if compile_forward:
            seconds = time.perf_counter() - t0
            notes.setdefault("compile seconds", {})[label] = round(seconds, 1)
            print(f"  {peer} {label.split(' ', 1)[1]}: first step (compile) {seconds:.1f} s", flush=True)
        err = abs(cost - dn_cost) / max(abs(dn_cost), 1e-30)
        checks.append({"case": label, "peer": peer, "cost_darknet_py": dn_cost, "cost_peer": cost,
                       "relative_error": err, "limit": limit, "ok": err <= limit})
        if not err <= limit:
            failures.add(f"{label}: MISMATCH: {peer} first-step cost {cost:.6g} vs darknet_py {dn_cost:.6g} "
                         f"({err:.2e} relative, limit {limit:g}); not timing different computations")
            return None

        print(f"  check {label}: {peer} first-step cost matches darknet_py within {err:.1e} relative "
              f"({dn_cost:.6g}, limit {limit:g})", flush=True)

        def run():
            for _, p, _ in model.trainables():
                for v in p.values():
                    v.grad = None
            trainer.seen += batch
            forward(torch_device_tensor(x, device) if args.torch_host_input else xt).backward(gradient)
            trainer.update()
        return run

    for peer, compile_forward in (("torch", False), ("torch_compile", True)):
        if compile_forward and (args.no_compile or not args.compile_train):
            continue
        try:
            run = torch_peer(peer, compile_forward)
            if run is not None:
                runners.append(Runner(peer, run))
        except Exception as e:
            failures.add(f"{label}: {peer}", e)
    return runners


def case_name(case, big):
    return {"b1": "forward b1", "batch": f"forward b{big}", "train": f"train b{big}"}[case]


# ------------------------------------------------------------------------------ report

def ratios(results, big):
    """[(net, case, {peer: ratio}, darknet value, {peer: value})]: latency ratios for b1, throughput
    ratios for the rest, always darknet_py / peer."""
    rows = []
    for net, cases in results.items():
        for case in CASES:
            row = cases.get(case, {})
            if "darknet_py" not in row:
                continue
            key = "ms" if case == "b1" else "images_per_s"
            values = {peer: v[key] for peer, v in row.items()}
            rows.append((net, case, {p: values["darknet_py"] / v for p, v in values.items() if p != "darknet_py"},
                         values))
    return rows


def target_verdict(case, peer_ratios, device, big):
    op, limit, text = TARGETS[case]
    text = text.format(n=big)
    r = peer_ratios.get("torch")
    if r is None:
        return text, None, "no PyTorch eager number"
    met = r <= limit if op == "<=" else r >= limit
    if device != "cuda":
        return text, met, f"dry run on the CPU ({'met' if met else 'not met'}; not the target's measurement)"
    return text, met, "met" if met else "NOT met"


def report(results, args, env, notes):
    big = args.batch_large
    rows = ratios(results, big)
    peers = ["torch", "torch_compile"]
    print("\n## darknet_py / PyTorch, " + (env.get("gpu") or f"CPU dry run ({env['cpu_count']} cores)")
          + f", {args.size}x{args.size}")
    print(f"torch {env['torch']} (CUDA {env['torch_cuda']}, cuDNN {env['cudnn']}), darknet_py {env['darknet_py']} "
          f"at {env['git_commit']}")
    print("PyTorch forward timed with `.cpu()` of its output" + (" and the upload of its input" if
          args.torch_host_input else " (input already on the device)")
          + "; darknet_py forward includes its upload and download. Ratio: b1 latency ms (lower is better for "
          "darknet_py), the others images/s (higher is better).\n")
    print("| net | case | metric | darknet_py | torch | ratio vs torch | torch_compile | ratio vs compile "
          "| target | verdict |")
    print("|---" * 10 + "|")
    verdicts = []
    for net, case, peer_ratios, values in rows:
        metric = "ms" if case == "b1" else "images/s"
        cells = []
        for p in peers:
            if p in values:
                cells += [f"{values[p]:.2f}" if case == "b1" else f"{values[p]:.1f}", f"**{peer_ratios[p]:.2f}**"]
            else:
                cells += ["-", "-"]
        text, met, verdict = target_verdict(case, peer_ratios, args.device, big)
        verdicts.append({"net": net, "case": case, "target": text, "ratio": peer_ratios.get("torch"), "met": met,
                         "verdict": verdict})
        dn = f"{values['darknet_py']:.2f}" if case == "b1" else f"{values['darknet_py']:.1f}"
        print(f"| {net} | {case_name(case, big)} | {metric} | {dn} | {' | '.join(cells)} | "
              f"{TARGETS[case][0]} {TARGETS[case][1]} | {verdict} |")
    if not rows:
        print("| (no results: see the failures below) |" + " |" * 9)
    print("\nTargets (issue 9), darknet_py / PyTorch eager:")
    if not verdicts:
        print("  none measured")
    for v in verdicts:
        r = "-" if v["ratio"] is None else f"{v['ratio']:.2f}"
        print(f"  {v['net']:<18} {v['target']:<55} ratio {r:>5}: {v['verdict']}")
    if any(case == "train" for _, case, _, _ in rows):
        print("PyTorch training step: bench/torch_reference.py (autograd, Darknet's SGD), its region-loss delta "
              "computed once before timing (darknet_py's step includes its loss), batch norm as separate tensor "
              "ops (not cuDNN's fused batch norm)" + ("; torch_compile: its forward compiled" if args.compile_train
                                                     and not args.no_compile else ""))
    if notes.get("compile seconds"):
        print("torch.compile first-call seconds: "
              + ", ".join(f"{k} {v}" for k, v in notes["compile seconds"].items()))
    return verdicts


# ------------------------------------------------------------------------------ main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cuda (default); cpu: a dry run of the whole script without a GPU (small sizes)")
    ap.add_argument("--nets", nargs="+", default=None, help=f"cfg names or paths (default: {' '.join(NETS)})")
    ap.add_argument("--size", type=int, default=None,
                    help=f"input size, a multiple of 32 (default 416; {DRY_RUN['size']} with --device cpu)")
    ap.add_argument("--batch-large", type=int, default=None,
                    help=f"batch of the throughput and training cases (default 64; {DRY_RUN['batch_large']} "
                         "with --device cpu)")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of b1,batch,train")
    ap.add_argument("--budget", type=float, default=3.0,
                    help="seconds of timed runs per case (its peers together; default 3)")
    ap.add_argument("--runs", type=int, default=None, help=f"most timed rounds per case (at least {MIN_RUNS})")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per peer and case")
    ap.add_argument("--no-compile", action="store_true", help="no torch.compile peer")
    ap.add_argument("--compile-train", action="store_true",
                    help="also time the training step with the forward through torch.compile")
    ap.add_argument("--cuda-math", choices=["tf32", "fp32"], default="tf32",
                    help="darknet_py's cuda_math exec option, where the build has it (default tf32)")
    ap.add_argument("--torch-math", choices=["tf32", "fp32"], default="tf32",
                    help="PyTorch: TF32 on (default) or off for matmul and cuDNN")
    ap.add_argument("--torch-host-input", action="store_true",
                    help="PyTorch forward also uploads its input from the host every run (as darknet_py does)")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="largest relative difference of the outputs (and first training cost) accepted "
                         f"before timing (default {OUTPUT_TOLERANCE['cuda']:g} on CUDA, "
                         f"{OUTPUT_TOLERANCE['cpu']:g} on the CPU)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="write every number here")
    args = ap.parse_args(argv)
    dry = args.device == "cpu"
    args.size = args.size or (DRY_RUN["size"] if dry else 416)
    args.batch_large = args.batch_large or (DRY_RUN["batch_large"] if dry else 64)
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    nets = args.nets or NETS
    if args.size % 32 or args.size <= 0:
        ap.error("--size must be a positive multiple of 32")
    if args.batch_large < 1 or args.budget < 0 or args.warmup < 0:
        ap.error("--batch-large >= 1, --budget >= 0, --warmup >= 0")
    if not set(args.cases) <= set(CASES) or not args.cases:
        ap.error(f"--cases: a comma-separated subset of {','.join(CASES)}")

    import darknet_py
    if args.device == "cuda":
        why = cuda_unavailable(darknet_py)
        if why:
            print(f"gpu_speed: CUDA not available: {why} (darknet_py from {Path(darknet_py.__file__).parent}). "
                  "Run on a GPU machine (darknet_py built with "
                  "DARKNET_PY_CUDA=1, PyTorch with CUDA), or use --device cpu for a dry run.", file=sys.stderr)
            return EXIT_NO_CUDA
    else:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("gpu_speed: PyTorch is not installed (pip install torch)", file=sys.stderr)
            return EXIT_NO_CUDA

    started = time.perf_counter()
    failures = Failures()
    settings = torch_setup(args)
    env = environment(args, darknet_py)
    results, checks, notes = {}, [], {}
    print(f"gpu_speed: {env['gpu'] or 'CPU dry run'}; torch {env['torch']} (CUDA {env['torch_cuda']}, "
          f"cuDNN {env['cudnn']}); darknet_py {env['darknet_py']} ({env['darknet_py_path']}) at {env['git_commit']}")
    print(f"  PyTorch: math {args.torch_math}, " + ", ".join(f"{k} {v}" for k, v in settings.items())
          + ("" if not args.no_compile else "; torch.compile off"))
    print(f"  darknet_py: device {args.device}, cuda_math requested {args.cuda_math} (used where the build has "
          f"the option); cases {', '.join(case_name(c, args.batch_large) for c in args.cases)}; "
          f"warm-up {args.warmup}, budget {args.budget:g} s per case, runs {args.runs or 'unlimited'} "
          f"(at least {MIN_RUNS}); PyTorch forward timed with .cpu() of its output"
          + (" and the upload of its input" if args.torch_host_input else ""), flush=True)
    verdicts = []
    signal.signal(signal.SIGTERM, _terminate)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in nets:
                try:
                    run_net(name, args, tmp, failures, results, checks, notes)
                except Exception as e:     # anything not caught per case: the next net still runs
                    failures.add(f"{name}", e)
    except (Terminated, KeyboardInterrupt) as e:
        failures.add(f"stopped early ({type(e).__name__} {e}): the results so far follow")
    try:
        verdicts = report(results, args, env, notes)
    finally:
        total = time.perf_counter() - started
        print(f"\ntotal {total:.0f} s", flush=True)
        if args.json:
            data = {"environment": env, "torch_settings": settings, "notes": notes,
                    "args": {k: v for k, v in vars(args).items()}, "nets": nets, "results": results,
                    "checks": checks, "targets": verdicts, "failures": failures.items, "seconds": round(total, 1)}
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(data, indent=1, default=str))
            print(f"wrote {args.json}")
    if failures.items:
        print(f"\n{len(failures.items)} failure(s):")
        for line in failures.items:
            print(f"  {line}")
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
