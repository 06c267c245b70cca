#!/usr/bin/env bash
# The real-GPU check of the CUDA backend, in one run on a machine with an NVIDIA GPU:
#   1. the machine (GPU, driver, versions) -> $OUT/machine.txt
#   2. the GPU tests for real, no simulator -> $OUT/pytest.txt
#   3. the cost of the overflow guard and of issue 9's options (weights, l2, dropout,
#      clip_norm) per CUDA epoch -> $OUT/options.txt
#   4. benchmarks/gpu_bench.py: forward GEMM vs cuBLAS, epochs vs PyTorch CUDA
#      -> $OUT/gpu_bench.{json,md}, $OUT/bench.txt
#   5. benchmarks/gpu_launch.py: host time per kernel launch, by launch path -> $OUT/launch.txt
# Usage: OUT=/some/dir bash benchmarks/gpu_check.sh   (OUT defaults to ./gpu_check_out)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
unset NUMBA_ENABLE_CUDASIM
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# numba-cuda 0.30.4 registers an overload of np.row_stack, which NumPy 2.5 removed: without
# this alias no kernel compiles there (seen on the H100 image: numpy 2.5.2).
SHIM=$(mktemp -d)
printf 'import numpy\nif not hasattr(numpy, "row_stack"):\n    numpy.row_stack = numpy.vstack\n' >"$SHIM/sitecustomize.py"
export PYTHONPATH="$SHIM:$PYTHONPATH"
if [ -z "${CUDA_HOME:-}" ] && [ -d /usr/local/cuda ]; then export CUDA_HOME=/usr/local/cuda; fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
  nvidia-smi -L
  uname -srm
  nproc
  $PY - <<'PYEOF'
import platform, numpy, numba
print("python", platform.python_version(), "numpy", numpy.__version__, "numba", numba.__version__)
try:
    import numba_cuda; print("numba-cuda", getattr(numba_cuda, "__version__", "?"))
except Exception as e: print("numba-cuda import failed:", e)
try:
    import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
except Exception as e: print("torch:", e)
from numba import cuda
dev = cuda.get_current_device()
print("numba device", dev.name, "cc", dev.compute_capability, "SMs", dev.MULTIPROCESSOR_COUNT)
print("numba driver/runtime", cuda.cudadrv.driver.driver.get_version(), cuda.runtime.get_version())
@cuda.jit
def twice(a):
    i = cuda.grid(1)
    if i < a.size:
        a[i] *= 2
a = cuda.to_device(numpy.arange(4.0)); twice[1, 4](a); print("smoke kernel", a.copy_to_host())
PYEOF
} 2>&1 | tee "$OUT/machine.txt"

timeout 240 $PY -m pytest tests/kernels/cuda -q -p no:cacheprovider -W ignore::RuntimeWarning --durations=5 2>&1 \
  | tee "$OUT/pytest.txt"
echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/pytest.txt"


# 3. What the overflow guard (kernels/cuda/updates.py: one read-only launch per step) and
# the training options cost: seconds per epoch with the guard, with it patched out, and
# with sample weights + l2 + dropout + clip_norm; a large net (bandwidth) and a small one
# (launch latency).  The module docstring of kernels/cuda/updates.py quotes an estimate
# of 2-3% (large) and one launch in ~15 (small) until this has run.
timeout 120 $PY - <<'PYEOF' 2>&1 | tee "$OUT/options.txt"
import time
import numpy as np
import fastdnn as fd
from fastdnn.kernels.cuda import train as cuda_train

def seconds_per_epoch(sizes, n, batch, options, epochs=3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = rng.normal(size=(n, sizes[-1]))
    fit = dict(epochs=epochs, batch_size=batch, optimizer=fd.Adam(lr=1e-4), shuffle=False)
    net_args = dict(loss="mse", device="cuda", seed=0)
    if options:
        net_args.update(l2=1e-4, dropout=0.1)
        fit.update(sample_weight=rng.uniform(0.5, 2.0, size=n), clip_norm=1.0)
    net = fd.MLP(sizes, **net_args)
    net.fit(X, y, **dict(fit, epochs=1))  # compiles
    start = time.perf_counter()
    net.fit(X, y, **fit)
    return (time.perf_counter() - start) / epochs

guard = cuda_train.check_update
for sizes, n, batch in (([1024, 4096, 4096, 1024], 4096, 256), ([32, 64, 64, 10], 8192, 32)):
    rows = {}
    rows["guard"] = seconds_per_epoch(sizes, n, batch, False)
    cuda_train.check_update = lambda *args: None
    rows["no guard"] = seconds_per_epoch(sizes, n, batch, False)
    cuda_train.check_update = guard
    rows["guard + weights, l2, dropout, clip"] = seconds_per_epoch(sizes, n, batch, True)
    base = rows["no guard"]
    for name, sec in rows.items():
        print(f"{sizes} batch {batch}: {name:36s} {sec * 1e3:9.2f} ms/epoch  {sec / base:6.3f}x")
PYEOF
echo "options exit: ${PIPESTATUS[0]}" | tee -a "$OUT/options.txt"

# Last, since the timings matter least when the lease runs short: the benchmark.
timeout 150 $PY benchmarks/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.txt"

# 5. Where a small net's step goes: host microseconds per launch by launch path, and a
# profile of an epoch's host side (benchmarks/gpu_launch.py) -> $OUT/launch.txt
timeout 150 $PY benchmarks/gpu_launch.py 2>&1 | grep -v "NumbaPerformanceWarning\|warn(errors" \
  | tee "$OUT/launch.txt"
echo "launch exit: ${PIPESTATUS[0]}" | tee -a "$OUT/launch.txt"
