"""Data-parallel fit on MPI (``fit(..., comm=)``): equivalence with one process, and
decisions agreed by every rank.  Run by ``mpiexec -n 2`` and ``-n 3`` (see conftest.py).

Every rank builds every shard from the same seed, so each can compute the
single-process reference itself.  Shards have unequal sizes, whose step counts differ
(rank 1's shard runs out a step early): the reference is the single-process fit with
batch ``P * b`` on the shards interleaved block by block, each block padded to ``b``
rows of weight 0 (which add nothing to a weighted loss or gradient).
"""
import os
import signal

import numpy as np
import pytest

import fastdnn as fd
from support import record_epoch_kernels

B = 4  # the local batch
N_IN, K = 5, 3


def shard_rows(size):
    """Unequal shard sizes: 10, 5, 11, 8, ... (rank 1's shard needs one step fewer)."""
    return [(10, 5, 11, 8)[r % 4] + 4 * (r // 4) for r in range(size)]


def make_shards(size, loss="cross_entropy", seed=0):
    """``[(X, y, w), ...]``, one per rank, the same on every rank."""
    rng = np.random.default_rng(seed)
    shards = []
    for n in shard_rows(size):
        X = rng.normal(size=(n, N_IN))
        if loss == "cross_entropy":
            y = rng.integers(0, K, size=n)
        elif loss == "poisson":
            y = rng.poisson(2.0, size=(n, 2))
        else:
            y = rng.normal(size=(n, 2))
        shards.append((X, y, rng.uniform(0.5, 2.0, size=n)))
    return shards


def interleave(shards, b):
    """One process's data for the same steps: each rank's block ``s`` in rank order,
    padded to ``b`` rows of weight 0."""
    steps = max(-(-len(X) // b) for X, _, _ in shards)
    Xs, ys, ws = [], [], []
    for s in range(steps):
        for X, y, w in shards:
            rows = slice(s * b, min((s + 1) * b, len(X)))
            pad = b - len(X[rows])
            Xs += [X[rows], np.zeros((pad, X.shape[1]))]
            ys += [y[rows], np.zeros((pad,) + y.shape[1:], dtype=y.dtype)]
            ws += [w[rows], np.zeros(pad)]
    return np.concatenate(Xs), np.concatenate(ys), np.concatenate(ws)


def max_diff(a, b):
    return max(np.abs(x - y).max() for pa, pb in zip(a.get_weights(), b.get_weights())
               for x, y in zip(pa, pb))


def same_on_all_ranks(comm, value):
    values = comm.allgather(repr(value))  # repr: nan equals nan
    return all(v == values[0] for v in values)


def agreed_error(comm, excinfo):
    """The error's type and message, checked to be the same on every rank."""
    text = (excinfo.type.__name__, str(excinfo.value))
    assert same_on_all_ranks(comm, text), comm.allgather(text)
    return text


OPTIMIZERS = {"momentum": lambda: fd.SGD(lr=0.1, momentum=0.9, nesterov=True),
              "adam": lambda: fd.Adam(lr=0.01)}


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "poisson"])
def test_equals_one_process_on_interleaved_shards(comm, opt, loss):
    rank, size = comm.Get_rank(), comm.Get_size()
    shards = make_shards(size, loss)
    vshards = make_shards(size, loss, seed=1)
    k = K if loss == "cross_entropy" else 2
    kw = dict(epochs=4, shuffle=False, schedule=fd.InverseTimeDecay(0.01), clip_norm=5.0)
    net = fd.MLP([N_IN, 8, 6, k], activation=["tanh", "relu"], loss=loss, dtype="float64",
                 seed=3, l2=1e-3)
    X, y, w = shards[rank]
    hist = net.fit(X, y, batch_size=B, optimizer=OPTIMIZERS[opt](), sample_weight=w,
                   validation_data=vshards[rank], comm=comm, **kw)

    ref = fd.MLP([N_IN, 8, 6, k], activation=["tanh", "relu"], loss=loss, dtype="float64",
                 seed=3, l2=1e-3)
    X1, y1, w1 = interleave(shards, B)
    Xv, yv, wv = (np.concatenate(parts) for parts in zip(*vshards))
    ref_hist = ref.fit(X1, y1, batch_size=size * B, optimizer=OPTIMIZERS[opt](),
                       sample_weight=w1, validation_data=(Xv, yv, wv), **kw)
    assert max_diff(net, ref) < 1e-10
    for key in ("loss", "val_loss", "val_metric", "lr"):
        np.testing.assert_allclose(hist[key], ref_hist[key], rtol=1e-10, atol=1e-12)
    assert same_on_all_ranks(comm, net._backend.theta.tobytes())


def test_sharded_local_gradient(comm, monkeypatch):
    """config.SHARDS: each rank's local gradient from row shards in parallel."""
    from fastdnn import config
    monkeypatch.setattr(config, "SHARDS", 2)
    monkeypatch.setattr(config, "MIN_SHARD_ROWS", 2)
    monkeypatch.setattr(config, "MIN_SHARD_MACS", 0)
    shards = make_shards(comm.Get_size())
    X, y, w = shards[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    net.fit(X, y, epochs=2, batch_size=B, shuffle=False, sample_weight=w, comm=comm)
    ref = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    X1, y1, w1 = interleave(shards, B)
    ref.fit(X1, y1, epochs=2, batch_size=comm.Get_size() * B, shuffle=False, sample_weight=w1)
    assert max_diff(net, ref) < 1e-10


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_a_big_net_takes_the_wide_update(comm, monkeypatch, opt):
    """Nets of config.WIDE_UPDATE_PARAMS parameters update in parallel chunks: the same
    weights as the serial update, on every rank."""
    from fastdnn import config
    from fastdnn.kernels.cpu import distributed
    kernels = record_epoch_kernels(monkeypatch, distributed.DistributedTrainer)
    shards = make_shards(comm.Get_size())
    X, y, w = shards[comm.Get_rank()]
    weights = []
    for params, kernel in ((0, distributed.distributed_steps_wide),  # every net wide
                           (1 << 60, distributed.distributed_steps)):  # none
        monkeypatch.setattr(config, "WIDE_UPDATE_PARAMS", params)
        net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
        net.fit(X, y, epochs=2, batch_size=B, shuffle=False, sample_weight=w, comm=comm,
                optimizer=OPTIMIZERS[opt]())
        weights.append(net._backend.theta.copy())
        assert set(kernels) == {kernel}
        kernels.clear()
    np.testing.assert_array_equal(weights[0], weights[1])
    assert same_on_all_ranks(comm, weights[0].tobytes())


def test_a_rank_whose_rows_all_weigh_0(comm):
    """Weights mean what they mean on the union of the shards: a rank whose rows all
    weigh 0 counts for nothing (it was refused, as if the union's were all 0); all 0 on
    every rank is refused on every rank."""
    rank, size = comm.Get_rank(), comm.Get_size()
    shards = [(X, y, w * (r != 1)) for r, (X, y, w) in enumerate(make_shards(size))]
    X, y, w = shards[rank]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=2, batch_size=B, shuffle=False, sample_weight=w, comm=comm)
    ref = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    X1, y1, w1 = interleave(shards, B)
    ref_hist = ref.fit(X1, y1, epochs=2, batch_size=size * B, shuffle=False, sample_weight=w1)
    assert max_diff(net, ref) < 1e-10
    np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=1e-10)
    with pytest.raises(ValueError) as excinfo:
        net.fit(X, y, epochs=1, batch_size=B, sample_weight=np.zeros(len(X)), comm=comm)
    assert "every row of every rank weight 0" in agreed_error(comm, excinfo)[1]


def test_sub_communicator_and_float32(comm):
    """Any intracommunicator (here a duplicate of the world), float32 nets."""
    sub = comm.Dup()
    try:
        shards = make_shards(comm.Get_size())
        X, y, _ = shards[comm.Get_rank()]
        net = fd.MLP([N_IN, 8, K], dtype="float32", seed=0)
        net.fit(X, y, epochs=2, batch_size=B, shuffle=False, comm=sub)
        ref = fd.MLP([N_IN, 8, K], dtype="float32", seed=0)
        X1, y1, w1 = interleave([(X, y, np.ones(len(X))) for X, y, _ in shards], B)
        ref.fit(X1, y1, epochs=2, batch_size=comm.Get_size() * B, shuffle=False,
                sample_weight=w1)
        assert max_diff(net, ref) < 1e-5
    finally:
        sub.Free()


@pytest.mark.parametrize("shuffle", [True, "uniform"])
def test_shuffle_is_reproducible(comm, shuffle):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    weights = []
    # The second time the ranks' seeds differ: the weights and generator are rank 0's.
    for seed in (5, 5 + comm.Get_rank()):
        net = fd.MLP([N_IN, 8, K], dtype="float64", seed=seed, dropout=0.2)
        net.fit(X, y, epochs=3, batch_size=B, shuffle=shuffle, comm=comm)
        weights.append(net._backend.theta.copy())
    assert np.array_equal(weights[0], weights[1])
    assert same_on_all_ranks(comm, weights[0].tobytes())


def test_bad_input_on_one_rank_raises_everywhere(comm):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    if comm.Get_rank() == 1:
        X = X.copy()
        X[2, 1] = np.nan
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(ValueError) as excinfo:
        net.fit(X, y, epochs=2, batch_size=B, comm=comm)
    assert agreed_error(comm, excinfo)[1].startswith("rank 1: X contains NaN")
    assert max_diff(net, fd.MLP([N_IN, 8, K], dtype="float64", seed=0)) == 0  # untouched


def test_arguments_must_agree(comm):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(ValueError) as excinfo:
        net.fit(X, y, epochs=2 + (comm.Get_rank() == comm.Get_size() - 1), batch_size=B,
                comm=comm)
    assert "the ranks disagree on epochs" in agreed_error(comm, excinfo)[1]


def test_divergence_raises_on_every_rank(comm):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(fd.TrainingDivergedError) as excinfo:
        net.fit(X * 1e3, y, epochs=5, batch_size=B, optimizer=fd.SGD(lr=1e150), comm=comm)
    agreed_error(comm, excinfo)
    assert net._backend.theta_finite()
    assert same_on_all_ranks(comm, net._backend.theta.tobytes())


class StopOn:
    """Asks to stop after epoch ``epoch`` on rank ``rank`` only."""

    def __init__(self, comm, rank, epoch):
        self.mine = comm.Get_rank() == rank
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs):
        return self.mine and epoch == self.epoch


def test_early_stopping_and_callback_stops_are_agreed(comm):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    # lr 1e-300 changes no weight: the loss never improves, patience 2 stops after epoch 3.
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=10, batch_size=B, optimizer=fd.SGD(lr=1e-300), patience=2,
                   validation_data=(X, y), comm=comm)
    assert len(hist) == 3 and same_on_all_ranks(comm, hist.history)
    hist = net.fit(X, y, epochs=10, batch_size=B, callbacks=[StopOn(comm, 1, 1)], comm=comm)
    assert len(hist) == 2 and same_on_all_ranks(comm, hist.history)


class Failing:
    def __init__(self, comm, rank):
        self.mine = comm.Get_rank() == rank

    def on_epoch_end(self, epoch, logs):
        if self.mine and epoch == 1:
            raise OSError("disk full")


def test_callback_error_on_one_rank_raises_everywhere(comm):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(OSError) as excinfo:
        net.fit(X, y, epochs=5, batch_size=B, callbacks=[Failing(comm, 1)], comm=comm)
    assert agreed_error(comm, excinfo) == ("OSError", "rank 1: disk full")


class CtrlC:
    """Sends SIGINT to its own process in epoch ``epoch``, on rank ``rank`` only."""

    def __init__(self, comm, rank, epoch):
        self.mine = comm.Get_rank() == rank
        self.epoch = epoch

    def on_progress(self, epoch, rows, total_rows, seconds):
        if self.mine and epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_on_one_rank_stops_every_rank(comm):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    opt = fd.Adam()
    with pytest.raises(KeyboardInterrupt) as excinfo:
        net.fit(X, y, epochs=5, batch_size=B, optimizer=opt, callbacks=[CtrlC(comm, 1, 1)],
                comm=comm)
    # Pressed in epoch 2's run of steps (its only one): the fit stops after it, on every rank.
    history = excinfo.value.history
    assert len(history) in (1, 2)
    assert same_on_all_ranks(comm, (history.loss, opt.t, net._backend.theta.tobytes()))


class Crash:
    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            raise RuntimeError("killed")


def test_backup_resumes_on_the_same_number_of_ranks(comm, shared_tmp):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    path = os.path.join(shared_tmp, "fit.backup.npz")

    def fit(callbacks):
        net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
        net.fit(X, y, epochs=4, batch_size=B, optimizer=fd.Adam(0.01), comm=comm,
                callbacks=callbacks)
        return net

    whole = fit([])
    with pytest.raises(RuntimeError):
        fit([fd.BackupAndRestore(path), Crash()])
    assert os.path.exists(path)
    resumed = fit([fd.BackupAndRestore(path)])
    assert np.array_equal(resumed._backend.theta, whole._backend.theta)
    comm.Barrier()
    assert not os.path.exists(path)
    # A backup of a fit on another number of ranks (here one process) is refused.
    if comm.Get_rank() == 0:
        with pytest.raises(RuntimeError):
            fd.MLP([N_IN, 8, K], dtype="float64", seed=0).fit(
                X, y, epochs=4, batch_size=B, callbacks=[fd.BackupAndRestore(path), Crash()])
    comm.Barrier()
    with pytest.raises(ValueError) as excinfo:
        fit([fd.BackupAndRestore(path)])
    assert "resume it on as many" in agreed_error(comm, excinfo)[1]


def test_checkpoints_and_logs_are_written_by_rank_0_once(comm, shared_tmp):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    log, best = os.path.join(shared_tmp, "log.csv"), os.path.join(shared_tmp, "best.npz")
    ck = fd.ModelCheckpoint(best, save_best_only=True)
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=3, batch_size=B, optimizer=fd.Adam(0.01), comm=comm,
                   callbacks=[fd.CSVLogger(log), ck])
    comm.Barrier()
    with open(log) as f:  # every rank's logger wrote one header and 3 lines before
        lines = f.read().splitlines()
    assert len(lines) == 4 and [float(line.split(",")[1]) for line in lines[1:]] == hist.loss
    assert len(ck.saved) == (3 if comm.Get_rank() == 0 else 0)  # the others' dropped
    assert np.array_equal(fd.MLP.load(best)._backend.theta, net._backend.theta)


@pytest.mark.parametrize("weights", ["sample", "class"])
def test_validation_split_with_weights_equals_the_split_by_hand(comm, weights):
    """Each part's weights are scaled among its rows (the held-out ones by their sample
    weights alone): the union's rescale took the shard's all-row mean, 1e-4 off."""
    rank = comm.Get_rank()
    rng = np.random.default_rng(10 + rank)
    n = 80 + 40 * rank
    X, y = rng.normal(size=(n, N_IN)), rng.integers(0, K, n)
    sw = rng.uniform(0.1, 3, n) * (1 + 5 * rank) if weights == "sample" else None
    cw = {0: 3.0, 1: 1.0, 2: 0.2} if weights == "class" else None
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=1)
    hist = net.fit(X, y, epochs=3, batch_size=B, validation_split=0.25, sample_weight=sw,
                   class_weight=cw, comm=comm)
    twin = fd.MLP([N_IN, 8, K], dtype="float64", seed=1)
    plan = twin._fit_plan(X, y, 1, B, "adam", None, None, True, None, validation_split=0.25)
    keep, held = plan.split
    twin_hist = twin.fit(X[keep], y[keep], epochs=3, batch_size=B,
                         sample_weight=None if sw is None else sw[keep], class_weight=cw,
                         validation_data=(X[held], y[held]) + (() if sw is None else (sw[held],)),
                         comm=comm)
    assert max_diff(net, twin) < 1e-12
    assert np.allclose(hist.val_loss, twin_hist.val_loss, rtol=1e-12)


class FailsOnRank1:
    """A callback whose ``hook`` does ``action`` on rank 1 only."""

    def __init__(self, comm, hook, action):
        self.comm, self.hook, self.action = comm, hook, action

    def set_fit(self, net, history):
        if self.hook == "set_fit" and self.comm.Get_rank() == 1:
            self.action()

    def on_epoch_end(self, epoch, logs):
        if self.hook == "on_epoch_end" and self.comm.Get_rank() == 1:
            self.action()


@pytest.mark.parametrize("hook, what, error", [
    ("set_fit", "raise", RuntimeError),  # hung: set_fit was called outside the agreement
    ("on_epoch_end", "lr -1", ValueError),  # refused on rank 1 alone: hung
    ("on_epoch_end", "lr 0.5", ValueError),  # the checksum blamed MPI
])
def test_a_callback_on_one_rank_is_agreed(comm, hook, what, error):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    opt = fd.SGD(0.1)

    def action():
        if what == "raise":
            raise RuntimeError("set_fit failed")
        opt.lr = float(what.split()[1])

    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(error):
        net.fit(X, y, epochs=3, batch_size=B, optimizer=opt, comm=comm,
                callbacks=[FailsOnRank1(comm, hook, action)])
    comm.Barrier()


def test_balanced_class_weight_counts_every_rank(comm):
    size = comm.Get_size()
    shards = make_shards(size)
    X, y, _ = shards[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    net.fit(X, y, epochs=2, batch_size=B, shuffle=False, class_weight="balanced", comm=comm)
    ys = np.concatenate([y for _, y, _ in shards])
    counts = np.bincount(ys, minlength=K)
    table = len(ys) / (K * counts)
    ref = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    X1, y1, w1 = interleave([(X, y, table[y]) for X, y, _ in shards], B)
    ref.fit(X1, y1, epochs=2, batch_size=size * B, shuffle=False, sample_weight=w1)
    assert max_diff(net, ref) < 1e-10


def test_balanced_class_weight_counts_the_training_rows_alone(comm):
    """With validation_split, 'balanced' counted every rank's held-out rows too (one
    process counts its training rows alone): the weights are those of the dict the
    training rows give."""
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    args = dict(epochs=2, batch_size=B, shuffle=False, validation_split=0.3, comm=comm)
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    net.fit(X, y, class_weight="balanced", **args)
    probe = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    T = fd.validation.check_targets(y, probe._loss, K, len(y), probe.dtype)
    keep = probe._training_rows(T, 0.3, None)
    assert 0 < len(keep) < len(y)
    counts = np.sum(comm.allgather(np.bincount(np.asarray(y)[keep], minlength=K)), axis=0)
    every = np.sum(comm.allgather(np.bincount(y, minlength=K)), axis=0)
    table = counts.sum() / (K * counts)
    # The held-out rows change the table (stratified, by rounding only), or this is no test.
    assert not np.allclose(table, every.sum() / (K * every), rtol=1e-6, atol=0)
    ref = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    ref.fit(X, y, class_weight={k: float(table[k]) for k in range(K)}, **args)
    assert max_diff(net, ref) == 0


def test_cli_train_distributed(comm, shared_tmp, capsys):
    from fastdnn import cli
    out = os.path.join(shared_tmp, "model.npz")
    code = cli.main(["train", "--distributed", "--dataset", "digits", "--epochs", "2",
                     "--hidden", "16", "--threads", "1", "--out", out])
    assert same_on_all_ranks(comm, code) and code == 0
    printed = capsys.readouterr().out
    if comm.Get_rank() == 0:
        assert f"distributed: {comm.Get_size()} ranks" in printed
        assert "model saved to" in printed
    else:
        assert printed == ""
    comm.Barrier()
    assert fd.MLP.load(out).sizes == [64, 16, 10]


def test_cli_prints_an_agreed_error_once(comm, shared_tmp, capsys):
    # Every rank printed it: the same line once per rank.
    from fastdnn import cli
    out = os.path.join(shared_tmp, "no-such-folder", "model.npz")
    code = cli.main(["train", "--distributed", "--dataset", "parity", "--epochs", "1",
                     "--threads", "1", "--out", out])
    assert same_on_all_ranks(comm, code) and code == 2
    errors = capsys.readouterr().err
    assert errors.count("fastdnn: error:") == (comm.Get_rank() == 0)


@pytest.mark.parametrize("argv, expected", [
    (["--data", "missing.csv", "--target", "x"], 1),
    (["--target", "x"], 2),
    (["--dataset", "parity", "--hidden", "4", "--activation", "relu,relu"], 2),
])
def test_cli_setup_errors_are_printed_once(comm, capsys, argv, expected):
    # Each rank reads the arguments and the data, and each printed the same error.
    from fastdnn import cli
    code = cli.main(["train", "--distributed", "--epochs", "1", "--threads", "1",
                     "--no-save", *argv])
    assert same_on_all_ranks(comm, code) and code == expected
    errors = capsys.readouterr().err
    assert errors.count("fastdnn: error:") == (comm.Get_rank() == 0)


def test_a_communicator_of_one_trains_as_without(comm):
    X, y, w = make_shards(comm.Get_size())[comm.Get_rank()]
    alone = comm.Split(comm.Get_rank(), 0)  # one communicator per rank, of one rank
    nets = [fd.MLP([N_IN, 8, K], dtype="float32", seed=0) for _ in range(2)]
    for net, c in zip(nets, (None, alone)):
        net.fit(X, y, epochs=2, batch_size=B, sample_weight=w, comm=c)
    alone.Free()
    assert np.array_equal(nets[0]._backend.theta, nets[1]._backend.theta)


def test_comm_must_be_an_intracommunicator(comm):
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    with pytest.raises(TypeError, match="mpi4py"):
        net.fit(X, y, epochs=1, comm="world")


def test_arguments_checked_before_a_collective_are_agreed(comm):
    """A check that one rank failed before the plan's collective left the others
    waiting in it forever: 'balanced' class weights, ``verbose``."""
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    last = comm.Get_rank() == comm.Get_size() - 1
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(ValueError) as excinfo:
        net.fit(X, y, epochs=1, batch_size=B, comm=comm,
                class_weight=None if last else "balanced")
    assert "the ranks disagree on class_weight" in agreed_error(comm, excinfo)[1]
    with pytest.raises(ValueError) as excinfo:
        net.fit(X, y, epochs=1, batch_size=B, comm=comm, class_weight={0: 1.0 + last})
    assert "the ranks disagree on class_weight" in agreed_error(comm, excinfo)[1]
    with pytest.raises(TypeError) as excinfo:
        net.fit(X, y, epochs=1, batch_size=B, comm=comm, verbose="yes" if last else False)
    assert "verbose must be True or False" in agreed_error(comm, excinfo)[1]
    net.fit(X, y, epochs=1, batch_size=B, comm=comm)  # and nothing was left in training


class CtrlCAtTheEnd:
    """Sends SIGINT to its own process at the end of the last epoch, on one rank: after
    the fit's last check of the flag."""

    def __init__(self, comm, rank, epochs):
        self.mine = comm.Get_rank() == rank
        self.last = epochs - 1

    def on_epoch_end(self, epoch, logs):
        if self.mine and epoch == self.last:
            os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_in_the_last_epoch_stops_every_rank(comm):
    # Only the pressed rank raised; the others returned, and went their own ways.
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    with pytest.raises(KeyboardInterrupt) as excinfo:
        net.fit(X, y, epochs=3, batch_size=B, comm=comm,
                callbacks=[CtrlCAtTheEnd(comm, comm.Get_size() - 1, 3)])
    assert len(excinfo.value.history) == 3
    assert same_on_all_ranks(comm, net._backend.theta.tobytes())


def test_backup_resumes_each_ranks_validation_split(comm, shared_tmp):
    """Ranks seeded differently each draw their own validation_split; resumed, each
    rank took rank 0's generator and held out rows it had trained on."""
    rank = comm.Get_rank()
    X, y, _ = make_shards(comm.Get_size())[rank]
    path = os.path.join(shared_tmp, "split.backup.npz")

    def fit(callbacks):
        net = fd.MLP([N_IN, 8, K], dtype="float64", seed=10 + rank)
        net.fit(X, y, epochs=4, batch_size=B, optimizer=fd.Adam(0.01), comm=comm,
                validation_split=0.3, callbacks=callbacks)
        return net

    whole = fit([])
    with pytest.raises(RuntimeError):
        fit([fd.BackupAndRestore(path), Crash()])
    resumed = fit([fd.BackupAndRestore(path)])
    assert np.array_equal(resumed._backend.theta, whole._backend.theta)
    comm.Barrier()


def test_a_backup_of_several_ranks_is_refused_by_one_process(comm, shared_tmp):
    X, y, _ = make_shards(comm.Get_size())[comm.Get_rank()]
    path = os.path.join(shared_tmp, "ranks.backup.npz")
    with pytest.raises(RuntimeError):
        fd.MLP([N_IN, 8, K], dtype="float64", seed=0).fit(
            X, y, epochs=4, batch_size=B, comm=comm,
            callbacks=[fd.BackupAndRestore(path), Crash()])
    if comm.Get_rank() == 0:  # it resumed a 2-rank fit, another global batch
        with pytest.raises(ValueError, match="it holds a fit on .* ranks"):
            fd.MLP([N_IN, 8, K], dtype="float64", seed=0).fit(
                X, y, epochs=4, batch_size=B, callbacks=[fd.BackupAndRestore(path)])
    comm.Barrier()


def test_a_rank_that_counts_for_nothing_trains(comm):
    """Rows of no weight on one rank, from sample or class weights, with held-out rows
    (its accuracy divided by 0 there, and the other ranks waited), and an empty shard:
    each counts for nothing, as in one process on the union."""
    rank, size = comm.Get_rank(), comm.Get_size()
    shards = make_shards(size)
    X, y, w = shards[rank]
    if rank == 1:  # only label 1, for the class weights
        y = np.ones(len(y), dtype=y.dtype)
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    hist = net.fit(X, y, epochs=2, batch_size=B, sample_weight=w * (rank != 1),
                   validation_split=0.3, comm=comm)
    assert np.isfinite(hist.val_metric).all() and same_on_all_ranks(comm, hist.history)
    hist = net.fit(X, y, epochs=2, batch_size=B, class_weight={1: 0.0}, comm=comm)
    assert same_on_all_ranks(comm, hist.history)
    # An empty shard on rank 1: one process on the other ranks' rows.
    local = shards[rank] if rank != 1 else (X[:0], y[:0], w[:0])
    net = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    hist = net.fit(local[0], local[1], epochs=2, batch_size=B, shuffle=False, comm=comm,
                   validation_data=(local[0], local[1]))
    rest = [s for r, s in enumerate(shards) if r != 1]
    ref = fd.MLP([N_IN, 8, K], dtype="float64", seed=0)
    X1, y1, w1 = interleave(rest, B)
    Xv, yv = (np.concatenate(parts) for parts in list(zip(*rest))[:2])
    ref_hist = ref.fit(X1, y1, epochs=2, batch_size=(size - 1) * B, shuffle=False,
                       sample_weight=(w1 > 0).astype(float), validation_data=(Xv, yv))
    assert max_diff(net, ref) < 1e-10
    np.testing.assert_allclose(hist.val_loss, ref_hist.val_loss, rtol=1e-10)
    net.fit(local[0], local[1], epochs=1, batch_size=B, class_weight="balanced", comm=comm)


def test_a_refused_fit_leaves_the_net_and_optimizer_as_they_were(comm, shared_tmp):
    """As in one process (model._kept_for_refusal): the checks drew validation_split from
    the net's generator and a backup rewound it, and the optimizer was claimed; a refused
    distributed fit kept all that, so the same fit rerun without the fault trained
    differently from one never refused."""
    rank = comm.Get_rank()
    X, y, _ = make_shards(comm.Get_size())[rank]
    path = os.path.join(shared_tmp, "refused.backup.npz")
    kw = dict(batch_size=B, validation_split=0.3, comm=comm)
    if rank == 0:  # a backup of a fit in one process: refused on several ranks
        with pytest.raises(RuntimeError):
            fd.MLP([N_IN, 8, K], dtype="float64", seed=5).fit(
                X, y, epochs=4, batch_size=B, validation_split=0.3,
                callbacks=[fd.BackupAndRestore(path), Crash()])
    comm.Barrier()
    for fault in (dict(epochs=2 + rank), dict(epochs=2, callbacks=[fd.BackupAndRestore(path)])):
        net, opt = fd.MLP([N_IN, 8, K], dtype="float64", seed=rank), fd.Adam(0.01)
        state = net._rng.bit_generator.state
        with pytest.raises(ValueError):
            net.fit(X, y, optimizer=opt, **kw, **fault)
        assert net._rng.bit_generator.state == state
        assert opt.t == 0 and opt.state is None
        net.fit(X, y, epochs=2, optimizer=opt, **kw)
        ref = fd.MLP([N_IN, 8, K], dtype="float64", seed=rank)
        ref.fit(X, y, epochs=2, optimizer=fd.Adam(0.01), **kw)
        assert np.array_equal(net._backend.theta, ref._backend.theta)
    comm.Barrier()
    if rank == 0:
        os.remove(path)
