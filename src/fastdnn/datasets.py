"""Small data sets for examples, tests and the command line.

Everything here is generated on the spot or ships with a dependency; nothing is
downloaded at run time. Features come back as a C-contiguous float array of the
requested dtype, class labels as ``int64``.
"""

import array
import csv
import importlib.util
import numbers
import operator
import os
import zipfile
from typing import NamedTuple

import numpy as np

from . import serialize
from .validation import check_dtype, is_integer

__all__ = [
    "load_digits",
    "make_parity",
    "make_zigzag",
    "train_test_split",
    "load_csv_or_npz",
    "load_table",
    "Table",
]


def _float_dtype(dtype):
    """Return ``np.dtype(dtype)``, insisting on float32 or float64 (``ValueError``, as
    ``MLP``'s: these raised ``TypeError``)."""
    return check_dtype(dtype)


def load_digits(dtype=np.float32):
    """Load the 8x8 handwritten digits that ship with scikit-learn.

    Parameters
    ----------
    dtype : {np.float32, np.float64}, default np.float32
        dtype of the returned features.

    Returns
    -------
    X : ndarray of shape (1797, 64)
        Pixel intensities scaled from 0..16 to [0, 1].
    y : ndarray of shape (1797,), int64
        Digit labels 0..9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    dt = _float_dtype(dtype)
    # scikit-learn's own file, read without importing scikit-learn: the import cost
    # 0.5-0.9 s of a 1.4 s warm `fastdnn train` (measured); the values are the same
    # as sklearn.datasets.load_digits' (tested).
    spec = importlib.util.find_spec("sklearn")
    path = None if spec is None or spec.origin is None else os.path.join(
        os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    if path is None or not os.path.exists(path):
        raise ImportError(
            "the digits data set ships with scikit-learn; "
            "install it with `pip install scikit-learn` (or `pip install 'fastdnn[examples]'`)")
    table = np.loadtxt(path, delimiter=",")
    X = np.ascontiguousarray(table[:, :-1] / 16.0, dtype=dt)
    return X, table[:, -1].astype(np.int64)


def make_parity(n_bits=8, signed=False, dtype=np.float32):
    """Make every ``n_bits``-bit vector and its parity.

    The parity experiment from the lecture: a depth-``log n`` circuit of XOR
    gates computes it, while a shallow net needs exponentially many units.

    Parameters
    ----------
    n_bits : int, default 8
        Number of input bits, 1..24 (there are ``2**n_bits`` samples).
    signed : bool, default False
        If True, encode bits as -1/+1 instead of 0/1 (zero-mean inputs often
        train faster).
    dtype : {np.float32, np.float64}, default np.float32
        dtype of the returned features.

    Returns
    -------
    X : ndarray of shape (2**n_bits, n_bits)
        Row ``i`` holds the binary digits of ``i``, most significant first.
    y : ndarray of shape (2**n_bits,), int64
        1 if the row has an odd number of ones, else 0.
    """
    dt = _float_dtype(dtype)
    if not is_integer(n_bits):
        raise TypeError(f"n_bits must be an int, got {type(n_bits).__name__}")
    if not 1 <= n_bits <= 24:
        # 2**24 rows is already 400 MB of float32 features at 24 bits.
        raise ValueError(f"n_bits must be in 1..24, got {n_bits}")
    if not isinstance(signed, (bool, np.bool_)):  # "no" and [0] gave the +-1 encoding
        raise TypeError(f"signed must be True or False; got {signed!r}")
    n_bits = int(n_bits)  # 2**n_bits in an int8's own width is 0 rows at 7 bits
    codes = np.arange(2**n_bits, dtype=np.int64)
    shifts = np.arange(n_bits - 1, -1, -1, dtype=np.int64)
    bits = (codes[:, None] >> shifts) & 1
    y = bits.sum(axis=1) % 2
    X = 2 * bits - 1 if signed else bits
    return np.ascontiguousarray(X, dtype=dt), y.astype(np.int64)


def tent(x):
    """Tent map ``t(x) = 2 * min(x, 1 - x)``, which maps [0, 1] onto [0, 1].

    One ReLU layer computes it exactly: ``t(x) = 2 relu(x) - 4 relu(x - 1/2)``
    on [0, 1].
    """
    return 2.0 * np.minimum(x, 1.0 - x)


def make_zigzag(n_samples=1024, depth=3, noise=0.0, seed=0, dtype=np.float32):
    """Sample the tent map composed ``depth`` times: a zig-zag with ``2**depth`` pieces.

    Composing the tent map doubles the number of linear pieces each time, so a
    ReLU net of depth ``depth`` with two units per layer fits it exactly, while
    one hidden layer needs about ``2**depth`` units (Telgarsky's example).

    Parameters
    ----------
    n_samples : int, default 1024
        Number of points, at least 2.
    depth : int, default 3
        How many times the tent map is composed, 0..30.
    noise : float, default 0.0
        Standard deviation of Gaussian noise added to the targets.
    seed : int, default 0
        Seed for the noise; without noise the data are deterministic.
    dtype : {np.float32, np.float64}, default np.float32
        dtype of the returned arrays.

    Returns
    -------
    X : ndarray of shape (n_samples, 1)
        Evenly spaced points ``np.linspace(0, 1, n_samples)``.
    y : ndarray of shape (n_samples,)
        ``t(t(...t(x)))`` with ``depth`` applications of the tent map, plus noise.

    Notes
    -----
    The points are evenly spaced rather than random so that every linear piece
    is sampled. With ``n_samples = m * 2**depth + 1`` the grid contains every
    kink exactly (the dyadic grid points are exact in floating point).
    """
    dt = _float_dtype(dtype)
    for name, value in (("n_samples", n_samples), ("depth", depth), ("seed", seed)):
        if not is_integer(value):
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    n_samples, depth = int(n_samples), int(depth)
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples}")
    if not 0 <= depth <= 30:
        raise ValueError(f"depth must be in 0..30, got {depth}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not (isinstance(noise, numbers.Real) and 0 <= noise < np.inf):
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    x = np.linspace(0.0, 1.0, n_samples)
    y = x.copy()
    for _ in range(depth):
        y = tent(y)
    if noise > 0:
        y = y + noise * np.random.default_rng(seed).standard_normal(n_samples)
    X = np.ascontiguousarray(x[:, None], dtype=dt)
    return X, np.ascontiguousarray(y, dtype=dt)


def train_test_split(X, y, test_size=0.2, seed=0):
    """Split ``X, y`` into random train and test subsets (no stratification).

    Parameters
    ----------
    X : array_like of shape (n, ...)
    y : array_like of shape (n, ...)
    test_size : float in (0, 1) or int, default 0.2
        Fraction of the samples (rounded up, as in scikit-learn) or number of
        samples that go to the test set.
    seed : int or None, default 0
        Seed for ``np.random.default_rng`` that shuffles the rows.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray
        Both sides non-empty; together they hold every row exactly once.
    """
    X, y = np.asarray(X), np.asarray(y)
    n = len(X)
    if len(y) != n:
        raise ValueError(f"X and y have different numbers of samples: {n} and {len(y)}")
    if isinstance(test_size, bool):
        raise TypeError("test_size must be a float in (0, 1) or an int")
    if isinstance(test_size, (int, np.integer)):
        n_test = int(test_size)
    elif isinstance(test_size, (float, np.floating)):
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}")
        n_test = int(np.ceil(test_size * n))
    else:
        raise TypeError(f"test_size must be a float in (0, 1) or an int, got {test_size!r}")
    if not 0 < n_test < n:
        raise ValueError(
            f"test_size={test_size} leaves an empty train or test set for {n} samples"
        )
    if seed is not None and (not is_integer(seed) or seed < 0):
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


class Table(NamedTuple):
    """Features and targets read from a file by :func:`load_table`."""

    X: np.ndarray
    #: ``None`` when no target was asked for.
    y: np.ndarray | None
    #: The CSV columns that became ``X``, in order; ``None`` for an .npz file.
    feature_names: list[str] | None


#: The largest whole number a float target may be and still read as an int64 label:
#: every integer up to it is exact in float64 (1e20 cast to int64 gave int64's minimum).
_EXACT_INTEGER = 2 ** 53


def _labels_or_values(y, dt, path="", name="y"):
    """Return 1-D integer-valued targets as int64 labels, text labels as they are, and
    anything else as ``dt`` (whole numbers beyond ``2**53`` too: values, not labels)."""
    if y.dtype.kind == "U":
        blank = np.flatnonzero(np.char.strip(y) == "")
        if blank.size:  # a missing label, not a class named '' (as in a CSV)
            raise ValueError(f"{path}: {name} has an empty label (row {blank[0]})")
        return y
    if y.dtype.kind in "biu":
        if y.size and y.dtype.kind == "u" and y.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{path}: {name} holds integers beyond int64's range")
        return y.astype(np.int64)
    if np.all(np.isfinite(y)) and np.all(y == np.round(y)) \
            and (not y.size or float(np.max(np.abs(y))) <= _EXACT_INTEGER):
        return y.astype(np.int64)
    return _cast(y, dt, path, name)


def as_dtype(values, dt, path, name):
    """``values`` (a float array) as ``dt``, C-ordered; integer arrays as they are.  A
    ``ValueError`` names ``name`` of ``path`` where a value is beyond ``dt``'s range."""
    if values.dtype.kind != "f":
        return values
    return _cast(values, dt, path, name)


def _cast(values, dt, path, name):
    """The finite ``values`` as a C-ordered array of ``dt``, or a ValueError where one
    is beyond ``dt``'s range (1e300 in float32 is inf)."""
    with np.errstate(over="ignore"):  # the error below says it
        cast = np.ascontiguousarray(values, dtype=dt)
    if not np.all(np.isfinite(cast)):
        raise ValueError(f"{path}: {name} holds values beyond {cast.dtype}'s range "
                         f"(largest magnitude {np.max(np.abs(values)):g}); load it as "
                         f"float64 or rescale it")
    return cast


def _column_index(path, name, header, where):
    """Where column ``name`` is in ``header`` (``where``: :func:`_positions` of it), or a
    ValueError listing the columns."""
    if not isinstance(name, str) or name not in where:  # (a list: "unhashable type")
        shown = ", ".join(header[:50]) + (f", ... ({len(header)} in all)"
                                          if len(header) > 50 else "")
        raise ValueError(f"{path}: no column named {name!r}; columns are {shown}")
    if len(where[name]) > 1:
        raise ValueError(f"{path}: {len(where[name])} columns are named {name!r}; "
                         f"rename them apart")
    return where[name][0]


def _positions(header):
    """``{name: [indices]}`` of the header's columns: looked up per column, the list's
    ``index`` and ``count`` made a file of 40,000 columns take 43 s (np.loadtxt 0.03)."""
    where = {}
    for j, name in enumerate(header):
        where.setdefault(name, []).append(j)
    return where


def _number(cell, kind=float):
    """``kind(cell)`` for a number as CSV writers spell it: Python also reads ``1_000``
    as 1000 and Arabic-Indic digits as ASCII ones, which NumPy and pandas take as text."""
    if "_" in cell or not cell.isascii():
        raise ValueError(f"not a number: {cell!r}")
    return kind(cell)


def _numbers(path, name, cells, lines, what="is not a number"):
    """``cells`` of column ``name`` (at file lines ``lines``) as finite float64, or a
    ValueError naming the line."""
    values = np.empty(len(cells))
    for i, cell in enumerate(cells):
        try:
            values[i] = _number(cell)
        except ValueError:
            raise ValueError(
                f"{path}: line {lines[i]}, column {name!r}: {cell!r} {what}"
            ) from None
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"{path}: line {lines[bad[0]]}, column {name!r} is not finite")
    return values


def _target_column(path, name, cells, lines, dt):
    """A target column: numbers, or text labels when no cell is a number.

    A column of numbers with some text in it is refused rather than read as text
    labels: a typo or a "n/a" in a regression target would otherwise turn it into
    hundreds of classes.
    """
    is_number = []
    for cell in cells:
        try:
            _number(cell)
            is_number.append(True)
        except ValueError:
            is_number.append(False)
    if not any(is_number):
        for i, cell in enumerate(cells):
            if not cell:  # a missing label, not a class named ''
                raise ValueError(f"{path}: line {lines[i]}, column {name!r} is empty")
        return np.array(cells)
    if 2 * sum(is_number) < len(cells):  # text labels and a few numbers ("NaN", "1")
        i = is_number.index(True)
        raise ValueError(f"{path}: line {lines[i]}, column {name!r}: {cells[i]!r} is a "
                         f"number, unlike the column's other values (text labels)")
    try:  # integers as integers: through float, labels beyond 2**53 became one class
        whole = [_number(cell, int) for cell in cells]
    except ValueError:
        whole = None
    if whole is not None and all(-2**63 <= v < 2**63 for v in whole):
        return _labels_or_values(np.array(whole, dtype=np.int64), dt, path, name)
    # Beyond int64 (3e22): values, read as numbers below (as they were before, and as
    # the same values written as floats are).
    return _labels_or_values(
        _numbers(path, name, cells, lines, "is not a number, unlike the column's other values"),
        dt, path, name)


def _load_csv(path, target, features, dt):
    """Read a CSV with a header row: numeric features, a numeric or text target.

    Row by row, each row's features into one growing float64 buffer: the file's cells
    as Python strings (rows of lists, then a list per column) and a NumPy scalar test of
    each took ~20x the features' float32 bytes and 2.4 CPU s for 30,000 x 50 (now 3.5x
    and 0.5 s; np.loadtxt 0.27 s; AMD EPYC); the target column alone is kept as text
    (labels, or numbers read below).
    """
    try:
        # utf-8-sig: a byte-order mark (Excel writes one) is not part of the first name.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            # Keep the file's line numbers for error messages; skip blank lines (not a
            # row of empty cells, ",": skipped, every later row read as the one before).
            rows = ((reader.line_num, row) for row in reader
                    if len(row) > 1 or (row and row[0].strip()))
            first = next(rows, None)
            if first is None:
                raise ValueError(f"{path}: file is empty")
            header = [name.strip() for name in first[1]]
            where = _positions(header)
            t = None if target is None else _column_index(path, target, header, where)
            names = _feature_names(path, header, target, features)
            cols = [_column_index(path, name, header, where) for name in names]
            pick = operator.itemgetter(*cols)
            if len(cols) == 1:
                pick = (lambda one: lambda row: (row[one],))(cols[0])
            values, lines, labels = array.array("d"), array.array("q"), []
            for line, row in rows:
                if len(row) != len(header):
                    raise ValueError(f"{path}: line {line} has {len(row)} fields, the "
                                     f"header has {len(header)}")
                cells = pick(row)
                joined = "".join(cells)
                done = len(values)
                try:
                    if "_" in joined or not joined.isascii():
                        raise ValueError  # _number's rule, checked cell by cell below
                    values.extend(map(float, cells))
                except ValueError:  # stripped first (a no-break space around a number)
                    del values[done:]
                    cells = [cell.strip() for cell in cells]
                    for name, cell in zip(names, cells):
                        try:
                            _number(cell)
                        except ValueError:
                            raise ValueError(f"{path}: line {line}, column {name!r}: "
                                             f"{cell!r} is not a number") from None
                    values.extend(map(float, cells))
                lines.append(line)
                if t is not None:
                    labels.append(row[t].strip())
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path}: not a readable CSV text file ({exc})") from None
    if not lines:
        raise ValueError(f"{path}: no data rows after the header")
    X = np.frombuffer(values, dtype=np.float64).reshape(len(lines), len(names))
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        i, j = bad[0]
        raise ValueError(f"{path}: line {lines[i]}, column {names[j]!r} is not finite")
    y = None if target is None else _target_column(path, target, labels, lines, dt)
    return Table(_cast(X, dt, path, "the features"), y, names)


def _feature_names(path, header, target, features):
    """The feature columns' names: ``features``, checked, or every column but ``target``."""
    if features is None:
        features = [name for name in header if name != target]
        if not features:
            raise ValueError(f"{path}: needs at least one feature column besides {target!r}")
    elif isinstance(features, str) or not hasattr(features, "__iter__"):
        raise TypeError(f"features must be a list of column names, got "
                        f"{type(features).__name__}")
    features = list(features)
    if not features:
        raise ValueError(f"{path}: features names no column")
    return features


def _load_npz(path, target, dt):
    """Read the array ``X`` and, unless ``target`` is None, the array it names."""
    wanted = ("X",) if target is None else ("X", target)
    with open(path, "rb") as f:
        # Checked first because np.load takes any unknown bytes for a pickle and
        # says so, which would mislead; this also rejects a bare .npy array.
        if not zipfile.is_zipfile(f):
            raise ValueError(f"{path}: not an .npz file (a zip archive written by numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            for key in keys:  # a member whose header declares more than it holds is
                if key in wanted:  # refused unread (X of 10**12 values: MemoryError)
                    serialize.declared_member(data, key)
            arrays = {key: data[key] for key in keys if key in wanted}
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        # Object arrays need allow_pickle (ValueError); a damaged member raises
        # BadZipFile or EOFError.
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from None
    for key in wanted:
        if key not in arrays:
            raise ValueError(
                f"{path}: no array named {key!r}; arrays are {', '.join(keys) or '(none)'}"
            )
    X = arrays["X"]
    if X.ndim != 2:
        raise ValueError(f"{path}: X must be 2-D (samples, features), got shape {X.shape}")
    if len(X) == 0 or X.shape[1] == 0:
        raise ValueError(f"{path}: X is empty (shape {X.shape})")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{path}: X contains NaN or infinite values")
    X = _cast(X, dt, path, "X")
    if target is None:
        return Table(X, None, None)
    y = arrays[target]
    if y.ndim not in (1, 2):
        raise ValueError(f"{path}: {target} must be 1-D or 2-D, got shape {y.shape}")
    if len(X) != len(y):
        raise ValueError(f"{path}: X has {len(X)} rows but {target} has {len(y)}")
    if y.ndim == 2 and y.shape[1] <= 1:
        if y.shape[1] == 0:
            raise ValueError(f"{path}: {target} has no columns (shape {y.shape})")
        # One column is a 1-D target, as a CSV's (labels of shape (n, 1) were always
        # regression targets, and refused as classes).
        y = y[:, 0]
    if y.dtype.kind == "U" and y.ndim == 1:  # text class labels
        return Table(X, _labels_or_values(y, dt, path, target), None)
    if y.dtype.kind not in "biuf":
        raise ValueError(f"{path}: {target} must be numeric (or 1-D text labels), "
                         f"got dtype {y.dtype}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{path}: {target} contains NaN or infinite values")
    if y.ndim == 2:  # several outputs: always regression (or multi-label) targets
        return Table(X, _cast(y, dt, path, target), None)
    return Table(X, _labels_or_values(y, dt, path, target), None)


def _file_type(path):
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in (".csv", ".npz"):
        raise ValueError(f"{path}: unsupported file type {ext or '(none)'!r}; use .csv or .npz")
    return ext


def load_table(path, target=None, features=None, dtype=np.float32):
    """Load features, and targets if asked for, from a ``.csv`` or ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` file with a header row, or an ``.npz`` file holding an array ``X``
        (samples, features) and target arrays.
    target : str, optional
        CSV: the target column; NPZ: the target array.  Without it only ``X`` is read.
    features : list of str, optional
        CSV only: the feature columns, in this order (other columns are ignored).
        Default: every column but ``target``.
    dtype : {np.float32, np.float64}, default np.float32
        dtype of the returned features (and of non-integer targets).

    Returns
    -------
    Table
        ``X`` of shape (n, d); ``y`` of shape (n,) or (n, k) or None: ``int64`` when 1-D
        and every target is a whole number, text labels (a ``str`` array) for a 1-D
        target of text, else ``dtype``; ``feature_names`` (CSV only).

    Raises
    ------
    ValueError
        With a one-line message naming the file and the problem: unknown extension,
        missing column or array, non-numeric feature, a number column with text in it,
        empty file, mismatched shapes.
    OSError
        If the file cannot be opened.
    """
    dt = _float_dtype(dtype)
    if _file_type(path) == ".csv":
        return _load_csv(path, target, features, dt)
    if features is not None:
        raise ValueError(f"{path}: features can be picked by name only from a .csv file")
    return _load_npz(path, target, dt)


def load_csv_or_npz(path, target=None, dtype=np.float32):
    """Load features and targets from a ``.csv`` or ``.npz`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` file with a header row and numeric features, or an ``.npz`` file
        holding arrays ``X`` (samples, features) and ``y``.
    target : str, optional
        CSV: name of the label column (required); all other columns are
        features. NPZ: name of the target array (default ``"y"``).
    dtype : {np.float32, np.float64}, default np.float32
        dtype of the returned features (and of non-integer targets).

    Returns
    -------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,) or (n, k)
        ``int64`` when ``y`` is 1-D and every target is a whole number (class
        labels), text labels when a 1-D target holds no number, otherwise ``dtype``
        (regression or multi-output targets).

    Raises
    ------
    ValueError
        As :func:`load_table`, and for a CSV file without ``target``.
    OSError
        If the file cannot be opened.
    """
    if target is None:
        if _file_type(path) == ".csv":
            raise ValueError(f"{path}: a CSV file needs target= (the CLI's --target "
                             f"COLUMN) to name the label column")
        target = "y"
    X, y, _ = load_table(path, target=target, dtype=dtype)
    return X, y
