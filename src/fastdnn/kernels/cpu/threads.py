"""Who owns the cores: the thread policy of the CPU backend.

Numba's thread pool owns them.  Measured on the 2-core dev machine: a ``prange``
element-wise kernel run between 2-thread OpenBLAS calls made a training step 16-35x
slower, Numba's OpenMP workers spinning while BLAS starved; and OpenBLAS' own threading
changes the last bits of a product with the thread count.  So BLAS is only ever called
single-threaded (per call, :mod:`.blas`), the big products are cut into fixed
column blocks that Numba's ``prange`` runs in parallel, and everything else is serial:
one pool, no oversubscription, and results independent of the thread count.
``n_threads`` sets Numba's pool for the duration of a call and restores it afterwards.
The one exception is the helper thread of two-shard training steps (:mod:`.pair`),
which joins no barrier: the step never waits for it when it is not running.  The
pool's OpenMP workers spin only briefly before they sleep (:func:`launch_pool`).
"""
import contextlib
import ctypes
import glob
import os
import threading

import numba

_SETTERS = ("scipy_openblas_set_num_threads", "scipy_openblas_set_num_threads64_",
            "openblas_set_num_threads", "openblas_set_num_threads64_")
_GETTERS = ("scipy_openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
            "openblas_get_num_threads", "openblas_get_num_threads64_")

_blas = None
_lib = None
_path = None  # the file _lib was loaded from
_lookup_lock = threading.Lock()


def _find(lib, names):
    for name in names:
        fn = getattr(lib, name, None)
        if fn is not None:
            return fn
    return None


def local_threads_setter():
    """OpenBLAS' ``openblas_set_num_threads_local`` (0.3.27+) from SciPy's library, or
    ``None`` where it is missing (older OpenBLAS, other BLAS builds)."""
    scipy_blas()
    return getattr(_lib, "openblas_set_num_threads_local", None) if _lib is not None else None


def scipy_blas_path():
    """The file of SciPy's OpenBLAS (:func:`scipy_blas`), or ``None`` if not found."""
    scipy_blas()
    return _path


def blas_core():
    """The CPU core OpenBLAS chose its kernels for (``openblas_get_corename``, e.g.
    ``"SkylakeX"``, ``"Haswell"``), lower-cased; ``None`` for other BLAS builds."""
    scipy_blas()
    for name in ("scipy_openblas_get_corename", "scipy_openblas_get_corename64_",
                 "openblas_get_corename", "openblas_get_corename64_"):
        fn = getattr(_lib, name, None) if _lib is not None else None
        if fn is not None:
            fn.restype = ctypes.c_char_p
            return fn().decode("ascii", "replace").strip().lower()
    return None


def scipy_blas():
    """``(get, set)`` for the thread count of SciPy's OpenBLAS, or ``None`` if not found.

    ``np.dot`` in nopython mode calls ``scipy.linalg.cython_blas``; on wheels that is
    the OpenBLAS shipped in ``scipy.libs``.  Other BLAS builds (MKL, Accelerate) are
    left alone.
    """
    global _blas, _lib, _path
    if _blas is None:
        # Looked up once, under a lock, and published only when done: a second thread
        # that found the lookup started took "no OpenBLAS" (the SkylakeX core unseen,
        # so another BLAS bound than the process's first nets chose).
        with _lookup_lock:
            if _blas is None:
                found = False
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
                        found = (get, set_)
                        _lib, _path = lib, path
                        break
                _blas = found
    return _blas or None


_blas_lock = threading.Lock()
_blas_users = 0  # blocks of limit_threads running now, in any Python thread
_blas_saved = None  # the process-wide BLAS count before the first of them


@contextlib.contextmanager
def _single_threaded_blas():
    """The process-wide BLAS count at 1 while any such block runs, then back to what it
    was, restored once by the last block to leave (blocks may overlap in several Python
    threads: each saving and restoring its own would leave the count of whichever read
    another's 1)."""
    global _blas_users, _blas_saved
    blas = scipy_blas()
    if blas is None:
        yield
        return
    with _blas_lock:
        if _blas_users == 0:
            _blas_saved = blas[0]()
            blas[1](1)
        _blas_users += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0:
                blas[1](_blas_saved)


#: GNU OpenMP's busy-wait (spins, each a ``pause``) before a Numba worker sleeps, where
#: the user set neither ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT``.  libgomp's default,
#: 300,000 spins (7.6 ms on an AMD EPYC; 3,000 take 0.08 ms; Intel's ``pause`` is longer
#: since Skylake), keeps a worker spinning through a training step's serial parts; beside
#: another busy process that spinning takes the cores from the thread doing them.
#: 784-1024-1024-10 at batch 256 beside one busy process: 7.1K samples/s by default,
#: 9.5K at 3,000 spins, 9.6K passive (0); with the cores to itself 19.5K, 19.3K and
#: 19.1K (AMD EPYC, 2 cores, ``GOMP_SPINCOUNT`` alternated, medians of 5 and 7 rounds).
#: Set here, against the tree before: 6.3K -> 8.7K busy, 17.7K and 17.8K quiet.  The
#: cost: right after NumPy's own 2-thread BLAS call, whose OpenBLAS threads go on spinning,
#: a product waits for the worker that slept (256x1024 @ 1024x1024 alternated with
#: NumPy's: 7.4 against 4.4 ms).
SPIN_COUNT = 3000
#: The variables by which the user chooses the wait policy, left alone where set.
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def launch_pool():
    """Start Numba's thread pool, its OpenMP workers spinning :data:`SPIN_COUNT` times
    before they sleep, unless the user set the wait policy (:data:`_WAIT_VARIABLES`).

    The variable is set only while the pool starts: libgomp reads it as it loads (an
    OpenMP loaded before keeps what it read), and processes started later inherit the
    user's environment as it was.  The OpenMP thread count of a libgomp loaded before
    (PyTorch's, the same ``libgomp.so.1``) is put back after: Numba's OpenMP pool sets
    it as it starts (its parallel regions name their own count), and a process's
    ``torch.set_num_threads(1)`` read 2 after its first fit."""
    from numba.np.ufunc.parallel import _launch_threads

    openmp = _loaded_openmp()
    threads = openmp.omp_get_max_threads() if openmp is not None else None
    ours = not any(os.environ.get(v) for v in _WAIT_VARIABLES)
    if ours:
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    try:
        _launch_threads()
    finally:
        if ours:
            os.environ.pop("GOMP_SPINCOUNT", None)
        if threads is not None:
            openmp.omp_set_num_threads(threads)


def _loaded_openmp():
    """libgomp where the process has loaded it already (``RTLD_NOLOAD``: never loads
    it), else ``None``."""
    noload = getattr(os, "RTLD_NOLOAD", None)
    if noload is None:
        return None
    try:
        return ctypes.CDLL("libgomp.so.1", mode=noload | os.RTLD_LAZY)
    except OSError:
        return None


@contextlib.contextmanager
def limit_threads(n_threads):
    """Run the block with ``n_threads`` Numba threads (``None``: leave the setting) and
    SciPy's OpenBLAS single-threaded; both restored afterwards.

    The kernels set the BLAS count to 1 before each call (see :mod:`.blas`), but the
    setting is process-wide in OpenBLAS' pthreads builds, so it is restored here, once.
    """
    old_numba = numba.get_num_threads() if n_threads is not None else None
    with _single_threaded_blas():
        try:
            if old_numba is not None:
                numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
            yield
        finally:
            if old_numba is not None:
                numba.set_num_threads(old_numba)
