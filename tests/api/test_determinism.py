"""Reproducibility: same seed and data give bit-identical weights; the thread count does
not change results; and the compiled training kernel keeps one signature per dtype
whatever the architecture, batch size, epochs or hyper-parameters."""

import numba
import numpy as np
import pytest

import fastdnn as fd
from fastdnn.kernels.cpu import train
from support import assert_same_weights, run_threaded, same_weights

DTYPES = ["float32", "float64"]


def problem(n=50, n_in=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, k, size=n)


def fitted_weights(dtype, shuffle, seed=7, init=None, n_threads=None, sizes=(6, 9, 9, 3),
                   optimizer=None, batch_size=8, n=50):
    X, y = problem(n=n)
    net = fd.MLP(list(sizes), activation="tanh", dtype=dtype, seed=seed, n_threads=n_threads)
    if init is not None:
        net.set_weights(init)
    net.fit(X, y, epochs=3, batch_size=batch_size, shuffle=shuffle,
            optimizer=optimizer or fd.SGD(lr=0.1, momentum=0.9))
    return net.get_weights()


@pytest.mark.parametrize("shuffle", [True, "uniform", False])
@pytest.mark.parametrize("dtype", DTYPES)
def test_same_seed_same_weights(dtype, shuffle):
    assert_same_weights(fitted_weights(dtype, shuffle), fitted_weights(dtype, shuffle))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampling_follows_the_seed(dtype):
    """From the same initial weights, the seed changes the result only through the
    sample order: identical without shuffling, different with it."""
    init = fd.MLP([6, 9, 9, 3], dtype=dtype, seed=0).get_weights()
    in_order = [fitted_weights(dtype, False, seed=s, init=init) for s in (1, 2)]
    assert_same_weights(*in_order)
    for shuffle in (True, "uniform"):
        runs = [fitted_weights(dtype, shuffle, seed=s, init=init) for s in (1, 2)]
        assert not same_weights(*runs)
        assert not same_weights(runs[0], in_order[0])


#: Pool size of the child process the thread tests compare against (see
#: support.run_threaded): more threads than CI's two cores, and never one, whatever
#: the machine this process runs on.
THREADS = 3
THREAD_CASES = [(dtype, shuffle) for dtype in DTYPES for shuffle in (True, "uniform")]


def threaded_run(dtype, shuffle, n_threads):
    """Weights after fit, logits and gradients of a net with 129- and 127-wide layers,
    every product through BLAS (the only place threads split the work), with
    ``n_threads`` threads; 200-row products are big enough for the parallel blocks."""
    from fastdnn import config

    old = config.SMALL_GEMM_MACS
    config.SMALL_GEMM_MACS = 0
    try:
        sizes = (6, 129, 127, 3)
        weights = fitted_weights(dtype, shuffle, n_threads=n_threads, sizes=sizes,
                                 optimizer=fd.Adam(lr=1e-2), batch_size=200, n=400)
        X, y = problem(n=200)
        net = fd.MLP(list(sizes), dtype=dtype, seed=3, n_threads=n_threads)
        return weights, net.forward(X), net.gradients(X, y)
    finally:
        config.SMALL_GEMM_MACS = old


@pytest.fixture(scope="module")
def threaded():
    """Every THREAD_CASES run once, in one child process with THREADS threads."""
    results = run_threaded([(threaded_run, case + (THREADS,)) for case in THREAD_CASES], THREADS)
    return dict(zip(THREAD_CASES, results))


@pytest.mark.parametrize("dtype,shuffle", THREAD_CASES)
def test_one_or_several_threads_same_weights(threaded, dtype, shuffle):
    weights, logits, grads = threaded_run(dtype, shuffle, 1)
    other_weights, other_logits, other_grads = threaded[(dtype, shuffle)]
    assert_same_weights(weights, other_weights)
    np.testing.assert_array_equal(logits, other_logits)
    assert_same_weights(grads, other_grads)


def _n_signatures():
    kernels = (train.train_steps, train.train_steps_paired, train.train_steps_online)
    return sum(len(kernel.signatures) for kernel in kernels)


def test_no_new_compiled_signatures_per_architecture_or_batch():
    X, y = problem(n=40)
    # Warm up both dtypes first: earlier tests in this process may or may not have.
    for dtype in DTYPES:
        for batch_size in (8, 1):  # train_steps and train_steps_online
            fd.MLP([6, 5, 3], dtype=dtype, seed=0).fit(X, y, epochs=1, batch_size=batch_size)
    before = _n_signatures()
    assert before >= 1

    variations = [
        dict(sizes=[6, 3], epochs=1, batch_size=40),  # no hidden layer, full batch
        dict(sizes=[6, 17, 3], epochs=2, batch_size=1),
        dict(sizes=[6, 33, 7, 7, 7, 3], epochs=3, batch_size=7),  # deeper, ragged last batch
        dict(sizes=[6, 5, 3], epochs=1, batch_size=1000),  # batch larger than the data
        dict(sizes=[6, 5, 4], loss="mse", activation="gelu", batch_size=5),
        dict(sizes=[6, 5, 1], loss="binary_cross_entropy", activation=["silu"], batch_size=3),
        dict(sizes=[6, 5, 5, 3], activation=["elu", "softplus"], optimizer=fd.AdamW(lr=1e-3),
             schedule=fd.CosineDecay(), shuffle="uniform"),
        dict(sizes=[6, 5, 3], optimizer=fd.SGD(lr=0.1, momentum=0.9, nesterov=True),
             schedule=fd.StepDecay(step_size=2), shuffle=False),
        dict(sizes=[6, 5, 3], X=np.asfortranarray(X), schedule=fd.InverseTimeDecay(0.1)),
        dict(sizes=[6, 5, 3], X=X.astype(np.float32), y=y.astype(np.float64)),
        dict(sizes=[6, 5, 3], validation_data=(X[:5], y[:5]), patience=1),
    ]
    rng = np.random.default_rng(0)
    for dtype in DTYPES:
        for v in variations:
            v = dict(v)
            loss = v.pop("loss", "cross_entropy")
            sizes = v.pop("sizes")
            net = fd.MLP(sizes, activation=v.pop("activation", "relu"), loss=loss, dtype=dtype, seed=1)
            Xv, yv = v.pop("X", X), v.pop("y", y)
            if loss == "mse":
                yv = rng.normal(size=(len(X), sizes[-1]))
            elif loss == "binary_cross_entropy":
                yv = rng.uniform(size=len(X))
            net.fit(Xv, yv, **{"epochs": 1, "batch_size": 8, **v})
            assert _n_signatures() == before, (dtype, sizes, v)


def test_no_new_compiled_signatures_for_evaluation():
    """forward / loss / gradients: one signature per dtype for any net and any n."""
    kernels = [train.forward_chunks, train.loss_of_logits, train.loss_and_gradient]
    X, y = problem(n=40)
    for dtype in DTYPES:
        net = fd.MLP([6, 5, 3], dtype=dtype, seed=0)
        net.forward(X), net.loss(X, y), net.gradients(X, y)
    before = [len(k.signatures) for k in kernels]
    for dtype in DTYPES:
        for sizes, n in [([6, 3], 1), ([6, 33, 7, 7, 3], 40), ([6, 17, 3], 7)]:
            net = fd.MLP(sizes, activation="silu", dtype=dtype, seed=0)
            net.forward(X[:n]), net.predict(X[:n]), net.loss(X[:n], y[:n]), net.gradients(X[:n], y[:n])
            net.forward(np.asfortranarray(X[:n]).astype(np.float32))
            assert [len(k.signatures) for k in kernels] == before, (dtype, sizes, n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_rows_outputs_do_not_depend_on_earlier_calls(dtype):
    # One row is evaluated with a layout of its own (more products in the loop kernels);
    # after a call of 100 rows it took that call's buffers and layout, and its logits
    # changed in the last bits (2.4e-7 in float32).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 64)).astype(dtype)
    y = rng.integers(0, 10, 100)
    net = fd.MLP([64, 64, 10], activation="relu", dtype=dtype, seed=0)
    row = X[:1]
    before = net.forward(row), net.loss(row, y[:1]), net.gradients(row, y[:1])
    net.forward(X), net.loss(X, y), net.gradients(X, y)
    after = net.forward(row), net.loss(row, y[:1]), net.gradients(row, y[:1])
    np.testing.assert_array_equal(before[0], after[0])
    assert before[1] == after[1]
    assert_same_weights(before[2], after[2])


@numba.njit
def _numba_seed(s):
    np.random.seed(s)


@numba.njit
def _numba_draws():
    return np.random.random(), np.random.standard_normal()


@pytest.mark.parametrize("how", ["fit", "fit_many"])
@pytest.mark.parametrize("batch_size", [8, 1])
def test_a_fit_leaves_numbas_generator_as_it_was(how, batch_size):
    """Numba's thread-local np.random is the one a user's own @njit code draws from: the
    shuffled epochs seeded it for their permutation (the user's seeded stream became
    the epoch's); permutations come from counter draws now."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 4)), np.arange(64) % 2
    _numba_seed(42)
    _numba_draws()
    expected = _numba_draws()
    _numba_seed(42)
    _numba_draws()
    if how == "fit":
        fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=2, batch_size=batch_size)
    else:
        fd.fit_many([fd.MLP([4, 8, 2], seed=s) for s in range(3)], X, y, epochs=2,
                    batch_size=batch_size)
    assert _numba_draws() == expected


def test_an_epochs_permutation_is_a_permutation_of_every_row():
    orders = []
    for seed in (0, 1):
        order = np.full(1000, -1, dtype=np.int64)
        train._shuffle(order, seed)
        assert sorted(order) == list(range(1000))
        orders.append(order)
    assert (orders[0] != orders[1]).mean() > 0.9
