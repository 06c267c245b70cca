"""scikit-learn estimators trained by fastdnn: drop-in replacements for
:class:`sklearn.neural_network.MLPClassifier` and :class:`~sklearn.neural_network.MLPRegressor`.

The constructor parameters, their defaults and meanings, the fitted attributes and the
per-epoch rules (``tol`` / ``n_iter_no_change`` on the training loss or the validation
score, ``learning_rate`` schedules, early stopping with the best weights restored,
``ConvergenceWarning``) are scikit-learn's; each epoch runs compiled in a
:class:`fastdnn.MLP`, which the fitted estimator keeps as ``net_``.  Where the two
differ on purpose (warm starts keep the optimizer's state; Adam's epsilon) the
docstrings and ``docs/sklearn.md`` say so.

Only this module imports scikit-learn (>= 1.6): ``import fastdnn`` never does.
"""
import copy
import math
import warnings
from itertools import pairwise
from numbers import Integral, Real

import numpy as np
from scipy.special import xlogy

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state, column_or_1d
    # The private helpers give scikit-learn's own checks and error messages, so the
    # estimators fail exactly where and how sklearn's MLP does.
    from sklearn.utils._param_validation import Interval, Options, StrOptions
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import (_check_partial_fit_first_call,
                                          check_classification_targets, type_of_target,
                                          unique_labels)
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "fastdnn.sklearn needs scikit-learn >= 1.6 (pip install 'scikit-learn>=1.6'); "
        f"importing it failed: {exc}") from exc

from .errors import NonFiniteOutputError, TrainingDivergedError
from .model import MLP
from .optim import LBFGS, SGD, Adam
from .validation import take_rows

__all__ = ["MLPClassifier", "MLPRegressor"]

# scikit-learn's name for the sigmoid; every fastdnn activation is accepted as well.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
                "sigmoid": "sigmoid", "leaky_relu": "leaky_relu", "elu": "elu",
                "softplus": "softplus", "gelu": "gelu", "silu": "silu"}
_STOCHASTIC_SOLVERS = ("sgd", "adam")
# What the end of an epoch asks of the training loop (see _BaseMLP._end_epoch).
_STOP, _NEW_RATE = "stop", "new learning rate"
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain "
               "large values and need to be preprocessed.")


def _loss_and_scales(out_activation, n_outputs):
    """fastdnn's loss for an output activation; the factor ``c`` with ``sklearn objective
    = c * fastdnn objective`` (and so for their gradients); and the factor of the loss
    scikit-learn reports.

    scikit-learn sums the logistic loss over the outputs and takes half the squared
    error per output as its gradient (``p - y``); fastdnn averages over the outputs and
    does not halve.  The estimators scale the SGD learning rate by ``c``, Adam's epsilon,
    the L-BFGS gradient tolerance and the L2 penalty by ``1/c``, so every step and
    every stopping test is sklearn's.  sklearn reports the halved squared error
    averaged over the outputs, though, so ``loss_`` is half fastdnn's (with several
    outputs and ``alpha > 0``, the penalty's share then differs from sklearn's by the
    number of outputs).  The Poisson loss (output ``exp``) is summed over the outputs
    too; sklearn reports it with the constant of the half deviance, which
    :func:`_poisson_constant` adds.
    """
    if out_activation == "softmax":
        return "cross_entropy", 1.0, 1.0
    if out_activation == "logistic":
        return "binary_cross_entropy", float(n_outputs), float(n_outputs)
    if out_activation == "exp":
        return "poisson", float(n_outputs), float(n_outputs)
    return "mse", n_outputs / 2.0, 0.5


def _can_stratify(y, fraction):
    """Whether the split of ``y`` with ``fraction`` held out is stratified: for two
    classes always (scikit-learn's is, and raises where it cannot be), for more where it
    can keep every class in both parts (``train_test_split``'s own test)."""
    _, counts = np.unique(y, return_counts=True)
    n_val = math.ceil(fraction * len(y))
    return len(counts) <= 2 or (counts.min() >= 2 and min(n_val, len(y) - n_val) >= len(counts))


def _poisson_constant(T, sample_weight):
    """What scikit-learn's Poisson loss, the half deviance ``y log(y / mu) - y + mu``
    summed over the outputs, adds to ``k`` times fastdnn's ``mu - y log(mu)``: the
    weighted mean over the rows of ``sum(y log y - y)`` (``0 log 0 = 0``).  It does not
    depend on the weights of the net, so it changes no step and no stopping test."""
    return float(np.average((xlogy(T, T) - T).sum(axis=1), weights=sample_weight))


class _EpochEnd:
    """The callback of the estimators' fits: scikit-learn's bookkeeping and stopping
    rules at each epoch's end (:meth:`_BaseMLP._end_epoch`)."""

    def __init__(self, estimator, n_samples, validation):
        self.estimator, self.n_samples, self.validation = estimator, n_samples, validation
        self.action = None

    def book(self, loss):
        self.action = self.estimator._end_epoch(loss, self.n_samples, self.validation)

    def on_epoch_end(self, epoch, logs):
        """Book the epoch; end the fit call to stop or to change the learning rate."""
        self.book(logs["loss"])
        return self.action is not None


class _BaseMLP(BaseEstimator):
    """Shared parameters, training loop and prediction of the two estimators."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS)), list, tuple],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="left")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left"), list, tuple],
        "dtype": [None, StrOptions({"float32", "float64"}),
                  Options(type, {np.float32, np.float64})],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "n_threads": [None, Interval(Integral, 1, None, closed="left")],
    }

    def __init__(self, hidden_layer_sizes, activation, *, solver, alpha, batch_size,
                 learning_rate, learning_rate_init, power_t, max_iter, loss, shuffle,
                 random_state, tol, verbose, warm_start, momentum, nesterovs_momentum,
                 early_stopping, validation_fraction, beta_1, beta_2, epsilon,
                 n_iter_no_change, max_fun, dropout, dtype, device, n_threads):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.dtype = dtype
        self.device = device
        self.n_threads = n_threads

    # -- architecture ----------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if any(isinstance(s, (bool, np.bool_)) or not isinstance(s, Integral) for s in sizes):
            # int() made 5.5 units 5, and 0.5 passed the check below (scikit-learn's raises)
            raise TypeError(f"hidden_layer_sizes must hold whole numbers of units; got {sizes}")
        if any(s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        return [int(s) for s in sizes]

    def _activation_names(self, n_hidden):
        """scikit-learn names, one per hidden layer (a single name repeated)."""
        names = [self.activation] * n_hidden if isinstance(self.activation, str) \
            else list(self.activation)
        if len(names) != n_hidden:
            raise ValueError(f"activation lists {len(names)} names for {n_hidden} hidden "
                             f"layers")
        unknown = [a for a in names if a not in _ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activation(s) {unknown}; choose from "
                             f"{sorted(_ACTIVATIONS)}")
        return names

    def _initialize(self, layer_units, out_activation, dtype):
        """A new ``net_`` with scikit-learn's initial weights, and fresh fitted state."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = layer_units[-1]
        self.n_layers_ = len(layer_units)
        self.out_activation_ = out_activation
        loss, self._loss_scale, self._loss_report = _loss_and_scales(out_activation,
                                                                     self.n_outputs_)
        names = self._activation_names(len(layer_units) - 2)
        weights = self._init_weights(layer_units, names)
        self.net_ = MLP(layer_units, activation=[_ACTIVATIONS[a] for a in names], loss=loss,
                        dtype=dtype, device=self.device, n_threads=self.n_threads,
                        seed=int(self._random_state.randint(np.iinfo(np.int32).max)),
                        dropout=self.dropout)
        self.net_.set_weights(weights)
        self._best_weights = self.net_.get_weights()
        self._optimizer = None
        self.learning_rate_ = float(self.learning_rate_init)
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _init_weights(self, layer_units, names):
        """Glorot-uniform weights and biases drawn exactly as scikit-learn draws them
        (same ``random_state``, same initial net), with its factor 2 for logistic
        units; the output layer takes the factor of the last hidden layer."""
        weights = []
        # Without hidden layers the output layer takes the factor of ``activation``, as
        # scikit-learn's does (its factor is of the one activation for every layer).
        names = names or [self.activation if isinstance(self.activation, str) else "relu"]
        for i, (fan_in, fan_out) in enumerate(pairwise(layer_units)):
            factor = 2.0 if names[min(i, len(names) - 1)] == "logistic" else 6.0
            bound = np.sqrt(factor / (fan_in + fan_out))
            W = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b = self._random_state.uniform(-bound, bound, fan_out)
            weights.append((W, b))
        return weights

    def _net_input(self, X):
        """``X`` dense, C-ordered, writable and in the net's dtype, converted once (a
        read-only array is a distinct Numba type: every kernel would compile again)."""
        if hasattr(X, "toarray"):
            X = X.toarray()
        return np.require(X, dtype=self.net_.dtype, requirements=["C", "W"])

    def _input_dtypes(self, reset=True):
        """``validate_data``'s float dtypes for a fit, the first the one an integer ``X``
        becomes: the net's (a fitted net's, or the ``dtype`` parameter's), else float64
        as scikit-learn's (uint8 pixels went through float64 on their way to a float32
        net: 3x their float32 bytes at the peak)."""
        if not reset and hasattr(self, "net_"):
            first = self.net_.dtype
        elif self.dtype is not None:
            first = np.dtype(self.dtype)
        else:
            return (np.float64, np.float32)
        return (first.type, np.float64 if first == np.float32 else np.float32)

    # -- fitting ---------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._validate_params()
        hidden = self._hidden_sizes()
        first_pass = not hasattr(self, "net_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if self.loss == "poisson" and np.min(y) < 0:
            raise ValueError("loss='poisson' needs targets >= 0 (counts or rates); got "
                             f"{np.min(y):g}")
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        sample_weight = self._with_class_weight(y, sample_weight)
        T = self._targets(y)
        layer_units = [X.shape[1], *hidden, self._n_outputs(T)]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            dtype = self.dtype if self.dtype is not None else X.dtype
            self._initialize(layer_units, self._out_activation(), np.dtype(dtype).name)
        elif layer_units != self.net_.sizes:
            raise ValueError(
                f"the fitted net has layers {self.net_.sizes} but the parameters and data "
                f"ask for {layer_units}; fit with warm_start=False to start a new one")
        else:
            self._check_kept()
            self._follow_activations(len(hidden))
        self.net_.n_threads = self.n_threads  # a warm fit kept the first fit's
        if self.solver in _STOCHASTIC_SOLVERS and self.early_stopping and not incremental:
            # Its parts are gathered from X as it is (_validation_split): converted whole
            # first, a Fortran-ordered or float64 X took twice its converted size.
            X = X.toarray() if hasattr(X, "toarray") else X
        else:
            X = self._net_input(X)
        try:
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(X, T, y, sample_weight, incremental, first_pass)
            else:
                self._fit_lbfgs(X, T, sample_weight)
        finally:  # also after Ctrl-C in lbfgs: the attributes are those predict uses
            weights = self.net_.get_weights()
            self.coefs_, self.intercepts_ = [W for W, _ in weights], [b for _, b in weights]
        return self

    def _start_bookkeeping(self):
        """The stochastic solvers' record of epochs (``loss_curve_``, the stopping
        criterion's state), begun where a warm start switched to them from lbfgs or
        turned ``early_stopping`` on or off: the record of the other criterion is no
        start for this one (scikit-learn's fit raised AttributeError or TypeError)."""
        if getattr(self, "loss_curve_", None) is None:
            self.loss_curve_ = []
        if self.early_stopping and getattr(self, "validation_scores_", None) is None:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_, self._no_improvement_count = None, 0
        elif not self.early_stopping and getattr(self, "best_loss_", None) is None:
            self.validation_scores_, self.best_validation_score_ = None, None
            self.best_loss_, self._no_improvement_count = np.inf, 0

    def _check_kept(self):
        """A warm fit or ``partial_fit`` goes on with ``net_``: a ``dtype`` or ``device``
        set since, which it would not follow (it went on in the old one, silently), is
        refused, as a new ``hidden_layer_sizes`` is."""
        wanted = {"dtype": None if self.dtype is None else np.dtype(self.dtype),
                  "device": None if self.device == "auto" else self.device}
        have = {"dtype": self.net_.dtype, "device": self.net_.device}
        for name, value in wanted.items():
            if value is not None and value != have[name]:
                raise ValueError(f"the fitted net's {name} is {have[name]}, not "
                                 f"{self.get_params()[name]!r}: a warm fit or partial_fit goes "
                                 f"on with it; fit with warm_start=False to start a new one")

    def _follow_activations(self, n_hidden):
        """On a warm start or ``partial_fit``: ``net_`` with the hidden activations and
        the output activation (the regressor's ``loss``) the parameters name now, its
        weights and generator state kept.  scikit-learn's warm fit applies a changed
        ``activation`` to the weights it has; ``net_`` fixes its activations when built,
        so a change builds a new one."""
        names = [_ACTIVATIONS[a] for a in self._activation_names(n_hidden)]
        out = self._out_activation()
        if names == self.net_.activations and out == self.out_activation_:
            return
        loss, self._loss_scale, self._loss_report = _loss_and_scales(out, self.n_outputs_)
        old = self.net_
        self.net_ = MLP(old.sizes, activation=names, loss=loss, dtype=old.dtype.name,
                        device=old.device, n_threads=old.n_threads, seed=old.seed, l2=old.l2,
                        dropout=old.dropout)
        self.net_._rng = copy.deepcopy(old._rng)  # the fit's shuffles go on as they would
        self.net_.set_weights(old.get_weights())
        if self._optimizer is not None:  # its moments and step count go on too
            self._optimizer._follow(old, self.net_)
        self.out_activation_ = out

    def _reported_constant(self, T, sample_weight):
        """What scikit-learn's reported loss adds to ``_loss_report`` times fastdnn's on
        the training targets ``T`` (only the Poisson loss has such a constant)."""
        return _poisson_constant(T, sample_weight) if self.out_activation_ == "exp" else 0.0

    def _n_outputs(self, T):
        """Output units of a net fitting the targets ``T``."""
        return T.shape[1]

    def _with_class_weight(self, y, sample_weight):
        """The sample weights times the class weights (classifier)."""
        return sample_weight

    def _optimizer_for(self, first_pass):
        """The fit's optimizer: the previous one (its moments and step count) on a warm
        start or ``partial_fit``, with the hyper-parameters as they are set now.

        scikit-learn rebuilds its optimizer at every ``fit``, so a warm start restarts
        Adam's moments; here they carry on, as they would in one longer fit.
        """
        c = self._loss_scale
        opt = self._optimizer
        if self.solver == "sgd":
            nesterov = bool(self.nesterovs_momentum) and self.momentum > 0
            if first_pass or not isinstance(opt, SGD):
                opt = SGD(lr=c * self.learning_rate_, momentum=self.momentum, nesterov=nesterov)
            opt.momentum, opt.nesterov = float(self.momentum), nesterov
        else:
            if first_pass or not isinstance(opt, Adam):
                opt = Adam(lr=float(self.learning_rate_init))  # True, as scikit-learn's
            # Adam is invariant to the loss scale c but for epsilon, which adds to
            # sqrt(v) and so scales with the gradient.
            opt.lr, opt.betas, opt.eps = (float(self.learning_rate_init),
                                          (float(self.beta_1), float(self.beta_2)),
                                          self.epsilon / c)
        try:  # the fit's own check named fastdnn's "lr", which the user never set
            opt._check_range(self.net_.dtype)
        except ValueError:
            raise ValueError(f"learning_rate_init={self.learning_rate_init!r} is beyond the "
                             f"range of the net's dtype {self.net_.dtype.name}") from None
        self._optimizer = opt
        return opt

    def _validation_split(self, X, T, y, sample_weight):
        """scikit-learn's early-stopping split (stratified for single-output classifiers;
        of more than two classes where it can be: every class twice, and each part with
        room for every class; train_test_split raised there, on data scikit-learn's MLP,
        which does not stratify them, trains on)."""
        stratify = y if self._stratify(y) and _can_stratify(y, self.validation_fraction) \
            else None
        train, val = train_test_split(np.arange(X.shape[0]), random_state=self._random_state,
                                      test_size=self.validation_fraction, stratify=stratify)
        if val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        sw = (None, None) if sample_weight is None else (sample_weight[train], sample_weight[val])
        dtype = self.net_.dtype  # gathered straight into the net's dtype and layout
        return ((take_rows(X, train, dtype), T[train], sw[0]),
                (take_rows(X, val, dtype), y[val], sw[1]))

    def _stratify(self, y):
        """Whether the early-stopping split keeps the class proportions."""
        return False

    def _fit_stochastic(self, X, T, y, sample_weight, incremental, first_pass):
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        self._start_bookkeeping()
        validation = None
        if self.early_stopping:
            (X, T, sample_weight), validation = self._validation_split(X, T, y, sample_weight)
            if sample_weight is not None and not sample_weight.any():
                raise ValueError("Sample weights must contain at least one non-zero number "
                                 "in the training part of the early-stopping split.")
        n_samples = X.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        if self.learning_rate == "constant" or first_pass:
            self.learning_rate_ = float(self.learning_rate_init)
        opt = self._optimizer_for(first_pass)
        # sklearn adds alpha/2 ||W||^2 to each batch's summed (weighted) loss and divides
        # by the batch's weight: per unit of fastdnn's mean loss that is alpha / (c * batch
        # weight).  The net's l2 holds at the batch weight's expectation; each step scales
        # it to its own batch's weight (spec.step_l2), the short last batch's included.
        # The kernels see the weights scaled to mean 1, so a full batch's expectation is
        # batch_size there.
        mean_weight = 1.0 if sample_weight is None else float(sample_weight.mean())
        self._configure_net(self.alpha / (self._loss_scale * batch_size * mean_weight))
        opt._l2_weight = float(batch_size)
        self._loss_offset = self._reported_constant(T, sample_weight)
        # One fit call runs all the epochs, the callback doing sklearn's bookkeeping and
        # stopping at each epoch's end (a fit call per epoch cost 0.4 ms of set-up, more
        # than a breast-cancer epoch); the callback ends the call early where the
        # learning rate changes, which takes a new call.
        epoch_end = _EpochEnd(self, n_samples, validation)
        self.n_iter_ = 0
        try:
            while epoch_end.action != _STOP and self.n_iter_ < self.max_iter:
                if self.solver == "sgd":
                    opt.lr = self._loss_scale * self.learning_rate_
                epochs = 1 if incremental else self.max_iter - self.n_iter_
                self.net_.fit(X, T, epochs=epochs, batch_size=batch_size, optimizer=opt,
                              shuffle=bool(self.shuffle), sample_weight=sample_weight,
                              callbacks=[epoch_end])
                if incremental:
                    break
        except TrainingDivergedError as exc:
            # The net is back at usable weights.  Without a validation set to pick the
            # best ones this is sklearn's non-finite-weights error; with one, the epoch
            # scores NaN and training stops (every later epoch would diverge too).
            if validation is None:
                raise ValueError(_NON_FINITE) from exc
            epoch_end.book(math.nan)
        except KeyboardInterrupt:
            # As sklearn: keep what was trained (fastdnn stops between two runs of steps).
            warnings.warn("Training interrupted by user.")
        else:
            if not incremental and epoch_end.action != _STOP:
                warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                              "optimization hasn't converged yet." % self.max_iter,
                              ConvergenceWarning)
        if validation is not None:
            self.net_.set_weights(self._best_weights)

    def _configure_net(self, l2):
        """``net_`` with the L2 penalty ``l2`` and the estimator's dropout."""
        self.net_.l2, self.net_.dropout = l2, self.dropout

    def _end_epoch(self, loss, n_samples, validation):
        """Book an epoch whose mean fastdnn loss was ``loss``; return ``_STOP``,
        ``_NEW_RATE`` (the learning rate changed) or None (train on)."""
        self.loss_ = self._loss_report * loss + self._loss_offset
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_curve_.append(self.loss_)
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
        self._update_no_improvement_count(validation)
        action = None
        if self.solver == "sgd" and self.learning_rate == "invscaling":
            self.learning_rate_ = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            action = _NEW_RATE
        if math.isnan(self.loss_):
            return _STOP
        if self._no_improvement_count > self.n_iter_no_change:
            if self._stop_or_slow_down(validation is not None):
                return _STOP
            self._no_improvement_count = 0
            action = _NEW_RATE
        return action

    def _update_no_improvement_count(self, validation):
        """scikit-learn's rule: count epochs that do not improve the best training loss
        (or validation score) by ``tol``; keep the weights of the best validation score."""
        if validation is not None:
            X_val, y_val, sw_val = validation
            score = math.nan if math.isnan(self.loss_) else self._score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % score)
            # NaN compares False both ways: it counts as no improvement, never as best.
            if not score >= self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.net_.get_weights()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _stop_or_slow_down(self, early_stopping):
        """After ``n_iter_no_change`` epochs without improvement: stop, or with
        ``learning_rate="adaptive"`` (sgd) divide the learning rate by 5 until 1e-6."""
        watched = "Validation score" if early_stopping else "Training loss"
        msg = "%s did not improve more than tol=%f for %d consecutive epochs." % (
            watched, self.tol, self.n_iter_no_change)
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate_ <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate_ /= 5.0
        if self.verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate_)
        return False

    def _fit_lbfgs(self, X, T, sample_weight):
        c = self._loss_scale
        # sklearn divides alpha/2 ||W||^2 by the total sample weight of the full batch.
        total_weight = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        self._configure_net(self.alpha / (c * total_weight))
        opt = LBFGS(tol=self.tol / c, max_fun=self.max_fun)
        try:
            # SciPy's L-BFGS-B does its vector algebra in tiny BLAS calls, which OpenBLAS'
            # threads slowed 20x on a busy 2-core machine (a 30-row fit: 84 ms -> 4 ms).
            with threadpool_limits(limits=1, user_api="blas"):
                self.net_.fit(X, T, epochs=self.max_iter, batch_size=X.shape[0],
                              optimizer=opt, shuffle=False, sample_weight=sample_weight)
                # No verbose lines: they would be in fastdnn's units, and scikit-learn's
                # lbfgs prints none of its own.
        except TrainingDivergedError as exc:
            raise ValueError(_NON_FINITE) from exc
        except KeyboardInterrupt as exc:  # raised on, as scikit-learn's lbfgs does
            history = getattr(exc, "history", None)
            self.n_iter_ = len(history) if history is not None else 0
            if history:  # the net is at the last iterate
                self.loss_ = self._loss_report * history.loss[-1] + self._reported_constant(
                    T, sample_weight)
            raise
        result = opt.result
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = self._loss_report * float(result.fun) + self._reported_constant(
            T, sample_weight)
        # Status 1: the iteration or evaluation budget ran out; 2: the line search failed.
        if result.status != 0:
            warnings.warn(f"lbfgs failed to converge after {self.n_iter_} iteration(s) "
                          f"(status={result.status}): {result.message}. Increase the number of "
                          f"iterations (max_iter={self.max_iter}) or scale the data.",
                          ConvergenceWarning)

    # -- prediction ------------------------------------------------------------------
    def _checked_X(self, X, check_input=True):
        """``X`` checked as scikit-learn does, dense, of its own numeric dtype: the net
        converts it to its dtype a chunk of rows at a time (a float64, integer or
        Fortran-ordered ``X`` was copied whole, uint8 pixels through float64)."""
        if check_input:
            check_is_fitted(self)
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                              dtype="numeric")
        return X.toarray() if hasattr(X, "toarray") else X

    def _output_dtype(self, X):
        """scikit-learn's dtype for values computed from ``X``, ``result_type`` of the
        data's and the net's: float32 for a float32 net and data of float32 or a smaller
        type (float64 data to a fit on float32 data gives float64, as there); the net's
        with an explicit ``dtype``, which asks for it."""
        if self.dtype is not None:
            return self.net_.dtype
        dtype = getattr(X, "dtype", None)
        if dtype is None and hasattr(X, "dtypes"):  # a DataFrame: its columns' common type
            try:
                dtype = np.result_type(*[np.dtype(d) for d in X.dtypes])
            except TypeError:  # pandas' own dtypes (nullable ones): float64, as scikit-learn
                dtype = None
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            dtype = np.float64  # as a list or an object array becomes
        # scikit-learn's forward pass multiplies X as it is: uint8 pixels by float32
        # weights are float32 (float64 here before), int64 ones float64.
        return np.result_type(dtype, self.net_.dtype)

    def _score(self, X, y, sample_weight):
        """Score of already-checked data; NaN where the predictions are not finite."""
        try:
            y_pred = self._predict(X, check_input=False)
        except NonFiniteOutputError:  # logits that are not finite
            return math.nan
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return math.nan
        return float(self._score_function(y, y_pred, sample_weight=sample_weight))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # densified on the way in
        return tags


# The parameters and attributes the two docstrings share (first line unindented: it
# takes the place of a "{shared}" placed at the docstring's indentation).
_DOC_SHARED = """hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of units in the ith hidden layer.
    activation : str or list of str, default='relu'
        Hidden activation: 'identity', 'logistic', 'tanh', 'relu' (scikit-learn's
        names) or any fastdnn activation ('leaky_relu', 'elu', 'softplus', 'gelu',
        'silu'); a list gives one per hidden layer.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        Full-batch L-BFGS (through SciPy), minibatch SGD, or Adam.
    alpha : float, default=0.0001
        Strength of the L2 penalty ``alpha / 2 * ||W||^2`` on the weights (not the
        biases), divided, as in scikit-learn, by the batch's sample weight.
    batch_size : int or 'auto', default='auto'
        Minibatch size; 'auto' is ``min(200, n_samples)``.  Unused by lbfgs.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        sgd only: constant ``learning_rate_init``; ``learning_rate_init / (t + 1) **
        power_t`` with ``t`` the samples seen, updated at each epoch's end; or divided
        by 5 whenever ``n_iter_no_change`` epochs do not improve by ``tol``.
    learning_rate_init : float, default=0.001
        Initial learning rate (sgd, adam).
    power_t : float, default=0.5
        Exponent of 'invscaling'.
    max_iter : int, default=200
        Epochs (sgd, adam) or iterations (lbfgs) per ``fit``.
    shuffle : bool, default=True
        Shuffle the samples at each epoch (sgd, adam).
    random_state : int, RandomState instance or None, default=None
        Initial weights (drawn as scikit-learn draws them), the early-stopping split
        and the seed of the net's shuffling.
    tol : float, default=1e-4
        Improvement of the loss or validation score below which an epoch counts as no
        improvement; lbfgs: tolerance on the projected gradient.
    verbose : bool, default=False
        Print the loss after each epoch.
    warm_start : bool, default=False
        Continue from the previous fit's weights and optimizer state (Adam's moments,
        the step count, the adaptive learning rate), where scikit-learn restarts its
        optimizer.
    momentum : float, default=0.9
        sgd momentum, in [0, 1).
    nesterovs_momentum : bool, default=True
        Nesterov momentum (sgd with momentum > 0).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified for single-output
        classification), stop when its score has not improved by ``tol`` for
        ``n_iter_no_change`` epochs, and keep the best-scoring weights.
    validation_fraction : float, default=0.1
        Share of the data held out by ``early_stopping``.
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's decay rates of the moment estimates.
    epsilon : float, default=1e-8
        Adam's epsilon (added to the bias-corrected ``sqrt(v)``: PyTorch's convention;
        scikit-learn adds it before the correction, a difference of
        ``1 / sqrt(1 - beta_2 ** t)`` that fades within a few thousand steps).
    n_iter_no_change : int or np.inf, default=10
        Epochs without improvement before stopping (sgd, adam).
    max_fun : int, default=15000
        lbfgs: maximum number of loss evaluations."""

#: fastdnn's own parameters, last in both signatures ("{fastdnn}").
_DOC_FASTDNN = """dropout : float or list of float, default=0.0
        fastdnn: inverted dropout rate of the hidden units during training, in [0, 1):
        one rate for every hidden layer, or a list (or tuple) with one per hidden layer.
        sgd and adam only: lbfgs refuses a nonzero rate.
    dtype : {'float32', 'float64'} or None, default=None
        fastdnn: the net's float type; None follows ``X`` (float32 stays float32,
        anything else is float64), as scikit-learn does.
    device : {'cpu', 'cuda', 'auto'}, default='cpu'
        fastdnn: where the net lives and trains.
    n_threads : int or None, default=None
        fastdnn: threads of Numba's pool during the net's calls."""

_DOC_ATTRIBUTES = """loss_ : float
        The loss (with the L2 penalty) at the end of the last epoch or iteration, in
        scikit-learn's units (the halved squared error; the log loss or the half Poisson
        deviance summed over outputs).
    best_loss_ : float or None
        The lowest ``loss_`` (sgd, adam without early stopping).
    loss_curve_ : list of float
        ``loss_`` after each epoch (sgd, adam).
    validation_scores_ : list of float or None
        Score on the held-out data after each epoch (early stopping).
    best_validation_score_ : float or None
        The best of ``validation_scores_``.
    t_ : int
        Training samples seen by the solver.
    coefs_, intercepts_ : list of ndarray
        Weight matrix (fan_in, fan_out) and bias vector of each layer: copies of the
        net's weights after the fit.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Column names of a pandas ``X`` with string column names.
    n_iter_ : int
        Epochs (sgd, adam) or iterations (lbfgs) run by the last ``fit``.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
    learning_rate_ : float
        The current learning rate of sgd (after 'invscaling' or 'adaptive' updates).
    net_ : fastdnn.MLP
        The trained net; ``net_.predict``, ``net_.save`` and the rest work on it."""


def _check_solver(self):
    """``partial_fit`` exists for the stochastic solvers only (``available_if``), as in
    scikit-learn."""
    if self.solver not in _STOCHASTIC_SOLVERS:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{self.solver} is not stochastic.")
    return True


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: scikit-learn's ``MLPClassifier``, trained by
    fastdnn's compiled epochs.

    Labels may be any values scikit-learn accepts (strings, integers such as 1..k,
    booleans).  Two classes give one logistic output, more give a softmax, and a label
    indicator matrix gives multilabel classification with one logistic output per label.

    Parameters
    ----------
    {shared}
    class_weight : dict, 'balanced' or None, default=None
        fastdnn: weights of the classes, multiplying ``sample_weight`` (single-output
        targets only).
    {fastdnn}

    Attributes
    ----------
    classes_ : ndarray or list of ndarray
        The class labels.
    {attributes}

    Examples
    --------
    >>> from fastdnn.sklearn import MLPClassifier
    >>> X = [[0, 0], [0, 1], [1, 0], [1, 1]]
    >>> clf = MLPClassifier((8,), activation="tanh", solver="adam", learning_rate_init=0.05,
    ...                     max_iter=300, random_state=0).fit(X, ["no", "yes", "yes", "no"])
    >>> clf.predict(X).tolist()
    ['no', 'yes', 'yes', 'no']
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 class_weight=None, dropout=0.0, dtype=None, device="cpu", n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            dropout=dropout, dtype=dtype, device=device, n_threads=n_threads)
        self.class_weight = class_weight

    _score_function = staticmethod(accuracy_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=self._input_dtypes(reset), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        # As scikit-learn: a new fit defines the classes; a warm start must see the
        # same ones; partial_fit may see a subset of those given on its first call.
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        return X, y

    def _out_activation(self):
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    def _targets(self, y):
        """Class indices for the softmax net, else the 0/1 indicator matrix."""
        if self._label_binarizer.y_type_ == "multiclass":
            # The index of each label in the sorted classes_: the binarizer's one-hot
            # matrix and its argmax took 0.85 ms of a 3.5 ms set-up (digits).
            index = np.searchsorted(self.classes_, y)
            index[index == len(self.classes_)] = 0
            if not np.array_equal(self.classes_[index], y):
                raise ValueError(f"y has labels not in classes_ {self.classes_}")
            return index[:, None]
        return self._label_binarizer.transform(y)

    def _n_outputs(self, T):
        # T holds class indices for the softmax net: one output per class.
        if self._label_binarizer.y_type_ == "multiclass":
            return len(self._label_binarizer.classes_)
        return T.shape[1]

    def _stratify(self, y):
        return y.ndim == 1

    def _with_class_weight(self, y, sample_weight):
        if self.class_weight is None:
            return sample_weight
        if y.ndim != 1:
            raise ValueError("class_weight needs single-output targets (not multilabel)")
        try:
            weights = compute_sample_weight(self.class_weight, y)
        except OverflowError:  # a weight of 10**400 (as an int, past float64)
            weights = np.array([np.nan])
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            raise ValueError(f"class_weight must give finite weights >= 0; got "
                             f"{self.class_weight!r}")
        weights = weights if sample_weight is None else weights * sample_weight
        if not weights.any():  # a ZeroDivisionError in the penalty's scale
            raise ValueError(f"class_weight {self.class_weight!r} gives every row weight 0 "
                             f"(the classes here: {np.unique(y).tolist()})")
        return weights

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and the labels ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a label indicator matrix (multilabel).
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPClassifier
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(_check_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``(X, y)``, continuing the weights and the optimizer's state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            All the classes; required on the first call, which fixes them.

        Returns
        -------
        self : MLPClassifier
        """
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            # Balanced over each call's rows alone: a call of one class weighed 1, so a
            # stream of one-class calls trained as without class weights (scikit-learn's
            # partial_fit estimators refuse it for that reason).
            raise ValueError("class_weight='balanced' is not supported for partial_fit: "
                             "it would balance each call's rows on their own; pass the "
                             "weights of the whole data instead, e.g. dict(zip(classes, "
                             "sklearn.utils.class_weight.compute_class_weight('balanced', "
                             "classes=classes, y=y)))")
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict(self, X, check_input=True):
        P = self._proba(X, check_input)
        return self._label_binarizer.inverse_transform(P)

    def _proba(self, X, check_input=True):
        """Softmax rows, or the logistic outputs (one column for binary problems)."""
        X = self._checked_X(X, check_input)
        if self.n_outputs_ == 1:
            return self.net_.predict_proba(X)[:, 1]
        return self.net_.predict_proba(X)

    def predict(self, X):
        """Predicted labels, shape (n_samples,) or (n_samples, n_labels) for multilabel.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray
        """
        return self._predict(X)

    def predict_proba(self, X):
        """Probability of each class (columns in the order of ``classes_``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        P = self._proba(X).astype(self._output_dtype(X), copy=False)
        return np.column_stack([1 - P, P]) if P.ndim == 1 else P

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        P = self.predict_proba(X)
        return np.log(P, out=P)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: scikit-learn's ``MLPRegressor``, trained by
    fastdnn's compiled epochs.  ``y`` may have several columns (multi-output).

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        The halved squared error, or the half Poisson deviance of targets >= 0 with
        the output activation ``exp`` (the net's outputs are log-means, ``predict``
        gives the means ``exp(z)``), as scikit-learn.  fastdnn trains 'poisson' with
        its loss ``"poisson"`` (``exp(z) - y z``); ``loss_`` adds the deviance's
        constant ``y log y - y`` so that it reads as scikit-learn's.
    {shared}
    {fastdnn}

    Attributes
    ----------
    {attributes}

    Examples
    --------
    >>> import numpy as np
    >>> from fastdnn.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 64).reshape(-1, 1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=1000,
    ...                    learning_rate_init=0.02, random_state=0).fit(X, X[:, 0] ** 2)
    >>> round(reg.score(X, X[:, 0] ** 2), 2) > 0.9
    True
    """

    _parameter_constraints: dict = {
        **_BaseMLP._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, dtype=None, device="cpu", n_threads=None):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, dropout=dropout, dtype=dtype, device=device, n_threads=n_threads)

    _score_function = staticmethod(r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=self._input_dtypes(reset), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    def _out_activation(self):
        return "exp" if self.loss == "poisson" else "identity"

    def _targets(self, y):
        return y.reshape(y.shape[0], -1)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to ``X`` and the targets ``y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @available_if(_check_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``(X, y)``, continuing the weights and the optimizer's state.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : MLPRegressor
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _predict(self, X, check_input=True):
        X = self._checked_X(X, check_input)
        return self.net_.predict(X)  # the outputs; their exp for loss='poisson'

    def predict(self, X):
        """Predicted values, shape (n_samples,) or (n_samples, n_outputs).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray
        """
        return self._predict(X).astype(self._output_dtype(X), copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y may have several columns
        # Poisson refuses negative targets (check_estimator gave it some: 10 failures).
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags


for _cls in (MLPClassifier, MLPRegressor):
    _cls.__doc__ = (_cls.__doc__.replace("{shared}", _DOC_SHARED)
                    .replace("{fastdnn}", _DOC_FASTDNN)
                    .replace("{attributes}", _DOC_ATTRIBUTES))
