"""The scalar formulas of :mod:`fastdnn.kernels.spec`, compiled for the CPU kernels.

Most are inlined at the Numba IR level (``inline="always"``) into the loops that call
them, so a formula costs nothing over writing its arithmetic in the loop, and takes the
``fastmath`` flags (none) of its caller.

Those in :data:`CALLED` are plain calls, which LLVM inlines when it optimises the
caller (checked in the online kernel's machine code): the same code, but Numba types
and lowers one copy instead of one per call site (``mix64`` had eight in every epoch
kernel).  Only small functions of scalars qualify: ``lr_factor`` and
``updates.bounds_are_safe`` as calls stayed calls (their array arguments passed word
by word, twice a step), which cost 2-8-8-1 online SGD 2% for 0.5 s of cold compile.
So their common cases stay inline, the constant schedule and SGD's bounds, and the
rest are calls (``updates.lr_factor``, ``updates._adam_bounds_are_safe``).
A formula called in an element loop stays inlined too: each call kept as its own
dispatcher costs a compile of its own (~0.04 s) per argument type, more than its
copies cost (all as calls: a cold ``fastdnn train`` 0.25 s slower, Intel Xeon).
"""
from ... import config
from .. import spec
from .pipeline import njit

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
