"""`darknet-py` under mpirun with one fault put into one rank (tests/test_distributed.py):

    python _mpi_driver.py FAULT RANK BATCH -- <darknet-py arguments>

FAULT: none; data (the rank's loader raises for global batch BATCH); nan (the rank's images
of batch BATCH are NaN); kill (the rank is SIGKILLed in its first forward of batch BATCH);
checkpoint (the rank cannot write the checkpoint of iteration BATCH: an error only it knows of);
interrupt (the rank alone gets Ctrl-C in its first forward of batch BATCH).
"""
import os
import signal
import sys

import numpy as np
from mpi4py import MPI

from darknet_py import DarknetError, cli, distributed, training
from darknet_py.data.loader import DetectionLoader

fault, fault_rank, fault_batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
argv = sys.argv[sys.argv.index("--") + 1:]

if MPI.COMM_WORLD.Get_rank() == fault_rank and fault != "none":
    make_sample = DetectionLoader.make_sample

    def faulty_sample(self, batch_index, slot, net_w, net_h):
        image, truth = make_sample(self, batch_index, slot, net_w, net_h)
        if batch_index == fault_batch:
            if fault == "data":
                raise DarknetError(f"injected: unreadable image in batch {batch_index}")
            if fault == "nan":
                image = np.full_like(image, np.nan)
        return image, truth

    DetectionLoader.make_sample = DetectionLoader._sample = faulty_sample

    if fault in ("kill", "interrupt"):
        accumulate = distributed.DataParallelStep.accumulate

        def signalled_accumulate(self, net, x, truth):
            if net.current_batch == fault_batch and self._forward == 0:
                os.kill(os.getpid(), signal.SIGKILL if fault == "kill" else signal.SIGINT)
            return accumulate(self, net, x, truth)

        distributed.DataParallelStep.accumulate = signalled_accumulate

    if fault == "checkpoint":
        save_checkpoint = training.save_checkpoint

        def failing_save(net, path):
            if net.current_batch == fault_batch:
                raise OSError(28, "injected: no space left on device", path)
            return save_checkpoint(net, path)

        training.save_checkpoint = failing_save

sys.exit(cli.main(argv))
