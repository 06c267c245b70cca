"""Train the same MLPs with fastdnn and its peers; write ``docs/peers.md`` and ``docs/peers.png``.

Every system trains the same net, on the same data, from the same initial weights, with
plain SGD (constant learning rate, no momentum, no weight decay, no shuffling, batches in
order), in float32. Each (round, workload, system) runs in its own subprocess::

    python benchmarks/peers.py --worker torch --workload d     # prints one JSON line

and the driver interleaves the systems over the rounds and reports medians::

    python benchmarks/peers.py                          # all workloads, 3 rounds, writes docs/
    python benchmarks/peers.py --workloads a,b --rounds 5
    python benchmarks/peers.py --quick                  # fewer samples, 1 round, prints only

Systems: ``fastdnn``, ``torch`` (eager, ``torch.set_num_threads(2)``; ``torch1``: the
same on one thread), ``jax`` (the whole
epoch is one ``jax.jit`` of a ``lax.scan`` over batches; compile time is measured on its
own), ``sklearn`` (``MLPClassifier``/``MLPRegressor``, ``solver="sgd"``, one
``partial_fit`` per epoch), ``numpy`` (a plain loop) and ``fann`` (FANN 2.2's online
training, ``FANN_TRAIN_INCREMENTAL``, through the C harness ``benchmarks/fann/fann_sgd.c``,
built on first use with ``cc -O2 ... -lfloatfann``; tanh/mse batch-1 workloads only). A
peer that is not installed (for FANN: no C compiler or no ``libfann-dev``) is skipped
with a note.

``docs/peers.md`` keeps one section per CPU model and set of workloads: a run replaces
its own and keeps the others (older measurements, other CPU families); ``peers.png`` has
a panel per section.

Timing: in each worker, one warm-up epoch (it includes JIT compilation or numba cache
loading and is reported as "warm-up"), then ``epochs`` timed epochs, each timed on its
own; the worker reports the median. The driver reports the median over rounds.
After training, each worker computes the loss of its final weights with one shared
float64 NumPy function, so the table also shows that all systems did the same work.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("fastdnn", "jax", "torch", "torch1", "numpy", "sklearn", "fann")
N_THREADS = 2
SEED = 0
#: ``MLP(n_threads=...)`` in the fastdnn worker; None = fastdnn's default policy.
FASTDNN_THREADS = None


# --------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    """One training problem, identical for all systems."""

    key: str
    title: str
    sizes: tuple
    activation: str  # "tanh" | "relu"
    loss: str  # "mse" | "cross_entropy"
    batch: int
    n: int  # samples per epoch (a multiple of batch: no ragged last batch)
    n_quick: int
    lr: float
    epochs: int = 5  # timed epochs per worker (after one warm-up epoch)
    data: str = ""
    note: str = ""
    gflops: bool = False  # report GFLOP/s for this workload
    extra: dict = field(default_factory=dict)

    def samples(self, quick):
        return self.n_quick if quick else self.n

    def flops_per_sample(self):
        """Training FLOPs per sample: forward 2*m*n per layer, dW 2*m*n, delta_prev 2*m*n
        (no delta_prev for the first layer). Activations, loss and update not counted."""
        pairs = list(zip(self.sizes[:-1], self.sizes[1:]))
        mn = [m * n for m, n in pairs]
        return 2 * sum(mn) + 2 * sum(mn) + 2 * sum(mn[1:])


WORKLOADS = {
    w.key: w
    for w in [
        Workload(
            "a", "2-8-8-1 tanh, batch 1 (course SGD)", (2, 8, 8, 1), "tanh", "mse",
            batch=1, n=2000, n_quick=500, lr=0.05, data="saddle",
            note="y = x1*x2 on U[-1,1]^2; online SGD, one sample per step",
        ),
        Workload(
            "b", "16-32-32-32-2 ReLU, batch 64 (parity)", (16, 32, 32, 32, 2), "relu",
            "cross_entropy", batch=64, n=16384, n_quick=2048, lr=0.1, data="parity",
            note="16 random bits in {0,1}, label = their parity (XOR)",
        ),
        Workload(
            "c", "1-16-16-16-16-1 ReLU, batch 32 (zig-zag)", (1, 16, 16, 16, 16, 1),
            "relu", "mse", batch=32, n=8192, n_quick=1024, lr=0.05, data="zigzag",
            note="x on U[-1,1], y = triangle wave with 4 teeth",
        ),
        Workload(
            "d", "64-128-128-10 ReLU, batch 128 (digits-like)", (64, 128, 128, 10),
            "relu", "cross_entropy", batch=128, n=16384, n_quick=2048, lr=0.05,
            data="teacher", note="x ~ U[0,16]^64 / 16, label from a random linear teacher",
        ),
        Workload(
            "e", "784-1024-1024-10 ReLU, batch 256 (MNIST-sized)", (784, 1024, 1024, 10),
            "relu", "cross_entropy", batch=256, n=4096, n_quick=512, lr=0.01, epochs=3,
            data="teacher", note="x ~ U[0,1]^784, label from a random linear teacher",
            gflops=True,
        ),
        Workload(
            "f", "1024-4096-4096-1024 ReLU, batch 512 (wide)", (1024, 4096, 4096, 1024),
            "relu", "mse", batch=512, n=1536, n_quick=512, lr=0.01, epochs=2,
            data="autoencoder", note="x ~ N(0,1)^1024, target y = x (mse)", gflops=True,
        ),
        # Online SGD on larger nets: the nets issue 8 measured against FANN.
        Workload(
            "g", "16-32-32-2 tanh, batch 1 (online SGD)", (16, 32, 32, 2), "tanh", "mse",
            batch=1, n=8192, n_quick=1024, lr=0.05, data="tanh_teacher",
            note="x ~ U[-1,1]^16, y = tanh(x T) for a random teacher T (16 x 2); online "
                 "SGD, one sample per step",
        ),
        Workload(
            "h", "64-128-128-10 tanh, batch 1 (online SGD, one-hot)", (64, 128, 128, 10),
            "tanh", "mse", batch=1, n=4096, n_quick=512, lr=0.05, data="teacher_onehot",
            note="x ~ U[0,16]^64 / 16, y = one-hot label of a random linear teacher "
                 "(0/1 targets, mse); online SGD, one sample per step",
        ),
    ]
}


def make_data(wl: Workload, n: int):
    """Deterministic float32 data for a workload: X (n, d) and y ((n,) int64 labels for
    cross_entropy, (n, k) float32 targets for mse)."""
    rng = np.random.default_rng(SEED + 1)
    d, k = wl.sizes[0], wl.sizes[-1]
    if wl.data == "saddle":
        X = rng.uniform(-1, 1, (n, d))
        y = (X[:, 0] * X[:, 1])[:, None]
    elif wl.data == "parity":
        X = rng.integers(0, 2, (n, d)).astype(np.float64)
        y = X.sum(axis=1).astype(np.int64) % 2
    elif wl.data == "zigzag":
        X = rng.uniform(-1, 1, (n, 1))
        t = (X[:, 0] + 1) * 2  # 4 teeth on [-1, 1]
        y = (1 - 4 * np.abs(t - np.floor(t) - 0.5))[:, None]
    elif wl.data == "teacher":
        X = rng.integers(0, 17, (n, d)) / 16.0 if d == 64 else rng.uniform(0, 1, (n, d))
        T = rng.normal(size=(d, k))
        Xc = X - X.mean(axis=0)
        y = np.argmax(Xc @ T, axis=1).astype(np.int64)
    elif wl.data == "teacher_onehot":
        X = rng.integers(0, 17, (n, d)) / 16.0
        T = rng.normal(size=(d, k))
        y = np.eye(k)[np.argmax((X - X.mean(axis=0)) @ T, axis=1)]
    elif wl.data == "tanh_teacher":
        X = rng.uniform(-1, 1, (n, d))
        T = rng.normal(size=(d, k)) / np.sqrt(d / 3.0)  # x T has unit variance
        y = np.tanh(X @ T)
    elif wl.data == "autoencoder":
        X = rng.normal(size=(n, d))
        y = X.copy()
    else:  # pragma: no cover
        raise ValueError(wl.data)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if wl.loss == "mse":
        y = np.ascontiguousarray(y, dtype=np.float32)
    return X, y


def init_weights(sizes, seed=SEED):
    """Glorot-uniform W (fan_in, fan_out), zero b; float32. Shared by every system."""
    rng = np.random.default_rng(seed)
    out = []
    for m, n in zip(sizes[:-1], sizes[1:]):
        lim = np.sqrt(6.0 / (m + n))
        W = rng.uniform(-lim, lim, (m, n)).astype(np.float32)
        out.append((W, np.zeros(n, np.float32)))
    return out


def reference_loss(weights, X, y, wl: Workload, n_max=2048):
    """Mean loss of the net on the first n_max samples, float64 NumPy (torch conventions)."""
    A = X[:n_max].astype(np.float64)
    for i, (W, b) in enumerate(weights):
        A = A @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
        if i < len(weights) - 1:
            A = np.tanh(A) if wl.activation == "tanh" else np.maximum(A, 0)
    yy = y[:n_max]
    if wl.loss == "mse":
        return float(np.mean((A - yy) ** 2))
    m = A.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(A - m).sum(axis=1))
    return float(np.mean(lse - A[np.arange(len(yy)), yy]))


def _timed_epochs(run_epoch, epochs):
    """Run one warm-up epoch and `epochs` timed epochs; return (warmup_s, [epoch_s])."""
    t0 = time.perf_counter()
    run_epoch()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - t0)
    return warm, times


# --------------------------------------------------------------------------- workers
# Each worker returns a dict with: version, warmup_s, epoch_s (list), weights (final
# [(W, b)], NumPy, W (fan_in, fan_out)), and optionally compile_s, threads, note.


def worker_numpy(wl, X, y, weights, epochs, tanh_clip=None):
    """Plain NumPy: forward, backprop and update written out, float32 throughout.

    ``tanh_clip``: take tanh's derivative ``1 - a^2`` at ``a`` clipped to
    ``[-tanh_clip, tanh_clip]``, as FANN does (0.98); the tests' oracle for FANN.
    """
    Ws = [W.copy() for W, _ in weights]
    bs = [b.copy() for _, b in weights]
    L = len(Ws)
    n, B, lr = X.shape[0], wl.batch, np.float32(wl.lr)
    tanh = wl.activation == "tanh"
    if wl.loss == "cross_entropy":
        onehot = np.eye(wl.sizes[-1], dtype=np.float32)[y]
    else:
        k = wl.sizes[-1]

    def run_epoch():
        for s in range(0, n, B):
            A = [X[s:s + B]]
            for i in range(L):
                Z = A[-1] @ Ws[i] + bs[i]
                if i < L - 1:
                    Z = np.tanh(Z) if tanh else np.maximum(Z, 0, out=Z)
                A.append(Z)
            Zl = A[-1]
            m = Zl.shape[0]
            if wl.loss == "cross_entropy":
                E = np.exp(Zl - Zl.max(axis=1, keepdims=True))
                delta = (E / E.sum(axis=1, keepdims=True) - onehot[s:s + B]) / m
            else:
                delta = (Zl - y[s:s + B]) * np.float32(2.0 / (m * k))
            for i in range(L - 1, -1, -1):
                dW = A[i].T @ delta
                db = delta.sum(axis=0)
                if i > 0:
                    delta = delta @ Ws[i].T
                    if tanh:
                        a = A[i] if tanh_clip is None else np.clip(A[i], -tanh_clip, tanh_clip)
                        delta *= 1 - a * a
                    else:
                        delta *= A[i] > 0
                Ws[i] -= lr * dW
                bs[i] -= lr * db

    warm, times = _timed_epochs(run_epoch, epochs)
    return dict(version=np.__version__, warmup_s=warm, epoch_s=times,
                weights=list(zip(Ws, bs)), threads="BLAS default")


def torch_sequential(torch, weights, activation="relu"):
    """A ``torch.nn.Sequential`` MLP holding ``weights`` ([(W, b)], W (fan_in, fan_out))."""
    layers = []
    for i, (W, b) in enumerate(weights):
        lin = torch.nn.Linear(*W.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(weights) - 1:
            layers.append(torch.nn.Tanh() if activation == "tanh" else torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def worker_torch(wl, X, y, weights, epochs, n_threads=N_THREADS):
    """PyTorch eager, the textbook loop: zero_grad, forward, loss, backward, step."""
    import torch

    torch.set_num_threads(n_threads)
    model = torch_sequential(torch, weights, wl.activation)
    crit = torch.nn.CrossEntropyLoss() if wl.loss == "cross_entropy" else torch.nn.MSELoss()
    opt = torch.optim.SGD(model.parameters(), lr=wl.lr, momentum=0.0)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    n, B = X.shape[0], wl.batch

    def run_epoch():
        for s in range(0, n, B):
            opt.zero_grad(set_to_none=True)
            loss = crit(model(Xt[s:s + B]), yt[s:s + B])
            loss.backward()
            opt.step()

    warm, times = _timed_epochs(run_epoch, epochs)
    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    final = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
             for m in lins]
    return dict(version=torch.__version__, warmup_s=warm, epoch_s=times, weights=final,
                threads=torch.get_num_threads())


def jax_epoch(wl, X, y, weights):
    """JAX's epoch of workload ``wl``: ``jax.jit(lax.scan(sgd_step, params, batches))``,
    compiled here.  Returns ``(run_epoch, final_weights, compile_seconds)``: each
    ``run_epoch()`` trains one epoch on from the last; ``final_weights()`` the weights now,
    as NumPy arrays.  Shared with ``benchmarks/paired_epochs.py``."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    L = len(weights)
    act = jnp.tanh if wl.activation == "tanh" else jax.nn.relu
    lr = wl.lr

    def loss_fn(params, xb, yb):
        A = xb
        for i, (W, b) in enumerate(params):
            A = A @ W + b
            if i < L - 1:
                A = act(A)
        if wl.loss == "cross_entropy":
            lse = jax.nn.logsumexp(A, axis=1)
            return jnp.mean(lse - jnp.take_along_axis(A, yb[:, None], axis=1)[:, 0])
        return jnp.mean((A - yb) ** 2)

    def step(params, xy):
        loss, g = jax.value_and_grad(loss_fn)(params, *xy)
        params = jax.tree_util.tree_map(lambda p, d: p - lr * d, params, g)
        return params, loss

    def epoch(params, Xb, yb):
        params, losses = lax.scan(step, params, (Xb, yb))
        return params, jnp.mean(losses)

    n, B = X.shape[0], wl.batch
    Xb = jnp.asarray(X.reshape(n // B, B, -1))
    yb = jnp.asarray(y.astype(np.int32).reshape(n // B, B) if wl.loss == "cross_entropy"
                     else y.reshape(n // B, B, -1))
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in weights]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "donated buffers were not usable" on old CPUs
        t0 = time.perf_counter()
        compiled = jax.jit(epoch, donate_argnums=0).lower(params, Xb, yb).compile()
        compile_s = time.perf_counter() - t0
    state = {"p": params}

    def run_epoch():
        p, loss = compiled(state["p"], Xb, yb)
        jax.block_until_ready(p)
        state["p"] = p

    def final_weights():
        return [(np.asarray(W), np.asarray(b)) for W, b in state["p"]]

    return run_epoch, final_weights, compile_s


def worker_jax(wl, X, y, weights, epochs):
    """JAX: one epoch = jax.jit(lax.scan(sgd_step, params, batches)); compile timed alone."""
    import jax

    run_epoch, final_weights, compile_s = jax_epoch(wl, X, y, weights)
    warm, times = _timed_epochs(run_epoch, epochs)
    return dict(version=jax.__version__, warmup_s=warm, epoch_s=times,
                weights=final_weights(), compile_s=compile_s, threads="XLA default")


def worker_sklearn(wl, X, y, weights, epochs):
    """scikit-learn MLP, solver="sgd", momentum 0, one partial_fit per epoch."""
    import sklearn
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    common = dict(
        hidden_layer_sizes=wl.sizes[1:-1], activation=wl.activation, solver="sgd",
        alpha=0.0, batch_size=wl.batch, learning_rate="constant", momentum=0.0,
        nesterovs_momentum=False, shuffle=False, early_stopping=False, max_iter=1,
        random_state=0,
    )
    k = wl.sizes[-1]
    W_init = [W.copy() for W, _ in weights]
    b_init = [b.copy() for _, b in weights]
    note = None
    if wl.loss == "cross_entropy":
        est = MLPClassifier(learning_rate_init=wl.lr, **common)
        fit_kw = dict(classes=np.arange(k))
        if k == 2:
            # sklearn uses one logistic output for two classes; sigmoid(z1 - z0) is the
            # same model as a softmax over (z0, z1), so start from the difference.
            W_init[-1] = W_init[-1][:, 1:] - W_init[-1][:, :1]
            b_init[-1] = b_init[-1][1:] - b_init[-1][:1]
            note = "2 classes: 1 logistic output (same model, slightly different SGD path)"
    else:
        # sklearn's squared loss is mean/2 but its gradient is (p - y)/n_samples, i.e.
        # k/2 times torch's MSELoss gradient; scale lr so the SGD path is the same.
        est = MLPRegressor(learning_rate_init=wl.lr * 2.0 / k, **common)
        fit_kw = {}
    yk = y[:, 0] if (wl.loss == "mse" and k == 1) else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.partial_fit(X[: wl.batch], yk[: wl.batch], **fit_kw)  # allocates coefs_
    # Overwrite in place: the optimizer holds references to these arrays.
    for i in range(len(W_init)):
        est.coefs_[i][...] = W_init[i]
        est.intercepts_[i][...] = b_init[i]

    def run_epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.partial_fit(X, yk)

    warm, times = _timed_epochs(run_epoch, epochs)
    final = [(W.copy(), b.copy()) for W, b in zip(est.coefs_, est.intercepts_)]
    if wl.loss == "cross_entropy" and k == 2:
        W, b = final[-1]
        final[-1] = (np.hstack([np.zeros_like(W), W]), np.concatenate([[0], b]))
    return dict(version=sklearn.__version__, warmup_s=warm, epoch_s=times, weights=final,
                threads="BLAS default", note=note)


def worker_fastdnn(wl, X, y, weights, epochs):
    """fastdnn through its public API: one ``fit(epochs=1)`` warm-up, then one
    ``fit(epochs=epochs)`` whose per-epoch times (``History.seconds``: the compiled
    epoch, as JAX's timing is its jitted epoch) are reported.

    ``n_threads`` is fastdnn's default (None: Numba's pool, all cores) unless
    ``--fastdnn-threads`` says otherwise.
    """
    import fastdnn as fd

    n_threads = FASTDNN_THREADS
    net = fd.MLP(list(wl.sizes), activation=wl.activation, loss=wl.loss,
                 dtype="float32", seed=SEED, n_threads=n_threads)
    net.set_weights([(W.copy(), b.copy()) for W, b in weights])
    yy = y[:, 0] if (wl.loss == "mse" and wl.sizes[-1] == 1) else y
    opt = fd.SGD(lr=wl.lr, momentum=0.0)
    sched = fd.Constant()

    def fit(n_epochs):
        return net.fit(X, yy, epochs=n_epochs, batch_size=wl.batch, optimizer=opt,
                       schedule=sched, shuffle=False)

    t0 = time.perf_counter()
    fit(1)
    warm = time.perf_counter() - t0
    _until_the_compile_helper_is_done()
    times = list(fit(epochs).seconds)
    return dict(version=getattr(fd, "__version__", "?"), warmup_s=warm, epoch_s=times,
                weights=net.get_weights(), threads=n_threads)


def _until_the_compile_helper_is_done(most=120.0):
    """Wait while fastdnn's compile helper (``kernels/cpu/warmup.py``) still compiles, in
    the round whose worker found the cache empty: it goes on after the warm-up epoch with
    what the next process needs, on a core the timed epochs would share (in the sitting of
    2026-11-28 15:10 that round's e ran at 16,416 samples/s, the next at 18,885; AMD EPYC,
    other load too).  A later round's worker starts none, and older trees
    (``benchmarks/paired_epochs.py`` runs them) have no helper to wait for."""
    try:
        from fastdnn.kernels.cpu import warmup
        warmup.helping
    except (ImportError, AttributeError):
        return
    end = time.monotonic() + most
    while warmup.helping() and time.monotonic() < end:
        time.sleep(0.01)


def _mkl_sgemm():
    """``C = A @ B`` (float32, C-ordered) on Intel MKL's own threading, or ``None`` where
    MKL is not installed (the ``fastdnn[mkl]`` extra)."""
    import ctypes

    from fastdnn.kernels.cpu import mkl

    path = mkl.find()
    if path is None:
        return None
    lib = ctypes.CDLL(path)  # this worker's own MKL set-up: its default threads
    gemm = lib.cblas_sgemm_64
    gemm.restype = None
    i64, f32, ptr = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
    gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, f32, ptr, i64,
                     ptr, i64, f32, ptr, i64]

    def sgemm(A, B, C):
        (m, k), n = A.shape, B.shape[1]
        gemm(101, 111, 111, m, n, k, 1.0, A.ctypes.data, k, B.ctypes.data, n, 0.0,
             C.ctypes.data, n)  # row-major, no transposes
    return sgemm


def worker_matmul(shapes, min_repeats=5, min_seconds=0.5):
    """Machine fp32 matmul rate: NumPy (BLAS) A(m,k) @ B(k,n) in GFLOP/s, best call; and
    Intel MKL's (keys ``"MKL ..."``) where it is installed.

    Best, not median: on a shared machine a 2-thread BLAS call that waits for a
    descheduled thread takes a whole scheduler slice; the best call is the machine.
    """
    rng = np.random.default_rng(0)
    out = {}
    products = [("", lambda A, B, C: np.matmul(A, B, out=C))]
    mkl_sgemm = _mkl_sgemm()
    if mkl_sgemm is not None:
        products.append(("MKL ", mkl_sgemm))
    for m, k, n in shapes:
        A = rng.standard_normal((m, k), dtype=np.float32)
        Bm = rng.standard_normal((k, n), dtype=np.float32)
        for label, product in products:
            C = A @ Bm
            product(A, Bm, C)
            ts, start = [], time.perf_counter()
            while len(ts) < min_repeats or time.perf_counter() - start < min_seconds:
                t0 = time.perf_counter()
                product(A, Bm, C)
                ts.append(time.perf_counter() - t0)
            out[f"{label}{m}x{k}@{k}x{n}"] = 2.0 * m * k * n / min(ts) / 1e9
    return out


def worker_torch1(wl, X, y, weights, epochs):
    """PyTorch eager on one thread: on small nets, and on a busy machine, its 2-thread
    OpenMP pool waits on the second thread more than it gains from it."""
    return worker_torch(wl, X, y, weights, epochs, n_threads=1)


FANN_SOURCE = ROOT / "benchmarks" / "fann" / "fann_sgd.c"


def fann_supports(wl):
    """FANN 2.2 has no ReLU and no softmax cross-entropy, and its incremental training
    (the one that is SGD) takes one sample per step: tanh, mse, batch 1 only."""
    return wl.activation == "tanh" and wl.loss == "mse" and wl.batch == 1


def fann_binary():
    """The FANN harness (``benchmarks/fann/fann_sgd.c``), compiled on first use with
    ``cc -O2 ... -lfloatfann`` into a temp folder named by a hash of the source.

    Raises ImportError (the worker reports the system skipped) when there is no C
    compiler or the build fails, e.g. without ``libfann-dev``.
    """
    import hashlib
    import shutil
    import tempfile

    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise ImportError("no C compiler (cc) to build benchmarks/fann/fann_sgd.c")
    key = hashlib.sha1(FANN_SOURCE.read_bytes() + cc.encode()).hexdigest()[:12]
    exe = Path(tempfile.gettempdir()) / f"fastdnn-peers-fann-{key}" / "fann_sgd"
    if exe.exists():
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(f"fann_sgd.{os.getpid()}")
    try:
        p = subprocess.run([cc, "-O2", "-o", str(tmp), str(FANN_SOURCE), "-lfloatfann",
                            "-lm"], capture_output=True, text=True)
    except OSError as exc:
        raise ImportError(f"cannot run the C compiler {cc}: {exc}") from exc
    if p.returncode != 0:
        first = (p.stderr.strip().splitlines() or [f"rc={p.returncode}"])[0]
        hint = " (is libfann-dev installed?)" if "fann" in p.stderr else ""
        raise ImportError(f"cannot build benchmarks/fann/fann_sgd.c{hint}: {first}")
    os.replace(tmp, exe)  # atomic: a concurrent worker sees the whole file or none
    return exe


def _fann_version(exe):
    """FANN's version from the file name of the libfloatfann the harness loads."""
    import re

    try:
        ldd = subprocess.run(["ldd", str(exe)], capture_output=True, text=True).stdout
    except OSError:
        return "?"
    for line in ldd.splitlines():
        if "libfloatfann" in line and "=>" in line:
            lib = os.path.realpath(line.split("=>")[1].split("(")[0].strip())
            m = re.search(r"\.so\.([\d.]+)$", lib)
            return m.group(1) if m else Path(lib).name
    return "?"


def worker_fann(wl, X, y, weights, epochs):
    """FANN 2.2, float build, ``FANN_TRAIN_INCREMENTAL`` (online SGD, in order), run by
    the C harness ``benchmarks/fann/fann_sgd.c``; its header says how the net, the
    weights and the timing map onto FANN's.

    FANN's update is ``w += lr * (t - z) * a_prev`` (linear output, linear error
    function); the mse gradient of the other systems is ``2 (z - t) / k`` for k
    outputs, so FANN gets ``lr * 2 / k``.
    """
    import tempfile

    if not fann_supports(wl):
        raise ValueError(f"FANN runs tanh/mse/batch-1 workloads only, not ({wl.key})")
    exe = fann_binary()
    k = wl.sizes[-1]
    header = np.array([len(wl.sizes), *wl.sizes, X.shape[0], epochs], "<i4")
    with tempfile.TemporaryDirectory() as tmp:
        path_in, path_out = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        with open(path_in, "wb") as f:
            parts = [header, np.array([wl.lr * 2.0 / k]), X, y.reshape(len(X), k)]
            for W, b in weights:
                parts += [W, b]
            for a in parts:
                f.write(np.ascontiguousarray(a, "<f4" if a is not header else "<i4"))
        p = subprocess.run([str(exe), str(path_in), str(path_out)], capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip() or f"fann_sgd rc={p.returncode}")
        raw = path_out.read_bytes()
    times = np.frombuffer(raw, "<f8", count=epochs + 1)
    flat = np.frombuffer(raw, "<f4", offset=times.nbytes)
    final, pos = [], 0
    for m, n in zip(wl.sizes[:-1], wl.sizes[1:]):
        W = flat[pos:pos + m * n].reshape(m, n).copy()
        b = flat[pos + m * n:pos + m * n + n].copy()
        pos += m * n + n
        final.append((W, b))
    if pos != flat.size:
        raise RuntimeError(f"fann_sgd wrote {flat.size} weights, expected {pos}")
    return dict(version=_fann_version(exe), warmup_s=float(times[0]),
                epoch_s=times[1:].tolist(), weights=final, threads=1)


WORKERS = {
    "fastdnn": worker_fastdnn,
    "torch": worker_torch,
    "torch1": worker_torch1,
    "jax": worker_jax,
    "sklearn": worker_sklearn,
    "numpy": worker_numpy,
    "fann": worker_fann,
}
IMPORT_NAME = {"fastdnn": "fastdnn", "torch": "torch", "torch1": "torch", "jax": "jax",
               "sklearn": "sklearn", "numpy": "numpy"}
#: Systems that run only some workloads: (which, why the others are left out).
SUPPORTS = {"fann": (fann_supports, ("FANN 2.2 has no ReLU and no softmax cross-entropy, "
                                     "and FANN_TRAIN_INCREMENTAL is batch 1: it runs the "
                                     "tanh/mse batch-1 workloads only"))}


def supports(system, wl):
    """Whether ``system`` can train workload ``wl`` at all (not: whether it is installed)."""
    return system not in SUPPORTS or SUPPORTS[system][0](wl)


def check_available(system):
    """Import the system (for FANN: build its harness); the exception says why not."""
    if system == "fann":
        fann_binary()
        return
    mod = __import__(IMPORT_NAME[system])
    if system == "fastdnn" and not hasattr(mod, "MLP"):
        raise ImportError("fastdnn has no MLP yet")


def matmul_shapes(workloads):
    """(m, k, n) of the largest layer of each GFLOP/s workload, at its batch size."""
    shapes = []
    for wl in workloads:
        if wl.gflops:
            pairs = list(zip(wl.sizes[:-1], wl.sizes[1:]))
            k, n = max(pairs, key=lambda p: p[0] * p[1])
            shapes.append((wl.batch, k, n))
    return shapes


def run_worker(system, key, quick):
    """Body of ``--worker``: returns the JSON-able result dict."""
    if system == "matmul":
        wls = [WORKLOADS[k] for k in key.split(",")]
        return dict(system="matmul", gflops=worker_matmul(matmul_shapes(wls)))
    wl = WORKLOADS[key]
    if not supports(system, wl):
        return dict(system=system, workload=key, unsupported=SUPPORTS[system][1])
    try:
        check_available(system)
    except Exception as exc:  # ImportError, or a broken install
        return dict(system=system, workload=key, skipped=f"{type(exc).__name__}: {exc}")
    n = wl.samples(quick)
    X, y = make_data(wl, n)
    weights = init_weights(wl.sizes)
    epochs = 1 if quick else wl.epochs
    res = WORKERS[system](wl, X, y, weights, epochs)
    final = res.pop("weights")
    res.update(system=system, workload=key, n=n, epochs_timed=epochs,
               loss_init=reference_loss(weights, X, y, wl),
               loss=reference_loss(final, X, y, wl))
    return res


# --------------------------------------------------------------------------- driver
def _fastdnn_cache_dir(package=None):
    """A numba cache folder named by a hash of fastdnn's sources: those of the package
    folder ``package`` (the one holding ``__init__.py``), by default the importable one
    (``None`` if there is none).

    Numba checks a cached function against its own file only, not against the files
    of the kernels it calls (whose code it holds a copy of), so after an edit to, say,
    dense.py the cached epoch loop can run stale machine code (we saw segfaults).
    A folder per source hash always holds code built from the sources measured; the
    first round compiles, the others load from it.  A new source state's folder makes
    room: only the :data:`KEPT_CACHES` latest used stay (each edit left one, 1-2 MB, for
    good: 29 on one machine).
    """
    import hashlib
    import importlib.util
    import tempfile

    if package is None:
        spec = importlib.util.find_spec("fastdnn")
        if spec is None or spec.origin is None:
            return None
        package = Path(spec.origin).parent
    h = hashlib.sha1()
    for f in sorted(Path(package).rglob("*.py")):
        h.update(f.read_bytes())
    folder = Path(tempfile.gettempdir()) / f"fastdnn-peers-numba-{h.hexdigest()[:12]}"
    if not folder.exists():
        _prune_caches(folder.parent)
    return str(folder)


#: The source states' kernel caches :func:`_fastdnn_cache_dir` keeps.
KEPT_CACHES = 4


def _prune_caches(parent):
    """Remove the ``fastdnn-peers-numba-*`` folders in ``parent`` but the
    ``KEPT_CACHES - 1`` latest used (by modification time), for a new one."""
    import shutil

    def used(folder):
        try:
            return folder.stat().st_mtime
        except OSError:  # removed meanwhile
            return 0.0

    folders = sorted(parent.glob("fastdnn-peers-numba-*"), key=used, reverse=True)
    for old in folders[KEPT_CACHES - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def _spawn(system, key, quick, timeout):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", system,
           "--workload", key] + (["--quick"] if quick else [])
    if FASTDNN_THREADS is not None:
        cmd += ["--fastdnn-threads", str(FASTDNN_THREADS)]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(N_THREADS))
    env.setdefault("OPENBLAS_NUM_THREADS", str(N_THREADS))
    env.setdefault("NUMBA_NUM_THREADS", str(N_THREADS))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if system == "fastdnn" and "NUMBA_CACHE_DIR" not in os.environ:
        cache = _fastdnn_cache_dir()
        if cache:
            env["NUMBA_CACHE_DIR"] = cache
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(system=system, workload=key, error=f"timeout after {timeout} s")
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        return dict(system=system, workload=key, error=" | ".join(tail) or f"rc={p.returncode}")
    return json.loads(lines[-1])


def drive(args):
    keys = args.workloads.split(",")
    wls = [WORKLOADS[k] for k in keys]
    systems = [s for s in args.systems.split(",") if s]
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    results = {(s, k): [] for s in systems for k in keys}
    args.load_before = _loadavg()
    args.load_rounds = []
    skipped, errors, matmul = {}, {}, []
    for r in range(rounds):
        args.load_rounds.append(_loadavg().split("/")[0])
        # Rotate the order each round so no system always runs right after another.
        order = systems[r % len(systems):] + systems[: r % len(systems)]
        if any(w.gflops for w in wls):
            mm = _spawn("matmul", ",".join(keys), args.quick, args.timeout)
            if "gflops" in mm:
                matmul.append(mm["gflops"])
            else:  # the SGEMM targets' rows went missing without a word
                print(f"[round {r + 1}] matmul ERROR: {mm.get('error', mm)}", flush=True)
        for k in keys:
            for s in order:
                if s in skipped or not supports(s, WORKLOADS[k]):
                    continue
                res = _spawn(s, k, args.quick, args.timeout)
                if "skipped" in res:
                    skipped[s] = res["skipped"]
                    print(f"[round {r + 1}] {s:8s} skipped: {res['skipped']}", flush=True)
                elif "error" in res:
                    errors.setdefault((s, k), res["error"])
                    print(f"[round {r + 1}] {k} {s:8s} ERROR: {res['error']}", flush=True)
                else:
                    results[(s, k)].append(res)
                    med = statistics.median(res["epoch_s"])
                    print(f"[round {r + 1}] {k} {s:8s} epoch {med * 1e3:10.2f} ms  "
                          f"{res['n'] / med:12.0f} samples/s  warm-up {res['warmup_s']:.2f} s"
                          f"  loss {res['loss']:#.5g}", flush=True)
    args.load_after = _loadavg()
    if args.json:  # first: the raw results outlive a failure to render or plot them
        Path(args.json).write_text(json.dumps(
            {f"{s}/{k}": v for (s, k), v in results.items()} | {"matmul": matmul}, indent=1))
    summary = summarize(results, wls, systems, matmul)
    md = render_markdown(summary, wls, systems, skipped, errors, args, rounds)
    if args.out:
        out = Path(args.out)
        md = merge_report(out.read_text() if out.exists() else "", md)
        out.write_text(md)
        print(f"wrote {args.out}")
    else:
        print(md)
    if args.png:
        try:
            plot_report(md, args.png)
            print(f"wrote {args.png}")
        except ImportError as exc:
            print(f"no plot: {exc}")
    return summary


def summarize(results, wls, systems, matmul):
    """Medians over rounds: samples/s, warm-up s, compile s, loss, GFLOP/s."""
    out = {"cells": {}, "matmul": {}}
    for wl in wls:
        for s in systems:
            rs = results[(s, wl.key)]
            if not rs:
                continue
            per_round = [statistics.median(r["epoch_s"]) for r in rs]
            epoch_s = statistics.median(per_round)
            cell = dict(
                epoch_s=epoch_s,
                sps=rs[0]["n"] / epoch_s,
                spread=max(per_round) / min(per_round),
                warmup_s=statistics.median(r["warmup_s"] for r in rs),
                compile_s=(statistics.median(r["compile_s"] for r in rs)
                           if "compile_s" in rs[0] else None),
                loss=statistics.median(r["loss"] for r in rs),
                loss_init=rs[0]["loss_init"],
                version=rs[0]["version"], threads=rs[0].get("threads"),
                note=rs[0].get("note"), rounds=len(rs), n=rs[0]["n"],
                epochs=1 + rs[0]["epochs_timed"],
            )
            cell["gflops"] = cell["sps"] * wl.flops_per_sample() / 1e9
            out["cells"][(s, wl.key)] = cell
    if matmul:
        for shape in matmul[0]:
            out["matmul"][shape] = statistics.median(m[shape] for m in matmul)
    return out


def _loadavg():
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _fmt_sps(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _cpu():
    """(model name, features) from lscpu, e.g. ("Intel(R) Xeon(R) Processor",
    "GenuineIntel, AVX-512, AMX"): the CPU a section of docs/peers.md belongs to."""
    model, vendor, flags = platform.processor() or "?", "", set()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        lscpu = ""
    for line in lscpu.splitlines():
        name, _, value = line.partition(":")
        if name == "Model name":
            model = value.strip()
        elif name == "Vendor ID":
            vendor = value.strip()
        elif name == "Flags":
            flags = set(value.split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags
           else "no AVX2" if flags else "")
    feats = [f for f in (vendor, isa, "AMX" if "amx_tile" in flags else "") if f]
    return model, ", ".join(feats)


def _machine():
    model, feats = _cpu()
    return (f"{model} ({feats}), {os.cpu_count()} logical CPUs "
            f"({platform.machine()}, {platform.system()})")


def _fastdnn_source():
    """Where the fastdnn that ran came from: its folder and git state, if any."""
    import importlib.util

    spec = importlib.util.find_spec("fastdnn")
    if spec is None or spec.origin is None:
        return "?"
    src = Path(spec.origin).parent
    try:
        git = ["git", "-C", str(src)]
        head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(git + ["status", "--porcelain", "--", "."],
                               capture_output=True, text=True).stdout.strip()
    except OSError:
        head = dirty = ""
    if not head:
        return str(src)
    return f"git {head}" + (" with uncommitted changes" if dirty else "")


def _versions():
    vs = [f"Python {platform.python_version()}"]
    for name in ("numpy", "numba", "torch", "jax", "sklearn", "fastdnn"):
        try:
            mod = __import__(name)
            vs.append(f"{name} {getattr(mod, '__version__', '?')}"
                      + (f" ({_fastdnn_source()})" if name == "fastdnn" else ""))
        except Exception:
            vs.append(f"{name} (not installed)")
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        vs.append(f"NumPy BLAS {blas.get('name')} {blas.get('version')}")
    except Exception:
        pass
    try:  # the library fastdnn's workers bind (they share this environment)
        from fastdnn.kernels.cpu import blas as fastdnn_blas

        chosen = fastdnn_blas.library()
        vs.append("fastdnn's products on " + {
            "mkl": "Intel MKL (big products) and SciPy's BLAS",
            "scipy-haswell": "SciPy's BLAS (float32 blocks of 2^26 to 2^29 multiply-adds: "
                             "its OpenBLAS' Haswell kernels)"}.get(
                chosen, "SciPy's BLAS"))
    except Exception:
        pass
    return ", ".join(vs)


def render_markdown(summary, wls, systems, skipped, errors, args, rounds):
    cells = summary["cells"]
    peers = [s for s in systems if s != "fastdnn"]
    cmd = "python benchmarks/peers.py" + "".join(
        f" {a}" for a in sys.argv[1:] if not a.startswith("--worker"))
    if os.environ.get("PYTHONPATH"):  # e.g. a fastdnn other than the installed one
        cmd = f"PYTHONPATH={os.environ['PYTHONPATH']} {cmd}"
    model, feats = _cpu()
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    keys = ",".join(wl.key for wl in wls)
    L = [f"<!-- peers-section: {model} | {keys} -->"]
    L.append(f"## {model} ({feats}), {date}: workloads {keys.replace(',', ', ')}\n")
    L.append(f"- Date: {date}")
    L.append(f"- Machine: {_machine()}. **A shared {os.cpu_count()}-core VM**: other jobs "
             "ran at the same time, absolute numbers drift up to 2x between runs; compare "
             "ratios within one table.")
    during = ", ".join(getattr(args, "load_rounds", [])) or "?"
    L.append(f"- Load average (1/5/15 min) before the run {getattr(args, 'load_before', '?')}, "
             f"after {getattr(args, 'load_after', '?')}; 1-min load at the start of each "
             f"round {during} (on {os.cpu_count()} cores).")
    L.append(f"- Versions: {_versions()}")
    L.append(f"- Command: `{cmd}`")
    L.append(f"- Rounds: {rounds} (systems interleaved, order rotated each round, each "
             "run in a fresh subprocess); each cell is the median over rounds of the "
             "per-run median epoch time.")
    L.append("- All systems: float32, same data, same initial weights (Glorot uniform, "
             "zero bias), plain SGD with constant lr, no momentum/weight decay, no "
             "shuffling, batches in order. One warm-up epoch (JIT compile / cache load) "
             "is excluded and shown separately.")
    ft = ("default policy (`n_threads=None`: Numba's pool over all cores; each BLAS call "
          "single-threaded, big products split in one fixed column block per CPU; batches "
          "with shards of >= 32 rows and 300K multiply-adds in two, the second on a helper "
          "thread)"
          if FASTDNN_THREADS is None
          else f"`n_threads={FASTDNN_THREADS}`")
    L.append(f"- Threads: fastdnn {ft}; torch: set_num_threads({N_THREADS}), torch1: "
             "set_num_threads(1); JAX/XLA "
             f"and NumPy/OpenBLAS defaults (= {os.cpu_count()} cores)"
             + ("; FANN: one thread (it has no threading)" if "fann" in systems else "")
             + ".\n")

    L.append("## Training throughput (samples/s, higher is better)\n")
    hdr = "| workload | n | " + " | ".join(systems) + " | " + " | ".join(
        f"fastdnn / {p}" for p in peers) + " |"
    L.append(hdr)
    L.append("|" + "---|" * (2 + len(systems) + len(peers)))
    for wl in wls:
        row = [f"({wl.key}) {wl.title}", str(wl.samples(args.quick))]
        for s in systems:
            c = cells.get((s, wl.key))
            row.append(_fmt_sps(c["sps"]) if c else "—")
        f = cells.get(("fastdnn", wl.key))
        for p in peers:
            c = cells.get((p, wl.key))
            row.append(f"{f['sps'] / c['sps']:.2f}x" if (f and c) else "—")
        L.append("| " + " | ".join(row) + " |")
    L.append("\nRatios > 1 mean fastdnn is faster.\n")
    if rounds > 1:
        L.append("Run-to-run spread, slowest / fastest round (1.00 = steady; large values "
                 "mean another job shared the cores during some rounds):\n")
        L.append("| workload | " + " | ".join(systems) + " |")
        L.append("|" + "---|" * (1 + len(systems)))
        for wl in wls:
            row = [f"({wl.key})"]
            for s in systems:
                c = cells.get((s, wl.key))
                row.append(f"{c['spread']:.2f}" if c else "—")
            L.append("| " + " | ".join(row) + " |")
        L.append("")

    gf = [wl for wl in wls if wl.gflops]
    if gf:
        L.append("## Arithmetic rate on the large nets (GFLOP/s)\n")
        L.append("Training FLOPs per sample = 2mn (forward) + 2mn (dW) + 2mn "
                 "(delta to the previous layer, not for the first layer), summed over "
                 "layers (m x n); activations, loss and updates not counted.\n")
        L.append("| workload | MFLOP/sample | " + " | ".join(systems) + " |")
        L.append("|" + "---|" * (2 + len(systems)))
        for wl in gf:
            row = [f"({wl.key})", f"{wl.flops_per_sample() / 1e6:.1f}"]
            for s in systems:
                c = cells.get((s, wl.key))
                row.append(f"{c['gflops']:.1f}" if c else "—")
            L.append("| " + " | ".join(row) + " |")
        if summary["matmul"]:
            mm = ", ".join(f"`{k}`: {v:.1f} GFLOP/s" for k, v in summary["matmul"].items())
            L.append(f"\nMachine fp32 matmul rate (NumPy/OpenBLAS, and Intel MKL's own "
                     f"threading where installed, largest layer at the workload's batch, "
                     f"best call in 0.5 s, median over rounds): {mm}.\n")

    L.append("## Warm-up (first epoch incl. JIT compile or cache load) and JAX compile, s\n")
    L.append("| workload | " + " | ".join(systems) + " | jax compile only |")
    L.append("|" + "---|" * (2 + len(systems)))
    for wl in wls:
        row = [f"({wl.key})"]
        for s in systems:
            c = cells.get((s, wl.key))
            row.append(f"{c['warmup_s']:.3f}" if c else "—")
        cj = cells.get(("jax", wl.key))
        row.append(f"{cj['compile_s']:.3f}" if cj and cj["compile_s"] is not None else "—")
        L.append("| " + " | ".join(row) + " |")
    L.append("\nThe jax warm-up column is the first call of the already compiled epoch; "
             "the compile itself (`jit(...).lower().compile()`) is the last column. "
             "fastdnn's warm-up includes loading numba's on-disk cache; its workers use a "
             "cache folder named by a hash of fastdnn's sources, so the first round "
             "compiles and the median is a cache load; that round's timed epochs start "
             "once fastdnn's compile helper is done.\n")

    L.append("## Same work? Training loss after the run (float64 NumPy on the final "
             "weights, first 2048 samples)\n")
    L.append("| workload | epochs | initial | " + " | ".join(systems) + " |")
    L.append("|" + "---|" * (3 + len(systems)))
    for wl in wls:
        any_c = next((cells[(s, wl.key)] for s in systems if (s, wl.key) in cells), None)
        if not any_c:
            continue
        row = [f"({wl.key})", str(any_c["epochs"]), f"{any_c['loss_init']:#.5g}"]
        for s in systems:
            c = cells.get((s, wl.key))
            row.append(f"{c['loss']:#.5g}" if c else "—")
        L.append("| " + " | ".join(row) + " |")
    L.append("")

    L.append("## Workloads\n")
    for wl in wls:
        L.append(f"- ({wl.key}) {wl.title}: sizes {list(wl.sizes)}, {wl.activation}, "
                 f"{wl.loss}, batch {wl.batch}, lr {wl.lr}, {wl.samples(args.quick)} "
                 f"samples/epoch. Data: {wl.note}.")
    notes = sorted({c["note"] for c in cells.values() if c.get("note")})
    L.append("\n## Notes\n")
    if "jax" in systems:
        L.append("- JAX runs the whole epoch as one compiled XLA program (`jax.jit` of "
                 "`lax.scan` over the batches, params donated): no Python per step.")
    if {"torch", "torch1"} & set(systems):
        L.append("- PyTorch is eager (`zero_grad`, forward, `backward`, `optimizer.step()` "
                 "per batch).")
    if "sklearn" in systems:
        L.append("- scikit-learn: `solver='sgd'`, `momentum=0`, `alpha=0`, "
                 "`shuffle=False`, one `partial_fit` per epoch (it also computes the loss "
                 "each batch). For mse its gradient is k/2 times torch's, so its lr is "
                 "scaled by 2/k to follow the same path.")
        for note in notes:
            L.append(f"- sklearn: {note}.")
    if "fann" in systems:
        L.append("- FANN: the C library's own online training (`FANN_TRAIN_INCREMENTAL`, "
                 "one `fann_train` per sample, in order), driven by "
                 "`benchmarks/fann/fann_sgd.c` (built with `cc -O2 ... -lfloatfann`; "
                 "the library is the distribution's build). Hidden layers "
                 "`FANN_SIGMOID_SYMMETRIC` with steepness 1 (FANN's `2/(1+exp(-2x))-1` "
                 "= tanh), `FANN_LINEAR` output, `FANN_ERRORFUNC_LINEAR`, momentum 0; "
                 "FANN's step is `w += lr (t - z) a`, so it gets lr x 2/k to follow the "
                 "mse gradient `2 (z - t) / k`. Weights in and out through "
                 "`fann_set_weight_array` / `fann_get_connection_array` (each layer's "
                 "bias neuron holds b).")
        L.append("- FANN's loss can differ from the others' in the third or fourth digit: "
                 "its backprop clips the unit's output to [-0.98, 0.98] before taking "
                 "tanh's derivative `1 - a^2` (`fann_activation_derived`), so saturated "
                 "units keep a gradient. The plain NumPy loop with that clip added ends "
                 "at FANN's loss (`benchmarks/test_bench_fann.py`), so the path is the "
                 "same otherwise.")
        left_out = [wl.key for wl in wls if not supports("fann", wl)]
        if left_out:
            L.append(f"- fann: no entry for ({', '.join(left_out)}): "
                     f"{SUPPORTS['fann'][1]}.")
    if "b" in keys.split(","):
        L.append("- Losses agree across systems to float32 rounding; on (b), parity at lr "
                 "0.1, the rounding differences grow over the epochs to about 1e-3.")
    for s, why in skipped.items():
        L.append(f"- **{s} skipped**: {why}")
    for (s, k), why in errors.items():
        L.append(f"- **{s} failed on ({k})**: {why}")
    L.append("")
    L.append(SECTION_END)
    # The marker and the section's heading, then the run's headings one level below it.
    return "\n".join(L[:2]) + "\n" + _demote("\n".join(L[2:]))


SECTION_END = "<!-- /peers-section -->"
REPORT_HEAD = """# fastdnn vs. peers: training throughput on the CPU

Generated by `benchmarks/peers.py`; do not edit by hand. A summary per CPU first (each
workload's latest result), then one section per CPU and set of workloads, newest first:
a run replaces the section of its own CPU model and workload set and keeps the others,
so each CPU family keeps its own tables (with their date, CPU model and load). Compare
ratios within a section, not absolute numbers across them. `peers.png` has one panel
per section.
"""


def _demote(md):
    """Headings one level down (``## x`` -> ``### x``), for a run inside a section."""
    return "\n".join("#" + ln if ln.startswith("## ") else ln for ln in md.split("\n"))


def _sections(md):
    """{key: section text} of a docs/peers.md, in file order.

    A file from before sections (one run, no markers) becomes one section, keyed by
    its "- Machine:" line's CPU model and its workloads, headings demoted; its
    ensemble part is dropped (every write appends docs/ensemble.md afresh).
    """
    import re

    out = {}
    for m in re.finditer(r"<!-- peers-section: (.*?) -->\n.*?" + re.escape(SECTION_END),
                         md, re.S):
        out[m.group(1)] = m.group(0)
    if out or "- Machine:" not in md:
        return out
    body = md.split("## Many small nets at once")[0]
    body = body[body.index("- Date:"):].rstrip()
    date = re.search(r"- Date: (.*)", body).group(1).strip()
    model = re.search(r"- Machine: ([^,(]*)", body).group(1).strip()
    keys = ",".join(dict.fromkeys(re.findall(r"^\| \((\w)\) ", body, re.M)))
    head = (f"<!-- peers-section: {model} | {keys} -->\n"
            f"## {model}, {date}: workloads {keys.replace(',', ', ')}\n")
    out[f"{model} | {keys}"] = head + "\n" + _demote(body) + "\n\n" + SECTION_END
    return out


def merge_report(old_md, section):
    """docs/peers.md with ``section`` (a render_markdown result) first, in place of the
    section of the same CPU model and workloads; the others kept, in their order (newest
    first, as the head says)."""
    key = section.split("\n", 1)[0][len("<!-- peers-section: "):-len(" -->")]
    sections = _sections(old_md)
    sections.pop(key, None)
    sections = {key: section} | sections
    return "\n\n".join([REPORT_HEAD.rstrip(), summary_section(sections), *sections.values(),
                        "\n".join(ensemble_section())])


def _throughput_rows(section):
    """``(header, rows)`` of a section's throughput table, cells stripped."""
    table = section[section.index("Training throughput"):].split("\n\n")[1]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in table.strip().split("\n")]
    return rows[0], rows[2:]


#: The throughput targets (issue 8), per workload: ``(peer, least ratio of fastdnn to it,
#: whether strictly more)``, the peer ``None`` for the fastest one in the run.  And the
#: GFLOP/s workloads' least share of NumPy's 2-thread SGEMM rate at their largest layer,
#: measured in the same run.
TARGETS = {"a": (("jax", 1.5, False), ("fann", 1.2, False)), "b": (("jax", 1.5, False),),
           "c": (("jax", 1.5, False),), "d": (("jax", 1.2, False),),
           "e": ((None, 1.0, False),), "f": ((None, 1.0, False),),
           "g": (("fann", 1.2, False),), "h": (("fann", 1.0, True),)}
SGEMM_SHARE = 0.90


def _ratio(cell):
    """The number of a ratio cell (``"1.58x"``), or None for a peer that did not run."""
    return float(cell.rstrip("x")) if cell.endswith("x") else None


def _sgemm_share(key, section):
    """``(fastdnn's GFLOP/s, NumPy's SGEMM GFLOP/s)`` of workload ``key`` in ``section``,
    or None where the section has either missing."""
    import re

    wl = WORKLOADS.get(key)
    if wl is None or not wl.gflops or "Arithmetic rate" not in section:
        return None
    m, k, n = matmul_shapes([wl])[0]
    rate = re.search(rf"`{m}x{k}@{k}x{n}`: ([\d.]+) GFLOP/s", section)
    table = section[section.index("Arithmetic rate"):].split("\n\n")[2]
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")]
            for ln in table.strip().split("\n")]
    header = rows[0]
    mine = next((r for r in rows[2:] if r[0] == f"({key})"), None)
    if rate is None or mine is None or "fastdnn" not in header:
        return None
    cell = mine[header.index("fastdnn")]
    return (float(cell), float(rate.group(1))) if cell != "—" else None


def targets_table(runs):
    """Lines of a table of :data:`TARGETS` met or missed in ``runs`` (workload key ->
    ``(date, label, {column: cell}, section)``, one CPU's latest runs)."""
    lines = ["| workload | run | target | measured | met |", "|---|---|---|---|---|"]
    for key in sorted(runs):
        date, label, cells, section = runs[key]
        for peer, least, strict in TARGETS.get(key, ()):
            if peer is None:
                ratios = {c.split(" / ")[1]: _ratio(v) for c, v in cells.items()
                          if " / " in c and _ratio(v) is not None}
                if not ratios:
                    continue
                peer = min(ratios, key=ratios.get)
                ratio, whom = ratios[peer], "the fastest peer"
                measured = f"{ratio:.2f}x ({peer})"
            else:
                ratio = _ratio(cells.get(f"fastdnn / {peer}", "—"))
                if ratio is None:
                    continue
                whom, measured = peer, f"{ratio:.2f}x"
            goal = f"> {least}x {whom}" if strict else f">= {least}x {whom}"
            met = ratio > least if strict else ratio >= least
            lines.append(f"| ({key}) | {date} | {goal} | {measured} | "
                         f"{'yes' if met else '**no**'} |")
        share = _sgemm_share(key, section)
        if share is not None:
            met = share[0] >= SGEMM_SHARE * share[1]
            lines.append(f"| ({key}) | {date} | >= {SGEMM_SHARE:.0%} of NumPy's SGEMM | "
                         f"{share[0] / share[1]:.1%} ({share[0]:.1f} of {share[1]:.1f} "
                         f"GFLOP/s) | {'yes' if met else '**no**'} |")
    return lines


def summary_section(sections):
    """Per CPU model, each workload's latest result, from the newest section that ran it:
    fastdnn's samples/s and its ratio to each peer, with the run's date (the sections
    below have the loads, versions and spreads)."""
    import re

    latest = {}  # model -> workload key -> (date, label, {column: cell})
    for key, section in sections.items():
        model = key.rsplit(" | ", 1)[0]
        dated = re.search(r"^- Date: (.*)$", section, re.M)
        date = dated.group(1).strip() if dated else ""
        header, rows = _throughput_rows(section)
        for row in rows:
            m = re.match(r"\((\w+)\) ", row[0])
            if m is None:
                continue
            cells = dict(zip(header, row))
            seen = latest.setdefault(model, {}).get(m.group(1))
            if seen is None or date > seen[0]:
                latest[model][m.group(1)] = (date, row[0], cells, section)
    lines = ["## Summary: the latest run of each workload, per CPU", "",
             "fastdnn's throughput and its ratio to each peer (> 1: fastdnn is faster), each "
             "workload from the newest section below that ran it."]
    for model, runs in latest.items():
        ratios = sorted({c for _, _, cells, _ in runs.values() for c in cells if " / " in c})
        lines += ["", f"### {model}", "",
                  "| workload | run | fastdnn samples/s | " + " | ".join(ratios) + " |",
                  "|---|---|---|" + "---|" * len(ratios)]
        for k in sorted(runs):
            date, label, cells, _ = runs[k]
            lines.append(f"| {label} | {date} | {cells.get('fastdnn', '—')} | "
                         + " | ".join(cells.get(c, "—") for c in ratios) + " |")
        targets = targets_table(runs)
        if len(targets) > 2:
            lines += ["", f"Targets on the {model} (`TARGETS` in `benchmarks/peers.py`):", "",
                      *targets]
    return "\n".join(lines)


def ensemble_section():
    """The latest ``benchmarks/ensemble.py --write`` result (docs/ensemble.md), if any:
    many small nets at once, ``fd.fit_many`` against JAX ``vmap``."""
    path = ROOT / "docs" / "ensemble.md"
    if not path.exists():
        return []
    body = path.read_text().split("\n", 2)[-1].strip()  # without its title line
    return ["## Many small nets at once: fd.fit_many vs JAX vmap", "",
            "From `docs/ensemble.md` (`python benchmarks/ensemble.py --write`):", "", body, ""]


def _tick(key, sizes, batch):
    sizes = list(sizes)
    net = "-".join(map(str, sizes))
    if len(net) > 12:
        net = f"{sizes[0]}-...-{sizes[-1]}"
    return f"({key}) {net}\nbatch {batch}"


def plot(summary, wls, systems, path):
    """Bar chart of one run (samples/s per workload and system)."""
    cells = summary["cells"]
    values = {s: [cells[(s, wl.key)]["sps"] if (s, wl.key) in cells else np.nan
                  for wl in wls] for s in systems}
    ticks = [_tick(wl.key, wl.sizes, wl.batch) for wl in wls]
    title = (f"plain SGD, float32, {os.cpu_count()}-core shared VM (median of rounds)")
    _plot_panels([(title, ticks, values)], path)


def plot_report(md, path):
    """Bar chart of docs/peers.md: one panel per section, from its throughput table."""
    import re

    panels = []
    for section in _sections(md).values():
        title = re.search(r"^## (.*)$", section, re.M).group(1)
        header, rows = _throughput_rows(section)
        systems = [h for h in header[2:] if "/" not in h]
        values = {s: [float(r[2 + j].replace(",", "")) if r[2 + j] not in ("—", "")
                      else np.nan for r in rows] for j, s in enumerate(systems)}
        ticks = []
        for r in rows:
            m = re.match(r"\((\w+)\) ([\d-]+) .*batch (\d+)", r[0])
            ticks.append(_tick(m.group(1), m.group(2).split("-"), m.group(3)) if m
                         else r[0][:20])
        panels.append((title, ticks, values))
    _plot_panels(panels, path)


def _plot_panels(panels, path):
    """panels: [(title, tick labels, {system: samples/s per tick})], one row each; the
    ratio of fastdnn to the fastest peer is written over fastdnn's bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 4.6 * len(panels)), squeeze=False)
    for ax, (title, ticks, values) in zip(axes[:, 0], panels):
        systems = list(values)
        width = 0.8 / len(systems)
        x = np.arange(len(ticks))
        offset = {s: (j - (len(systems) - 1) / 2) * width for j, s in enumerate(systems)}
        for s in systems:  # a system keeps its colour in every panel
            color = f"C{SYSTEMS.index(s)}" if s in SYSTEMS else None
            ax.bar(x + offset[s], values[s], width, label=s, color=color)
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels(ticks, fontsize=8)
        ax.set_ylabel("training samples / s (log)")
        ax.set_title(f"fastdnn vs. peers: {title}", pad=28, fontsize=10)
        ax.legend(fontsize=8, ncols=len(systems), loc="lower center",
                  bbox_to_anchor=(0.5, 1.0), frameon=False)
        if "fastdnn" in values:
            for i in range(len(ticks)):
                f = values["fastdnn"][i]
                best = max((values[s][i] for s in systems
                            if s != "fastdnn" and np.isfinite(values[s][i])), default=None)
                if np.isfinite(f) and best:
                    ax.annotate(f"{f / best:.2f}x\nvs best", (i + offset["fastdnn"], f),
                                ha="center", va="bottom", fontsize=7)
        top = np.nanmax([v for vs in values.values() for v in vs] + [1.0])
        ax.set_ylim(top=top * 4)  # room for the ratio labels
        ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated keys from " + ",".join(WORKLOADS))
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--rounds", type=int, default=None, help="default 3 (1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="fewer samples, 1 timed epoch, 1 round; prints instead of writing")
    ap.add_argument("--out", default=None,
                    help="markdown output (default docs/peers.md; none with --quick)")
    ap.add_argument("--png", default=None, help="bar chart (default docs/peers.png)")
    ap.add_argument("--json", default=None, help="also dump raw per-round results here")
    ap.add_argument("--no-write", action="store_true", help="print only, write nothing")
    ap.add_argument("--timeout", type=float, default=600, help="per worker, seconds")
    ap.add_argument("--fastdnn-threads", type=int, default=None,
                    help="MLP(n_threads=...) for fastdnn (default: its own policy)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.timeout <= 0:
        ap.error(f"--timeout must be positive; got {args.timeout:g}")
    if args.fastdnn_threads is not None and args.fastdnn_threads < 1:
        ap.error(f"--fastdnn-threads must be at least 1; got {args.fastdnn_threads}")
    global FASTDNN_THREADS
    FASTDNN_THREADS = args.fastdnn_threads
    if args.worker:
        # matmul: the machine's SGEMM rate for a list of workloads (refused here since
        # 2026-11-29 07:45, and the driver's runs lost their SGEMM targets, unsaid).
        matmul = (args.worker == "matmul" and bool(args.workload)
                  and all(k in WORKLOADS for k in args.workload.split(",")))
        if not matmul and (args.worker not in SYSTEMS or args.workload not in WORKLOADS):
            ap.error(f"--worker takes one of {','.join(SYSTEMS)} (or matmul) and --workload "
                     f"one of {','.join(WORKLOADS)}; got {args.worker!r} and "
                     f"{args.workload!r}")
        res = run_worker(args.worker, args.workload, args.quick)
        print(json.dumps(res))
        return 0
    for k in args.workloads.split(","):
        if k not in WORKLOADS:
            ap.error(f"unknown workload {k!r}; choose from {','.join(WORKLOADS)}")
    for s in args.systems.split(","):  # a typo became a "skipped" peer's column
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}; choose from {','.join(SYSTEMS)}")
    if args.rounds is not None and args.rounds < 1:  # 0 wrote a table of empty cells
        ap.error(f"--rounds must be at least 1; got {args.rounds}")
    if not args.quick and not args.no_write:
        args.out = args.out or str(ROOT / "docs" / "peers.md")
        args.png = args.png or str(ROOT / "docs" / "peers.png")
    if args.no_write:
        args.out = args.png = None
    for option, path in (("--out", args.out), ("--png", args.png), ("--json", args.json)):
        # Checked now: a missing folder failed after the whole run (8-12 minutes).
        if path and not Path(path).resolve().parent.is_dir():
            ap.error(f"{option} {path}: folder {Path(path).resolve().parent} does not exist")
    drive(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
