"""Tunables in one place, so tests and benchmarks can patch them.

Values are read when a kernel or a trainer is set up, never baked into compiled code,
so patching them never forces a recompile.
"""

#: Below this many multiply-adds (rows * fan_in * fan_out) a dense layer uses the
#: hand-written loop kernels instead of BLAS: for narrow layers the BLAS call, packing
#: and thread hand-off cost more than the arithmetic.  Tuned with
#: ``benchmarks/test_bench_kernels.py`` (see docs/benchmarks.md).
SMALL_GEMM_MACS = 64 * 64 * 64

#: Rows processed per call when ``forward``/``predict`` stream through a large X;
#: bounds the activation buffers allocated for inference.
PREDICT_CHUNK = 4096

#: Numba on-disk cache for the CPU kernels (``cache=True``).  Safe: the kernels hold
#: no global state that changes between runs.
CACHE = True

#: CUDA threads per block for 1-D launches and the tile width of the 2-D GEMM kernels
#: (a tile is TILE x TILE threads).  Tests lower them so tiny inputs span several blocks.
CUDA_THREADS_PER_BLOCK = 256
CUDA_TILE = 16
