"""The `darknet-py` command: detect, info, train, demo, partial, and (registered by their
modules) map / valid / anchors / profile / classifier-*.

Every command that runs a network takes `--device cpu|cuda` (default: the
DARKNET_PY_DEVICE environment variable, else cpu)."""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

from ._core import DarknetError


DEVICES = ("cpu", "cuda")


def _device_arg(text: str) -> str:
    name = str(text).strip().lower()
    if name not in DEVICES:
        raise argparse.ArgumentTypeError(f"invalid device {text!r} (choose from 'cpu', 'cuda'; "
                                         "DARKNET_PY_DEVICE sets the default)")
    return name


def default_device() -> str:
    """--device's default: DARKNET_PY_DEVICE when set, else "cpu"."""
    return os.environ.get("DARKNET_PY_DEVICE", "").strip() or "cpu"


def add_device_argument(parser) -> None:
    """`--device {cpu,cuda}` on a command that runs a network (argparse checks the
    environment default too: a string default goes through `type`)."""
    parser.add_argument("--device", type=_device_arg, default=default_device(), metavar="{cpu,cuda}",
                        help="where the network runs: cpu or cuda (default: $DARKNET_PY_DEVICE or cpu)")


def add_training_arguments(parser) -> None:
    """The arguments every training command takes (they all run the one loop, training.py)."""
    parser.add_argument("data")
    parser.add_argument("cfg")
    parser.add_argument("weights", nargs="?")
    parser.add_argument("--max-batches", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backup", help="checkpoint directory (default: the .data file's backup)")
    parser.add_argument("--clear", action="store_true", help="reset the iteration counter of the weights")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--time-limit", type=float, help="stop after this many seconds (weights saved)")
    add_device_argument(parser)


@contextlib.contextmanager
def training_ranks(device: str):
    """The step of a training command: None in one process; started by an MPI launcher with
    N > 1 processes, this rank's distributed.DataParallelStep (an error only this rank knows of
    then aborts the job instead of leaving the others waiting)."""
    from .distributed import data_parallel_step, stop_all_ranks_on_error
    step = data_parallel_step(device)
    with stop_all_ranks_on_error(step):
        yield step


def print_training_result(res) -> None:
    print(f"stopped: {res.stopped} after {res.iterations} iterations; {res.images_per_second:.1f} images/s; "
          f"final loss {res.losses[-1] if res.losses else float('nan'):.4f}")


def _read_names(path):
    if not path:
        return None
    from .data.dataset import read_names
    return read_names(path)


def _prediction_names(paths):
    """<stem>_predictions.png per image; a name already taken in this run (a/dog.jpg and
    b/dog.png) gets _2, _3, ... so no output overwrites another."""
    used, names = set(), []
    for path in paths:
        stem = Path(path).stem
        name, k = f"{stem}_predictions.png", 1
        while name in used:
            k += 1
            name = f"{stem}_{k}_predictions.png"
        used.add(name)
        names.append(name)
    return names


def cmd_detect(args):
    from . import load
    from .image import draw_detections, load_image
    names = _read_names(args.names)
    net = load(args.cfg, args.weights, names=names, device=args.device)
    net.keep_outputs = False  # only the output layer is read: lend the others' outputs from a shared pool
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, out_name in zip(args.images, _prediction_names(args.images)):
        img = load_image(path)
        t0 = time.perf_counter()
        dets = net.detect(img, thresh=args.thresh, hier_thresh=args.hier_thresh, nms=args.nms,
                          letterbox=not args.no_letterbox)
        ms = (time.perf_counter() - t0) * 1000
        print(f"{path}: Predicted in {ms:.1f} milliseconds.")
        for d in dets:
            x1, y1, x2, y2 = d.corners
            print(f"{d.name}: {d.prob * 100:.0f}%\t(left={x1:.0f} top={y1:.0f} right={x2:.0f} bottom={y2:.0f})")
        target = out_dir / out_name
        draw_detections(img, dets, net.names or [], str(target))
        print(f"wrote {target}")
    return 0


def cmd_info(args):
    from .network import Network
    net = Network.from_cfg(args.cfg, batch=1)
    if args.size:
        net.resize(args.size, args.size)
    print(net.summary(), end="")
    return 0


def cmd_partial(args):
    from . import load
    net = load(args.cfg, args.weights, cutoff=args.layers)
    net.save_weights(args.out, cutoff=args.layers)
    print(f"wrote the first {args.layers} layers of {args.weights} to {args.out}")
    return 0


def cmd_train(args):
    from .train import train
    with training_ranks(args.device) as step:
        res = train(args.data, args.cfg, args.weights, max_batches=args.max_batches, seed=args.seed,
                    backup=args.backup, clear=args.clear, workers=args.workers,
                    checkpoint_every=args.checkpoint_every, time_limit=args.time_limit, device=args.device,
                    step=step)
    if step is not None and not step.writes:
        return 0  # rank 0 reports
    print_training_result(res)
    print(f"weights: {res.final_weights or res.last_weights}; loss chart: {res.chart}")
    return 0


def cmd_demo(args):
    from .demo import run_demo, run_joint_demo
    from .distributed import require_one_process
    require_one_process("demo")
    if args.joint:
        run_joint_demo(out=args.out if args.out != "darknet_py_demo" else "darknet_py_joint_demo", quick=args.quick,
                       seed=args.seed, max_batches=args.max_batches, device=args.device)
        return 0
    run_demo(out=args.out, minutes=args.minutes, quick=args.quick, seed=args.seed, device=args.device)
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="darknet-py", description="Darknet-compatible YOLOv2 / YOLO9000")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="detect objects in images")
    d.add_argument("cfg")
    d.add_argument("weights")
    d.add_argument("images", nargs="+")
    d.add_argument("--names", help="class names file (one per line)")
    d.add_argument("--thresh", type=float, default=.24)
    d.add_argument("--hier-thresh", type=float, default=.5)
    d.add_argument("--nms", type=float, default=.45)
    d.add_argument("--no-letterbox", action="store_true", help="plain resize instead of letterbox")
    d.add_argument("--out", default="predictions")
    add_device_argument(d)
    d.set_defaults(func=cmd_detect)

    i = sub.add_parser("info", help="print the layer table (shapes, BFLOPs)")
    i.add_argument("cfg")
    i.add_argument("--size", type=int, help="input size to show (resizes the network)")
    i.set_defaults(func=cmd_info)

    pa = sub.add_parser("partial", help="save the first N layers of a weights file (e.g. darknet19_448.conv.23)")
    pa.add_argument("cfg")
    pa.add_argument("weights")
    pa.add_argument("out")
    pa.add_argument("layers", type=int)
    pa.set_defaults(func=cmd_partial)

    t = sub.add_parser("train", help="train a detector on a Darknet .data dataset")
    add_training_arguments(t)
    t.set_defaults(func=cmd_train)

    de = sub.add_parser("demo", help="generate a synthetic dataset, train, evaluate, draw detections")
    de.add_argument("--out", default="darknet_py_demo")
    de.add_argument("--minutes", type=float, default=7.0, help="training time budget")
    de.add_argument("--quick", action="store_true", help="tiny run (about a minute) for smoke tests")
    de.add_argument("--seed", type=int, default=0)
    de.add_argument("--joint", action="store_true",
                    help="YOLO9000's joint detection + classification training on a synthetic WordTree, "
                         "against a detection-only baseline")
    de.add_argument("--max-batches", type=int, help="--joint: training iterations of each run (default 400)")
    add_device_argument(de)
    de.set_defaults(func=cmd_demo)

    # Registered explicitly: a broken module fails here, loudly, instead of losing its commands.
    from . import classifier, evaluate, profile
    evaluate.register_commands(sub)    # map, valid, anchors
    profile.register_commands(sub)     # profile
    classifier.register_commands(sub)  # classifier-train, -finetune, -valid, -predict
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        return args.func(args) or 0
    except DarknetError as e:
        print(f"darknet-py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
