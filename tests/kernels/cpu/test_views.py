"""The kernels' zero-cost array views: ``view2d``, ``flat``, ``borrow`` and ``bits``, and
``float64_from_bits`` and ``address``."""
import math

import numpy as np
import pytest
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from fastdnn.kernels.cpu.views import address, bits, borrow, flat, float64_from_bits, view2d


@intrinsic
def _meminfo_address(typingctx, arr):
    """The address of ``arr``'s reference count (its meminfo); 0 when it has none."""
    sig = types.intp(arr)

    def codegen(context, builder, sig, args):
        ary = make_array(sig.args[0])(context, builder, value=args[0])
        return builder.ptrtoint(ary.meminfo, context.get_value_type(types.intp))

    return sig, codegen


@njit
def _counted(buf):
    """Whether an array argument, and a view and a slice of it, carry a reference count."""
    v = view2d(buf, 2, 2, 3)
    return (_meminfo_address(buf) != 0, _meminfo_address(v) != 0,
            _meminfo_address(buf[1:4]) != 0)


@njit
def _counted_borrowed(buf):
    b = borrow(buf)
    v = view2d(b, 2, 2, 3)
    return (_meminfo_address(b) != 0, _meminfo_address(v) != 0,
            _meminfo_address(b[1:4]) != 0)


def test_view2d_is_the_reshaped_slice():
    buf = np.arange(20.0)
    v = njit(lambda b: view2d(b, 3, 4, 2))(buf)
    np.testing.assert_array_equal(v, buf[3:11].reshape(4, 2))
    assert v.flags.c_contiguous


def test_borrowed_views_carry_no_reference_count():
    buf = np.arange(12.0)
    assert _counted(buf) == (True, True, True)
    assert _counted_borrowed(buf) == (False, False, False)


@pytest.mark.parametrize("make", [
    lambda: np.arange(24.0).reshape(4, 6),
    lambda: np.arange(24.0).reshape(4, 6)[::2, 1:],  # strided, not contiguous
    lambda: np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    lambda: np.arange(5, dtype=np.int64),
])
def test_borrow_reads_and_writes_the_original(make):
    a = make()
    expected = a * 2 + 1

    @njit
    def double_plus_one(x):
        b = borrow(x)
        flat = b.ravel()  # a copy when b is not contiguous; b itself is written below
        s = 0.0
        for v in flat:
            s += v
        for idx in np.ndindex(b.shape):
            b[idx] = b[idx] * 2 + 1
        return s, b.shape, b.strides

    total, shape, strides = double_plus_one(a)
    assert total == (expected - 1).sum() / 2
    assert shape == a.shape and strides == a.strides
    np.testing.assert_array_equal(a, expected)


def test_a_copy_of_a_borrowed_array_owns_its_memory():
    @njit
    def copy_of(x):
        return borrow(x).copy()

    a = np.arange(6.0)
    c = copy_of(a)
    del a
    np.testing.assert_array_equal(c, np.arange(6.0))
    assert c.base is not None or c.flags.owndata


@njit
def _bits_and_write(a):
    """``bits(a)`` (a copy), after setting the last element's bits through the view: the
    same memory."""
    b = bits(a)
    b[b.shape[0] - 1] = b[0]
    return b.copy(), _meminfo_address(b) == _meminfo_address(a)


@pytest.mark.parametrize("dtype, uint", [(np.float32, np.uint32), (np.float64, np.uint64)])
def test_bits_is_the_view_as_unsigned(dtype, uint):
    a = np.array([1.5, -0.0, np.inf, np.nan, 3e-39, -2.0], dtype=dtype)
    expected = a.view(uint).copy()
    expected[-1] = expected[0]
    got, same_owner = _bits_and_write(a)
    assert got.dtype == uint and np.array_equal(got, expected)
    assert a[-1] == 1.5 and same_owner  # written through: the same memory and owner


def test_bits_refuses_other_arrays():
    with pytest.raises(Exception, match="bits"):
        _bits_and_write(np.arange(4, dtype=np.int64))
    with pytest.raises(Exception, match="bits"):
        _bits_and_write(np.zeros(8, dtype=np.float32)[::2])


@njit
def _flat_written(a, value):
    f = flat(a)
    f[f.shape[0] - 1] = value
    return f.shape[0], _meminfo_address(f) == _meminfo_address(a)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 2), (0, 5)])
def test_flat_is_the_array_in_order_on_its_own_memory(shape):
    a = np.arange(float(np.prod(shape))).reshape(shape)
    if a.size == 0:
        assert njit(lambda a: flat(a).shape[0])(a) == 0
        return
    size, same_owner = _flat_written(a, -1.0)
    assert size == a.size and same_owner
    assert a.reshape(-1)[-1] == -1.0  # written through the view: the same memory
    assert np.array_equal(njit(lambda a: flat(a).copy())(a), a.reshape(-1))


def test_flat_refuses_an_array_that_is_not_c_contiguous():
    with pytest.raises(Exception, match="flat"):
        njit(lambda a: flat(a))(np.zeros((3, 4))[:, ::2])


def test_float64_from_bits_is_the_bit_pattern():
    f = njit(lambda w: float64_from_bits(w))
    for x in (1.0, -2.5, 2.0**-1000, np.inf, 0.0, 1.7e308):
        assert f(np.float64(x).view(np.int64)) == x
    assert np.isnan(f(np.float64(np.nan).view(np.int64)))


def test_the_guards_power_of_two_is_ldexps():
    from fastdnn.kernels.cpu.checks import _power_bound
    bound = njit(lambda e: _power_bound(e))
    for e in range(-1100, 1024):
        want = 0.0 if e <= -1000 else (math.ldexp(1.0, e + 1) if e + 1 <= 1023 else math.inf)
        assert bound(e) == want, e


@njit
def _addresses(a, i):
    return address(a, i), address(a[1:], i)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_address_is_the_elements_pointer(dtype):
    """``address(a, i)`` is what ``a[i:].ctypes`` passes to a C function, for each element
    of a view too."""
    a = np.arange(10, dtype=dtype)
    for i in (0, 1, 7):
        assert _addresses(a, i) == (a[i:].ctypes.data, a[1 + i:].ctypes.data)


def test_address_refuses_other_arguments():
    for args in ((np.zeros((2, 2)), 0), (np.zeros(3), 0.5)):
        with pytest.raises(TypingError):
            njit(lambda a, i: address(a, i))(*args)
