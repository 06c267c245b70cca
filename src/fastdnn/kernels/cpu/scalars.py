"""Python's ``max`` and ``min`` of two numbers for the CPU kernels, as intrinsics.

In Numba (0.68 here) the builtins ``max``, ``min`` and ``int`` are ``@overload``\\ s: each
signature a process calls them with compiles a small function of its own (16-33 ms each,
never cached on disk), and a cold ``fastdnn train`` compiled a dozen of them, about 0.2 s
of this process's compile and 0.1 s of its helper's (AMD EPYC).  These emit the same
comparison and select in the caller, with the type Numba gives the builtins' result (the
two arguments unified): ``max2(a, b)`` is ``b`` if ``b > a`` else ``a``, as in Python and
in Numba, so a NaN in the first argument is kept and one in the second is passed over.
``int(x)`` of a float is written ``np.int64(x)`` in the kernels for the same reason (a
cast, as ``int`` is in nopython mode).

Only in :mod:`fastdnn.kernels.cpu`: the formulas of :mod:`fastdnn.kernels.spec` also run
as Python (the oracle, the CUDA simulator), where an intrinsic cannot.
"""
import operator

from numba import types
from numba.core import typing
from numba.extending import intrinsic


def _pick(op, name):
    @intrinsic
    def pick(typingctx, a, b):
        if not (isinstance(a, types.Number) and isinstance(b, types.Number)):
            return None
        unified = typingctx.unify_types(a, b)
        if unified is None:
            return None

        def codegen(context, builder, sig, args):
            x, y = (context.cast(builder, v, t, unified) for v, t in zip(args, sig.args))
            compare = context.get_function(op, typing.signature(types.boolean, unified,
                                                                unified))
            return builder.select(compare(builder, (y, x)), y, x)

        return unified(a, b), codegen

    pick.__name__ = pick.__qualname__ = name
    return pick


#: ``max(a, b)`` of two numbers: ``b`` if ``b > a``, else ``a``.
max2 = _pick(operator.gt, "max2")
#: ``min(a, b)`` of two numbers: ``b`` if ``b < a``, else ``a``.
min2 = _pick(operator.lt, "min2")
