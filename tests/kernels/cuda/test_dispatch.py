"""``kernels.cuda.dispatch``: prepared launches, against stand-ins for numba-cuda's pieces.

These run everywhere (no GPU, no simulator: ``dispatch`` imports nothing of numba.cuda
until its first launch, and these tests hand it its machinery).  On a real GPU,
``test_cuda_mlp.py::test_prepared_launches_give_the_bracket_calls_bits`` checks the
real thing.
"""
import ctypes
import gc

import numpy as np
import pytest

from fastdnn import config
from fastdnn.kernels.cuda import dispatch


class Array:
    """Stands in for DeviceNDArray: a type the dispatcher recognises by identity."""

    def __init__(self, dtype="f4"):
        self.dtype = np.dtype(dtype)


class Compiled:
    """Stands in for numba-cuda's compiled ``_Kernel``."""

    def __init__(self, sig, **options):
        self.argument_types = sig
        self.debug = self.cooperative = self.launch_config_sensitive = False
        self.extensions = []
        self.__dict__.update(options)
        self.function = object()
        self._codelibrary = self
        self.kernel = self.function
        self.prepared = 0

    def get_cufunc(self):
        return self

    def _prepare_args(self, ty, val, stream, retr, out):
        self.prepared += 1
        out.extend(("array", id(val), ty))


class Kernel:
    """Stands in for a CUDA dispatcher: the bracket call records and 'compiles'."""

    def __init__(self, **options):
        self.overloads = {}
        self.options = options
        self.bracket = []

    def typeof_pyval(self, a):
        if isinstance(a, Array):
            return ("array", a.dtype.str)
        return type(a).__name__

    def __getitem__(self, config_):
        def launch(*args):
            sig = tuple(self.typeof_pyval(a) for a in args)
            self.overloads.setdefault(sig, Compiled(sig, **self.options))
            self.bracket.append((config_, [id(a) for a in args]))  # no references: see gc test
        return launch


class Config:
    def __init__(self, grid, block):
        self.grid, self.block = grid, block


@pytest.fixture
def launched(monkeypatch):
    """The prepared launches, as ``(stream, config, function, params)``."""
    calls = []

    def launch(stream, cfg, function, *params):
        calls.append((stream, cfg, function, params))

    monkeypatch.setattr(dispatch, "_machinery", (Array, launch, Config, "stream 0"))
    for name in ("_arrays", "_tokens", "_functions", "_configs"):
        monkeypatch.setattr(dispatch, name, {})
    monkeypatch.setattr(dispatch, "_bracket_only", set())
    monkeypatch.setattr(config, "CUDA_PREPARED_LAUNCH", True)
    return calls


def test_second_launch_is_prepared_with_numba_cudas_parameters(launched):
    kernel, a, b = Kernel(), Array(), Array("i8")
    for start in (0, 5, 9):
        dispatch.call(kernel, (2, 3), (4, 4), a, start, b, np.float32(0.5), True, 2.5,
                      np.uint64(7))
    assert len(kernel.bracket) == 1  # the first launch only
    assert len(launched) == 2
    compiled = next(iter(kernel.overloads.values()))
    assert compiled.prepared == 2  # each array's parameters once, not per launch
    stream, cfg, function, params = launched[-1]
    assert stream == "stream 0" and function is compiled.function
    assert (cfg.grid, cfg.block) == ((2, 3), (4, 4))
    assert params[:3] == ("array", id(a), ("array", "<f4"))
    assert type(params[3]) is ctypes.c_int64 and params[3].value == 9
    assert params[4:7] == ("array", id(b), ("array", "<i8"))
    assert type(params[7]) is ctypes.c_float and params[7].value == 0.5
    assert params[8] is True
    assert type(params[9]) is ctypes.c_double and params[9].value == 2.5
    assert type(params[10]) is ctypes.c_uint64 and params[10].value == 7
    assert dispatch.prepared_launches >= 2


def test_a_collected_array_is_forgotten_and_a_new_one_prepared_afresh(launched):
    kernel, a = Kernel(), Array()
    dispatch.call(kernel, 1, 8, a, 1)
    assert id(a) in dispatch._arrays
    old = id(a)
    del a
    gc.collect()
    assert old not in dispatch._arrays
    b = Array()
    dispatch.call(kernel, 1, 8, b, 1)  # a new array: the bracket call, then learned
    dispatch.call(kernel, 1, 8, b, 1)
    assert len(kernel.bracket) == 2 and len(launched) == 1
    assert launched[0][3][1] == id(b)


def test_a_new_argument_type_gets_its_own_compiled_function(launched):
    kernel, a, b = Kernel(), Array("f4"), Array("f8")
    for arr in (a, a, b, b):
        dispatch.call(kernel, 1, 8, arr, 1)
    assert len(kernel.overloads) == 2 and len(kernel.bracket) == 2
    assert [call[2] for call in launched] == [kernel.overloads[(("array", "<f4"), "int")].function,
                                             kernel.overloads[(("array", "<f8"), "int")].function]


@pytest.mark.parametrize("odd", [np.zeros(3), 1 << 63, -(1 << 63) - 1, (1, 2), "text"])
def test_what_it_does_not_know_always_takes_the_bracket_call(launched, odd):
    kernel, a = Kernel(), Array()
    for _ in range(3):
        dispatch.call(kernel, 1, 8, a, odd)
    assert len(kernel.bracket) == 3 and not launched


def test_int64_bounds_are_prepared(launched):
    kernel, a = Kernel(), Array()
    for value in ((1 << 63) - 1, -(1 << 63), (1 << 63) - 1):
        dispatch.call(kernel, 1, 8, a, value)
    assert len(kernel.bracket) == 1
    assert [call[3][3].value for call in launched] == [-(1 << 63), (1 << 63) - 1]


@pytest.mark.parametrize("option", ["debug", "cooperative", "launch_config_sensitive",
                                    "extensions"])
def test_kernels_with_launch_options_keep_the_bracket_call(launched, option):
    kernel, a = Kernel(**{option: [object()] if option == "extensions" else True}), Array()
    for _ in range(3):
        dispatch.call(kernel, 1, 8, a, 1)
    assert len(kernel.bracket) == 3 and not launched
    assert kernel in dispatch._bracket_only


@pytest.mark.parametrize("off", ["config.CUDA_PREPARED_LAUNCH", "no machinery"])
def test_switched_off_every_launch_is_a_bracket_call(launched, monkeypatch, off):
    if off == "no machinery":  # the simulator, or a numba-cuda whose internals differ
        monkeypatch.setattr(dispatch, "_machinery", False)
    else:
        monkeypatch.setattr(config, "CUDA_PREPARED_LAUNCH", False)
    kernel, a = Kernel(), Array()
    for _ in range(3):
        dispatch.call(kernel, 1, 8, a, 1)
    assert len(kernel.bracket) == 3 and not launched


def test_a_failed_prepared_launch_forgets_everything_and_makes_the_bracket_call(launched,
                                                                                monkeypatch):
    kernel, a = Kernel(), Array()
    dispatch.call(kernel, 1, 8, a, 1)
    dispatch.call(kernel, 1, 8, a, 1)
    assert len(launched) == 1

    def stale(*params):  # e.g. CUDA_ERROR_INVALID_HANDLE after cuda.close()
        raise RuntimeError("invalid handle")

    machinery = dispatch._machinery
    monkeypatch.setattr(dispatch, "_machinery", (machinery[0], stale) + machinery[2:])
    dispatch.call(kernel, 1, 8, a, 2)
    assert len(kernel.bracket) == 2 and not dispatch._arrays and not dispatch._functions
    monkeypatch.setattr(dispatch, "_machinery", machinery)
    dispatch.call(kernel, 1, 8, a, 3)  # relearns: the bracket call, then prepared again
    dispatch.call(kernel, 1, 8, a, 4)
    assert len(kernel.bracket) == 3
    assert [call[3][3].value for call in launched] == [1, 4]
