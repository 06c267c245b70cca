"""The hot loops that must vectorise do: read from the LLVM IR Numba generates.

Each of these loops once compiled to scalar code without any test noticing (the results
are the same, only slower); the IR says so on any CPU, where a timing would not.
"""
import re

from numba import njit, types

from fastdnn.kernels.cpu.checks import max_abs
from fastdnn.kernels.cpu.train import forward_layers


def _fresh_ir(dispatcher, sig):
    """The LLVM IR of ``dispatcher`` compiled anew for ``sig`` (a function loaded from
    Numba's cache keeps no IR)."""
    options = {k: v for k, v in dispatcher.targetoptions.items() if k != "nopython"}
    fresh = njit(**dict(options, cache=False))(dispatcher.py_func)
    fresh.compile(sig)
    return fresh.inspect_llvm(sig)


def test_float32_tanh_vectorises_in_the_forward_pass():
    f32 = types.float32
    sig = (f32[:, ::1], f32[::1], types.int64[:, ::1], f32[::1], types.uint64, types.int64)
    assert re.search(r"fdiv <\d+ x double>", _fresh_ir(forward_layers, sig)), \
        "the float32 tanh's division is scalar (Python's error model checks each divisor)"


def test_float32_max_abs_compares_32_bit_lanes():
    ir = _fresh_ir(max_abs, (types.float32[::1],))
    # LLVM 15 and later (llvmlite 0.44+) spell the vector max as the umax intrinsic;
    # LLVM 14 (numba 0.59 and 0.60) as an unsigned compare and a select of i32 lanes.
    assert re.search(r"llvm\.umax\.v\d+i32|icmp ugt <\d+ x i32>", ir), \
        "max_abs's float32 scan compares widened 64-bit lanes (or is scalar)"
