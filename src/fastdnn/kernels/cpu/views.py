"""A zero-cost 2-D view into a flat buffer, for the kernels' per-layer arrays.

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
