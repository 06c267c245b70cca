"""The scalar formulas of :mod:`fastdnn.kernels.spec`, compiled for the CPU kernels.

Inlined at the Numba IR level (``inline="always"``) into the loops that call them, so
a formula costs nothing over writing its arithmetic in the loop, and takes the
``fastmath`` flags (none) of its caller.
"""
from numba import njit

from .. import spec

# Module attributes, not a namespace object: Numba resolves ``formulas.relu`` on a
# module, which is how the kernels call them (``from . import formulas as F``).
globals().update(spec.compile_formulas(njit(inline="always")))
__all__ = list(spec.FORMULAS)
