"""The user-facing net: :class:`MLP` assembles the kernels into a trainable model."""
import math
import sys
import time

import numpy as np

from . import config, serialize
from .activations import ACTIVATION_NAMES, RELU, LEAKY_RELU, ELU, activation_code
from .errors import TrainingDivergedError
from .losses import BINARY_CROSS_ENTROPY, CLASSIFIERS, CROSS_ENTROPY, LOSS_NAMES, loss_code
from .optim import make_optimizer
from .schedules import make_schedule
from .threads import check_n_threads, limit_threads
from .train import IN_ORDER, SHUFFLE, UNIFORM
from .validation import check_dtype, check_positive_int, check_targets, check_X

_SAMPLING = {True: SHUFFLE, False: IN_ORDER, "uniform": UNIFORM}
# He initialisation suits the rectifiers; Glorot the saturating activations.
_HE = frozenset({RELU, LEAKY_RELU, ELU})


class History:
    """Per-epoch record of a ``fit``: ``loss``, ``val_loss``, ``val_metric``, ``lr``, ``seconds``.

    ``val_metric`` is accuracy for classification and R^2 for regression; the
    validation entries are ``nan`` when no validation data was given.
    """

    KEYS = ("loss", "val_loss", "val_metric", "lr", "seconds")

    def __init__(self):
        for key in self.KEYS:
            setattr(self, key, [])

    def append(self, **values):
        for key in self.KEYS:
            getattr(self, key).append(float(values[key]))

    @property
    def history(self):
        """The records as a dict of lists (Keras' ``History.history``)."""
        return {key: list(getattr(self, key)) for key in self.KEYS}

    def __len__(self):
        return len(self.loss)

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.4g}" if self.loss else ""
        return f"History({len(self)} epochs{last})"


def _check_sizes(sizes):
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a list of layer widths, got {type(sizes).__name__}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output width; got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"layer widths must be integers; got {s!r}")
        if s < 1:
            raise ValueError(f"layer widths must be >= 1; got {sizes}")
    return [int(s) for s in sizes]


def _check_activations(activation, n_hidden):
    if isinstance(activation, str):
        names = [activation] * n_hidden
    elif isinstance(activation, (list, tuple)):
        names = list(activation)
    else:
        raise TypeError(f"activation must be a name or a list of names, got {type(activation).__name__}")
    if len(names) != n_hidden:
        raise ValueError(f"got {len(names)} activations for {n_hidden} hidden layers")
    return [activation_code(name) for name in names]


def _make_backend(device, sizes, codes, loss, dtype):
    if not isinstance(device, str) or device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}")
    if device == "auto":
        from .devices import auto_device
        device = auto_device(sizes)
    if device == "cuda":
        from .gpu_backend import GPUBackend
        return GPUBackend(sizes, codes, loss, dtype)
    from .cpu_backend import CPUBackend
    return CPUBackend(sizes, codes, loss, dtype)


class MLP:
    """A deep feed-forward net ``h_i = g(h_{i-1} W_i + b_i)`` trained by minibatch SGD.

    Parameters
    ----------
    sizes : list of int
        Layer widths, input first and output last, e.g. ``[64, 128, 128, 10]``.
    activation : str or list of str, default "relu"
        Hidden activation, one name or one per hidden layer: identity, relu,
        leaky_relu, elu, tanh, sigmoid, softplus, gelu, silu.  The output layer is
        linear; the loss applies softmax or sigmoid.
    loss : {"cross_entropy", "mse", "binary_cross_entropy"}
        Softmax + cross-entropy on integer labels, mean squared error, or sigmoid +
        binary cross-entropy on targets in [0, 1].
    dtype : {"float32", "float64"}
    device : {"cpu", "cuda", "auto"}
    seed : int, optional
        Seeds initialisation and sampling: same seed, same data -> bit-identical weights.
    n_threads : int, optional
        BLAS threads during this net's calls (default: leave the process setting).

    Examples
    --------
    >>> import fastdnn as fd
    >>> net = fd.MLP([2, 8, 2], activation="tanh", seed=0)
    >>> X = [[0, 0], [0, 1], [1, 0], [1, 1]]; y = [0, 1, 1, 0]
    >>> hist = net.fit(X, y, epochs=300, batch_size=4, optimizer=fd.Adam(lr=0.05))
    >>> net.predict(X).tolist()
    [0, 1, 1, 0]
    """

    def __init__(self, sizes, activation="relu", loss="cross_entropy", dtype="float32",
                 device="cpu", seed=None, n_threads=None):
        self.sizes = _check_sizes(sizes)
        self._codes = _check_activations(activation, len(self.sizes) - 2)
        self._loss = loss_code(loss)
        if self._loss == CROSS_ENTROPY and self.sizes[-1] < 2:
            raise ValueError("cross_entropy needs >= 2 outputs; use binary_cross_entropy for one")
        self.dtype = check_dtype(dtype)
        self.n_threads = check_n_threads(n_threads)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._backend = _make_backend(device, self.sizes, self._codes, self._loss, self.dtype)
        self._backend.set_theta(self._init_theta())

    # -- description -----------------------------------------------------------------
    @property
    def activations(self):
        """Names of the hidden activations, one per hidden layer."""
        return [ACTIVATION_NAMES[c] for c in self._codes]

    @property
    def loss_name(self):
        """Name of the loss."""
        return LOSS_NAMES[self._loss]

    @property
    def device(self):
        """'cpu' or 'cuda': where the parameters live."""
        return self._backend.device

    @property
    def n_params(self):
        """Number of trainable parameters."""
        return self._backend.n_params

    def __repr__(self):
        layers = [str(self.sizes[0])]
        layers += [f"{w} {ACTIVATION_NAMES[c]}" for w, c in zip(self.sizes[1:-1], self._codes)]
        layers.append(str(self.sizes[-1]))
        return (f"MLP({' -> '.join(layers)}, loss={self.loss_name!r}, dtype={self.dtype.name!r}, "
                f"device={self.device!r}, params={self.n_params:,})")

    # -- parameters ------------------------------------------------------------------
    def _init_theta(self):
        parts = []
        n_layers = len(self.sizes) - 1
        for i, (k, n) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            fan_avg = k if i < n_layers - 1 and self._codes[i] in _HE else (k + n) / 2
            limit = math.sqrt(3.0 / fan_avg)
            parts.append(self._rng.uniform(-limit, limit, size=k * n))
            parts.append(np.zeros(n))
        return np.concatenate(parts).astype(self.dtype)

    def _unflatten(self, theta):
        out, off = [], 0
        for k, n in zip(self.sizes[:-1], self.sizes[1:]):
            W = theta[off:off + k * n].reshape(k, n).copy()
            off += k * n
            out.append((W, theta[off:off + n].copy()))
            off += n
        return out

    def get_weights(self):
        """``[(W, b), ...]`` per layer as NumPy copies; ``W`` has shape ``(fan_in, fan_out)``."""
        return self._unflatten(self._backend.get_theta())

    def set_weights(self, weights):
        """Set all parameters from ``[(W, b), ...]`` (shapes as :meth:`get_weights` returns).

        Raises
        ------
        ValueError
            On a wrong number of layers, a wrong shape, or non-finite values.
        """
        weights = list(weights)
        if len(weights) != len(self.sizes) - 1:
            raise ValueError(f"expected {len(self.sizes) - 1} (W, b) pairs, got {len(weights)}")
        parts = []
        for i, (pair, k, n) in enumerate(zip(weights, self.sizes[:-1], self.sizes[1:])):
            try:
                W, b = pair
            except (TypeError, ValueError):
                raise TypeError(f"layer {i}: expected a (W, b) pair") from None
            W, b = np.asarray(W), np.asarray(b)
            if W.shape != (k, n) or b.shape != (n,):
                raise ValueError(f"layer {i}: expected W {(k, n)} and b {(n,)}, got W {W.shape} and b {b.shape}")
            if W.dtype.kind not in "biuf" or b.dtype.kind not in "biuf":
                raise TypeError(f"layer {i}: weights must be real numbers")
            parts += [W.ravel(), b]
        theta = np.concatenate(parts).astype(self.dtype)
        if not np.isfinite(theta).all():
            raise ValueError("weights contain NaN or infinity")
        self._backend.set_theta(theta)

    # -- evaluation ------------------------------------------------------------------
    def _X(self, X):
        if self._backend.device == "cuda" and self._backend.is_device_array(X):
            return self._backend.check_device_X(X)  # stays on the GPU
        return check_X(X, self.sizes[0], self.dtype)

    def _XT(self, X, y):
        X = self._X(X)
        return X, check_targets(y, self._loss, self.sizes[-1], X.shape[0], self.dtype)

    def forward(self, X):
        """Raw outputs of the last layer (the logits), shape ``(n_samples, n_outputs)``."""
        return self._backend_forward(self._X(X))

    def predict(self, X):
        """Class labels (classification) or predicted values (regression).

        Multi-output binary cross-entropy returns a 0/1 matrix; one-output nets
        return 1-D arrays.
        """
        Z = self.forward(X)
        if not isinstance(Z, np.ndarray):  # device array in, device array out
            return self._backend.predict_device(Z, self._loss)
        if self._loss == CROSS_ENTROPY:
            return Z.argmax(axis=1)
        if self._loss == BINARY_CROSS_ENTROPY:
            labels = (Z > 0).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X):
        """Class probabilities: softmax rows, or sigmoids (``(n, 2)`` for one output)."""
        if self._loss not in CLASSIFIERS:
            raise ValueError("predict_proba needs a classification loss, this net uses 'mse'")
        Z = self.forward(X)
        if not isinstance(Z, np.ndarray):  # device array in, device array out
            return self._backend.proba_device(Z, self._loss)
        Z = Z.astype(np.float64)
        if self._loss == CROSS_ENTROPY:
            Z -= Z.max(axis=1, keepdims=True)
            P = np.exp(Z)
            P /= P.sum(axis=1, keepdims=True)
        else:
            P = 0.5 * (1.0 + np.tanh(0.5 * Z))  # a sigmoid that never overflows
            if P.shape[1] == 1:
                P = np.hstack([1.0 - P, P])
        return P.astype(self.dtype)

    def score(self, X, y):
        """Accuracy (classification) or the coefficient of determination R^2 (mse)."""
        X, T = self._XT(X, y)
        return self._metric(self._backend_forward(X), T)

    def _backend_forward(self, X):
        with limit_threads(self.n_threads):
            return self._backend.forward(X)

    def _metric(self, Z, T):
        if not isinstance(Z, np.ndarray):  # logits of device-array input
            Z = Z.copy_to_host()
        if self._loss == CROSS_ENTROPY:
            return float(np.mean(Z.argmax(axis=1) == T[:, 0]))
        if self._loss == BINARY_CROSS_ENTROPY:
            return float(np.mean((Z > 0) == (T > 0.5)))
        T = T.astype(np.float64)
        ss_res = ((T - Z) ** 2).sum(axis=0)
        ss_tot = ((T - T.mean(axis=0)) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
        return float(r2.mean())

    def loss(self, X, y):
        """Mean loss over ``(X, y)``."""
        X, T = self._XT(X, y)
        with limit_threads(self.n_threads):
            return self._backend.loss_value(X, T)

    def gradients(self, X, y):
        """``[(dW, db), ...]``: layerwise backprop of the mean loss over ``(X, y)``."""
        X, T = self._XT(X, y)
        with limit_threads(self.n_threads):
            _, grad = self._backend.gradient(X, T)
        return self._unflatten(np.asarray(grad))

    # -- training --------------------------------------------------------------------
    def fit(self, X, y, epochs=10, batch_size=32, optimizer="adam", schedule=None,
            validation_data=None, shuffle=True, verbose=False, patience=None):
        """Train by minibatch SGD (or momentum, Adam, AdamW); whole epochs run compiled.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
        y : array-like
            Integer labels (cross_entropy) or targets of shape ``(n,)``/``(n, n_outputs)``.
        epochs : int, default 10
        batch_size : int, default 32
            Rows per step (capped at ``n_samples``); 1 gives the course's plain SGD.
        optimizer : str or Optimizer, default "adam"
            ``fd.SGD(...)``, ``fd.Adam(...)``, ``fd.AdamW(...)`` or a name.  An instance
            keeps its state across ``fit`` calls.
        schedule : Schedule, optional
            Learning-rate schedule over iterations (default constant).
        validation_data : (X_val, y_val), optional
            Evaluated after each epoch into ``val_loss`` and ``val_metric``.
        shuffle : {True, False, "uniform"}, default True
            A new permutation per epoch, the data in order, or items drawn uniformly
            with replacement (``n_samples`` draws per epoch).
        verbose : bool, default False
            Print a progress line per epoch (epoch, loss, samples/s).
        patience : int, optional
            Stop when the validation loss (training loss without validation data) has
            not improved for this many epochs.

        Returns
        -------
        History

        Raises
        ------
        TrainingDivergedError
            The loss or the weights became NaN/inf; the net keeps its last finite
            weights and the error's ``history`` holds the epochs before.
        """
        X, T = self._XT(X, y)
        epochs = check_positive_int("epochs", epochs)
        batch_size = check_positive_int("batch_size", batch_size)
        if patience is not None:
            patience = check_positive_int("patience", patience)
        if not (isinstance(shuffle, bool) or shuffle == "uniform"):
            raise ValueError(f"shuffle must be True, False or 'uniform'; got {shuffle!r}")
        sampling = _SAMPLING[shuffle]
        opt = make_optimizer(optimizer)
        sched = make_schedule(schedule)
        val = None
        if validation_data is not None:
            try:
                Xv, yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, y_val)") from None
            val = self._XT(Xv, yv)

        steps_per_epoch = -(-X.shape[0] // min(batch_size, X.shape[0]))
        total_steps = opt.t + epochs * steps_per_epoch
        sched_params = sched.params(total_steps)
        hist = History()
        best, since_best = math.inf, 0
        with limit_threads(self.n_threads):
            trainer = self._backend.trainer(X, T, batch_size, opt, (sched.code, sched_params))
            snapshot = None
            if self.n_params * self.dtype.itemsize <= config.SNAPSHOT_BYTES:
                snapshot = np.empty(self.n_params, dtype=self.dtype)  # one buffer, every epoch
            for epoch in range(epochs):
                if snapshot is not None:
                    self._backend.get_theta(snapshot)
                seed = int(self._rng.integers(0, 2**31 - 1))
                start = time.perf_counter()
                loss_sum, seen, steps, failed = trainer.run_epoch(sampling, opt.t, seed)
                seconds = time.perf_counter() - start
                opt.t += steps
                if failed >= 0 or not self._backend.theta_finite():
                    self._recover(snapshot, opt)
                    where = f"step {failed + 1}" if failed >= 0 else "its last step"
                    raise TrainingDivergedError(
                        f"training diverged in epoch {epoch + 1} at {where}: the loss or the "
                        f"weights became NaN/inf (lr too large?); the net keeps its last "
                        f"finite weights", hist)
                lr = opt.lr * sched.factor(max(opt.t - 1, 0), total_steps)  # of the last step
                record = dict(loss=loss_sum / seen, lr=lr, seconds=seconds,
                              val_loss=math.nan, val_metric=math.nan)
                if val is not None:
                    record["val_loss"] = self._backend.loss_value(*val)
                    record["val_metric"] = self._metric(self._backend.forward(val[0]), val[1])
                hist.append(**record)
                if verbose:
                    self._progress(epoch, epochs, record, seen / max(seconds, 1e-12))
                watched = record["val_loss"] if val is not None else record["loss"]
                if watched < best:
                    best, since_best = watched, 0
                else:
                    since_best += 1
                    if patience is not None and since_best >= patience:
                        break
        return hist

    def _recover(self, snapshot, opt):
        # The training loop stops before an update with a non-finite loss or gradient,
        # so the weights are normally the last finite ones already.  Only an update
        # that overflowed them needs the copy from the start of the epoch.
        # Momentum/moments may hold inf: reset.
        opt.reset()
        if self._backend.theta_finite():
            return
        if snapshot is None:
            raise TrainingDivergedError(
                "training diverged: an update overflowed the weights to inf and this net is "
                "too large to keep a copy (config.SNAPSHOT_BYTES); re-initialise it and "
                "lower the learning rate")
        self._backend.set_theta(snapshot)

    @staticmethod
    def _progress(epoch, epochs, record, rate):
        line = f"epoch {epoch + 1}/{epochs}  loss {record['loss']:.4f}"
        if not math.isnan(record["val_loss"]):
            line += f"  val_loss {record['val_loss']:.4f}  val_metric {record['val_metric']:.4f}"
        line += f"  {rate:,.0f} samples/s"
        print(line, file=sys.stdout, flush=True)

    # -- persistence -----------------------------------------------------------------
    def save(self, path):
        """Save architecture and weights to ``path`` (``.npz``), atomically."""
        serialize.save_npz(path, dict(
            sizes=np.array(self.sizes, dtype=np.int64),
            activations=np.array(self.activations),
            loss=np.array(self.loss_name),
            dtype=np.array(self.dtype.name),
            theta=self._backend.get_theta(),
        ))

    @classmethod
    def load(cls, path, device="cpu", n_threads=None):
        """Load a net saved by :meth:`save` (on either device) onto ``device``."""
        d = serialize.load_npz(path, ("sizes", "activations", "loss", "dtype", "theta"))
        try:
            net = cls([int(s) for s in d["sizes"]], activation=[str(a) for a in d["activations"]],
                      loss=str(d["loss"]), dtype=str(d["dtype"]), device=device,
                      n_threads=n_threads)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path!r} holds an invalid model: {exc}") from None
        theta = d["theta"]
        if theta.shape != (net.n_params,) or not np.isfinite(theta).all():
            raise ValueError(f"{path!r} holds weights of the wrong size or non-finite values")
        net._backend.set_theta(theta.astype(net.dtype))
        return net
