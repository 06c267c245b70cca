"""Intel MKL's GEMM, for the CPU kernels' products where it is installed (``fastdnn[mkl]``).

Why: on an Intel Xeon with AVX-512 (Sapphire Rapids class, 2 cores) MKL's sequential
SGEMM ran the eight products of a 784-1024-1024-10 training step at batch 256 in 8.5-8.9
against OpenBLAS' 10.3-10.9 ms, and those of 1024-4096-4096-1024 at batch 512 in 196-218
against 247-255 ms (two column blocks, one per core, as fastdnn cuts them; medians of 5).
The kernels' big products call :data:`.blas.BIG_GEMM_SYMBOL`, which :mod:`.blas` binds to
Numba's BLAS helper or, through :func:`gemm_address`, to MKL.

What fastdnn asks of MKL, set when it loads the library and only where the user has not
set it (``MKL_THREADING_LAYER``, ``MKL_CBWR``) and no one has initialised MKL before:

* the sequential threading layer: fastdnn's products are already cut into column blocks
  run by Numba's threads.  MKL's own threads beside Numba's OpenMP pool made the
  784-1024-1024-10 step 3.7x slower (32 against 8.6 ms, each product one 2-thread MKL
  call), the two pools spinning against each other;
* conditional numerical reproducibility in its strict mode (``MKL_CBWR_AUTO |
  MKL_CBWR_STRICT``): results that do not depend on the operands' alignment (measured:
  no cost on the products above).

Each call also sets MKL's thread count for the calling thread to 1 and restores it, so
the product is serial even where MKL was initialised threaded by someone else.
"""
import ctypes
import ctypes.util
import functools
import glob
import os
import site
import sys

import llvmlite.binding as llvm
from llvmlite import ir
from numba import types

# Values from MKL's mkl_service.h / mkl_cblas.h.
_THREADING_SEQUENTIAL = 1
_CBWR_AUTO, _CBWR_STRICT = 2, 0x10000
_COL_MAJOR, _NO_TRANS, _TRANS = 102, 111, 112

_lib = None


def find():
    """Path of MKL's single dynamic library (``libmkl_rt``), or ``None``.

    Looked for where the ``mkl`` wheel puts it (``<prefix>/lib``: the environment's, the
    base Python's, or the user's, for ``pip install --user``), then on the system's
    library path.
    """
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, site.USER_BASE or sys.prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so*")))
        if found:
            return found[0]
    return ctypes.util.find_library("mkl_rt")


@functools.lru_cache(maxsize=None)
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
        try:
            if not os.environ.get("MKL_THREADING_LAYER"):
                lib.MKL_Set_Threading_Layer(_THREADING_SEQUENTIAL)  # too late: a no-op
            if not os.environ.get("MKL_CBWR"):
                lib.MKL_CBWR_Set(_CBWR_AUTO | _CBWR_STRICT)  # too late: an error code, kept
        except AttributeError as exc:  # another library of that name, or a stripped one
            raise ImportError(f"Intel MKL at {path} lacks {exc.args[0]!r}") from exc
        _lib = lib
    return _lib


def _address(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


#: The signature of Numba's ``numba_xxgemm`` helper, which the kernels call
#: (:data:`.blas.BIG_GEMM_SYMBOL`): BLAS kind and transpose letters, sizes by value,
#: ``alpha`` and ``beta`` by pointer, column-major operands.
XXGEMM = types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                    types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
                    types.voidptr, types.voidptr, types.intp)


def adapter_ir(sgemm, dgemm, local_threads=None, index_bits=64, indirect=False):
    """LLVM IR of ``numba_xxgemm``'s call made on a CBLAS ``cblas_?gemm`` (at the addresses
    given) whose sizes are ``index_bits`` wide: MKL's ILP64 one (64), OpenBLAS' (32,
    :mod:`.haswell`).  With ``local_threads`` (the address of MKL's
    ``MKL_Set_Num_Threads_Local``) serial: the count for the calling thread is set to 1
    around the call.  ``indirect``: ``sgemm`` and ``dgemm`` are the addresses of two
    pointers to the functions, read at each call (so they can be set after the adapter is
    bound: :mod:`.haswell` loads its library with the first network that needs it).

    Written as IR and not as a Numba ``cfunc``: a ``cfunc`` took 0.16 s to compile in
    each cold start (Intel Xeon); this compiles in milliseconds in every process.
    """
    i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
    index = ir.IntType(index_bits)
    ptr = i8.as_pointer()
    module = ir.Module(name="fastdnn_mkl")
    fn = ir.Function(module, ir.FunctionType(i32, [i8, i8, i8, i64, i64, i64, ptr, ptr, i64,
                                                   ptr, i64, ptr, ptr, i64]), "xxgemm")
    kind, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = fn.args
    entry, single, double, done = (fn.append_basic_block(name)
                                   for name in ("entry", "s", "d", "done"))
    builder = ir.IRBuilder(entry)

    def trans(letter):  # "T": CblasTrans, else CblasNoTrans
        return builder.select(builder.icmp_unsigned("==", letter, i8(ord("T"))),
                              i32(_TRANS), i32(_NO_TRANS))

    ta, tb = trans(transa), trans(transb)
    if local_threads is not None:
        set_threads = builder.inttoptr(i64(local_threads),
                                       ir.FunctionType(i32, [i32]).as_pointer())
        previous = builder.call(set_threads, [i32(1)])
    m, n, k, lda, ldb, ldc = (builder.trunc(x, index) if index_bits < 64 else x
                              for x in (m, n, k, lda, ldb, ldc))
    builder.cbranch(builder.icmp_unsigned("==", kind, i8(ord("s"))), single, double)
    for block, real, address in ((single, ir.FloatType(), sgemm),
                                 (double, ir.DoubleType(), dgemm)):
        builder.position_at_end(block)
        gemm_type = ir.FunctionType(ir.VoidType(), [i32, i32, i32, index, index, index, real,
                                                    ptr, index, ptr, index, real, ptr, index])
        gemm = builder.inttoptr(i64(address), gemm_type.as_pointer().as_pointer()
                                if indirect else gemm_type.as_pointer())
        if indirect:
            gemm = builder.load(gemm)
        scalar = real.as_pointer()
        builder.call(gemm, [i32(_COL_MAJOR), ta, tb, m, n, k,
                            builder.load(builder.bitcast(alpha, scalar)), a, lda, b, ldb,
                            builder.load(builder.bitcast(beta, scalar)), c, ldc])
        builder.branch(done)
    builder.position_at_end(done)
    if local_threads is not None:
        builder.call(set_threads, [previous])
    builder.ret(i32(0))
    return str(module)


_engine = None


def gemm_address():
    """Address of a C function with :data:`XXGEMM`'s signature that runs MKL's
    ``cblas_?gemm_64`` serially (loads MKL on first use)."""
    global _engine
    if _engine is None:
        lib = load()
        try:
            addresses = [_address(lib, name) for name in (
                "cblas_sgemm_64", "cblas_dgemm_64", "MKL_Set_Num_Threads_Local")]
        except AttributeError as exc:
            raise ImportError(f"Intel MKL at {find()} lacks {exc.args[0]!r}: fastdnn needs "
                              f"oneMKL 2024 or later (pip install 'fastdnn[mkl]')") from exc
        _engine = adapter(*addresses)  # kept: it owns the code
    return _engine.get_function_address("xxgemm")


def adapter(*args, **kwargs):
    """:func:`adapter_ir`'s function compiled: an LLVM engine that holds it as
    ``xxgemm``."""
    module = llvm.parse_assembly(adapter_ir(*args, **kwargs))
    module.verify()
    machine = llvm.Target.from_default_triple().create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return engine
