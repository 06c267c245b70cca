"""Scans over device arrays (the CUDA twin of :mod:`fastdnn.kernels.cpu.checks`)."""
import math

import numpy as np
from numba import cuda

from . import dispatch, launch


@cuda.jit
def _finite_flag(x, flag):
    """``flag[0] = 0`` if any element of ``x`` is NaN or infinite (every writer writes 0)."""
    for e in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if not math.isfinite(x[e]):
            flag[0] = 0


def all_finite(x):
    """Whether every element of the flat device array ``x`` is finite (reads back one int)."""
    flag = cuda.to_device(np.ones(1, dtype=np.int64))
    blocks, threads = launch.launch_config(x.shape[0])
    dispatch.call(_finite_flag, blocks, threads, x, flag)
    return bool(flag.copy_to_host()[0])
