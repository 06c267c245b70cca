"""Intel MKL's GEMM, for the CPU kernels' products where it is installed (``fastdnn[mkl]``).

Why: on an Intel Xeon with AVX-512 (Sapphire Rapids class, 2 cores) MKL's sequential
SGEMM ran the eight products of a 784-1024-1024-10 training step at batch 256 in 8.5-8.9
against OpenBLAS' 10.3-10.9 ms, and those of 1024-4096-4096-1024 at batch 512 in 196-218
against 247-255 ms (fastdnn's two column blocks, one per core, medians of 5,
``benchmarks/gemm_peers.py``).  The kernels call one GEMM symbol; :mod:`.blas` binds it
to SciPy's BLAS or, through :func:`gemm_address`, to MKL.

What fastdnn asks of MKL, set when it loads the library and only where the user has not
set it (``MKL_THREADING_LAYER``, ``MKL_CBWR``) and no one has initialised MKL before:

* the sequential threading layer: fastdnn's products are already cut into column blocks
  run by Numba's threads, and MKL's OpenMP runtime would be one more pool;
* conditional numerical reproducibility in its strict mode (``MKL_CBWR_AUTO |
  MKL_CBWR_STRICT``): results that do not depend on the operands' alignment (measured:
  no cost on the products above).

Each call also sets MKL's thread count for the calling thread to 1 and restores it, so
the product is serial even where MKL was initialised threaded by someone else.
"""
import ctypes
import ctypes.util
import glob
import os
import sys

import llvmlite.binding as llvm
import numpy as np
from numba import carray, cfunc, types

from ... import config

# Values from MKL's mkl_service.h / mkl_cblas.h.
_THREADING_SEQUENTIAL = 1
_CBWR_AUTO, _CBWR_STRICT = 2, 0x10000
_COL_MAJOR, _NO_TRANS, _TRANS = 102, 111, 112

_SGEMM, _DGEMM = "fastdnn_mkl_sgemm", "fastdnn_mkl_dgemm"
_LOCAL_THREADS = "fastdnn_mkl_local_threads"

_lib = None


def find():
    """Path of MKL's single dynamic library (``libmkl_rt``), or ``None``.

    Looked for where the ``mkl`` wheel puts it (``<prefix>/lib``), then on the system's
    library path.
    """
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


def cpu_vendor(cpuinfo="/proc/cpuinfo"):
    """The CPU's vendor string (``"GenuineIntel"``, ``"AuthenticAMD"``), or ``""`` where
    the OS does not say (read from Linux's ``cpuinfo``)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("vendor_id"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def load():
    """MKL's library, loaded and configured once (see the module docstring).

    Raises
    ------
    ImportError
        If no ``libmkl_rt`` is found or it does not load.
    """
    global _lib
    if _lib is None:
        path = find()
        if path is None:
            raise ImportError("Intel MKL (libmkl_rt) was not found; install it with "
                              "pip install 'fastdnn[mkl]'")
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise ImportError(f"Intel MKL at {path} did not load: {exc}") from exc
        if not os.environ.get("MKL_THREADING_LAYER"):
            lib.MKL_Set_Threading_Layer(_THREADING_SEQUENTIAL)  # too late: a no-op
        if not os.environ.get("MKL_CBWR"):
            lib.MKL_CBWR_Set(_CBWR_AUTO | _CBWR_STRICT)  # too late: an error code, kept
        _lib = lib
    return _lib


def _address(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def _gemm_type(real):
    return types.void(types.intc, types.intc, types.intc, types.int64, types.int64,
                      types.int64, real, types.voidptr, types.int64, types.voidptr,
                      types.int64, real, types.voidptr, types.int64)


# MKL's ILP64 CBLAS entries (64-bit sizes, whatever MKL_INTERFACE_LAYER says), bound by
# name in :func:`gemm_address`, so the adapter below stays cacheable on disk.
_sgemm = types.ExternalFunction(_SGEMM, _gemm_type(types.float32))
_dgemm = types.ExternalFunction(_DGEMM, _gemm_type(types.float64))
_local_threads = types.ExternalFunction(_LOCAL_THREADS, types.intc(types.intc))

#: The signature of Numba's ``numba_xxgemm`` helper, which the kernels call
#: (:data:`.blas.GEMM_SYMBOL`): BLAS kind and transpose letters, sizes by value,
#: ``alpha`` and ``beta`` by pointer, column-major operands.
XXGEMM = types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                    types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
                    types.voidptr, types.voidptr, types.intp)


def _adapter():
    """``numba_xxgemm``'s call, made on MKL's CBLAS (compiled when first needed)."""
    @cfunc(XXGEMM, cache=config.CACHE)
    def mkl_xxgemm(kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
        ta = _TRANS if transa == 84 else _NO_TRANS  # ord("T")
        tb = _TRANS if transb == 84 else _NO_TRANS
        previous = _local_threads(1)
        if kind == 115:  # ord("s")
            _sgemm(_COL_MAJOR, ta, tb, m, n, k, carray(alpha, 1, np.float32)[0], a, lda, b,
                   ldb, carray(beta, 1, np.float32)[0], c, ldc)
        else:
            _dgemm(_COL_MAJOR, ta, tb, m, n, k, carray(alpha, 1, np.float64)[0], a, lda, b,
                   ldb, carray(beta, 1, np.float64)[0], c, ldc)
        _local_threads(previous)
        return 0
    return mkl_xxgemm


_bound = None


def gemm_address():
    """Address of a C function with :data:`XXGEMM`'s signature that runs MKL's
    ``cblas_?gemm_64`` serially (loads MKL on first use)."""
    global _bound
    if _bound is None:
        lib = load()
        try:
            addresses = [_address(lib, name) for name in (
                "cblas_sgemm_64", "cblas_dgemm_64", "MKL_Set_Num_Threads_Local")]
        except AttributeError as exc:
            raise ImportError(f"Intel MKL at {find()} lacks {exc.args[0]!r}: fastdnn needs "
                              f"oneMKL 2024 or later (pip install 'fastdnn[mkl]')") from exc
        for name, address in zip((_SGEMM, _DGEMM, _LOCAL_THREADS), addresses):
            llvm.add_symbol(name, address)
        _bound = _adapter()
    return _bound.address
