"""Python face of the C++ network: load cfg/weights, forward, inspect layers, detect."""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np

from . import _core
from ._core import DarknetError


class DarknetWarning(UserWarning):
    """Non-fatal problems in cfg/weights files (unknown keys, trailing weights)."""


@dataclass
class Detection:
    """One detected object. `box` is (x_center, y_center, width, height) in image pixels."""

    class_id: int
    name: str
    prob: float
    objectness: float
    box: tuple
    probs: np.ndarray = field(repr=False, default=None)

    @property
    def corners(self):
        """(x1, y1, x2, y2) in pixels."""
        x, y, w, h = self.box
        return (x - w / 2, y - h / 2, x + w / 2, y + h / 2)


class LayerView:
    """Read access to one layer of a network: shapes, output, delta, parameters."""

    def __init__(self, net: "Network", index: int):
        self._net = net
        self.index = index
        self._layer = net._net.layer(index)

    type = property(lambda self: self._layer.type)
    input_shape = property(lambda self: (self._layer.c, self._layer.h, self._layer.w))
    output_shape = property(lambda self: (self._layer.out_c, self._layer.out_h, self._layer.out_w))
    flops = property(lambda self: self._layer.flops)
    parameter_count = property(lambda self: self._layer.parameter_count)
    cost = property(lambda self: self._layer.cost)

    @property
    def output(self) -> np.ndarray:
        """Copy of the last forward output, (batch, C, H, W)."""
        return self._net._net.layer_output(self.index)

    @property
    def delta(self) -> Optional[np.ndarray]:
        """Copy of the delta (-dLoss/d output), or None outside training."""
        return self._net._net.layer_delta(self.index)

    @property
    def params(self) -> dict:
        """Parameters in weights-file order as writable numpy views."""
        return self._net._net.layer_params(self.index)

    @property
    def uses_winograd(self) -> bool:
        """Whether inference runs this layer through Winograd F(4x4,3x3) (the network's options, shape)."""
        return self._net._net.layer_uses_winograd(self.index)

    @property
    def buffers(self) -> dict:
        """Training buffers (weight/bias/scale updates, BN mean/variance, x, x_norm)."""
        return self._net._net.layer_buffers(self.index)

    @property
    def update_buffers(self) -> dict:
        """The `*_updates` buffers alone (the gradients added to the momentum; what a checkpoint
        and a data-parallel step read and write): on a GPU, the activations are not pulled."""
        return self._net._net.layer_update_buffers(self.index)

    def describe(self) -> str:
        return self._layer.describe()

    def __repr__(self):
        return f"<Layer {self.index} {self.describe().strip()}>"


class Network:
    """A Darknet network built by the C++ core from a .cfg file."""

    def __init__(self, core: "_core.Network", names: Optional[Sequence[str]] = None):
        self._net = core
        self.names = list(names) if names is not None else None
        for w in core.warnings:
            warnings.warn(w, DarknetWarning, stacklevel=3)

    # ---- construction ------------------------------------------------------------
    @classmethod
    def from_cfg(cls, cfg: str, batch: int = 1, names=None, device: Optional[str] = None) -> "Network":
        """Build from a .cfg file on `device` ("cpu" or "cuda"; DarknetError with the reason when
        CUDA is asked for on a build or machine without it)."""
        if not os.path.exists(cfg):
            raise DarknetError(f"{cfg}: cfg file not found")
        return cls(_core.Network(str(cfg), batch, device=_device_name(device)), names)

    @classmethod
    def from_text(cls, text: str, name: str = "<string>", batch: int = 1, names=None,
                  device: Optional[str] = None) -> "Network":
        return cls(_core.Network.from_text(text, name, batch, device=_device_name(device)), names)

    # ---- device and execution options ------------------------------------------------
    @property
    def device(self) -> str:
        """Where the network's parameters and activations live and compute runs: "cpu" or "cuda"."""
        return self._net.device

    def to(self, device: str) -> "Network":
        """Move the network (parameters, training state) to "cpu" or "cuda"; returns self.
        Weights are kept; layer outputs, params and save_weights read the current values
        wherever they live."""
        self._net.to(_device_name(device))
        return self

    @property
    def exec_options(self) -> dict:
        """This network's run-time switches: {device, isa, winograd, reference_kernels, threads,
        cuda_math, cuda_graphs, fuse_layers}. The environment (DARKNET_PY_ISA, DARKNET_PY_WINOGRAD,
        DARKNET_PY_REFERENCE_KERNELS, DARKNET_PY_THREADS, DARKNET_PY_CUDA_MATH,
        DARKNET_PY_CUDA_GRAPHS, DARKNET_PY_FUSE) only seeds their defaults when a network is built."""
        return dict(self._net.exec_options)

    def set_exec_options(self, device: Optional[str] = None, isa: Optional[str] = None,
                         winograd: Optional[str] = None, reference_kernels: Optional[bool] = None,
                         threads: Optional[int] = None, cuda_math: Optional[str] = None,
                         cuda_graphs: Optional[bool] = None, fuse_layers: Optional[bool] = None) -> "Network":
        """Change some run-time switches (None keeps the current value); returns self.
        isa: "auto", "avx512", "avx2" or "plain"; winograd: "auto", "on" or "off";
        reference_kernels: run inference on the plain reference kernels; threads: OpenMP
        threads for this network's calls (0 = the runtime's default); cuda_math: the CUDA
        convolutions' arithmetic, "tf32" (tensor cores, the default) or "fp32" (plain FMA);
        cuda_graphs: on CUDA, record an inference forward once and replay it as a CUDA graph
        while the buffers stay the same (default True); fuse_layers: with keep_outputs off, run a
        convolution and the 2x2 max pool after it as one kernel where the backend can (default
        True; the pool's profile row then reads 0, its time is in the conv's). Invalid values
        raise DarknetError."""
        self._net.set_exec_options(device=None if device is None else _device_name(device), isa=isa,
                                   winograd=winograd,
                                   reference_kernels=None if reference_kernels is None else bool(reference_kernels),
                                   threads=None if threads is None else int(threads), cuda_math=cuda_math,
                                   cuda_graphs=None if cuda_graphs is None else bool(cuda_graphs),
                                   fuse_layers=None if fuse_layers is None else bool(fuse_layers))
        return self

    @property
    def output_index(self) -> int:
        """Index of the output layer: the last layer that is not a [cost] layer."""
        return self._net.output_index

    # ---- shape and state -----------------------------------------------------------
    width = property(lambda self: self._net.width)
    height = property(lambda self: self._net.height)
    channels = property(lambda self: self._net.channels)
    batch = property(lambda self: self._net.batch)
    options = property(lambda self: self._net.options)
    total_flops = property(lambda self: self._net.total_flops)
    cfg_path = property(lambda self: self._net.cfg_path)

    @property
    def seen(self) -> int:
        return self._net.seen

    @seen.setter
    def seen(self, value: int):
        self._net.seen = int(value)

    @property
    def keep_outputs(self) -> bool:
        """True (default): every layer keeps its own output after forward. False: inference lends outputs
        from a liveness-planned shared pool (about the two largest maps instead of all of them); afterwards
        only outputs no later layer overwrote are readable (`output_kept(i)`), others raise DarknetError."""
        return self._net.keep_outputs

    @keep_outputs.setter
    def keep_outputs(self, value: bool):
        self._net.keep_outputs = bool(value)

    def output_kept(self, i: int) -> bool:
        return self._net.output_kept(i)

    def fused_with_next(self, i: int) -> bool:
        """Whether layer i ran with layer i + 1 fused into it in the last inference forward
        (exec option fuse_layers, keep_outputs off): a [convolutional] and the 2x2 [maxpool]
        after it as one kernel. Layer i's output is then not written, and per-layer times give
        the pair's time to layer i and 0 to layer i + 1."""
        return self._net.fused_with_next(int(i))

    @property
    def layers(self) -> List[LayerView]:
        return [LayerView(self, i) for i in range(self._net.n_layers)]

    def __len__(self):
        return self._net.n_layers

    # ---- training state -------------------------------------------------------------
    @property
    def training(self) -> bool:
        """Whether deltas and training buffers (momentum, BN statistics) are allocated."""
        return self._net.training

    @training.setter
    def training(self, on: bool):
        self._net.set_training(bool(on))

    def set_seed(self, seed: int) -> None:
        """Seed the generator of the network's own random choices during training (dropout)."""
        self._net.set_seed(int(seed))

    @property
    def rng_state(self) -> str:
        """The state of that generator as text (training checkpoints save it, so a resumed run
        drops the units a straight run would); assigning a saved state restores it."""
        return self._net.rng_state

    @rng_state.setter
    def rng_state(self, state: str):
        self._net.rng_state = str(state)

    def set_batch(self, batch: int) -> None:
        """Images per forward pass (forward/train_step also set it from their input)."""
        self._net.set_batch(int(batch))

    @property
    def subdivisions(self) -> int:
        """[net] subdivisions: sub-batches accumulated into one update."""
        return self._net.subdivisions

    @property
    def current_batch(self) -> int:
        """The training iteration: seen / images_per_iteration (batch * subdivisions in one process)."""
        return self._net.current_batch

    @property
    def images_per_iteration(self) -> int:
        """Images one update sums over (its divisor; current_batch = seen / this): batch * subdivisions,
        unless a data-parallel job set its global batch here (0 restores the default)."""
        return self._net.images_per_iteration

    @images_per_iteration.setter
    def images_per_iteration(self, value: int):
        self._net.images_per_iteration = int(value)

    @property
    def learning_rate(self) -> float:
        """The learning rate of the current iteration (policy and burn_in applied)."""
        return self._net.learning_rate

    @property
    def base_learning_rate(self) -> float:
        """[net] learning_rate, the base of the policy (fine-tuning lowers it)."""
        return self._net.base_learning_rate

    @base_learning_rate.setter
    def base_learning_rate(self, value: float):
        self._net.base_learning_rate = float(value)

    @property
    def max_batches(self) -> int:
        """[net] max_batches: where training stops and the poly policy's horizon."""
        return self._net.max_batches

    @max_batches.setter
    def max_batches(self, value: int):
        self._net.max_batches = int(value)

    @property
    def region(self) -> Optional[dict]:
        """Parameters of the last [region] layer (classes, anchors, jitter, random, max_boxes, tree, ...)
        or None when the network has none."""
        layers = _core.region_layers(self._net)
        return layers[-1] if layers else None

    @property
    def softmax_tree(self):
        """The WordTree of the last [softmax] layer with tree=, or None."""
        return _core.softmax_tree(self._net)

    def randomize(self, seed: int = 0, init: str = "uniform") -> None:
        """Random initialisation: conv weights sqrt(2/fan_in) times U(-1, 1) ("uniform", YOLOv2-era
        Darknet, the default: it trains faster behind batch norm, see README) or N(0, 1) ("normal",
        later Darknet); biases 0, BN scales 1."""
        self._net.randomize(int(seed), str(init))

    def resize(self, width: int, height: int) -> None:
        """Change the input size in place (weights kept), as multi-scale training does."""
        self._net.resize(int(width), int(height))

    def summary(self) -> str:
        return self._net.summary()

    @contextlib.contextmanager
    def lock(self):
        """Hold the network's lock so several calls act as one (the concurrency contract in the
        README): every single call already takes it, so threads sharing a network are
        serialised; `with net.lock(): net.forward(x); net.detections(...)` also keeps another
        thread's forward from running between the two."""
        acquire, release = self._net.lock_functions()
        acquire()
        try:
            yield self
        finally:
            release()

    # ---- compute -----------------------------------------------------------------
    def forward(self, x: np.ndarray, truth: Optional[np.ndarray] = None) -> np.ndarray:
        """Run the network on float32 NCHW input; returns the output layer's output."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        return self._net.forward(x, truth)

    def train_step(self, x: np.ndarray, truth: np.ndarray) -> float:
        """One Darknet training step (seen += batch, forward, backward, update when due)."""
        return self._net.train_step(np.ascontiguousarray(x, dtype=np.float32),
                                    np.ascontiguousarray(truth, dtype=np.float32))

    def accumulate(self, x: np.ndarray, truth: np.ndarray) -> float:
        """The first phase of a training step: seen += batch, forward, backward; gradients are
        added to the update buffers, weights are not touched. Returns the loss."""
        return self._net.train_step(np.ascontiguousarray(x, dtype=np.float32),
                                    np.ascontiguousarray(truth, dtype=np.float32), update=False)

    def update(self) -> None:
        """The second phase: SGD (momentum, decay) with the current iteration's learning rate
        over the accumulated gradients."""
        self._net.update()

    def time_layers(self, x: np.ndarray, runs: int, warmup: int, backward: bool,
                    truth: Optional[np.ndarray] = None) -> dict:
        """Raw per-layer wall times (seconds) of `runs` passes over x after `warmup`:
        {"layers", "total", and with backward "backward_layers", "total_backward"}.
        truth (backward only, (N, truths)): the loss layers' truth; default all zero (no boxes)."""
        if truth is not None:
            truth = np.ascontiguousarray(truth, dtype=np.float32)
        return _core.profile_network(self._net, np.ascontiguousarray(x, dtype=np.float32), int(runs),
                                     int(warmup), bool(backward), truth)

    def predict_image(self, image, letterbox: bool = True) -> np.ndarray:
        """Forward one image (path, PIL image or float32 (3,H,W) in [0,1]) sized as Darknet does."""
        from .image import letterbox as letterbox_image, load_image, resize as resize_image
        img = load_image(image)
        sized = letterbox_image(img, self.width, self.height) if letterbox else resize_image(img, self.width, self.height)
        return self.forward(sized[None])

    def detect(self, image, thresh: float = .24, hier_thresh: float = .5, nms: float = .45,
               letterbox: bool = True, class_map: Optional[Sequence[int]] = None) -> List[Detection]:
        """Detect objects in one image, as `darknet detector test`.

        Returns one Detection per box whose best class probability exceeds `thresh`
        after Darknet's do_nms_sort, sorted by probability (highest first).
        class_map: see `detections`.
        """
        from .image import load_image
        img = load_image(image)
        _, img_h, img_w = img.shape
        with self.lock():  # forward and decode as one use: another thread's forward cannot slip in
            self.predict_image(img, letterbox=letterbox)
            return self.detections(img_w, img_h, thresh=thresh, hier_thresh=hier_thresh, nms=nms,
                                   letterbox=letterbox, class_map=class_map)

    def detections(self, image_w: int, image_h: int, thresh: float = .24, hier_thresh: float = .5,
                   nms: float = .45, letterbox: bool = True, batch_index: int = 0,
                   class_map: Optional[Sequence[int]] = None) -> List[Detection]:
        """Decode the region output of the last forward for an image of image_w x image_h.

        class_map (WordTree region layers): probability j of a box is objectness times the
        absolute probability of tree node class_map[j] (Darknet's map= decoding, how it scores
        the ImageNet detection classes), instead of the one node hier_thresh descends to."""
        class_map = None if class_map is None else [int(c) for c in class_map]
        boxes, objectness, probs = _core.get_network_boxes(self._net, int(image_w), int(image_h), thresh,
                                                           hier_thresh, letterbox, True, class_map, batch_index)
        if nms > 0 and len(boxes):
            boxes, objectness, probs, _ = _core.do_nms_sort(boxes, objectness, probs, nms)
        out = []
        for i in range(len(boxes)):
            if objectness[i] <= 0:
                continue
            cls = int(np.argmax(probs[i]))
            p = float(probs[i, cls])
            if p <= thresh:
                continue
            name = self.names[cls] if self.names and cls < len(self.names) else str(cls)
            x, y, w, h = (float(v) for v in boxes[i])
            out.append(Detection(cls, name, p, float(objectness[i]),
                                 (x * image_w, y * image_h, w * image_w, h * image_h), probs[i].copy()))
        out.sort(key=lambda d: -d.prob)
        return out

    def profile(self, runs: int = 20, warmup: int = 2, backward: bool = False, **kwargs):
        """Per-layer timing (darknet_py.profile.Profile): median ms, share, FLOPs, GFLOP/s, % of peak."""
        from .profile import profile_network
        return profile_network(self, runs=runs, warmup=warmup, backward=backward, **kwargs)

    # ---- weights -----------------------------------------------------------------
    def load_weights(self, path: str, cutoff: int = -1) -> None:
        """Load a Darknet .weights file (optionally only the first `cutoff` layers)."""
        if "\0" in os.fspath(path):
            raise DarknetError("load_weights: the path contains a NUL byte")
        if not os.path.exists(path):
            raise DarknetError(f"{path}: weights file not found")
        msg = self._net.load_weights(str(path), int(cutoff))
        if msg:
            warnings.warn(msg, DarknetWarning, stacklevel=2)

    def save_weights(self, path: str, cutoff: int = -1) -> None:
        """Write Darknet .weights (format 0.2.0) atomically: temp file, fsync, rename."""
        self._net.save_weights(str(path), int(cutoff))


def load(cfg: str, weights: Optional[str] = None, batch: int = 1, names=None, cutoff: int = -1,
         seed: int = 0, device: Optional[str] = None) -> Network:
    """Build a network from a Darknet .cfg (batch 1 for inference) and load weights.

    Parameters start from Darknet's random initialisation (seeded by `seed`);
    a weights file then overwrites them (up to `cutoff` layers when given).
    device: "cpu" (default) or "cuda" -- the whole network then trains and infers on
    the GPU; DarknetError with the reason when CUDA is not available
    (see darknet_py.cuda_available() / cuda_unavailable_reason()).
    """
    net = Network.from_cfg(str(cfg), batch=batch, names=names, device=device)
    net.randomize(seed)
    if weights is not None:
        net.load_weights(str(weights), cutoff)
    return net


# ---- devices ------------------------------------------------------------------------
def _device_name(device) -> str:
    """The device name as the core parses it (the core rejects unknown names with DarknetError);
    None -> "" (the core's default: DARKNET_PY_DEVICE, else cpu)."""
    if device is None:
        return ""
    if not isinstance(device, str):
        raise DarknetError(f"device must be a string ('cpu' or 'cuda'), got {device!r}")
    return device


def cuda_built() -> bool:
    """True when the C++ core was compiled with the CUDA backend."""
    return bool(_core.cuda_built())


def cuda_available() -> bool:
    """True when the CUDA backend is built and a usable CUDA device (and driver) is present."""
    return bool(_core.cuda_available())


def cuda_unavailable_reason() -> str:
    """Why device="cuda" cannot be used here ("" when it can)."""
    return str(_core.cuda_unavailable_reason())
