"""The hot loops that must vectorise do: read from the LLVM IR Numba generates.

Each of these loops once compiled to scalar code without any test noticing (the results
are the same, only slower); the IR says so on any CPU, where a timing would not.
"""
import re

import numpy as np
from numba import njit

import fastdnn as fd
from fastdnn.kernels.cpu.train import forward_layers


def _fresh_ir(dispatcher, dtype):
    """The LLVM IR of ``dispatcher`` compiled anew (a signature loaded from Numba's cache
    keeps no IR) for its compiled signature whose first argument has ``dtype``."""
    sig = next(s for s in dispatcher.signatures if str(s[0].dtype) == dtype)
    options = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    fresh = njit(**dict(options, cache=False))(dispatcher.py_func)
    fresh.compile(sig)
    return fresh.inspect_llvm(sig)


def test_float32_tanh_vectorises_in_the_forward_pass():
    X = np.random.default_rng(0).standard_normal((40, 3)).astype(np.float32)
    fd.MLP([3, 40, 2], activation="tanh", dtype="float32", seed=0).predict(X)
    assert re.search(r"fdiv <\d+ x double>", _fresh_ir(forward_layers, "float32")), \
        "the float32 tanh's division is scalar (Python's error model checks each divisor)"
