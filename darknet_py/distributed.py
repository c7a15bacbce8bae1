"""Data-parallel training on MPI: `mpirun -n N darknet-py train ...` (classifier-train and joint
training alike: they all run training.run_training, whose step this module replaces).

Batch semantics. The cfg's `batch` is the global batch: N ranks together draw the images one
process would (the loaders' slots are pure functions of seed, batch index and slot), rank r
taking the contiguous slots r*batch/N .. (r+1)*batch/N - 1 of every batch. Each rank runs its
share as forwards of the cfg's per-forward mini-batch (batch/subdivisions), or as one forward
of its whole share when the share is smaller (more ranks than subdivisions). The update's divisor, `seen`, the
iteration, the learning-rate policy and burn-in all count the global batch
(Network.images_per_iteration = batch), so N ranks follow the schedule of one process; `seen`
at each forward is the one the same forward has in one process (the region layer's
prior-matching term ends at seen = 12800).

One iteration: rank 0 keeps the momentum in its update buffers, the other ranks start the
iteration from zeroed ones (their momentum is rank 0's), so one allreduce (SUM) of the buffers
gives momentum + the gradients of the whole global batch; every rank then applies the same SGD
update and holds the same weights, momentum, statistics and `seen`. The gradients (weights,
biases, BN scales), the BN rolling statistics, the loss and a failure flag travel in one flat
float32 buffer: one collective per iteration, plus one integer allreduce for the stop decision.
The allreduce follows the backward (no overlap: the backward is one core call; README has the
measured share of communication).

Batch norm. Batch statistics are per forward, over the rank's own mini-batch (as Darknet's
multi-GPU training and PyTorch DDP compute them). The rolling mean and variance are merged at
every update as if the ranks' forwards had run one after another in rank order: with
keep = 0.99 (Darknet's factor), F forwards per rank and r0 the statistics before the iteration,
rank r's forwards leave keep^F * r0 + D_r, and the merged value is
keep^(F*N) * r0 + sum_r keep^(F*(N-1-r)) * D_r -- exactly what one process computes when the
ranks' forwards are its subdivisions (cfg subdivisions divisible by N). So all ranks hold
identical statistics after every update, and a checkpoint written by rank 0 is the job's.

Rank 0 writes checkpoints, the loss chart and the progress bar, and reads the start weights;
the others receive its state at the start (they need no copy of the checkpoint directory, only
the data). Resume works with any number of ranks: a checkpoint holds the global `seen`,
weights and momentum, none of it per rank.

Failures. A rank whose data or forward fails still joins the iteration's allreduce, with its
failure flag set; every rank then stops (no update applied, nothing written) with a message that
names the failing rank and its error. A non-finite loss is seen by every rank (the loss is
reduced) and stops all of them. A rank that dies (killed, out of memory) leaves the others in a
collective: the MPI launcher ends the job (Open MPI's mpirun and MPICH's mpiexec both do). Any
other error that only one rank sees (e.g. rank 0 cannot write a checkpoint) aborts the job
(MPI_Abort) after printing it. Checkpoints are written to temp files and renamed, so whatever
stops the job, the last checkpoint on disk is whole.

CUDA: with device=cuda each rank takes one GPU by its rank on the node (CUDA_VISIBLE_DEVICES,
set before CUDA starts); gradients go through host memory (no CUDA-aware MPI needed).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import List, Optional

import numpy as np

from . import _core
from ._core import DarknetError
from .network import Network
from .training import Shard, TrainingStep

__all__ = ["DataParallelStep", "mpi_world", "data_parallel_step", "stop_all_ranks_on_error", "launched_by_mpi",
           "require_one_process"]

# Variables the MPI launchers set in every process they start (Open MPI, MPICH/Hydra, PMIx, Slurm's PMI).
_LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK")
_STOP_REASONS = (None, "time_limit", "interrupted")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (DARKNET_PY_MPI=0 says to ignore it, =1 to assume it)."""
    forced = os.environ.get("DARKNET_PY_MPI", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return any(v in os.environ for v in _LAUNCHER_VARIABLES)


def mpi_world():
    """MPI's world communicator when an MPI launcher started this process, else None.
    DarknetError when it did but mpi4py cannot be imported."""
    if not launched_by_mpi():
        return None
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DarknetError(f"this process was started by an MPI launcher but mpi4py cannot be imported ({e}): "
                           "install the mpi extra (pip install 'darknet_py[mpi]'), or set DARKNET_PY_MPI=0 "
                           "to train in each process alone") from None
    return MPI.COMM_WORLD


def _local_rank(comm) -> int:
    """This process's rank among the ranks on its machine."""
    from mpi4py import MPI
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
    try:
        return node.Get_rank()
    finally:
        node.Free()


def _select_cuda_device(local_rank: int) -> None:
    """One GPU per rank on a machine, before CUDA starts: the local_rank-th visible device (mod their count)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d for d in visible.split(",") if d.strip()]
    else:
        gpus = "/proc/driver/nvidia/gpus"
        devices = [str(i) for i in range(len(os.listdir(gpus)))] if os.path.isdir(gpus) else []
    if devices:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[local_rank % len(devices)].strip()


def data_parallel_step(device: str = "cpu") -> Optional["DataParallelStep"]:
    """The step for a training command: a DataParallelStep when an MPI launcher started N > 1
    processes, else None (one process). With device="cuda" each rank takes its own GPU."""
    comm = mpi_world()
    if comm is None or comm.Get_size() == 1:
        return None
    if device == "cuda":
        _select_cuda_device(_local_rank(comm))
    return DataParallelStep(comm)


def require_one_process(command: str) -> None:
    """DarknetError when an MPI launcher started several copies of a command that runs in one process."""
    comm = mpi_world() if launched_by_mpi() else None
    if comm is not None and comm.Get_size() > 1:
        raise DarknetError(f"{command} runs in one process, not data-parallel: start it without mpirun "
                           f"(train and classifier-train are the data-parallel commands)")


@contextlib.contextmanager
def stop_all_ranks_on_error(step: Optional["DataParallelStep"]):
    """Around a training command: an error that only this rank knows of (the others wait in a
    collective) is printed, then the job is aborted; one that every rank raised together passes."""
    try:
        yield
    except BaseException as e:
        if step is None or isinstance(e, SystemExit):
            raise
        if step.stopped_together:  # every rank raises: say which one this is
            if isinstance(e, DarknetError):
                raise DarknetError(f"rank {step.rank} of {step.size}: {e}") from e
            raise
        print(f"darknet-py: rank {step.rank} of {step.size}: error: {e or type(e).__name__}\n"
              f"darknet-py: rank {step.rank}: aborting every rank (the checkpoints on disk are whole: each is "
              f"written to a temp file, then renamed)", file=sys.stderr, flush=True)
        step.comm.Abort(2)
        raise


class DataParallelStep(TrainingStep):
    """The training step of one rank of an MPI job (see the module notes for the semantics)."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.writes = self.rank == 0
        # Set when every rank raises the same error (a failure flag or a non-finite loss
        # travelled in the allreduce): nothing to abort.
        self.stopped_together = False
        self._shard: Optional[Shard] = None
        self._forward = 0          # forwards run in the current iteration
        self._iteration_seen = 0   # seen when the current iteration began
        self._rolling_before: List[np.ndarray] = []
        self._losses: List[float] = []
        self._loss = float("nan")

    # ------------------------------------------------------------ setup

    def prepare(self, net: Network) -> None:
        """Check every rank built the same network, plan this rank's shard, set the global batch,
        and give every rank rank 0's weights, momentum and seen."""
        self._check_same_network(net)
        global_batch = net.images_per_iteration
        if global_batch % self.size:
            self._stop(f"the cfg's batch ({global_batch} images per iteration) is not divisible by the {self.size} "
                       f"ranks: each rank takes an equal share of every batch")
        share = global_batch // self.size
        per_forward = net.batch  # the cfg's batch / subdivisions
        if share % per_forward:
            if share > per_forward:
                self._stop(f"each of the {self.size} ranks takes {share} images of every batch of {global_batch}, "
                           f"not a multiple of the per-forward mini-batch {per_forward} (batch/subdivisions): "
                           f"choose subdivisions so that batch/subdivisions divides {share}")
            per_forward = share  # more ranks than subdivisions: one forward of the rank's share
        self._shard = Shard(self.rank * share, share, per_forward)
        self._prepared_net = net
        net.images_per_iteration = global_batch
        self._broadcast_state(net)

    def shard(self, net: Network) -> Shard:
        if self._shard is None:
            raise DarknetError("DataParallelStep.prepare(net) must run before the loader is built")
        return self._shard

    @property
    def forwards(self) -> int:
        return self._shard.images // self._shard.per_forward

    def _check_same_network(self, net: Network) -> None:
        mine = (net.summary(), net.images_per_iteration, net.batch,
                [(name, a.shape) for layer in net.layers for name, a in layer.params.items()])
        theirs = self.comm.allgather(mine)
        differ = [r for r, other in enumerate(theirs) if other != theirs[0]]
        if differ:
            self._stop(f"ranks {differ} built another network than rank 0 (each rank must load the same cfg)")

    def _broadcast_state(self, net: Network) -> None:
        arrays = [a for layer in net.layers for a in layer.params.values()] + _update_buffers(net)
        flat = _pack(arrays) if self.rank == 0 else np.empty(sum(a.size for a in arrays), np.float32)
        self.comm.Bcast(flat, root=0)
        if self.rank != 0:
            _unpack(flat, arrays)
        net.seen = self.comm.bcast(net.seen, root=0)

    # ------------------------------------------------------------ one iteration

    def accumulate(self, net: Network, x: np.ndarray, truth: np.ndarray) -> float:
        if self._forward == 0:
            self._begin_iteration(net)
        # seen as it is at this forward in one process: the forwards of lower ranks come first.
        net.seen = self._iteration_seen + (self.rank * self.forwards + self._forward) * self._shard.per_forward
        self._forward += 1
        loss = net.accumulate(x, truth)
        self._losses.append(loss)
        return loss

    def _begin_iteration(self, net: Network) -> None:
        self._iteration_seen = net.seen
        self._losses = []
        self._rolling_before = [a.copy() for a in _rolling_statistics(net)]
        if self.rank != 0:
            for a in _update_buffers(net):  # rank 0's buffers carry the momentum for the whole job
                a[...] = 0

    def update(self, net: Network) -> None:
        grads, rolling = _update_buffers(net), _rolling_statistics(net)
        keep, forwards = float(_core.bn_rolling_keep), self.forwards
        n_grad = sum(a.size for a in grads)
        n_rolling = sum(a.size for a in rolling)
        bucket = np.empty(n_grad + n_rolling + 2, np.float32)
        _pack(grads, bucket[:n_grad])
        # This rank's part of the rolling statistics, weighted by the forwards of the ranks after it.
        weight = keep ** (forwards * (self.size - 1 - self.rank))
        own = [weight * (now.astype(np.float64) - keep ** forwards * before.astype(np.float64))
               for now, before in zip(rolling, self._rolling_before)]
        _pack(own, bucket[n_grad:n_grad + n_rolling])
        bucket[-2] = sum(self._losses)
        bucket[-1] = 0.0  # failures
        failures = self._allreduce(bucket)
        self._forward = 0
        if failures:
            net.seen = self._iteration_seen
            self._stop_after_failure(net)
        _unpack(bucket[:n_grad], grads)
        merged = bucket[n_grad:n_grad + n_rolling]
        offset = 0
        for a, before in zip(rolling, self._rolling_before):
            part = merged[offset:offset + a.size].reshape(a.shape).astype(np.float64)
            a[...] = keep ** (forwards * self.size) * before.astype(np.float64) + part
            offset += a.size
        # The whole global batch is seen before the update, as in one process: the learning rate
        # (policy, burn-in) is the one of the iteration's end.
        net.seen = self._iteration_seen + net.images_per_iteration
        net.update()
        # Darknet's loss of an iteration: the mean over its subdivisions of each one's summed cost.
        self._loss = float(bucket[-2]) / net.subdivisions
        if not np.isfinite(self._loss):
            self.stopped_together = True  # every rank sees it: the loop stops them all

    def iteration_loss(self, net: Network, losses: List[float]) -> float:
        return self._loss

    def _allreduce(self, bucket: np.ndarray) -> int:
        """Sum `bucket` over the ranks in place; returns how many ranks flagged a failure."""
        from mpi4py import MPI
        self.comm.Allreduce(MPI.IN_PLACE, bucket, op=MPI.SUM)
        return int(round(float(bucket[-1])))

    # ------------------------------------------------------------ stopping together

    def failed(self, error: BaseException) -> None:
        """This rank failed mid-iteration: join the iteration's allreduce with the failure flag, so
        the others stop too, and share the message; the loop then re-raises `error` here."""
        net = self._prepared_net
        size = sum(a.size for a in _update_buffers(net) + _rolling_statistics(net))
        bucket = np.zeros(size + 2, np.float32)
        bucket[-1] = 1.0
        self._allreduce(bucket)
        self._forward = 0
        self.stopped_together = True
        self.comm.allgather(f"{type(error).__name__}: {error}")

    def _stop_after_failure(self, net: Network) -> None:
        """Another rank flagged a failure: gather the failed ranks' messages (failed() sends them) and raise."""
        messages = self.comm.allgather(None)
        self.stopped_together = True
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        detail = "; ".join(f"rank {r}: {m}" for r, m in failed)
        iteration = net.seen // net.images_per_iteration + 1
        raise DarknetError(f"{len(failed)} of {self.size} ranks failed at iteration {iteration} "
                           f"({detail}): every rank stopped, this iteration's update was not applied")

    def agree_stop(self, reason: Optional[str]) -> Optional[str]:
        from mpi4py import MPI
        code = self.comm.allreduce(_STOP_REASONS.index(reason), op=MPI.MAX)
        return _STOP_REASONS[code]

    def _stop(self, message: str) -> None:
        """An error every rank found alike (they all call this)."""
        self.stopped_together = True
        raise DarknetError(message)


# ---------------------------------------------------------------- buffers

def _update_buffers(net: Network) -> List[np.ndarray]:
    """Every layer's update buffers (weights, biases, BN scales): the iteration's gradients
    added to the momentum carried from the last update. Fresh views (on a GPU a view pulls the
    newest data, and what is written through it is uploaded before the next use)."""
    return [a for layer in net.layers for a in layer.update_buffers.values()]


def _rolling_statistics(net: Network) -> List[np.ndarray]:
    return [layer.params[name] for layer in net.layers for name in ("rolling_mean", "rolling_variance")
            if name in layer.params]


def _pack(arrays, out: Optional[np.ndarray] = None) -> np.ndarray:
    """The arrays one after another in one flat float32 buffer."""
    if out is None:
        out = np.empty(sum(a.size for a in arrays), np.float32)
    offset = 0
    for a in arrays:
        out[offset:offset + a.size] = a.reshape(-1)
        offset += a.size
    return out


def _unpack(flat: np.ndarray, arrays) -> None:
    offset = 0
    for a in arrays:
        a[...] = flat[offset:offset + a.size].reshape(a.shape)
        offset += a.size
