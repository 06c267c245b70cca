"""Exact linear regions of ReLU nets: along a segment, on a square of the input space,
and the classical bounds on how many there can be.

A net whose hidden activations are relu, leaky_relu or identity is piecewise linear.
Restricted to a segment ``x0 + t (x1 - x0)``, ``t`` in [0, 1], it is a piecewise linear
function of ``t``; restricted to a square ``origin + a u + b v`` it is piecewise linear
in ``(a, b)``.  Both are computed exactly (up to floating-point rounding, in float64)
by carrying the affine map of each piece through the layers and splitting a piece
wherever a unit's pre-activation crosses zero inside it: the pieces are the activation
patterns the segment or square crosses, and neighbouring pieces with the same affine map
are then merged into linear pieces (regions).

Tolerances (documented, float64): a crossing closer than ``TOL_T`` (1e-12, relative to
the segment or square's side) to a piece's boundary is not a split; two affine maps are
the same when the slopes of each output differ by at most ``TOL_MAP`` (1e-9) times
that output's largest slope, or ``TOL_ROUND`` (1e-12) times the magnitude its slopes
are computed from (the same sums over ``|W|``), whichever is more: the rounding the
slopes can carry.  Both scale with the output and the segment, so a net and the same
net with its output times ``c`` have the same pieces (a floor of slope 1 merged the kinks
of an output in units of 1e-10, and of any net on a segment 1e-10 long).  Only the
slopes: the net is continuous, so neighbours of one slope have one offset where they
touch, and so one map; an offset compared too scaled the tolerance with it (a constant
of 1e9 added to the output made 32 regions one).  Dyadic weights (as in
:mod:`fastdnn.constructions`) make every crossing exact.

Bounds, as exact Python integers: :func:`max_regions_one_layer` (Zaslavsky's count for
``h`` hyperplanes in general position in ``d`` dimensions), :func:`montufar_lower_bound`
(Montufar, Pascanu, Cho & Bengio 2014) and :func:`serra_upper_bound` (Serra,
Tjandraatmadja & Ramalingam 2018).
"""
from dataclasses import dataclass
from functools import lru_cache
from math import comb

import numpy as np
from numba import njit

from . import config
from .kernels import spec
from .kernels.cpu.pipeline import cache_may_fail
from .model import MLP
from .validation import as_real, check_positive_int

TOL_T = 1e-12
TOL_MAP = 1e-9
TOL_ROUND = 1e-12

#: Slope of each piecewise-linear activation for negative inputs (1 above zero).
_NEGATIVE_SLOPE = {spec.RELU: 0.0, spec.LEAKY_RELU: spec.LEAKY_SLOPE, spec.IDENTITY: 1.0}


def _check_net(net):
    """A ``TypeError`` for what is no MLP, a ``ValueError`` for a net that is not
    piecewise linear."""
    if not isinstance(net, MLP):  # "'str' object has no attribute 'activations'"
        raise TypeError(f"net must be a fastdnn.MLP; got {type(net).__name__}")
    bad = [name for name, code in zip(net.activations, net._codes) if code not in _NEGATIVE_SLOPE]
    if bad:
        raise ValueError(
            f"linear regions need piecewise-linear hidden activations (relu, leaky_relu, "
            f"identity); this net has {', '.join(sorted(set(bad)))}")


def _layers(net):
    """The net's ``(W, b)`` in float64 and the negative-side slope of each hidden layer."""
    _check_net(net)
    weights = [(W.astype(np.float64), b.astype(np.float64)) for W, b in net.get_weights()]
    return weights, [_NEGATIVE_SLOPE[code] for code in net._codes]


def _point(net, x, name):
    _check_net(net)  # a net first: its widths size the check below
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):  # NumPy's "could not convert string to float"
        raise TypeError(f"{name} must be a vector of numbers; got {x!r}") from None
    if x.shape != (net.sizes[0],):
        raise ValueError(f"{name} must be a vector of {net.sizes[0]} input values; "
                         f"got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return x


# ------------------------------------------------------------------ along a segment
@cache_may_fail  # a cache that cannot be written: warned, not raised
@njit(cache=config.CACHE)
def _split_segment(bounds, A, C, tol):
    """Split the pieces ``[bounds[i], bounds[i+1]]`` of a layer with pre-activations
    ``A[i] + t C[i]`` wherever a unit crosses zero inside; return the new bounds, the
    parent piece of each new piece and its activation pattern (pre-activation > 0)."""
    n_pieces, width = A.shape
    cuts = np.empty(width)
    new_bounds = [bounds[0]]
    parent = []
    for i in range(n_pieces):
        t0, t1 = bounds[i], bounds[i + 1]
        count = 0
        for j in range(width):
            if C[i, j] != 0.0:
                t = -A[i, j] / C[i, j]
                if t0 + tol < t < t1 - tol:
                    cuts[count] = t
                    count += 1
        inner = np.sort(cuts[:count])
        for c in range(count):
            if c == 0 or inner[c] > inner[c - 1] + tol:  # units crossing together cut once
                new_bounds.append(inner[c])
                parent.append(i)
        new_bounds.append(t1)
        parent.append(i)
    out_bounds = np.array(new_bounds)
    parents = np.array(parent)
    pattern = np.empty((parents.shape[0], width), dtype=np.bool_)
    for p in range(parents.shape[0]):
        mid = 0.5 * (out_bounds[p] + out_bounds[p + 1])
        for j in range(width):
            pattern[p, j] = A[parents[p], j] + mid * C[parents[p], j] > 0.0
    return out_bounds, parents, pattern


@dataclass(frozen=True)
class LinearPieces:
    """The net along the segment ``x0 + t (x1 - x0)``, ``t`` in [0, 1].

    Attributes
    ----------
    breakpoints : ndarray
        Sorted ``t`` in (0, 1) where the linear piece changes.
    count : int
        Linear pieces (``len(breakpoints) + 1``).
    n_patterns : int
        Activation patterns crossed (pieces before merging neighbours with the same map).
    bounds : ndarray, shape (count + 1,)
        ``[0, *breakpoints, 1]``.
    slopes, offsets : ndarray, shape (count, n_outputs)
        The net's output on piece ``i`` is ``offsets[i] + t * slopes[i]``.
    """

    breakpoints: np.ndarray
    count: int
    n_patterns: int
    bounds: np.ndarray
    slopes: np.ndarray
    offsets: np.ndarray

    def __call__(self, t):
        """The piecewise-linear function at ``t`` (array-like), shape ``(len(t), n_outputs)``."""
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        piece = np.clip(np.searchsorted(self.bounds, t, side="right") - 1, 0, self.count - 1)
        return self.offsets[piece] + t[:, None] * self.slopes[piece]


def _tolerance(slopes, magnitude):
    """Per column of ``slopes`` (rows: pieces): how far two slopes may be apart and be
    one (module docstring); ``magnitude`` bounds the terms each slope is a sum of."""
    if not slopes.size:
        return np.zeros(slopes.shape[1:])
    magnitude = np.where(np.isfinite(magnitude), magnitude, 0.0)  # then relative only
    return np.maximum(TOL_MAP * np.abs(slopes).max(axis=0),
                      TOL_ROUND * magnitude.max(axis=0))


def _merge(slopes, magnitude):
    """Indices of the first piece of each run of neighbours with the same affine map:
    the same slope (module docstring: on a continuous net, the same offset then)."""
    tol = _tolerance(slopes, magnitude)
    same = np.all(np.abs(slopes[1:] - slopes[:-1]) <= tol, axis=1)
    return np.concatenate([[0], np.nonzero(~same)[0] + 1])


@np.errstate(over="ignore", invalid="ignore")  # _check_finite says it
def linear_pieces(net, x0, x1):
    """The exact linear pieces of ``net`` on the segment from ``x0`` to ``x1``.

    Parameters
    ----------
    net : fastdnn.MLP
        Hidden activations relu, leaky_relu or identity.
    x0, x1 : array-like, shape (n_inputs,)

    Returns
    -------
    LinearPieces
    """
    x0, x1 = _point(net, x0, "x0"), _point(net, x1, "x1")
    weights, slopes = _layers(net)
    W, b = weights[0]
    bounds = np.array([0.0, 1.0])
    A = (x0 @ W + b)[None, :]
    C = ((x1 - x0) @ W)[None, :]
    G = (np.abs(x1 - x0) @ np.abs(W))[None, :]  # C's terms in magnitude: its rounding
    for (W, b), negative in zip(weights[1:], slopes):
        bounds, parents, pattern = _split_segment(bounds, A, C, TOL_T)
        D = np.where(pattern, 1.0, negative)
        A = (A[parents] * D) @ W + b
        C = (C[parents] * D) @ W
        G = (G[parents] * D) @ np.abs(W)
    _check_finite(A, C)
    first = _merge(C, G)
    merged = np.append(bounds[first], 1.0)
    return LinearPieces(breakpoints=merged[1:-1], count=len(first), n_patterns=len(A),
                        bounds=merged, slopes=C[first], offsets=A[first])


def _check_finite(*maps):
    """A ValueError where a carried map overflowed float64 (endpoints as far apart as
    +-1e308 made relu on them 1 piece of slope inf, with warnings only)."""
    if not all(np.isfinite(m).all() for m in maps):
        raise ValueError("the net's values on this segment or square overflow float64: "
                         "take a smaller one")


# ------------------------------------------------------------------ on a square
def _clip(poly, coef, tol):
    """Split the convex polygon ``poly`` (vertices, counter-clockwise) by the line
    ``coef[0] + coef[1] a + coef[2] b = 0``: ``(negative side, positive side)``, either
    ``None`` when the line does not cut through."""
    value = coef[0] + poly @ coef[1:]
    scale = tol * max(1.0, float(np.abs(coef).max()))
    if np.all(value >= -scale) or np.all(value <= scale):
        return None
    sides = ([], [])
    n = len(poly)
    for i in range(n):
        p, q = poly[i], poly[(i + 1) % n]
        vp, vq = value[i], value[(i + 1) % n]
        if vp <= 0:
            sides[0].append(p)
        if vp >= 0:
            sides[1].append(p)
        if (vp < 0 < vq) or (vq < 0 < vp):
            cut = p + (vp / (vp - vq)) * (q - p)
            sides[0].append(cut)
            sides[1].append(cut)
    neg, pos = (np.array(s) for s in sides)
    if len(neg) < 3 or len(pos) < 3:
        return None
    return neg, pos


@dataclass(frozen=True)
class Regions2D:
    """The net on the square ``origin + a u + b v``, ``a, b`` in [lo, hi].

    Attributes
    ----------
    count : int
        Linear regions: connected unions of activation regions with the same affine map.
    n_patterns : int
        Activation regions (cells of the arrangement the units cut).
    polygons : list of ndarray
        The activation regions, as convex polygons in ``(a, b)`` coordinates.
    maps : ndarray, shape (n_patterns, 3, n_outputs)
        The output on polygon ``i`` is ``maps[i, 0] + a maps[i, 1] + b maps[i, 2]``.
    region : ndarray of int, shape (n_patterns,)
        The linear region each activation region belongs to.
    """

    count: int
    n_patterns: int
    polygons: list
    maps: np.ndarray
    region: np.ndarray


def _find(parent, i):
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _share_edge(P, Q, tol):
    """Whether convex polygons ``P`` and ``Q`` share a boundary segment of positive length.

    All of ``P``'s edges at once (one at a time in Python, the merge of 1,016 cells took
    0.9 s, a fifth of it here)."""
    lo, hi = P.min(axis=0), P.max(axis=0)
    if (Q.max(axis=0) < lo - tol).any() or (Q.min(axis=0) > hi + tol).any():
        return False  # apart: most pairs a split asks about
    d = np.roll(P, -1, axis=0) - P  # edge i from P[i] to P[i + 1]
    length = np.hypot(d[:, 0], d[:, 1])
    edges = length > tol
    if not edges.any():
        return False
    P, d, length = P[edges], d[edges], length[edges]
    normal = np.stack([-d[:, 1], d[:, 0]], axis=1) / length[:, None]
    rel = Q[None, :, :] - P[:, None, :]  # (edges, Q's vertices, 2)
    on = np.abs(np.einsum("eqk,ek->eq", rel, normal)) <= tol  # Q's vertices on each line
    s = np.einsum("eqk,ek->eq", rel, d) / (length * length)[:, None]
    top = np.where(on, s, -np.inf).max(axis=1)
    bottom = np.where(on, s, np.inf).min(axis=1)
    overlap = np.minimum(top, 1.0) - np.maximum(bottom, 0.0)
    return bool(((on.sum(axis=1) >= 2) & (overlap > tol / length)).any())


@np.errstate(over="ignore", invalid="ignore")  # _check_finite says it
def regions_2d(net, origin, u, v, lo=-1.0, hi=1.0):
    """The exact number of linear regions of ``net`` on the square ``origin + a u + b v``,
    ``a, b`` in [lo, hi] (for a 2-input net with ``u``, ``v`` the unit vectors: the plane).

    Parameters
    ----------
    net : fastdnn.MLP
        Hidden activations relu, leaky_relu or identity.
    origin, u, v : array-like, shape (n_inputs,)
        ``u`` and ``v`` must be linearly independent.
    lo, hi : float, default -1.0, 1.0
        Range of ``a`` and of ``b`` (finite, ``lo < hi``).

    Returns
    -------
    Regions2D
    """
    origin, u, v = (_point(net, x, name) for x, name in ((origin, "origin"), (u, "u"), (v, "v")))
    lo, hi = as_real("lo", lo), as_real("hi", hi)  # a Fraction failed in np.isfinite
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"need finite lo < hi; got lo={lo!r}, hi={hi!r}")
    if not np.isfinite(hi - lo):  # the tolerances scale with the side: inf merged it all
        raise ValueError("the net's values on this segment or square overflow float64: "
                         f"take a smaller one (hi - lo overflows; lo={lo!r}, hi={hi!r})")
    if net.sizes[0] < 2:
        raise ValueError(f"regions_2d needs a net of 2 or more inputs (u and v span a plane "
                         f"of them); this net has {net.sizes[0]}: use linear_pieces")
    if np.linalg.matrix_rank(np.stack([u, v])) < 2:
        raise ValueError("u and v must be linearly independent")
    weights, slopes = _layers(net)
    tol = TOL_T * (hi - lo)
    W, b = weights[0]
    square = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]], dtype=np.float64)
    # The cells by id, and which share an edge: kept as cells split (a half can only
    # touch its sibling and the cell's own neighbours), so the merge below compares
    # neighbours only (all pairs of cells with one map took 213 s at 2,246 cells).
    polys = {0: square}
    touching = {0: set()}
    order = [0]
    maps = {0: np.stack([origin @ W + b, u @ W, v @ W])}  # (3, width): z = m0 + a m1 + b m2
    sizes = {0: np.stack([np.abs(u) @ np.abs(W), np.abs(v) @ np.abs(W)])}  # m1, m2's terms
    next_id = 1
    for (W, b), negative in zip(weights[1:], slopes):
        new_order, new_maps, new_sizes = [], {}, {}
        for c in order:
            M = maps[c]
            cells = [c]
            for j in range(M.shape[1]):
                cut = []
                for cell in cells:
                    halves = _clip(polys[cell], M[:, j], tol)
                    if halves is None:
                        cut.append(cell)
                        continue
                    ids = (next_id, next_id + 1)
                    next_id += 2
                    neighbours = touching.pop(cell)
                    del polys[cell]
                    for h, half in zip(ids, halves):
                        polys[h] = half
                        touching[h] = {ids[0] + ids[1] - h}  # its sibling
                    coef = M[:, j]
                    scale = tol * max(1.0, float(np.abs(coef).max()))  # as _clip's
                    for x in neighbours:
                        touching[x].discard(cell)
                        # A neighbour on one side of the cut touches that half only (the
                        # edge they share is on that side); one across it, either.
                        value = coef[0] + polys[x] @ coef[1:]
                        sides = (ids[1],) if value.min() >= -scale else \
                            (ids[0],) if value.max() <= scale else ids
                        for h in sides:
                            if len(sides) == 1 or _share_edge(polys[h], polys[x], 10 * tol):
                                touching[h].add(x)
                                touching[x].add(h)
                    cut.extend(ids)
                cells = cut
            for cell in cells:
                centre = polys[cell].mean(axis=0)
                active = M[0] + centre @ M[1:] > 0
                D = np.where(active, 1.0, negative)
                new_order.append(cell)
                new_maps[cell] = (M * D) @ W + np.outer([1.0, 0.0, 0.0], b)
                new_sizes[cell] = (sizes[c] * D) @ np.abs(W)
        order, maps, sizes = new_order, new_maps, new_sizes
    index = {cell: i for i, cell in enumerate(order)}
    polys_out = [polys[cell] for cell in order]
    maps = np.array([maps[cell] for cell in order])
    _check_finite(maps, *polys_out)
    # Merge neighbours whose slopes agree within TOL_MAP (union-find over shared edges; the
    # slopes compared directly: grouped by rounded maps first, two maps 1 ulp apart fell
    # on two sides of a rounding step, and counted as two regions).
    n = len(order)
    flat = maps[:, 1:].reshape(n, -1)  # row 0 is the offset
    tol = _tolerance(flat, np.array([sizes[cell] for cell in order]).reshape(n, -1))
    parent = list(range(n))
    for cell in order:
        i = index[cell]
        for x in touching[cell]:
            k = index[x]
            if k > i and (np.abs(flat[i] - flat[k]) <= tol).all():
                parent[_find(parent, i)] = _find(parent, k)
    polys = polys_out
    roots = np.array([_find(parent, i) for i in range(n)])
    _, region = np.unique(roots, return_inverse=True)
    return Regions2D(count=int(region.max()) + 1, n_patterns=n, polygons=polys, maps=maps,
                     region=region)


# ------------------------------------------------------------------ bounds
def _check_dims(widths, d):
    """``widths`` as a list of ints >= 1 (at least one) and ``d`` as an int >= 1; a
    ``TypeError`` for anything not an integer (2.9 widths are no width), a ``ValueError``
    naming the bad value otherwise."""
    if isinstance(widths, (str, bytes, dict, set, frozenset)) or not hasattr(widths, "__iter__"):
        # a dict's keys were taken as the widths
        raise TypeError(f"widths must be a sequence of integers; got {type(widths).__name__}")
    widths = [check_positive_int("each hidden width", w) for w in widths]
    if not widths:
        raise ValueError("need at least one hidden width")
    return widths, check_positive_int("d", d)


def max_regions_one_layer(h, d):
    """``sum_{i=0}^{d} C(h, i)``: the regions of ``h`` hyperplanes in general position in
    ``R^d``, the most one layer of ``h`` ReLUs on ``d`` inputs has (reached for generic
    weights).

    Parameters
    ----------
    h : int
        Units of the layer (>= 1).
    d : int
        Input dimension (>= 1).

    Returns
    -------
    int
    """
    (h,), d = _check_dims([h], d)
    return sum(comb(h, i) for i in range(d + 1))


def montufar_lower_bound(widths, d):
    """A number of regions some ReLU net with hidden ``widths`` (each >= ``d``) on ``d``
    inputs reaches: ``prod_{l<L} floor(n_l / d)^d * sum_{j<=d} C(n_L, j)`` (Montufar et al.
    2014, Theorem 4).  For width ``h`` per layer: ``Omega((h/d)^((L-1) d) h^d)``.

    Parameters
    ----------
    widths : sequence of int
        Hidden widths ``n_1, ..., n_L``, first layer first (at least one; each >= ``d``).
    d : int
        Input dimension (>= 1).

    Returns
    -------
    int
    """
    widths, d = _check_dims(widths, d)
    if min(widths) < d:
        raise ValueError(f"the bound needs every hidden width >= d = {d}; got {widths}")
    product = 1
    for n in widths[:-1]:
        product *= (n // d) ** d
    return product * max_regions_one_layer(widths[-1], d)


def serra_upper_bound(widths, d):
    """The most regions a ReLU net with hidden ``widths`` on ``d`` inputs can have:
    ``sum over (j_1..j_L) in J of prod_l C(n_l, j_l)``, ``J`` = tuples with
    ``0 <= j_l <= min(d, n_1 - j_1, ..., n_{l-1} - j_{l-1}, n_l)`` (Serra et al. 2018,
    Theorem 1).  One layer: :func:`max_regions_one_layer`.

    Parameters
    ----------
    widths : sequence of int
        Hidden widths ``n_1, ..., n_L``, first layer first (at least one; each >= 1).
    d : int
        Input dimension (>= 1).

    Returns
    -------
    int
    """
    widths, d = _check_dims(widths, d)

    @lru_cache(maxsize=None)
    def count(layer, cap):
        # cap: min(d, n_1 - j_1, ..., n_{layer-1} - j_{layer-1}) so far.
        if layer == len(widths):
            return 1
        n = widths[layer]
        return sum(comb(n, j) * count(layer + 1, min(cap, n - j)) for j in range(min(cap, n) + 1))

    return count(0, d)
