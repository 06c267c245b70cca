"""Launch fastdnn's forward CUDA GEMM (``Z = A @ W + b``, ``m x k`` by ``k x n``) on one
shape, for a profiler.  On a machine with a GPU::

    ncu --clock-control none -k regex:tile_gemm --launch-skip 2 --launch-count 1 \\
        --set detailed python benchmarks/gpu_gemm_profile.py 512 4096 4096

The launch shape is the one training picks (``launch.gemm_config``).  The first launch
compiles; the script launches three times, so ``--launch-skip 2`` profiles a warm one.
Prints the launch shape and the time of the last launch (CUDA events).
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from fastdnn.kernels.cuda import dense, launch  # noqa: E402
from fastdnn.kernels.cuda.backend import CUDABackend  # noqa: E402
from fastdnn.kernels.spec import MSE  # noqa: E402
from numba import cuda  # noqa: E402


def main(m=512, k=4096, n=4096):
    m, k, n = int(m), int(k), int(n)
    rng = np.random.default_rng(0)
    backend = CUDABackend([k, n], [], MSE, np.dtype(np.float32))
    backend.set_theta((rng.normal(size=backend.n_params) / np.sqrt(k)).astype(np.float32))
    layout, bufs = backend._inference(m)
    work = np.zeros(layout.work_size, dtype=np.float32)
    work[:m * k] = rng.normal(size=m * k)
    bufs.work.copy_to_device(work)
    shape = (m, n)
    micro, grid, block = launch.gemm_config(*shape)
    print(f"forward m={m} k={k} n={n}: output {shape[0]}x{shape[1]}, micro {micro}, "
          f"grid {grid}, block {block}", flush=True)
    start, end = cuda.event(), cuda.event()
    for _ in range(3):
        start.record()
        dense.dense_forward(bufs, layout.table, 0, m)
        end.record()
        end.synchronize()
    ms = start.elapsed_time(end)
    print(f"last launch {ms:.3f} ms, {2.0 * m * k * n / ms / 1e9:.2f} TFLOP/s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
