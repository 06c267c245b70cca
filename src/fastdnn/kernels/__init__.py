"""Kernels behind :class:`fastdnn.MLP`: the contract (:mod:`.spec`) and one tree per
device, :mod:`.cpu` (Numba ``njit``) and :mod:`.cuda` (``numba.cuda``), mirrored module
for module.  Importing this package imports neither tree.
"""
