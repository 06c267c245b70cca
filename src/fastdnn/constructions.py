"""Nets with exact weights for the lecture's depth experiments.

* :func:`sawtooth`: the tent map composed ``depth`` times, ``2**depth`` linear pieces on
  [0, 1] from ``2 * depth`` ReLUs (a shallow net needs ``2**depth - 1`` units for that).
* :func:`parity_deep`: parity of ``n`` bits as an XOR tree, ``ceil(log2 n)`` hidden
  layers and ``O(n)`` units (``n + ceil(n/2) + ...``, fewer than ``2n + log2 n``).
* :func:`parity_shallow`: parity with one hidden layer, either the DNF (one unit per odd
  input pattern, ``2**(n-1)`` units) or ``saw``, the ``n``-unit zig-zag of the bit count.

Every weight is a small integer or a power of two, so the nets compute exactly in
floating point: the parity nets return exactly 0 or 1 on all ``2**n`` inputs, and the
sawtooth's breakpoints are exact dyadic numbers.  Each function returns a float64
:class:`fastdnn.MLP` with relu hidden layers and loss ``"mse"`` (one output).
"""

import numpy as np

from . import datasets
from .model import MLP, check_net
from .validation import check_positive_int


def _net(weights):
    """A float64 relu MLP with the given ``[(W, b), ...]``."""
    sizes = [weights[0][0].shape[0]] + [W.shape[1] for W, _ in weights]
    net = MLP(sizes, activation="relu", loss="mse", dtype="float64")
    net.set_weights(weights)
    return net


def units(net):
    """Hidden units of ``net`` (the sum of its hidden widths)."""
    check_net(net, "units(estimator.net_)")
    return sum(net.sizes[1:-1])


def sawtooth(depth):
    """The tent map ``T(x) = 2 relu(x) - 4 relu(x - 1/2)`` composed ``depth`` times.

    On [0, 1] the result has ``2**depth`` linear pieces, with breakpoints at
    ``k / 2**depth``, from hidden layers of width 2.

    Parameters
    ----------
    depth : int
        Times the tent map is composed (>= 1): the number of hidden layers.
    """
    depth = check_positive_int("depth", depth)
    first = (np.array([[1.0, 1.0]]), np.array([0.0, -0.5]))
    # The next layer's pre-activations read T = 2 h1 - 4 h2 (and T - 1/2).
    middle = (np.array([[2.0, 2.0], [-4.0, -4.0]]), np.array([0.0, -0.5]))
    last = (np.array([[2.0], [-4.0]]), np.array([0.0]))
    return _net([first] + [middle] * (depth - 1) + [last])


#: Most bits of a ``parity_shallow(n, "dnf")`` net: ``2**23`` hidden units and 218M
#: parameters (1.7 GB in float64) at 24; past it, a clear error rather than a process
#: that grows until the OS stops it.
MAX_DNF_BITS = 24


def _check_bits(n):
    n = check_positive_int("n", n)
    if n < 2:
        raise ValueError(f"parity needs n >= 2 bits; got {n}")
    return n


def parity_deep(n):
    """Parity of ``n`` bits by a tree of XORs: ``xor(a, b) = relu(a + b) - 2 relu(a + b - 1)``.

    Each hidden layer pairs up the values of the layer below (2 units a pair; an odd
    one out passes through one unit, ``relu(x) = x`` for ``x`` in {0, 1}): a layer reading
    ``c`` values has ``c`` units and passes on ``ceil(c / 2)``, so there are
    ``ceil(log2 n)`` hidden layers of ``n, ceil(n/2), ..., 2`` units.

    Parameters
    ----------
    n : int
        Number of bits (>= 2).
    """
    n = _check_bits(n)
    weights = []
    # ``read`` maps the previous layer's units to the values they stand for: value v is
    # sum_u read[u, v] * unit_u (the identity on the inputs).
    read = np.eye(n)
    count = n
    while count > 1:
        pairs, odd = divmod(count, 2)
        width = 2 * pairs + odd
        W = np.zeros((read.shape[0], width))
        b = np.zeros(width)
        next_read = np.zeros((width, pairs + odd))
        for p in range(pairs):
            s = read[:, 2 * p] + read[:, 2 * p + 1]  # a + b
            W[:, 2 * p] = s
            W[:, 2 * p + 1] = s
            b[2 * p + 1] = -1.0
            next_read[2 * p, p] = 1.0
            next_read[2 * p + 1, p] = -2.0
        if odd:
            W[:, -1] = read[:, count - 1]
            next_read[-1, -1] = 1.0
        weights.append((W, b))
        read, count = next_read, pairs + odd
    weights.append((read, np.zeros(1)))
    return _net(weights)


def parity_shallow(n, kind="dnf"):
    """Parity of ``n`` bits with one hidden layer.

    Parameters
    ----------
    n : int
        Number of bits (>= 2).
    kind : {"dnf", "saw"}
        ``"dnf"``: one unit per input pattern ``s`` of odd weight,
        ``relu(sum_{s_i=1} x_i - sum_{s_i=0} x_i - (|s| - 1))``, which is 1 on ``x = s``
        and 0 on every other bit vector; the output sums them (``2**(n-1)`` units).
        ``"saw"``: the zig-zag of the bit count ``S = sum x``,
        ``S - 2 relu(S - 1) + 2 relu(S - 2) - ...`` (``n`` units).
    """
    n = _check_bits(n)
    if not isinstance(kind, str):  # an array: "truth value ... is ambiguous"
        raise TypeError(f"kind must be 'dnf' or 'saw'; got {type(kind).__name__}")
    if kind == "dnf":
        if n > MAX_DNF_BITS:
            raise ValueError(f"the dnf net of {n} bits needs 2**{n - 1} hidden units; "
                             f"n <= {MAX_DNF_BITS} here (kind='saw' takes n units)")
        # The bit vectors of odd weight, the first bit the most significant (the order
        # of itertools.product's tuples): n = 20 in 0.12 s where the tuples took 0.72.
        bits, odd = datasets.make_parity(n, dtype=np.float64)
        patterns = bits[odd == 1]
        W = (2.0 * patterns - 1.0).T
        b = 1.0 - patterns.sum(axis=1)
        return _net([(W, b), (np.ones((len(patterns), 1)), np.zeros(1))])
    if kind == "saw":
        W = np.ones((n, n))
        b = -np.arange(n, dtype=np.float64)
        out = np.where(np.arange(n) % 2 == 1, -2.0, 2.0)
        out[0] = 1.0
        return _net([(W, b), (out[:, None], np.zeros(1))])
    raise ValueError(f"kind must be 'dnf' or 'saw'; got {kind!r}")
