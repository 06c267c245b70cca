"""``max2`` and ``min2`` (:mod:`fastdnn.kernels.cpu.scalars`): Python's ``max`` and ``min``
of two numbers, value and type, as Numba compiles the builtins, without compiling a
function per signature."""
import itertools
import math

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError
from numba.core.event import Listener, install_listener

from fastdnn.kernels.cpu.scalars import max2, min2


@njit
def _ours(a, b):
    return np.array([max2(a, b)]), np.array([min2(a, b)])


@njit
def _builtins(a, b):
    return np.array([max(a, b)]), np.array([min(a, b)])


_VALUES = [
    *itertools.product([math.nan, -math.inf, -1.5, -0.0, 0.0, 2.0, math.inf], repeat=2),
    (np.float32(1.25), 0.0), (np.float32(-1.0), np.float32(math.nan)), (3, 2.5), (-2, 7),
    (np.int64(5), np.int64(-5)), (np.uint32(7), np.uint32(4_000_000_000)),
    (np.uint64(2**63), np.uint64(3)), (np.int32(-3), np.int64(2)),
]


@pytest.mark.parametrize("a, b", _VALUES)
def test_python_and_numbas_max_and_min(a, b):
    """The builtins' type and bits (which argument, for zeros and NaN), and Python's
    value."""
    for got, want, python in zip(_ours(a, b), _builtins(a, b), (max(a, b), min(a, b))):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (a, b, got, want)
        if isinstance(python, float) and math.isnan(python):
            assert math.isnan(got[0])
        else:
            assert got[0] == python
            assert math.copysign(1, got[0]) == math.copysign(1, python)


def test_no_function_is_compiled_for_them():
    """The point of them: the builtins compile an overload per signature; these none."""
    compiled = []

    class Compiles(Listener):
        def on_start(self, event):
            compiled.append(event.data["dispatcher"].py_func.__qualname__)

        def on_end(self, event):
            pass

    def twice(a, b):
        return max2(a, b) + min2(b, a)

    def builtin_twice(a, b):
        return max(a, b) + min(b, a)

    with install_listener("numba:compile", Compiles()):
        njit(twice)(np.int16(3), 2.5)
        ours = list(compiled)
        compiled.clear()
        njit(builtin_twice)(np.int16(3), 2.5)
    assert [name.split(".")[-1] for name in ours] == ["twice"]
    # Numba 0.66 made the builtins overloads (numba.cpython.builtins.ol_max); before, they
    # were lowered in place and compiled no function either.
    from numba.cpython import builtins
    if hasattr(builtins, "ol_max"):
        assert any("ol_max" in name for name in compiled), compiled


def test_other_arguments_are_refused():
    for args in ((np.zeros(3), 1.0), (True, 0.5)):  # booleans: the builtins take them
        with pytest.raises(TypingError):
            njit(lambda a, b: max2(a, b))(*args)
