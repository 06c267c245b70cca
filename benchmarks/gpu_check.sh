#!/usr/bin/env bash
# The real-GPU check of the CUDA backend, in one run on a machine with an NVIDIA GPU:
#   1. the machine (GPU, driver, versions) -> $OUT/machine.txt
#   2. benchmarks/gpu_bench.py: forward GEMM vs cuBLAS, epochs vs PyTorch CUDA
#      -> $OUT/gpu_bench.{json,md}, $OUT/bench.txt
#   3. the GPU tests for real, no simulator -> $OUT/pytest.txt
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

timeout 170 $PY benchmarks/gpu_bench.py --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.txt"
timeout 220 $PY -m pytest tests/kernels/cuda -q -p no:cacheprovider -W ignore::RuntimeWarning --durations=5 2>&1 \
  | tee "$OUT/pytest.txt"
echo "pytest exit: ${PIPESTATUS[0]}" | tee -a "$OUT/pytest.txt"

