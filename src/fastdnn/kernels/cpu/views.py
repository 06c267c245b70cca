"""Zero-cost views for the kernels: a 2-D view into a flat buffer, for the per-layer
arrays, a contiguous array as 1-D (:func:`flat`), a borrowed array without reference
counting (:func:`borrow`), the bits of a float array as unsigned integers
(:func:`bits`), and an element's address for a C call (:func:`address`).

``buf[off:off + m * n].reshape((m, n))`` costs about 50 ns in nopython mode (a call
into Numba's C reshape helper with its checks); a training step of a tiny net takes
some twenty such views, which made them most of the step.  :func:`view2d` builds the
array header directly (measured 1.4 ns).  It does no bounds check: callers index
buffers sized by :class:`fastdnn.kernels.spec.Layout`.
"""
from numba import types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array


@intrinsic
def view2d(typingctx, buf, off, m, n):
    """The C-contiguous ``(m, n)`` view of 1-D ``buf`` starting at element ``off``."""
    result = types.Array(buf.dtype, 2, "C")
    sig = result(buf, off, m, n)

    def codegen(context, builder, sig, args):
        buf_type = sig.args[0]
        src = make_array(buf_type)(context, builder, args[0])
        out = make_array(result)(context, builder)
        size = context.get_abi_sizeof(context.get_data_type(buf_type.dtype))
        itemsize = context.get_constant(types.intp, size)
        off_, m_, n_ = (context.cast(builder, a, t, types.intp)
                        for a, t in zip(args[1:], sig.args[1:]))
        populate_array(out, data=builder.gep(src.data, [off_]),
                       shape=cgutils.pack_array(builder, [m_, n_]),
                       strides=cgutils.pack_array(builder, [builder.mul(n_, itemsize), itemsize]),
                       itemsize=itemsize, meminfo=src.meminfo)
        return impl_ret_borrowed(context, builder, result, out._getvalue())

    return sig, codegen


@intrinsic
def flat(typingctx, arr):
    """The C-contiguous array ``arr`` as 1-D: its elements in order, the same memory and
    owner, as ``arr.reshape(arr.size)`` is.

    That reshape calls Numba's C helper (``numba_attempt_nocopy_reshape``) even for a 1-D
    array: the guard's scan (:func:`.checks.max_abs`) and the backprop's buffer made two
    such calls a step, 3% of a 2-8-8-1 online SGD step's samples (``perf``, AMD EPYC).
    With this view (and :func:`float64_from_bits` for the guard's power of two), online
    SGD on 2-8-8-1 ran 1.13-1.14x and on 16-32-32-2 1.29-1.34x as fast; batches of 32 to
    128 rows the same (``benchmarks/ab_trees.py``, 5 rounds twice, AMD EPYC).  More than
    the helper's own samples: presumably LLVM optimised the step better without an
    opaque call in it.  The BLAS wrappers' three reshapes a product, likewise: 1-16x4-1
    at batch 32 (all its products on BLAS) 1.14-1.15x, 16-32-32-32-2 at batch 64 1.03x,
    64-128-128-10 at batch 128 the same.
    """
    if not (isinstance(arr, types.Array) and arr.layout == "C"):
        return None
    result = types.Array(arr.dtype, 1, "C")
    sig = result(arr)

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, args[0])
        out = make_array(result)(context, builder)
        size = context.get_abi_sizeof(context.get_data_type(sig.args[0].dtype))
        itemsize = context.get_constant(types.intp, size)
        populate_array(out, data=src.data, shape=cgutils.pack_array(builder, [src.nitems]),
                       strides=cgutils.pack_array(builder, [itemsize]), itemsize=itemsize,
                       meminfo=src.meminfo)
        return impl_ret_borrowed(context, builder, result, out._getvalue())

    return sig, codegen


@intrinsic
def borrow(typingctx, arr):
    """``arr`` without its owner: the same array, with no reference count (meminfo).

    Every view, slice and assignment of an array in nopython code increments and
    decrements its owner's reference count, and each is a ``lock``-prefixed instruction,
    a full memory barrier.  A batch-1 step on a 2-8-8-1 net spent 71% of its time in
    them (``benchmarks/jit_profile.py``, Intel Xeon).  Views of a borrowed array carry no
    count, so those calls return at once.  Only for arrays that outlive the borrowing
    call (kernel arguments) and never returned to Python: a borrowed array boxed to
    Python would not keep its memory alive.
    """
    if not isinstance(arr, types.Array):
        return None
    sig = arr(arr)

    def codegen(context, builder, sig, args):
        out = make_array(sig.return_type)(context, builder, value=args[0])
        out.meminfo = cgutils.get_null_value(out.meminfo.type)
        return out._getvalue()

    return sig, codegen


_BITS = {types.float32: types.uint32, types.float64: types.uint64}


@intrinsic
def bits(typingctx, arr):
    """The C-contiguous float32 (float64) array ``arr`` as uint32 (uint64): the same
    memory, shape and owner, as ``arr.view(np.uint32)`` is.

    Numba's ``view`` compiles, once per process and types, a check of the dtypes' sizes
    and of the layout, which takes 0.2 s of a cold start (AMD EPYC) and that the cache
    never keeps; here the sizes are equal and the layout contiguous by the types.
    """
    if not (isinstance(arr, types.Array) and arr.layout == "C" and arr.dtype in _BITS):
        return None
    result = arr.copy(dtype=_BITS[arr.dtype])
    sig = result(arr)

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, value=args[0])
        out = make_array(result)(context, builder)
        populate_array(out, data=builder.bitcast(src.data, out.data.type), shape=src.shape,
                       strides=src.strides, itemsize=src.itemsize, meminfo=src.meminfo)
        return impl_ret_borrowed(context, builder, result, out._getvalue())

    return sig, codegen


@intrinsic
def float64_from_bits(typingctx, word):
    """The float64 whose bit pattern is the int64 ``word``."""
    if not isinstance(word, types.Integer):
        return None
    sig = types.float64(word)

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[0], sig.args[0], types.int64)
        return builder.bitcast(value, context.get_value_type(types.float64))

    return sig, codegen


@intrinsic
def address(typingctx, arr, i):
    """The address of element ``i`` of the 1-D array ``arr``, as a ``void *``: what
    ``arr[i:].ctypes`` passes to a C function, without building the slice and its
    ``ctypes`` object."""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and isinstance(i, types.Integer)):
        return None
    sig = types.voidptr(arr, i)

    def codegen(context, builder, sig, args):
        src = make_array(sig.args[0])(context, builder, value=args[0])
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        return builder.bitcast(builder.gep(src.data, [index]), cgutils.voidptr_t)

    return sig, codegen
