"""The second OpenBLAS instance on its Haswell kernels (:mod:`fastdnn.kernels.cpu.haswell`):
chosen on AMD's Zen 4 only, and its products those of NumPy, the same bits for any
thread count, only for the big products."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastdnn import config
from fastdnn.kernels.cpu import blas, haswell, mkl

ZEN4 = (25, {"fpu", "avx2", "avx512f"})


@pytest.mark.parametrize("vendor, cpu, core, coretype, want", [
    ("AuthenticAMD", ZEN4, "skylakex", None, True),
    ("AuthenticAMD", ZEN4, "skylakex", "SkylakeX", False),  # the user's choice stands
    ("AuthenticAMD", ZEN4, "haswell", None, False),  # SciPy's took no AVX-512 kernels
    ("AuthenticAMD", (25, {"fpu", "avx2"}), "skylakex", None, False),  # Zen 3
    ("AuthenticAMD", (26, ZEN4[1]), "skylakex", None, False),  # Zen 5: not measured
    ("GenuineIntel", ZEN4, "skylakex", None, False),
    ("", (0, set()), None, None, False),
])
def test_only_zen4_takes_the_haswell_kernels(monkeypatch, vendor, cpu, core, coretype, want):
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(haswell, "_cpu", lambda: cpu)
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    if coretype:
        monkeypatch.setenv("OPENBLAS_CORETYPE", coretype)
    assert haswell.wanted(core) is (want and sys.platform.startswith("linux"))


def test_the_cpu_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n"
                    "flags\t\t: fpu avx2 avx512f avx512bw\n\nprocessor\t: 1\n"
                    "cpu family\t: 99\n")
    assert haswell._cpu.__wrapped__(str(info)) == (25, {"fpu", "avx2", "avx512f", "avx512bw"})
    assert haswell._cpu.__wrapped__(str(tmp_path / "none")) == (0, set())


@pytest.mark.parametrize("wanted, want", [(True, "scipy-haswell"), (False, "scipy")])
def test_auto_takes_the_haswell_instance_where_it_is_wanted(monkeypatch, wanted, want):
    monkeypatch.setattr(config, "BLAS", None)
    monkeypatch.delenv("FASTDNN_BLAS", raising=False)
    monkeypatch.setattr(mkl, "cpu_vendor", lambda: "AuthenticAMD")
    monkeypatch.setattr(haswell, "wanted", lambda core: wanted)
    assert blas.library() == want
    monkeypatch.setattr(config, "BLAS", "scipy")  # asked for: SciPy's instance alone
    assert blas.library() == "scipy"


# In a fresh process with the instance asked for (any x86 CPU runs the Haswell kernels):
# its products against NumPy, the route by shape, and the bits for 1 and 2 threads.
# "capped": a float32 product whose blocks have haswell.MAX_MACS multiply-adds (two of
# 512 x 512 x 2048), which stays on SciPy's instance.
CHILD = """
import hashlib, json, numpy as np, numba
from fastdnn.kernels.cpu import blas, haswell
blas.prepare()
out = dict(prepared=blas._prepared, rule=blas.big_rule())
if haswell.loaded():
    lib = haswell.load()  # SciPy 1.14+: scipy_openblas_*; SciPy 1.11-1.13: openblas_*
    out["core"] = next(getattr(lib, name) for name in ("scipy_openblas_get_corename",
                                                       "openblas_get_corename")
                       if hasattr(lib, name))().decode()
rng = np.random.default_rng(0)
errors = {}
for dtype in (np.float32, np.float64):
    X = rng.standard_normal((256, 1024)).astype(dtype)
    W = rng.standard_normal((1024, 1024)).astype(dtype)
    D = rng.standard_normal((256, 1024)).astype(dtype)
    bits = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        Z, P = np.empty((256, 1024), dtype), np.empty((256, 1024), dtype)
        G = np.empty((1024, 1024), dtype)
        blas.matmul(X, W, Z)
        blas.matmul_tn(X, D, G)
        blas.matmul_nt(D, W, P)
        bits.append([a.tobytes() for a in (Z, G, P)])
    out[np.dtype(dtype).name] = bits[0][0].hex()
    scale = np.sqrt(1024)
    errors[np.dtype(dtype).name] = [float(np.abs(Z - X @ W).max() / scale),
                                    float(np.abs(G - X.T @ D).max() / np.sqrt(256)),
                                    float(np.abs(P - D @ W.T).max() / scale),
                                    bits[0] == bits[1]]
out["errors"] = errors
X = rng.standard_normal((512, 2048)).astype(np.float32)
W = rng.standard_normal((2048, 1024)).astype(np.float32)
Z = np.empty((512, 1024), np.float32)
blas.matmul(X, W, Z)
out["capped"] = [hashlib.sha256(Z.tobytes()).hexdigest(), float(np.abs(Z - X @ W).max())]
print(json.dumps(out))
"""


ON_LINUX = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(os, "memfd_create"),
    reason="the second instance loads from a memfd (Linux)")


@pytest.fixture(scope="module")
def children():
    """CHILD's output with the instance asked for, and with SciPy's instance alone."""
    return tuple(_child(library) for library in ("scipy-haswell", "scipy"))


@ON_LINUX
def test_the_big_products_on_the_haswell_instance_are_numpys(children):
    out, alone = children
    assert out["prepared"] == "scipy-haswell" and out["core"].lower() == "haswell"
    assert out["rule"] == {"float32": [haswell.MIN_MACS, haswell.MIN_SIDE, haswell.MAX_MACS],
                           "float64": list(blas.NEVER)}
    for dtype, tol in (("float32", 1e-5), ("float64", 1e-13)):
        *errors, same_bits = out["errors"][dtype]
        assert max(errors) < tol, (dtype, errors)
        assert same_bits, f"{dtype}: the bits changed with the thread count"
    # The other kernels round otherwise: the float32 product did run on the second
    # instance, and the float64 one on SciPy's.
    assert alone["prepared"] == "scipy" and alone["float32"] != out["float32"]
    assert alone["float64"] == out["float64"]
    # From MAX_MACS a block runs on SciPy's instance again: its bits.
    assert out["capped"][1] < 1e-3 * np.sqrt(2048)
    assert out["capped"][0] == alone["capped"][0]


def _child(library, script=CHILD):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_ENABLE_CUDASIM",
                                                            "OPENBLAS_CORETYPE")}
    env.update(FASTDNN_BLAS=library, NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


# Under "auto" (on a Zen 4, as far as it knows) the instance loads with the first float32
# network that has a layer of MIN_SIDE: before it, a big product runs on SciPy's instance.
LAZY = """
import json, numpy as np
from fastdnn.kernels.cpu import blas, haswell
from fastdnn.kernels.cpu.backend import CPUBackend
haswell.wanted = lambda core: haswell._failure is None
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 1024)).astype(np.float32)
W = rng.standard_normal((1024, 1024)).astype(np.float32)
out = []
for width, dtype in ((255, np.float32), (256, np.float64), (256, np.float32)):
    CPUBackend([8, width, 2], [1], 0, dtype)
    Z = np.empty((256, 1024), np.float32)
    blas.matmul(X, W, Z)
    out.append([blas._prepared, haswell.loaded(), blas.big_rule()["float32"][0],
                Z.tobytes().hex()])
print(json.dumps(out))
"""


@ON_LINUX
def test_auto_loads_the_instance_with_the_first_net_that_can_use_it(children):
    out = _child("auto", LAZY)
    on, alone = (child["float32"] for child in children)
    never = blas.NEVER[0]
    narrow, wide64, wide32 = out
    assert narrow == ["scipy-haswell", False, never, alone]
    assert wide64 == ["scipy-haswell", False, never, alone]  # its products never go there
    assert wide32 == ["scipy-haswell", True, haswell.MIN_MACS, on]


# A copy that does not load: under "auto" the fit runs on SciPy's instance alone (and a
# second network binds the same); asked for by name, the first network says why.
FALLBACK = """
import numpy as np
from fastdnn.kernels.cpu import blas, haswell

def broken():
    raise OSError("no memfd here")

haswell._load = broken
haswell.wanted = lambda core: haswell._failure is None  # a Zen 4, as far as it knows
try:
    blas.prepare([8, 16, 2])
except ImportError as exc:
    print("refused:", exc)
else:
    before = blas._prepared
    blas.prepare([784, 1024, 10])
    blas.prepare([8, 16, 2])
    print("bound:", before, blas._prepared, blas.library(),
          set(blas.big_rule().values()) == {blas.NEVER})
"""


@pytest.mark.parametrize("setting, want", [
    ("auto", "bound: scipy-haswell scipy scipy True"),
    ("scipy-haswell", "refused: OpenBLAS' Haswell instance is not available: no memfd here")])
def test_a_haswell_instance_that_does_not_load(setting, want):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    env.update(FASTDNN_BLAS=setting)
    proc = subprocess.run([sys.executable, "-c", FALLBACK], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == want
