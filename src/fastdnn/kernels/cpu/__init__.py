"""The CPU tree: Numba ``njit`` kernels over the flat layout of :mod:`fastdnn.kernels.spec`.

Importing it compiles nothing and starts no thread pool; :func:`.blas.prepare` (called
by :class:`.backend.CPUBackend`) does the one-time set-up before the first kernel runs.
"""
