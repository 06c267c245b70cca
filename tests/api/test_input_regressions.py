"""Inputs that earlier versions mishandled (issue 9's list): each is refused with a clear
error or accepted as a user would expect."""
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import config


def test_numpy_integer_n_threads_and_numpy_bool_shuffle_are_accepted():
    net = fd.MLP([2, 3], loss="mse", n_threads=np.int64(1))
    assert net.n_threads == 1 and type(net.n_threads) is int
    X, y = np.ones((4, 2)), np.ones((4, 3))
    a = fd.MLP([2, 3], loss="mse", seed=0)
    b = fd.MLP([2, 3], loss="mse", seed=0)
    a.fit(X, y, epochs=2, shuffle=np.bool_(True))
    b.fit(X, y, epochs=2, shuffle=True)
    np.testing.assert_array_equal(a.get_weights()[0][0], b.get_weights()[0][0])
    with pytest.raises(ValueError, match="n_threads"):
        fd.MLP([2, 3], n_threads=np.bool_(True))


def test_cosine_total_steps_must_be_a_whole_number():
    for bad in (0.5, 0, -3, 2.0, True):
        with pytest.raises(ValueError, match="total_steps"):
            fd.CosineDecay(total_steps=bad)
    assert fd.CosineDecay(total_steps=np.int32(7)).total_steps == 7


@pytest.mark.parametrize("sizes", [{4, 8, 3}, frozenset({4, 3}), {4: 1, 3: 1}, "483"])
def test_unordered_or_text_sizes_are_refused(sizes):
    with pytest.raises(TypeError, match="ordered list"):
        fd.MLP(sizes)


def test_a_net_too_large_for_memory_is_a_value_error():
    with pytest.raises(ValueError, match="parameters"):
        fd.MLP([2 ** 40, 2 ** 40])


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy"])
def test_targets_that_overflow_the_net_dtype_are_refused(loss):
    X = np.ones((4, 2))
    y = np.full((4, 3), 1e39) if loss == "mse" else np.ones((4, 3))
    net = fd.MLP([2, 3], loss=loss, dtype="float32")
    if loss == "mse":
        for call in (lambda: net.fit(X, y, epochs=1), lambda: net.loss(X, y),
                     lambda: net.score(X, y), lambda: net.gradients(X, y)):
            with pytest.raises(ValueError, match="overflows float32"):
                call()
        assert np.isfinite(fd.MLP([2, 3], loss=loss, dtype="float64").loss(X, y))
    else:
        assert np.isfinite(net.loss(X, y))


@pytest.mark.filterwarnings("error")
def test_features_that_overflow_the_net_dtype_are_one_error_not_a_warning_too():
    net = fd.MLP([2, 3, 2], dtype="float32")
    with pytest.raises(ValueError, match="after conversion to float32"):
        net.predict(np.array([[1e300, 1.0]]))


def test_read_only_inputs_reuse_the_kernels_signatures():
    """A read-only X (a memory map opened 'r', np.frombuffer) is another type to Numba:
    every kernel it reached compiled a second signature (2.7 s for predict, 49 s for
    fit_many).  check_X now copies it."""
    from fastdnn.kernels.cpu import train
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, size=40)
    net = fd.MLP([3, 5, 2], dtype="float64", seed=0)
    net.fit(X, y, epochs=1, batch_size=8)
    expected = net.predict_proba(X)
    kernels = (train.forward_chunks, train.train_steps)
    before = [len(k.signatures) for k in kernels]
    frozen = X.copy()
    frozen.flags.writeable = False
    np.testing.assert_array_equal(net.predict_proba(frozen), expected)
    net.fit(frozen, y, epochs=1, batch_size=8)
    assert [len(k.signatures) for k in kernels] == before


def test_an_assigned_optimizer_state_keeps_its_moments_in_the_kernels_layout():
    opt = fd.Adam()
    net = fd.MLP([3, 5, 2], dtype="float64", seed=0)
    X, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    net.fit(X, y, epochs=1, batch_size=4, optimizer=opt)
    moments, t = opt.state.copy(), opt.t
    opt.state = np.asfortranarray(moments)
    opt.state.flags.writeable = False  # failed in Numba's typing; Fortran order recompiled
    state = opt.bind(net.n_params, np.dtype(np.float64))
    assert state.flags.c_contiguous and state.flags.writeable and opt.t == t
    np.testing.assert_array_equal(state, moments)
    net.fit(X, y, epochs=1, batch_size=4, optimizer=opt)


def test_a_one_dimensional_X_is_told_the_reshape_that_fits():
    """A single sample of a 3-input net was told ``X.reshape(-1, 1)``, which then failed
    with "X has 1 features but the net expects 3"."""
    net = fd.MLP([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match=r"reshape\(1, -1\) for a single sample, as the net "
                                         r"expects 3 features"):
        net.predict(np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\) for a single feature"):
        fd.MLP([1, 4, 2], seed=0).predict(np.array([0.1, 0.2, 0.3]))
    assert net.predict(np.array([0.1, 0.2, 0.3]).reshape(1, -1)).shape == (1,)


def test_sparse_matrices_and_iterators_are_named():
    """Both said "X must hold real numbers; got an array of dtype object"."""
    sparse = pytest.importorskip("scipy.sparse")
    X = np.eye(4)
    net = fd.MLP([4, 3, 2], seed=0)
    for make in (sparse.csr_matrix, sparse.csc_matrix, sparse.coo_matrix):
        with pytest.raises(TypeError, match="sparse matrix .* X.toarray()"):
            net.predict(make(X))
    with pytest.raises(TypeError, match="not an iterator"):
        net.fit((row for row in X), [0, 1, 0, 1], epochs=1)
    with pytest.raises(TypeError, match="y must be an array, not an iterator"):
        net.fit(X, iter([0, 1, 0, 1]), epochs=1)


@pytest.mark.parametrize("form", ["float64", "fortran", "strided", "read-only", "int"])
def test_inference_converts_x_a_chunk_at_a_time(form, tmp_path):
    """predict, forward, score and loss converted the whole X first (a float64 or
    Fortran-ordered X, a view, a read-only memory map): one X-sized copy at the peak,
    and a MemoryError for a map bigger than the memory left.  The same bits, within
    a few chunks' bytes."""
    import tracemalloc
    from fastdnn import config
    n, d = 10 * config.PREDICT_CHUNK + 17, 40
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, 2 * d)) * 3
    X = {"float64": lambda: np.ascontiguousarray(base[:, :d]),
         "fortran": lambda: np.asfortranarray(base[:, :d], dtype=np.float32),
         "strided": lambda: base[:, ::2],
         "int": lambda: np.ascontiguousarray(base[:, :d]).astype(np.int64),
         "read-only": lambda: _read_only_map(tmp_path, base[:, :d].astype(np.float32))}[form]()
    y = rng.integers(0, 3, n)
    net = fd.MLP([d, 16, 3], dtype="float32", seed=0)
    reference = np.ascontiguousarray(X, dtype=np.float32)
    expected = (net.forward(reference), net.predict(reference), net.score(reference, y),
                net.loss(reference, y))
    del reference
    tracemalloc.start()
    try:
        got = (net.forward(X), net.predict(X), net.score(X, y), net.loss(X, y))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2:] == expected[2:]
    # The outputs, targets and labels ~0.25, a chunk 0.1; a whole copy added 1.0.
    assert peak < 0.6 * n * d * 4, peak / (n * d * 4)


def _read_only_map(folder, X):
    np.save(folder / "X.npy", X)
    return np.load(folder / "X.npy", mmap_mode="r")


@pytest.mark.parametrize("form", ["fortran", "float64"])
@pytest.mark.parametrize("who", ["MLP", "estimator"])
def test_a_held_out_split_gathers_its_parts_from_x_as_given(form, who):
    """validation_split (and the estimators' early_stopping) converted all of X first
    and then gathered the parts from that copy: 2x the converted size at the peak for a
    Fortran-ordered (DataFrame.to_numpy()) or float64 X; now ~1x, the same bits."""
    import tracemalloc
    import warnings
    n, d = 80_000, 40  # a gathered block of 4,096 float64 rows: 0.1x
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, d)).astype(np.float32)
    X = np.asfortranarray(base) if form == "fortran" else base.astype(np.float64)
    y = (base[:, 0] > 0).astype(np.int64)

    def fit(X, y=y):
        if who == "MLP":
            net = fd.MLP([d, 4, 2], dtype="float32", seed=0)
            net.fit(X, y, epochs=1, batch_size=512, validation_split=0.1)
            return net.get_weights()
        from fastdnn.sklearn import MLPClassifier
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = MLPClassifier(hidden_layer_sizes=(4,), max_iter=1, batch_size=512,
                                early_stopping=True, random_state=0, dtype="float32")
            est.fit(X, y)
        return est.net_.get_weights()

    expected = fit(base)
    fit(X[:300], y[:300])  # the estimator's imports
    tracemalloc.start()
    try:
        got = fit(X)
        peak = tracemalloc.get_traced_memory()[1] / base.nbytes
    finally:
        tracemalloc.stop()
    for (W, b), (W0, b0) in zip(got, expected):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert peak < 1.5, peak  # 2.1 before


@pytest.mark.parametrize("columns", ["float32+int64", "nullable Float32"])
def test_a_frame_of_mixed_or_nullable_columns_is_cast_column_by_column(columns):
    """A float32 frame with an int64 column went through float64 (the columns' common
    type) and Fortran order: 3x the float32 bytes at the peak of a float32 net's fit
    (nullable Float32 columns: 2x); each column is now cast straight into place."""
    import tracemalloc
    pd = pytest.importorskip("pandas")
    n, d = 50_000, 40
    rng = np.random.default_rng(0)
    base = rng.standard_normal((n, d)).astype(np.float32)
    base[:, -1] = rng.integers(0, 5, n)
    frame = pd.DataFrame(base)
    if columns == "float32+int64":
        frame[d - 1] = frame[d - 1].astype(np.int64)
    else:
        frame = frame.astype("Float32")
    y = (base[:, 0] > 0).astype(np.int64)
    net = fd.MLP([d, 4, 2], dtype="float32", seed=0)
    net.fit(frame.iloc[:100], y[:100], epochs=1)
    expected = net.forward(base)
    tracemalloc.start()
    try:
        got = net.forward(frame)
        net.fit(frame, y, epochs=1, batch_size=1024)
        peak = tracemalloc.get_traced_memory()[1] / base.nbytes
    finally:
        tracemalloc.stop()
    assert peak < 1.5, peak
    np.testing.assert_array_equal(got, expected)  # the same bits as the array's


def test_a_float32_nets_r2_is_of_the_targets_as_given():
    """score's R^2 was taken against y rounded to the net's float32: 1e4 plus a spread of
    1e-3 scored 0.128 where scikit-learn's r2_score of the same predictions gave 0.135."""
    from sklearn.metrics import r2_score
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 1))
    y = 1e4 + 5e-4 * X[:, 0] + 1e-3 * rng.normal(size=2000)
    net = fd.MLP([1, 1], loss="mse", dtype="float32", seed=0)
    net.set_weights([(np.array([[5e-4]]), np.array([1e4]))])
    w = rng.uniform(0.5, 2.0, 2000)
    # (To the sums' rounding: the old score was 5% off here.)
    assert net.score(X, y) == pytest.approx(r2_score(y, net.predict(X)), rel=1e-6)
    assert net.score(X, y, sample_weight=w) == pytest.approx(
        r2_score(y, net.predict(X), sample_weight=w), rel=1e-6)


def test_a_wide_mixed_frame_is_converted_in_runs_of_columns_not_one_by_one(monkeypatch):
    """predict on a 1-row frame of int64 + float64 columns converted each column by
    itself (~70 us each: 43 ms for 500 columns, against 0.03 ms for to_numpy()); runs of
    one dtype now convert together, the same values."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    d = 1000
    frame = pd.DataFrame(rng.normal(size=(3, d)))
    frame[0] = np.array([1, 2, 3], dtype=np.int64)
    net = fd.MLP([d, 4, 2], seed=0)
    expected = net.forward(frame.to_numpy())
    calls = []
    for cls in (pd.Series, pd.DataFrame):
        original = cls.to_numpy
        def counted(self, *args, _original=original, **kwargs):
            calls.append(type(self).__name__)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(cls, "to_numpy", counted)
    got = net.forward(frame.iloc[:3])
    np.testing.assert_array_equal(got, expected)
    assert len(calls) <= 4, len(calls)  # 1,000 before


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2", "int4"])
def test_ml_dtypes_arrays_are_read_as_their_values(name):
    """A JAX bfloat16 array was refused as 'X must hold real numbers; got an array of
    dtype bfloat16' (float8_e5m2, of kind 'f', was taken)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    t = getattr(ml_dtypes, name)
    rng = np.random.default_rng(0)
    X = rng.integers(-3, 4, size=(20, 3)).astype(t)
    y = np.arange(20) % 2
    net = fd.MLP([3, 4, 2], seed=0)
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(net.forward(X), net.forward(X32))
    assert net.loss(X, y.astype(t)) == net.loss(X32, y)
    net.fit(X, y, epochs=1)


def test_a_structured_array_is_still_refused():
    X = np.zeros(3, dtype=[("a", "f8"), ("b", "f8"), ("c", "f8")])
    with pytest.raises(TypeError, match="real numbers"):
        fd.MLP([3, 4, 2], seed=0).predict(X)


def _held_bytes(net):
    return sum(a.nbytes for v in net._backend._infer.values() for a in v[1:])


@pytest.mark.parametrize("call", ["predict", "predict_proba", "score", "loss", "fit_validation"])
def test_big_evaluation_buffers_are_not_kept(monkeypatch, call):
    monkeypatch.setattr(config, "KEEP_EVAL_BYTES", 1 << 20, raising=False)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 16)).astype(np.float32)
    y = rng.integers(0, 2000, 5000)
    net = fd.MLP([16, 64, 2000], seed=0)
    if call == "fit_validation":
        net.fit(X[:64], y[:64], epochs=1, validation_data=(X, y))
    elif call in ("score", "loss"):
        getattr(net, call)(X, y)
    else:
        getattr(net, call)(X)
    assert _held_bytes(net) <= (1 << 20)


def test_small_buffers_are_kept_and_results_unchanged(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5000, 16)).astype(np.float32)
    y = rng.integers(0, 30, 5000)
    net = fd.MLP([16, 64, 30], seed=0)
    first = (net.forward(X), net.predict_proba(X), net.loss(X, y), net.score(X, y))
    assert 0 < _held_bytes(net) <= getattr(config, "KEEP_EVAL_BYTES", np.inf)
    held = [id(a) for v in net._backend._infer.values() for a in v[1:]]
    again = (net.forward(X), net.predict_proba(X), net.loss(X, y), net.score(X, y))
    assert held == [id(a) for v in net._backend._infer.values() for a in v[1:]]  # reused
    monkeypatch.setattr(config, "KEEP_EVAL_BYTES", 0, raising=False)
    other = fd.MLP([16, 64, 30], seed=0)
    fresh = (other.forward(X), other.predict_proba(X), other.loss(X, y), other.score(X, y))
    for a, b, c in zip(first, again, fresh):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_evaluation_allocates_one_delta_block():
    net = fd.MLP([4, 8, 3], seed=0)
    net.predict(np.zeros((10, 4), np.float32))
    layout, work, deltas = net._backend._infer[False]
    assert deltas.shape[0] == 1
