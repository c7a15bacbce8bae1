"""darknet_py: Darknet-compatible YOLOv2 / YOLO9000 with a C++ core.

    import darknet_py
    net = darknet_py.load("yolov2-voc.cfg", "yolov2-voc.weights")
    for d in net.detect("dog.jpg"):
        print(d.name, d.prob, d.box)

On a GPU: darknet_py.load(cfg, weights, device="cuda") or net.to("cuda")
(darknet_py.cuda_available() says whether this build and machine can).
"""
import os as _os

# OpenMP threads spin only briefly at barriers before sleeping (libgomp reads
# this when the core loads). With the default long spin, a waiting thread burns
# the core its descheduled partner needs on a shared or oversubscribed machine:
# measured on a loaded 2-core VM, yolov2-tiny-voc 2 threads went from 1.0-1.5x
# OpenCV's time to 0.63x. A user's own setting wins.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from ._core import DarknetError, memory_limit, set_memory_limit  # noqa: E402
from .network import (Detection, Network, cuda_available, cuda_built, cuda_unavailable_reason,  # noqa: E402
                      load)

__all__ = ["DarknetError", "Detection", "Network", "load", "cuda_available", "cuda_built", "memory_limit",
           "set_memory_limit",
           "cuda_unavailable_reason"]
__version__ = "0.1.0"
