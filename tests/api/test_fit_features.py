"""Issue 9's training options against oracles: ``sample_weight``, ``class_weight``,
``MLP(l2=)``, ``MLP(dropout=)`` and ``clip_norm``.

For each option: oracle tests in float64, a learning test (the option does what it is
for) and the errors of its bad values.  The oracles:

* **weights**: a weighted mean loss is ``sum(w_i l_i) / sum(w_i)`` of the one-row losses
  ``l_i = net.loss(X[i:i+1], y[i:i+1])`` (its gradient the same mix of the one-row
  gradients); central finite differences of ``net.loss``; PyTorch's per-row losses
  (``reduction="none"``) weighted by hand; a full-batch fit with integer weights is a
  fit on the rows repeated;
* **l2**: ``net.loss`` is the data loss plus ``l2 / 2 * sum(W**2)`` (weights, not biases),
  its gradient adds ``l2 * W``; finite differences; PyTorch autograd;
* **dropout**: with a fixed key (fixed masks) ``net._backend.gradient`` matches a NumPy
  forward and backward pass whose masks come from ``spec.dropout_scale``, and finite
  differences of its own loss; a fit's steps use the masks of ``spec.step_key(epoch
  seed, step)`` with the rows numbered within the batch, so the thread count, the
  shard count and where an epoch is cut into slices change nothing;
* **clip_norm**: one full-batch SGD step is ``theta - lr g min(1, c / ||g||)`` with ``g``
  from ``net.gradients`` (penalty included).

Finite differences: ``eps = 1e-6`` in float64, tolerances as tests/api/test_finite_differences.py
derives them (1e-5 relative, an absolute floor of 1e-8 max(1, |L|)).  Exact oracles
(the same sums in another order) are held to 1e-10 of the largest entry.
"""
import copy
import math
import re

import numpy as np
import pytest

import fastdnn as fd
import naive
from support import make_targets
from fastdnn import config
from fastdnn.kernels import spec
from fastdnn.kernels.cpu.backend import n_shards
from support import assert_close, assert_same_weights, build, run_threaded, same_weights

HEADS, HEAD_IDS = naive.HEADS, naive.HEAD_IDS
EPS = 1e-6
FD_RTOL = 1e-5
FD_ATOL = 1e-8
RTOL = 1e-10


# ------------------------------------------------------------------ helpers
def make_net(sizes, loss="cross_entropy", dtype="float64", seed=1, **options):
    """A tanh net with ``options`` (l2, dropout) and random biases (see support.build)."""
    _, params = build(sizes, "tanh", loss, dtype, seed)
    net = fd.MLP(sizes, activation="tanh", loss=loss, dtype=dtype, seed=seed, **options)
    net.set_weights(params)
    return net


def data(loss, n, n_in, k, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), make_targets(loss, n, k, rng)


def weights(n, seed=5):
    """Positive, clearly unequal sample weights."""
    return np.random.default_rng(seed).uniform(0.1, 3.0, size=n)


def flat(grads):
    """``[(dW, db), ...]`` as one vector in the layout of theta."""
    return np.concatenate([a.ravel() for pair in grads for a in pair])


def finite_differences(f, theta):
    """Central differences of ``f`` at ``theta`` (restored afterwards)."""
    g = np.empty_like(theta)
    for j in range(theta.size):
        old = theta[j]
        theta[j] = old + EPS
        up = f(theta)
        theta[j] = old - EPS
        down = f(theta)
        theta[j] = old
        g[j] = (up - down) / (2 * EPS)
    f(theta)
    return g


def assert_matches_finite_differences(analytic, numeric, value):
    atol = FD_ATOL * max(1.0, abs(value))
    np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=atol)
    assert np.abs(analytic).max() > 1e-4  # not vacuously zero


def penalty(net, l2):
    return l2 / 2 * sum(float(np.sum(W.astype(np.float64) ** 2)) for W, _ in net.get_weights())


def key_of(seed, step):
    with np.errstate(over="ignore"):  # the hashes wrap around 2**64 on purpose
        return spec.step_key(seed, step)


def epoch_seed(net):
    """The sampling seed the net's next fit draws for its first epoch (FitRun.next_seed)."""
    return int(copy.deepcopy(net._rng).integers(0, 2**31 - 1))


def weighted_head(loss, Z, y, w):
    """Weighted mean loss and its gradient w.r.t. ``Z``, from naive's one-row heads."""
    rows = [naive.LOSSES[loss](Z[i:i + 1], y[i:i + 1]) for i in range(Z.shape[0])]
    value = sum(wi * l for wi, (l, _) in zip(w, rows)) / w.sum()
    G = np.vstack([wi * g for wi, (_, g) in zip(w, rows)]) / w.sum()
    return value, G


def dropout_masks(key, n_rows, widths, rates):
    """Inverted-dropout multipliers of each hidden layer, ``(n_rows, width)``, from
    ``spec.dropout_scale`` (rows numbered from 0: the rows of one batch)."""
    masks = []
    with np.errstate(over="ignore"):
        for layer, (width, rate) in enumerate(zip(widths, rates)):
            threshold = spec.dropout_threshold(rate)
            masks.append(np.array([[spec.dropout_scale(key, r, layer, u, threshold)
                                    for u in range(width)] for r in range(n_rows)]))
    return masks


def masked_loss_and_gradients(params, loss, X, y, w, masks, l2):
    """NumPy oracle: tanh net, hidden outputs times ``masks``, weighted head, L2 penalty.
    Returns ``(loss, [(dW, db), ...])``."""
    A, As, Zs = X, [X], []
    for i, (W, b) in enumerate(params):
        Z = A @ W + b
        Zs.append(Z)
        if i < len(params) - 1:
            A = np.tanh(Z) * masks[i]
            As.append(A)
    value, delta = weighted_head(loss, Zs[-1], y, w)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        W = params[i][0]
        grads[i] = (As[i].T @ delta + l2 * W, delta.sum(axis=0))
        if i > 0:
            delta = (delta @ W.T) * masks[i - 1] * (1.0 - np.tanh(Zs[i - 1]) ** 2)
    value += l2 / 2 * sum(np.sum(W**2) for W, _ in params)
    return value, grads


class CountRuns:
    """A callback counting the compiled runs of steps (``on_progress`` follows each)."""

    def __init__(self):
        self.runs = 0

    def on_progress(self, epoch, rows, total, seconds):
        self.runs += 1


def torch_loss(torch, loss, params, X, y, w, l2=0.0):
    """Weighted mean loss (+ L2 penalty) of a tanh net in torch; returns (value, tensors)."""
    F = torch.nn.functional
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
               for pair in params for a in pair]
    A = torch.as_tensor(X, dtype=torch.float64)
    n_layers = len(tensors) // 2
    for i in range(n_layers):
        A = A @ tensors[2 * i] + tensors[2 * i + 1]
        if i < n_layers - 1:
            A = torch.tanh(A)
    if loss == "cross_entropy":
        rows = F.cross_entropy(A, torch.as_tensor(y, dtype=torch.int64), reduction="none")
    else:
        Y = torch.as_tensor(y, dtype=torch.float64).reshape(A.shape)
        if loss == "mse":
            rows = F.mse_loss(A, Y, reduction="none").mean(dim=1)
        elif loss == "poisson":
            rows = F.poisson_nll_loss(A, Y, log_input=True, full=False,
                                      reduction="none").mean(dim=1)
        else:
            rows = F.binary_cross_entropy_with_logits(A, Y, reduction="none").mean(dim=1)
    wt = torch.as_tensor(w, dtype=torch.float64)
    value = (wt * rows).sum() / wt.sum()
    value = value + l2 / 2 * sum((W**2).sum() for W in tensors[0::2])
    return value, tensors


# ================================================================== sample_weight
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_weighted_loss_and_gradients_are_the_weighted_means_of_the_rows(head):
    loss, k = head
    X, y = data(loss, 9, 3, k)
    w = weights(9)
    net = make_net([3, 4, 4, k], loss)
    rows = [(net.loss(X[i:i + 1], y[i:i + 1]), flat(net.gradients(X[i:i + 1], y[i:i + 1])))
            for i in range(9)]
    want_loss = sum(wi * l for wi, (l, _) in zip(w, rows)) / w.sum()
    want_grad = sum(wi * g for wi, (_, g) in zip(w, rows)) / w.sum()
    assert net.loss(X, y, sample_weight=w) == pytest.approx(want_loss, rel=RTOL)
    assert_close(flat(net.gradients(X, y, sample_weight=w)), want_grad, RTOL)
    # The weights matter: the unweighted mean is another number.
    assert net.loss(X, y) != pytest.approx(want_loss, rel=1e-3)


@pytest.mark.parametrize("l2", [0.0, 0.03])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_weighted_and_l2_gradients_match_finite_differences(head, l2):
    loss, k = head
    X, y = data(loss, 6, 3, k)
    w = weights(6)
    w[2] = 0.0  # a row that does not count
    net = make_net([3, 4, 4, k], loss, l2=l2)

    def f(theta):
        net._backend.set_theta(theta)
        return net.loss(X, y, sample_weight=w)

    theta = net._backend.get_theta()
    value = f(theta)
    assert_matches_finite_differences(flat(net.gradients(X, y, sample_weight=w)),
                                      finite_differences(f, theta), value)


@pytest.mark.parametrize("l2", [0.0, 0.05])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_weighted_l2_loss_and_gradients_match_torch(head, l2):
    torch = pytest.importorskip("torch")
    loss, k = head
    X, y = data(loss, 7, 4, k)
    w = weights(7)
    net = make_net([4, 5, 3, k], loss, l2=l2)
    value, tensors = torch_loss(torch, loss, net.get_weights(), X, y, w, l2)
    value.backward()
    assert net.loss(X, y, sample_weight=w) == pytest.approx(value.item(), rel=1e-12)
    got = [g for pair in net.gradients(X, y, sample_weight=w) for g in pair]
    for g, p in zip(got, tensors):
        assert_close(g, p.grad.numpy(), 1e-9)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_integer_weights_fit_like_repeated_rows(head, momentum):
    """Full batch, in order, SGD: weight 3 is a row three times, weight 0 no row."""
    loss, k = head
    X, y = data(loss, 10, 3, k)
    w = np.array([1, 0, 3, 2, 1, 1, 0, 4, 2, 1])
    fit = dict(epochs=4, shuffle=False)
    weighted = make_net([3, 5, k], loss, l2=1e-3)
    weighted.fit(X, y, batch_size=10, sample_weight=w,
                 optimizer=fd.SGD(lr=0.2, momentum=momentum), **fit)
    repeated = make_net([3, 5, k], loss, l2=1e-3)
    repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w, axis=0), batch_size=int(w.sum()),
                 optimizer=fd.SGD(lr=0.2, momentum=momentum), **fit)
    for (W1, b1), (W2, b2) in zip(weighted.get_weights(), repeated.get_weights()):
        assert_close(W1, W2, RTOL)
        assert_close(b1, b2, RTOL)
    assert not same_weights(weighted.get_weights(), make_net([3, 5, k], loss).get_weights())


def net_outputs_equal(net, other, X, y, w):
    """net's loss, gradients and score without weights are other's with ``w``, bit for bit."""
    return (net.loss(X, y) == other.loss(X, y, sample_weight=w)
            and same_weights(net.gradients(X, y), other.gradients(X, y, sample_weight=w))
            and net.score(X, y) == other.score(X, y, sample_weight=w))


@pytest.mark.parametrize("shuffle", [True, "uniform"])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_unit_weights_are_bit_identical_to_no_weights(head, shuffle):
    loss, k = head
    X, y = data(loss, 23, 3, k)
    ones = np.ones(23)
    nets = [make_net([3, 6, 5, k], loss, l2=1e-3, dropout=0.2) for _ in range(2)]
    assert net_outputs_equal(nets[0], nets[1], X, y, ones)
    hists = []
    for net, w in zip(nets, (None, ones)):
        hists.append(net.fit(X, y, epochs=2, batch_size=5, shuffle=shuffle, optimizer=fd.Adam(lr=0.01),
                             sample_weight=w, validation_data=(X, y) if w is None else (X, y, w)))
    assert_same_weights(nets[0].get_weights(), nets[1].get_weights())
    assert hists[0].loss == hists[1].loss and hists[0].val_loss == hists[1].val_loss
    assert net_outputs_equal(nets[0], nets[1], X, y, ones)


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_validation_data_takes_weights(head):
    loss, k = head
    X, y = data(loss, 30, 3, k)
    Xv, yv = data(loss, 17, 3, k, seed=1)
    wv = weights(17)
    net = make_net([3, 6, k], loss, l2=1e-2)
    hist = net.fit(X, y, epochs=2, batch_size=8, validation_data=(Xv, yv, wv))
    assert hist.val_loss[-1] == net.loss(Xv, yv, sample_weight=wv)
    assert hist.val_metric[-1] == net.score(Xv, yv, sample_weight=wv)
    assert hist.val_loss[-1] != net.loss(Xv, yv)


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_weighted_score_is_scikit_learns(head):
    """Accuracy and R^2 as sklearn.metrics weighs them; multi-output binary nets score
    the mean accuracy over their outputs (sklearn's would be the exact-match ratio)."""
    metrics = pytest.importorskip("sklearn.metrics")
    loss, k = head
    X, y = data(loss, 40, 3, k)
    w = weights(40)
    net = make_net([3, 6, k], loss)
    pred = net.predict(X)
    if loss in ("mse", "poisson"):  # poisson: R^2 of the means exp(z)
        want = metrics.r2_score(y, pred, sample_weight=w)
    elif loss == "binary_cross_entropy" and k > 1:
        want = np.average(np.mean(pred == (y > 0.5), axis=1), weights=w)
    else:
        labels = y if loss == "cross_entropy" else (y > 0.5).astype(np.int64)
        want = metrics.accuracy_score(labels, pred, sample_weight=w)
    assert net.score(X, y, sample_weight=w) == pytest.approx(want, rel=1e-12)
    assert net.score(X, y, sample_weight=w) != pytest.approx(net.score(X, y), rel=1e-6)


def test_sample_weight_pulls_the_prediction_to_the_weighted_mean():
    """One input, conflicting targets 0 and 1 weighted 3:1: the mse optimum is 0.25."""
    X = np.ones((40, 1))
    y = np.r_[np.zeros(20), np.ones(20)]
    w = np.r_[np.full(20, 3.0), np.ones(20)]
    net = fd.MLP([1, 4, 1], activation="tanh", loss="mse", dtype="float64", seed=0)
    net.fit(X, y, epochs=300, batch_size=40, optimizer=fd.Adam(lr=0.02), sample_weight=w)
    assert net.predict(X[:1])[0] == pytest.approx(0.25, abs=0.01)
    net.fit(X, y, epochs=300, batch_size=40, optimizer=fd.Adam(lr=0.02))
    assert net.predict(X[:1])[0] == pytest.approx(0.5, abs=0.01)


SAMPLE_WEIGHT_ERRORS = [
    ("negative", lambda n: np.r_[-1.0, np.ones(n - 1)], ValueError, "sample_weight must be >= 0"),
    ("nan", lambda n: np.r_[np.nan, np.ones(n - 1)], ValueError, "sample_weight contains NaN"),
    ("inf", lambda n: np.r_[np.inf, np.ones(n - 1)], ValueError, "sample_weight contains NaN or infinity"),
    ("short", lambda n: np.ones(n - 1), ValueError, re.escape("sample_weight must have shape (12,)")),
    ("column", lambda n: np.ones((n, 1)), ValueError, re.escape("sample_weight must have shape (12,)")),
    ("zero sum", lambda n: np.zeros(n), ValueError, "sample_weight gives every row weight 0"),
    ("scalar zero", lambda n: 0.0, ValueError, "sample_weight gives every row weight 0"),
    ("text", lambda n: np.array(["a"] * n), TypeError, "sample_weight must hold real numbers"),
]


@pytest.mark.parametrize("where", ["fit", "validation_data", "loss", "gradients", "score"])
@pytest.mark.parametrize("make_w,error,message", [c[1:] for c in SAMPLE_WEIGHT_ERRORS],
                         ids=[c[0] for c in SAMPLE_WEIGHT_ERRORS])
def test_bad_sample_weight_is_refused(where, make_w, error, message):
    X, y = data("cross_entropy", 12, 3, 3)
    net = make_net([3, 4, 3])
    before = net.get_weights()
    w = make_w(12)
    with pytest.raises(error, match=message):
        if where == "fit":
            net.fit(X, y, epochs=1, sample_weight=w)
        elif where == "validation_data":
            net.fit(X, y, epochs=1, validation_data=(X, y, w))
        else:
            getattr(net, where)(X, y, sample_weight=w)
    assert_same_weights(net.get_weights(), before)  # nothing trained before the check


@pytest.mark.parametrize("dtype,value", [("float32", 1e39), ("float32", 1e-50),
                                         ("float64", 1e307)], ids=["f32-over", "f32-under", "f64-sum"])
def test_sample_weight_beyond_the_dtype_is_refused_or_harmless(dtype, value):
    """Constant weights are no weights: either a ValueError naming sample_weight, or the
    unweighted results (the check of y after its cast is the precedent)."""
    X, y = data("cross_entropy", 40, 3, 2)
    w = np.full(40, value)
    for call in (lambda net, w: net.loss(X, y, sample_weight=w),
                 lambda net, w: net.score(X, y, sample_weight=w),
                 lambda net, w: net.fit(X, y, epochs=1, batch_size=8, shuffle=False,
                                        sample_weight=w).loss[0]):
        try:
            with np.errstate(all="ignore"):
                got = call(fd.MLP([3, 4, 2], dtype=dtype, seed=0), w)
        except ValueError as exc:
            assert "sample_weight" in str(exc)
        else:
            want = call(fd.MLP([3, 4, 2], dtype=dtype, seed=0), None)
            assert got == pytest.approx(want, rel=1e-5)


# ================================================================== class_weight
def imbalanced(n0=380, n1=20, seed=0):
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0.0, 1.0, (n0, 2)), rng.normal(1.5, 1.0, (n1, 2))])
    return X, np.r_[np.zeros(n0, np.int64), np.ones(n1, np.int64)]


@pytest.mark.parametrize("loss,k", [("cross_entropy", 3), ("binary_cross_entropy", 1)])
def test_class_weight_is_a_sample_weight_per_label(loss, k):
    """'balanced' is scikit-learn's n / (k count); a dict weighs its labels (others 1)
    and multiplies sample_weight; binary labels are targets > 0.5."""
    X, y = data(loss, 30, 3, k)
    labels = (y > 0.5).astype(np.int64) if loss == "binary_cross_entropy" else y
    counts = np.bincount(labels)
    balanced = len(y) / (len(counts) * counts)
    sw = weights(30)
    cases = [("balanced", None, balanced[labels]),
             ({0: 0.5, 1: 2.0}, sw, np.where(labels == 0, 0.5, np.where(labels == 1, 2.0, 1.0)) * sw)]
    for class_weight, sample_weight, row_weights in cases:
        nets = [make_net([3, 5, k], loss) for _ in range(2)]
        fit = dict(epochs=2, batch_size=7)  # an optimizer each: instances keep their state
        nets[0].fit(X, y, class_weight=class_weight, sample_weight=sample_weight,
                    optimizer=fd.SGD(lr=0.1, momentum=0.9), **fit)
        nets[1].fit(X, y, sample_weight=row_weights, optimizer=fd.SGD(lr=0.1, momentum=0.9), **fit)
        for (W1, b1), (W2, b2) in zip(nets[0].get_weights(), nets[1].get_weights()):
            assert_close(W1, W2, 1e-12)
            assert_close(b1, b2, 1e-12)
        assert not same_weights(nets[0].get_weights(), make_net([3, 5, k], loss).get_weights())


def test_balanced_is_scikit_learns_formula():
    utils = pytest.importorskip("sklearn.utils.class_weight")
    X, y = imbalanced(50, 10)
    y[:5] = 2  # three classes present of four outputs
    table = utils.compute_class_weight("balanced", classes=np.unique(y), y=y)
    nets = [make_net([2, 4, 4]) for _ in range(2)]
    fit = dict(epochs=1, batch_size=60, shuffle=False)
    nets[0].fit(X, y, class_weight="balanced", optimizer=fd.SGD(lr=0.1), **fit)
    nets[1].fit(X, y, sample_weight=table[np.searchsorted(np.unique(y), y)],
                optimizer=fd.SGD(lr=0.1), **fit)
    for (W1, b1), (W2, b2) in zip(nets[0].get_weights(), nets[1].get_weights()):
        assert_close(W1, W2, 1e-12)
        assert_close(b1, b2, 1e-12)


def test_balanced_class_weight_raises_minority_recall():
    X, y = imbalanced()
    recall = {}
    for class_weight in (None, "balanced"):
        net = fd.MLP([2, 8, 2], activation="tanh", dtype="float64", seed=0)
        net.fit(X, y, epochs=30, batch_size=32, optimizer=fd.Adam(lr=0.02),
                class_weight=class_weight)
        recall[class_weight] = np.mean(net.predict(X)[y == 1] == 1)
    assert recall["balanced"] >= recall[None] + 0.3, recall
    assert recall["balanced"] >= 0.7, recall


CLASS_WEIGHT_ERRORS = [
    ("unknown label", "cross_entropy", 3, {3: 1.0}, ValueError, "class_weight has label 3; labels are 0..2"),
    ("negative label", "cross_entropy", 3, {-1: 1.0}, ValueError, "class_weight has label -1"),
    ("text label", "cross_entropy", 3, {"a": 1.0}, ValueError, "class_weight has label 'a'"),
    ("binary label 2", "binary_cross_entropy", 1, {2: 1.0}, ValueError, "labels are 0..1"),
    ("negative weight", "cross_entropy", 3, {1: -0.5}, ValueError,
     re.escape("class_weight[1] must be a number >= 0")),
    ("nan weight", "cross_entropy", 3, {1: np.nan}, ValueError, re.escape("class_weight[1] must be")),
    ("inf weight", "cross_entropy", 3, {1: np.inf}, ValueError, re.escape("class_weight[1] must be")),
    ("text weight", "cross_entropy", 3, {1: "2"}, ValueError, re.escape("class_weight[1] must be")),
    ("all zero", "cross_entropy", 3, {0: 0, 1: 0, 2: 0}, ValueError, "class_weight gives every row weight 0"),
    ("mse", "mse", 1, "balanced", ValueError, "class_weight needs a classification loss"),
    ("multi-output bce", "binary_cross_entropy", 3, "balanced", ValueError,
     "class_weight needs one label per row"),
    ("bad string", "cross_entropy", 3, "balance", ValueError,
     "class_weight must be 'balanced' or a dict; got 'balance'"),
    ("list", "cross_entropy", 3, [1.0, 2.0, 3.0], TypeError, "class_weight must be 'balanced' or a dict"),
]


@pytest.mark.parametrize("loss,k,class_weight,error,message", [c[1:] for c in CLASS_WEIGHT_ERRORS],
                         ids=[c[0] for c in CLASS_WEIGHT_ERRORS])
def test_bad_class_weight_is_refused(loss, k, class_weight, error, message):
    X, y = data(loss, 12, 3, k)
    net = make_net([3, 4, k], loss)
    before = net.get_weights()
    with pytest.raises(error, match=message):
        net.fit(X, y, epochs=1, class_weight=class_weight)
    assert_same_weights(net.get_weights(), before)


def test_class_weight_times_sample_weight_summing_to_zero_is_refused():
    X, y = data("cross_entropy", 12, 3, 2)
    net = make_net([3, 4, 2])
    with pytest.raises(ValueError, match="sum|weight 0"):
        net.fit(X, y, epochs=1, sample_weight=(y == 0).astype(float), class_weight={0: 0.0})


# ================================================================== l2
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_l2_adds_the_penalty_on_weights_to_loss_and_gradients(head):
    loss, k = head
    X, y = data(loss, 8, 3, k)
    l2 = 0.07
    net = make_net([3, 5, 4, k], loss, l2=l2)
    plain = make_net([3, 5, 4, k], loss)  # the same weights, biases not zero
    assert net.loss(X, y) == pytest.approx(plain.loss(X, y) + penalty(net, l2), rel=1e-14)
    w = weights(8)
    assert net.loss(X, y, sample_weight=w) == pytest.approx(
        plain.loss(X, y, sample_weight=w) + penalty(net, l2), rel=1e-14)
    for (dW, db), (dW0, db0), (W, _) in zip(net.gradients(X, y), plain.gradients(X, y),
                                            net.get_weights()):
        assert_close(dW, dW0 + l2 * W, 1e-14)
        np.testing.assert_array_equal(db, db0)  # biases are not penalised


def test_l2_is_in_the_history_and_the_validation_loss():
    X, y = data("cross_entropy", 20, 3, 3)
    Xv, yv = data("cross_entropy", 9, 3, 3, seed=1)
    net = make_net([3, 5, 3], l2=0.5)
    start = net.loss(X, y)
    hist = net.fit(X, y, epochs=1, batch_size=20, shuffle=False, optimizer=fd.SGD(lr=0.1),
                   validation_data=(Xv, yv))
    assert hist.loss[0] == pytest.approx(start, rel=1e-12)  # one full batch, before its step
    assert hist.val_loss[0] == net.loss(Xv, yv)
    plain = fd.MLP([3, 5, 3], activation="tanh", dtype="float64")
    plain.set_weights(net.get_weights())
    assert hist.val_loss[0] == pytest.approx(plain.loss(Xv, yv) + penalty(net, 0.5), rel=1e-14)


def test_l2_shrinks_the_weights():
    X, y = data("cross_entropy", 60, 4, 3)
    norms = []
    for l2 in (0.0, 1e-3, 1e-2, 1e-1):
        net = fd.MLP([4, 16, 3], activation="tanh", dtype="float64", seed=0, l2=l2)
        net.fit(X, y, epochs=40, batch_size=20, optimizer=fd.Adam(lr=0.02))
        norms.append(sum(float(np.sum(W**2)) for W, _ in net.get_weights()))
    assert all(a > b for a, b in zip(norms, norms[1:])), norms
    assert norms[-1] < 0.5 * norms[0], norms


L2_ERRORS = [
    ("negative", -0.1, ValueError, "l2 must be finite and >= 0; got -0.1"),
    ("nan", math.nan, ValueError, "l2 must be finite and >= 0; got nan"),
    ("inf", math.inf, ValueError, "l2 must be finite and >= 0; got inf"),
    ("bool", True, TypeError, "l2 must be a number, got bool"),
    ("numpy bool", np.bool_(False), TypeError, "l2 must be a number"),
    ("text", "0.1", TypeError, "l2 must be a number, got str"),
    ("list", [0.1], TypeError, "l2 must be a number, got list"),
]


@pytest.mark.parametrize("value,error,message", [c[1:] for c in L2_ERRORS], ids=[c[0] for c in L2_ERRORS])
def test_bad_l2_is_refused(value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fd.MLP([3, 4, 2], l2=value)


def test_l2_and_dropout_set_on_a_net_are_the_nets(device="cpu"):
    """Set after construction, ``l2`` and ``dropout`` reached copies, pickles and saved
    files (which read them) but not the net itself: its loss and its fits went on
    without them.  (tests/kernels/cuda runs this on CUDA.)"""
    X, y = data("cross_entropy", 40, 4, 3)
    made = fd.MLP([4, 6, 5, 3], activation="tanh", dtype="float64", seed=1, device=device,
                  l2=0.25, dropout=[0.5, 0.2])
    net = fd.MLP([4, 6, 5, 3], activation="tanh", dtype="float64", seed=1, device=device)
    net.l2, net.dropout = 0.25, [0.5, 0.2]
    assert net.l2 == 0.25 and net.dropout == [0.5, 0.2]
    assert net.loss(X, y) == made.loss(X, y) != fd.MLP(
        [4, 6, 5, 3], activation="tanh", dtype="float64", seed=1).loss(X, y)
    for n in (net, made):
        n.fit(X, y, epochs=2, batch_size=8, optimizer=fd.SGD(lr=0.1))
    assert_same_weights(net.get_weights(), made.get_weights())
    net.l2, net.dropout = 0.0, 0.0
    plain = fd.MLP([4, 6, 5, 3], activation="tanh", dtype="float64", device=device)
    plain.set_weights(net.get_weights())
    assert net.loss(X, y) == plain.loss(X, y) and net.dropout == [0.0, 0.0]
    with pytest.raises(ValueError, match="l2 must be finite"):
        net.l2 = -1.0
    with pytest.raises(ValueError, match="got 1 dropout rates for 2 hidden layers"):
        net.dropout = [0.1]
    assert net.l2 == 0.0 and net.dropout == [0.0, 0.0]  # unchanged by a refused value


def test_l2_cannot_change_in_a_fit():
    X, y = data("cross_entropy", 20, 4, 3)
    net = fd.MLP([4, 6, 3], seed=0)

    class Change:
        def on_epoch_end(self, epoch, logs):
            net.l2 = 0.5

    with pytest.raises(RuntimeError, match="l2 cannot change while the net is being trained"):
        net.fit(X, y, epochs=1, callbacks=[Change()])
    assert net.l2 == 0.0


def test_a_pickle_of_plain_l2_and_dropout_attributes_loads():
    """Pickles made when l2 and dropout were plain attributes."""
    net = fd.MLP([3, 4, 2], seed=0, l2=0.5, dropout=0.25)
    state = net.__getstate__()
    state["l2"], state["dropout"] = state.pop("_l2"), state.pop("_dropout")
    old = fd.MLP.__new__(fd.MLP)
    old.__setstate__(state)
    X = np.ones((2, 3))
    assert old.l2 == 0.5 and old.dropout == [0.25] and old.loss(X, [0, 1]) == net.loss(X, [0, 1])
    assert "l2" not in vars(old)


def test_a_zero_dimensional_dropout_array_is_one_rate():
    assert fd.MLP([3, 4, 4, 2], dropout=np.array(0.1)).dropout == [0.1, 0.1]


# ================================================================== dropout
DROPOUT_CASES = [0.5, [0.3, 0.6], [0.0, 0.4]]


@pytest.mark.parametrize("dropout", DROPOUT_CASES, ids=str)
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_fixed_mask_loss_and_gradient_match_the_numpy_oracle(head, dropout):
    loss, k = head
    sizes = [3, 5, 4, k]
    X, y = data(loss, 7, 3, k)
    w = weights(7)
    l2 = 0.02
    net = make_net(sizes, loss, l2=l2, dropout=dropout)
    key = key_of(1234, 5)
    masks = dropout_masks(key, 7, sizes[1:-1], net.dropout)
    assert any((m == 0).any() for m in masks)  # something is dropped
    want_loss, want_grads = masked_loss_and_gradients(net.get_weights(), loss, X, y, w, masks, l2)
    _, T = net._XT(X, y, w)
    value, grad = net._backend.gradient(X, T, dropout_key=key)
    assert value == pytest.approx(want_loss, rel=1e-12)
    assert_close(grad, flat(want_grads), RTOL)
    # Another key draws other masks; no key, no dropout.
    assert not np.allclose(net._backend.gradient(X, T, dropout_key=key_of(1234, 6))[1], grad)
    # net.loss scales the weights to mean 1 (harmless to the weighted mean, to rounding).
    assert net._backend.gradient(X, T)[0] == pytest.approx(net.loss(X, y, sample_weight=w),
                                                           rel=1e-14)


@pytest.mark.parametrize("dropout", DROPOUT_CASES, ids=str)
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_fixed_mask_gradient_matches_finite_differences(head, dropout):
    loss, k = head
    X, y = data(loss, 6, 3, k)
    net = make_net([3, 4, 4, k], loss, l2=0.01, dropout=dropout)
    _, T = net._XT(X, y, weights(6))
    key = key_of(99, 0)

    def f(theta):
        net._backend.set_theta(theta)
        return net._backend.gradient(X, T, dropout_key=key)[0]

    theta = net._backend.get_theta()
    value, grad = net._backend.gradient(X, T, dropout_key=key)
    assert_matches_finite_differences(grad, finite_differences(f, theta), value)


@pytest.mark.parametrize("shuffle", [False, "uniform"])
def test_fit_steps_use_the_masks_of_the_epoch_seed_and_step(shuffle):
    """SGD steps of a fit are ``theta - lr g`` with ``g`` of ``step_key(seed, step)``'s
    masks, the rows numbered within each batch (``uniform``: the rows of random_index)."""
    loss, k = "cross_entropy", 3
    X, y = data(loss, 12, 3, k)
    w = weights(12)
    net = make_net([3, 5, 4, k], loss, l2=0.01, dropout=[0.3, 0.5])
    seed = epoch_seed(net)
    start = net._backend.get_theta()
    theta = start.copy()
    with np.errstate(over="ignore"):
        draw_key = spec.mix64(np.uint64(seed))
        order = (np.arange(12) if shuffle is False
                 else np.array([spec.random_index(draw_key, i, 12) for i in range(12)]))
    for step in range(3):  # batches of 5, 5 and 2 rows
        rows = order[5 * step:5 * step + 5]
        X_b, T_b = net._XT(X[rows], y[rows], w[rows])
        net._backend.set_theta(theta)
        theta = theta - 0.1 * net._backend.gradient(X_b, T_b, dropout_key=key_of(seed, step))[1]
    net._backend.set_theta(start)
    net.fit(X, y, epochs=1, batch_size=5, shuffle=shuffle, optimizer=fd.SGD(lr=0.1),
            sample_weight=w)
    assert_close(net._backend.get_theta(), theta, 1e-12)


@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_forward_predict_and_losses_never_drop(head):
    loss, k = head
    X, y = data(loss, 25, 3, k)
    net = make_net([3, 8, 8, k], loss, dropout=[0.5, 0.3])
    net.fit(X, y, epochs=2, batch_size=5)
    plain = fd.MLP([3, 8, 8, k], activation="tanh", loss=loss, dtype="float64")
    plain.set_weights(net.get_weights())
    np.testing.assert_array_equal(net.forward(X), plain.forward(X))
    np.testing.assert_array_equal(net.predict(X), plain.predict(X))
    if loss in ("cross_entropy", "binary_cross_entropy"):
        np.testing.assert_array_equal(net.predict_proba(X), plain.predict_proba(X))
    assert net.loss(X, y) == plain.loss(X, y) and net.score(X, y) == plain.score(X, y)
    assert_same_weights(net.gradients(X, y), plain.gradients(X, y))


def dropout_fit(seed=7, dropout=(0.3, 0.2), init_seed=0, shuffle=True, n_threads=None,
                dtype="float64", n=160, batch_size=64):
    """Weights after a fit of a narrow dropout net (batches of 64, 64 and 32 rows)."""
    X, y = data("cross_entropy", n, 4, 3)
    net = fd.MLP([4, 12, 12, 3], activation="tanh", dtype=dtype, seed=seed,
                 dropout=list(dropout), n_threads=n_threads)
    net.set_weights(fd.MLP([4, 12, 12, 3], dtype=dtype, seed=init_seed).get_weights())
    net.fit(X, y, epochs=2, batch_size=batch_size, shuffle=shuffle, optimizer=fd.Adam(lr=0.01))
    return net.get_weights()


def test_dropout_follows_the_seed():
    assert_same_weights(dropout_fit(), dropout_fit())
    # From the same weights, in order: only the masks differ between seeds.
    in_order = [dropout_fit(seed=s, shuffle=False) for s in (7, 8)]
    assert not same_weights(*in_order)
    assert not same_weights(in_order[0], dropout_fit(seed=7, shuffle=False, dropout=(0, 0)))


def sharded_dropout_fit(shards, dtype, n_threads=None):
    """``dropout_fit`` with ``config.SHARDS = shards``; also the shards a 64-row batch uses."""
    old = config.SHARDS, config.MIN_SHARD_MACS
    config.SHARDS, config.MIN_SHARD_MACS = shards, 0
    try:
        return dropout_fit(dtype=dtype, n_threads=n_threads), n_shards([4, 12, 12, 3], 64)
    finally:
        config.SHARDS, config.MIN_SHARD_MACS = old


def test_dropout_masks_do_not_depend_on_shards():
    """Rows are numbered within the batch, not the shard: 2 shards give the 1-shard
    weights up to the order of the shards' gradient sums (~1 ulp)."""
    one, used = sharded_dropout_fit(1, "float64")
    two, used_two = sharded_dropout_fit(2, "float64")
    assert (used, used_two) == (1, 2)
    for (W1, b1), (W2, b2) in zip(one, two):
        assert_close(W1, W2, 1e-12)
        assert_close(b1, b2, 1e-12)


THREAD_CASES = [(shards, dtype) for shards in (1, 2) for dtype in ("float32", "float64")]


@pytest.mark.slow
def test_dropout_is_bit_identical_for_any_thread_count():
    threads = 3  # more than CI's two cores, never one (support.run_threaded)
    others = run_threaded([(sharded_dropout_fit, case + (threads,)) for case in THREAD_CASES],
                          threads)
    for case, (other, other_used) in zip(THREAD_CASES, others):
        mine, used = sharded_dropout_fit(*case, n_threads=1)
        assert used == other_used == case[0]
        assert_same_weights(mine, other)


@pytest.mark.parametrize("shuffle", [True, False, "uniform"])
def test_where_an_epoch_is_cut_changes_nothing(monkeypatch, shuffle):
    """One compiled run per step, or one per epoch: the same weights, bit for bit, with
    dropout, weights, l2, clipping, Adam's step count and a schedule on t."""
    X, y = data("cross_entropy", 30, 3, 3)
    w = weights(30)
    results = []
    for slice_seconds in (1e-9, 1e9):
        monkeypatch.setattr(config, "SLICE_SECONDS", slice_seconds)
        net = make_net([3, 6, 5, 3], l2=1e-3, dropout=[0.4, 0.2])
        runs = CountRuns()
        hist = net.fit(X, y, epochs=2, batch_size=4, shuffle=shuffle, sample_weight=w,
                       clip_norm=0.5, optimizer=fd.Adam(lr=0.01),
                       schedule=fd.InverseTimeDecay(0.1), callbacks=[runs])
        results.append((net.get_weights(), hist, runs.runs))
    (sliced, hist_sliced, runs_sliced), (whole, hist_whole, runs_whole) = results
    assert (runs_sliced, runs_whole) == (16, 2)  # 8 steps per epoch (the last of 2 rows)
    assert_same_weights(sliced, whole)
    # The losses too: each run continues the epoch's sum (train.epoch_sums).
    assert hist_sliced.loss == hist_whole.loss


@pytest.mark.parametrize("batch_size", [1, 5])
def test_an_epoch_loss_has_the_same_bits_however_the_epoch_is_cut(monkeypatch, batch_size):
    """Runs of 1, 2, 3 or 7 steps, or the whole epoch: the same History.loss, bit for bit.
    The cuts follow the measured step time, so a loss that depended on them would change
    from one run of the same fit to the next (online SGD included)."""
    from fastdnn import fitting
    X, y = data("mse", 301, 4, 2)
    results = []
    for steps in (None, 1, 2, 3, 7):
        if steps is not None:
            monkeypatch.setattr(fitting.FitRun, "_slice", lambda self, left, k=steps: min(left, k))
        net = make_net([4, 9, 2], loss="mse")
        runs = CountRuns()
        hist = net.fit(X, y, epochs=2, batch_size=batch_size, shuffle=True,
                       optimizer=fd.SGD(lr=0.01), callbacks=[runs])
        results.append((net.get_weights(), list(hist.loss), runs.runs))
    steps_per_epoch = -(-301 // batch_size)
    assert [r[2] for r in results] == [2 * -(-steps_per_epoch // k) for k in
                                       (steps_per_epoch, 1, 2, 3, 7)]
    for weights, loss, _ in results[1:]:
        assert_same_weights(weights, results[0][0])
        assert loss == results[0][1]


def test_dropout_net_still_learns_xor():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 2))
    y = ((X[:, 0] > 0) ^ (X[:, 1] > 0)).astype(np.int64)
    net = fd.MLP([2, 32, 32, 2], activation="relu", dtype="float64", seed=0, dropout=0.2)
    net.fit(X, y, epochs=60, batch_size=32, optimizer=fd.Adam(lr=0.01))
    assert net.score(X, y) >= 0.95


DROPOUT_ERRORS = [
    ("one", 1.0, ValueError, "dropout must be in [0, 1); got 1.0"),
    ("above one", 1.5, ValueError, "dropout must be in [0, 1); got 1.5"),
    ("negative", -0.1, ValueError, "dropout must be in [0, 1); got -0.1"),
    ("nan", math.nan, ValueError, "dropout must be in [0, 1); got nan"),
    ("one in list", [0.1, 1.0], ValueError, "dropout must be in [0, 1); got 1.0"),
    ("short list", [0.1], ValueError, "got 1 dropout rates for 2 hidden layers"),
    ("long list", [0.1, 0.2, 0.3], ValueError, "got 3 dropout rates for 2 hidden layers"),
    ("text", "0.5", TypeError, "dropout must be a number, got str"),
    ("text in list", [0.1, "0.5"], TypeError, "dropout must be a number, got str"),
    ("bool", True, TypeError, "dropout must be a number, got bool"),
    ("none", None, TypeError, "dropout must be a number, got NoneType"),
]


@pytest.mark.parametrize("value,error,message", [c[1:] for c in DROPOUT_ERRORS],
                         ids=[c[0] for c in DROPOUT_ERRORS])
def test_bad_dropout_is_refused(value, error, message):
    with pytest.raises(error, match=re.escape(message)):
        fd.MLP([3, 4, 4, 2], dropout=value)


# ================================================================== clip_norm
@pytest.mark.parametrize("factor", [0.3, 3.0], ids=["clipped", "not-clipped"])
@pytest.mark.parametrize("head", HEADS, ids=HEAD_IDS)
def test_clipped_step_is_the_scaled_gradient(head, factor):
    loss, k = head
    X, y = data(loss, 10, 3, k)
    w = weights(10)
    net = make_net([3, 5, k], loss, l2=0.5)
    g = flat(net.gradients(X, y, sample_weight=w))  # penalty included
    norm = np.linalg.norm(g)
    clip = factor * norm
    theta = net._backend.get_theta()
    lr = 0.1
    net.fit(X, y, epochs=1, batch_size=10, shuffle=False, optimizer=fd.SGD(lr=lr),
            sample_weight=w, clip_norm=clip)
    new = net._backend.get_theta()
    assert_close(new, theta - lr * g * min(1.0, clip / norm), 1e-12)
    assert np.linalg.norm(theta - new) / lr == pytest.approx(min(norm, clip), rel=1e-12)


def test_a_float32_gradient_whose_squares_overflow_float32_is_still_clipped():
    """|g| ~ 5e24: each square overflowed float32, the norm read inf and the step was 0."""
    net = fd.MLP([1, 1, 3], activation="identity", dtype="float32", seed=0)
    net.set_weights([(np.ones((1, 1)), np.zeros(1)), (np.array([[1.0, 1.0, -1.0]]), np.zeros(3))])
    theta = net._backend.get_theta().astype(np.float64)
    net.fit(np.array([[1e25]]), np.array([0]), epochs=1, batch_size=1, shuffle=False,
            optimizer=fd.SGD(lr=0.1), clip_norm=1.0)
    step = np.linalg.norm(net._backend.get_theta() - theta)
    assert step == pytest.approx(0.1, rel=1e-6)


def test_a_float64_gradient_whose_squares_overflow_float64_is_still_clipped():
    """|g| ~ 1e160: the float64 squares overflowed, the factor was bound / inf = 0 and the
    fit ran on without a step, silently."""
    net = fd.MLP([1, 1, 3], activation="identity", dtype="float64", seed=0)
    net.set_weights([(np.ones((1, 1)), np.zeros(1)), (np.array([[1.0, 1.0, -1.0]]), np.zeros(3))])
    theta = net._backend.get_theta()
    net.fit(np.array([[1e160]]), np.array([0]), epochs=1, batch_size=1, shuffle=False,
            optimizer=fd.SGD(lr=0.1), clip_norm=1.0)
    step = np.linalg.norm(net._backend.get_theta() - theta)
    assert step == pytest.approx(0.1, rel=1e-12)


@pytest.mark.parametrize("g, bound", [
    ([1.5e308, 1.5e308, 1.0], 1.0), ([1.5e308, 1.5e308, 1.0], 1e308),  # a norm past 1.8e308
    ([3e-170, 4e-170, 0.0], 1e-175),  # squares that underflow to 0
    ([3e-160, 4e-160, 1e-170], 1e-162)])  # squares among the subnormals
def test_clip_by_norm_of_a_norm_beyond_float64_or_of_underflowing_squares(g, bound):
    """A norm past 1.8e308 made the factor bound / inf = 0 (no step); squares that
    underflowed made the norm 0 and left the gradient unclipped (5e5 times the bound)."""
    from fastdnn.kernels.cpu.train import clip_by_norm

    g = np.array(g)
    big = np.abs(g).max()
    norm_scaled = np.linalg.norm(g / big)  # the norm is big * norm_scaled
    clipped = g.copy()
    factor = clip_by_norm(clipped, bound)
    assert factor == pytest.approx((bound / big) / norm_scaled, rel=1e-14)
    np.testing.assert_allclose(clipped / bound, (g / big) / norm_scaled, rtol=1e-14)
    zero = np.zeros(5)
    assert clip_by_norm(zero, 1e-300) == 1.0 and not zero.any()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("M", [1e4, 1e8, 1e16, 1e30])
def test_cross_entropy_keeps_log_2_of_two_tied_huge_logits(dtype, M):
    """Logits [M, M, -M], label 0: the loss is log 2 for any M (it read 0.0 from M = 1e16,
    the log rounded away against M before the label's logit was taken off)."""
    net = fd.MLP([1, 1, 3], activation="identity", dtype=dtype, seed=0)
    net.set_weights([(np.ones((1, 1)), np.zeros(1)), (np.array([[1.0, 1.0, -1.0]]), np.zeros(3))])
    X, y = np.array([[M]]), np.array([0])
    assert net.loss(X, y) == pytest.approx(math.log(2.0), rel=1e-15)
    # The training head: the step's loss is taken before its update.
    hist = net.fit(X, y, epochs=1, batch_size=1, shuffle=False, optimizer=fd.SGD(lr=1e-300))
    assert hist.loss[0] == pytest.approx(math.log(2.0), rel=1e-15)


def test_clip_norm_keeps_a_too_large_learning_rate_from_diverging():
    rng = np.random.default_rng(0)
    X = 3 * rng.normal(size=(200, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 1.0
    fit = dict(epochs=20, batch_size=20, shuffle=False)
    net = fd.MLP([4, 16, 1], activation="tanh", loss="mse", dtype="float64", seed=0)
    try:
        hist = net.fit(X, y, optimizer=fd.SGD(lr=0.5), **fit)
        assert hist.loss[-1] > 1e6 * hist.loss[0]  # diverging, if not yet to inf
    except fd.TrainingDivergedError:
        pass
    net = fd.MLP([4, 16, 1], activation="tanh", loss="mse", dtype="float64", seed=0)
    hist = net.fit(X, y, optimizer=fd.SGD(lr=0.5), clip_norm=1.0, **fit)
    assert all(math.isfinite(v) for v in hist.loss)
    assert hist.loss[-1] < 0.2 * hist.loss[0]


CLIP_ERRORS = [
    ("zero", 0.0, ValueError, "clip_norm must be finite and > 0; got 0.0"),
    ("int zero", 0, ValueError, "clip_norm must be finite and > 0; got 0"),
    # It said ">= 0" here, and 0 was then refused.
    ("negative", -1.0, ValueError, "clip_norm must be finite and > 0; got -1.0"),
    ("nan", math.nan, ValueError, "clip_norm must be finite and > 0; got nan"),
    ("inf", math.inf, ValueError, "clip_norm must be finite and > 0; got inf"),
    ("bool", True, TypeError, "clip_norm must be a number, got bool"),
    ("text", "1", TypeError, "clip_norm must be a number, got str"),
]


@pytest.mark.parametrize("value,error,message", [c[1:] for c in CLIP_ERRORS],
                         ids=[c[0] for c in CLIP_ERRORS])
def test_bad_clip_norm_is_refused(value, error, message):
    X, y = data("cross_entropy", 12, 3, 3)
    net = make_net([3, 4, 3])
    before = net.get_weights()
    with pytest.raises(error, match=re.escape(message)):
        net.fit(X, y, epochs=1, clip_norm=value)
    assert_same_weights(net.get_weights(), before)


@pytest.mark.parametrize("sizes,batch", [([64, 100, 10], 200), ([4, 12, 12, 3], 64)])
def test_sharded_batches_report_the_loss(monkeypatch, sizes, batch):
    """config.SHARDS = 2: the history's losses equal the unsharded ones (to the order of
    the shards' sums).  Every sharded fit reported a loss of 0 (the shards' losses,
    written through a namedtuple field inside the prange, were lost), so scikit-learn's
    tol stopped a digits fit after 12 epochs at 0.90 accuracy."""
    X, y = data("cross_entropy", 400, sizes[0], sizes[-1])
    losses = []
    for shards in (1, 2):
        monkeypatch.setattr(config, "SHARDS", shards)
        monkeypatch.setattr(config, "MIN_SHARD_MACS", 0)
        assert n_shards(sizes, batch) == shards
        net = fd.MLP(sizes, dtype="float64", seed=0)
        losses.append(net.fit(X, y, epochs=2, batch_size=batch, shuffle=False,
                              optimizer=fd.SGD(lr=0.1)).loss)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-12)


def _old_split_groups(labels):
    return [np.flatnonzero(labels == v) for v in np.unique(labels)]


@pytest.mark.parametrize("loss,k", [("cross_entropy", 2), ("cross_entropy", 7),
                                    ("cross_entropy", 500), ("binary_cross_entropy", 1)])
@pytest.mark.parametrize("seed", [0, 1])
def test_split_rows_unchanged(loss, k, seed):
    rng = np.random.default_rng(seed)
    n = 2000
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
        y[:k] = np.arange(k)
    else:
        y = rng.integers(0, 2, n).astype(float)
    net = fd.MLP([3, 4, max(k, 1)], loss=loss, seed=seed)
    T = y.astype(np.float32).reshape(-1, 1)
    keep, held = net._split(T, 0.2)
    # the reference: the per-label comparison, with the same generator state
    ref = fd.MLP([3, 4, max(k, 1)], loss=loss, seed=seed)
    labels = (T[:, 0] > 0.5) if loss == "binary_cross_entropy" else T[:, 0]
    groups = _old_split_groups(labels)
    sizes = np.array([g.size for g in groups])
    quota = 0.2 * sizes
    counts = np.floor(quota).astype(np.int64)
    extra = int(np.floor(0.2 * n + 0.5)) - counts.sum()
    counts[np.argsort(-(quota - counts), kind="stable")[:max(extra, 0)]] += 1
    want = np.sort(np.concatenate([ref._rng.permutation(g)[:min(c, g.size - 1)]
                                   for g, c in zip(groups, counts)]))
    np.testing.assert_array_equal(held, want)
    np.testing.assert_array_equal(keep, np.setdiff1d(np.arange(n), want))
    assert keep.dtype == np.intp


