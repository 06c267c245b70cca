"""Learning-rate schedules: ``lr_t = lr * factor(t)`` at iteration ``t`` (0-based count
of optimizer steps).  The classes here only configure; the factor is
:func:`fastdnn.kernels.spec.lr_factor`, evaluated per step inside the training kernels.
"""
import functools
import inspect
import math
import weakref

import numpy as np

from .kernels import spec
from .optim import Claimed
from .validation import as_real, is_integer


def _positive(name, value, allow_zero=False):
    value = as_real(name, value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be finite and {'>=' if allow_zero else '>'} 0; got {value!r}")
    return float(value)


@functools.cache
def _parameters(cls):
    """The names of ``cls``'s constructor arguments: ``inspect.signature`` took 96 us
    (``Constant``'s is ``object``'s), 30% of a 20-row fit, which reprs its schedule."""
    return tuple(inspect.signature(cls).parameters)


class Schedule:
    """Base class. ``factor(t)`` gives the multiplier at iteration ``t``."""

    code = spec.CONSTANT

    def params(self, total_steps):
        """Float64 parameter vector for :func:`~fastdnn.kernels.spec.lr_factor` (named
        slots ``spec.DECAY``, ...), given the ``total_steps`` of the fit."""
        return np.zeros(spec.N_SCHEDULE)

    def factor(self, t, total_steps=None):
        """Multiplier of the base learning rate at iteration ``t`` (0-based)."""
        # int(t) took "3", 2.9 and True, and t = -1 gave inf; a total_steps the
        # constructors refuse gave 0.
        if not is_integer(t) or t < 0:
            raise ValueError(f"t must be an integer >= 0; got {t!r}")
        if total_steps is not None and (not is_integer(total_steps) or total_steps < 1):
            raise ValueError(f"total_steps must be an integer >= 1; got {total_steps!r}")
        return spec.lr_factor(self.code, self.params(total_steps), int(t))

    def _arguments(self):
        """The constructor's arguments, as set now."""
        return {k: getattr(self, k) for k in _parameters(type(self))}

    def __repr__(self):
        # The constructor's arguments, not the state a fit leaves (ReduceLROnPlateau's
        # scale and best loss): the repr rebuilds an equal schedule.
        args = ", ".join(f"{k}={v!r}" for k, v in self._arguments().items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The base learning rate throughout."""


class InverseTimeDecay(Schedule):
    """``lr / (1 + decay * t)``: decays toward 0 as iterations go on (the course's SGD).

    Parameters
    ----------
    decay : float, default 1e-3
        Decay rate per iteration (>= 0; 0 keeps the rate constant).
    """

    code = spec.INVERSE_TIME

    def __init__(self, decay=1e-3):
        self.decay = _positive("decay", decay, allow_zero=True)

    def params(self, total_steps):
        p = super().params(total_steps)
        p[spec.DECAY] = self.decay
        return p


class StepDecay(Schedule):
    """``lr * gamma ** (t // step_size)``.

    Parameters
    ----------
    step_size : int
        Iterations between drops (from 1 to ``2**53``, the float64 the kernels read).
    gamma : float, default 0.1
        Multiplier at each drop.
    """

    code = spec.STEP

    def __init__(self, step_size, gamma=0.1):
        # Up to 2**53: the kernels read it from a float64 (2**63 became -2**63 there, and
        # every step was a drop by 1/gamma).
        if not is_integer(step_size) or not 1 <= step_size <= 2**53:
            raise ValueError(f"step_size must be an integer from 1 to 2**53; got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _positive("gamma", gamma)

    def params(self, total_steps):
        p = super().params(total_steps)
        p[spec.STEP_SIZE], p[spec.GAMMA] = self.step_size, self.gamma
        return p


class ExponentialDecay(Schedule):
    """``lr * rate ** (t / decay_steps)``.

    Parameters
    ----------
    rate : float
        Multiplier per ``decay_steps`` iterations (> 0).
    decay_steps : float, default 1
    """

    code = spec.EXPONENTIAL

    def __init__(self, rate, decay_steps=1):
        self.rate = _positive("rate", rate)
        self.decay_steps = _positive("decay_steps", decay_steps)

    def params(self, total_steps):
        p = super().params(total_steps)
        p[spec.RATE], p[spec.DECAY_STEPS] = self.rate, self.decay_steps
        return p


class CosineDecay(Schedule):
    """Cosine annealing from ``lr`` to ``min_factor * lr`` over ``total_steps`` iterations.

    Parameters
    ----------
    total_steps : int, optional
        Length of the decay in the optimizer's steps, counted from its first step;
        default: where the ``fit`` call ends (the optimizer's step count at its start
        plus its iterations).  So a fresh optimizer anneals over the whole fit; one that
        trained before (its count goes on across ``fit`` calls) anneals over a curve as
        long as all its steps, this fit's the end of it (its first lr below ``lr``).  To
        anneal a later fit anew from ``lr``: a fresh optimizer, or ``optimizer.reset()``
        (the curve counts from the optimizer's first step, as Keras' counts its
        ``iterations``).  A ``total_steps`` the optimizer has passed already
        (``min_factor=0``: every step's lr 0) is refused.
    min_factor : float, default 0
        Final multiplier in [0, 1], held after ``total_steps``.
    """

    code = spec.COSINE

    def __init__(self, total_steps=None, min_factor=0.0):
        if total_steps is not None:
            if not is_integer(total_steps) or total_steps < 1:
                raise ValueError(f"total_steps must be an integer >= 1; got {total_steps!r}")
            total_steps = int(total_steps)
        self.total_steps = total_steps
        self.min_factor = _positive("min_factor", min_factor, allow_zero=True)
        if self.min_factor > 1:  # PyTorch's eta_min above the rate anneals upward
            raise ValueError(f"min_factor must be <= 1 (the rate anneals down to min_factor "
                             f"* lr); got {min_factor!r}")

    def params(self, total_steps):
        total = self.total_steps if self.total_steps is not None else total_steps
        if total is None:
            raise ValueError("CosineDecay needs total_steps outside of fit")
        p = super().params(total_steps)
        p[spec.TOTAL_STEPS], p[spec.MIN_FACTOR] = max(total, 1), self.min_factor
        return p


class ReduceLROnPlateau(Schedule, Claimed):
    """Scale the learning rate by ``factor`` when the watched loss stops improving (Keras'
    and PyTorch's ``ReduceLROnPlateau``, with Keras' count of ``patience``).

    ``patience`` counts as Keras' does: the ``patience``-th epoch in a row without
    improvement reduces the rate (``patience=0`` and ``1`` both reduce at the first).
    PyTorch's scheduler waits one epoch more: its ``patience=p`` is ``patience=p + 1``
    here.  The threshold is PyTorch's relative one (Keras' ``min_delta`` is absolute),
    and the cooldown PyTorch's.

    The watched loss is the validation loss when ``fit`` has validation data, else the
    training loss; it is read at each epoch end, and the new rate applies from the next
    step.  The instance keeps its state (current scale, best loss, epochs waited)
    across ``fit`` calls of one net, as an optimizer does; given to another net, or as
    a new instance, it starts over.

    Parameters
    ----------
    factor : float, default 0.1
        Multiplier in (0, 1) applied at each reduction.
    patience : int, default 10
        Epochs without improvement that make a reduction (Keras' count, above).
    min_lr : float, default 0
        Floor of the learning rate (absolute, as in Keras).
    threshold : float, default 1e-4
        Relative improvement that counts: ``loss < best * (1 - threshold)``, in [0, 1)
        (PyTorch's ``threshold_mode="rel"``; with a negative loss, as a poisson fit's can
        be, a loss a little above the best counts as one, as in PyTorch).
    cooldown : int, default 0
        Epochs after a reduction during which no further reduction happens.

    Notes
    -----
    There is no ``eps`` (PyTorch skips a reduction that changes the rate by less than
    its ``eps=1e-8``): reductions go on down to ``min_lr``, as Keras' do.
    """

    code = spec.PLATEAU

    def __init__(self, factor=0.1, patience=10, min_lr=0.0, threshold=1e-4, cooldown=0):
        self.factor = _positive("factor", factor)
        if self.factor >= 1:
            raise ValueError(f"factor must be < 1; got {factor!r}")
        self.patience = _count("patience", patience)
        self.min_lr = _positive("min_lr", min_lr, allow_zero=True)
        self.threshold = _positive("threshold", threshold, allow_zero=True)
        if self.threshold >= 1:  # best * (1 - threshold) <= 0: no positive loss improves
            raise ValueError(f"threshold must be < 1 (a relative improvement); got "
                             f"{threshold!r}")
        self.cooldown = _count("cooldown", cooldown)
        self.reset()

    def _claim(self, net):
        """Take ``net``'s fit: the state of another net's starts over (net B ran at net
        A's reduced rate, and A's best loss made B's first epoch no improvement)."""
        if self._owner is not None and self._owner() is not net:
            self.reset()
        self._owner = weakref.ref(net)

    def reset(self):
        """Forget the state: scale 1, no best loss yet."""
        self.scale = 1.0
        self.best = math.inf
        self.wait = 0
        self.cooling = 0

    def params(self, total_steps):
        p = super().params(total_steps)
        p[spec.SCALE] = self.scale
        return p

    def update(self, loss, lr):
        """Book an epoch's watched ``loss`` for base rate ``lr``; returns the new scale."""
        # Every epoch of a cooldown counts it down, improving or not, and none of them
        # counts toward patience (PyTorch's rule; Keras lets the last one count).
        improved = loss < self.best * (1.0 - self.threshold)
        if improved:
            self.best, self.wait = loss, 0
        if self.cooling > 0:
            self.cooling -= 1
        elif not improved:
            self.wait += 1
            if self.wait >= self.patience:
                floor = self.min_lr / lr
                self.scale = max(self.scale * self.factor, min(floor, self.scale))
                self.wait, self.cooling = 0, self.cooldown
        return self.scale

    def state(self):
        """The state as floats (for backups)."""
        return np.array([self.scale, self.best, self.wait, self.cooling])

    def set_state(self, values):
        """Restore :meth:`state`'s floats."""
        self.scale, self.best = float(values[0]), float(values[1])
        self.wait, self.cooling = int(values[2]), int(values[3])


def _count(name, value):
    if not is_integer(value) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
    return int(value)


def make_schedule(schedule):
    """Return a :class:`Schedule` for ``None`` (constant) or an instance of fastdnn's,
    its parameters checked as its constructor checks them (they may have been set since:
    ``gamma = -2`` trained by gradient ascent, ``step_size = 0`` divided by zero in the
    kernel)."""
    if schedule is None:
        return Constant()
    if isinstance(schedule, type) and schedule in _SCHEDULES:  # fd.CosineDecay itself
        raise TypeError(f"schedule must be an instance or None; got the class "
                        f"{schedule.__name__}: give {schedule.__name__}(...)")
    if type(schedule) not in _SCHEDULES:
        # The kernels evaluate the formulas of these: a subclass's factor() never ran,
        # and a warm-up schedule trained at the constant rate, silently.
        names = ", ".join(f"fd.{cls.__name__}" for cls in _SCHEDULES if cls is not Schedule)
        raise TypeError(f"schedule must be one of {names} or None (the compiled steps "
                        f"evaluate their formulas, not a subclass's factor(); to set the "
                        f"rate by epoch, change optimizer.lr in a callback); got "
                        f"{type(schedule).__name__}")
    type(schedule)(**schedule._arguments())
    return schedule


_SCHEDULES = (Schedule, Constant, InverseTimeDecay, StepDecay, ExponentialDecay, CosineDecay,
              ReduceLROnPlateau)
