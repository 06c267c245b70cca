"""Launch fastdnn's forward CUDA GEMM (``Z = A @ W + b``, ``m x k`` by ``k x n``) on given
shapes, for a profiler or a comparison of source trees.  On a machine with a GPU::

    ncu --clock-control none -k regex:tile_gemm --launch-skip 2 --launch-count 1 \\
        --set detailed python benchmarks/gpu_gemm_profile.py 512x4096x4096
    python benchmarks/gpu_gemm_profile.py 512x4096x4096 256x784x1024 --launches 20

The launch shape is the one training picks (``launch.gemm_config``).  Each shape is
launched ``--launches`` times (default 3; the first compiles, so ``--launch-skip 2``
profiles a warm one) and prints the median time of the launches after the first (CUDA
events) and the rate.  ``FASTDNN_SRC=<tree>/src`` times another source tree.
"""
import argparse
import os
import sys

import numpy as np

_SRC = os.environ.get("FASTDNN_SRC") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
if not os.path.isfile(os.path.join(_SRC, "fastdnn", "__init__.py")):
    # Else the installed fastdnn was timed, under the other tree's name.
    sys.exit(f"gpu_gemm_profile.py: no fastdnn package in {_SRC} (FASTDNN_SRC is a src folder)")
sys.path.insert(0, _SRC)

from fastdnn.kernels.cuda import dense, launch  # noqa: E402
from fastdnn.kernels.cuda.backend import CUDABackend  # noqa: E402
from fastdnn.kernels.spec import MSE  # noqa: E402
from numba import cuda  # noqa: E402


def time_shape(m, k, n, launches):
    """Median milliseconds of the warm forward launches on ``m x k`` by ``k x n``."""
    rng = np.random.default_rng(0)
    backend = CUDABackend([k, n], [], MSE, np.dtype(np.float32))
    backend.set_theta((rng.normal(size=backend.n_params) / np.sqrt(k)).astype(np.float32))
    layout, bufs = backend._inference(m)
    work = np.zeros(layout.work_size, dtype=np.float32)
    work[:m * k] = rng.normal(size=m * k)
    bufs.work.copy_to_device(work)
    micro, grid, block = launch.gemm_config(m, n)
    start, end = cuda.event(), cuda.event()
    times = []
    for _ in range(max(2, launches)):
        start.record()
        dense.dense_forward(bufs, layout.table, 0, m)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = float(np.median(times[1:]))
    print(f"{m}x{k}x{n}: micro {micro}, grid {grid}, block {block}: {ms:.3f} ms, "
          f"{2.0 * m * k * n / ms / 1e9:.2f} TFLOP/s ({dense.__file__})", flush=True)
    return ms


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="*", default=["512x4096x4096"], help="m x k x n")
    parser.add_argument("--launches", type=int, default=3)
    args = parser.parse_args(argv)
    for shape in args.shapes:
        m, k, n = (int(v) for v in shape.split("x"))
        time_shape(m, k, n, args.launches)


if __name__ == "__main__":
    main(sys.argv[1:])
