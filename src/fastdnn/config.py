"""Tunables in one place, so tests and benchmarks can patch them.

Values are read when a kernel or a trainer is set up, never baked into compiled code,
so patching them never forces a recompile.
"""
import os as _os


def switch(name):
    """The on/off environment variable ``name``: on unless ``0``, ``false``, ``off`` or
    ``no`` (any case); a ValueError for what is none of those nor ``1``, ``true``,
    ``on``, ``yes`` or empty (``FASTDNN_WARMUP=garbage`` left the helper on, silently)."""
    value = _os.environ.get(name, "1").strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value in ("", "1", "true", "on", "yes"):
        return True
    raise ValueError(f"{name} must be 0 or 1 (or false/true, off/on, no/yes); "
                     f"got {_os.environ[name]!r}")


#: Below this many multiply-adds (rows * fan_in * fan_out) a dense layer uses the
#: hand-written loop kernels instead of BLAS, whose call overhead dominates only for
#: the tiniest products.  Measured (whole epochs, 1 BLAS thread, OpenBLAS 0.3 small-
#: matrix kernels): loops win for batch-1 SGD on a 2-8-8-1 net (0.70 vs 0.53 M
#: samples/s), BLAS wins already at 32x16x16 (16-wide ReLU net, batch 32: 3.5 vs 1.0 M).
SMALL_GEMM_MACS = 256
#: The same threshold for the one-row products of online SGD (``batch_size=1``), where
#: the loops run vectorised over fan_out and a BLAS call is mostly overhead.  ``None``:
#: the value measured on this CPU's family, :data:`ONE_ROW_GEMM_MACS_BY_VENDOR` (8192 on
#: others).  Read when a network is set up.
ONE_ROW_GEMM_MACS = None
#: :data:`ONE_ROW_GEMM_MACS` by CPU vendor.  The two families part where a layer has a few
#: thousand multiply-adds, and no instruction-set flag tells them apart (both have
#: AVX-512).  Measured (float32 tanh, batch 1, time a step):
#:
#: * Intel Xeon (Sapphire Rapids class), loops / BLAS: 16-32-32-2 0.81x, 8-64-64-4 0.94x,
#:   64-128-128-10 1.0x, 32-256-256-2 1.09x, 128-512-512-2 1.07x;
#: * AMD EPYC (Zen 4), loops / BLAS: 16-32-32-2 0.69x, 8-64-64-4 1.04x, 64-128-128-10
#:   1.23x, 32-256-256-2 1.17x, 128-512-512-2 1.30x; against 8192, a threshold of 2048
#:   ran 8-64-64-4 in 0.78-0.92x and 32-64-64-2 in 0.68-0.86x the time, and 1024 ran
#:   16-32-32-2 1.17x slower (its 32x32 layer on BLAS).  ``benchmarks/one_row.py`` measures it.
ONE_ROW_GEMM_MACS_BY_VENDOR = {"GenuineIntel": 8192, "AuthenticAMD": 2048}

#: Column blocks a big product is cut into, run in parallel (see
#: :mod:`fastdnn.kernels.cpu.blas`).  ``None``: the ``FASTDNN_BLAS_BLOCKS`` environment
#: variable, or else the CPUs this process may run on.  The count changes the last bits of
#: some products, the thread count never does: set it to one value to get the same bits
#: on machines with different CPU counts.  Read when a network is set up, and then the
#: count of every network's products in the process (one value the kernels read).
BLAS_BLOCKS = None

#: The BLAS the CPU kernels' products run on: ``"auto"`` (Intel MKL where it is installed,
#: ``pip install 'fastdnn[mkl]'``, and the CPU is Intel's; on AMD's Zen 4
#: ``"scipy-haswell"``; else SciPy's), ``"scipy"`` (SciPy's BLAS: OpenBLAS on its wheels),
#: ``"mkl"``, or ``"scipy-haswell"`` (SciPy's, the big products on a second instance of
#: its OpenBLAS on its Haswell kernels: ``fastdnn.kernels.cpu.haswell``).  ``None``: the
#: ``FASTDNN_BLAS`` environment variable, or ``"auto"``.  Read once per process, when the
#: first CPU network is set up (:func:`fastdnn.kernels.cpu.blas.library`).
BLAS = None
#: Where MKL is used, the products that go to it: at least this many multiply-adds, and
#: both sides of the output at least ``MKL_MIN_SIDE``; the others stay on SciPy's
#: OpenBLAS, whose small-matrix path MKL's call overhead loses to.  MKL / OpenBLAS time,
#: float32, one call (Intel Xeon, AVX-512, medians of 10): 64x32 @ 32x32 1.23-1.29x;
#: 128x64 @ 64x64 1.11-1.20x; 64x128 @ 128x128 0.74-1.02x; 128x128 @ 128x128 0.63-0.77x;
#: 128x512 @ 512x512 0.66-0.75x; but 256x1024 @ 1024x10, a narrow output, 1.66-1.77x.
MKL_MIN_MACS = 1 << 20
MKL_MIN_SIDE = 32

#: Parameters from which a fit's per-step passes over all of them (the overflow guard's
#: scan of the gradient, the optimizer's update) run in parallel chunks
#: (``kernels/cpu/wide.py``): from two chunks.  Scan and SGD update, float32, serial /
#: parallel time (Intel Xeon, 2 cores, warm caches): 64K parameters 0.71x (one chunk),
#: 128K 1.42x, 256K 2.0x, 512K 3.5x, 1M 2.2x.  Whole steps on an AMD EPYC (Zen 4, float32
#: SGD, wide / serial time, medians of 7): 256-256-256-10 (134K) 1.00x, 512-512-10 (268K)
#: 0.94x, 784-512-10 (407K) 0.91x.
WIDE_UPDATE_PARAMS = 1 << 17

#: Data-parallel shards of a training batch, for nets too narrow for the column-block
#: GEMM split (see :mod:`fastdnn.kernels.cpu.blas`): a batch is cut into this many row
#: shards whose gradients are computed apart and combined in order.  A fixed number, not
#: the thread count, so results are the same with any number of threads.  Two (the
#: default) run as a pair, the second shard on a helper thread when it is free and never
#: waited for when it is not (:mod:`fastdnn.kernels.cpu.pair`); more run in Numba's pool,
#: whose barrier waits for the OS scheduler whenever another process holds a core
#: (measured on the shared 2-core dev machine: 16-32-32-32-2 at batch 64 fell from
#: 2.2 M to 5 k samples/s with 2 pool shards while one core was busy).  1: one pass.
SHARDS = 2
#: A batch is sharded only with at least this many rows and this many multiply-adds
#: (rows times the layers' fan_in * fan_out) per shard: below them the hand-off and the
#: sum of the shards' gradients cost more than the second core saves.  Measured on an
#: Intel Xeon (2 cores, float32 SGD, pair / one pass): 16-32-32-32-2 at 32 rows a shard
#: (84 K) 0.71x, 64 rows (168 K) 0.98x, 128 rows (336 K) 1.21x; 64-128-128-10 at 16 rows
#: 0.81x, 32 rows 1.14x, 64 rows 1.67x; 32-100-4 at 100 rows (360 K) 1.22x; 64-100-10
#: float64 Adam at 100 rows 1.4x.
MIN_SHARD_ROWS = 32
MIN_SHARD_MACS = 300_000

#: ``fit`` keeps a copy of the parameters from the start of each epoch (and of the
#: epoch before: two copies), for nets up to this many bytes of parameters, to go back
#: to when the epoch diverges.  The training
#: loop never writes a non-finite update (its overflow guard), so the weights stay
#: finite for any size; but the loss at the last finite weights is often NaN, and the
#: copy makes the net trainable again.  Above this size the copy would dominate
#: ``fit``'s memory (measured: 1024-4096-4096-1024 SGD, peak 1.41x -> 1.0x the data,
#: weights, gradient and buffers).
SNAPSHOT_BYTES = 64 << 20
#: The multiply-adds a fit's check of its last update may take: the loss at the weights a
#: fit ends with is evaluated on its first rows, a batch of them at most, and fewer where
#: a batch's forward pass would take more than this; a loss that is not finite there is a
#: divergence (each earlier update is checked by the next step's loss).  The rows of an
#: overflow are usually all of them.  At 2**22, a 16-32-32-2 net checks a batch (32
#: rows), 784-1024-1024-10 two rows, 1024-4096-4096-1024 one (25M multiply-adds, 0.1% of
#: its batch-512 step; 1,024 rows there took 0.3 s, a fifth of a 1,536-row epoch).
END_CHECK_MACS = 1 << 22

#: ``fit`` runs an epoch's steps in compiled runs of about this many seconds; between
#: them it reports progress and answers Ctrl-C (so within about this long).  Where an
#: epoch is cut changes no result; a Python round trip costs ~20 us per run.
SLICE_SECONDS = 0.2

#: Rows processed per call when ``forward``/``predict`` stream through a large X;
#: bounds the activation buffers allocated for inference.
PREDICT_CHUNK = 4096
#: A net keeps its evaluation buffers (``PREDICT_CHUNK`` rows of every layer's
#: activations at most) for its next ``predict``, ``score`` or validation only up to this
#: many bytes; bigger ones are allocated for each call and freed with it, where the
#: call's products cost far more than the allocation (784-1024-1024-10's, 64 MB at 4096
#: rows, are kept).
KEEP_EVAL_BYTES = 128 << 20


def _cache_writable():
    """Whether Numba finds a folder to cache the CPU kernels in: the one beside their
    source, ``NUMBA_CACHE_DIR`` or the user's cache folder (its own search, on a stand-in
    function of ``kernels/cpu``; True where that cannot be asked)."""
    try:
        from numba.core import caching
        impl = caching.FunctionCache._impl_class  # what @njit(cache=True) builds
        source = _os.path.join(_os.path.dirname(__file__), "kernels", "cpu", "checks.py")
        scope = {}
        exec(compile("def probe():\n    pass\n", source, "exec"), scope)
        impl(scope["probe"])
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return False
    except Exception:  # another Numba: its decorators will say
        return True
    return True


#: Numba on-disk cache for the CPU kernels (``cache=True``).  Safe: the kernels hold
#: no global state that changes between runs.  Read as the kernels are defined, when
#: ``fastdnn`` is imported, so it is set by the ``FASTDNN_CACHE`` environment variable:
#: ``0`` for no disk cache.  Where no folder is writable (a read-only install and home,
#: no ``NUMBA_CACHE_DIR``), Numba's decorators raised at ``import fastdnn`` (even
#: ``fastdnn --version`` printed their traceback); fastdnn then compiles without the
#: cache, saying so once.  A value that is no switch is raised by the first network
#: (:data:`CACHE_ERROR`): raised here, at import, it reached the command line as a
#: traceback, before the CLI could say it in one line.
try:
    CACHE, CACHE_ERROR = switch("FASTDNN_CACHE"), None
except ValueError as _exc:
    CACHE, CACHE_ERROR = False, str(_exc)
def _callers_stacklevel():
    """``warnings.warn``'s ``stacklevel`` (called from the caller of this) of the first
    frame outside fastdnn: the user's ``import fastdnn`` (``stacklevel=2`` named
    ``fastdnn/callbacks.py``, the first module to import this one).  The import
    machinery's frames are not counted, as ``warnings`` skips them."""
    import sys
    package = _os.path.dirname(_os.path.abspath(__file__)) + _os.sep
    level, frame = 1, sys._getframe(2)
    while frame is not None and (frame.f_code.co_filename.startswith(package)
                                 or "importlib" in frame.f_code.co_filename):
        if "importlib" not in frame.f_code.co_filename:
            level += 1
        frame = frame.f_back
    return level + 1


if CACHE and not _cache_writable():
    import warnings as _warnings
    _warnings.warn("fastdnn: no writable folder for Numba's cache (beside fastdnn's kernels, "
                   "NUMBA_CACHE_DIR, or the user's cache folder): every process compiles the "
                   "kernels again; set NUMBA_CACHE_DIR to a writable folder to keep them "
                   "(FASTDNN_CACHE=0 says this is meant)", RuntimeWarning,
                   stacklevel=_callers_stacklevel())
    CACHE = False

#: CUDA threads per block for 1-D launches and the tile width of the 2-D GEMM kernels
#: (a tile is TILE x TILE threads).  Tests lower them so tiny inputs span several blocks.
CUDA_THREADS_PER_BLOCK = 256
CUDA_TILE = 16

#: Largest register tile of the CUDA GEMM: each thread computes up to MICRO x MICRO
#: outputs, so a block covers (TILE*MICRO)^2.  Smaller products get a smaller register
#: tile (down to 1) so that they still fill the GPU (see ``kernels.cuda.launch.gemm_config``).
#: A block's two shared stages take ``2 * TILE * (TILE * MICRO + 4)`` elements, at most
#: 48 KB: 16 x 16 in float64 is refused.  At 8, float32 takes 254 registers a thread and
#: float64 spills (ptxas, sm_86 and sm_90).
CUDA_MICRO = 8

#: Cap on blocks per grid dimension.  Kernels loop over their work with grid strides,
#: so any cap is correct; tests lower it to exercise those loops.
CUDA_MAX_BLOCKS = 65535

#: Launch CUDA kernels with each device array's kernel parameters prepared once, not by
#: numba-cuda's bracket call, which redoes that work on every launch (14 against 50 us of
#: host time per GEMM launch on an H200 machine; see ``kernels.cuda.dispatch``).  Off: the
#: bracket call always, with the same results.
CUDA_PREPARED_LAUNCH = True

#: Training data at most this many bytes (X and targets) stays on the GPU for a whole
#: fit; larger data goes up in chunks each epoch.  ``None``: half the free GPU memory.
CUDA_DATA_BYTES = None
