"""Property-based fuzzing of every file format and parser darknet_py reads (hypothesis).

Each target turns a hypothesis-generated input into a file and hands it to the product's
own entry point; the property is: the call returns, or raises darknet_py.DarknetError.
Any other exception fails the property (hypothesis shrinks it and prints the input); a
crash (SIGSEGV, SIGFPE, abort) or a hang kills this process, which is why the test suite
runs each target in a child process (tests/test_fuzz.py) and this campaign runs one child
per target and round.

Targets: cfg (parse + build + a forward when cheap), weights (header and body mutations of
a real file), labels, list, data (.data), names, tree, map, image (mutated PNG/JPEG/BMP/TIFF
bytes).

    python tools/fuzz.py --target cfg --examples 200        # one bounded run (what CI does)
    python tools/fuzz.py --campaign --total 100000          # the long campaign, all targets
    python tools/fuzz.py --campaign --total 100000 --json counts.json

The campaign prints, per target, inputs tried, inputs that loaded, inputs refused with a
DarknetError, crashes and hangs. Buffers are capped at DARKNET_PY_MEMORY_LIMIT=256M in the
children so an input that asks for a huge network is refused, not allocated.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["cfg", "weights", "labels", "list", "data", "names", "tree", "map", "image"]
# A forward runs only on networks this cheap (FLOPs per image): the property is about
# inputs, not about waiting for a legal but enormous network.
FORWARD_FLOPS_LIMIT = 2e7

BASE_CFG = """[net]
batch=2
subdivisions=1
width=32
height=32
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.001
burn_in=10
policy=steps
steps=-1,100
scales=.1,10
max_batches=200
hue=.1
saturation=1.5
exposure=1.5

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[route]
layers=-1,-2

[reorg]
stride=2

[convolutional]
filters=30
size=1
activation=linear

[region]
anchors=1,1, 1.5,1.5, 2,2, 2.5,2.5, 3,3
classes=1
coords=4
num=5
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
thresh=.6
absolute=1
random=0
"""

INTERESTING_NUMBERS = ["0", "-1", "1", "2", "3", "7", "65536", "65537", "1024", "1025", "2147483647", "-2147483648",
                       "4294967296", "1e9", "1000000000", "nan", "-nan", "inf", "-inf", "1e39", "-0", "0.5", ".1",
                       "3.0", "3.5", "0x10", "", " ", "1,2", "1,,2", "-65536", "99999999999999999999", "1e-45",
                       "46341", "46340", "32768"]
SECTION_TYPES = ["net", "network", "convolutional", "conv", "maxpool", "max", "avgpool", "avg", "route", "reorg",
                 "region", "softmax", "soft", "cost", "dropout", "shortcut", "yolo", "bogus", ""]
KEYS = ["batch", "subdivisions", "width", "height", "channels", "filters", "size", "stride", "pad", "padding",
        "groups", "activation", "layers", "classes", "num", "coords", "max", "anchors", "reverse", "probability",
        "temperature", "tree", "map", "learning_rate", "momentum", "decay", "steps", "scales", "policy", "hue",
        "jitter", "thresh", "adam", "classfix", "burn_in", "max_batches", "type", "scale", "batch_normalize"]


def _strategies():
    from hypothesis import strategies as st

    text_bytes = st.binary(max_size=40)
    token = st.one_of(st.sampled_from(INTERESTING_NUMBERS), st.integers(-10**12, 10**12).map(str),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.text(max_size=8), st.sampled_from(["leaky", "linear", "logistic", "relu", "steps", "poly"]))

    @st.composite
    def cfg(draw):
        lines = BASE_CFG.encode().split(b"\n")
        for _ in range(draw(st.integers(1, 6))):
            op = draw(st.integers(0, 7))
            i = draw(st.integers(0, len(lines) - 1)) if lines else 0
            if op == 0 and lines and b"=" in lines[i]:  # new value for an existing key
                key = lines[i].split(b"=", 1)[0]
                lines[i] = key + b"=" + draw(token).encode("utf-8", "surrogatepass")
            elif op == 1:  # a key from anywhere, anywhere
                lines.insert(i, (draw(st.sampled_from(KEYS)) + "=" + draw(token)).encode("utf-8", "surrogatepass"))
            elif op == 2 and lines:
                del lines[i]
            elif op == 3:  # a section header
                lines.insert(i, ("[" + draw(st.sampled_from(SECTION_TYPES)) + "]").encode())
            elif op == 4 and lines:  # duplicate a block
                j = draw(st.integers(i, min(len(lines), i + 12)))
                lines[i:i] = lines[i:j]
            elif op == 5:  # raw bytes (non-UTF-8, NUL, control characters)
                lines.insert(i, draw(text_bytes))
            elif op == 6 and lines:  # truncate
                lines = lines[:i]
            else:  # route/region indices and sizes at their edges
                lines.insert(i, draw(st.sampled_from([b"layers=-100", b"layers=0", b"layers=-1,-1,-1,-1",
                                                      b"stride=65536", b"size=1000000000", b"max=1000000000",
                                                      b"width=1000000000", b"tree=/dev/null", b"map=/dev/zero"])))
        return b"\n".join(lines)

    @st.composite
    def weights(draw):
        data = bytearray(_base_weights())
        for _ in range(draw(st.integers(1, 4))):
            op = draw(st.integers(0, 5))
            if op == 0:  # header fields (major, minor, revision, seen)
                field = draw(st.integers(0, 3))
                if field < 3 and len(data) >= 4 * field + 4:
                    struct.pack_into("<i", data, 4 * field, draw(st.sampled_from(
                        [-1, 0, 1, 2, 3, 999, 1000, 1001, 2**31 - 1, -2**31]) | st.integers(-2**31, 2**31 - 1)))
                elif len(data) >= 20:
                    struct.pack_into("<Q", data, 12, draw(st.sampled_from([0, 2**63 - 1, 2**63, 2**64 - 1])
                                                          | st.integers(0, 2**64 - 1)))
            elif op == 1:  # truncate
                data = data[:draw(st.integers(0, len(data)))]
            elif op == 2:  # append
                data += draw(st.binary(max_size=64))
            elif op == 3 and len(data) > 24:  # a special float somewhere in the body
                at = draw(st.integers(20, len(data) - 4)) // 4 * 4
                struct.pack_into("<f", data, at, draw(st.sampled_from(
                    [float("nan"), float("inf"), -float("inf"), 3.4e38, 1e-45, 0.0])))
            elif op == 4 and data:  # random bytes
                at = draw(st.integers(0, len(data) - 1))
                data[at] = draw(st.integers(0, 255))
            else:
                data = bytearray(draw(st.binary(max_size=32)))
        return bytes(data)

    line_text = st.lists(st.one_of(token, st.sampled_from(["0", "1", "0.5", "0.0", "1e400", "-1", "#", "=", " "])),
                         max_size=8).map(" ".join)
    any_lines = st.lists(st.one_of(line_text.map(lambda s: s.encode("utf-8", "surrogatepass")), text_bytes),
                         max_size=12).map(lambda ls: b"\n".join(ls))

    @st.composite
    def data_file(draw):
        keys = ["classes", "train", "valid", "names", "backup", "eval", "results", "map", "", "classes"]
        ls = []
        for _ in range(draw(st.integers(0, 8))):
            k = draw(st.sampled_from(keys))
            sep = draw(st.sampled_from(["=", " = ", "", "=="]))
            ls.append((k + sep + draw(token)).encode("utf-8", "surrogatepass"))
        if draw(st.booleans()):
            ls.append(draw(text_bytes))
        return b"\n".join(ls)

    @st.composite
    def tree_file(draw):
        ls = []
        for _ in range(draw(st.integers(0, 10))):
            name = draw(st.sampled_from(["n01", "n02", "a", "", "x y", "n01 -1 extra"]))
            parent = draw(st.sampled_from(["-1", "0", "1", "5", "-2", "2147483647", "x", "", "1.5", "nan"]))
            ls.append(f"{name} {parent}".encode())
        if draw(st.booleans()):
            ls.append(draw(text_bytes))
        return b"\n".join(ls)

    @st.composite
    def image(draw):
        from PIL import Image
        import numpy as np
        fmt = draw(st.sampled_from(["PNG", "JPEG", "BMP", "TIFF", "GIF", "PPM"]))
        mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "I", "F", "1", "CMYK", "LA", "I;16"]))
        w, h = draw(st.integers(1, 24)), draw(st.integers(1, 24))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        try:
            img = img.convert(mode)
            buf = io.BytesIO()
            img.save(buf, format=fmt)
            data = bytearray(buf.getvalue())
        except (OSError, ValueError, KeyError):
            data = bytearray(buf.getvalue()) if "buf" in locals() and buf.getvalue() else bytearray(b"\x89PNG\r\n")
        for _ in range(draw(st.integers(0, 3))):
            op = draw(st.integers(0, 2))
            if op == 0 and data:
                data = data[:draw(st.integers(0, len(data)))]
            elif op == 1 and data:
                at = draw(st.integers(0, len(data) - 1))
                data[at] = draw(st.integers(0, 255))
            else:
                at = draw(st.integers(0, len(data)))
                data[at:at] = draw(st.binary(max_size=16))
        return bytes(data)

    return {"cfg": cfg(), "weights": weights(), "labels": any_lines, "list": any_lines, "data": data_file(),
            "names": any_lines, "tree": tree_file(), "map": any_lines, "image": image()}


_BASE_WEIGHTS = None


def _base_net_text():
    return BASE_CFG


def _base_weights() -> bytes:
    global _BASE_WEIGHTS
    if _BASE_WEIGHTS is None:
        import darknet_py
        net = darknet_py.Network.from_text(_base_net_text())
        net.randomize(1)
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "base.weights")
            net.save_weights(p)
            _BASE_WEIGHTS = Path(p).read_bytes()
    return _BASE_WEIGHTS


def _runner(target: str, workdir: str):
    """The target's entry point: bytes -> None, raising DarknetError for a refused input."""
    import warnings
    import numpy as np
    import darknet_py
    from darknet_py import _core
    from darknet_py.data import dataset
    from darknet_py.image import load_image

    warnings.simplefilter("ignore")  # unknown-key warnings are expected for fuzzed cfgs
    path = os.path.join(workdir, "input")
    state = {}

    def put(data: bytes, suffix=""):
        p = path + suffix
        with open(p, "wb") as f:
            f.write(data)
        return p

    def run_cfg(data):
        net = darknet_py.load(put(data, ".cfg"))
        if net._net.total_flops <= FORWARD_FLOPS_LIMIT and net._net.planned_bytes < (64 << 20):
            x = np.full((net.batch, net.channels, net.height, net.width), 0.5, dtype=np.float32)
            y = net.forward(x)
            assert y.shape[0] == net.batch

    def run_weights(data):
        if "net" not in state:
            state["net"] = darknet_py.Network.from_text(_base_net_text())
        net = state["net"]
        net.load_weights(put(data, ".weights"))
        for layer in net.layers:
            for name, v in layer.params.items():
                assert np.all(np.isfinite(v)), f"non-finite {name} loaded"

    def run_tree(data):
        tree = _core.WordTree.read(put(data, ".tree"))
        # Everything a caller reads must convert to Python (names are str).
        assert len(tree.names) == tree.n == len(tree.parent) and repr(tree)
        assert all(-1 <= p < i for i, p in enumerate(tree.parent))

    def run_image(data):
        img = load_image(put(data, ".img"))
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[0] == 3
        assert np.all((img >= 0) & (img <= 1)), "pixel values outside [0, 1]"

    return {
        "cfg": run_cfg,
        "weights": run_weights,
        "labels": lambda d: dataset.read_labels(put(d, ".txt"), classes=int(1 + len(d) % 5)),
        "list": lambda d: dataset.read_list(put(d, ".list")),
        "data": lambda d: dataset.read_data_cfg(put(d, ".data")),
        "names": lambda d: dataset.read_names(put(d, ".names")),
        "tree": run_tree,
        "map": lambda d: _core.read_map(put(d, ".map")),
        "image": run_image,
    }[target]


def run_target(target: str, examples: int, seed: int) -> dict:
    """Runs `examples` hypothesis inputs against one target in this process."""
    from hypothesis import HealthCheck, given, seed as hseed, settings
    from darknet_py import DarknetError

    counts = {"target": target, "inputs": 0, "ok": 0, "refused": 0}
    strategy = _strategies()[target]
    with tempfile.TemporaryDirectory() as workdir:
        run = _runner(target, workdir)

        @hseed(seed)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def prop(data):
            counts["inputs"] += 1
            try:
                run(data)
                counts["ok"] += 1
            except DarknetError:
                counts["refused"] += 1

        prop()
    return counts


def campaign(total: int, json_path=None, rounds_timeout: float = 600) -> int:
    """Rounds of child processes, one per target, until `total` inputs have been tried."""
    per_target = {t: {"inputs": 0, "ok": 0, "refused": 0, "crashes": 0, "hangs": 0, "failures": 0} for t in TARGETS}
    started = time.time()
    round_no = 0
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               DARKNET_PY_MEMORY_LIMIT=os.environ.get("DARKNET_PY_MEMORY_LIMIT", "256M"))
    while sum(v["inputs"] for v in per_target.values()) < total:
        round_no += 1
        for t in TARGETS:
            examples = 400 if t in ("cfg", "image", "weights") else 1000
            cmd = [sys.executable, __file__, "--target", t, "--examples", str(examples), "--seed", str(round_no)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=rounds_timeout, env=env)
            except subprocess.TimeoutExpired:
                per_target[t]["hangs"] += 1
                print(f"[{t}] round {round_no}: HANG (> {rounds_timeout} s)", flush=True)
                continue
            if proc.returncode < 0:
                per_target[t]["crashes"] += 1
                print(f"[{t}] round {round_no}: CRASH signal {-proc.returncode}\n{proc.stderr[-2000:]}", flush=True)
                continue
            if proc.returncode != 0:
                per_target[t]["failures"] += 1
                print(f"[{t}] round {round_no}: PROPERTY FAILED\n{proc.stderr[-4000:]}", flush=True)
                continue
            counts = json.loads(proc.stdout.strip().splitlines()[-1])
            for k in ("inputs", "ok", "refused"):
                per_target[t][k] += counts[k]
        done = sum(v["inputs"] for v in per_target.values())
        print(f"round {round_no}: {done} inputs, {time.time() - started:.0f} s", flush=True)
    summary = {"inputs": sum(v["inputs"] for v in per_target.values()),
               "crashes": sum(v["crashes"] for v in per_target.values()),
               "hangs": sum(v["hangs"] for v in per_target.values()),
               "failures": sum(v["failures"] for v in per_target.values()),
               "seconds": round(time.time() - started), "targets": per_target}
    print(json.dumps(summary, indent=1))
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=1))
    return 0 if not (summary["crashes"] or summary["hangs"] or summary["failures"]) else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=TARGETS)
    ap.add_argument("--examples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--campaign", action="store_true")
    ap.add_argument("--total", type=int, default=100_000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    try:
        import darknet_py  # noqa: F401  (the installed package, or one on PYTHONPATH)
    except ImportError:
        sys.path.insert(0, str(REPO))  # a checkout built in place
    if args.campaign:
        return campaign(args.total, args.json)
    if not args.target:
        ap.error("--target or --campaign")
    counts = run_target(args.target, args.examples, args.seed)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
