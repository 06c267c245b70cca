"""Input checks at the public boundary: one dtype and a C-contiguous layout go in, so
the kernels see one signature and never validate themselves.
"""
import collections.abc
import numbers

import numpy as np

from .kernels.cpu.checks import finite
from .kernels.spec import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, POISSON

DTYPES = {"float32": np.dtype(np.float32), "float64": np.dtype(np.float64)}


def check_dtype(dtype):
    """Return ``np.float32`` or ``np.float64`` dtype for a name or dtype-like."""
    # A name NumPy cannot read is refused here: None would slip through the test below
    # (NumPy compares np.dtype("float64") == None as True).
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}") from None
    if dtype is None or dt not in DTYPES.values():
        raise ValueError(f"dtype must be 'float32' or 'float64'; got {dtype!r}")
    return dt


def _from_pandas(a, name, dtype=None):
    """A pandas Series, DataFrame or array as a NumPy array; anything else unchanged.

    ``dtype``: a frame of numeric columns comes out C-ordered in it, each column cast
    straight into place (through the columns' common type, float64 for float32 and
    int64 ones, and Fortran-ordered, a float32 net's ``X`` took 3x its size at the peak;
    nullable ``Float32`` columns 2x), runs of columns of one dtype ~64K values at a time.

    ``np.asarray`` turns pandas' nullable columns (``Float64``, ``Int64``, ``boolean``)
    into object arrays, even without a missing value; here each column's NumPy dtype is
    used instead.  Missing values (``pd.NA``, ``NaN``) are refused by name.  pandas is
    recognised by module name, so it is never imported here.
    """
    # pandas 3 names its public classes' module "pandas", earlier versions "pandas.core...".
    if type(a).__module__.partition(".")[0] != "pandas" or not hasattr(a, "to_numpy"):
        return a
    if np.asarray(a.isna()).any():
        raise ValueError(f"{name} has missing values (pd.NA or NaN); drop or fill them first")
    dtypes = list(a.dtypes) if getattr(a, "ndim", 1) == 2 else [a.dtype]
    # Nullable dtypes name their NumPy twin; object, string and categorical columns have
    # none and are left to the numeric check.
    numpy_dtypes = [getattr(dt, "numpy_dtype", dt) for dt in dtypes]
    if not dtypes or any(not isinstance(dt, np.dtype) or dt.kind not in "biuf"
                         for dt in numpy_dtypes):
        return np.asarray(a)
    copied = len(set(numpy_dtypes)) > 1 or any(not isinstance(dt, np.dtype) for dt in dtypes)
    if dtype is not None and getattr(a, "ndim", 1) == 2 and copied:  # (one NumPy dtype: a
        # view, which inference converts a chunk at a time)
        out = np.empty(a.shape, dtype=dtype)
        # Runs of columns of one dtype, ~64K values at a time: one column at a time, each
        # cost ~70 us whatever the rows (a 1-row frame of 500 columns took 43 ms to
        # predict, its to_numpy() 0.03 ms).
        width = max(1, (1 << 16) // max(a.shape[0], 1))
        with np.errstate(over="ignore"):  # check_X names values beyond dtype's range
            start = 0
            while start < len(dtypes):
                stop = start + 1
                while (stop < len(dtypes) and stop - start < width
                       and dtypes[stop] == dtypes[start]):
                    stop += 1
                out[:, start:stop] = a.iloc[:, start:stop].to_numpy(
                    dtype=numpy_dtypes[start])
                start = stop
        return out
    return a.to_numpy(dtype=np.result_type(*numpy_dtypes))


def _as_numeric(a, name, dtype=None):
    if hasattr(a, "toarray") and hasattr(a, "nnz"):  # scipy.sparse: "got dtype object"
        raise TypeError(f"{name} is a sparse matrix ({type(a).__name__}); the net reads "
                        f"dense arrays: pass {name}.toarray() (fastdnn.sklearn densifies "
                        f"sparse input itself)")
    if isinstance(a, collections.abc.Iterator):  # a generator: an object array of one
        raise TypeError(f"{name} must be an array, not an iterator ({type(a).__name__}); "
                        f"pass np.array(list(...))")
    a = np.asarray(_from_pandas(a, name, dtype))
    if a.dtype.kind == "V" and a.dtype.names is None \
            and getattr(a.dtype.type, "__module__", "") == "ml_dtypes":
        # bfloat16, float8_*, int4 (JAX's, ml_dtypes'): of kind 'V', they were refused
        # as not "real numbers"; each value is exact in float32.
        a = a.astype(np.float32)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got an array of dtype {a.dtype}")
    return a


def check_X(X, n_features, dtype, convert=True):
    """Return ``X`` as a finite, C-contiguous, writeable 2-D array of ``dtype`` with
    ``n_features`` columns.

    A read-only ``X`` (a memory map opened with ``mmap_mode="r"``, ``np.frombuffer``, a
    one-column pandas frame under copy-on-write) is copied: Numba types it apart, and
    every kernel it reached compiled a second time (2.7 s for ``predict``, 49 s for
    ``fit_many``).  ``mmap_mode="c"`` maps a file writeable without a copy.

    ``convert=False``: an ``X`` that is not so already comes back as a checked 2-D
    NumPy array, for the caller to convert a chunk of rows at a time (:func:`X_rows`):
    inference on a float64, Fortran-ordered or read-only ``X`` made a whole copy first
    (a memory map bigger than the memory left raised MemoryError).
    """
    X = _as_numeric(X, "X", dtype)
    if X.ndim != 2:
        hint = ""
        if X.ndim == 1:  # one sample of n_features, or n samples of one feature
            hint = (" (use X.reshape(1, -1) for a single sample" if X.size == n_features
                    else " (use X.reshape(-1, 1) for a single feature")
            hint += ", as the net expects {} feature{})".format(
                n_features, "" if n_features == 1 else "s")
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ValueError("X is empty: it has 0 samples")
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features but the net expects {n_features}")
    if not convert and not is_kernel_ready(X, dtype):
        return X
    return X_rows(X, dtype)


def is_kernel_ready(X, dtype):
    """Whether the kernels take ``X`` as it is: ``dtype``, C-contiguous, writeable."""
    return X.dtype == dtype and X.flags.c_contiguous and X.flags.writeable


def take_rows(X, rows, dtype):
    """``X[rows]`` as the kernels take them (:func:`X_rows`), gathered a block of rows at
    a time: gathered whole, a float64 ``X`` bound for a float32 net made a float64 copy
    of the rows first."""
    out = np.empty((len(rows), X.shape[1]), dtype=dtype)
    step = 4096
    for start in range(0, len(rows), step):
        out[start:start + step] = X_rows(X[rows[start:start + step]], dtype)
    return out


def X_rows(X, dtype):
    """Rows of a checked 2-D ``X`` as the kernels take them (:func:`is_kernel_ready`), or
    a ``ValueError`` where a value is not finite."""
    with np.errstate(over="ignore"):  # the error below says it, not a warning beside it
        X = np.ascontiguousarray(X, dtype=dtype)
    if not X.flags.writeable:
        X = X.copy()
    if not finite(X):
        raise ValueError("X contains NaN or infinity (after conversion to %s)" % dtype)
    return X


#: What cross_entropy's refusals add: it is the default loss, and a regression's
#: continuous targets met it (the messages never said mse).
_DEFAULT_LOSS = " (cross_entropy is MLP's default loss; for regression use loss='mse')"


def check_targets(y, loss, n_outputs, n_samples, dtype):
    """Return targets as the 2-D array ``T`` the loss kernels read (see
    :mod:`fastdnn.kernels.cpu.losses`)."""
    y = _as_numeric(y, "y")
    if y.ndim == 0:  # "y has 0 samples" read as if it were empty
        raise ValueError(f"y must be an array of {n_samples} targets, one per row of X; "
                         f"got the scalar {y.item()!r}")
    if y.shape[:1] != (n_samples,):
        raise ValueError(f"y has {y.shape[0]} samples but X has {n_samples}")
    if not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinity")
    if loss == CROSS_ENTROPY:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1:
            raise ValueError(f"cross_entropy needs y of shape (n_samples,) with class labels; "
                             f"got {y.shape}{_DEFAULT_LOSS}")
        if np.any(y != np.round(y)):
            raise ValueError(f"cross_entropy labels must be integers 0..n_classes-1"
                             f"{_DEFAULT_LOSS}")
        if y.min() < 0 or y.max() >= n_outputs:
            raise ValueError(
                f"labels out of range: got {y.min():g}..{y.max():g}, the net has {n_outputs} "
                f"classes (labels 0..{n_outputs - 1})"
            )
        return np.ascontiguousarray(y.reshape(-1, 1), dtype=dtype)
    given = y.shape  # the message's: a 1-D y said "got (60, 1)"
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        hint = (" (one column per output; integer class labels go with "
                "loss='cross_entropy')" if len(given) == 1 else "")
        raise ValueError(f"y must have shape ({n_samples}, {n_outputs}) for a net with "
                         f"{n_outputs} outputs; got {given}{hint}")
    if loss == BINARY_CROSS_ENTROPY and (y.min() < 0 or y.max() > 1):
        raise ValueError("binary_cross_entropy targets must lie in [0, 1]")
    if loss == POISSON and y.min() < 0:
        raise ValueError(f"poisson targets must be >= 0 (counts or rates); got {y.min():g}")
    with np.errstate(over="ignore"):
        T = np.ascontiguousarray(y, dtype=dtype)
    # Checked again after the cast: a float64 1e39 is finite, but inf in a float32 net.
    if not finite(T):
        raise ValueError(f"y overflows {np.dtype(dtype).name} (values beyond its range)")
    return T


def is_integer(value):
    """Whether ``value`` is an integer argument: a Python or NumPy integer, not a bool
    (``True`` is no count) nor a ``np.timedelta64`` (a NumPy signed integer: 3 days read
    as 3)."""
    return (isinstance(value, numbers.Integral)
            and not isinstance(value, (bool, np.bool_, np.timedelta64)))


def as_real(name, value):
    """``value`` as a float: a ``TypeError`` naming ``name`` for what is no real number
    (a bool, a ``np.timedelta64``, a string), a ``ValueError`` for an integer beyond
    float64's range (``10**400``: an ``OverflowError`` out of ``math.isfinite``)."""
    if isinstance(value, (bool, np.bool_, np.timedelta64)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # 10**400, or a Fraction of such integers
        raise ValueError(f"{name} must be finite; got a number beyond float64's "
                         f"range") from None


def check_positive_int(name, value):
    """Return ``value`` as an int >= 1, or raise a ``ValueError``/``TypeError`` naming it."""
    if not is_integer(value):
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    return int(value)


def check_n_threads(n_threads):
    """Validate an ``n_threads`` setting (``None`` or an int >= 1)."""
    if n_threads is None:
        return None
    if not is_integer(n_threads) or n_threads < 1:
        raise ValueError(f"n_threads must be None or an integer >= 1; got {n_threads!r}")
    return int(n_threads)


def check_verbose(verbose):
    """Validate a ``verbose`` flag: a bool, or an integer as Keras' 0/1 (the string "no"
    printed the progress)."""
    if not isinstance(verbose, (bool, np.bool_, numbers.Integral)):
        raise TypeError(f"verbose must be True or False; got {verbose!r}")


def check_sample_weight(sample_weight, n_samples, what="sample_weight"):
    """Return ``sample_weight`` as a float64 vector of ``n_samples`` finite weights >= 0,
    not all 0 (a scalar applies to every row), scaled to mean 1.

    Every loss is ``sum(w l) / sum(w)``, so a common factor changes nothing; scaling to
    mean 1 keeps weights of any magnitude representable in the net's dtype (1e39 is
    inf in float32, 1e-50 is 0 there, and 1e307 of them sum to inf in float64), and
    leaves unit weights exactly 1.
    """
    w = _as_numeric(sample_weight, what).astype(np.float64)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.shape != (n_samples,):
        raise ValueError(f"{what} must have shape ({n_samples},); got {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{what} contains NaN or infinity")
    if (w < 0).any():
        raise ValueError(f"{what} must be >= 0")
    return normalize_weights(w, what)


def normalize_weights(w, what="sample_weight"):
    """Finite weights >= 0 scaled to mean 1 (max first, so the mean cannot overflow);
    a ValueError when they are all 0."""
    top = w.max()
    if not top > 0:
        raise ValueError(f"{what} gives every row weight 0: no sample would count")
    w = w / top
    return w / w.mean()
