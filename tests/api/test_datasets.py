"""Tests for fastdnn.datasets: generated data against brute-force oracles, file loading."""

import itertools

import numpy as np
import pytest

from support import run_python
from fastdnn import datasets
from fastdnn.datasets import (
    load_csv_or_npz,
    load_digits,
    load_table,
    make_parity,
    make_zigzag,
    train_test_split,
)

DTYPES = [np.float32, np.float64]


# --- digits -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_digits_shape_dtype_range(dtype):
    pytest.importorskip("sklearn")
    X, y = load_digits(dtype=dtype)
    assert X.shape == (1797, 64) and X.dtype == dtype and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_digits_without_sklearn_says_how_to_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        load_digits()


def test_digits_are_sklearns_and_read_without_importing_it():
    """The file is read directly (the import cost half of a warm `fastdnn train`)."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits as sk_load_digits

    X, y = load_digits(dtype=np.float64)
    want_X, want_y = sk_load_digits(return_X_y=True)
    np.testing.assert_array_equal(X, want_X / 16.0)
    np.testing.assert_array_equal(y, want_y)
    out = run_python("import sys; from fastdnn.datasets import load_digits; load_digits(); "
                     "print('sklearn' in sys.modules)")
    assert out.strip().splitlines()[-1] == "False"


# --- parity -----------------------------------------------------------------


@pytest.mark.parametrize("n_bits", [1, 3, 8])
@pytest.mark.parametrize("signed", [False, True])
def test_parity_matches_brute_force(n_bits, signed):
    X, y = make_parity(n_bits, signed=signed)
    assert X.shape == (2**n_bits, n_bits) and X.dtype == np.float32
    assert y.shape == (2**n_bits,) and y.dtype == np.int64
    ones = X > 0
    # Every bit vector appears exactly once.
    assert len({tuple(row) for row in ones}) == 2**n_bits
    assert set(np.unique(X)) == ({-1.0, 1.0} if signed else {0.0, 1.0})
    for row, label in zip(ones, y):
        count = sum(1 for bit in row if bit)
        assert label == count % 2


def test_parity_row_order_is_binary_counting():
    X, _ = make_parity(3, dtype=np.float64)
    expected = np.array(list(itertools.product([0, 1], repeat=3)), dtype=np.float64)
    np.testing.assert_array_equal(X, expected)


@pytest.mark.parametrize("n_bits", [0, 25])
def test_parity_rejects_bad_n_bits(n_bits):
    with pytest.raises(ValueError, match="n_bits"):
        make_parity(n_bits)


@pytest.mark.parametrize("n_bits", [np.int8(7), np.uint8(9), np.int16(16)])
def test_parity_takes_small_numpy_integers(n_bits):
    """``2**n_bits`` in an int8's own width was 0 rows at 7 bits."""
    X, y = make_parity(n_bits)
    assert X.shape == (2 ** int(n_bits), int(n_bits)) and y.shape == (2 ** int(n_bits),)


def test_parity_rejects_non_float_dtype():
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        make_parity(3, dtype=np.int32)


# --- zigzag -----------------------------------------------------------------


def count_linear_pieces(y):
    """Number of monotone runs of ``y`` = slope sign changes + 1 (oracle)."""
    signs = np.sign(np.diff(y.astype(np.float64)))
    signs = signs[signs != 0]
    return 1 + int(np.count_nonzero(signs[1:] != signs[:-1]))


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("dtype", DTYPES)
def test_zigzag_has_two_to_the_depth_pieces(depth, dtype):
    # 2**depth * 4 + 1 points put every kink on the grid.
    n = 4 * 2**depth + 1
    X, y = make_zigzag(n, depth=depth, dtype=dtype)
    assert X.shape == (n, 1) and y.shape == (n,)
    assert X.dtype == dtype and y.dtype == dtype
    np.testing.assert_allclose(X[:, 0], np.linspace(0, 1, n))
    assert y.min() >= 0 and y.max() <= 1
    assert count_linear_pieces(y) == 2**depth


def test_zigzag_off_grid_still_counts_pieces():
    X, y = make_zigzag(1000, depth=3)
    assert count_linear_pieces(y) == 8


def test_zigzag_depth_zero_is_identity():
    X, y = make_zigzag(11, depth=0, dtype=np.float64)
    np.testing.assert_array_equal(y, X[:, 0])


def test_zigzag_noise_is_seeded():
    _, clean = make_zigzag(64, noise=0.0)
    _, a = make_zigzag(64, noise=0.1, seed=1)
    _, b = make_zigzag(64, noise=0.1, seed=1)
    _, c = make_zigzag(64, noise=0.1, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, clean)


@pytest.mark.parametrize("kwargs", [{"n_samples": 1}, {"depth": -1}, {"noise": -0.5},
                                    {"noise": np.inf}, {"noise": np.nan}, {"seed": -1}])
def test_zigzag_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        make_zigzag(**kwargs)


@pytest.mark.parametrize("kwargs", [{"n_samples": 2.7}, {"depth": 2.9}, {"n_samples": "10"},
                                    {"depth": True}, {"seed": 1.5}])
def test_zigzag_refuses_what_is_not_an_integer(kwargs):
    """2.7 samples were 2, depth 2.9 was 2."""
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        make_zigzag(**kwargs)


# --- train_test_split ---------------------------------------------------------


@pytest.mark.parametrize("n, test_size, n_test", [(100, 0.2, 20), (7, 0.2, 2), (33, 5, 5)])
def test_split_sizes_and_no_overlap(n, test_size, n_test):
    X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    y = np.arange(n)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=test_size, seed=3)
    assert len(X_test) == len(y_test) == n_test
    assert len(X_train) == len(y_train) == n - n_test
    assert set(y_train).isdisjoint(y_test)
    assert sorted(np.concatenate([y_train, y_test])) == list(range(n))
    # Rows stay paired with their labels.
    np.testing.assert_array_equal(X_train[:, 0], 2 * y_train)
    np.testing.assert_array_equal(X_test[:, 0], 2 * y_test)


def test_split_is_seeded_and_shuffles():
    X, y = np.zeros((50, 1)), np.arange(50)
    a = train_test_split(X, y, seed=0)[3]
    b = train_test_split(X, y, seed=0)[3]
    c = train_test_split(X, y, seed=1)[3]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("test_size", [0.0, 1.0, 0, 10])
def test_split_rejects_empty_side(test_size):
    with pytest.raises(ValueError):
        train_test_split(np.zeros((10, 1)), np.zeros(10), test_size=test_size)


def test_split_rejects_length_mismatch():
    with pytest.raises(ValueError, match="different numbers"):
        train_test_split(np.zeros((10, 1)), np.zeros(9))


# --- load_csv_or_npz ----------------------------------------------------------


def write(path, text):
    path.write_text(text)
    return path


def test_csv_classification(tmp_path):
    f = write(tmp_path / "d.csv", "a,label,b\n1,0,2.5\n3,1,4\n\n5,2,6\n")
    X, y = load_csv_or_npz(f, target="label")
    np.testing.assert_array_equal(X, [[1, 2.5], [3, 4], [5, 6]])
    assert X.dtype == np.float32
    np.testing.assert_array_equal(y, [0, 1, 2])
    assert y.dtype == np.int64


def test_csv_regression_target_stays_float(tmp_path):
    f = write(tmp_path / "d.csv", "x, t\n1, 0.5\n2, 1.5\n")
    X, y = load_csv_or_npz(f, target="t", dtype=np.float64)
    assert X.shape == (2, 1) and X.dtype == np.float64
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0.5, 1.5])


@pytest.mark.parametrize(
    "text, target, match",
    [
        ("a,b\n1,2\n", "c", "no column named 'c'"),
        ("a,b\n1,x\n", "a", r"line 2, column 'b': 'x' is not a number"),
        ("a,b\n1,\n", "a", "is not a number"),
        ("a,b\n1,nan\n", "a", "not finite"),
        # Line numbers past a blank line, in the middle of the file and of its row.
        ("a,b,c\n1,2,3\n\n4, x ,6\n7,8,9\n", "a", r"line 4, column 'b': 'x' is not a number"),
        ("a,b,c\n1,2,3\n\n4,5,6\n7,8,inf\n", "a", r"line 5, column 'c' is not finite"),
        ("a,b,c\n1,2,3\n\n4,5,6\n7,8,9,10\n", "a", "line 5 has 4 fields, the header has 3"),
        ("a,b\n1,2,3\n", "a", "3 fields"),
        ("", "a", "empty"),
        ("a,b\n", "a", "no data rows"),
        ("a\n1\n", "a", "at least one feature"),
        ("a,b\n1,2\n", None, "--target"),
    ],
)
def test_csv_bad_files(tmp_path, text, target, match):
    f = write(tmp_path / "bad.csv", text)
    with pytest.raises(ValueError, match=match) as info:
        load_csv_or_npz(f, target=target)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text, target, match", [
    ("a,a,y\n1,100,0\n2,200,1\n", "y", "2 columns are named 'a'"),  # read 'a' twice
    ("x,y,y\n1,0,5\n2,1,6\n", "y", "2 columns are named 'y'"),
    ("x,y\n1,cat\n2,\n3,dog\n", "y", "line 3, column 'y' is empty"),  # was class ''
    ("x,y\n1e300,0\n2,1\n", "y", "beyond float32's range"),  # was inf
    # Python's float() reads these as 1000 and 12; NumPy and pandas as text.
    ("x,y\n1_000,0\n2,1\n", "y", r"line 2, column 'x': '1_000' is not a number"),
    ("x,y\n\u0661\u0662,0\n2,1\n", "y", "is not a number"),
    ("x,y\n1,0\n2,1_0\n3,1\n", "y", "'1_0' is not a number"),
])
def test_csv_refuses_what_it_would_misread(tmp_path, text, target, match):
    with pytest.raises(ValueError, match=match):
        load_table(write(tmp_path / "d.csv", text), target)


def test_csv_whole_numbers_beyond_2_to_53_stay_values(tmp_path):
    """1e20 as an int64 label was int64's minimum."""
    table = load_table(write(tmp_path / "d.csv", "x,y\n1,1e20\n2,3e20\n3,5\n"), "y",
                       dtype=np.float64)
    assert table.y.dtype == np.float64
    np.testing.assert_array_equal(table.y, [1e20, 3e20, 5.0])
    table = load_table(write(tmp_path / "e.csv", "x,y\n1,9007199254740992\n2,-3\n"), "y")
    assert table.y.dtype == np.int64 and table.y.tolist() == [2 ** 53, -3]


def test_csv_integer_labels_beyond_2_to_53_stay_apart(tmp_path):
    """Parsed through float, three labels from 1e17 on became one (a regression target
    of "fractional numbers", R^2 0)."""
    table = load_table(write(tmp_path / "d.csv",
                             "x,y\n1,100000000000000000\n2,100000000000000001\n"
                             "3,100000000000000002\n"), "y")
    assert table.y.dtype == np.int64
    assert table.y.tolist() == [10**17, 10**17 + 1, 10**17 + 2]
    # Beyond int64: values, as before (and as the same values written as floats).
    table = load_table(write(tmp_path / "e.csv", "x,y\n1,30000000000000000000000\n2,5\n"),
                       "y", dtype=np.float64)
    assert table.y.dtype == np.float64 and table.y.tolist() == [3e22, 5.0]


def test_npz_one_column_target_is_a_one_dimensional_target(tmp_path):
    """Labels of shape (n, 1) were regression targets, and refused as classes."""
    f = tmp_path / "d.npz"
    np.savez(f, X=np.zeros((4, 2)), y=np.array([[0], [2], [1], [2]]))
    _, y = load_csv_or_npz(f)
    assert y.shape == (4,) and y.dtype == np.int64 and y.tolist() == [0, 2, 1, 2]
    np.savez(f, X=np.zeros((4, 2)), y=np.zeros((4, 0)))
    with pytest.raises(ValueError, match="no columns"):
        load_csv_or_npz(f)


@pytest.mark.parametrize("features, error, match", [
    ("ab", TypeError, "list of column names"),  # was columns 'a' and 'b'
    ([], ValueError, "names no column"),
])
def test_csv_features_must_name_columns(tmp_path, features, error, match):
    f = write(tmp_path / "d.csv", "a,b,ab,y\n1,2,3,0\n4,5,6,1\n")
    with pytest.raises(error, match=match):
        load_table(f, "y", features=features)
    assert load_table(f, "y", features=["ab"]).X.tolist() == [[3.0], [6.0]]


@pytest.mark.parametrize("arrays, match", [
    ({"X": np.full((2, 1), 1e300), "y": np.zeros(2)}, "X holds values beyond float32"),
    ({"X": np.zeros((2, 1)), "y": np.full((2, 2), 1e300)}, "y holds values beyond float32"),
    ({"X": np.zeros((2, 1)), "y": np.array([2 ** 64 - 1, 1], dtype=np.uint64)},
     "beyond int64's range"),
])
def test_npz_refuses_what_it_would_misread(tmp_path, arrays, match):
    f = tmp_path / "d.npz"
    np.savez(f, **arrays)
    with pytest.raises(ValueError, match=match):
        load_table(f, "y")


def test_csv_binary_garbage(tmp_path):
    f = tmp_path / "bin.csv"
    f.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ValueError, match="bin.csv"):
        load_csv_or_npz(f, target="a")


def test_npz_roundtrip(tmp_path):
    X = np.random.default_rng(0).random((6, 3))
    f = tmp_path / "d.npz"
    np.savez(f, X=X, y=np.array([0, 1, 1, 0, 2, 1]), t=np.linspace(0, 1, 6))
    X1, y1 = load_csv_or_npz(f)
    np.testing.assert_allclose(X1, X.astype(np.float32))
    assert X1.dtype == np.float32 and y1.dtype == np.int64
    _, t = load_csv_or_npz(f, target="t", dtype=np.float64)
    np.testing.assert_array_equal(t, np.linspace(0, 1, 6))


def test_npz_two_dimensional_target_is_float(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, X=np.zeros((4, 2)), y=np.ones((4, 3), dtype=np.int64))
    _, y = load_csv_or_npz(f)
    assert y.shape == (4, 3) and y.dtype == np.float32


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"X": np.zeros((3, 2))}, "no array named 'y'"),
        ({"y": np.zeros(3)}, "no array named 'X'"),
        ({"X": np.zeros(3), "y": np.zeros(3)}, "2-D"),
        ({"X": np.zeros((3, 2)), "y": np.zeros(4)}, "3 rows but y has 4"),
        ({"X": np.zeros((3, 2)), "y": np.zeros((3, 1, 1))}, "1-D or 2-D"),
        ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, "empty"),
        ({"X": np.array([["a", "b"]]), "y": np.zeros(1)}, "numeric"),
        ({"X": np.array([[np.inf, 1.0]]), "y": np.zeros(1)}, "NaN or infinite"),
    ],
)
def test_npz_bad_contents(tmp_path, arrays, match):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    with pytest.raises(ValueError, match=match):
        load_csv_or_npz(f)


def test_npz_object_array_is_refused(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, X=np.array([[1, "a"]], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match="not a readable .npz"):
        load_csv_or_npz(f)


@pytest.mark.parametrize("content", [b"", b"hello", None])
def test_npz_not_a_zip(tmp_path, content):
    f = tmp_path / "bad.npz"
    if content is None:  # a bare .npy under an .npz name
        with open(f, "wb") as fh:
            np.save(fh, np.zeros(3))
    else:
        f.write_bytes(content)
    with pytest.raises(ValueError, match="not an .npz file"):
        load_csv_or_npz(f)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        load_csv_or_npz(tmp_path / "d.txt", target="a")
    with pytest.raises(OSError):
        load_csv_or_npz(tmp_path / "missing.csv", target="a")
    with pytest.raises(OSError):
        load_csv_or_npz(tmp_path / "missing.npz")


def test_npz_text_labels_may_not_be_blank(tmp_path):
    # A CSV's blank label is refused; the same labels in an .npz trained a class ''.
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((3, 2)), y=np.array(["cat", "", "dog"]))
    with pytest.raises(ValueError, match=r"y has an empty label \(row 1\)"):
        load_table(str(path), target="y")


def test_a_float16_target_reads_without_numpy_warnings(tmp_path):
    import warnings
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros((3, 2)), y=np.array([0.5, 1.5, 2.25], dtype=np.float16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_table(str(path), target="y").y.tolist() == [0.5, 1.5, 2.25]


def test_text_labels_with_a_number_among_them_name_the_number(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,y\n1,cat\n2,dog\n3,NaN\n4,cat\n")
    with pytest.raises(ValueError, match=r"line 4, column 'y': 'NaN' is a number, unlike "
                                         r"the column's other values \(text labels\)"):
        load_table(str(path), target="y")


@pytest.mark.parametrize("seed", [-1, True, 1.5])
def test_train_test_split_names_a_bad_seed(seed):
    """NumPy's "expected non-negative integer" did not say which argument."""
    with pytest.raises(ValueError, match="seed must be None or an integer >= 0"):
        datasets.train_test_split(np.zeros((10, 2)), np.zeros(10), seed=seed)


def test_a_csv_is_read_without_a_python_string_per_cell(tmp_path):
    """Every cell was kept as a Python str (rows of lists, then a list per column):
    ~20x the features' float32 bytes at the peak.  Now a float64 buffer (2x), the
    float32 copy (1x), and the target column's text."""
    import tracemalloc
    n, d = 4000, 20
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).round(6)
    path = tmp_path / "big.csv"
    with open(path, "w") as f:
        f.write(",".join([f"f{j}" for j in range(d)] + ["y"]) + "\n")
        np.savetxt(f, np.column_stack([X, X[:, 0] > 0]), delimiter=",", fmt="%.6f")
    tracemalloc.start()
    try:
        table = load_table(path, target="y")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(table.X, X.astype(np.float32))
    assert peak < 6 * n * d * 4, peak / (n * d * 4)


def test_a_csv_number_with_unicode_spaces_around_it_reads(tmp_path):
    """Cells are stripped as str.strip() strips them (a no-break space from a web page, an
    em space, an ASCII file separator): the streaming reader refused "\\xa01" as "'1'
    is not a number"."""
    path = tmp_path / "ws.csv"
    path.write_text("a,b,y\n\xa01,2\u2003,0\n3,\x1c5,1\n\xa04,\x1c\x1c6 ,0\n", encoding="utf-8")
    table = load_table(path, target="y", dtype=np.float64)
    np.testing.assert_array_equal(table.X, [[1, 2], [3, 5], [4, 6]])
    path.write_text("a,b,y\n1,2,0\n\xa0\u0661,2,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3, column 'a': '\u0661' is not a number"):
        load_table(path, target="y")


def test_a_list_for_a_column_name_is_named_in_the_error(tmp_path):
    path = write(tmp_path / "t.csv", "a,b,y\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match=r"no column named \['y'\]; columns are a, b, y"):
        load_table(path, target=["y"])
