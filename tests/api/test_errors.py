"""Bad input is rejected with a ValueError / TypeError that names the problem; input that
is merely in an unusual form (ints, Fortran order, strided views, lists) is converted;
a diverging fit raises TrainingDivergedError and keeps finite weights; save/load is
atomic, bit-exact and rejects files fastdnn did not write."""

import os
import warnings

import numpy as np
import pytest

import fastdnn as fd
from support import assert_same_weights

N_IN, K = 4, 3


def tiny_net(loss="cross_entropy", k=K, dtype="float64", **kwargs):
    return fd.MLP([N_IN, 5, k], activation="tanh", loss=loss, dtype=dtype, seed=0, **kwargs)


def data(loss="cross_entropy", n=6, k=K, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN))
    if loss == "cross_entropy":
        y = np.arange(n) % k
    elif loss == "mse":
        y = rng.normal(size=(n, k))
    elif loss == "poisson":
        y = rng.poisson(2.0, size=(n, k)).astype(np.float64)
    else:
        y = rng.uniform(size=(n, k))
    return X, y


# ------------------------------------------------------------------ construction

@pytest.mark.parametrize("sizes, exc, match", [
    ([4], ValueError, "sizes|width"),
    ([], ValueError, "sizes|width"),
    ([4, 0, 3], ValueError, "width"),
    ([4, 5, -3], ValueError, "width"),
    ([0, 5, 3], ValueError, "width"),
    ([4, 2.5, 3], TypeError, "integer"),
    ([4, "5", 3], TypeError, "integer"),
    (7, TypeError, "sizes"),
])
def test_bad_sizes(sizes, exc, match):
    with pytest.raises(exc, match=match):
        fd.MLP(sizes)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(activation="swish2"), ValueError, "activation"),
    (dict(activation=["tanh", "nope"]), ValueError, "activation"),
    (dict(activation=["tanh"]), ValueError, "activations"),  # 2 hidden layers
    (dict(activation=3), TypeError, "activation"),
    (dict(loss="hinge"), ValueError, "loss"),
    (dict(loss=None), TypeError, "loss"),
    # validation.check_dtype: any dtype other than float32/float64, and any name NumPy
    # cannot read, is a ValueError.
    (dict(dtype="int32"), ValueError, "dtype"),
    (dict(dtype="float16"), ValueError, "dtype"),
    # np.dtype("float128x") raises TypeError; None would pass a membership test, since
    # np.dtype("float64") == None is True in NumPy.
    (dict(dtype="float128x"), ValueError, "dtype"),
    (dict(dtype="nonsense"), ValueError, "dtype"),
    (dict(dtype=None), ValueError, "dtype"),
    (dict(dtype=object), ValueError, "dtype"),
    (dict(device="tpu"), ValueError, "device"),
    (dict(n_threads=0), ValueError, "n_threads"),
])
def test_bad_constructor_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fd.MLP([N_IN, 5, 5, K], **kwargs)


def test_cross_entropy_needs_two_outputs():
    with pytest.raises(ValueError, match="outputs"):
        fd.MLP([N_IN, 5, 1], loss="cross_entropy")


# ------------------------------------------------------------------ data

def _call(net, method, X, y):
    if method == "fit":
        return net.fit(X, y, epochs=1, batch_size=2, optimizer=fd.SGD(lr=0.1))
    if method == "validation":
        Xok, yok = data(net.loss_name, k=net.sizes[-1])
        return net.fit(Xok, yok, epochs=1, batch_size=2, validation_data=(X, y))
    return getattr(net, method)(X, y)


TARGET_METHODS = ["fit", "loss", "gradients", "score", "validation"]


@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X(bad, method):
    net = tiny_net()
    X, y = data()
    X[2, 1] = bad
    before = net.get_weights()
    with pytest.raises(ValueError, match="X.*(NaN|nan|finite|inf)"):
        _call(net, method, X, y)
    assert_same_weights(net.get_weights(), before)


@pytest.mark.parametrize("method", ["forward", "predict"])
def test_non_finite_X_at_inference(method):
    X, _ = data()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X.*(NaN|nan|finite|inf)"):
        getattr(tiny_net(), method)(X)


@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "binary_cross_entropy", "poisson"])
def test_non_finite_y(loss, method):
    net = tiny_net(loss)
    X, y = data(loss)
    y = y.astype(np.float64)
    y.flat[3] = np.nan
    with pytest.raises(ValueError, match="y.*(NaN|nan|finite|inf)"):
        _call(net, method, X, y)


@pytest.mark.parametrize("method", TARGET_METHODS)
def test_rows_of_X_and_y_differ(method):
    X, y = data()
    with pytest.raises(ValueError, match="samples|rows"):
        _call(tiny_net(), method, X, y[:-1])


@pytest.mark.parametrize("method", TARGET_METHODS)
def test_features_of_X_differ_from_net_input(method):
    X, y = data()
    with pytest.raises(ValueError, match="features"):
        _call(tiny_net(), method, X[:, :-1], y)


@pytest.mark.parametrize("method", ["forward", "predict", "predict_proba"])
def test_X_must_be_2d_with_the_right_features(method):
    net = tiny_net()
    with pytest.raises(ValueError, match="2-D"):
        getattr(net, method)(np.zeros(N_IN))
    with pytest.raises(ValueError, match="features"):
        getattr(net, method)(np.zeros((3, N_IN + 1)))


@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("label", [K, -1, 100])
def test_labels_out_of_range(label, method):
    X, y = data()
    y[1] = label
    with pytest.raises(ValueError, match="range"):
        _call(tiny_net(), method, X, y)


@pytest.mark.parametrize("method", TARGET_METHODS)
def test_non_integer_labels(method):
    X, y = data()
    y = y.astype(np.float64)
    y[0] = 0.5
    with pytest.raises(ValueError, match="integer"):
        _call(tiny_net(), method, X, y)


def test_cross_entropy_labels_must_be_1d():
    X, _ = data()
    with pytest.raises(ValueError, match="shape|labels"):
        tiny_net().loss(X, np.zeros((len(X), K)))


@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("bad", [1.5, -0.1])
def test_bce_targets_outside_unit_interval(bad, method):
    X, y = data("binary_cross_entropy")
    y[2, 0] = bad
    with pytest.raises(ValueError, match=r"\[0, ?1\]"):
        _call(tiny_net("binary_cross_entropy"), method, X, y)


@pytest.mark.parametrize("method", TARGET_METHODS)
@pytest.mark.parametrize("bad", [-1.0, -1e-300])
def test_poisson_targets_must_not_be_negative(bad, method):
    X, y = data("poisson")
    y[2, 0] = bad
    with pytest.raises(ValueError, match="poisson targets must be >= 0"):
        _call(tiny_net("poisson"), method, X, y)


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "poisson"])
def test_target_shape_must_match_outputs(loss):
    X, y = data(loss)
    with pytest.raises(ValueError, match="shape"):
        tiny_net(loss).loss(X, y[:, :2])
    with pytest.raises(ValueError, match="shape"):
        tiny_net(loss).loss(X, y[:, 0])  # 1-D targets are only for one output


@pytest.mark.parametrize("method", TARGET_METHODS)
def test_empty_data(method):
    X = np.zeros((0, N_IN))
    y = np.zeros(0, dtype=np.int64)
    with pytest.raises(ValueError, match="empty|0 samples"):
        _call(tiny_net(), method, X, y)


def test_non_numeric_input():
    with pytest.raises(TypeError, match="X"):
        tiny_net().forward(np.array([["a", "b", "c", "d"]]))
    X, _ = data()
    with pytest.raises(TypeError, match="y"):
        tiny_net().loss(X, np.array(["a"] * len(X)))


@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_predict_proba_needs_a_classifier(loss):
    X, y = data(loss)
    with pytest.raises(ValueError, match=f"classif.*'{loss}'"):
        tiny_net(loss).predict_proba(X)
    with pytest.raises(ValueError, match=f"class_weight needs a classification loss.*'{loss}'"):
        tiny_net(loss).fit(X, y, epochs=1, class_weight="balanced")


# ------------------------------------------------------------------ conversion, not rejection

def _strided(X):
    big = np.zeros((2 * X.shape[0], 3 * X.shape[1]))
    big[::2, ::3] = X
    view = big[::2, ::3]
    assert not view.flags.c_contiguous
    return view


CONVERSIONS = {
    "int": lambda X: X.astype(np.int32),  # X holds whole numbers in this case
    "fortran": np.asfortranarray,
    "strided": _strided,
    "list": lambda X: X.tolist(),
    "float32": lambda X: X.astype(np.float32),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", list(CONVERSIONS))
def test_unusual_X_is_converted(form, dtype):
    X, y = data(n=7)
    if form == "int":
        X = np.rint(4 * X)  # the reference holds the same (integral) values as floats
    if form == "float32":
        X = X.astype(np.float32).astype(np.float64)
    unusual = CONVERSIONS[form](X)
    reference = np.ascontiguousarray(X, dtype=dtype)

    a, b = tiny_net(dtype=dtype), tiny_net(dtype=dtype)
    np.testing.assert_array_equal(a.forward(unusual), b.forward(reference))
    np.testing.assert_array_equal(a.predict(unusual), b.predict(reference))
    assert a.loss(unusual, y) == b.loss(reference, y)
    assert_same_weights(a.gradients(unusual, y), b.gradients(reference, y))
    a.fit(unusual, y, epochs=2, batch_size=3, optimizer=fd.SGD(lr=0.1), shuffle=True)
    b.fit(reference, y, epochs=2, batch_size=3, optimizer=fd.SGD(lr=0.1), shuffle=True)
    assert_same_weights(a.get_weights(), b.get_weights())


def test_unusual_y_is_converted():
    X, y = data()
    net = tiny_net()
    want = net.loss(X, y)
    assert net.loss(X, y.astype(np.float64)) == want  # integral floats are labels
    assert net.loss(X, y.tolist()) == want
    assert net.loss(X, y.reshape(-1, 1)) == want
    Xm, ym = data("mse")
    net = tiny_net("mse")
    assert net.loss(Xm, np.asfortranarray(ym)) == net.loss(Xm, ym)
    assert net.loss(Xm, ym[:, ::-1][:, ::-1]) == net.loss(Xm, ym)


# ------------------------------------------------------------------ hyper-parameters

@pytest.mark.parametrize("make, exc, match", [
    (lambda: fd.SGD(lr=0), ValueError, "lr"),
    (lambda: fd.SGD(lr=-0.1), ValueError, "lr"),
    (lambda: fd.SGD(lr=float("nan")), ValueError, "lr"),
    (lambda: fd.SGD(lr=float("inf")), ValueError, "lr"),
    (lambda: fd.SGD(lr="0.1"), TypeError, "lr"),
    (lambda: fd.Adam(lr=0), ValueError, "lr"),
    (lambda: fd.AdamW(lr=-1), ValueError, "lr"),
    (lambda: fd.SGD(lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda: fd.SGD(lr=0.1, momentum=1.5), ValueError, "momentum"),
    (lambda: fd.SGD(lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: fd.SGD(lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda: fd.Adam(betas=(0.9, 1.0)), ValueError, "beta"),
    (lambda: fd.Adam(betas=(-0.1, 0.999)), ValueError, "beta"),
    (lambda: fd.Adam(betas=0.9), TypeError, "betas"),
    (lambda: fd.Adam(eps=-1e-8), ValueError, "eps"),
    (lambda: fd.AdamW(weight_decay=-0.01), ValueError, "weight_decay"),
    (lambda: fd.InverseTimeDecay(decay=-1), ValueError, "decay"),
    (lambda: fd.StepDecay(step_size=0), ValueError, "step_size"),
    (lambda: fd.StepDecay(step_size=2, gamma=0), ValueError, "gamma"),
    (lambda: fd.ExponentialDecay(rate=0), ValueError, "rate"),
    (lambda: fd.ExponentialDecay(rate=0.5, decay_steps=0), ValueError, "decay_steps"),
    (lambda: fd.CosineDecay(total_steps=0), ValueError, "total_steps"),
    (lambda: fd.CosineDecay(min_factor=-0.5), ValueError, "min_factor"),
])
def test_bad_optimizer_or_schedule(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-4), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(optimizer=0.1), TypeError, "optimizer"),
    (dict(schedule="cosine"), TypeError, "schedule"),
    (dict(shuffle="sometimes"), ValueError, "shuffle"),
    (dict(validation_data=np.zeros((3, N_IN))), TypeError, "validation_data"),
])
def test_bad_fit_arguments(kwargs, exc, match):
    net = tiny_net()
    X, y = data()
    before = net.get_weights()
    with pytest.raises(exc, match=match):
        net.fit(X, y, **kwargs)
    assert_same_weights(net.get_weights(), before)


# ------------------------------------------------------------------ set_weights

def test_set_weights_wrong_count():
    net = tiny_net()
    with pytest.raises(ValueError, match="pairs|layers"):
        net.set_weights(net.get_weights()[:1])
    with pytest.raises(ValueError, match="pairs|layers"):
        net.set_weights(net.get_weights() * 2)


@pytest.mark.parametrize("layer, which", [(0, "W"), (1, "W"), (0, "b"), (1, "b")])
def test_set_weights_wrong_shape_leaves_weights_alone(layer, which):
    net = tiny_net()
    before = net.get_weights()
    weights = net.get_weights()
    W, b = weights[layer]
    weights[layer] = (W.T, b) if which == "W" else (W, np.append(b, 0.0))
    with pytest.raises(ValueError, match="shape|expected"):
        net.set_weights(weights)
    assert_same_weights(net.get_weights(), before)


@pytest.mark.filterwarnings("error")
def test_set_weights_beyond_float32_is_one_error_naming_the_range():
    net = tiny_net(dtype="float32")
    weights = net.get_weights()
    weights[0] = (weights[0][0].astype(np.float64), weights[0][1])
    weights[0][0][0, 0] = 1e39
    with pytest.raises(ValueError, match="beyond float32's range"):
        net.set_weights(weights)


def test_set_weights_rejects_non_finite_and_non_numeric():
    net = tiny_net()
    before = net.get_weights()
    weights = net.get_weights()
    weights[1][0][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN|finite|inf"):
        net.set_weights(weights)
    weights = net.get_weights()
    weights[0] = (weights[0][0].astype(str), weights[0][1])
    with pytest.raises(TypeError, match="real|numer"):
        net.set_weights(weights)
    with pytest.raises(TypeError, match="pair"):
        net.set_weights([1, 2])
    assert_same_weights(net.get_weights(), before)


# ------------------------------------------------------------------ divergence

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["sgd", "sgd-momentum"])
def test_diverging_fit_raises_and_keeps_finite_weights(optimizer, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, N_IN))
    y = 1e6 * rng.normal(size=(32, 2))
    net = fd.MLP([N_IN, 8, 2], activation="relu", loss="mse", dtype=dtype, seed=0)
    opt = fd.SGD(lr=1e6, momentum=0.9 if optimizer == "sgd-momentum" else 0.0)
    with pytest.raises(fd.TrainingDivergedError, match="diverge") as info:
        net.fit(X, y, epochs=50, batch_size=8, optimizer=opt)
    assert isinstance(info.value, FloatingPointError)
    weights = net.get_weights()
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in weights)
    assert np.isfinite(net.forward(X)).all()


# ------------------------------------------------------------------ save / load

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, k", [("cross_entropy", 3), ("mse", 1), ("binary_cross_entropy", 2),
                                     ("poisson", 2)])
def test_save_load_round_trip_is_bit_exact(loss, k, dtype, tmp_path):
    acts = ["gelu", "leaky_relu", "sigmoid"]
    net = fd.MLP([N_IN, 5, 6, 7, k], activation=acts, loss=loss, dtype=dtype, seed=4)
    X, y = data(loss, n=10, k=k)
    y = y[:, 0] if k == 1 else y
    net.fit(X, y, epochs=2, batch_size=4)  # weights no init could produce
    path = tmp_path / "model.npz"
    net.save(path)
    assert os.listdir(tmp_path) == ["model.npz"]  # no temporary file left behind

    back = fd.MLP.load(path)
    assert back.sizes == net.sizes
    assert back.activations == acts
    assert back.loss_name == loss
    assert back.dtype == np.dtype(dtype)
    for (W1, b1), (W2, b2) in zip(back.get_weights(), net.get_weights()):
        assert W1.dtype == W2.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    np.testing.assert_array_equal(back.predict(X), net.predict(X))  # exp(z) for poisson
    assert back.loss(X, y) == net.loss(X, y)
    # A str path works as well as a Path, and saving again overwrites.
    net.save(str(path))
    assert os.listdir(tmp_path) == ["model.npz"]


def test_save_into_missing_directory_fails_cleanly(tmp_path):
    with pytest.raises(OSError):
        tiny_net().save(tmp_path / "missing" / "model.npz")
    assert os.listdir(tmp_path) == []


def test_failing_save_leaves_old_file_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    tiny_net().save(path)
    old_bytes = path.read_bytes()

    def write_half_then_fail(file, *args, **kwargs):
        file.write(b"PK\x03\x04 partial")  # the start of a zip, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", write_half_then_fail)
    monkeypatch.setattr(np, "savez_compressed", write_half_then_fail)
    other = fd.MLP([N_IN, 9, K], seed=1)
    with pytest.raises(OSError, match="space"):
        other.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["model.npz"]
    assert path.read_bytes() == old_bytes
    assert fd.MLP.load(path).sizes == [N_IN, 5, K]


def test_load_random_bytes(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ValueError):
        fd.MLP.load(path)


def test_load_truncated_file(tmp_path):
    path = tmp_path / "model.npz"
    tiny_net().save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError):
        fd.MLP.load(path)


def test_load_foreign_npz_and_npy(tmp_path):
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, X=np.zeros((3, 4)), y=np.arange(3))
    with pytest.raises(ValueError, match="fastdnn"):
        fd.MLP.load(foreign)
    npy = tmp_path / "array.npy"
    np.save(npy, np.zeros(5))
    with pytest.raises(ValueError):
        fd.MLP.load(npy)


def test_load_tampered_model(tmp_path):
    path = tmp_path / "model.npz"
    tiny_net().save(path)
    with np.load(path) as f:
        arrays = dict(f)
    arrays["theta"] = arrays["theta"][:-1]  # one weight short
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="weights|size|theta"):
        fd.MLP.load(path)
    arrays["theta"] = np.append(arrays["theta"], np.nan)  # right size, not finite
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="finite"):
        fd.MLP.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(OSError):
        fd.MLP.load(tmp_path / "nothing.npz")


def overflowing_net(device="cpu"):
    """A float32 net whose logits overflow (inf, and NaN past a ReLU) on finite rows."""
    net = fd.MLP([2, 3, 3], activation="relu", dtype="float32", seed=0, device=device)
    W1 = np.array([[1e30, -1e30, 1.0], [1e30, 1e30, 1.0]], dtype=np.float32)
    W2 = np.array([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    net.set_weights([(W1, np.zeros(3, np.float32)), (W2, np.zeros(3, np.float32))])
    X = np.array([[0.5, -0.25], [1e10, 1e10], [-1e10, 1e10]], dtype=np.float32)
    return net, X


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score"])
def test_outputs_that_overflow_are_an_error_not_made_up_labels(method):
    net, X = overflowing_net()
    assert not np.isfinite(net.forward(X)).all()  # the logits, as they are
    args = (X, np.zeros(3, dtype=np.int64)) if method == "score" else (X,)
    with pytest.raises(ValueError, match=r"not finite for 2 of 3 rows \(row 1 first\)"):
        getattr(net, method)(*args)
    assert net.predict(X[:1]).shape == (1,)  # a row whose outputs are finite


@pytest.mark.parametrize("verbose", ["no", "False", None, 1.0])
def test_verbose_must_be_a_bool(verbose):
    X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    with pytest.raises(TypeError, match="verbose must be True or False"):
        fd.MLP([2, 3, 2], seed=0).fit(X, y, epochs=1, verbose=verbose)


@pytest.mark.parametrize("seed", [-1, 1.5, "a", True, np.True_, np.random.default_rng(0),
                                  np.random.RandomState(0), [1, 2]],
                         ids=["-1", "1.5", "a", "True", "np.True_", "Generator", "RandomState",
                              "list"])
def test_a_bad_seed_is_named(seed):
    """True seeded 1; a Generator was used in place (shared by the nets made from it,
    advanced by their fits); np.True_ said NumPy's SeedSequence message."""
    with pytest.raises((TypeError, ValueError), match="seed must be None or a non-negative"):
        fd.MLP([2, 3, 2], seed=seed)


@pytest.mark.parametrize("seed", [None, 0, np.int64(7), np.uint8(3), 2**100])
def test_a_good_seed_is_taken(seed):
    assert fd.MLP([2, 3, 2], seed=seed).seed is seed


def test_the_cli_refuses_a_negative_seed_as_a_bad_argument(capsys):
    """It ran, and failed with NumPy's "expected non-negative integer" and exit 1."""
    from fastdnn import cli
    assert cli.main(["train", "--seed", "-1", "--no-save"]) == 2
    assert "argument --seed: must be >= 0, got -1" in capsys.readouterr().err


def test_a_numpy_batch_size_beyond_the_rows_trains_without_overflow_warnings():
    X, y = np.zeros((8, 2)), np.array([0, 1] * 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for batch_size in (np.int64(2**62), np.uint64(2**63 + 5)):
            assert len(fd.MLP([2, 3, 2], seed=0).fit(X, y, epochs=1, batch_size=batch_size)) == 1


def test_whole_float_class_weight_keys_are_labels_and_a_scalar_y_is_named():
    X, y = np.random.default_rng(0).random((30, 2)), np.arange(30) % 3
    by_float = fd.MLP([2, 4, 3], seed=0).fit(X, y.astype(float), epochs=1,
                                              class_weight={1.0: 2.0})
    by_int = fd.MLP([2, 4, 3], seed=0).fit(X, y, epochs=1, class_weight={1: 2.0})
    assert by_float.loss == by_int.loss
    with pytest.raises(ValueError, match="class_weight has label 1.5"):
        fd.MLP([2, 4, 3], seed=0).fit(X, y, epochs=1, class_weight={1.5: 2.0})
    with pytest.raises(ValueError, match="got the scalar 1"):
        fd.MLP([2, 4, 3], seed=0).loss(X, 1)


@pytest.mark.parametrize("part, match", [
    (lambda X, y: (X, y[:5]), "y has 5 samples"),
    (lambda X, y: (X, y, -np.ones(len(y))), "sample_weight must be >= 0"),
    (lambda X, y: (X[:, :2], y), "2 features"),
])
def test_bad_validation_data_is_named_as_such(part, match):
    """The messages named fit's own X, y and sample_weight (none of them wrong)."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(ValueError, match="^validation_data: .*" + match):
        fd.MLP([3, 4, 2], seed=0).fit(X, y, epochs=1, validation_data=part(X, y))


# -- the sixth QA sweep: the public API fuzzed ------------------------------------------
@pytest.mark.parametrize("history", [np.uint8(255), np.int8(3), np.int16(200), 2**62])
def test_lbfgs_history_set_between_fits_as_a_numpy_scalar_trains(history):
    """The raw np.uint8 went to SciPy, which sized its work arrays in that type and wrote
    past them (a segfault); int8 overflowed inside SciPy; 2**62 allocated exabytes."""
    X = np.random.default_rng(0).standard_normal((8, 3))
    y = np.array([0, 1] * 4)
    opt = fd.LBFGS()
    opt.history = history
    fd.MLP([3, 4, 2], dtype="float64", seed=0).fit(X, y, epochs=2, optimizer=opt)
    assert type(opt.history) is int


@pytest.mark.parametrize("make", [
    lambda v: fd.SGD(lr=v), lambda v: fd.Adam(eps=v), lambda v: fd.LBFGS(tol=v),
    lambda v: fd.MLP([2, 3, 2], l2=v), lambda v: fd.ExponentialDecay(rate=v),
    lambda v: fd.ReduceLROnPlateau(min_lr=v), lambda v: fd.ProgressBar(interval=v)])
def test_an_integer_beyond_float64_is_a_value_error(make):
    # 10**400 raised OverflowError out of math.isfinite.
    with pytest.raises(ValueError):
        make(10**400)


def test_fit_arguments_beyond_float64_are_value_errors():
    net, (X, y) = fd.MLP([2, 3, 2], seed=0), (np.zeros((4, 2)), np.array([0, 1, 0, 1]))
    for kwargs in (dict(clip_norm=10**400), dict(class_weight={0: 10**400, 1: 1})):
        with pytest.raises(ValueError):
            net.fit(X, y, epochs=1, **kwargs)


@pytest.mark.parametrize("make", [
    lambda v: fd.MLP([2, 3, 2], seed=v), lambda v: fd.MLP([2, v, 2]),
    lambda v: fd.StepDecay(step_size=v), lambda v: fd.SGD(lr=v),
    lambda v: fd.MLP([2, 3, 2]).fit(np.zeros((4, 2)), [0, 1, 0, 1], epochs=v)])
def test_a_timedelta_is_no_number(make):
    # NumPy makes timedelta64 a signed integer: 3 days read as 3.
    with pytest.raises((TypeError, ValueError)):
        make(np.timedelta64(3, "D"))


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "2", np.inf])
def test_n_threads_set_on_a_net_is_checked(value):
    # 0 failed inside Numba ("must be between 1 and 2"), 2.5 and True were taken.
    net = fd.MLP([2, 3, 2], seed=0)
    with pytest.raises(ValueError, match="n_threads must be None or an integer >= 1"):
        net.n_threads = value
    net.n_threads = 1
    assert net.n_threads == 1


def test_a_pickle_with_n_threads_as_a_plain_attribute_loads():
    net = fd.MLP([2, 3, 2], seed=0, n_threads=1)
    state = net.__getstate__()
    state["n_threads"] = state.pop("_n_threads")  # as pickles before this change
    old = fd.MLP.__new__(fd.MLP)
    old.__setstate__(state)
    assert old.n_threads == 1


@pytest.mark.parametrize("signed", ["False", "no", [0], np.array([True, False])])
def test_make_parity_signed_is_a_bool(signed):
    # "no" and [0] gave the +-1 encoding.
    with pytest.raises(TypeError, match="signed must be True or False"):
        fd.datasets.make_parity(3, signed=signed)


def test_functions_of_a_net_refuse_an_estimator_and_point_to_net_():
    pytest.importorskip("sklearn")
    from fastdnn import constructions, interop
    from fastdnn.sklearn import MLPClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_iter=1: "has not converged"
        est = MLPClassifier((3,), max_iter=1).fit(np.random.default_rng(0).normal(size=(8, 2)),
                                                 [0, 1] * 4)
    for call in (constructions.units, interop.state_dict):
        with pytest.raises(TypeError, match=r"net must be a fastdnn MLP.*net_"):
            call(est)
        with pytest.raises(TypeError, match="net must be a fastdnn MLP, got str$"):
            call("net")


def test_fit_many_takes_a_list_of_names():
    # ["adam", "adam"] was "the list repeats an instance" (a name is a fresh instance).
    nets = [fd.MLP([2, 3, 2], seed=s) for s in range(2)]
    X, y = np.random.default_rng(0).normal(size=(8, 2)), np.array([0, 1] * 4)
    fd.fit_many(nets, X, y, epochs=1, optimizer=["adam", "adam"])
    opt = fd.Adam()
    with pytest.raises(ValueError, match="repeats an instance"):
        fd.fit_many(nets, X, y, epochs=1, optimizer=[opt, opt])


@pytest.mark.parametrize("t, total_steps", [(-1, None), (-2, None), ("3", None), (2.9, None),
                                            (True, None), (3, -5), (3, 0.5), (3, True)])
def test_schedule_factor_checks_its_arguments(t, total_steps):
    # InverseTimeDecay(1).factor(-1) was inf, factor(-2) -1.0; total_steps=-5 gave 0.
    for schedule in (fd.InverseTimeDecay(1.0), fd.CosineDecay()):
        with pytest.raises(ValueError, match="must be an integer"):
            schedule.factor(t, total_steps=total_steps)
    assert fd.InverseTimeDecay(1.0).factor(np.int64(1)) == 0.5


def test_experiments_name_their_own_parameters():
    from fastdnn import experiments

    with pytest.raises(ValueError, match="teeth_depth must be in 0..30"):
        experiments.zigzag(teeth_depth=31)
    with pytest.raises(ValueError, match="n_train must be in 1..24"):
        experiments.parity(n_train=30)


def test_misc_bad_arguments_are_named():
    from fastdnn import constructions

    net = fd.MLP([3, 4, 2], seed=0)
    with pytest.raises(TypeError, match="weights must be a list of"):
        net.set_weights(5)
    for monitor in (["loss"], np.array(["loss", "val_loss"])):
        with pytest.raises(ValueError, match="monitor must be"):
            fd.ModelCheckpoint("c.npz", monitor=monitor)
    with pytest.raises(TypeError, match="kind must be 'dnf' or 'saw'"):
        constructions.parity_shallow(3, kind=np.array(["dnf", "saw"]))
    with pytest.raises(ValueError, match="the path is empty"):
        net.save("")
    r = fd.regions.regions_2d(net, [0, 0, 0], [1, 0, 0], [0, 1, 0], lo=__import__(
        "fractions").Fraction(-1, 2))
    assert r.count >= 1


@pytest.mark.parametrize("t", [np.int32(2**31 - 5), -1, 2.5, "3", 2**63 - 3, True])
def test_an_optimizers_step_count_is_checked_as_a_fit_takes_it(t):
    # np.int32 wrapped negative as the fit added its steps ("lr too large?"), -1 made
    # Adam's bias correction 0, 2.5 compiled another kernel, 2**63-3 a bare OverflowError.
    X, y = np.random.default_rng(0).normal(size=(16, 3)), np.arange(16) % 2
    net, opt = fd.MLP([3, 4, 2], seed=0), fd.Adam()
    net.fit(X, y, epochs=1, optimizer=opt)
    opt.t = t
    if not isinstance(t, np.int32):
        with pytest.raises(ValueError, match=r"t \(the optimizer's step count\) must be an "
                                             r"integer in \[0, 2\*\*62\)"):
            net.fit(X, y, epochs=1, optimizer=opt)
        return
    net.fit(X, y, epochs=1, batch_size=4, optimizer=opt)
    assert type(opt.t) is int and opt.t == 2**31 - 5 + 4  # an int: no wrap at 2**31


def test_an_np_int64_step_count_is_backed_up(tmp_path):
    # It reached the backup's JSON header as np.int64: TypeError after the first epoch.
    X, y = np.random.default_rng(0).normal(size=(16, 3)), np.arange(16) % 2
    net, opt = fd.MLP([3, 4, 2], seed=0), fd.Adam()
    net.fit(X, y, epochs=1, optimizer=opt)
    opt.t = np.int64(1000)
    net.fit(X, y, epochs=2, batch_size=8, optimizer=opt,
            callbacks=[fd.BackupAndRestore(tmp_path / "b.npz")])
    assert opt.t == 1004


@pytest.mark.parametrize("make", [lambda: fd.MLP([3, 4, 2], l2=1e39),
                                  lambda: setattr(fd.MLP([3, 4, 2]), "l2", 1e39)])
def test_an_l2_beyond_a_float32_nets_range_is_refused(make):
    # As lr is: inf gradients, and every fit failed at its first step "lr too large?".
    with pytest.raises(ValueError, match="l2 1e\\+39 is beyond the range of the net's dtype"):
        make()
    fd.MLP([3, 4, 2], l2=1e39, dtype="float64")  # float64 holds it


def test_adam_without_eps_meeting_a_zero_gradient_says_so():
    # A column of zeros: 0/0 at the first step, a "divergence" no lr helped, it said.
    X = np.random.default_rng(0).normal(size=(16, 3))
    X[:, 2] = 0.0
    net = fd.MLP([3, 4, 2], seed=0, dtype="float64")
    with pytest.raises(fd.TrainingDivergedError, match="Adam's eps=0 makes 0/0"):
        net.fit(X, np.arange(16) % 2, epochs=1, optimizer=fd.Adam(lr=1e-12, eps=0.0))


@pytest.mark.parametrize("make, match", [
    (lambda X, y: fd.MLP([3, 8, 1]), r"cross_entropy \(the default loss\) needs >= 2 outputs; "
                                     r"for one output use loss='mse'"),
    (lambda X, y: fd.MLP([3, 8, 3]).fit(X, y + 0.5, epochs=1),
     r"integers 0..n_classes-1 \(cross_entropy is MLP's default loss; for regression use "
     r"loss='mse'\)"),
    (lambda X, y: fd.MLP([3, 8, 2]).fit(X, np.stack([y, y], 1) + 0.5, epochs=1),
     r"got \(12, 2\) \(cross_entropy is MLP's default loss"),
    (lambda X, y: fd.MLP([3, 8, 2], loss="binary_cross_entropy").fit(X, y % 2, epochs=1),
     r"got \(12,\) \(one column per output; integer class labels go with "
     r"loss='cross_entropy'\)"),
    (lambda X, y: fd.MLP([3, 8, 2]).fit(X, y % 2, epochs=1, optimizer=fd.Adam),
     r"got the class Adam: give Adam\(\.\.\.\)"),
    (lambda X, y: fd.MLP([3, 8, 2]).fit(X, y % 2, epochs=1, schedule=fd.CosineDecay),
     r"got the class CosineDecay: give CosineDecay\(\.\.\.\)"),
    (lambda X, y: fd.MLP([3, 8, 2]).fit(X, y % 2, epochs=1, callbacks=[lambda e, logs: None]),
     r"fd.LambdaCallback\(on_epoch_end=f\)"),
])
def test_a_new_users_common_mistakes_are_told_the_fix(make, match):
    # A regression without loss='mse' met cross_entropy's errors, which never said mse
    # (one output: "use binary_cross_entropy", a logistic model of the targets); a 1-D y
    # for two outputs read "got (12, 1)"; a class for an instance, a plain function.
    X, y = np.random.default_rng(0).normal(size=(12, 3)), np.arange(12) % 3
    with pytest.raises((ValueError, TypeError), match=match):
        make(X, y.astype(float))
