"""The scalar formulas of :mod:`fastdnn.kernels.spec`, compiled for the CPU kernels.

Most are inlined at the Numba IR level (``inline="always"``) into the loops that call
them, so a formula costs nothing over writing its arithmetic in the loop, and takes the
``fastmath`` flags (none) of its caller.

Those in :data:`CALLED` are plain calls, which LLVM inlines when it optimises the
caller (a dozen instructions each): the same machine code, but Numba types and lowers
one copy instead of one per call site.  They are the per-step scalars, whose copies
had grown the epoch kernels most (``mix64`` eight copies, ``lr_factor``'s six branches
two): with ``updates.bounds_are_safe`` a call too, ``train_steps`` went from 2,366 to
1,421 Numba IR statements and its cold compile about 0.45 s shorter, the online
kernel's about 2 s (Intel Xeon).  A formula called in an element loop stays inlined:
each call kept as its own dispatcher costs a compile of its own (~0.04 s) per argument
type, more than its copies cost (all as calls: 0.25 s slower).
"""
from numba import njit

from ... import config
from .. import spec

#: The formulas compiled as calls (see above); ``error_model="numpy"``, so that none
#: can raise and LLVM folds the status check of each call it inlines.
CALLED = frozenset({"mix64", "step_key", "random_index", "adam_scalars"})


def _jit(formula):
    if formula.__name__ in CALLED:
        return njit(cache=config.CACHE, error_model="numpy")(formula)
    return njit(inline="always")(formula)


# Module attributes, not a namespace object: Numba resolves ``formulas.relu`` on a
# module, which is how the kernels call them (``from . import formulas as F``).
globals().update(spec.compile_formulas(_jit))
__all__ = list(spec.FORMULAS)
