"""Deterministic, thread-count-independent GEMM on top of SciPy's BLAS.

Why not ``np.dot`` with a threaded BLAS: OpenBLAS splits a product differently with
1 and 2 threads, and the last bits of the result change with it (measured: 32 of 294
float32 and 46 of 294 float64 shapes in ``benchmarks``' grid differ).  Its threaded
driver cuts the inner dimension into other chunks than its serial one: a remainder
between ``GEMM_Q`` and ``2 GEMM_Q`` is halved as ``(K + 1) / 2`` in
``driver/level3/level3_thread.c``, and as ``K / 2`` rounded up to the unroll in
``level3.c``.  fastdnn's results must not depend on the thread count, so here BLAS only
ever runs single-threaded and the split is ours: a big product's output columns are cut
into a fixed number of blocks, each block one BLAS call, run in a ``prange`` by as many
threads as the fit has.  Cutting columns (not rows) keeps each call's packing of the
shared operand small, as OpenBLAS' own threading does.

How many blocks: ``config.BLAS_BLOCKS``, by default the CPUs this process may run on
(:func:`cpu_count`), read at run time (:func:`prepare`), never the thread count.  The
count does change the last bits of some products: OpenBLAS' kernels handle a block's
last few columns with other instruction sequences (SkylakeX kernels, float64: 64x784 @
784x300 differs in 221 of 19,200 elements cut into 1 or 2 blocks; float32 agreed on the
shapes tried).  So results are the same for any ``n_threads`` on one machine; to get the
same bits on machines with other CPU counts, set ``config.BLAS_BLOCKS`` (or
``FASTDNN_BLAS_BLOCKS``) to one value on all of them.

Every product is written for row-major C-contiguous operands:

* ``matmul``     ``C = X @ Y``       (forward: ``Z = A_prev @ W``)
* ``matmul_tn``  ``C = X.T @ Y``     (weight gradient: ``dW = A_prev.T @ delta``)
* ``matmul_nt``  ``C = X @ Y.T``     (backprop: ``delta_prev = delta @ W.T``)

BLAS is column-major, so a row-major ``C = op(X) op(Y)`` is issued as the
column-major ``C^T = op(Y)^T op(X)^T``; a block of C's columns is a block of rows of
``C^T``, reached by offsetting the pointers.  The call goes through Numba's own
``numba_xxgemm`` helper (the one behind ``np.dot``, which takes its sizes by value and
reaches SciPy's ``cython_blas``), declared as an external symbol so that the kernels
stay cacheable on disk.

Where Intel MKL is installed and chosen (:func:`library`), the big products go to MKL
instead (:mod:`.mkl`), through a second symbol of the same signature,
:data:`BIG_GEMM_SYMBOL`, which :func:`prepare` binds once per process (to the helper
where MKL is not used); on AMD's Zen 4, to a second instance of SciPy's OpenBLAS on its
Haswell kernels (:mod:`.haswell`).  Which products are big is a rule on their shape alone
(:func:`_on_big`), so the bits never depend on timing or on the thread count.
"""
import ctypes
import os
import threading
import warnings

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import cfunc, prange, types
from numba.extending import intrinsic

from ... import config
from . import haswell, mkl
from .scalars import max2, min2
from .separate import separate
from .threads import blas_core, launch_pool, local_threads_setter
from .views import address, flat
from .pipeline import njit

#: Narrowest column block a split product is cut into (a product with at most this many
#: output columns is never split).
BLOCK = 128
#: Name of the int64 the kernels read the block count from (set by :func:`prepare`).
_BLOCKS_SYMBOL = "fastdnn_blas_blocks"
_blocks = ctypes.c_int64(1)
#: Name of the GEMM the kernels call for big products (bound by :func:`prepare`).
BIG_GEMM_SYMBOL = "fastdnn_big_xxgemm"
#: Names of the int64s the kernels read the big-product rule from (:func:`_on_big`): the
#: fewest multiply-adds, the shortest side of the output and the multiply-adds from
#: which a call stays on SciPy's BLAS again, of a float32 call, then of a float64 call.
_BIG_RULE_SYMBOLS = ("fastdnn_blas_big_macs32", "fastdnn_blas_big_side32",
                     "fastdnn_blas_big_most32", "fastdnn_blas_big_macs64",
                     "fastdnn_blas_big_side64", "fastdnn_blas_big_most64")
_big_rule = tuple(ctypes.c_int64(0) for _ in _BIG_RULE_SYMBOLS)
#: No bound: the rule's third number where big products have no upper size.
UNBOUNDED = int(np.iinfo(np.int64).max)
#: The rule of a dtype none of whose products go to the big-product GEMM.
NEVER = (UNBOUNDED, 0, UNBOUNDED)
#: The rule of a dtype all of whose products go there (``benchmarks/big_rule.py``).
EVERY = (0, 0, UNBOUNDED)
#: The values ``config.BLAS`` / ``FASTDNN_BLAS`` may take.
LIBRARIES = ("auto", "scipy", "mkl", "scipy-haswell")
#: Multiply-adds from which a product is split into column blocks run in parallel
#: (below: one call, no threads).
PARALLEL_MACS = 1 << 21

# OpenBLAS' AVX-512 cores (SkylakeX, Cooperlake, Sapphire Rapids: its kernel choice on
# Intel AVX-512 parts and on Zen 4) have a small-matrix path without packing, which a
# product takes while M*N*K <= 100**3 and op(A) is not transposed
# (kernel/x86_64/?gemm_small_kernel_permit_skylakex.c).  Just above that size the packed
# path was slower than two calls on the small path, each on half the columns
# (200x64 @ 64x100 float64: 45 -> 33 us; 128x64 @ 64x128 float32: 16.9 -> 12.7 us;
# Intel Xeon, SkylakeX kernels).  So a product a few times that size runs as a few such
# calls, one after the other; elsewhere (other cores, other BLAS) nothing changes.
# The split follows from the shape and the BLAS core only, never from the thread count.
# The kernels read it at run time (set by :func:`prepare`).
_SMALL_PATH_CORES = ("skylakex", "cooperlake", "sapphirerapids")
#: The small path's largest M*N*K per call.
SMALL_PATH_MACS = 100**3
#: Name of the int64 the kernels read the small path's limit from: :data:`SMALL_PATH_MACS`
#: where SciPy's OpenBLAS has such a core, else 0 (no small path, no split).
_SMALL_MACS_SYMBOL = "fastdnn_blas_small_macs"
_small_macs = ctypes.c_int64(0)
#: The most calls a product is cut into to reach the small path.
SMALL_PATH_SPLITS = 4

_gemm_c = types.ExternalFunction("numba_xxgemm", mkl.XXGEMM)
_big_gemm_c = types.ExternalFunction(BIG_GEMM_SYMBOL, mkl.XXGEMM)


def _no_local_threads():
    """A C function that sets nothing, for where OpenBLAS lacks the call (compiled only
    there: a ``cfunc`` compiles when defined, in every process)."""
    @cfunc(types.intc(types.intc))
    def no_local_threads(n):  # pragma: no cover - stands in where OpenBLAS lacks the call
        return 1
    return no_local_threads


def _register_local_threads():
    """Bind ``fastdnn_blas_local_threads`` to OpenBLAS' ``openblas_set_num_threads_local``
    (0.3.27+), or a no-op where it is missing.

    Its name says local, but in OpenBLAS' pthreads builds (SciPy's wheels among them) it
    sets the process-wide count (``driver/others/openblas_set_num_threads.c``).  So the
    kernels only ever set it to 1, never back: threads that each set 1 and restored what
    they had read left the process at 1 whenever two blocks ran at once.  The count is
    restored once, by :func:`.threads.limit_threads` around each call into the kernels."""
    fn = local_threads_setter()
    addr = (ctypes.cast(fn, ctypes.c_void_p).value if fn is not None
            else _no_local_threads().address)
    llvm.add_symbol("fastdnn_blas_local_threads", addr)


def _resolve_gemm():
    """Make Numba's helper look up ``sgemm``/``dgemm`` now, from Python; return the
    helper's address.

    The helper resolves them on first use under ``PyGILState_Ensure``; done first from
    a ``prange`` worker while the calling thread holds the GIL, that would deadlock.
    A 1 x 1 product of each kind, called through ctypes here, settles it.
    """
    from numba import _helperlib
    from numba.np.linalg import ensure_blas

    ensure_blas()
    c_ssize = ctypes.c_ssize_t
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char, ctypes.c_char, ctypes.c_char, c_ssize,
                          c_ssize, c_ssize, ctypes.c_void_p, ctypes.c_void_p, c_ssize,
                          ctypes.c_void_p, c_ssize, ctypes.c_void_p, ctypes.c_void_p,
                          c_ssize)(_helperlib.c_helpers["xxgemm"])
    for kind, dtype in ((b"s", np.float32), (b"d", np.float64)):
        a = np.ones(4, dtype=dtype)  # alpha, A, B, beta/C share one small buffer
        ptr = [a[i:].ctypes.data for i in range(4)]
        fn(kind, b"N", b"N", 1, 1, 1, ptr[0], ptr[1], 1, ptr[2], 1, ptr[3], ptr[3], 1)
    return _helperlib.c_helpers["xxgemm"]


def cpu_count():
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def blocks():
    """The column blocks a big product is cut into: ``config.BLAS_BLOCKS``, or the
    ``FASTDNN_BLAS_BLOCKS`` environment variable, or :func:`cpu_count`."""
    value, source = config.BLAS_BLOCKS, "fastdnn.config.BLAS_BLOCKS"
    if value is None:
        value, source = os.environ.get("FASTDNN_BLAS_BLOCKS"), "FASTDNN_BLAS_BLOCKS"
        if not value:
            return cpu_count()
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if not 1 <= count <= MAX_BLOCKS or isinstance(value, (bool, float)):
        raise ValueError(f"{source} must be an integer from 1 to {MAX_BLOCKS}, got {value!r}")
    return count


#: Most column blocks: the kernels read the count as an int64 (2**63 wrapped to -2**63
#: and ran as one block), and a block is never narrower than :data:`BLOCK` columns.
MAX_BLOCKS = 1 << 16


def _library_setting():
    """``(value, source)`` of the BLAS setting: ``config.BLAS``, else ``FASTDNN_BLAS``,
    else ``"auto"``."""
    if config.BLAS is not None:
        return config.BLAS, "fastdnn.config.BLAS"
    return os.environ.get("FASTDNN_BLAS") or "auto", "FASTDNN_BLAS"


def library():
    """The BLAS the kernels' products run on: ``"mkl"``, ``"scipy"`` or
    ``"scipy-haswell"``.

    From ``config.BLAS``, else the ``FASTDNN_BLAS`` environment variable, else
    ``"auto"``: Intel MKL where it is installed (``pip install 'fastdnn[mkl]'``) and the
    CPU is Intel's; on AMD's Zen 4, SciPy's BLAS with its big products on a second
    instance of it, on its Haswell kernels (``"scipy-haswell"``, :mod:`.haswell`); else
    SciPy's BLAS (OpenBLAS on SciPy's wheels).  MKL is not chosen by itself on other
    CPUs: it was measured faster on an Intel Xeon (:mod:`.mkl`), and not measured
    elsewhere.  Read once per process, by the first :func:`prepare`.

    Raises
    ------
    ValueError
        If the setting is not one of :data:`LIBRARIES`.
    """
    value, source = _library_setting()
    if value not in LIBRARIES:
        raise ValueError(f"{source} must be one of {', '.join(map(repr, LIBRARIES))}, "
                         f"got {value!r}")
    if value == "auto":
        if mkl.cpu_vendor() == "GenuineIntel" and mkl.find() is not None \
                and not _mkl_unusable:
            return "mkl"
        return "scipy-haswell" if haswell.wanted(blas_core()) else "scipy"
    return value


_prepared = None  # the library bound, once prepared
#: Under "auto", the MKL found did not load or lacks what fastdnn calls (an MKL older
#: than 2024 on the library path): SciPy's BLAS then, with a warning, not a failure of
#: every CPU network.
_mkl_unusable = False


def big_rule():
    """``{dtype name: (fewest multiply-adds, shortest output side, multiply-adds from
    which a call stays on SciPy's BLAS)}``: the calls that go to the big-product GEMM now
    (:func:`_on_big`; :data:`NEVER` for none)."""
    values = [v.value for v in _big_rule]
    return {"float32": tuple(values[:3]), "float64": tuple(values[3:])}


def _set_big_rule(chosen):
    """The products that go to the big-product GEMM of the library ``chosen``
    (:func:`_on_big`); none where that GEMM is Numba's helper itself, or the Haswell
    instance not yet loaded, and only float32 ones on that instance
    (:data:`.haswell.DTYPES`)."""
    rules = {"mkl": dict.fromkeys(("float32", "float64"),
                                  (config.MKL_MIN_MACS, config.MKL_MIN_SIDE, UNBOUNDED))}
    if haswell.loaded():
        rules["scipy-haswell"] = dict.fromkeys(haswell.DTYPES, (haswell.MIN_MACS,
                                                                haswell.MIN_SIDE,
                                                                haswell.MAX_MACS))
    rule = rules.get(chosen, {})
    values = [v for dtype in ("float32", "float64") for v in rule.get(dtype, NEVER)]
    for setting, value in zip(_big_rule, values):
        setting.value = value


def _admit(sizes, dtype):
    """Load the Haswell instance, if bound and not yet loaded, for a network with layer
    widths ``sizes`` and parameters of ``dtype`` (None: any) that can make a product it
    takes: one of :data:`.haswell.DTYPES` with an output side of ``haswell.MIN_SIDE`` or
    more, and each side of a product's output is a layer's width or the batch's rows.
    Its load took 15 ms of a process's set-up (AMD EPYC), which the nets of the course
    (no layer of 256) never use.  Whether a network's products take it still follows
    from its shapes and dtype alone.  Under ``"auto"``, a copy that does not load leaves
    SciPy's instance alone for this process."""
    global _prepared
    if _prepared == "scipy-haswell" and not haswell.loaded() and sizes \
            and max(sizes) >= haswell.MIN_SIDE \
            and (dtype is None or np.dtype(dtype).name in haswell.DTYPES):
        try:
            haswell.load()
        except ImportError:  # under auto only: asked for by name, prepare loaded it
            _prepared = "scipy"  # haswell.wanted is False now, so library() agrees


_preparing = threading.RLock()


def prepare(sizes=(), dtype=None):
    """One-time set-up before the first CPU kernel runs (idempotent, ~0.1 s), and for
    each network's, with the layer widths ``sizes`` (input first) and its ``dtype``.

    Binds the GEMM the kernels call to :func:`library`'s choice, and the per-thread BLAS
    setting, and starts Numba's thread pool: a cached kernel that reaches the ``prange``
    below, loaded from disk into a process where the pool was never started, is one of
    the paths where Numba has been seen to crash.  Not done at import, so that importing
    fastdnn (or choosing ``device="cuda"``) starts no threads.  Under ``"auto"``, the
    Haswell instance loads with the first network wide enough to use it (:func:`_admit`).

    Raises
    ------
    ImportError
        If MKL is asked for and not installed, or the Haswell instance is asked for by
        name (``"scipy-haswell"``) and does not load (under ``"auto"``, SciPy's instance
        alone takes its products).
    RuntimeError
        If the setting names another library than the one this process has bound.
    """
    with _preparing:  # nets made in several threads at once bind one library
        _prepare(sizes, dtype)


def _prepare(sizes, dtype):
    global _prepared, _mkl_unusable
    _blocks.value = blocks()
    chosen = library()
    if _prepared is not None:
        if chosen != _prepared:
            raise RuntimeError(
                f"fastdnn's CPU kernels run on {_prepared!r} in this process; the BLAS "
                f"is bound once, by the first CPU network, so set fastdnn.config.BLAS "
                f"or FASTDNN_BLAS to {chosen!r} before that")
        _admit(sizes, dtype)
        _set_big_rule(_prepared)
        return
    helper = _resolve_gemm()
    big = helper
    if chosen == "mkl":
        try:
            big = mkl.gemm_address()
        except ImportError as exc:
            if _library_setting()[0] != "auto":  # asked for by name: say why not
                raise
            _mkl_unusable = True
            warnings.warn(f"{exc}; the CPU kernels run on SciPy's BLAS instead "
                          "(FASTDNN_BLAS=scipy says so without this warning)", RuntimeWarning,
                          stacklevel=4)
            chosen = library()
    if chosen == "scipy-haswell":
        if _library_setting()[0] == chosen:  # asked for by name: loaded now, or say why
            haswell.load()
        big = haswell.gemm_address()  # runs once the instance is loaded
    _small_macs.value = SMALL_PATH_MACS if blas_core() in _SMALL_PATH_CORES else 0
    launch_pool()
    _register_local_threads()
    llvm.add_symbol(BIG_GEMM_SYMBOL, big)
    for symbol, setting in zip(_BIG_RULE_SYMBOLS, _big_rule):
        llvm.add_symbol(symbol, ctypes.addressof(setting))
    llvm.add_symbol(_BLOCKS_SYMBOL, ctypes.addressof(_blocks))
    llvm.add_symbol(_SMALL_MACS_SYMBOL, ctypes.addressof(_small_macs))
    _prepared = chosen
    _admit(sizes, dtype)
    _set_big_rule(_prepared)


# Bound by _register_local_threads (in prepare) before any kernel using it compiles or loads.
_set_local_threads = types.ExternalFunction("fastdnn_blas_local_threads", types.intc(types.intc))


def _setting(symbol):
    """An intrinsic that loads the int64 :func:`prepare` binds to ``symbol``: an external
    symbol, resolved when a kernel is compiled or loaded from the cache, so the value is
    read at run time and never frozen into a cached kernel."""
    @intrinsic
    def read(typingctx):
        def codegen(context, builder, sig, args):
            module = builder.module
            var = module.globals.get(symbol)
            if var is None:
                var = ir.GlobalVariable(module, ir.IntType(64), symbol)
            return builder.load(var)
        return types.int64(), codegen
    return read


#: The block count (:func:`blocks`).
_blocks_setting = _setting(_BLOCKS_SYMBOL)
#: The small path's limit (:data:`_SMALL_MACS_SYMBOL`).
_small_path_macs = _setting(_SMALL_MACS_SYMBOL)
(_big_macs32, _big_side32, _big_most32,
 _big_macs64, _big_side64, _big_most64) = map(_setting, _BIG_RULE_SYMBOLS)


@njit(cache=config.CACHE, inline="always")
def _on_big(M, N, K, itemsize):
    """Whether a column-major ``M x N x K`` call on elements of ``itemsize`` bytes goes to
    the big-product GEMM: at least so many multiply-adds and fewer than the rule's
    most, and both sides of its output at least so long, as :func:`big_rule` says for
    its dtype (``config.MKL_MIN_MACS`` and ``config.MKL_MIN_SIDE`` with MKL, no most;
    on the Haswell instance, :data:`.haswell.MIN_MACS` up to :data:`.haswell.MAX_MACS`;
    never, where the GEMM is SciPy's)."""
    macs = M * N * K
    if itemsize == 4:
        return _big_macs32() <= macs < _big_most32() and min2(M, N) >= _big_side32()
    return _big_macs64() <= macs < _big_most64() and min2(M, N) >= _big_side64()


# The BLAS transpose flags, read from an array at run time, and the column step from
# the array: passed as constants, Numba typed them as literals and compiled _product
# and its parallel region once per distinct constant -- twice or three times, ~1 s
# each of a cold start.
_FLAGS = np.array([ord("N"), ord("T")], dtype=np.int64)


@njit(cache=config.CACHE, inline="always")
def _column_step(Y):
    """Elements between neighbouring columns of the C-ordered ``Y`` (1), as a run-time value."""
    return Y.strides[1] // Y.itemsize


# BLAS's kind letters as integer globals (compile-time constants): ``ord("s")`` in a
# kernel compiled Numba's unicode ord, 0.2 s of every cold start.
_SINGLE, _DOUBLE = ord("s"), ord("d")
# ``[alpha, beta]`` of a product that overwrites C, and of one added onto it.
_ONE_ZERO32 = np.array([1.0, 0.0], dtype=np.float32)
_ONE_ZERO64 = np.array([1.0, 0.0], dtype=np.float64)
_ONE_ONE32 = np.array([1.0, 1.0], dtype=np.float32)
_ONE_ONE64 = np.array([1.0, 1.0], dtype=np.float64)


@njit(cache=config.CACHE, inline="always")
def _gemm(flag_a, flag_b, M, N, K, A, lda, B, ldb, C, ldc, scalars, big):
    """Column-major ``C = alpha op(A) op(B) + beta C``, M x N x K, as one single-threaded
    BLAS call (the BLAS count set to 1 first, and left there: see
    :func:`_register_local_threads`).

    ``scalars``, an array of C's dtype (C's own type, so that one compiled product serves
    all three): empty for ``C = op(A) op(B)``, one element (its value unread) for
    ``C += op(A) op(B)`` (:func:`matmul_add`), or ``[alpha, beta]``
    (:func:`matmul_tn_add`).  ``big``: :func:`_on_big` of the call, which goes to the
    big-product GEMM if so.

    One call site per GEMM, on the operands' addresses (:func:`.views.address`): with a
    call for each ``[alpha, beta]`` array, each on ``ctypes`` objects, and ``_on_big``
    inlined here and again in :func:`_serial_product`, :func:`_product` took 0.56 s to
    compile, now 0.40 s (of every cold start's forward pass; AMD EPYC)."""
    _set_local_threads(1)
    kind = _SINGLE if C.itemsize == 4 else _DOUBLE
    if scalars.size == 2:
        alpha, beta = address(scalars, 0), address(scalars, 1)
    elif C.itemsize == 4:
        ab = _ONE_ONE32 if scalars.size == 1 else _ONE_ZERO32
        alpha, beta = address(ab, 0), address(ab, 1)
    else:
        ab = _ONE_ONE64 if scalars.size == 1 else _ONE_ZERO64
        alpha, beta = address(ab, 0), address(ab, 1)
    a, b, c = address(A, 0), address(B, 0), address(C, 0)
    if big:
        _big_gemm_c(kind, flag_a, flag_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)
    else:
        _gemm_c(kind, flag_a, flag_b, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc)


@njit(cache=config.CACHE, inline="always")
def splits(rows, cols, K):
    """Whether a ``rows x cols x K`` product is cut into parallel column blocks: by its
    shape alone, never by the thread count (the unsplit path may take BLAS' small-matrix
    path, whose sums differ)."""
    return rows * cols * K >= PARALLEL_MACS and cols > BLOCK


@njit(cache=config.CACHE, inline="always")
def n_blocks(cols, most):
    """Column blocks for a product with ``cols`` output columns that :func:`splits`:
    ``most`` (:func:`blocks`), fewer where blocks would be narrower than :data:`BLOCK`.

    One block per CPU, not more: each block re-packs the whole shared operand.  Two
    blocks against eight (the fixed count before) on 2 CPUs, float32 (Intel Xeon,
    SkylakeX kernels, medians of 5): 784-1024-1024-10's five products at batch 256 8.45
    against 9.32 ms (NumPy's 2-thread BLAS: 8.03); 1024-4096-4096-1024's eight at batch
    512 231 against 249 ms (NumPy: 223).  On an AMD EPYC (Zen 4, 2 CPUs), two blocks
    against four: the first net's eight products 14.2 against 14.3 ms (medians of 15),
    the second net's whole step 1.02x faster in two.
    """
    return max2(1, min2(most, (cols + BLOCK - 1) // BLOCK))


# Why an OpenMP region, whose end waits for a worker the scheduler has not run yet, and
# not a helper thread that is never waited for unless it has started a block (as the
# two-shard steps' helper, .pair): tried, the caller publishing each product and taking
# any block a spinning helper had not claimed (the same calls, the same bits).  The
# eight products of 784-1024-1024-10's step at batch 256, with ReLUs between (a
# prototype, AMD EPYC, 2 cores): alone 16.6K against this region's 16.2K samples/s
# (medians of 15 alternated rounds, both spread over 13-18K: the host's noise);
# beside one busy process 7.6-8.3K against 8.8-9.4K (the helper spinning
# through the serial work between products: three busy threads on two cores), and
# 8.6-9.5K against 8.8-9.3K with it sleeping after 0.08 ms without a product.
# Nor do finer blocks claimed as threads come free help there.  Beside one busy process
# (a Python loop) a 256x1024 @ 1024x1024 product took 5.6 ms on one thread and 5.8 ms
# on two (2.8 quiet); with the region's threads claiming 4 or 8 blocks from a counter,
# 5.8 and 6.6; spinning without sleep, 6.9-7.4; a helper claiming 2, 4 or 8 blocks,
# with no barrier, 5.8, 7.0 and 7.8 (AMD EPYC, 2 cores, medians of 300, 2026-11-28).
# The scheduler's time slices are as long as a product: whichever thread it parks
# holds the product's end.  A whole epoch of 784-1024-1024-10 there: 2 threads 420 ms,
# 1 thread 402, JAX 397 (the same busy process; quiet, 215, 409 and 228).

# Declared, so compiled only when a product is first big enough (0.5 s of a cold start
# whose products are all small: the parallel region's compile, Intel Xeon).
@separate(returns=types.none)
@njit(cache=config.CACHE, parallel=True)
def _blocks_parallel(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc, nb,
                     scalars):
    # Each block writes its own columns of C: no shared output, no race.
    width = (cols + nb - 1) // nb
    for blk in prange(nb):
        j0 = blk * width
        if j0 >= cols:  # ceil-wide blocks can leave the last ones empty
            continue
        M = min2(width, cols - j0)
        _gemm(flag_a, flag_b, M, rows, K, Yf[j0 * ystride:], lda, Xf, ldb, Cf[j0:], ldc,
              scalars, _on_big(M, rows, K, Cf.itemsize))


@njit(cache=config.CACHE, inline="always")
def small_path_calls(flag_a, rows, cols, K, limit, most):
    """Calls (equal column blocks) that bring a product to at most ``limit`` multiply-adds
    each (:data:`SMALL_PATH_MACS` or 0, set by :func:`prepare`), or 1 where that needs
    more than ``most`` calls, where ``op(A)`` is transposed, or where ``limit`` is 0."""
    if limit == 0 or flag_a == _FLAGS[1] or rows * cols * K <= limit:
        return 1
    width = limit // (rows * K)  # the widest block on the small path
    if width == 0:
        return 1
    calls = (cols + width - 1) // width
    # Equal blocks of ceil(cols / calls) columns are no wider than ``width``.
    return calls if calls <= most else 1


@njit(cache=config.CACHE, inline="always")
def _serial_product(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc,
                    scalars):
    """:func:`_product` on the calling thread: one BLAS call, or a few on the small path."""
    big = _on_big(cols, rows, K, Cf.itemsize)
    calls = 1 if big else small_path_calls(flag_a, rows, cols, K, _small_path_macs(),
                                           SMALL_PATH_SPLITS)
    width = (cols + calls - 1) // calls
    for blk in range(calls):  # one call where big: the product is the block
        j0 = blk * width
        _gemm(flag_a, flag_b, min2(width, cols - j0), rows, K, Yf[j0 * ystride:], lda, Xf,
              ldb, Cf[j0:], ldc, scalars, big)


#: Outputs narrower than this many columns are cut into row blocks (:func:`splits_rows`).
ROW_SPLIT_COLS = 32


@njit(cache=config.CACHE, inline="always")
def splits_rows(rows, cols, K):
    """Whether a ``rows x cols x K`` product with a narrow output (fewer than
    :data:`ROW_SPLIT_COLS` columns: :func:`splits` never cuts it) is cut into parallel
    row blocks instead: by its shape alone.

    A classifier's output layer: 256x1024 @ 1024x10 and its weight gradient
    1024x256 @ 256x10 took 99 and 129 us on one core, 2.7% of a 784-1024-1024-10 step at
    batch 256; in two row blocks 42-54 and 41-52 us (Intel Xeon).  Not for outputs up to
    :data:`BLOCK` wide: the 128-wide layers of ``fastdnn train``'s net, evaluated on
    1,400 rows, then reached this parallel region, whose compile made a cold ``fastdnn
    train`` 6.16 -> 7.46 s (medians of 3).
    """
    return rows * cols * K >= PARALLEL_MACS and cols < ROW_SPLIT_COLS and rows > BLOCK


def parallel_callees(sizes, rows):
    """Names of the parallel regions (``"_blocks_parallel"``, ``"_row_blocks_parallel"``)
    that the products of a pass of a net of layer ``sizes`` over each count of ``rows``
    reach: its forward products, weight gradients and backprop (as :func:`matmul`,
    :func:`matmul_tn` and :func:`matmul_nt` cut them)."""
    cuts = getattr(splits, "py_func", splits), getattr(splits_rows, "py_func", splits_rows)
    names = set()
    for n in rows:
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes = [(n, fan_out, fan_in), (fan_in, fan_out, n)]
            if i > 0:
                shapes.append((n, fan_in, fan_out))
            for shape in shapes:
                for name, cut in zip(("_blocks_parallel", "_row_blocks_parallel"), cuts):
                    if cut(*shape):
                        names.add(name)
                        break
    return sorted(names)


# Declared, like _blocks_parallel: compiled only when a product first needs it.
@separate(returns=types.none)
@njit(cache=config.CACHE, parallel=True)
def _row_blocks_parallel(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc,
                         nb, scalars):
    # Each block writes its own rows of C: no shared output, no race.  In BLAS' column-
    # major terms a block of C's rows is a block of the columns of C^T and of op(X)^T:
    # X's flat operand moves by a column of ldb elements where it is not transposed, by
    # one element where it is.
    height = (rows + nb - 1) // nb
    for blk in prange(nb):
        i0 = blk * height
        if i0 >= rows:
            continue
        x0 = i0 * ldb if flag_b == _FLAGS[0] else i0
        _serial_product(flag_a, flag_b, min2(height, rows - i0), cols, K, Yf, ystride, lda,
                        Xf[x0:], ldb, Cf[i0 * ldc:], ldc, scalars)


@separate
@njit(cache=config.CACHE)
def _product(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc, scalars):
    """Row-major ``C (rows x cols) = op(X) op(Y)`` over flat operands, split by columns,
    or by rows where the output is narrow (:func:`splits_rows`); ``scalars`` as in
    :func:`_gemm` (empty: ``C`` is overwritten)."""
    if splits(rows, cols, K):
        nb = n_blocks(cols, _blocks_setting())
        _blocks_parallel(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc, nb,
                         scalars)
    elif splits_rows(rows, cols, K):
        nb = n_blocks(rows, _blocks_setting())
        _row_blocks_parallel(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc,
                             nb, scalars)
    else:
        _serial_product(flag_a, flag_b, rows, cols, K, Yf, ystride, lda, Xf, ldb, Cf, ldc,
                        scalars)


@separate
@njit(cache=config.CACHE)
def matmul(X, Y, C):
    """``C = X @ Y`` (X: m x k, Y: k x n)."""
    Cf = flat(C)
    _nn(X, Y, Cf, Cf[:0])


@separate
@njit(cache=config.CACHE)
def matmul_add(X, Y, C):
    """``C += X @ Y`` (X: m x k, Y: k x n), each block one BLAS call with beta 1: the
    forward pass's product added onto the bias rows (``dense.dense_forward``)."""
    Cf = flat(C)
    _nn(X, Y, Cf, Cf[:1])


@njit(cache=config.CACHE, inline="always")
def _nn(X, Y, Cf, scalars):
    m, k = X.shape
    n = Y.shape[1]
    _product(_FLAGS[0], _FLAGS[0], m, n, k, flat(Y), _column_step(Y), n,
             flat(X), k, Cf, n, scalars)


@separate
@njit(cache=config.CACHE)
def matmul_tn(X, Y, C):
    """``C = X.T @ Y`` (X: m x k, Y: m x n, C: k x n)."""
    Cf = flat(C)
    _tn(X, Y, Cf, Cf[:0])


@separate(returns=types.none)
@njit(cache=config.CACHE)
def matmul_tn_add(X, Y, C, scalars):
    """``C = alpha X.T @ Y + beta C`` with ``scalars = [alpha, beta]`` (a 1-D array of C's
    dtype; X: m x k, Y: m x n, C: k x n), split as :func:`matmul_tn`, each block one
    BLAS call: the weight gradient's product added straight onto the weights
    (``train._fused_batch_sgd_step``)."""
    _tn(X, Y, flat(C), scalars)


@njit(cache=config.CACHE, inline="always")
def _tn(X, Y, Cf, scalars):
    m, k = X.shape
    n = Y.shape[1]
    _product(_FLAGS[0], _FLAGS[1], k, n, m, flat(Y), _column_step(Y), n,
             flat(X), k, Cf, n, scalars)


#: Below this inner dimension OpenBLAS refuses a transposed ``op(A)`` its small-matrix
#: path (the permit rule quoted at :data:`SMALL_PATH_MACS`).
SMALL_PATH_MIN_K_TRANSPOSED = 32


@separate
@njit(cache=config.CACHE)
def matmul_nt(X, Y, C):
    """``C = X @ Y.T`` (X: m x n, Y: k x n, C: m x k).

    Where the BLAS has the small-matrix path but refuses it this product (``n`` below
    :data:`SMALL_PATH_MIN_K_TRANSPOSED`: the backprop through a narrow layer, such as
    the output layer), ``Y.T`` is copied (``k * n`` elements) and the product runs as
    :func:`matmul`: 200x10 @ 10x100 float64 12.3 -> 7.6 us, 128x10 @ 10x128 9.3 -> 5.5 us
    (Intel Xeon, SkylakeX kernels).
    """
    m, n = X.shape
    k = Y.shape[0]
    Cf = flat(C)
    if (_small_path_macs() > 0 and n < SMALL_PATH_MIN_K_TRANSPOSED
            and not _on_big(k, m, n, C.itemsize)):
        # Inlined, not through matmul: a call made a cold start compile matmul (0.3 s)
        # for this product alone.
        _nn(X, Y.T.copy(), Cf, Cf[:0])
        return
    _product(_FLAGS[1], _FLAGS[0], m, k, n, flat(Y), n, n, flat(X), n, Cf,
             k, Cf[:0])
