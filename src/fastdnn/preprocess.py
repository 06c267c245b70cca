"""What the command line does to data around a net, and keeps with it.

``fastdnn train --data`` chooses the task from the targets, maps class labels (text
included) to the codes 0..k-1 the losses read, and scales inputs (and regression
targets) with statistics of the training rows.  :class:`Preprocessing` holds all of it
and travels in the model file's metadata (``MLP.save(path, metadata=...)``), so that
``fastdnn predict`` and ``fastdnn evaluate`` apply the same scaling and give back the
original labels.  Metadata names:

=================  ==========================================================
``classes``        the original labels, in code order (classification)
``scaling``        ``"standard"`` or ``"minmax"`` (absent: inputs unscaled)
``x_offset``       per input column: ``x' = (x - x_offset) / x_scale``
``x_scale``
``y_offset``       per output (regression): ``y' = (y - y_offset) / y_scale``
``y_scale``
``feature_names``  the CSV columns the net reads, in order
``target``         the target column (CSV) or array (.npz) it was trained on
=================  ==========================================================
"""
from typing import NamedTuple

import numpy as np

from .kernels import spec

SCALINGS = ("standard", "minmax", "none")
TASKS = ("classification", "regression")
CLASSIFICATION_LOSSES = ("cross_entropy", "binary_cross_entropy")
#: The losses :func:`choose_task` takes.
LOSSES = tuple(spec.LOSSES)

#: Integer targets with at most this many distinct values are class labels; more are a
#: quantity unless they are exactly 0..k-1.  20 keeps digits-, grade- and star-rating-
#: like labels classes, while counts and measured integers (the diabetes targets: 214
#: values from 25 to 346, in 442 rows) stay regression.
MAX_IMPLICIT_CLASSES = 20


class Task(NamedTuple):
    """The task and loss :func:`choose_task` picked, and why."""

    name: str
    loss: str
    reason: str


def choose_task(y, task=None, loss=None):
    """Choose classification or regression, and the loss, for targets ``y``.

    Parameters
    ----------
    y : ndarray
        Targets as :func:`fastdnn.datasets.load_table` returns them: text labels,
        ``int64`` whole numbers, or floats; 1-D or 2-D.
    task : {"classification", "regression"}, optional
        Asked for explicitly; ``None`` chooses from ``y``.
    loss : str, optional
        Asked for explicitly; it implies its task (a ``task`` that differs is refused).

    Returns
    -------
    Task
        When nothing is asked for: text labels are classes; 2-D targets are several
        regression outputs; fractional numbers are regression; whole numbers are classes
        when there are at most :data:`MAX_IMPLICIT_CLASSES` distinct values or they are
        exactly 0..k-1, else regression.

    Raises
    ------
    ValueError
        When the targets cannot serve the task asked for, or ``task`` is not the one
        ``loss`` implies.
    """
    if task not in (None, *TASKS):
        raise ValueError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}; got {loss!r}")
    if loss is not None:
        implied = "classification" if loss in CLASSIFICATION_LOSSES else "regression"
        if task is not None and task != implied:
            raise ValueError(f"loss {loss!r} is not a {task} loss; it implies {implied}")
        task, reason = implied, f"--loss {loss}"
    elif task is not None:
        reason = f"--task {task}"
    elif y.dtype.kind == "U":
        task, reason = "classification", "the targets are text labels"
    elif y.ndim == 2:
        task, reason = "regression", f"{y.shape[1]} target columns"
    elif y.dtype.kind not in "iu":
        task, reason = "regression", "the targets are fractional numbers"
    else:
        values = np.unique(y)
        k = len(values)
        if k <= MAX_IMPLICIT_CLASSES:
            task = "classification"
            reason = f"{k} distinct whole-number targets, at most {MAX_IMPLICIT_CLASSES}"
        elif np.array_equal(values, np.arange(k)):
            task, reason = "classification", f"the targets are the class codes 0..{k - 1}"
        else:
            task = "regression"
            reason = (f"{k} distinct whole-number targets, more than "
                      f"{MAX_IMPLICIT_CLASSES} and not 0..k-1; --task classification "
                      f"makes them classes")
    if task == "regression" and y.dtype.kind == "U":
        raise ValueError("regression needs numeric targets; these are text labels")
    # Whole numbers arrive as int64 (load_table), so 1-D floats hold fractions, which
    # only binary_cross_entropy takes as targets (probabilities in [0, 1]).
    if task == "classification" and y.ndim == 1 and y.dtype.kind == "f" \
            and loss != "binary_cross_entropy":
        raise ValueError("classification needs whole-number or text labels; the targets "
                         "are fractional (use --task regression)")
    if loss is None:
        loss = ("cross_entropy" if y.ndim == 1 else "binary_cross_entropy") \
            if task == "classification" else "mse"
    return Task(task, loss, reason)


def encode_targets(y, loss, dtype):
    """Targets as ``loss`` reads them; return ``(T, n_outputs, classes)``.

    Class labels of any kind (text, 1..k, -1/+1) become the codes 0..k-1 in sorted
    order, and ``classes`` lists them in code order (``None`` for regression and for
    binary_cross_entropy's fractional or multi-label targets).
    """
    labels = y.ndim == 1 and y.dtype.kind in "iuU"
    if loss == "cross_entropy" or (loss == "binary_cross_entropy" and labels):
        if not labels:
            raise ValueError(f"{loss} needs whole-number or text class labels in a 1-D target")
        classes, codes = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"classification needs at least 2 classes, found {len(classes)}")
        if loss == "binary_cross_entropy" and len(classes) != 2:
            raise ValueError(f"binary_cross_entropy on labels needs 2 classes, found "
                             f"{len(classes)} (use cross_entropy)")
        n_outputs = len(classes) if loss == "cross_entropy" else 1
        return codes.reshape(-1).astype(np.int64), n_outputs, classes
    if y.dtype.kind == "U":
        raise ValueError(f"{loss} needs numeric targets; these are text labels")
    T = np.ascontiguousarray(y, dtype=dtype)
    if loss == "binary_cross_entropy" and (T.min() < 0 or T.max() > 1):
        raise ValueError("binary_cross_entropy needs targets in [0, 1]")
    return T, (1 if T.ndim == 1 else T.shape[1]), None


def describe_classes(classes, limit=10):
    """``"labels [1, 2]"`` or, for many, ``"12 labels ['a', 'b', ..., 'l']"``."""
    items = [repr(c) if isinstance(c, str) else str(c) for c in classes.tolist()]
    if len(items) <= limit:
        return f"labels [{', '.join(items)}]"
    return f"{len(items)} labels [{', '.join(items[:limit - 1])}, ..., {items[-1]}]"


class Scaler(NamedTuple):
    """Per-column affine scaling ``x' = (x - offset) / scale``."""

    method: str
    offset: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, method, X):
        """The scaling ``method`` ("standard" or "minmax") fitted to the columns of ``X``.

        A constant column gets its value as the offset and scale 1 (it becomes 0) rather
        than a division by zero, or by the rounding error of its standard deviation (ten 0.1s
        have a std of 1.4e-17, which scaled them to 1 and a new 0.2 to 7.2e15).  Constant
        up to rounding counts so too (scikit-learn's rule, near enough): a spread within
        ``n * eps`` of the column's magnitude (0.3 and 0.1 + 0.2 were scaled by 5.6e-17).
        Where a square or a difference overflows, the columns are divided by their
        largest magnitude first, so that values up to float64's largest give a finite
        scale (1e160 gave a std of inf, and a model file that predict refused); so too
        where a column's squares underflow (values below ~1e-130: 1e-200 gave a std of
        0, so scale 1, and float32 inputs of 0).

        Raises
        ------
        ValueError
            For a NaN or infinite value, or a column whose scale itself overflows
            float64 (a spread beyond 1.8e308).
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[:, None]
        if method not in ("standard", "minmax"):
            raise ValueError(f"scaling must be 'standard' or 'minmax'; got {method!r}")
        if not len(X):
            return cls(method, np.zeros(X.shape[1]), np.ones(X.shape[1]))
        if not np.isfinite(X).all():  # "beyond float64's range" blamed a NaN on its spread
            row, column = np.argwhere(~np.isfinite(X))[0]
            raise ValueError(f"X[{row}, {column}] is {X[row, column]}: the scaling needs "
                             f"finite values")
        with np.errstate(over="ignore", invalid="ignore"):
            offset, scale = _moments(method, X)
            big = np.abs(X).max(axis=0)
            if not (np.isfinite(offset).all() and np.isfinite(scale).all()) \
                    or ((big > 0) & (big < _UNDERFLOWS)).any():
                # A square or a difference overflowed, or a square underflowed: again, of
                # each column within [-1, 1] (only then: the plain formulas' bits for the
                # others).
                unit = np.where(big > 0, big, 1.0)
                offset, scale = (v * unit for v in _moments(method, X / unit))
            spread = X.max(axis=0) / 2 - X.min(axis=0) / 2
        constant = spread <= len(X) * np.finfo(np.float64).eps * big / 2
        offset = np.where(constant, X[0], offset)
        scale = np.where(constant | (scale <= 0), 1.0, scale)
        if not np.isfinite(scale).all():
            column = int(np.argmin(np.isfinite(scale)))
            raise ValueError(f"column {column}'s spread is beyond float64's range (values "
                             f"from {X[:, column].min():.3g} to {X[:, column].max():.3g}): "
                             f"scale the data down first")
        return cls(method, offset, scale)

    def transform(self, X, dtype):
        """``(X - offset) / scale`` as ``dtype``, in the shape of ``X``.

        In float64, a block of rows at a time: the whole-array form made two float64
        temporaries of ``X``'s size besides the result (``fastdnn train`` peaked at 4x
        the float64 data there); the same bits."""
        X = np.asarray(X, dtype=np.float64)
        rows = self._rows(X, "X")
        out = np.empty(rows.shape, dtype=dtype)
        step = max(1, (1 << 16) // max(rows.shape[1], 1))  # ~512 KiB of float64 a block
        for start in range(0, len(rows), step):
            block = slice(start, start + step)
            out[block] = (rows[block] - self.offset) / self.scale
        return out.reshape(X.shape)

    def inverse(self, Z):
        """``Z * scale + offset`` (float64), in the shape of ``Z``."""
        Z = np.asarray(Z, dtype=np.float64)
        return (self._rows(Z, "Z") * self.scale + self.offset).reshape(Z.shape)

    def _rows(self, X, name):
        """``X`` as a 2-D array of rows, or a ValueError where its columns are not the
        scaling's (NumPy's broadcast errors said 'could not broadcast input array from
        shape (5,3) into shape (5,1)'); 0 rows too ('cannot reshape array of size 0')."""
        if X.ndim == 0:
            raise ValueError(f"{name} must be an array of rows; got a scalar")
        rows = X.reshape(len(X), int(np.prod(X.shape[1:], dtype=np.int64)))
        if rows.shape[1] != np.size(self.offset):
            raise ValueError(f"{name} has {rows.shape[1]} columns (shape {X.shape}); the "
                             f"scaling was fitted to {np.size(self.offset)}")
        return rows


#: Columns whose largest magnitude is below this are scaled as if within [-1, 1]: the
#: squares of their deviations (below ulp(1e-130)**2, ~1e-292) would lose digits to the
#: subnormal numbers, or be 0.
_UNDERFLOWS = 1e-130


def _moments(method, X):
    """``(offset, scale)`` of ``method`` ("standard" or "minmax") for the columns of ``X``."""
    if method == "standard":
        return X.mean(axis=0), X.std(axis=0)
    low = X.min(axis=0)
    return low, X.max(axis=0) - low


class Preprocessing(NamedTuple):
    """Everything between a data file and a net: see the module docstring."""

    x_scaler: Scaler | None = None
    y_scaler: Scaler | None = None
    classes: np.ndarray | None = None
    feature_names: list[str] | None = None
    target: str | None = None

    def to_metadata(self):
        """The dict to pass to ``MLP.save(path, metadata=...)``."""
        meta = {}
        if self.x_scaler is not None:
            meta.update(scaling=self.x_scaler.method, x_offset=self.x_scaler.offset,
                        x_scale=self.x_scaler.scale)
        if self.y_scaler is not None:
            meta.update(y_offset=self.y_scaler.offset, y_scale=self.y_scaler.scale)
        if self.classes is not None:
            meta["classes"] = self.classes
        if self.feature_names is not None:
            meta["feature_names"] = np.array(self.feature_names, dtype=str)
        if self.target is not None:
            meta["target"] = self.target
        return meta

    @classmethod
    def from_net(cls, net):
        """The preprocessing saved with a loaded ``net`` (none: an identity).

        Raises
        ------
        ValueError
            When the metadata do not fit the net (a tampered or foreign file).
        """
        meta = getattr(net, "metadata", {})
        n_in, n_out = net.sizes[0], net.sizes[-1]

        def vector(name, n):
            value = np.asarray(meta[name])
            if value.shape != (n,) or value.dtype.kind not in "iuf" \
                    or not np.all(np.isfinite(value)):
                raise ValueError(f"the model's metadata {name!r} must be {n} finite numbers")
            return value.astype(np.float64)

        def scaler(prefix, n):
            if f"{prefix}_offset" not in meta and f"{prefix}_scale" not in meta:
                return None
            if f"{prefix}_offset" not in meta or f"{prefix}_scale" not in meta:
                raise ValueError(f"the model's metadata has only one of {prefix}_offset "
                                 f"and {prefix}_scale")
            scale = vector(f"{prefix}_scale", n)
            if np.any(scale == 0):
                raise ValueError(f"the model's metadata {prefix}_scale holds a zero")
            return Scaler(str(meta.get("scaling", "")), vector(f"{prefix}_offset", n), scale)

        classes = meta.get("classes")
        if classes is not None:
            n_classes = n_out if net.loss_name == "cross_entropy" else 2
            if net.loss_name not in CLASSIFICATION_LOSSES or classes.shape != (n_classes,) or (
                    net.loss_name == "binary_cross_entropy" and n_out != 1):
                raise ValueError(f"the model's metadata 'classes' must hold {n_classes} "
                                 f"labels for a net of {n_out} {net.loss_name} outputs")
        names = meta.get("feature_names")
        if names is not None:
            if names.shape != (n_in,) or names.dtype.kind != "U":
                raise ValueError(f"the model's metadata 'feature_names' must be {n_in} names")
            names = names.tolist()
        target = meta.get("target")
        return cls(x_scaler=scaler("x", n_in),
                   y_scaler=scaler("y", n_out) if net.loss_name == "mse" else None,
                   classes=classes, feature_names=names,
                   target=None if target is None else str(target))

    def inputs(self, X, dtype):
        """``X`` scaled as in training, as ``dtype``."""
        return np.asarray(X, dtype=dtype) if self.x_scaler is None \
            else self.x_scaler.transform(X, dtype)

    def targets(self, y, dtype):
        """Targets as the net reads them: label codes, or values scaled as in training.

        Raises
        ------
        ValueError
            For labels the model never saw.
        """
        if self.classes is not None:
            if y.ndim != 1:
                raise ValueError(f"expected one label per sample; got targets of shape {y.shape}")
            codes = {label: i for i, label in enumerate(self.classes.tolist())}
            unknown = sorted({label for label in y.tolist() if label not in codes}, key=str)
            if unknown:
                raise ValueError(f"{describe_classes(np.array(unknown))} not seen in "
                                 f"training (the model knows {describe_classes(self.classes)})")
            return np.array([codes[label] for label in y.tolist()], dtype=np.int64)
        if y.dtype.kind == "U":
            raise ValueError("the targets are text, but the model has no label names: "
                             "it reads numbers")
        if self.y_scaler is not None:
            k = np.size(self.y_scaler.offset)
            if (y.shape[1] if y.ndim == 2 else 1) != k:  # NumPy's reshape error, before
                raise ValueError(f"targets of shape {y.shape}; the model predicts {k} "
                                 f"value{'s' if k > 1 else ''} per sample")
            return self.y_scaler.transform(y, dtype)
        return y

    def outputs(self, predictions):
        """Net predictions back in the data's terms: original labels, unscaled values."""
        if self.classes is not None and predictions.ndim == 1:
            return self.classes[predictions.astype(np.int64)]
        if self.y_scaler is not None:
            return self.y_scaler.inverse(predictions)
        return predictions
