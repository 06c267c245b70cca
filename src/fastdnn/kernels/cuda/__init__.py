"""The CUDA tree: ``numba.cuda`` kernels over the flat layout of :mod:`fastdnn.kernels.spec`,
the twin of :mod:`fastdnn.kernels.cpu` module for module (plus :mod:`.launch`).

Imported only once CUDA is known to be usable (:func:`fastdnn.devices.require_cuda`).
"""
