"""A second instance of SciPy's OpenBLAS, on its Haswell kernels, for the big products on
AMD's Zen 4.

Why: SciPy's OpenBLAS takes its SkylakeX (AVX-512) kernels on Zen 4, which has AVX-512;
its Haswell (AVX2) kernels ran the big products faster there.  fastdnn's split products
of 784-1024-1024-10's second layer at batch 256, SkylakeX against Haswell (AMD EPYC, 2
cores, three alternated pairs of processes): nn 185-188 against 197 GFLOP/s, tn 192-193
against 201-206, nt 180-183 against 195-197; a whole training step 1.048x faster, and of
1024-4096-4096-1024 at batch 512 1.062x (``benchmarks/ab_trees.py src src --env-after
OPENBLAS_CORETYPE=Haswell``, 5 rounds).  But only the SkylakeX kernels have OpenBLAS'
small-matrix path, and with the Haswell core process-wide the small nets ran slower:
16-32-32-32-2 at batch 64 0.67x, 64-128-128-10 online 0.22x.

So the small products stay on SciPy's instance, and the big float32 ones (those with at
least :data:`MIN_MACS` multiply-adds but fewer than :data:`MAX_MACS`, and both sides of
their output at least :data:`MIN_SIDE`: the rule of :func:`.blas._on_big`) go to a second
instance of the same library file, loaded from a copy in memory (Linux's ``memfd``) with
``OPENBLAS_CORETYPE=Haswell`` and one thread, both set for its load only.  It loads with the
first float32 network that has a layer :data:`MIN_SIDE` wide or wider (:func:`.blas.prepare`):
smaller nets, whose products never reach it, are spared its load, 15 ms of each process's
set-up (110 -> 95 ms, medians of 7, AMD EPYC).  Single calls, Haswell against SkylakeX: e's
blocks with an inner dimension of 1024 6-7% faster, of 784 and 256 the same; 256^3 the
same, 256x128x512 5% slower and 128^3 2.5% slower: hence the rule's floor.

Where: AuthenticAMD, CPU family 25 (Zen 3 and 4; only Zen 4 has AVX-512) with AVX-512,
where SciPy's OpenBLAS chose SkylakeX, on Linux, unless ``OPENBLAS_CORETYPE`` is set
(the user's choice of kernels stands).  Zen 5 (family 26, full-width AVX-512 units) was
not measured and keeps SciPy's choice.  :func:`.blas.library` calls the choice
``"scipy-haswell"``.
"""
import ctypes
import functools
import os
import shutil
import sys
import threading

from . import mkl, threads

#: Fewest multiply-adds of a product (one column block) that runs on the Haswell kernels.
MIN_MACS = 1 << 26
#: Multiply-adds from which a block runs on SciPy's instance (its SkylakeX kernels) again:
#: on a busy host Haswell's kernels lost more on such products than they gained on a
#: quiet one.  1024-4096-4096-1024 at batch 512, whose blocks have 2**30 multiply-adds or
#: more, trained 1.12x and 1.14x as fast on SkylakeX's kernels in two busy quarter hours
#: (medians of 100 and 60 pairs of alternated epochs, 83% and 93% of them faster;
#: 1,310-1,710 ms an epoch), and 0.97x as fast in a quieter one (60 pairs, 22% faster;
#: 1,070-1,210 ms; ``benchmarks/paired_epochs.py``, AMD EPYC, 2026-11-28).  Below the
#: bound, 784-1024-1024-10 at batch 256 (blocks of 2**27 at most) kept its gain: 1.04x as
#: fast on Haswell's (300 pairs: 1.05-1.07x in the quieter minutes, 0.93-0.98x in the
#: busiest).  Two later runs disagreed: 0.90x and 0.965x (100 and 200 pairs), lost in
#: their busy minutes.  A third, with another process busy beside it for most of its 240
#: pairs (load 1.1-3.8, 2026-11-28 21:19-21:25), gave 1.053x, and 1.02-1.06x in each of
#: its six segments of 40 pairs, so e stays on Haswell's kernels.  Single products at
#: batch 256 with blocks of 2**29 ran 0.79-1.02x as fast on Haswell's kernels (11 of 12
#: below 0.94x), e's 0.92-1.13x (``benchmarks/big_rule.py``, two runs).
MAX_MACS = 1 << 29
#: Fewest rows and columns of its output.
MIN_SIDE = 256
#: The dtypes whose big products run on it.  Not float64: on the products of layers
#: 784x1024, 1024x4096 and 4096x1024 at batches 256 and 512 (18), Haswell's DGEMM took
#: a median 1.036x SkylakeX's time (14 slower), where its SGEMM took 0.961x (2 slower;
#: ``benchmarks/big_rule.py``, AMD EPYC, medians of 5-7 alternated timings).
DTYPES = ("float32",)

_CORE = "Haswell"


@functools.lru_cache(maxsize=None)
def _cpu(cpuinfo="/proc/cpuinfo"):
    """``(family, flags)`` of the first CPU in Linux's ``cpuinfo`` (``(0, set())`` where the
    OS does not say)."""
    family, flags = 0, set()
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "cpu family" and not family:
                    family = int(value.strip() or 0)
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if family and flags:
                    break
    except (OSError, ValueError):
        pass
    return family, flags


def wanted(core):
    """Whether this CPU takes the big products to the Haswell kernels, SciPy's OpenBLAS
    having chosen ``core`` (:func:`.threads.blas_core`): see the module docstring."""
    family, flags = _cpu()
    return (sys.platform.startswith("linux") and hasattr(os, "memfd_create")
            and mkl.cpu_vendor() == "AuthenticAMD" and family == 25 and "avx512f" in flags
            and core == "skylakex" and not os.environ.get("OPENBLAS_CORETYPE")
            and _failure is None)


_lib = None
_failure = None  # why the instance did not load, once it did not: not tried again
_loading = threading.Lock()  # networks may be made on several threads
#: The addresses of the instance's ``[scipy_]cblas_sgemm`` and ``[scipy_]cblas_dgemm``, which
#: :func:`gemm_address`'s function reads at each call: null until :func:`load`.
_gemms = (ctypes.c_void_p * 2)()


def loaded():
    """Whether the instance is loaded (and :func:`gemm_address`'s function runs on it)."""
    return _lib is not None


def load():
    """The second instance, loaded once: a copy of SciPy's OpenBLAS in memory, on its
    Haswell kernels, with one thread; then :func:`gemm_address`'s function calls it.

    Raises
    ------
    ImportError
        If SciPy's OpenBLAS is not found, does not load again, or does not take the
        Haswell kernels.
    """
    global _failure
    with _loading:
        if _lib is None and _failure is None:
            try:
                _load()
            except (ImportError, OSError) as exc:
                _failure = exc
    if _failure is not None:
        raise ImportError(f"OpenBLAS' Haswell instance is not available: {_failure}")
    return _lib


def _load():
    """:func:`load`'s work: the copy in memory, loaded, checked and set to one thread."""
    global _lib
    path = threads.scipy_blas_path()
    if path is None:
        raise ImportError("SciPy's OpenBLAS (scipy.libs) was not found")
    fd = os.memfd_create("fastdnn-openblas-haswell")
    try:
        with open(path, "rb") as source, open(fd, "wb", closefd=False) as copy:
            shutil.copyfileobj(source, copy)
        saved = {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE",
                                                          "OPENBLAS_NUM_THREADS")}
        os.environ.update(OPENBLAS_CORETYPE=_CORE, OPENBLAS_NUM_THREADS="1")
        try:  # its own instance: RTLD_LOCAL, so nothing else binds to its symbols
            lib = ctypes.CDLL(f"/proc/self/fd/{fd}", mode=os.RTLD_LOCAL)
        except OSError as exc:
            raise ImportError(f"a second copy of {path} did not load: {exc}") from exc
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    finally:
        os.close(fd)  # the loaded library keeps its mapping
    # SciPy's wheels from 1.14 on ship scipy-openblas, its symbols prefixed "scipy_";
    # those of SciPy 1.11-1.13 (libopenblasp-r0-*.so) the plain names.
    prefix = next((p for p in ("scipy_", "") if all(
        hasattr(lib, p + name) for name in ("openblas_get_corename",
                                            "openblas_set_num_threads", "cblas_sgemm",
                                            "cblas_dgemm"))), None)
    if prefix is None:
        raise ImportError(f"{path} is not the OpenBLAS of SciPy's wheels")
    corename = getattr(lib, prefix + "openblas_get_corename")
    corename.restype = ctypes.c_char_p
    if corename().decode("ascii", "replace").strip().lower() != _CORE.lower():
        raise ImportError(f"a second copy of {path} did not take the {_CORE} kernels")
    getattr(lib, prefix + "openblas_set_num_threads")(1)  # no one else calls this instance
    for i, name in enumerate(("cblas_sgemm", "cblas_dgemm")):
        _gemms[i] = ctypes.cast(getattr(lib, prefix + name), ctypes.c_void_p).value
    _lib = lib  # last: loaded() says so once the addresses are in place


_engine = None


def gemm_address():
    """Address of a C function with :data:`.mkl.XXGEMM`'s signature that runs the second
    instance's ``scipy_cblas_?gemm`` (32-bit sizes) once :func:`load` has run.  It reads
    their addresses at each call, so it can be bound before the instance loads; called
    before, it would jump to null (:func:`.blas._set_big_rule` sends it nothing)."""
    global _engine
    if _engine is None:
        size = ctypes.sizeof(ctypes.c_void_p)
        _engine = mkl.adapter(ctypes.addressof(_gemms), ctypes.addressof(_gemms) + size,
                              index_bits=32, indirect=True)  # kept: it owns the code
    return _engine.get_function_address("xxgemm")
