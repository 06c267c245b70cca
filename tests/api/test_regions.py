"""fastdnn.regions: exact linear pieces and regions against constructions with known
counts, brute force on fine grids, and the bounds; fastdnn.constructions: exact nets."""
import itertools
from math import comb

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import constructions, regions


def relu_net(sizes, rng, activation="relu", bias=0.5):
    net = fd.MLP(sizes, activation=activation, loss="mse", dtype="float64", seed=0)
    net.set_weights([(rng.normal(size=(k, n)), rng.uniform(-bias, bias, size=n))
                     for k, n in zip(sizes[:-1], sizes[1:])])
    return net


def patterns(net, X):
    """Activation pattern (pre-activation > 0 per hidden unit) of each row of X."""
    A, out = X, []
    for W, b in net.get_weights()[:-1]:
        Z = A @ W + b
        out.append(Z > 0)
        A = np.where(Z > 0, Z, 0.0 if net.activations[0] == "relu" else 0.01 * Z)
    return np.concatenate(out, axis=1)


# ------------------------------------------------------------------ constructions
@pytest.mark.parametrize("depth", range(1, 13))
def test_sawtooth_has_two_to_the_depth_pieces(depth):
    pieces = regions.linear_pieces(constructions.sawtooth(depth), [0.0], [1.0])
    assert pieces.count == 2 ** depth
    # Breakpoints at k / 2^depth exactly (dyadic weights), slopes +-2^depth.
    np.testing.assert_array_equal(pieces.breakpoints, np.arange(1, 2 ** depth) / 2 ** depth)
    np.testing.assert_array_equal(np.abs(pieces.slopes[:, 0]), 2.0 ** depth)


def test_sawtooth_values_match_the_net():
    net = constructions.sawtooth(5)
    pieces = regions.linear_pieces(net, [0.0], [1.0])
    t = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(pieces(t)[:, 0], net.predict(t[:, None]), atol=1e-12)
    assert set(np.unique(net.predict(np.arange(33)[:, None] / 32))) <= {0.0, 1.0}


@pytest.mark.parametrize("n", range(2, 10))
def test_parity_nets_are_exact_on_all_inputs(n):
    X = np.array(list(itertools.product([0.0, 1.0], repeat=n)))
    parity = X.sum(axis=1) % 2
    deep = constructions.parity_deep(n)
    dnf = constructions.parity_shallow(n, "dnf")
    saw = constructions.parity_shallow(n, "saw")
    for net in (deep, dnf, saw):
        np.testing.assert_array_equal(net.predict(X), parity)
    widths, c = [], n
    while c > 1:
        widths.append(c)
        c = -(-c // 2)
    assert deep.sizes[1:-1] == widths and len(widths) == int(np.ceil(np.log2(n)))
    assert constructions.units(dnf) == 2 ** (n - 1)
    assert constructions.units(saw) == n
    assert len(dnf.sizes) == len(saw.sizes) == 3


def test_construction_errors():
    with pytest.raises(ValueError, match="n >= 2"):
        constructions.parity_deep(1)
    with pytest.raises(ValueError, match="kind"):
        constructions.parity_shallow(4, "cnf")
    with pytest.raises(TypeError, match="depth"):
        constructions.sawtooth(2.5)
    with pytest.raises(ValueError, match="2\\*\\*24 hidden units"):
        constructions.parity_shallow(constructions.MAX_DNF_BITS + 1, "dnf")


# ------------------------------------------------------------------ along a segment
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_segment_patterns_match_brute_force(seed, activation):
    rng = np.random.default_rng(seed)
    net = relu_net([3, 6, 5, 2], rng, activation)
    x0, x1 = rng.normal(size=3) * 2, rng.normal(size=3) * 2
    pieces = regions.linear_pieces(net, x0, x1)
    t = np.linspace(0, 1, 200_001)
    P = patterns(net, x0 + t[:, None] * (x1 - x0))
    changes = np.nonzero(np.any(P[1:] != P[:-1], axis=1))[0]
    assert pieces.n_patterns == len(changes) + 1
    # The linear pieces join patterns with the same map, never split one.
    assert 1 <= pieces.count <= pieces.n_patterns
    # The exact function equals the net everywhere on the segment.
    ts = rng.uniform(size=500)
    np.testing.assert_allclose(pieces(ts), net.forward(x0 + ts[:, None] * (x1 - x0)),
                               rtol=1e-10, atol=1e-10)
    # Every breakpoint is a kink: slopes differ on its two sides.
    assert np.all(np.any(np.abs(np.diff(pieces.slopes, axis=0)) > 1e-9, axis=1))


def test_identity_layers_are_one_piece_and_other_activations_refused(rng):
    net = relu_net([2, 4, 4, 1], rng, activation="identity")
    assert regions.linear_pieces(net, [-5, -5], [5, 5]).count == 1
    with pytest.raises(ValueError, match="piecewise-linear"):
        regions.linear_pieces(relu_net([2, 4, 1], rng, activation="tanh"), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="x1"):
        regions.linear_pieces(relu_net([2, 4, 1], rng), [0, 0], [1, 1, 1])


# ------------------------------------------------------------------ on a square
def lines_crossing_inside(h, rng):
    """A one-layer 2-input net whose h lines all cross each other inside [-1, 1]^2."""
    while True:
        angles = rng.uniform(0, np.pi, size=h)
        W = np.stack([np.cos(angles), np.sin(angles)])
        b = rng.uniform(-0.2, 0.2, size=h)
        points = [np.linalg.solve(W[:, [i, j]].T, -b[[i, j]])
                  for i, j in itertools.combinations(range(h), 2)]
        spread = [abs(np.sin(a - c)) for a, c in itertools.combinations(angles, 2)]
        if all(np.abs(p).max() < 0.95 for p in points) and min(spread, default=1) > 0.05:
            net = fd.MLP([2, h, 1], loss="mse", dtype="float64")
            net.set_weights([(W, b), (rng.normal(size=(h, 1)), np.zeros(1))])
            return net


@pytest.mark.parametrize("h", [1, 2, 3, 5, 8])
def test_one_layer_in_the_plane_reaches_the_arrangement_count(h):
    net = lines_crossing_inside(h, np.random.default_rng(h))
    r = regions.regions_2d(net, [0, 0], [1, 0], [0, 1], -1, 1)
    assert r.n_patterns == r.count == 1 + h + comb(h, 2) == regions.max_regions_one_layer(h, 2)


@pytest.mark.parametrize("seed", range(4))
def test_square_patterns_match_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    net = relu_net([2, 5, 4, 1], rng)
    r = regions.regions_2d(net, [0, 0], [1, 0], [0, 1], -2, 2)
    g = np.linspace(-2, 2, 801)
    a, b = np.meshgrid(g, g)
    P = patterns(net, np.stack([a.ravel(), b.ravel()], axis=1))
    # Distinct patterns seen on the grid: at most the cells (a pattern can label two
    # disconnected cells), and every cell large enough for the grid is seen.
    seen = len(np.unique(P, axis=0))
    assert seen <= r.n_patterns
    big = sum(1 for poly in r.polygons if _area(poly) > 0.05)
    assert seen >= big
    assert r.count <= r.n_patterns
    # Exactly: the grid sees one pattern per cell that holds a grid point (here no
    # pattern labels two cells).
    centres = np.array([poly.mean(axis=0) for poly in r.polygons])
    assert len(np.unique(patterns(net, centres), axis=0)) == r.n_patterns
    points = np.stack([a.ravel(), b.ravel()], axis=1)
    holding = sum(1 for poly in r.polygons if _inside(poly, points).any())
    assert seen == holding
    # The maps reproduce the net at each cell's centre.
    for poly, M in zip(r.polygons, r.maps):
        c = poly.mean(axis=0)
        np.testing.assert_allclose(M[0] + c @ M[1:], net.forward(c[None])[0], atol=1e-9)


def _inside(poly, points, tol=1e-12):
    """Which ``points`` lie inside the convex polygon ``poly`` (counter-clockwise)."""
    inside = np.ones(len(points), dtype=bool)
    for p, q in zip(poly, np.roll(poly, -1, axis=0)):
        d = q - p
        inside &= d[0] * (points[:, 1] - p[1]) - d[1] * (points[:, 0] - p[0]) >= -tol
    return inside


def _area(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def test_cells_with_one_map_merge_into_one_region():
    # relu(x) + relu(-x) - |x| ... a net that is linear although its units switch:
    # relu(x) - relu(-x) = x, so both cells share the map y = x: one linear region.
    net = fd.MLP([2, 2, 1], loss="mse", dtype="float64")
    net.set_weights([(np.array([[1.0, -1.0], [0.0, 0.0]]), np.zeros(2)),
                     (np.array([[1.0], [-1.0]]), np.zeros(1))])
    r = regions.regions_2d(net, [0, 0], [1, 0], [0, 1])
    assert (r.n_patterns, r.count) == (2, 1)
    p = regions.linear_pieces(net, [-1, 0], [1, 0])
    assert (p.n_patterns, p.count) == (2, 1)


@pytest.mark.parametrize("slope", [1.5e-8, 2.5e-8])
def test_maps_a_rounding_error_apart_are_one_region(slope):
    """Maps were grouped by rounding them to 10 TOL_MAP first: slopes 1 ulp apart on two
    sides of a rounding step were two regions (linear_pieces, on the same line: one)."""
    net = fd.MLP([2, 2, 1], loss="mse", dtype="float64")
    net.set_weights([(np.array([[1.0, -1.0], [0.0, 0.0]]), np.zeros(2)),
                     (np.array([[slope], [-np.nextafter(slope, 1.0)]]), np.zeros(1))])
    assert regions.regions_2d(net, [0, 0], [1, 0], [0, 1]).count == 1
    assert regions.linear_pieces(net, [-1, 0], [1, 0]).count == 1


@pytest.mark.parametrize("shift", [1e9, 1e12])
def test_a_constant_added_to_the_output_changes_no_count(shift):
    """The merge compared offsets too, with a tolerance scaled by the largest
    coefficient: an output bias of 1e9 made a 2-8-8-1 net's 32 regions on the square
    one, and 1e12 its 2 pieces on a diagonal one.  Neighbours of one slope have one
    offset (the net is continuous), so the slopes alone decide."""
    net = fd.MLP([2, 8, 8, 1], loss="mse", dtype="float64", seed=3)
    weights = net.get_weights()
    square = regions.regions_2d(net, [0, 0], [1, 0], [0, 1])
    line = regions.linear_pieces(net, [-1, -1], [1, 1])
    assert square.count > 1 and line.count > 1
    (W3, b3) = weights[-1]
    net.set_weights(weights[:-1] + [(W3, b3 + shift)])
    shifted = regions.regions_2d(net, [0, 0], [1, 0], [0, 1])
    assert (shifted.count, shifted.n_patterns) == (square.count, square.n_patterns)
    np.testing.assert_array_equal(shifted.region, square.region)
    assert regions.linear_pieces(net, [-1, -1], [1, 1]).count == line.count


def test_the_merge_compares_neighbours_only(monkeypatch):
    """Every pair of cells with one map was tested for a shared edge: a net of constant
    output (2-48-48-1, 2,246 cells) took 213 s.  Now the cells a split makes are tested
    against the split cell's neighbours: a number of tests linear in the cells."""
    net = fd.MLP([2, 16, 16, 1], loss="mse", dtype="float64", seed=0)
    (W1, b1), (W2, b2), (W3, b3) = net.get_weights()
    rng = np.random.default_rng(1)
    net.set_weights([(W1, rng.normal(size=b1.shape) * 0.5), (W2, rng.normal(size=b2.shape) * 0.5),
                     (np.zeros_like(W3), b3)])  # a constant: one region
    calls = []
    share_edge = regions._share_edge
    monkeypatch.setattr(regions, "_share_edge", lambda *a: calls.append(1) or share_edge(*a))
    r = regions.regions_2d(net, [0, 0], [1, 0], [0, 1])
    assert r.count == 1 and r.n_patterns > 300
    assert len(calls) < 4 * r.n_patterns  # all pairs: about n^2 / 2 = 53,000


def test_square_errors(rng):
    net = relu_net([3, 4, 1], rng)
    with pytest.raises(ValueError, match="independent"):
        regions.regions_2d(net, [0, 0, 0], [1, 0, 0], [2, 0, 0])
    with pytest.raises(ValueError, match="lo < hi"):
        regions.regions_2d(net, [0, 0, 0], [1, 0, 0], [0, 1, 0], 1, -1)


# ------------------------------------------------------------------ bounds
def test_bounds_exact_values():
    assert regions.max_regions_one_layer(8, 2) == 1 + 8 + 28
    assert regions.max_regions_one_layer(3, 5) == 8  # h <= d: every pattern, 2^h
    # Montufar: prod floor(n/d)^d * sum_{j<=d} C(n_L, j).
    assert regions.montufar_lower_bound([4, 4, 4], 2) == 2 ** 2 * 2 ** 2 * 11
    assert regions.montufar_lower_bound([6], 1) == 7
    # Serra, one layer: Zaslavsky; d = 1: every layer adds at most n_l regions, capped.
    assert regions.serra_upper_bound([8], 2) == regions.max_regions_one_layer(8, 2)
    # d = 1, widths 2, 2: j1 in {0, 1}, j2 <= min(1, 2 - j1): (C(2,0) + C(2,1)) * 3.
    assert regions.serra_upper_bound([2, 2], 1) == 9
    assert isinstance(regions.serra_upper_bound([64] * 6, 4), int)
    with pytest.raises(ValueError, match=">= d"):
        regions.montufar_lower_bound([1, 4], 2)


@pytest.mark.parametrize("call,error,match", [
    (lambda: regions.max_regions_one_layer(2.9, 1), TypeError, "width must be an integer"),
    (lambda: regions.max_regions_one_layer(3, 1.9), TypeError, "d must be an integer"),
    (lambda: regions.max_regions_one_layer("4", 2), TypeError, "width must be an integer"),
    (lambda: regions.max_regions_one_layer(True, 2), TypeError, "width must be an integer"),
    (lambda: regions.montufar_lower_bound([2.5, 2.5], 1), TypeError, "width"),
    (lambda: regions.serra_upper_bound(5, 1), TypeError, "sequence of integers"),
    (lambda: regions.serra_upper_bound([], 1), ValueError, "at least one hidden width"),
    (lambda: regions.serra_upper_bound([3, 0], 1), ValueError, "width must be >= 1"),
    (lambda: regions.serra_upper_bound([3], 0), ValueError, "d must be >= 1"),
])
def test_bounds_refuse_what_is_not_a_width(call, error, match):
    """No bound rounds a width or a dimension down: 2.9 units are no net."""
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("seed", range(5))
def test_counts_never_exceed_the_bounds(seed):
    rng = np.random.default_rng(seed)
    widths = [4, 4]
    net = relu_net([2, *widths, 1], rng, bias=1.0)
    r = regions.regions_2d(net, [0, 0], [1, 0], [0, 1], -3, 3)
    assert r.n_patterns <= regions.serra_upper_bound(widths, 2)
    assert regions.montufar_lower_bound(widths, 2) <= regions.serra_upper_bound(widths, 2)
    p = regions.linear_pieces(net, [-3, -3], [3, 3])
    assert p.n_patterns <= regions.serra_upper_bound(widths, 1)
    one = relu_net([2, 6, 1], rng)
    assert regions.regions_2d(one, [0, 0], [1, 0], [0, 1], -5, 5).n_patterns <= \
        regions.max_regions_one_layer(6, 2)


def test_argument_mistakes_are_named(rng):
    net2 = fd.MLP([2, 4, 1], loss="mse", dtype="float64", seed=0)
    cases = [
        (lambda: regions.regions_2d(net2, [0, 0], [1, 0], [0, 1], "a", 1), TypeError,
         "lo must be a number"),  # NumPy's "ufunc 'isfinite' not supported"
        (lambda: regions.regions_2d(net2, [0, 0], [1, 0], [0, 1], np.array([0, 1]), 1),
         TypeError, "lo must be a number"),  # "truth value of an array is ambiguous"
        (lambda: regions.regions_2d(constructions.sawtooth(2), [0], [1], [2]), ValueError,
         "2 or more inputs"),  # "u and v must be linearly independent"
        (lambda: regions.linear_pieces("net", [0.0], [1.0]), TypeError, "fastdnn.MLP"),
        (lambda: regions.linear_pieces(constructions.sawtooth(2), ["a"], [1.0]), TypeError,
         "x0 must be a vector of numbers"),
        (lambda: regions.montufar_lower_bound({4: 1, 5: 0}, 2), TypeError, "got dict"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()


def test_a_segment_or_square_whose_values_overflow_is_refused():
    """relu on [-1e308, 1e308] was 1 piece of slope inf (4 regions of relu(x) + relu(y)
    were 1), with RuntimeWarnings only."""
    net = fd.MLP([1, 1, 1], loss="mse", dtype="float64")
    net.set_weights([(np.array([[1.0]]), np.array([0.0])), (np.array([[1.0]]), np.array([0.0]))])
    with pytest.raises(ValueError, match="overflow float64"):
        regions.linear_pieces(net, [-1e308], [1e308])
    assert regions.linear_pieces(net, [-1e300], [1e300]).count == 2
    net2 = fd.MLP([2, 2, 1], loss="mse", dtype="float64")
    net2.set_weights([(np.eye(2), np.zeros(2)), (np.ones((2, 1)), np.zeros(1))])
    with pytest.raises(ValueError, match="overflow float64"):
        regions.regions_2d(net2, [0, 0], [1, 0], [0, 1], -1e308, 1e308)


@pytest.mark.parametrize("c", [1e-6, 1e-8, 1e-10, 1e-14])
def test_an_output_in_small_units_keeps_its_pieces(c):
    """The slope tolerance was TOL_MAP times the largest slope *at least 1*: below slope 1
    it was an absolute 1e-9, so an output in units of 1e-10 (or a segment 1e-10 long)
    was one piece, and a depth-6 zigzag net trained to slopes of 1e-13..3e-11 (3
    pieces, docs/depth.md) counted as 1.  A net times c has the same pieces."""
    rng = np.random.default_rng(0)
    net = relu_net([2, 16, 16, 1], rng)
    (W3, b3) = net.get_weights()[-1]
    line = regions.linear_pieces(net, [-2, -1], [2, 1.5])
    square = regions.regions_2d(net, [0, 0], [1, 0], [0, 1])
    assert line.count > 10 and square.count > 100
    net.set_weights(net.get_weights()[:-1] + [(W3 * c, b3 * c)])
    assert regions.linear_pieces(net, [-2, -1], [2, 1.5]).count == line.count
    scaled = regions.regions_2d(net, [0, 0], [1, 0], [0, 1])
    assert scaled.count == square.count
    np.testing.assert_array_equal(scaled.region, square.region)
    # |x| on a short segment: 2 pieces however short.
    absolute = fd.MLP([1, 2, 1], loss="mse", dtype="float64")
    absolute.set_weights([(np.array([[1.0, -1.0]]), np.zeros(2)), (np.ones((2, 1)), np.zeros(1))])
    assert regions.linear_pieces(absolute, [-c], [c]).count == 2
