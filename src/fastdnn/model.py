"""The user-facing net: :class:`MLP` assembles the kernels into a trainable model."""
import contextlib
import copy
import math
import threading
import warnings

import numpy as np

from . import config, serialize
from .devices import require_cuda
from .errors import DeviceError
from .fitting import FitPlan, FitRun, History, deferred_interrupts
from .kernels import spec
from .lbfgs import fit_lbfgs
from .optim import LBFGS, PENDING, Optimizer, make_optimizer
from .schedules import ReduceLROnPlateau, make_schedule
from .validation import (_as_numeric, as_real, check_dtype, check_n_threads,
                         check_positive_int, check_sample_weight, check_targets,
                         check_verbose, is_integer, normalize_weights, take_rows)

_SAMPLING = {True: spec.SHUFFLE, False: spec.IN_ORDER, "uniform": spec.UNIFORM}
# Rectifiers: LeCun-uniform on the fan-in (variance 1/fan_in; He's is 2/fan_in); the
# saturating activations: Glorot.
_FAN_IN = frozenset({spec.RELU, spec.LEAKY_RELU, spec.ELU})


#: More parameters than any machine holds: refused with a ValueError before any buffer
#: is sized (a 2**40-wide layer overflowed NumPy's shape arithmetic instead).
_MAX_PARAMS = 1 << 40


def _check_seed(seed):
    """``seed`` checked: None or a non-negative integer."""
    if seed is not None and not is_integer(seed):
        # True seeded 1; a NumPy Generator was used in place, shared by every net
        # made from it and advanced by their fits.
        raise TypeError(f"seed must be None or a non-negative integer; got {seed!r}")
    if seed is not None and seed < 0:  # NumPy's own message said it a second time
        raise ValueError(f"seed must be None or a non-negative integer; got {seed!r}")
    return seed


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
        if not is_integer(s):
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


def _check_rate(name, value, upper=1.0, lowest="["):
    """``value`` as a float in ``[0, upper)`` (``lowest="("``: ``(0, upper)``)."""
    value = as_real(name, value)
    if not (0.0 <= value < upper) or (lowest == "(" and value == 0):
        raise ValueError(f"{name} must be in {lowest}0, {upper:g}); got {value!r}")
    return value


def _check_dropout(dropout, n_hidden):
    """One dropout rate per hidden layer, from one rate or a list of them."""
    if isinstance(dropout, np.ndarray) and dropout.ndim == 0:
        dropout = dropout.item()  # np.array(0.1) is one rate (iterating it raised)
    if isinstance(dropout, (list, tuple, np.ndarray)):
        rates = [_check_rate("dropout", r) for r in dropout]
        if len(rates) != n_hidden:
            raise ValueError(f"got {len(rates)} dropout rates for {n_hidden} hidden layers")
        return rates
    return [_check_rate("dropout", dropout)] * n_hidden


def _check_nonneg(name, value, positive=False):
    value = as_real(name, value)
    if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
        raise ValueError(f"{name} must be finite and {'>' if positive else '>='} 0; got "
                         f"{value!r}")
    return float(value)


def _check_callbacks(callbacks):
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list, got {type(callbacks).__name__}")
    hooks = ("on_train_begin", "on_progress", "on_epoch_end", "on_train_end")
    for cb in callbacks:
        if isinstance(cb, type):  # its methods unbound: "missing argument 'logs'" later
            raise TypeError(f"callbacks holds the class {cb.__name__}; give an instance: "
                            f"{cb.__name__}(...)")
        if not any(callable(getattr(cb, h, None)) for h in hooks):
            hint = (" (a function: wrap it, fd.LambdaCallback(on_epoch_end=f))"
                    if callable(cb) else "")
            raise TypeError(f"callback {cb!r} has none of the methods {', '.join(hooks)}"
                            f"{hint}")
    return list(callbacks)


def _kept_for_refusal(net, optimizer, schedule):
    """A function that puts back what a refused fit changed: the net's generator
    (validation_split drew from it before later arguments were checked, and a backup
    rewound it), and an optimizer instance and a ReduceLROnPlateau the plan claimed
    (another net's state starts over: net A's Adam was left at step 0, its plateau at
    scale 1)."""
    kept = [(net._rng.bit_generator, {"state": net._rng.bit_generator.state})]
    if isinstance(optimizer, Optimizer):
        kept.append((optimizer, {k: getattr(optimizer, k, None)
                                 for k in ("state", "t", "_owner", "_bound")}))
    if isinstance(schedule, ReduceLROnPlateau):
        kept.append((schedule, dict(vars(schedule))))

    def put_back():
        for obj, attrs in kept:
            for name, value in attrs.items():
                setattr(obj, name, value)
    return put_back


_training = {}  # ids of the nets (and optimizers) in a fit now -> the fit's thread id
_training_lock = threading.Lock()


@contextlib.contextmanager
def training_alone(nets, optimizers=()):
    """Mark ``nets``, and the optimizer instances among ``optimizers`` (names make fresh
    ones), as in training for the block; a ``RuntimeError`` if one already is (a fit in
    another thread): two fits of one net, each with its trainer, wrote their updates into
    one set of weights, a mix of both that changed from run to run; two fits of two nets
    with one optimizer instance mixed their moments and step counts so."""
    optimizers = [o for o in optimizers if isinstance(o, Optimizer)]  # LBFGS keeps no state
    ids = [id(o) for o in (*nets, *optimizers)]
    with _training_lock:
        if any(id(net) in _training for net in nets):
            raise RuntimeError("this net is being trained by another fit (another thread): "
                               "two fits would mix their updates into one set of weights; "
                               "wait for it, or train a copy (copy.deepcopy(net))")
        if any(id(o) in _training for o in optimizers):
            raise RuntimeError("this optimizer instance is in another fit (another thread): "
                               "it holds one fit's state, which two fits would mix; give "
                               "each fit its own (copy.deepcopy(optimizer), or a name)")
        _training.update(dict.fromkeys(ids, threading.get_ident()))
    try:
        yield
    finally:
        with _training_lock:
            for key in ids:
                _training.pop(key, None)


def _r2(ss_res, ss_tot):
    """R^2 averaged over the outputs, from each output's weighted residual and total sums
    of squares (an output with constant targets scores 1 when fitted exactly, else 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.where(ss_res > 0, 0.0, 1.0))
    return float(r2.mean())


def _predictions(loss, Z):
    """What ``predict`` gives for regression loss ``loss`` from NumPy logits ``Z``: ``Z``
    (mse) or the Poisson means ``exp(Z)`` (here in float64; inf where they overflow)."""
    if loss != spec.POISSON:
        return Z
    with np.errstate(over="ignore"):
        return np.exp(Z.astype(np.float64))


def _check_l2_range(l2, dtype):
    """Refuse an ``l2`` the net's ``dtype`` does not hold, as ``lr`` is refused: 1e39 on
    a float32 net gave inf gradients, and every fit failed at its first step, at any lr."""
    top = float(np.finfo(dtype).max)
    if l2 > top:
        raise ValueError(f"l2 {l2:g} is beyond the range of the net's dtype {dtype.name} "
                         f"(largest {top:.3g})")


def _make_backend(device, sizes, codes, loss, dtype, l2=0.0, drops=None):
    if config.CACHE_ERROR:  # read at import, said here (config.CACHE)
        raise ValueError(config.CACHE_ERROR)
    from numba.core.config import DISABLE_JIT
    if DISABLE_JIT:  # the kernels' set-up failed with AttributeError: no py_func
        raise ValueError("fastdnn's kernels need Numba's compiler, which "
                         "NUMBA_DISABLE_JIT=1 turns off; unset it")
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
        return CUDABackend(sizes, codes, loss, dtype, l2, drops)
    from .kernels.cpu.backend import CPUBackend
    return CPUBackend(sizes, codes, loss, dtype, l2, drops)


def check_net(net, call):
    """A ``TypeError`` for what is no :class:`MLP`, pointing a fitted estimator of
    :mod:`fastdnn.sklearn` at its ``net_`` (``call`` shows how, e.g.
    ``"export_onnx(estimator.net_, path)"``)."""
    if not isinstance(net, MLP):  # "'MLPClassifier' object has no attribute 'sizes'"
        hint = (f" (a fitted scikit-learn estimator of fastdnn.sklearn holds its net as "
                f"net_: {call})" if isinstance(getattr(net, "net_", None), MLP) else "")
        raise TypeError(f"net must be a fastdnn MLP, got {type(net).__name__}{hint}")


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
    loss : {"cross_entropy", "mse", "binary_cross_entropy", "poisson"}, default "cross_entropy"
        Softmax + cross-entropy on integer labels, mean squared error, sigmoid +
        binary cross-entropy on targets in [0, 1], or the Poisson negative
        log-likelihood ``exp(z) - y z`` of targets >= 0 (counts) whose mean is
        ``exp(z)``: ``forward`` gives the log-means ``z``, ``predict`` the means.
    dtype : {"float32", "float64"}, default "float32"
        The parameters' and the computation's floating-point type.
    device : {"cpu", "cuda", "auto"}, default "cpu"
        Where the parameters live and the kernels run; "auto" picks CUDA where a GPU
        is usable and the net is big enough to gain from it (``fastdnn.devices``).
    seed : int, optional
        Seeds initialisation and sampling: same seed, same data -> bit-identical weights.
    n_threads : int, optional
        Threads of Numba's pool during this net's calls on the CPU, restored afterwards
        (default: leave the process setting).  BLAS runs single-threaded inside them;
        big products are cut into ``fastdnn.config.BLAS_BLOCKS`` column blocks (default:
        the CPUs the process may run on) whatever the thread count, so results do not
        depend on it.  1 also keeps the helper thread of two-shard steps away (see
        ``fastdnn.config.SHARDS``): the calling thread computes both shards, with the
        same results.
    l2 : float, default 0
        L2 penalty ``l2 / 2 * sum(W**2)`` over the weights (not the biases), added to
        every mean loss (each batch's, and :meth:`loss`, :meth:`gradients`, ``val_loss``).
        scikit-learn's ``alpha`` is ``c * l2 * batch_size`` (its penalty is
        ``alpha / (2 n_batch) * sum(W**2)`` on ``c`` times this loss: ``c`` is 1 for
        softmax or one logistic output, 1/2 for one squared-error output; docs/sklearn.md
        has the table).  Optimizers' ``weight_decay`` is separate.
    dropout : float or list of float, default 0
        Inverted dropout rate of each hidden layer's output (one rate, or one per hidden
        layer), during training only: ``forward``, ``predict`` and the losses never
        drop.  Masks are drawn from the fit's seed: same seed, same result, for any
        thread count, on the CPU and on CUDA alike.

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
                 device="cpu", seed=None, n_threads=None, l2=0.0, dropout=0.0):
        self.sizes = _check_sizes(sizes)
        self._codes = _check_activations(activation, len(self.sizes) - 2)
        self._l2 = _check_nonneg("l2", l2)
        self._dropout = _check_dropout(dropout, len(self.sizes) - 2)
        self._loss = spec.loss_code(loss)
        if self._loss == spec.CROSS_ENTROPY and self.sizes[-1] < 2:
            raise ValueError("cross_entropy (the default loss) needs >= 2 outputs; for one "
                             "output use loss='mse' (regression) or 'binary_cross_entropy' "
                             "(two classes)")
        self.dtype = check_dtype(dtype)
        _check_l2_range(self._l2, self.dtype)
        self.n_threads = check_n_threads(n_threads)
        self._seed = _check_seed(seed)
        self._rng = np.random.default_rng(seed)
        self._backend = _make_backend(device, self.sizes, self._codes, self._loss, self.dtype,
                                      self.l2, [spec.dropout_threshold(r) for r in self.dropout])
        self._backend.set_theta(self._init_theta())

    @property
    def seed(self):
        """The seed the net's generator was last seeded with (``None``: from the OS).
        Settable between fits, which seeds the generator again, as a net made with that
        seed has it (``MLP.load(..., seed=)``'s): the fits that follow draw
        their shuffles, dropout masks and ``validation_split`` from it, the same on every
        run (a plain attribute before, it was taken and changed nothing: a loaded net's
        fine-tuning could not be seeded)."""
        return self._seed

    @seed.setter
    def seed(self, value):
        value = _check_seed(value)
        self._between_fits("seed")
        rng = np.random.default_rng(value)
        # Past the initial weights' draws (one 64-bit output each), as MLP(seed=value)
        # and MLP.load(..., seed=value) leave it: a bare generator trained otherwise, and
        # ``net.seed = net.seed`` was no no-op.
        rng.bit_generator.advance(sum(k * n for k, n in zip(self.sizes[:-1], self.sizes[1:])))
        self._seed, self._rng = value, rng

    # -- regularisation ----------------------------------------------------------------
    # Properties: a plain attribute set after construction reached copies, pickles and
    # saved files (which read it) but not the net's own backend (built from it once).
    @property
    def n_threads(self):
        """The thread count of the net's kernels (``None``: the default policy);
        settable, checked as the constructor checks it (0 failed inside Numba, 2.5 and
        True were taken)."""
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        self._n_threads = check_n_threads(value)

    @property
    def l2(self):
        """The L2 penalty (see the class docstring); settable between fits."""
        return self._l2

    @l2.setter
    def l2(self, value):
        value = _check_nonneg("l2", value)
        _check_l2_range(value, self.dtype)
        if value != self._l2:  # the same value is no change (a warm estimator sets it)
            self._between_fits("l2")
            self._l2 = self._backend.l2 = value

    @property
    def dropout(self):
        """The dropout rate of each hidden layer (a list); settable between fits, to one
        rate or one per hidden layer."""
        return list(self._dropout)

    @dropout.setter
    def dropout(self, value):
        rates = _check_dropout(value, len(self.sizes) - 2)
        if rates != self._dropout:
            self._between_fits("dropout")
            drops = [spec.dropout_threshold(r) for r in rates]
            self._dropout, self._backend.drops = rates, (drops if any(drops) else None)

    def _between_fits(self, name, other_threads=False):
        """Refuse to change ``name`` while the net is in a fit (``other_threads``: a fit
        in another thread; the fit's own callbacks may)."""
        with _training_lock:
            thread = _training.get(id(self))
        if thread is not None and not (other_threads and thread == threading.get_ident()):
            raise RuntimeError(f"{name} cannot change while the net is being trained"
                               + (" by another thread" if other_threads else ""))

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
        """A net with the same architecture, weights, generator state and attributes
        (a subclass's, the metadata ``load`` read) that shares nothing with this one:
        training the copy leaves the original alone."""
        return self.__deepcopy__({})

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        # An optimizer or plateau of this net's fit copied before it, in the same
        # deepcopy, holds the copy's state (one copied after it finds the copy in memo).
        # Those only: a walk over all of memo made a list of 4,000 nets 19x slower.
        for other in memo.get(PENDING, ()):
            other._follow(self, new)
        return new

    def __getstate__(self):
        """The attributes, the parameters in place of the backend (whose buffers and
        device arrays are rebuilt on the other side)."""
        state = {k: v for k, v in self.__dict__.items() if k != "_backend"}
        state["_device"], state["_theta"] = self.device, self._backend.get_theta()
        return state

    def __setstate__(self, state):
        state = dict(state)
        backend = state.pop("_backend", None)  # pickles before 2026-11-29 kept the backend
        theta = backend.get_theta() if backend is not None else state.pop("_theta")
        device = backend.device if backend is not None else state.pop("_device")
        for name in ("l2", "dropout", "n_threads", "seed"):  # plain attributes in older pickles
            if name in state:
                state["_" + name] = state.pop(name)
        self.__dict__.update(state)
        drops = [spec.dropout_threshold(r) for r in self.dropout]
        try:
            self._backend = _make_backend(device, self.sizes, self._codes, self._loss,
                                          self.dtype, self.l2, drops)
        except DeviceError as exc:
            if device != "cuda":
                raise
            # A CUDA net (or a joblib'd estimator) opened where no GPU is: pickle has no
            # way to ask for another device, so the net comes back on the CPU.
            warnings.warn(f"{exc}; the net is unpickled on the CPU", RuntimeWarning,
                          stacklevel=2)
            self._backend = _make_backend("cpu", self.sizes, self._codes, self._loss,
                                          self.dtype, self.l2, drops)
        # Copied into the new backend's own array: weights that came back read-only (a
        # pickle's out-of-band buffers, joblib's memory maps) would not train.
        self._backend.set_theta(theta)

    # -- parameters ------------------------------------------------------------------
    def _init_theta(self):
        parts = []
        n_layers = len(self.sizes) - 1
        for i, (k, n) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            fan_avg = k if i < n_layers - 1 and self._codes[i] in _FAN_IN else (k + n) / 2
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

        Parameters
        ----------
        weights : sequence of (array_like, array_like)
            One ``(W, b)`` pair per layer, ``W`` of shape ``(fan_in, fan_out)`` and ``b``
            of ``(fan_out,)``; cast to the net's dtype (values beyond its range refused).

        Raises
        ------
        TypeError
            If ``weights`` is not a sequence of pairs of real arrays.
        ValueError
            On a wrong number of layers, a wrong shape, or non-finite values.
        RuntimeError
            While another thread fits the net (a callback of the fit may set them).
        """
        # Another thread's fit went on from them with its old optimizer state, a result
        # that changed from run to run; the fit's own callbacks may set them.
        self._between_fits("the weights", other_threads=True)
        try:
            weights = list(weights)
        except TypeError:  # "'int' object is not iterable"
            raise TypeError(f"weights must be a list of (W, b) pairs, got "
                            f"{type(weights).__name__}") from None
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
        parts = np.concatenate(parts)
        if not np.isfinite(parts).all():
            raise ValueError("weights contain NaN or infinity")
        with np.errstate(over="ignore"):  # the error below says it
            theta = parts.astype(self.dtype)
        if not np.isfinite(theta).all():
            raise ValueError(f"weights beyond {self.dtype.name}'s range (largest magnitude "
                             f"{np.abs(parts).max():g})")
        self._backend.set_theta(theta)

    # -- evaluation ------------------------------------------------------------------
    def _XT(self, X, y, sample_weight=None, convert=True):
        """Checked inputs (``convert``: see ``check_X``), and targets with their sample
        weights as the backend takes them."""
        X = self._backend.check_X(X, convert)
        T = check_targets(y, self._loss, self.sizes[-1], X.shape[0], self.dtype)
        w = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])
        return X, self._backend.pack_targets(T, w)

    def _outputs(self, X, head):
        X = self._backend.check_X(X, convert=False)  # a chunk at a time
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

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Inputs; any float or integer dtype, cast to the net's.

        Multi-output binary cross-entropy returns a 0/1 matrix; one-output nets
        return 1-D arrays.  A classifier whose outputs are not finite for some rows
        (inputs too large for its weights) raises ``fd.NonFiniteOutputError`` (a
        ``ValueError``), as do ``predict_proba`` and ``score``; a regression net returns
        its values as they are.
        """
        out = self._outputs(X, spec.LABELS)
        return out.reshape(out.shape[0]) if out.shape[1] == 1 else out

    def predict_proba(self, X):
        """Class probabilities: softmax rows, or sigmoids (``(n, 2)`` for one output)."""
        if self._loss not in spec.CLASSIFIERS:
            raise ValueError(f"predict_proba needs a classification loss, this net uses "
                             f"{self.loss_name!r}")
        return self._outputs(X, spec.PROBABILITIES)

    def score(self, X, y, sample_weight=None):
        """Accuracy (classification) or the coefficient of determination R^2 of the
        predictions (mse; poisson: of the means ``exp(z)``), weighted by
        ``sample_weight`` when given.

        Several ``binary_cross_entropy`` outputs (multi-label) score the mean accuracy
        over the labels (Keras' ``binary_accuracy``); scikit-learn's ``accuracy_score``,
        and ``fastdnn.sklearn.MLPClassifier.score``, count a row right only when all its
        labels are.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like
            Targets as :meth:`fit` takes them.
        sample_weight : array_like of shape (n_samples,), optional
        """
        X, T = self._XT(X, y, sample_weight, convert=False)
        with self._backend.limit_threads(self.n_threads):
            Z = self._backend.to_numpy(self._backend.outputs(X, spec.LOGITS))
        if self._loss in spec.CLASSIFIERS and not np.isfinite(Z).all():
            raise spec.non_finite_outputs(Z)  # the labels would be made up
        targets = None
        if self._loss not in spec.CLASSIFIERS:  # R^2 of y as given, as scikit-learn's
            host = self._backend.to_numpy(y)  # a CUDA device array's copy
            targets = np.asarray(_as_numeric(host, "y"), dtype=np.float64).reshape(len(Z), -1)
        return self._metric(Z, T, targets)

    def _metric(self, Z, T, targets=None):
        """Accuracy (per label for several labels, see :meth:`score`) or R^2 of NumPy
        logits ``Z`` against the packed targets ``T`` (their last column holds the
        sample weights, see ``_XT``), weighted as scikit-learn's
        ``accuracy_score``/``r2_score`` with ``sample_weight``.  ``targets``: R^2's
        targets in float64 instead of ``T``'s, rounded to the net's dtype (1e4 plus a
        spread of 1e-3 gave 0.128 on a float32 net where scikit-learn's r2_score of its
        predictions gave 0.135).  A validation's ``val_metric`` reads ``T``'s."""
        T, w = T[:, :-1], T[:, -1].astype(np.float64)
        if np.all(w == 1.0):
            w = None
        if self._loss == spec.CROSS_ENTROPY:
            return float(np.average(Z.argmax(axis=1) == T[:, 0], weights=w))
        if self._loss == spec.BINARY_CROSS_ENTROPY:
            return float(np.average(np.mean((Z > 0) == (T > 0.5), axis=1), weights=w))
        T = T.astype(np.float64) if targets is None else targets
        w = np.ones(T.shape[0]) if w is None else w
        Z = _predictions(self._loss, Z)
        ss_res = (w[:, None] * (T - Z) ** 2).sum(axis=0)
        ss_tot = (w[:, None] * (T - np.average(T, axis=0, weights=w)) ** 2).sum(axis=0)
        return _r2(ss_res, ss_tot)

    def loss(self, X, y, sample_weight=None):
        """Mean loss over ``(X, y)`` (weighted: ``sum(w l) / sum(w)``), plus the L2 penalty.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like
            Targets as :meth:`fit` takes them.
        sample_weight : array_like of shape (n_samples,), optional
        """
        X, T = self._XT(X, y, sample_weight, convert=False)
        with self._backend.limit_threads(self.n_threads):
            return self._backend.evaluate(X, T)[0]

    def gradients(self, X, y, sample_weight=None):
        """``[(dW, db), ...]``: layerwise backprop of :meth:`loss` over ``(X, y)`` (no dropout).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
        y : array_like
            Targets as :meth:`fit` takes them.
        sample_weight : array_like of shape (n_samples,), optional
        """
        X, T = self._XT(X, y, sample_weight)
        with self._backend.limit_threads(self.n_threads):
            _, grad = self._backend.gradient(X, T)
        return self._unflatten(grad)

    # -- training --------------------------------------------------------------------
    def fit(self, X, y, epochs=10, batch_size=32, optimizer="adam", schedule=None,
            validation_data=None, shuffle=True, verbose=False, patience=None, *,
            sample_weight=None, class_weight=None, clip_norm=None, restore_best=False,
            validation_split=None, callbacks=None, comm=None):
        """Train by minibatch SGD (or momentum, Adam, AdamW), or by full-batch L-BFGS.

        Epochs run compiled, in runs of steps of a fraction of a second: Ctrl-C stops a
        fit within about ``config.SLICE_SECONDS``, and progress shows inside long epochs.

        Parameters
        ----------
        X : array-like, shape (n_samples, n_features)
            Features as they are: scale them first (``sklearn.preprocessing.
            StandardScaler``, or ``fastdnn.preprocess.Scaler.fit("standard", X)``), as for
            any MLP; columns in the thousands train poorly (breast cancer, 20 epochs of
            SGD: training accuracy 0.63 unscaled, 0.96 scaled).  The CLI scales a file's
            columns itself.
        y : array-like
            Integer labels (cross_entropy) or targets of shape ``(n,)``/``(n, n_outputs)``;
            regression targets far from unit scale train better standardized too.
        epochs : int, default 10
            Epochs to train (with L-BFGS: its most iterations, one History record each).
        batch_size : int, default 32
            Rows per step (capped at ``n_samples``); 1 gives the course's plain SGD.
        optimizer : str or Optimizer, default "adam"
            ``fd.SGD(...)``, ``fd.Adam(...)``, ``fd.AdamW(...)``, ``fd.LBFGS(...)`` or a
            name ("sgd", "adam", "adamw", "lbfgs").  An instance keeps its state across
            ``fit`` calls.
        schedule : Schedule, optional
            Learning-rate schedule over iterations (default constant), or
            ``fd.ReduceLROnPlateau(...)`` driven by the watched loss at epoch ends.
        validation_data : (X_val, y_val) or (X_val, y_val, w_val), optional
            Evaluated after each epoch into ``val_loss`` and ``val_metric``.
        shuffle : {True, False, "uniform"}, default True
            A new permutation per epoch, the data in order, or items drawn uniformly
            with replacement (``n_samples`` draws per epoch).
        verbose : bool, default False
            Progress on stdout (:class:`fastdnn.ProgressBar`): a line per epoch, and
            rows, rate and time left inside long epochs.
        patience : int, optional
            Stop when the validation loss (training loss without validation data) has
            not improved for this many epochs.
        sample_weight : array-like of shape (n_samples,), optional
            Weights >= 0: every mean loss becomes ``sum(w l) / sum(w)`` (per batch, and
            over the data); integer weights act as repeated rows.
        class_weight : "balanced" or dict, optional
            Classification only: a weight per label (missing labels weigh 1), multiplied
            into ``sample_weight``; "balanced" is scikit-learn's
            ``n_samples / (n_classes * count(label))``.
        clip_norm : float, optional
            Scale each step's gradient (penalty included) to at most this global norm.
        restore_best : bool, default False
            End the fit (early stopped or not, or diverged) with the weights of the
            epoch with the best watched loss.
        validation_split : float, optional
            Without ``validation_data``: hold out this fraction of the rows (rounded,
            stratified by label for classification, each label keeping a training row;
            drawn from the net's generator) for validation.
        callbacks : list, optional
            Objects with any of ``on_train_begin``, ``on_progress``, ``on_epoch_end``
            (return True, or NumPy's True, to stop) and ``on_train_end`` (see
            :mod:`fastdnn.callbacks`),
            e.g. ``fd.ProgressBar()``, ``fd.BackupAndRestore(path)``.
        comm : mpi4py communicator, optional
            Data-parallel training on every rank of ``comm``, each passing its own shard
            of the data (and of the validation data) and the same net and arguments:
            each step's gradient is that of the union of the ranks' local batches of
            ``batch_size`` rows (one allreduce per step, inside the compiled loop); the
            initial state comes from rank 0; the History is global and the same on every
            rank; an error on any rank is raised on every rank.  Needs
            ``pip install 'fastdnn[mpi]'``; see ``docs/distributed.md``.  A communicator
            of one process trains as without it.

        Returns
        -------
        History

        Raises
        ------
        TrainingDivergedError
            The loss or an update became NaN/inf; no non-finite update reaches the
            weights, and the net goes back to usable weights (its best ones with
            ``restore_best``, else those of the epoch's start for nets up to
            ``config.SNAPSHOT_BYTES``), so it can be trained again at a lower rate.
            The error's ``history`` holds the epochs before.
        KeyboardInterrupt
            On Ctrl-C, between two runs of steps: the net holds the weights after the
            last step, the optimizer's ``t`` counts it, and the exception's ``history``
            holds the completed epochs; ``fit`` may be called again.
        """
        if comm is not None:
            from . import distributed  # imports mpi4py: only with a communicator
            if distributed.n_ranks(comm) > 1:  # every check agreed by the ranks there
                return distributed.fit(self, comm, dict(
                    X=X, y=y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                    schedule=schedule, validation_data=validation_data, shuffle=shuffle,
                    verbose=verbose, patience=patience, sample_weight=sample_weight,
                    class_weight=class_weight, clip_norm=clip_norm, restore_best=restore_best,
                    validation_split=validation_split, callbacks=callbacks))
        check_verbose(verbose)
        with training_alone([self], [optimizer]):
            self._backend.compile_ahead(batch_size, optimizer, clip_norm)
            put_back = _kept_for_refusal(self, optimizer, schedule)  # a refused fit: as it was
            try:
                plan = self._fit_plan(X, y, epochs, batch_size, optimizer, schedule,
                                      validation_data, shuffle, patience,
                                      sample_weight=sample_weight, class_weight=class_weight,
                                      clip_norm=clip_norm, restore_best=restore_best,
                                      validation_split=validation_split, callbacks=callbacks)
            except BaseException:
                put_back()
                raise
            if isinstance(plan.optimizer, LBFGS):
                history = History()
                try:
                    with self._backend.limit_threads(self.n_threads), \
                            deferred_interrupts() as pressed:
                        return fit_lbfgs(self, plan, verbose, history, pressed)
                except KeyboardInterrupt as exc:
                    exc.history = history
                    raise
            run = None
            try:
                with self._backend.limit_threads(self.n_threads), deferred_interrupts() as pressed:
                    try:
                        run = FitRun(self, plan, verbose)
                    except BaseException:  # refused (a backup of another fit): as it was
                        put_back()
                        raise
                    while not run.done:
                        run.train_epoch(pressed)
            except KeyboardInterrupt as exc:
                exc.history = run.history if run is not None else History()
                raise
            finally:
                if run is not None:
                    run.close()
            return run.history

    def _fit_plan(self, X, y, epochs, batch_size, optimizer, schedule, validation_data,
                  shuffle, patience, *, sample_weight=None, class_weight=None, clip_norm=None,
                  restore_best=False, validation_split=None, callbacks=None):
        """Check every argument of ``fit`` (nothing runs before all are valid)."""
        # A split gathers its parts from X as given (converted whole first, X took
        # twice its converted size at the peak, with a float64 or Fortran-ordered X).
        X = self._backend.check_X(X, convert=validation_split is None)
        T = check_targets(y, self._loss, self.sizes[-1], X.shape[0], self.dtype)
        sw = None if sample_weight is None else check_sample_weight(sample_weight, X.shape[0])

        def sample_weights(rows):
            """The sample weights of ``rows`` as a fit on them alone has them (normalized
            among them: the same bits)."""
            if sw is None or isinstance(rows, slice):
                return sw
            if not sw[rows].any():
                part = "held-out" if rows is held else "training"
                raise ValueError(f"validation_split={validation_split:g}: every {part} row "
                                 f"has weight 0")
            raw = np.broadcast_to(np.asarray(sample_weight, dtype=np.float64), sw.shape)
            return check_sample_weight(raw[rows], len(rows))  # one number: every row's

        def weights(rows):
            """The weights of the training ``rows`` (all: ``slice(None)``)."""
            own = sample_weights(rows)
            if class_weight is None:
                return own
            return normalize_weights(self._class_weights(T[rows], class_weight)
                                     * (1.0 if own is None else own),
                                     "sample_weight times class_weight")

        w = weights(slice(None))
        epochs = check_positive_int("epochs", epochs)
        if patience is not None:
            patience = check_positive_int("patience", patience)
        if isinstance(shuffle, np.bool_):
            shuffle = bool(shuffle)
        if not (isinstance(shuffle, bool) or (isinstance(shuffle, str) and shuffle == "uniform")):
            raise ValueError(f"shuffle must be True, False or 'uniform'; got {shuffle!r}")
        if clip_norm is not None:
            clip_norm = _check_nonneg("clip_norm", clip_norm, positive=True)
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best must be True or False; got {restore_best!r}")
        callbacks = _check_callbacks(callbacks)
        rng_start = self._start_rng(callbacks)
        validation = None
        if validation_data is not None:
            if validation_split is not None:
                raise ValueError("give validation_data or validation_split, not both")
            validation = self._validation(validation_data)
        elif validation_split is not None:
            fraction = _check_rate("validation_split", validation_split, lowest="(")
            keep, held = self._split(T, fraction)
            # The held-out rows count by their sample weights alone, as validation_data's
            # (and Keras'): with the class weights, val_loss and the "accuracy" were
            # class-weighted, and "balanced" counted the held-out rows.
            w, w_held = weights(keep), sample_weights(held)
            # A CUDA device array takes slices only (rows by index raised deep in
            # numba-cuda on a GPU): split on the host; the trainer uploads the parts.
            X = self._backend.to_numpy(X)
            validation = (self._backend.check_X(take_rows(X, held, self.dtype)),
                          self._backend.pack_targets(T[held], w_held))
            X, T = take_rows(X, keep, self.dtype), T[keep]
        # Capped here, once: the trainers size their buffers from it.
        batch_size = min(check_positive_int("batch_size", batch_size), X.shape[0])
        plan = FitPlan(X, self._backend.pack_targets(T, w), epochs, batch_size,
                       _SAMPLING[shuffle], None, None, validation, patience, clip_norm,
                       bool(restore_best), tuple(callbacks), rng_start=rng_start,
                       split=None if validation_split is None else (keep, held))
        plan = self._with_optimizer(plan, optimizer, schedule, self)
        if isinstance(plan.optimizer, LBFGS):
            if any(self.dropout):
                raise ValueError("L-BFGS needs a deterministic loss: use dropout=0 with it")
            unused = [name for name, value in (("patience", patience), ("restore_best", restore_best),
                                               ("clip_norm", clip_norm), ("schedule", schedule))
                      if value not in (None, False)]
            if unused:
                verb = "does" if len(unused) == 1 else "do"
                raise ValueError(f"{', '.join(unused)} {verb} not apply to L-BFGS (it has no "
                                 f"epochs or learning rate); stop it with a callback")
        return plan

    def _validation(self, validation_data):
        """``(X_val, T_val)`` from ``(X, y)`` or ``(X, y, sample_weight)``."""
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise TypeError("validation_data must be a pair (X_val, y_val) or a triple "
                            "(X_val, y_val, sample_weight_val)")
        try:
            return self._XT(*validation_data)
        except (ValueError, TypeError) as exc:  # its X, y, sample_weight: not fit's
            raise type(exc)(f"validation_data: {exc}") from None

    def _class_weights(self, T, class_weight, allow_zero=False):
        """Per-row weights of ``class_weight`` for the checked targets ``T`` (all 0
        refused unless ``allow_zero``: an MPI rank's, where the union's count)."""
        if self._loss not in spec.CLASSIFIERS:
            raise ValueError(f"class_weight needs a classification loss, this net uses "
                             f"{self.loss_name!r}")
        if T.shape[1] != 1:
            raise ValueError("class_weight needs one label per row; this net has "
                             f"{T.shape[1]} binary outputs (use sample_weight)")
        labels = (T[:, 0] > 0.5 if self._loss == spec.BINARY_CROSS_ENTROPY else T[:, 0])
        labels = labels.astype(np.int64)
        n_classes = max(self.sizes[-1], 2)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(f"class_weight must be 'balanced' or a dict; got {class_weight!r}")
            counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
            present = counts > 0
            table = np.ones(n_classes)
            table[present] = labels.size / (present.sum() * counts[present])
            return table[labels]
        if not isinstance(class_weight, dict):
            raise TypeError(f"class_weight must be 'balanced' or a dict; got "
                            f"{type(class_weight).__name__}")
        table = np.ones(n_classes)
        for label, weight in class_weight.items():
            if isinstance(label, (bool, np.bool_)) and self._loss == spec.BINARY_CROSS_ENTROPY:
                label = int(label)
            if isinstance(label, (float, np.floating)) and float(label).is_integer():
                label = int(label)  # 1.0, as y may hold the labels (it said "label 1.0")
            if not is_integer(label) or not 0 <= label < n_classes:
                raise ValueError(f"class_weight has label {label!r}; labels are 0..{n_classes - 1}")
            try:
                value = as_real("weight", weight)
            except (TypeError, ValueError):  # 10**400: OverflowError out of isfinite
                value = math.nan
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"class_weight[{label!r}] must be a number >= 0; got {weight!r}")
            table[int(label)] = value
        w = table[labels]
        if not (w.sum() > 0 or allow_zero):
            raise ValueError("class_weight gives every row weight 0")
        return w

    def _start_rng(self, callbacks):
        """Set the generator where the fit starts, and return its state: a resumed fit's
        where the backed-up one began (its callbacks' ``start_state``)."""
        for callback in callbacks:
            start = getattr(callback, "start_state", None)
            state = start() if start is not None else None
            if state is not None:
                try:  # a backup's header (KeyError, TypeError out of NumPy before)
                    self._rng.bit_generator.state = state
                except (TypeError, ValueError, KeyError) as exc:
                    raise ValueError(f"{getattr(callback, 'path', callback)!r} is not a "
                                     f"backup of this fit: its rng_start is no state of "
                                     f"the net's generator ({exc})") from None
        return self._rng.bit_generator.state

    def _training_rows(self, T, validation_split, callbacks):
        """The rows of ``T`` a fit with ``validation_split`` trains on (all: ``slice``),
        the generator left as it was."""
        if validation_split is None:
            return slice(None)
        fraction = _check_rate("validation_split", validation_split, lowest="(")
        state = self._rng.bit_generator.state
        try:
            self._start_rng(_check_callbacks(callbacks))
            return self._split(T, fraction)[0]
        finally:
            self._rng.bit_generator.state = state

    def _split(self, T, fraction):
        """Row indices ``(train, validation)``: ``fraction`` held out, per label for the
        one-label classifiers (each label keeps at least one training row)."""
        n = T.shape[0]
        if self._loss not in spec.CLASSIFIERS or T.shape[1] != 1:
            groups = [np.arange(n)]
        else:
            labels = (T[:, 0] > 0.5) if self._loss == spec.BINARY_CROSS_ENTROPY else T[:, 0]
            # Each label's rows in order, from one stable sort: a comparison per label
            # took O(rows * labels) (1M rows of 20,000 classes: 16 s before the first step).
            order = np.argsort(labels, kind="stable")
            starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
            groups = np.split(order, starts[1:])
        # ``fraction`` of all rows, rounded half up, shared out between the labels by
        # largest remainder: rounded per label, 10 labels of 3 rows held out none at 0.1,
        # and 10 of 5 held out 20 rows at 0.3.
        sizes = np.array([rows.size for rows in groups])
        quota = fraction * sizes
        counts = np.floor(quota).astype(np.int64)
        extra = int(math.floor(fraction * n + 0.5)) - counts.sum()
        counts[np.argsort(-(quota - counts), kind="stable")[:max(extra, 0)]] += 1
        held = []
        for rows, count in zip(groups, counts):
            rows = self._rng.permutation(rows)
            held.append(rows[:min(count, rows.size - 1)])
        held = np.sort(np.concatenate(held))
        if held.size == 0:
            raise ValueError(f"validation_split={fraction:g} holds out no row of {n}")
        kept = np.ones(n, dtype=bool)  # np.setdiff1d: 2.4 s for 1M rows (NumPy 2's hashing)
        kept[held] = False
        return np.flatnonzero(kept), held

    @staticmethod
    def _with_optimizer(plan, optimizer, schedule, net):
        """``plan`` with its optimizer object, taken by ``net`` (:meth:`Optimizer._claim`),
        and the schedule's parameters for the fit's total step count (which starts from
        the optimizer's count)."""
        opt = make_optimizer(optimizer)
        opt._claim(net)
        sched = make_schedule(schedule)
        total_steps = opt.t + plan.epochs * -(-plan.X.shape[0] // plan.batch_size)
        plateau = sched if isinstance(sched, ReduceLROnPlateau) else None
        if plateau is not None:
            plateau._claim(net)
        return plan._replace(optimizer=opt, schedule=(sched.code, sched.params(total_steps)),
                             plateau=plateau, schedule_args=repr(sched))

    # -- persistence -----------------------------------------------------------------
    def save(self, path, metadata=None):
        """Save architecture and weights to ``path`` (``.npz``), atomically.

        The file is replaced atomically and keeps the permissions of the file it
        replaces; a symbolic link at ``path`` keeps pointing to the new file.

        Parameters
        ----------
        path : str or os.PathLike
        metadata : dict, optional
            Extra arrays to keep with the net (booleans, numbers or text, by names of
            letters, digits, ``_``, ``.``, ``-``, not starting with ``.`` or ``-`` nor
            ending in ``.npy``), stored as
            ``meta.<name>`` and read back by :meth:`load` into ``net.metadata``.
            Default: the ``metadata`` this net was loaded with, if any.
        """
        if metadata is None:
            metadata = getattr(self, "metadata", None)
        serialize.save_npz(path, dict(
            sizes=np.array(self.sizes, dtype=np.int64),
            activations=np.array(self.activations),
            loss=np.array(self.loss_name),
            dtype=np.array(self.dtype.name),
            theta=self._backend.get_theta(),
            l2=np.array(self.l2),
            dropout=np.array(self.dropout, dtype=np.float64),
        ), metadata)

    @classmethod
    def load(cls, path, device="cpu", n_threads=None, seed=None):
        """Load a net saved by :meth:`save` (on either device) onto ``device``.

        The file's metadata come back as ``net.metadata``, a dict of NumPy arrays
        (empty for a file saved without).  The file holds no generator: the loaded net's
        fits draw from ``seed`` as a net made with it and given the file's weights would.

        Parameters
        ----------
        path : str or os.PathLike
        device : {"cpu", "cuda", "auto"}, default "cpu"
        n_threads, seed : int, optional
            As :class:`MLP` takes them (``seed=None``: a fit of the loaded net draws
            from the OS, another each run).

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
        seed = _check_seed(seed)
        def theta_fits(arrays, shape):  # before theta is read: a tiny file may claim a
            # huge one (2**27 zeros, deflated to 1 MB, took 1.1 GB to be refused)
            try:
                sizes = _check_sizes(arrays["sizes"].tolist())
            except (TypeError, ValueError, AttributeError):
                return  # refused below, for what it is
            n_params = spec.param_offsets(sizes)[2]
            if math.prod(shape) != n_params:
                raise ValueError(f"the widths {sizes} need {n_params:,} weights, the file "
                                 f"holds {math.prod(shape):,}")

        d, metadata = serialize.load_npz(path, ("sizes", "activations", "loss", "dtype",
                                                "theta"), optional=("l2", "dropout"),
                                         checks={"theta": theta_fits})
        theta = d["theta"]
        try:
            sizes = d["sizes"]
            if sizes.ndim != 1 or sizes.dtype.kind not in "iu":
                raise ValueError(f"layer widths must be a list of integers; got {sizes!r}")
            sizes = _check_sizes(sizes.tolist())
            # Before any buffer is sized: a tiny file may claim a huge net.
            n_params = spec.param_offsets(sizes)[2]
            if theta.ndim != 1:  # "need 26 weights, the file holds 26"
                raise ValueError(f"theta must be 1-D (P,); got shape {theta.shape}")
            if theta.shape != (n_params,):
                raise ValueError(f"the widths {sizes} need {n_params:,} weights, the file holds "
                                 f"{theta.size:,}")
            if d["activations"].ndim != 1:  # NumPy's "iteration over a 0-d array"
                raise ValueError(f"activations must be a 1-D array of names; got shape "
                                 f"{d['activations'].shape}")
            if theta.dtype.kind not in "iuf":
                raise ValueError(f"weights must be real numbers; got dtype {theta.dtype}")
            # Regularisation: optional keys (files from before them train without).
            l2 = d["l2"].item() if "l2" in d and d["l2"].shape == () else d.get("l2", 0.0)
            dropout = d["dropout"].tolist() if "dropout" in d else 0.0
            net = cls(sizes, activation=[str(a) for a in d["activations"]], loss=str(d["loss"]),
                      dtype=str(d["dtype"]), device=device, n_threads=n_threads, l2=l2,
                      dropout=dropout, seed=seed)
            with np.errstate(over="ignore"):
                theta = theta.astype(net.dtype)
            if not np.isfinite(theta).all():
                raise ValueError(f"weights are NaN, infinite or beyond {net.dtype.name}'s range")
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path!r} holds an invalid model: {exc}") from None
        net._backend.set_theta(theta)
        net.metadata = metadata
        return net

    def state_dict(self):
        """The weights in the layout of PyTorch's ``nn.Sequential(nn.Linear, act, ...)``.

        Returns
        -------
        dict of str to numpy.ndarray
            ``{"0.weight": W1.T, "0.bias": b1, "2.weight": W2.T, ...}``; each weight has
            shape ``(fan_out, fan_in)``.  PyTorch is not needed; for
            ``torch.nn.Module.load_state_dict`` wrap the arrays with ``torch.from_numpy``.
            See :func:`fastdnn.interop.state_dict`.
        """
        from .interop import state_dict
        return state_dict(self)

    @classmethod
    def from_state_dict(cls, sd, activation="relu", loss="cross_entropy", dtype=None,
                        device="cpu", seed=None):
        """A net holding the weights of an ``nn.Sequential(nn.Linear, act, ...)`` state dict.

        Parameters
        ----------
        sd : mapping of str to array-like
            ``"N.weight"`` of shape ``(fan_out, fan_in)`` and ``"N.bias"`` per Linear
            layer (PyTorch tensors or NumPy arrays); the widths are read from the shapes.
        activation, loss, device, seed
            As for :class:`MLP`.
        dtype : {"float32", "float64"}, optional
            Default: float64 when any array is float64, else float32.

        Raises
        ------
        TypeError, ValueError
            For a missing or unexpected key, inconsistent shapes, non-numeric or
            non-finite values; see :func:`fastdnn.interop.from_state_dict`.
        """
        from .interop import from_state_dict
        return from_state_dict(cls, sd, activation=activation, loss=loss, dtype=dtype,
                               device=device, seed=seed)
