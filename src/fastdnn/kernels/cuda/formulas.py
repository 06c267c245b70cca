"""The scalar formulas of :mod:`fastdnn.kernels.spec`, compiled as CUDA device functions."""
from numba import cuda

from .. import spec

# Module attributes, not a namespace object: Numba resolves ``formulas.relu`` on a
# module, which is how the kernels call them (``from . import formulas as F``).
globals().update(spec.compile_formulas(cuda.jit(device=True)))
__all__ = list(spec.FORMULAS)
