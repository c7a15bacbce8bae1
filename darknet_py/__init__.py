"""darknet_py: Darknet-compatible YOLOv2 / YOLO9000 with a C++ core.

    import darknet_py
    net = darknet_py.load("yolov2-voc.cfg", "yolov2-voc.weights")
    for d in net.detect("dog.jpg"):
        print(d.name, d.prob, d.box)
"""
from ._core import DarknetError
from .network import Detection, Network, load

__all__ = ["DarknetError", "Detection", "Network", "load"]
__version__ = "0.1.0"
