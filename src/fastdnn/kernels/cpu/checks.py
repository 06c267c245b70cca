"""Compiled scans over arrays (the CUDA twin: :mod:`fastdnn.kernels.cuda.checks`)."""
import numpy as np
from numba import njit

from ... import config


@njit(cache=config.CACHE)
def all_finite(a):
    """True when no element of the C-contiguous array ``a`` is NaN or infinite.

    A compiled scan: NumPy's ``isfinite(a).all()`` allocates a mask, which is most of
    the time of a one-row ``predict``.
    """
    for v in a.reshape(a.size):
        if not np.isfinite(v):
            return False
    return True
