"""Per-layer profiler: where every millisecond of a forward (and backward) pass goes.

    net = darknet_py.load("yolov2-voc.cfg", "yolov2-voc.weights")
    prof = net.profile(runs=20, warmup=2)
    print(prof.table())          # Darknet-style summary + ms, share, GFLOP/s, % of peak
    prof.to_json(), prof.to_csv()

    darknet-py profile CFG [WEIGHTS] [--size 416] [--batch 1] [--threads N]
                       [--runs 20] [--backward] [--device cpu|cuda] [--json | --csv]

The C++ core times each layer inside Network::forward (a null pointer check per
layer when profiling is off). Times are medians over `runs` passes; `total_ms`
is the median of the whole passes measured around the same calls, so the
per-layer sum and the total can be compared directly. The machine's peak is
measured once with an FMA microbenchmark (see bench/peak_fma.py) and cached in
~/.cache/darknet_py/peak.json.

On a CUDA network (device="cuda", --device cuda) a layer's time comes from CUDA
events recorded on the network's stream between the layers (no synchronisation per
layer; the pass runs as an untimed one would, and the time between two events is the
layer's kernels plus any gap while the host was still queueing them). The peak is the
device's, measured at each profile (a few milliseconds, `_core.cuda_peak_gflops`):
TF32 tensor-core products (mma.sync) when the network's cuda_math is "tf32" (the
default), FP32 FMA when it is "fp32" or the reference kernels run. The emulated device
runs CPU kernels on its own memory: no peak there (None, "-").
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np

from . import _core

CACHE_DIR = Path(os.environ.get("DARKNET_PY_CACHE", Path.home() / ".cache" / "darknet_py"))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def peak_gflops(threads: Optional[int] = None, refresh: bool = False) -> float:
    """FMA peak GFLOP/s of this machine on `threads` threads (default: current
    OpenMP threads), measured once per CPU model / kernel family and cached."""
    threads = threads or _core.get_num_threads()
    if os.environ.get("DARKNET_PY_PEAK_GFLOPS"):  # per-core figure, e.g. from a quiet machine
        return float(os.environ["DARKNET_PY_PEAK_GFLOPS"]) * threads
    isa = _core.cpu_kernel_best()
    key = f"{_cpu_model()}|{isa}|{os.cpu_count()}|{threads}"
    path = CACHE_DIR / "peak.json"
    cache = {}
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if not refresh and key in cache:
        return float(cache[key]["gflops"])
    r = _core.peak_gflops(threads=threads, repeats=7, seconds=0.2)
    # The max of the repeats (and of earlier measurements): the machine's
    # capability, least disturbed by other load on a shared machine.
    best = max(r["max_gflops"], float(cache.get(key, {}).get("gflops", 0.0)))
    cache[key] = {"gflops": best, "last_median_gflops": r["gflops"], "isa": r["isa"], "threads": threads}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        tmp.replace(path)
    except OSError:
        pass
    return best


@dataclass
class LayerProfile:
    index: int
    type: str
    description: str
    ms: float            # median forward time
    share: float         # ms / sum of layer ms
    flops: float         # per pass (all images of the batch)
    gflops: float        # achieved
    pct_peak: Optional[float]  # gflops / measured peak * 100 (None on the emulated device)
    backward_ms: Optional[float] = None
    # Roofline (CUDA): forward bytes = 4 * (batch * (inputs + outputs) + parameters), and the
    # roofline bound max(flops / peak, bytes / bandwidth) as a percentage of the measured time.
    bytes: Optional[float] = None
    pct_roofline: Optional[float] = None


@dataclass
class Profile:
    cfg: str
    width: int
    height: int
    batch: int
    threads: int
    runs: int
    kernel: str
    peak_gflops: Optional[float]       # the measured peak of the arithmetic used (None: emulated)
    total_ms: float                    # median of whole forward passes
    layer_sum_ms: float                # sum of per-layer medians
    total_backward_ms: Optional[float] = None
    layers: List[LayerProfile] = field(default_factory=list)
    device: str = "cpu"                # "cpu" or "cuda"
    device_name: str = ""              # the CPU model or the GPU's name
    bandwidth_gbs: Optional[float] = None  # the device memory's measured bandwidth (CUDA)

    @property
    def total_flops(self) -> float:
        return sum(l.flops for l in self.layers)

    def by_type(self) -> dict:
        """{layer type: (ms, flops, GFLOP/s)} summed over layers of that type."""
        out = {}
        for l in self.layers:
            ms, fl = out.get(l.type, (0.0, 0.0))[:2]
            out[l.type] = (ms + l.ms, fl + l.flops)
        return {t: (ms, fl, fl / (ms * 1e-3) / 1e9 if ms > 0 else 0.0) for t, (ms, fl) in out.items()}

    def table(self) -> str:
        bw = self.total_backward_ms is not None
        if self.device == "cpu":
            where = f"cpu ({self.device_name}), {self.threads} thread(s), kernels {self.kernel}"
        else:
            where = (f"cuda ({self.device_name}), kernels {self.kernel}, layers timed with CUDA events"
                     if self.device == "cuda" else f"{self.device} ({self.device_name}), CPU kernels")
        peak = f"peak {self.peak_gflops:.0f} GFLOP/s" if self.peak_gflops else "peak -"
        roof = self.bandwidth_gbs is not None
        if roof:
            peak += f", memory {self.bandwidth_gbs:.0f} GB/s"
        lines = [f"{self.cfg}: {self.width}x{self.height}, batch {self.batch}, {where}, {peak}, "
                 f"median of {self.runs} runs",
                 f"layer     filters    size              input                output           "
                 f"{'ms':>8} {'share':>6} {'GFLOP/s':>8} {'%peak':>6}" + (f" {'%roof':>6}" if roof else "") +
                 (f" {'bwd ms':>8}" if bw else "")]
        for l in self.layers:
            pct = f"{l.pct_peak:5.1f}%" if l.pct_peak is not None else f"{'-':>6}"
            if roof:
                pct += f" {l.pct_roofline:5.1f}%" if l.pct_roofline is not None else f" {'-':>6}"
            lines.append(f"{l.index:5d} {l.description:<66.66s} {l.ms:8.3f} {l.share * 100:5.1f}% "
                         f"{l.gflops:8.1f} {pct}" + (f" {l.backward_ms:8.3f}" if bw else ""))
        g = self.total_flops / (self.total_ms * 1e-3) / 1e9
        lines.append(f"Total BFLOPs {self.total_flops / 1e9:.3f}; forward {self.total_ms:.2f} ms "
                     f"(layers sum {self.layer_sum_ms:.2f} ms), {g:.1f} GFLOP/s" +
                     (f", {g / self.peak_gflops * 100:.1f}% of peak" if self.peak_gflops else "") +
                     (f"; backward {self.total_backward_ms:.2f} ms" if bw else ""))
        for t, (ms, fl, gf) in sorted(self.by_type().items(), key=lambda kv: -kv[1][0]):
            lines.append(f"  {t:14s} {ms:8.2f} ms  {ms / self.layer_sum_ms * 100:5.1f}%  {gf:7.1f} GFLOP/s")
        if roof and self.peak_gflops:
            ridge = self.peak_gflops / self.bandwidth_gbs
            bound = [l for l in self.layers if l.bytes and l.flops / l.bytes < ridge]
            lines.append(f"roofline: ridge at {ridge:.1f} FLOP/byte; {len(bound)} of {len(self.layers)} layers are "
                         f"memory-bound ({sum(l.ms for l in bound):.2f} ms); %roof = the roofline bound "
                         "max(FLOPs / peak, bytes / bandwidth) over the measured time")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["index", "type", "description", "ms", "share", "flops", "gflops", "pct_peak", "backward_ms",
                    "bytes", "pct_roofline"])
        for l in self.layers:
            w.writerow([l.index, l.type, l.description.strip(), f"{l.ms:.4f}", f"{l.share:.4f}", f"{l.flops:.0f}",
                        f"{l.gflops:.2f}", "" if l.pct_peak is None else f"{l.pct_peak:.2f}",
                        "" if l.backward_ms is None else f"{l.backward_ms:.4f}",
                        "" if l.bytes is None else f"{l.bytes:.0f}",
                        "" if l.pct_roofline is None else f"{l.pct_roofline:.2f}"])
        return buf.getvalue()


def cuda_peak_gflops(math: str = "tf32") -> float:
    """The CUDA device's measured peak GFLOP/s: "tf32" tensor-core products or "fp32" FMA
    (measured at each call: a few milliseconds; DARKNET_PY_CUDA_PEAK_GFLOPS overrides)."""
    if os.environ.get("DARKNET_PY_CUDA_PEAK_GFLOPS"):
        return float(os.environ["DARKNET_PY_CUDA_PEAK_GFLOPS"])
    return float(_core.cuda_peak_gflops(math))


def _gpu_name() -> str:
    try:
        return str(_core.cuda_device_info(0)["name"])
    except Exception:  # noqa: BLE001 - only a label
        return "unknown GPU"


def profile_network(net, runs: int = 20, warmup: int = 2, backward: bool = False, x: Optional[np.ndarray] = None,
                    batch: Optional[int] = None, seed: int = 0, truth: Optional[np.ndarray] = None) -> Profile:
    """Times every layer of `net` (a darknet_py.Network) over `runs` passes after `warmup`,
    on the network's device (see the module notes for CUDA). truth (with backward): the
    (batch, truths) boxes the loss layer trains on; default none, so a [region] layer then
    times only its no-object loss."""
    b = batch or net.batch
    if x is None:
        x = np.random.default_rng(seed).random((b, net.channels, net.height, net.width), dtype=np.float32)
    x = np.ascontiguousarray(x, dtype=np.float32)
    raw = net.time_layers(x, runs, warmup, backward, truth=truth)
    opts = net.exec_options
    device = str(opts["device"])
    threads = int(opts["threads"]) or _core.get_num_threads()
    if device == "cpu":
        peak = peak_gflops(threads)
        kernel = str(opts["isa"]) + (" (reference kernels)" if opts["reference_kernels"] else "")
        device_name = _cpu_model()
    elif device == "cuda":
        math = "fp32" if opts["reference_kernels"] else str(opts.get("cuda_math", "tf32"))
        peak = cuda_peak_gflops(math)
        bandwidth = float(os.environ.get("DARKNET_PY_CUDA_BANDWIDTH_GBS") or _core.cuda_bandwidth_gbs())
        kernel = f"cuda {math}" + (" (reference kernels: im2col + SGEMM)" if opts["reference_kernels"]
                                   else " (implicit GEMM)")
        device_name = _gpu_name()
    else:
        # The emulated device runs the CPU kernels (on separately allocated "device" memory).
        peak, kernel = None, device
        device_name = f"CPU kernels, {_cpu_model()}"
    if device != "cuda":
        bandwidth = None
    n_img = x.shape[0]
    meds = [statistics.median(t) * 1e3 for t in raw["layers"]]
    bmeds = [statistics.median(t) * 1e3 for t in raw["backward_layers"]] if backward else None
    s = sum(meds)
    layers = []
    for i, (ms, l) in enumerate(zip(meds, net.layers)):
        fl = l.flops * n_img
        g = fl / (ms * 1e-3) / 1e9 if ms > 0 else 0.0
        nbytes = roof = None
        if bandwidth:
            c, h, w = l.input_shape
            oc, oh, ow = l.output_shape
            nbytes = 4.0 * (n_img * (c * h * w + oc * oh * ow) + l.parameter_count)
            bound_s = max(fl / (peak * 1e9), nbytes / (bandwidth * 1e9))
            roof = bound_s / (ms * 1e-3) * 100 if ms > 0 else None
        layers.append(LayerProfile(i, l.type, l.describe(), ms, ms / s if s else 0.0, fl, g,
                                   g / peak * 100 if peak else None, bmeds[i] if bmeds else None, nbytes, roof))
    return Profile(cfg=os.path.basename(net.cfg_path or "<net>"), width=net.width, height=net.height, batch=n_img,
                   threads=threads, runs=int(runs), kernel=kernel, peak_gflops=peak,
                   total_ms=statistics.median(raw["total"]) * 1e3, layer_sum_ms=s,
                   total_backward_ms=statistics.median(raw["total_backward"]) * 1e3 if backward else None,
                   layers=layers, device=device, device_name=device_name, bandwidth_gbs=bandwidth)


# ---------------------------------------------------------------- CLI
def register_commands(subparsers) -> None:
    p = subparsers.add_parser("profile", help="per-layer timing of a network (forward, optionally backward)",
                              description="Per-layer median times, share, FLOPs, GFLOP/s and %% of the machine's "
                                          "FMA peak (measured once and cached).")
    p.add_argument("cfg")
    p.add_argument("weights", nargs="?", default=None, help="weights file (default: the cfg's random init)")
    p.add_argument("--size", type=int, default=None, help="input width = height (default: the cfg's)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--backward", action="store_true", help="also time the backward pass (training mode)")
    p.add_argument("--reference", action="store_true", help="time the plain reference kernels")
    p.add_argument("--cuda-math", choices=["tf32", "fp32"], default=None,
                   help="CUDA convolutions: tf32 tensor cores (default) or fp32 FMA")
    from .cli import add_device_argument
    add_device_argument(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    p.set_defaults(func=profile_main)


def profile_main(args) -> int:
    from .network import load
    net = load(args.cfg, args.weights, batch=args.batch, device=args.device)
    if args.threads:
        net.set_exec_options(threads=args.threads)
    if args.size and (args.size != net.width or args.size != net.height):
        net.resize(args.size, args.size)
    if args.reference:
        net.set_exec_options(reference_kernels=True)
    if args.cuda_math:
        net.set_exec_options(cuda_math=args.cuda_math)
    prof = profile_network(net, runs=args.runs, warmup=args.warmup, backward=args.backward, batch=args.batch)
    if args.json:
        print(prof.to_json())
    elif args.csv:
        print(prof.to_csv(), end="")
    else:
        print(prof.table())
    return 0


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="darknet-py")
    register_commands(ap.add_subparsers(dest="command", required=True))
    args = ap.parse_args(["profile"] + list(argv if argv is not None else __import__("sys").argv[1:]))
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
