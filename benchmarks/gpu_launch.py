"""Where a small net's CUDA step goes: the host's time per kernel launch by launch path,
and a profile of the host side of an epoch.  On a machine with a GPU
(``benchmarks/gpu_check.sh`` runs it)::

    python benchmarks/gpu_launch.py

A small net's step is about a dozen launches of kernels that run for microseconds, so the
step costs what the host spends launching them.  This times 2,000 launches of one real
launch of the step (the first layer's forward GEMM of a 64-128-128-10 net, batch 128)
by each path from fastdnn's own (``kernels.cuda.dispatch``'s prepared launch, and with
``config.CUDA_PREPARED_LAUNCH`` off numba-cuda's bracket call) down to ``cuda.core``'s
``launch`` with the kernel's parameters prepared once (the floor of any launch path), and
an empty kernel with as many arguments and with none; then times epochs with prepared
launches on and off, alternated, and profiles three epochs' host side.  A
path that fails prints its error and the others go on.
"""
import cProfile
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

import fastdnn as fd  # noqa: E402
from fastdnn import config  # noqa: E402
from fastdnn.kernels.cuda import dense, dispatch, launch  # noqa: E402
from numba import cuda  # noqa: E402

N_LAUNCH = int(os.environ.get("N_LAUNCH", 2000))


def per_launch(fn, n=N_LAUNCH):
    """``(host, with the GPU's work)`` microseconds per call of ``fn``."""
    fn()
    cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    host = time.perf_counter() - start
    cuda.synchronize()
    return 1e6 * host / n, 1e6 * (time.perf_counter() - start) / n


@cuda.jit
def empty11(a, b, c, d, e, f, g, h, i, j, k):
    pass


@cuda.jit
def empty0():
    pass


def main():
    rng = np.random.default_rng(0)
    n, sizes, batch = 16384, [64, 128, 128, 10], 128
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], n)
    net = fd.MLP(sizes, device="cuda", seed=0)
    captured = []
    launch_fn = dense._launch

    def capture(*args, **kwargs):
        if not captured:
            captured.append((args, kwargs))
        return launch_fn(*args, **kwargs)

    dense._launch = capture
    net.fit(X, y, epochs=1, batch_size=batch, optimizer=fd.SGD(lr=0.01), shuffle=False)
    dense._launch = launch_fn
    (mode, bufs, M, N, layer, m), kwargs = captured[0][0][:6], captured[0][1]
    micro, grid, block = launch.gemm_config(M, N)
    kernel = dense.gemm_kernel(int(config.CUDA_TILE), micro, bufs.theta.dtype.str)
    args = (mode, bufs.theta, bufs.grad, bufs.work, bufs.deltas, bufs.table, layer, m, 0, 0,
            np.uint64(0))
    def bracket_launch():
        config.CUDA_PREPARED_LAUNCH = False
        try:
            launch_fn(mode, bufs, M, N, layer, m, **kwargs)
        finally:
            config.CUDA_PREPARED_LAUNCH = True

    rows = {"fastdnn's _launch (config, kernel lookup, prepared launch)":
            lambda: launch_fn(mode, bufs, M, N, layer, m, **kwargs),
            "fastdnn's _launch, CUDA_PREPARED_LAUNCH = False (bracket call)": bracket_launch,
            "dispatch.call(kernel, grid, block, *args)":
            lambda: dispatch.call(kernel, grid, block, *args),
            "kernel[grid, block](*args)": lambda: kernel[grid, block](*args)}

    def without_occupancy_warning():
        from numba.cuda.core import config as cuda_config
        saved = cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS
        cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = 0
        try:
            kernel[grid, block](*args)
        finally:
            cuda_config.CUDA_LOW_OCCUPANCY_WARNINGS = saved

    rows["kernel[grid, block](*args), low-occupancy warning off"] = without_occupancy_warning
    configured = kernel[grid, block]
    rows["configured(*args), configured once"] = lambda: configured(*args)
    try:
        specialized = kernel.specialize(*args)
        rows["kernel.specialize(*args) once, then [grid, block](*args)"] = \
            lambda: specialized[grid, block](*args)
    except Exception as exc:  # the simulator has no specialize
        print("specialize: n/a", exc)
    try:
        from cuda.core import LaunchConfig
        from cuda.core import launch as core_launch
        from numba.cuda.cudadrv import driver

        compiled = next(iter(kernel.overloads.values()))
        stream = driver._to_core_stream(0)
        rows["compiled overload .launch(args, grid, block, stream, 0)"] = \
            lambda: compiled.launch(args, grid, block, stream, 0)
        kernelargs, retr = [], []
        for ty, value in zip(compiled.argument_types, args):
            compiled._prepare_args(ty, value, stream, retr, kernelargs)
        cufunc = compiled._codelibrary.get_cufunc().kernel
        try:
            cfg = LaunchConfig(grid=grid, block=block, shmem_size=0)
        except TypeError:
            cfg = LaunchConfig(grid=grid, block=block)

        def prepared_each_call():
            out = []
            for ty, value in zip(compiled.argument_types, args):
                compiled._prepare_args(ty, value, stream, [], out)
            core_launch(stream, cfg, cufunc, *out)

        rows["args prepared each call, cuda.core launch"] = prepared_each_call
        rows["args prepared once, cuda.core launch (the floor)"] = \
            lambda: core_launch(stream, cfg, cufunc, *kernelargs)
        print(f"{len(kernelargs)} kernel parameters")
    except Exception as exc:
        print("overload launch: n/a", repr(exc))
    rows["empty kernel, 11 arguments"] = lambda: empty11[grid, block](*args)
    rows["empty kernel, no arguments"] = lambda: empty0[grid, block]()
    print(f"one launch of {M}x{N} forward GEMM (micro {micro}, grid {grid}, block {block}); "
          f"{N_LAUNCH} launches each, microseconds per launch")
    print("| path | host us | host + GPU us |\n|---|---|---|")
    for name, fn in rows.items():
        try:
            host, total = per_launch(fn)
        except Exception as exc:  # one path failing must not hide the others
            print(f"| {name} | failed: {exc!r} | |", flush=True)
            continue
        print(f"| {name} | {host:.1f} | {total:.1f} |", flush=True)

    steps = -(-n // batch)
    for prepared in (True, False, True, False):
        config.CUDA_PREPARED_LAUNCH = prepared
        start = time.perf_counter()
        net.fit(X, y, epochs=3, batch_size=batch, optimizer=fd.SGD(lr=0.01), shuffle=False)
        seconds = (time.perf_counter() - start) / 3
        print(f"\nCUDA_PREPARED_LAUNCH={prepared}: epoch {seconds * 1e3:.1f} ms, {steps} steps: "
              f"{seconds / steps * 1e6:.0f} us a step")
    config.CUDA_PREPARED_LAUNCH = True
    profile = cProfile.Profile()
    profile.enable()
    net.fit(X, y, epochs=3, batch_size=batch, optimizer=fd.SGD(lr=0.01), shuffle=False)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    import argparse
    # No options; --help says what it does, rather than starting the run.
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    main()
