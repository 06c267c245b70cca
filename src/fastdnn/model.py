"""The user-facing net: :class:`MLP` assembles the kernels into a trainable model."""
import copy
import math
import time

import numpy as np

from . import serialize
from .devices import require_cuda
from .fitting import FitPlan, FitRun
from .kernels import spec
from .optim import make_optimizer
from .schedules import make_schedule
from .validation import check_dtype, check_n_threads, check_positive_int, check_targets

_SAMPLING = {True: spec.SHUFFLE, False: spec.IN_ORDER, "uniform": spec.UNIFORM}
# He initialisation suits the rectifiers; Glorot the saturating activations.
_HE = frozenset({spec.RELU, spec.LEAKY_RELU, spec.ELU})


#: More parameters than any machine holds: refused with a ValueError before any buffer
#: is sized (a 2**40-wide layer overflowed NumPy's shape arithmetic instead).
_MAX_PARAMS = 1 << 40


def _check_sizes(sizes):
    if isinstance(sizes, (set, frozenset, dict, str, bytes)):
        raise TypeError(f"sizes must be an ordered list of layer widths, got a "
                        f"{type(sizes).__name__}")
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
    sizes = [int(s) for s in sizes]
    n_params = spec.param_offsets(sizes)[2]
    if n_params >= _MAX_PARAMS:
        raise ValueError(f"a net of widths {sizes} would have {n_params:,} parameters; "
                         f"that is more than fits in memory")
    return sizes


def _check_activations(activation, n_hidden):
    if isinstance(activation, str):
        names = [activation] * n_hidden
    elif isinstance(activation, (list, tuple)):
        names = list(activation)
    else:
        raise TypeError(f"activation must be a name or a list of names, got {type(activation).__name__}")
    if len(names) != n_hidden:
        raise ValueError(f"got {len(names)} activations for {n_hidden} hidden layers")
    return [spec.activation_code(name) for name in names]


def _make_backend(device, sizes, codes, loss, dtype):
    if not isinstance(device, str) or device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}")
    if device == "auto":
        from .devices import auto_device
        device = auto_device(sizes)
    # Each tree is imported only when chosen: the CPU one starts Numba's thread pool,
    # the CUDA one imports numba.cuda.
    if device == "cuda":
        require_cuda()  # a DeviceError saying why, before numba.cuda is imported
        from .kernels.cuda.backend import CUDABackend
        return CUDABackend(sizes, codes, loss, dtype)
    from .kernels.cpu.backend import CPUBackend
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
        Threads of Numba's pool during this net's calls on the CPU, restored afterwards
        (default: leave the process setting).  BLAS runs single-threaded inside them.

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
        self._loss = spec.loss_code(loss)
        if self._loss == spec.CROSS_ENTROPY and self.sizes[-1] < 2:
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
        return [spec.ACTIVATION_NAMES[c] for c in self._codes]

    @property
    def loss_name(self):
        """Name of the loss."""
        return spec.LOSS_NAMES[self._loss]

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
        layers += [f"{w} {spec.ACTIVATION_NAMES[c]}" for w, c in zip(self.sizes[1:-1], self._codes)]
        layers.append(str(self.sizes[-1]))
        return (f"MLP({' -> '.join(layers)}, loss={self.loss_name!r}, dtype={self.dtype.name!r}, "
                f"device={self.device!r}, params={self.n_params:,})")

    def __copy__(self):
        """A net with the same architecture, weights and generator state that shares
        nothing with this one (training the copy leaves the original alone)."""
        new = type(self)(self.sizes, activation=self.activations, loss=self.loss_name,
                         dtype=self.dtype.name, device=self.device, n_threads=self.n_threads)
        new.seed = self.seed
        new._rng = copy.deepcopy(self._rng)
        new._backend.set_theta(self._backend.get_theta())
        return new

    def __deepcopy__(self, memo):
        return self.__copy__()

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
    def _XT(self, X, y):
        X = self._backend.check_X(X)
        return X, check_targets(y, self._loss, self.sizes[-1], X.shape[0], self.dtype)

    def _outputs(self, X, head):
        X = self._backend.check_X(X)
        with self._backend.limit_threads(self.n_threads):
            return self._backend.outputs(X, head)

    def forward(self, X):
        """Raw outputs of the last layer (the logits), shape ``(n_samples, n_outputs)``.

        A CUDA device array in gives a device array out (also for ``predict`` and
        ``predict_proba``); anything else gives NumPy arrays.
        """
        return self._outputs(X, spec.LOGITS)

    def predict(self, X):
        """Class labels (classification) or predicted values (regression).

        Multi-output binary cross-entropy returns a 0/1 matrix; one-output nets
        return 1-D arrays.
        """
        out = self._outputs(X, spec.LABELS)
        return out.reshape(out.shape[0]) if out.shape[1] == 1 else out

    def predict_proba(self, X):
        """Class probabilities: softmax rows, or sigmoids (``(n, 2)`` for one output)."""
        if self._loss not in spec.CLASSIFIERS:
            raise ValueError("predict_proba needs a classification loss, this net uses 'mse'")
        return self._outputs(X, spec.PROBABILITIES)

    def score(self, X, y):
        """Accuracy (classification) or the coefficient of determination R^2 (mse)."""
        X, T = self._XT(X, y)
        with self._backend.limit_threads(self.n_threads):
            Z = self._backend.to_numpy(self._backend.outputs(X, spec.LOGITS))
        return self._metric(Z, T)

    def _metric(self, Z, T):
        """Accuracy or R^2 of NumPy logits ``Z`` against the checked targets ``T``."""
        if self._loss == spec.CROSS_ENTROPY:
            return float(np.mean(Z.argmax(axis=1) == T[:, 0]))
        if self._loss == spec.BINARY_CROSS_ENTROPY:
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
        with self._backend.limit_threads(self.n_threads):
            return self._backend.evaluate(X, T)[0]

    def gradients(self, X, y):
        """``[(dW, db), ...]``: layerwise backprop of the mean loss over ``(X, y)``."""
        X, T = self._XT(X, y)
        with self._backend.limit_threads(self.n_threads):
            _, grad = self._backend.gradient(X, T)
        return self._unflatten(grad)

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
        plan = self._fit_plan(X, y, epochs, batch_size, optimizer, schedule, validation_data,
                              shuffle, patience)
        with self._backend.limit_threads(self.n_threads):
            run = FitRun(self, plan, verbose)
            while not run.done:
                seed = run.next_seed()
                start = time.perf_counter()
                result = run.trainer.run_epoch(plan.sampling, seed)
                run.book(result, time.perf_counter() - start)
        return run.history

    def _fit_plan(self, X, y, epochs, batch_size, optimizer, schedule, validation_data,
                  shuffle, patience):
        """Check every argument of ``fit`` (nothing runs before all are valid)."""
        X, T = self._XT(X, y)
        epochs = check_positive_int("epochs", epochs)
        # Capped here, once: the trainers size their buffers from it.
        batch_size = min(check_positive_int("batch_size", batch_size), X.shape[0])
        if patience is not None:
            patience = check_positive_int("patience", patience)
        if isinstance(shuffle, np.bool_):
            shuffle = bool(shuffle)
        if not (isinstance(shuffle, bool) or (isinstance(shuffle, str) and shuffle == "uniform")):
            raise ValueError(f"shuffle must be True, False or 'uniform'; got {shuffle!r}")
        validation = None
        if validation_data is not None:
            try:
                Xv, yv = validation_data
            except (TypeError, ValueError):
                raise TypeError("validation_data must be a pair (X_val, y_val)") from None
            validation = self._XT(Xv, yv)
        plan = FitPlan(X, T, epochs, batch_size, _SAMPLING[shuffle], None, None, validation,
                       patience)
        return self._with_optimizer(plan, optimizer, schedule)

    @staticmethod
    def _with_optimizer(plan, optimizer, schedule):
        """``plan`` with its optimizer object and the schedule's parameters for the fit's
        total step count (which starts from the optimizer's count)."""
        opt = make_optimizer(optimizer)
        sched = make_schedule(schedule)
        total_steps = opt.t + plan.epochs * -(-plan.X.shape[0] // plan.batch_size)
        return plan._replace(optimizer=opt, schedule=(sched.code, sched.params(total_steps)))

    # -- persistence -----------------------------------------------------------------
    def save(self, path, metadata=None):
        """Save architecture and weights to ``path`` (``.npz``), atomically.

        Parameters
        ----------
        path : str or os.PathLike
        metadata : dict, optional
            Extra arrays to keep with the net (booleans, numbers or text, by names of
            letters, digits, ``_``, ``.``, ``-``), stored as ``meta.<name>`` and read
            back by :meth:`load` into ``net.metadata``.  Default: the ``metadata`` this
            net was loaded with, if any.
        """
        if metadata is None:
            metadata = getattr(self, "metadata", None)
        serialize.save_npz(path, dict(
            sizes=np.array(self.sizes, dtype=np.int64),
            activations=np.array(self.activations),
            loss=np.array(self.loss_name),
            dtype=np.array(self.dtype.name),
            theta=self._backend.get_theta(),
        ), metadata)

    @classmethod
    def load(cls, path, device="cpu", n_threads=None):
        """Load a net saved by :meth:`save` (on either device) onto ``device``.

        The file's metadata come back as ``net.metadata``, a dict of NumPy arrays
        (empty for a file saved without).

        Raises
        ------
        ValueError
            For a file that is not a fastdnn model, is corrupt, or holds an invalid
            architecture or weights (checked before anything is allocated).
        """
        # The caller's own arguments are checked first, so their errors name them, not the file.
        if not isinstance(device, str) or device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}")
        n_threads = check_n_threads(n_threads)
        d, metadata = serialize.load_npz(path, ("sizes", "activations", "loss", "dtype",
                                                "theta"))
        theta = d["theta"]
        try:
            sizes = d["sizes"]
            if sizes.ndim != 1 or sizes.dtype.kind not in "iu":
                raise ValueError(f"layer widths must be a list of integers; got {sizes!r}")
            sizes = _check_sizes(sizes.tolist())
            # Before any buffer is sized: a tiny file may claim a huge net.
            n_params = spec.param_offsets(sizes)[2]
            if theta.shape != (n_params,):
                raise ValueError(f"the widths {sizes} need {n_params:,} weights, the file holds "
                                 f"{theta.size:,}")
            if theta.dtype.kind not in "iuf":
                raise ValueError(f"weights must be real numbers; got dtype {theta.dtype}")
            net = cls(sizes, activation=[str(a) for a in d["activations"]], loss=str(d["loss"]),
                      dtype=str(d["dtype"]), device=device, n_threads=n_threads)
            with np.errstate(over="ignore"):
                theta = theta.astype(net.dtype)
            if not np.isfinite(theta).all():
                raise ValueError(f"weights are NaN, infinite or beyond {net.dtype.name}'s range")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path!r} holds an invalid model: {exc}") from None
        net._backend.set_theta(theta)
        net.metadata = metadata
        return net
