"""Optimizers: small Python configuration objects; the update kernels they select live in
each kernel tree (``kernels/cpu/updates.py``, ``kernels/cuda/updates.py``), the update
rules in :mod:`fastdnn.kernels.spec`.

Semantics follow ``torch.optim`` (SGD with dampening 0, Adam, AdamW), so PyTorch can
serve as the oracle.  An optimizer instance keeps its state (velocity or moments, and
the step count ``t``) between ``fit`` calls of one net, as a PyTorch optimizer does for
its parameters; given to another net it starts over (:meth:`Optimizer._claim`).  A name
such as ``"adam"`` makes a fresh instance each time.  The trainer of a fit advances ``t``.
"""
import copy
import math
import weakref

import numpy as np

from .kernels import spec
from .validation import as_real, is_integer


def _check_nonneg(name, value, upper=None, positive=False):
    value = as_real(name, value)
    if (not math.isfinite(value) or value < 0 or (positive and value == 0)
            or (upper is not None and value >= upper)):
        bound = f" and < {upper}" if upper is not None else ""
        raise ValueError(f"{name} must be finite, {'>' if positive else '>='} 0{bound}; "
                         f"got {value!r}")
    return float(value)


#: The key under which a ``deepcopy``'s memo lists the copies of :class:`Claimed`
#: objects made before their net's copy (that copy takes them over).
PENDING = "fastdnn: claimed copies before their net's"


class Claimed:
    """What holds the state of one net's fit (an optimizer, a ReduceLROnPlateau): a
    weak reference ``_owner`` to that net, which a pickle drops (the net is not known on
    the other side: the state is kept for whichever net comes) and a deep copy keeps,
    pointed at the net's copy where the same ``deepcopy`` copies the net too (either
    order; :meth:`fastdnn.MLP.__deepcopy__`).  A deep copy dropped it, and a copy of net
    A's Adam given to net B went on from A's moments and step count."""

    _owner = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_owner", None)  # a weak reference: not pickled
        return state

    def __copy__(self):
        # The same net's (a pickle's way, through __getstate__, dropped it: a copy of net
        # A's Adam went on from A's moments on net B, writing them in A's arrays).
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__getstate__(), memo))
        if self._owner is not None:  # a net gone still is another net than the next
            owner = self._owner()
            if owner is None:
                new._owner = self._owner
            elif id(owner) in memo:
                new._owner = weakref.ref(memo[id(owner)])
            else:  # the net's copy, if this deepcopy makes one later, takes it over
                new._owner = self._owner
                memo.setdefault(PENDING, []).append(new)
        return new

    def _follow(self, old, new):
        """The state held for net ``old`` is net ``new``'s from now on."""
        if self._owner is not None and self._owner() is old:
            self._owner = weakref.ref(new)


class Optimizer(Claimed):
    """Base class: holds hyper-parameters, the step count ``t`` and the state arrays."""

    code = spec.SGD
    n_state = 1
    #: 0, or the batch weight at which the net's ``l2`` holds, each batch's penalty then
    #: scaled by ``_l2_weight / batch weight`` (``spec.step_l2``; the sample weights as
    #: the kernels see them, scaled to mean 1): scikit-learn's ``alpha``, which the
    #: estimators of :mod:`fastdnn.sklearn` set here.
    _l2_weight = 0.0

    def __init__(self, lr):
        if type(self) is Optimizer:  # it has no update rule of its own
            raise TypeError("fd.Optimizer is the base class; use fd.SGD, fd.Adam, fd.AdamW "
                            "or fd.LBFGS")
        self.lr = _check_nonneg("lr", lr, positive=True)
        self.t = 0
        self.state = None

    def hyper(self):
        """The float64 hyper-parameter vector in the layout the kernels read."""
        h = np.zeros(spec.N_HYPER)
        h[spec.LR] = self.lr
        h[spec.L2_WEIGHT] = self._l2_weight
        return h

    def _state_shape(self, n_params):
        return (self.n_state, n_params)

    def bind(self, n_params, dtype):
        """Allocate (or keep) state for ``n_params`` parameters of ``dtype``.

        New state for another number of parameters or dtype (another net) restarts the
        step count; new state of another kind for the same net (momentum switched on)
        starts at zero and keeps the count, and so the schedule's place.
        """
        shape = self._state_shape(n_params)
        if self.state is None or self.state.shape != shape or self.state.dtype != dtype:
            if getattr(self, "_bound", None) != (n_params, np.dtype(dtype)):
                self.t = 0
            self.state = np.zeros(shape, dtype=dtype)
        elif not (self.state.flags.c_contiguous and self.state.flags.writeable):
            # The same moments in the layout the kernels take (an assigned Fortran-order
            # state compiled them again; a read-only one failed in Numba's typing).
            self.state = np.array(self.state, order="C")
        self._bound = (n_params, np.dtype(dtype))
        return self.state

    def _claim(self, net):
        """Check the hyper-parameters as the constructor does (they may have been set
        since: ``opt.lr = -1`` trained by gradient ascent), and take ``net``'s fit: an
        instance that holds the state of another net, alive or gone, starts over (its
        moments and step count landed on a net of the same size, silently, and on one
        of another size only the moments started over); one whose net is not known (a
        pickle's) keeps its state.  Then bind, so the step count is final before a
        schedule reads it."""
        type(self)(**self._params())
        # The step count too: np.int32(2**31 - 5) wrapped negative as the fit added its
        # steps (a "divergence"), 2.5 compiled another kernel, np.int64 failed the backup.
        if not is_integer(self.t) or not 0 <= self.t < 2 ** 62:
            raise ValueError(f"t (the optimizer's step count) must be an integer in "
                             f"[0, 2**62); got {self.t!r}")
        self.t = int(self.t)
        self._check_range(net.dtype)
        if self._owner is not None and self._owner() is not net:
            self.reset()
        self._owner = weakref.ref(net)
        self.bind(net.n_params, net.dtype)

    def _check_range(self, dtype):
        """Refuse an ``lr`` or a ``weight_decay`` that the net's ``dtype`` does not hold:
        the update runs with them cast to it, where 3.5e38 is inf in float32 (the
        overflow guard's bounds, of the float64 values, let inf and NaN weights through;
        checking each step's rate in the kernel cost 3% of a batch-1 step of 2-8-8-1, AMD
        EPYC).  A schedule that grows the rate is left to the guard: past the dtype's
        range its bound holds only for steps under 0.5, which a rate of 1e38 has long
        diverged before."""
        top = float(np.finfo(dtype).max)  # a finite value up to it the guard bounds
        for name, value in (("lr", self.lr), ("weight_decay", getattr(self, "weight_decay", 0.0))):
            if float(value) > top:  # float: top cast to a float32 lr overflowed
                raise ValueError(f"{name} {value:g} is beyond the range of the net's dtype "
                                 f"{np.dtype(dtype).name} (largest {top:.3g})")

    def reset(self):
        """Forget the state and step count."""
        self.state = None
        self.t = 0

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and weight decay.

    Parameters
    ----------
    lr : float, default 0.01
        Learning rate (> 0); a schedule scales it per iteration.
    momentum : float, default 0
        Momentum factor in [0, 1).
    nesterov : bool, default False
        Use Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float, default 0
        L2 penalty added to the gradient (``grad + weight_decay * theta``).

    Notes
    -----
    Plain SGD keeps no velocity.  Momentum switched on between two fits of one net (``opt
    .momentum = 0.9``) starts from a zero velocity, and one switched off and on again
    starts from zero once more: PyTorch keeps its buffer through ``momentum = 0``.
    """

    code = spec.SGD

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        self.momentum = _check_nonneg("momentum", momentum, upper=1.0)
        if not isinstance(nesterov, (bool, np.bool_)):  # bool("False") is True
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)

    def _state_shape(self, n_params):
        # Plain SGD keeps no velocity: an empty row, not a parameter-sized buffer.
        return (1, n_params if self.momentum else 0)

    def _params(self):
        return dict(lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                    weight_decay=self.weight_decay)

    def hyper(self):
        h = super().hyper()
        h[spec.MOMENTUM] = self.momentum
        h[spec.NESTEROV] = float(self.nesterov)
        h[spec.WEIGHT_DECAY] = self.weight_decay
        return h


class Adam(Optimizer):
    """Adam (Kingma & Ba), with optional L2 weight decay added to the gradient.

    Parameters
    ----------
    lr : float, default 1e-3
    betas : tuple of float, default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 0
    """

    code = spec.ADAM
    n_state = 2
    _decoupled = False

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair of floats, got {betas!r}") from None
        self.betas = (_check_nonneg("beta1", b1, 1.0), _check_nonneg("beta2", b2, 1.0))
        self.eps = _check_nonneg("eps", eps)
        self.weight_decay = _check_nonneg("weight_decay", weight_decay)

    def _params(self):
        return dict(lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def hyper(self):
        h = super().hyper()
        h[spec.BETA1], h[spec.BETA2] = self.betas
        h[spec.EPS] = self.eps
        h[spec.WEIGHT_DECAY] = self.weight_decay
        h[spec.DECOUPLED] = float(self._decoupled)
        return h


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): ``theta *= 1 - lr * wd``.

    The decay scales ``theta`` before each Adam step, with that step's learning rate (after
    the schedule); unlike :class:`Adam`'s ``weight_decay`` it is not added to the gradient.

    Parameters
    ----------
    lr : float, default 1e-3
        Learning rate (> 0); a schedule scales it per iteration.
    betas : tuple of float, default (0.9, 0.999)
        ``(beta1, beta2)``: decay rates of the moving averages of the gradient and of its
        square, each in [0, 1).
    eps : float, default 1e-8
        Added to the bias-corrected ``sqrt(v)`` in the step's denominator (>= 0).
    weight_decay : float, default 1e-2
        Decoupled decay rate ``wd`` (>= 0); the default is PyTorch's.
    """

    _decoupled = True

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(lr, betas, eps, weight_decay)


class LBFGS:
    """Full-batch L-BFGS (``scipy.optimize.minimize(method="L-BFGS-B")``) on the compiled
    loss and gradient: scikit-learn's recommendation for small data sets.

    ``fit(..., epochs=N)`` runs at most N iterations, one History record each; the
    loss is the whole data's (with ``sample_weight`` and ``l2``), and callbacks run per
    iteration.  Not resumable across ``fit`` calls beyond the weights (no state kept).

    Parameters
    ----------
    tol : float, default 1e-4
        Stop when the largest projected gradient entry falls below it (SciPy's
        ``gtol``, as scikit-learn passes its ``tol``); SciPy's ``ftol`` stays its default.
    max_fun : int, default 15000
        Most loss-and-gradient evaluations (scikit-learn's ``max_fun``).
    history : int, default 10
        Pairs of vectors kept for the Hessian approximation (scipy's ``maxcor``).
    """

    code = None
    t = 0

    def __init__(self, tol=1e-4, max_fun=15000, history=10):
        self.tol = _check_nonneg("tol", tol)
        for name, value in (("max_fun", max_fun), ("history", history)):
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
        self.max_fun, self.history = int(max_fun), int(history)
        self.lr = 1.0  # read by ReduceLROnPlateau only, which L-BFGS does not use

    def reset(self):
        """Nothing to forget (L-BFGS keeps no state between fits)."""

    def _params(self):
        return dict(tol=self.tol, max_fun=self.max_fun, history=self.history)

    def _claim(self, net):
        """Check the settings as the constructor does (they may have been set since:
        ``opt.history = 0`` fitted nothing, silently), and keep them as it does: SciPy
        sized its work arrays in a NumPy ``uint8`` history's type, and wrote past them
        (a segfault); no state to take."""
        checked = LBFGS(**self._params())
        self.tol, self.max_fun, self.history = checked.tol, checked.max_fun, checked.history

    def __repr__(self):
        return f"LBFGS(tol={self.tol!r}, max_fun={self.max_fun!r}, history={self.history!r})"


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "lbfgs": LBFGS}


def make_optimizer(optimizer):
    """Return an :class:`Optimizer` for an instance (as is) or a name (fresh defaults)."""
    if isinstance(optimizer, (Optimizer, LBFGS)):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return OPTIMIZERS[optimizer.lower()]()
        except KeyError:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            ) from None
    if isinstance(optimizer, type) and issubclass(optimizer, (Optimizer, LBFGS)):
        raise TypeError(f"optimizer must be a name or an instance; got the class "
                        f"{optimizer.__name__}: give {optimizer.__name__}(...)")
    raise TypeError(
        f"optimizer must be a name or an fd.SGD/Adam/AdamW/LBFGS instance, got "
        f"{type(optimizer).__name__}"
    )
