"""The lecture's depth experiments, seeded and reproducible: ``fastdnn experiment NAME``.

Each experiment returns a :class:`Table` (printable, and plottable with the optional
matplotlib extra).  They train with :func:`fastdnn.fit_many`, so a sweep over seeds and
architectures is one group of small nets, and take seconds on 2 cores.

* :func:`zigzag`: linear pieces on [0, 1] against depth at a fixed number of units, for
  the sawtooth construction, for trained deep and shallow nets, and the upper bound.
* :func:`parity`: deep (XOR tree) against shallow (DNF, saw) constructions, and how often
  deep and shallow nets of one parameter budget learn parity from all ``2**n`` inputs.
* :func:`regions`: linear regions crossed by a line against the number of units, at
  initialisation and after training, for several depths.
"""
import itertools
from dataclasses import dataclass, field

import numpy as np

from . import constructions, datasets, regions as _regions, serialize
from .many import fit_many
from .model import MLP
from .optim import Adam
from .validation import check_positive_int, is_integer


@dataclass
class Table:
    """Rows of an experiment's result, with a title and notes."""

    title: str
    columns: list
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    plot_spec: dict = field(default_factory=dict)  # x column, y columns, log scale

    def __str__(self):
        cells = [[_fmt(row[c]) for c in self.columns] for row in self.rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(self.columns)]
        lines = [self.title, "  ".join(c.rjust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in cells]
        return "\n".join(lines + [f"  {note}" for note in self.notes])

    def markdown(self):
        """The table in Markdown (for docs/depth.md)."""
        out = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
               "|" + "---|" * len(self.columns)]
        out += ["| " + " | ".join(_fmt(row[c]) for c in self.columns) + " |" for row in self.rows]
        return "\n".join(out + [""] + [f"- {note}" for note in self.notes])


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def _mean_range(values):
    """``mean (min to max)``: with a hyphen, "-0.5--0.2" read as a subtraction; and -0.0
    (a negative value rounded) prints as 0."""
    values = [v + 0.0 for v in values]  # -0.0 + 0.0 is 0.0
    if min(values) == max(values):
        return _fmt(float(np.mean(values)) + 0.0)
    low, high = (float(f"{v:.3g}") + 0.0 for v in (min(values), max(values)))
    return f"{float(np.mean(values)) + 0.0:.3g} ({low:g} to {high:g})"


def _sizes(name, values):
    """A sequence of integers >= 1 (each checked), as a tuple."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of integers >= 1; got {values!r}")
    return tuple(check_positive_int(f"{name} entry", v) for v in values)


def _as_named(inner, outer, make):
    """``make()``, its argument errors naming the experiment's parameter ``outer`` for the
    data set's ``inner`` ("depth must be in 0..30" for ``teeth_depth=31``)."""
    try:
        return make()
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace(inner, outer, 1)) from None


def _check_seeds(seeds):
    if not is_integer(seeds) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1; got {seeds!r}")
    return int(seeds)


# ------------------------------------------------------------------ zigzag
def zigzag(seeds=3, units=24, teeth_depth=3, epochs=300, lr=1e-2):
    """Linear pieces on [0, 1] against depth, at ``units`` hidden units in all.

    Trained nets learn the tent map composed ``teeth_depth`` times (``2**teeth_depth``
    pieces, :func:`fastdnn.datasets.make_zigzag`), leaky_relu, Adam at ``lr``, ``epochs``
    epochs, batches of 32.

    Parameters
    ----------
    seeds : int, default 3
        Nets per depth (>= 1), with seeds ``0, ..., seeds - 1``.
    units : int, default 24
        Hidden units of every trained net, split evenly over its layers; the depths are
        those of 1, 2, 3, 4, 6 that divide ``units`` into layers of at least 2 units
        (so ``units >= 2``).
    teeth_depth : int, default 3
        Compositions of the tent map in the target (0..30).
    epochs : int, default 300
        Training epochs.
    lr : float, default 1e-2
        Adam's learning rate.

    Returns
    -------
    Table
    """
    seeds = _check_seeds(seeds)
    units = check_positive_int("units", units)
    depths = [L for L in (1, 2, 3, 4, 6) if units % L == 0 and units // L >= 2]
    if not depths:
        raise ValueError(f"units must be >= 2 (a layer of 2 units at least); got {units}")
    X, y = _as_named("depth", "teeth_depth", lambda: datasets.make_zigzag(
        n_samples=1024, depth=teeth_depth, seed=0, dtype=np.float64))
    nets, keys = [], []
    for L in depths:
        for s in range(seeds):
            nets.append(MLP([1] + [units // L] * L + [1], activation="leaky_relu", loss="mse",
                            dtype="float64", seed=s))
            keys.append(L)
    at_init = [_regions.linear_pieces(net, [0.0], [1.0]).count for net in nets]
    fit_many(nets, X, y, epochs=epochs, batch_size=32, optimizer=Adam(lr=lr))
    table = Table(
        f"zigzag: linear pieces on [0, 1] at {units} hidden units (target: {2 ** teeth_depth} "
        f"pieces), {seeds} seeds",
        ["depth", "width", "construction 2^depth", "at init", "trained", "trained R^2",
         "upper bound"],
        plot_spec=dict(x="depth", y=["construction 2^depth", "trained mean", "upper bound"],
                       log=True))
    for L in depths:
        group = [i for i, k in enumerate(keys) if k == L]
        trained = [_regions.linear_pieces(nets[i], [0.0], [1.0]).count for i in group]
        table.rows.append({
            "depth": L, "width": units // L,
            "construction 2^depth": 2 ** L,
            "at init": _mean_range(at_init[i] for i in group),
            "trained": _mean_range(trained), "trained mean": float(np.mean(trained)),
            "trained R^2": _mean_range(round(nets[i].score(X, y), 3) for i in group),
            "upper bound": _regions.serra_upper_bound([units // L] * L, 1)})
    table.notes += [
        f"construction: the sawtooth of that depth (2 units a layer, so 2*depth units, "
        f"not {units}); the 'upper bound' is Serra et al.'s for these widths on 1 input",
        "trained: leaky_relu nets fit to the target by Adam; pieces counted exactly "
        "(fastdnn.regions.linear_pieces); mean (min to max) over seeds",
        "at init: fastdnn starts biases at 0, so every kink sits at x = 0 and the net is "
        "linear on [0, 1] (one piece) until training moves the biases"]
    return table


# ------------------------------------------------------------------ parity
def _budget_pair(n, budget):
    """A deep (3 hidden layers) and a shallow (1 hidden layer) net size with about
    ``budget`` parameters each, for ``n`` inputs and 2 outputs."""
    def params(sizes):
        return sum(k * m + m for k, m in zip(sizes[:-1], sizes[1:]))
    smallest = params([n, 1, 1, 1, 2])
    if budget < smallest:  # max() of nothing said "empty sequence"
        raise ValueError(f"budget must be at least {smallest} (the deep net {n}-1-1-1-2); "
                         f"got {budget}")
    # The widest that fits, by bisection: searches up to widths 200 and 2,000 capped a
    # budget of 1e6 at 81,791 parameters, the title saying 1,000,000.
    w = _largest(lambda w: params([n, w, w, w, 2]) <= budget)
    deep = [n, w, w, w, 2]
    h = _largest(lambda h: params([n, h, 2]) <= params(deep))
    return deep, [n, h, 2], params(deep), params([n, h, 2])


def _largest(fits):
    """The largest integer ``k >= 1`` with ``fits(k)`` (true at 1, monotone)."""
    low, high = 1, 2
    while fits(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def parity(seeds=5, n_max=10, n_train=8, budget=450, epochs=300):
    """Deep against shallow parity: the constructions for ``n = 2..n_max``, then nets of
    one parameter budget trained on all ``2**n_train`` bit vectors over ``seeds`` seeds.

    Parameters
    ----------
    seeds : int, default 5
        Trained nets of each shape (>= 1), with seeds ``0, ..., seeds - 1``.
    n_max : int, default 10
        Most bits of the constructions (>= 2; at most
        :data:`fastdnn.constructions.MAX_DNF_BITS`, the DNF net's limit), each checked
        on all ``2**n`` inputs.
    n_train : int, default 8
        Bits of the parity the nets are trained on (1..24).
    budget : int, default 450
        Most parameters of the deep net: 3 hidden layers of the largest equal width
        that fits; the shallow net (1 hidden layer) has the most units that fit in the
        deep net's parameter count.
    epochs : int, default 300
        Training epochs (relu nets, Adam at 3e-3, batches of 32).

    Returns
    -------
    Table
    """
    seeds = _check_seeds(seeds)
    if check_positive_int("n_max", n_max) < 2:
        raise ValueError(f"n_max must be >= 2 (parity of 2 bits or more); got {n_max}")
    if n_max > constructions.MAX_DNF_BITS:  # said after every smaller n: hours
        raise ValueError(f"n_max must be at most {constructions.MAX_DNF_BITS} (the DNF "
                         f"net's limit); got {n_max}")
    budget = check_positive_int("budget", budget)
    n_train = check_positive_int("n_train", n_train)
    epochs = check_positive_int("epochs", epochs)
    table = Table(
        f"parity: constructions (exact on all 2^n inputs), and deep vs shallow nets of "
        f"~{budget} parameters trained on {n_train}-bit parity, {seeds} seeds",
        ["n", "deep depth", "deep units", "deep params", "dnf units", "dnf params",
         "saw units", "saw params"],
        plot_spec=dict(x="n", y=["deep units", "dnf units", "saw units"], log=True))
    for n in range(2, n_max + 1):
        X = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
        nets = dict(deep=constructions.parity_deep(n), dnf=constructions.parity_shallow(n, "dnf"),
                    saw=constructions.parity_shallow(n, "saw"))
        for name, net in nets.items():
            if not np.array_equal(net.predict(X), X.sum(axis=1) % 2):
                raise AssertionError(f"the {name} parity construction is wrong for n={n}")
        row = {"n": n, "deep depth": len(nets["deep"].sizes) - 2}
        for name, net in nets.items():
            row[f"{name} units"] = constructions.units(net)
            row[f"{name} params"] = net.n_params
        table.rows.append(row)
    X, y = _as_named("n_bits", "n_train", lambda: datasets.make_parity(n_train,
                                                                         dtype=np.float64))
    deep, shallow, p_deep, p_shallow = _budget_pair(n_train, budget)
    nets = [MLP(sizes, activation="relu", dtype="float64", seed=s)
            for sizes in (deep, shallow) for s in range(seeds)]
    fit_many(nets, X, y, epochs=epochs, batch_size=32, optimizer=Adam(lr=3e-3))
    solved = [net.score(X, y) == 1.0 for net in nets]
    acc = [net.score(X, y) for net in nets]
    for label, sizes, p, part in (("deep", deep, p_deep, slice(0, seeds)),
                                  ("shallow", shallow, p_shallow, slice(seeds, None))):
        table.notes.append(
            f"trained {label} {'-'.join(map(str, sizes))} ({p} params): all {2 ** n_train} "
            f"inputs right in {sum(solved[part])}/{seeds} seeds, accuracy "
            f"{_mean_range(round(a, 3) for a in acc[part])} after {epochs} epochs of Adam")
    return table


# ------------------------------------------------------------------ regions
def regions(seeds=3, unit_counts=(16, 32, 64, 128), depths=(1, 2, 4), n_inputs=4, epochs=20):
    """Linear regions crossed by a line against the number of hidden units, at
    initialisation and after training, for several depths (Hanin & Rolnick 2019).

    Parameters
    ----------
    seeds : int, default 3
        Nets per configuration (>= 1), with seeds ``0, ..., seeds - 1``.
    unit_counts : sequence of int, default (16, 32, 64, 128)
        Hidden units in all.
    depths : sequence of int, default (1, 2, 4)
        Hidden layers.  A configuration is a depth ``L`` and unit count ``U`` with ``L``
        dividing ``U`` (layers of ``U // L`` units); at least one pair must.
    n_inputs : int, default 4
        Inputs (>= 1) of the nets and of the random 3-class teacher task (2048 Gaussian
        samples) they are trained on.
    epochs : int, default 20
        Training epochs (relu nets, Adam at 3e-3, batches of 64).

    Returns
    -------
    Table
    """
    seeds = _check_seeds(seeds)
    n_inputs = check_positive_int("n_inputs", n_inputs)
    # Each entry checked: depth -1 made a row of width -16 (16 % -1 == 0), 0 divided by
    # zero, '16' % L formatted a string.
    unit_counts, depths = _sizes("unit_counts", unit_counts), _sizes("depths", depths)
    epochs = check_positive_int("epochs", epochs)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, n_inputs))
    teacher = rng.normal(size=(n_inputs, 3))
    # One wiggle per class from inputs 0, 1, 2 (taken round again below 3 inputs: X[:, :3]
    # had 2 columns for n_inputs=2 and raised).
    y = np.argmax(np.tanh(X @ teacher) + 0.3 * np.sin(3 * X[:, np.arange(3) % n_inputs]),
                  axis=1)
    lines = [rng.normal(size=(2, n_inputs)) * 2 for _ in range(4)]
    configs = [(L, U) for U in unit_counts for L in depths if U % L == 0]
    if not configs:
        raise ValueError(f"no unit count in unit_counts={tuple(unit_counts)} splits evenly "
                         f"into the layers of a depth in depths={tuple(depths)}")
    nets, keys = [], []
    for L, U in configs:
        for s in range(seeds):
            nets.append(MLP([n_inputs] + [U // L] * L + [3], activation="relu", dtype="float64",
                            seed=s))
            keys.append((L, U))

    def crossed(net):
        return np.mean([_regions.linear_pieces(net, a, b).n_patterns for a, b in lines])

    at_init = [crossed(net) for net in nets]
    fit_many(nets, X, y, epochs=epochs, batch_size=64, optimizer=Adam(lr=3e-3))
    after = [crossed(net) for net in nets]
    table = Table(
        f"regions: activation regions crossed by a segment of length "
        f"~{2 * np.sqrt(2 * n_inputs):.0f} (4 random segments, {seeds} seeds) against hidden units",
        ["depth", "units", "width", "at init", "per unit", "trained", "trained per unit"],
        plot_spec=dict(x="units", y=["at init", "trained"], by="depth", log=False))
    for L, U in configs:
        group = [i for i, k in enumerate(keys) if k == (L, U)]
        a = float(np.mean([at_init[i] for i in group]))
        b = float(np.mean([after[i] for i in group]))
        table.rows.append({"depth": L, "units": U, "width": U // L, "at init": a,
                           "per unit": a / U, "trained": b, "trained per unit": b / U})
    table.notes.append(
        f"relu nets with fastdnn's init for rectifiers, LeCun-uniform (limit sqrt(3/fan_in), "
        f"zero biases); trained {epochs} epochs of "
        f"Adam on a {n_inputs}-input, 3-class teacher task; counts by "
        f"fastdnn.regions.linear_pieces (patterns crossed)")
    return table


EXPERIMENTS = {"zigzag": zigzag, "parity": parity, "regions": regions}


def plot(table, path):
    """Draw ``table`` to ``path``, atomically, in the format its extension names (PNG
    without one); needs matplotlib (``pip install 'fastdnn[plots]'``)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("--plot needs matplotlib: pip install 'fastdnn[plots]'") from None
    spec = table.plot_spec
    fig, ax = plt.subplots(figsize=(6, 4))
    groups = sorted({row[spec["by"]] for row in table.rows}) if "by" in spec else [None]
    for g in groups:
        rows = [r for r in table.rows if g is None or r[spec["by"]] == g]
        xs = [r[spec["x"]] for r in rows]
        for col in spec["y"]:
            label = col if g is None else f"{col}, {spec['by']} {g}"
            ax.plot(xs, [float(r[col]) for r in rows], marker="o", label=label)
    if spec.get("log"):
        ax.set_yscale("log")
    ax.set_xlabel(spec["x"])
    ax.set_title(table.title.split(":")[0])
    ax.legend(fontsize=7)
    fig.tight_layout()
    serialize.write_figure(fig, path)  # savefig wrote "fig" to fig.png, in place
