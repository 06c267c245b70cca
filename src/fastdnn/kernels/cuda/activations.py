"""CUDA twins of :mod:`fastdnn.kernels.cpu.activations`: ``g(z)`` and ``g'(z)`` as device
functions, the formulas of :mod:`fastdnn.kernels.spec` compiled for the GPU.

The CPU kernels loop over a row; on the GPU each thread owns one element, so these
take and return one value, dispatching on the code per element, and are called from
the epilogues of the GEMM kernels in :mod:`.dense` (forward: ``g(z)``; backward:
``g'(z)``, read from ``a = g(z)`` wherever the activation allows, as on the CPU).
An unknown code gives NaN, which the loss check then reports as divergence.
"""
from .formulas import activate, derivative

__all__ = ["activate", "derivative"]
