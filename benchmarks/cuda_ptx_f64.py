"""Count the float64 instructions in the float32 CUDA kernels, without a GPU.

A float64 literal makes float32 arithmetic float64, and consumer GPUs (compute capability
8.6/8.9) run float64 at 1/64 of the float32 rate: the float32 GEMM's epilogues held 183
float64 instructions before ``spec.compile_formulas(floats=numba.float32)``.  This
compiles the float32 GEMM kernel and the float32 formulas to PTX with the local libNVVM
(a CUDA toolkit: ``CUDA_HOME``, default ``/usr/local/cuda``) and counts their float64
instructions; a GPU, a driver and NVRTC are not needed (numba-cuda asks them only for the
architecture, which is given here)::

    CUDA_HOME=/usr/local/cuda-13.0 python benchmarks/cuda_ptx_f64.py [--cc 8.6]
"""
import argparse
import collections
import glob
import os
import re
import sys

F64 = re.compile(r"\b((?:add|sub|mul|div|fma|rcp|max|min|abs|neg|sqrt|ex2|lg2)\.[\w.]*f64"
                 r"|cvt\.[\w.]*f64[\w.]*)\b")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="8.6", help="compute capability to compile for (8.6)")
    args = ap.parse_args(argv)
    try:
        cc = tuple(int(p) for p in args.cc.split("."))
    except ValueError:
        ap.error(f"--cc takes MAJOR.MINOR, got {args.cc!r}")
    home = os.environ.setdefault("CUDA_HOME", "/usr/local/cuda")
    found = sorted(glob.glob(os.path.join(home, "nvvm", "libdevice", "libdevice*.bc")))
    if not found:
        sys.exit(f"cuda_ptx_f64.py: no libdevice under {home}/nvvm: set CUDA_HOME to a toolkit")

    # Compile-only shims: the architecture is given, libdevice is the toolkit's.
    from numba.cuda import dispatcher
    from numba.cuda.cudadrv import nvrtc, nvvm
    dispatcher.get_current_device = lambda: type("Device", (), {"compute_capability": cc})()
    nvrtc.get_supported_ccs = lambda: [cc]
    nvvm.get_libdevice = lambda: found[0]
    nvvm.open_libdevice = lambda: open(found[0], "rb").read()

    import numpy as np
    from numba import cuda, float32, int64, types, uint64, void

    from fastdnn.kernels import spec
    from fastdnn.kernels.cuda import dense
    from fastdnn.kernels.cuda import formulas as F

    def count(ptx):
        ops = collections.Counter(F64.findall(ptx))
        return sum(ops.values()), dict(ops.most_common(4))

    vector = types.Array(float32, 1, "C")
    print(f"float64 instructions in float32 code, compute capability {cc[0]}.{cc[1]}:")
    def elementwise(formula):
        def kernel(x, out):
            i = cuda.grid(1)
            if i < x.shape[0]:
                out[i] = formula(x[i])
        return kernel

    for name in spec.ACTIVATION_FORMULAS[:-2]:  # the element formulas
        ptx, _ = cuda.compile_ptx(elementwise(F.FLOAT32[name]), void(vector, vector), cc=cc)
        print(f"  {name:15s} %3d  %s" % count(ptx))
    gemm = dense.gemm_kernel(16, 8, np.dtype("float32").str)
    signature = void(int64, vector, vector, vector, vector, types.Array(int64, 2, "C"),
                     int64, int64, int64, int64, uint64)
    ptx, _ = cuda.compile_ptx(gemm.py_func, signature, cc=cc)
    print("  %-15s %3d  %s" % ("GEMM (16, 8)", *count(ptx)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
