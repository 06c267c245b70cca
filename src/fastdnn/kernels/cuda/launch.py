"""Launch configuration of every CUDA kernel, in one place.

The shapes come from the tunables in :mod:`fastdnn.config`, read at each launch (never
at import), so tests can lower ``CUDA_THREADS_PER_BLOCK``, ``CUDA_TILE``, ``CUDA_MICRO``
and ``CUDA_MAX_BLOCKS`` and make tiny inputs span several blocks.  The kernels loop over
their work with grid strides and derive their tile loops from the matrix sizes, so a
grid that is smaller than the work is never wrong, only slower.
"""
from numba import cuda

from ... import config

#: A GEMM takes the largest register tile that still gives every multiprocessor
#: (three quarters of them, to keep 128 tiles on 132 SMs) a block.  Measured on an H100
#: (docs/gpu.md), this picked the fastest tile for every shape tried: 512x4096x4096
#: micro 8 (6.7 TFLOP/s; micro 4: 4.5), 512x1024x1024 micro 4 (6.5; micro 8: 2.3),
#: 256x1024x1024 micro 2 (4.5; micro 4: 3.3).
_WAVE_FRACTION = 0.75

_sm_count = None


def _multiprocessors():
    global _sm_count
    if _sm_count is None:
        try:
            _sm_count = int(cuda.get_current_device().MULTIPROCESSOR_COUNT)
        except Exception:  # the simulator's device has no such attribute
            _sm_count = 1
    return _sm_count


def _blocks(n, per_block):
    return max(1, min(-(-n // per_block), config.CUDA_MAX_BLOCKS))


#: Threads a CUDA block holds, and bytes of static shared memory it may declare.
MAX_THREADS = 1024
MAX_SHARED_BYTES = 48 * 1024


def threads_per_block():
    """``config.CUDA_THREADS_PER_BLOCK`` rounded down to a power of two (block reductions halve)."""
    tpb = max(1, int(config.CUDA_THREADS_PER_BLOCK))
    if tpb > MAX_THREADS:  # the simulator ran it; a GPU refuses the launch
        raise ValueError(f"fastdnn.config.CUDA_THREADS_PER_BLOCK={tpb}: a CUDA block holds at "
                         f"most {MAX_THREADS} threads")
    return 1 << (tpb.bit_length() - 1)


def launch_config(n_items):
    """``(blocks, threads)`` of a 1-D grid-stride launch over ``n_items``."""
    tpb = threads_per_block()
    return _blocks(n_items, tpb), tpb


def row_config(n_rows, n_cols):
    """``(blocks, threads)`` of a block-per-row launch: threads a power of two <= the block size."""
    tpb = threads_per_block()
    threads = 1
    while threads < n_cols and threads < tpb:
        threads *= 2
    return _blocks(n_rows, 1), threads


def gemm_config(M, N, micro=None):
    """``(micro, grid, block)`` of a tiled GEMM writing an ``M x N`` matrix.

    A block is ``TILE x TILE`` threads, each computing ``micro x micro`` outputs.
    ``micro`` defaults to the largest power of two <= ``config.CUDA_MICRO`` whose tiles
    still fill the GPU.
    """
    tile = int(config.CUDA_TILE)
    if micro is None:
        micro = 1 << (max(1, int(config.CUDA_MICRO)).bit_length() - 1)
        want = _WAVE_FRACTION * _multiprocessors()
        while micro > 1 and (-(-M // (tile * micro))) * (-(-N // (tile * micro))) < want:
            micro //= 2
    span = tile * micro
    grid = (_blocks(N, span), _blocks(M, span))
    return micro, grid, (tile, tile)
