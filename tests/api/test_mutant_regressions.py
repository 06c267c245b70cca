"""Behaviours no other test pinned: each test fails on a mutant of the code (named in
its comment: the mutation, then what it broke) that every other test let pass.  Found by
the sixth QA sweep's mutation testing of the callbacks, saving, preprocessing, regions,
scikit-learn estimators and CLI (2026-11-29; 78 mutants, 21 survivors)."""
import os

import numpy as np
import pytest

import fastdnn as fd


def noisy(seed=0):
    rng = np.random.default_rng(seed)
    X, Xv = rng.normal(size=(60, 4)), rng.normal(size=(40, 4))
    y, yv = (X[:, 0] + X[:, 1] > 0).astype(int), rng.integers(0, 2, 40)
    return X, y, Xv, yv


# es_tie: an exactly flat watched loss must count as no improvement.
def test_patience_stops_a_fit_whose_loss_does_not_move():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 3)), rng.integers(0, 2, 64)
    net = fd.MLP([3, 4, 2], seed=0)
    h = net.fit(X, y, epochs=10, batch_size=16, optimizer=fd.SGD(lr=1e-30), patience=2,
                validation_data=(X[:16], y[:16]))
    assert len(set(h.val_loss)) == 1
    assert len(h) == 3


class CrashAfter(fd.Callback):
    def __init__(self, at):
        self.at = at

    def after_epoch_end(self, epoch):
        if epoch == self.at:
            raise RuntimeError("crash")


# resume_since_best: a fit resumed in the middle of its patience stops where the
# uninterrupted one does.
def test_a_fit_resumed_mid_patience_stops_where_the_whole_fit_does(tmp_path):
    X, y, Xv, yv = noisy()

    def fit(*callbacks):
        net = fd.MLP([4, 16, 2], seed=0)
        hist = net.fit(X, y, epochs=200, batch_size=8, optimizer=fd.SGD(lr=0.5),
                       validation_data=(Xv, yv), patience=3, callbacks=list(callbacks))
        return net, hist

    ref, ref_hist = fit()
    n = len(ref_hist)
    assert n < 200
    # the epoch before the last: since_best is 2 there (patience 3 ends at the next)
    path = tmp_path / "b.npz"
    with pytest.raises(RuntimeError):
        fit(fd.BackupAndRestore(path), CrashAfter(n - 2))
    net, hist = fit(fd.BackupAndRestore(path))
    assert hist.val_loss == ref_hist.val_loss


# pl_floor: min_lr above the rate never raises it.
def test_plateau_never_raises_the_rate_to_a_min_lr_above_it():
    s = fd.ReduceLROnPlateau(factor=0.5, patience=1, min_lr=2.0)
    scales = [s.update(loss, 1.0) for loss in [1.0, 1.0, 1.0, 1.0]]
    assert scales == [1.0, 1.0, 1.0, 1.0]


# pl_setstate_swap: a plateau's wait and cooldown survive a backup.
def test_plateau_wait_and_cooldown_survive_a_backup(tmp_path):
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(200, 6)), rng.integers(0, 3, 200)  # random labels: plateaus

    def fit(*callbacks):
        net = fd.MLP([6, 16, 3], dtype="float64", seed=3)
        hist = net.fit(X, y, epochs=14, batch_size=32, optimizer=fd.SGD(lr=0.01),
                       schedule=fd.ReduceLROnPlateau(factor=0.5, patience=3, cooldown=2,
                                                     threshold=0.5),
                       callbacks=list(callbacks))
        return net, hist

    ref, ref_hist = fit()
    assert len(set(ref_hist.lr)) >= 3
    for at in range(1, 12):
        path = tmp_path / f"b{at}.npz"
        with pytest.raises(RuntimeError):
            fit(fd.BackupAndRestore(path), CrashAfter(at))
        net, hist = fit(fd.BackupAndRestore(path))
        assert hist.lr == ref_hist.lr, at


# ck_best_untracked: ModelCheckpoint.best holds the best value also when saving every epoch.
def test_checkpoint_best_is_tracked_when_saving_every_epoch(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 4))
    y = (X[:, 0] > 0).astype(int)
    ck = fd.ModelCheckpoint(tmp_path / "m.npz")
    hist = fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=4, batch_size=16, callbacks=[ck])
    assert ck.best == min(hist.loss)


# csv_empty_header: an empty existing file gets a header in append mode.
def test_csv_logger_append_to_an_empty_file_writes_the_header(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int)
    log = tmp_path / "log.csv"
    log.write_text("")
    fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=2, callbacks=[fd.CSVLogger(log, append=True)])
    assert log.read_text().splitlines()[0].startswith("epoch,")


# bk_not_atomic: a backup write that fails midway leaves the previous backup.
def test_a_failed_backup_write_leaves_the_previous_backup(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int)
    path = tmp_path / "b.npz"
    real = np.savez
    calls = []

    def flaky(file, *args, **kw):
        calls.append(1)
        if len(calls) == 2:
            out = open(file, "wb") if isinstance(file, (str, os.PathLike)) else file
            out.write(b"PK\x03\x04part")
            raise OSError("disk full")
        return real(file, *args, **kw)

    monkeypatch.setattr(np, "savez", flaky)
    with pytest.raises(OSError):
        fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=4, callbacks=[fd.BackupAndRestore(path)])
    monkeypatch.setattr(np, "savez", real)
    hist = fd.MLP([4, 8, 2], seed=0).fit(X, y, epochs=4, callbacks=[fd.BackupAndRestore(path)])
    assert len(hist) == 4


# sv_no_l2 / sv_no_dropout: save -> load keeps the regularisation of the net saved.
def test_save_load_round_trip_keeps_l2_and_dropout(tmp_path):
    net = fd.MLP([4, 8, 6, 3], seed=0, l2=0.5, dropout=[0.25, 0.1])
    net.save(tmp_path / "m.npz")
    back = fd.MLP.load(tmp_path / "m.npz")
    assert back.l2 == 0.5 and back.dropout == [0.25, 0.1]


# wa_no_fsync: the data reach the disk before the rename.
def test_save_fsyncs_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd_: (calls.append(fd_), real(fd_))[1])
    fd.MLP([2, 3, 2], seed=0).save(tmp_path / "m.npz")
    assert calls


# ld_version: a file from a newer format is refused by name.
def test_a_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "net.npz"
    fd.MLP([4, 8, 3], seed=0).save(path)
    arrays = dict(np.load(path))
    np.savez(tmp_path / "v2.npz", **{**arrays, "version": np.array(2)})
    with pytest.raises(ValueError, match="newer fastdnn"):
        fd.MLP.load(tmp_path / "v2.npz")


# task_20: "at most MAX_IMPLICIT_CLASSES distinct whole numbers are classes".
def test_the_implicit_class_limit_is_inclusive():
    from fastdnn.preprocess import MAX_IMPLICIT_CLASSES, choose_task
    k = MAX_IMPLICIT_CLASSES
    assert choose_task(np.arange(1, k + 1)).name == "classification"
    assert choose_task(np.arange(1, k + 2)).name == "regression"


# fromnet_zero: a model whose saved x_scale holds a zero is refused by name.
def test_a_zero_scale_in_the_metadata_is_refused(tmp_path):
    from fastdnn.preprocess import Preprocessing
    net = fd.MLP([2, 3, 2], seed=0)
    net.save(tmp_path / "m.npz", metadata=dict(scaling="standard", x_offset=[0.0, 0.0],
                                               x_scale=[1.0, 0.0]))
    with pytest.raises(ValueError, match="x_scale holds a zero"):
        Preprocessing.from_net(fd.MLP.load(tmp_path / "m.npz"))


# rg_serra_cap: a narrow layer caps the dimension the later layers see.
def test_serra_bound_with_a_bottleneck():
    from fastdnn import regions
    # one unit on R^2: off -> 1 region (constant after it); on -> a line cut by 4 units: 5
    assert regions.serra_upper_bound([1, 4], 2) == 6


# --- sklearn -------------------------------------------------------------------------
def _skproblem(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    s = X @ rng.normal(size=5)
    return X, s, (s > 0).astype(int)


# sk_es_gt: a validation score equal to the best (tol=0) is an improvement, as in sklearn.
def test_early_stopping_tie_counts_as_improvement_as_in_sklearn():
    import warnings
    pytest.importorskip("sklearn")
    import sklearn.neural_network as sk
    from fastdnn.sklearn import MLPClassifier
    X, _, y = _skproblem(200)
    kw = dict(hidden_layer_sizes=(7,), solver="sgd", learning_rate_init=1e-12, momentum=0.0,
              early_stopping=True, tol=0.0, n_iter_no_change=2, max_iter=8, shuffle=False,
              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours, theirs = MLPClassifier(**kw).fit(X, y), sk.MLPClassifier(**kw).fit(X, y)
    assert len(set(theirs.validation_scores_)) == 1
    assert ours.n_iter_ == theirs.n_iter_


# sk_lbfgs_tw: lbfgs with sample weights follows sklearn's penalty / sum(w).
def test_lbfgs_with_sample_weights_follows_sklearn():
    import warnings
    pytest.importorskip("sklearn")
    import sklearn.neural_network as sk
    from fastdnn.sklearn import MLPRegressor
    X, s, _ = _skproblem()
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=len(s))
    kw = dict(hidden_layer_sizes=(7,), activation="tanh", solver="lbfgs", alpha=1.0,
              max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = MLPRegressor(**kw).fit(X, s, sample_weight=w)
        theirs = sk.MLPRegressor(**kw).fit(X, s, sample_weight=w)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


# sk_class_weight_mul: class_weight multiplies a given sample_weight.
def test_class_weight_and_sample_weight_multiply():
    import warnings
    pytest.importorskip("sklearn")
    from fastdnn.sklearn import MLPClassifier
    X, _, y = _skproblem()
    w = np.random.default_rng(1).uniform(0.2, 3.0, size=len(y))
    kw = dict(hidden_layer_sizes=(7,), solver="sgd", max_iter=3, shuffle=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = MLPClassifier(class_weight={0: 1.0, 1: 3.0}, **kw).fit(X, y, sample_weight=w)
        b = MLPClassifier(**kw).fit(X, y, sample_weight=w * np.where(y == 1, 3.0, 1.0))
    for p, q in zip(a.coefs_, b.coefs_):
        np.testing.assert_allclose(p, q, rtol=1e-6)


# --- cli -----------------------------------------------------------------------------
# cli_r2_mean / cli_r2_const: evaluate's R2 is sklearn's (uniform average, constant targets).
def test_cli_r2_is_sklearns():
    pytest.importorskip("sklearn")
    from sklearn.metrics import r2_score
    from fastdnn.cli import r2_score as ours
    rng = np.random.default_rng(0)
    y = rng.normal(size=(30, 2))
    Z = y + rng.normal(size=(30, 2)) * np.array([0.1, 2.0])
    assert ours(y, Z) == pytest.approx(r2_score(y, Z))
    c = np.ones((5, 1))
    assert ours(c, c) == r2_score(c, c) == 1.0
    assert ours(c, c + 1) == r2_score(c, c + 1) == 0.0


# cli_yscale_test: train's held-out R2 of a scaled regression is on the same scale.
def test_cli_train_held_out_r2_of_a_scaled_regression(tmp_path, capsys):
    from fastdnn import cli
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = 1000.0 + 50.0 * X[:, 0] + 20.0 * X[:, 1]
    path = tmp_path / "d.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header="a,b,c,y", comments="")
    assert cli.main(["train", "--data", str(path), "--target", "y", "--epochs", "40",
                     "--quiet"]) == 0
    out = capsys.readouterr().out
    import re
    r2 = float(re.search(r"R2: (-?[0-9.]+)", out).group(1))
    assert r2 > 0.9, out


# --- the training math (the core's mutation testing: 48 mutants, 13 survivors) ----------
# eval_chunks_unweighted: a chunk's loss summed by rows, not weights (> PREDICT_CHUNK rows).
def test_weighted_loss_over_several_evaluation_chunks():
    from scipy.special import logsumexp

    rng = np.random.default_rng(0)
    n = 5000
    X, y = rng.normal(size=(n, 3)), rng.integers(0, 3, n)
    w = np.where(np.arange(n) < 4096, 0.1, 5.0)  # the second chunk weighs far more
    net = fd.MLP([3, 4, 3], activation="tanh", dtype="float64", seed=0)
    Z = net.forward(X)
    per_row = logsumexp(Z, axis=1) - Z[np.arange(n), y]
    assert net.loss(X, y, sample_weight=w) == pytest.approx((w * per_row).sum() / w.sum(),
                                                           rel=1e-12)


# fused_loss_by_rows: the fused online step (a layer of >= 64 units) booked the row
# mean as the epoch loss.
def test_online_epoch_loss_of_a_wide_net_is_sample_weighted():
    rng = np.random.default_rng(0)
    X, y, w = rng.normal(size=(40, 4)), rng.integers(0, 3, 40), rng.uniform(0.1, 5.0, 40)
    net = fd.MLP([4, 64, 3], activation="tanh", dtype="float64", seed=0)
    expected = net.loss(X, y, sample_weight=w)  # lr ~0: the weights barely move
    hist = net.fit(X, y, epochs=1, batch_size=1, optimizer=fd.SGD(lr=1e-12), sample_weight=w,
                   shuffle=False)
    assert hist.loss[0] == pytest.approx(expected, rel=1e-9)


# shuffle_sattolo: randint(0, i) in place of (0, i + 1) makes only cyclic orders.
def test_the_shuffle_draws_every_order():
    import collections

    from fastdnn.kernels.cpu import train

    counts = collections.Counter()
    order = np.zeros(3, dtype=np.int64)
    for seed in range(3000):
        train._shuffle(order, seed)
        counts[tuple(order)] += 1
    assert len(counts) == 6 and min(counts.values()) > 400, counts


# hist_loss_by_rows: the epoch loss divided by rows, not weight (shuffle="uniform" draws
# rows that do not weigh n).
def test_uniform_sampling_books_the_weighted_mean_loss():
    n = 50
    X, y = np.tile([[0.3, -1.2, 0.7]], (n, 1)), np.ones(n, dtype=int)  # every row's loss L
    w = np.linspace(0.05, 5.0, n)
    net = fd.MLP([3, 5, 3], activation="tanh", dtype="float64", seed=0)
    L = net.loss(X, y)
    hist = net.fit(X, y, epochs=1, batch_size=5, optimizer=fd.SGD(lr=1e-12), sample_weight=w,
                   shuffle="uniform")
    assert hist.loss[0] == pytest.approx(L, rel=1e-9)


def _sharded(monkeypatch, shards):
    from fastdnn import config

    monkeypatch.setattr(config, "SHARDS", shards)
    monkeypatch.setattr(config, "MIN_SHARD_MACS", 0)


# pair_share_rows: Numba-pool shards (config.SHARDS > 2) combined by rows, not weight.
def test_a_sharded_step_with_uneven_weights_is_the_whole_batchs(monkeypatch):
    _sharded(monkeypatch, 4)
    rng = np.random.default_rng(0)
    n = 128
    X, y = rng.normal(size=(n, 8)), rng.integers(0, 3, n)
    w = np.where(np.arange(n) < n // 4, 4.0, 0.3)
    net = fd.MLP([8, 16, 3], activation="tanh", dtype="float64", seed=0)
    want = [(W - 0.1 * dW, b - 0.1 * db)
            for (W, b), (dW, db) in zip(net.get_weights(), net.gradients(X, y, sample_weight=w))]
    net.fit(X, y, epochs=1, batch_size=n, shuffle=False, optimizer=fd.SGD(lr=0.1),
            sample_weight=w)
    for (W, b), (V, c) in zip(net.get_weights(), want):
        np.testing.assert_allclose(W, V, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b, c, rtol=0, atol=1e-12)


# shard_row0: Numba-pool shards drew dropout masks from their own first row.
def test_dropout_masks_do_not_depend_on_pool_shards(monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(128, 8)), rng.integers(0, 3, 128)
    out = []
    for shards in (1, 4):
        _sharded(monkeypatch, shards)
        net = fd.MLP([8, 16, 3], activation="tanh", dtype="float64", dropout=0.3, seed=0)
        net.fit(X, y, epochs=1, batch_size=128, shuffle=False, optimizer=fd.SGD(lr=0.1))
        out.append(np.concatenate([a.ravel() for Wb in net.get_weights() for a in Wb]))
    np.testing.assert_allclose(out[0], out[1], rtol=0, atol=1e-12)


# bias_grad_2rows: the bias gradient of a 2-row batch taken as a 1-row one's.
def test_gradients_of_a_two_row_batch():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(2, 4)), np.array([0, 2])
    net = fd.MLP([4, 7, 3], activation="tanh", dtype="float64", seed=0)
    (W1, b1), (W2, b2) = net.get_weights()
    A = np.tanh(X @ W1 + b1)
    Z = A @ W2 + b2
    P = np.exp(Z - Z.max(1, keepdims=True))
    P /= P.sum(1, keepdims=True)
    D2 = P.copy()
    D2[np.arange(2), y] -= 1
    D2 /= 2
    D1 = (D2 @ W2.T) * (1 - A ** 2)
    (dW1, db1), (dW2, db2) = net.gradients(X, y)
    for got, want in ((dW1, X.T @ D1), (db1, D1.sum(0)), (dW2, A.T @ D2), (db2, D2.sum(0))):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


# plateau_le: an exactly equal loss counted as an improvement (PyTorch and Keras: strict).
def test_plateau_takes_an_equal_loss_as_no_improvement():
    s = fd.ReduceLROnPlateau(factor=0.5, patience=1, threshold=0.0)
    s.update(1.0, 0.1)
    s.update(1.0, 0.1)
    assert s.scale == 0.5


# bce_label_ge0: a logit of exactly 0 (p = 0.5) predicts class 0, as scikit-learn's.
def test_a_logit_of_zero_predicts_class_zero():
    net = fd.MLP([2, 3, 1], loss="binary_cross_entropy", seed=0)
    net.set_weights([(np.zeros((2, 3)), np.zeros(3)), (np.zeros((3, 1)), np.zeros(1))])
    assert (net.predict(np.ones((2, 2))).ravel() == 0).all()


# sumsq_f32: the penalty's squares in float32 overflow from |W| = 1.8e19 (the loss inf).
def test_the_penalty_of_a_float32_net_is_summed_in_float64():
    net = fd.MLP([2, 2, 2], dtype="float32", l2=1e-3, seed=0)
    (W1, b1), (W2, b2) = net.get_weights()
    W1 = W1.copy()
    W1[0, 0] = 1e20
    net.set_weights([(W1, b1), (W2, b2)])
    assert np.isfinite(net.loss(np.zeros((1, 2), dtype=np.float32), np.array([0])))
