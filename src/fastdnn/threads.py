"""Who owns the cores: the thread policy of the CPU backend.

Measured on the 2-core dev machine: a ``prange`` element-wise kernel run between
2-thread OpenBLAS calls made a training step 16-35x slower, Numba's OpenMP workers
spinning while BLAS starved.  So fastdnn's CPU kernels are serial (no ``prange``) and
the only threads are those of the BLAS behind ``np.dot`` in nopython mode -- SciPy's
OpenBLAS, a pool separate from NumPy's.  ``n_threads`` sets that pool (and Numba's, for
user code sharing the process) for the duration of a call and restores it afterwards.
"""
import contextlib
import ctypes
import glob
import os

import numba

from . import config

_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads", "openblas_set_num_threads64_")
_GETTERS = ("scipy_openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
            "openblas_get_num_threads", "openblas_get_num_threads64_")

_blas = None


def _find(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def scipy_blas():
    """``(get, set)`` for the thread count of SciPy's OpenBLAS, or ``None`` if not found.

    ``np.dot`` in nopython mode calls ``scipy.linalg.cython_blas``; on wheels that is
    the OpenBLAS shipped in ``scipy.libs``.  Other BLAS builds (MKL, Accelerate) are
    left alone.
    """
    global _blas
    if _blas is None:
        _blas = False
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)

        root = os.path.dirname(os.path.dirname(scipy.__file__))
        for path in sorted(glob.glob(os.path.join(root, "scipy.libs", "*openblas*"))):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            get, set_ = _find(lib, _GETTERS), _find(lib, _SETTERS)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                set_.argtypes = [ctypes.c_int]
                _blas = (get, set_)
                break
    return _blas or None


def check_n_threads(n_threads):
    """Validate an ``n_threads`` setting (``None`` or an int >= 1)."""
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1; got {n_threads!r}")
    return n_threads


@contextlib.contextmanager
def limit_threads(n_threads, blas_only=False):
    """Run the block with ``n_threads`` BLAS (and Numba) threads; ``None`` changes nothing.

    ``blas_only`` leaves Numba's pool alone (touching it starts its threading layer).
    """
    if n_threads is None:
        yield
        return
    blas = scipy_blas()
    old_blas = blas[0]() if blas else None
    old_numba = None if blas_only else numba.get_num_threads()
    try:
        if blas:
            blas[1](n_threads)
        if old_numba is not None:
            numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        yield
    finally:
        if blas:
            blas[1](old_blas)
        if old_numba is not None:
            numba.set_num_threads(old_numba)


def fit_threads(n_threads, sizes, batch_size):
    """The thread scope of a ``fit``: the user's ``n_threads``, or one BLAS thread for
    nets whose largest per-step product is below ``config.SERIAL_BLAS_MACS``."""
    if n_threads is not None:
        return limit_threads(n_threads)
    macs = max(batch_size * k * n for k, n in zip(sizes[:-1], sizes[1:]))
    return limit_threads(1 if macs < config.SERIAL_BLAS_MACS else None, blas_only=True)
