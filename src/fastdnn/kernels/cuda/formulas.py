"""The scalar formulas of :mod:`fastdnn.kernels.spec`, compiled as CUDA device functions."""
import numba
from numba import cuda

from .. import spec

# Module attributes, not a namespace object: Numba resolves ``formulas.relu`` on a
# module, which is how the kernels call them (``from . import formulas as F``).
globals().update(spec.compile_formulas(cuda.jit(device=True)))
#: ``g(z)`` and ``g'(z)`` computed in float32 for float32 nets (spec.compile_formulas).
FLOAT32 = spec.compile_formulas(cuda.jit(device=True), spec.ACTIVATION_FORMULAS,
                                floats=numba.float32)
__all__ = list(spec.FORMULAS) + ["FLOAT32"]
