"""Helpers shared by the test modules (``tests/`` is on ``sys.path``, see conftest.py).

* :func:`assert_close`: the one tolerance rule of the oracle tests, relative to the
  largest entry of the expected array;
* :func:`build`: a seeded net with random biases, and its ``[(W, b), ...]``;
* :func:`same_weights` / :func:`assert_same_weights`: bit-identical parameter lists;
* :func:`run_python`: run a snippet in a fresh interpreter (import-time behaviour);
* :func:`run_threaded`: call test functions in a fresh interpreter whose Numba pool has
  several threads, whatever the machine (for the "any thread count" tests);
* :func:`protocol_methods` / :func:`implemented_methods`: what a backend protocol of
  ``fastdnn.kernels.spec`` declares, and what a class has.
"""
import inspect
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))


def assert_close(got, want, rtol):
    """``|got - want| <= rtol * max|want|`` entry-wise.

    Relative to the largest entry, not entry by entry: entries that cancel to near zero
    (a gradient, a centred output) carry the rounding of the big terms they came from.
    The floor ``1e-30`` keeps an all-zero ``want`` from demanding exact zeros of
    rounding noise far below any tolerance used here.
    """
    want = np.asarray(want, dtype=np.float64)
    scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-30)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=0,
                               atol=rtol * scale)


def build(sizes, activation="tanh", loss="cross_entropy", dtype="float64", seed=1,
          bias_seed=None):
    """A net seeded with ``seed`` whose biases are set to N(0, 0.5^2) values drawn from
    ``bias_seed`` (default ``seed + 1``): they start at zero, which would leave the bias
    add untested.  Returns ``(net, [(W, b), ...])`` with exactly the net's weights."""
    import fastdnn as fd

    net = fd.MLP(sizes, activation=activation, loss=loss, dtype=dtype, seed=seed)
    bias_rng = np.random.default_rng(seed + 1 if bias_seed is None else bias_seed)
    params = [(W, bias_rng.normal(scale=0.5, size=b.shape).astype(dtype))
              for W, b in net.get_weights()]
    net.set_weights(params)
    return net, params


def same_weights(a, b):
    """Whether two ``[(W, b), ...]`` lists are bit-identical (shapes included)."""
    a, b = list(a), list(b)
    return len(a) == len(b) and all(
        np.array_equal(W1, W2) and np.array_equal(b1, b2) for (W1, b1), (W2, b2) in zip(a, b))


def record_epoch_kernels(monkeypatch, trainer_class):
    """The list to which each ``trainer_class.run_steps`` call appends the trainer's epoch
    kernel (which compiled kernel a fit ran)."""
    kernels = []
    run_steps = trainer_class.run_steps

    def spy(self, *args):
        kernels.append(self.epoch_kernel)
        return run_steps(self, *args)

    monkeypatch.setattr(trainer_class, "run_steps", spy)
    return kernels


def assert_same_weights(a, b):
    """Assert two ``[(W, b), ...]`` lists are bit-identical, naming the first layer that is not."""
    a, b = list(a), list(b)
    assert len(a) == len(b), f"{len(a)} layers vs {len(b)}"
    for i, ((W1, b1), (W2, b2)) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(W1, W2, err_msg=f"W of layer {i}")
        np.testing.assert_array_equal(b1, b2, err_msg=f"b of layer {i}")


def run_python(code, **env):
    """stdout of ``code`` (dedented) run by a fresh interpreter; it must exit 0.

    The environment is this one without ``NUMBA_ENABLE_CUDASIM``, plus ``env``.
    """
    environ = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environ.update(env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


_CHILD = """
import importlib, os, pickle, sys
import numba
threads, paths, calls_file, out_file = int(sys.argv[1]), sys.argv[2].split(os.pathsep), sys.argv[3], sys.argv[4]
assert numba.config.NUMBA_NUM_THREADS == threads, numba.config.NUMBA_NUM_THREADS
sys.path[:0] = paths
with open(calls_file, "rb") as f:
    calls = pickle.load(f)
results = [getattr(importlib.import_module(mod), name)(*args) for mod, name, args in calls]
with open(out_file, "wb") as f:
    pickle.dump(results, f)
"""


def run_threaded(calls, threads=3):
    """Results of ``[(function, args), ...]``, each ``function(*args)`` called in one fresh
    interpreter started with ``NUMBA_NUM_THREADS=threads``.

    Numba fixes its pool size at start-up from the core count, so on a one-core machine
    ``n_threads=2`` would quietly run one thread; an environment variable read at start
    is the only way to a pool of several threads (Numba allows more threads than
    cores).  The functions must be module-level functions of a test module or of a
    module in ``tests/``; arguments and results must pickle.
    """
    paths, jobs = [TESTS], []
    for fn, args in calls:
        folder = os.path.dirname(os.path.abspath(inspect.getfile(fn)))
        if folder not in paths:
            paths.append(folder)
        jobs.append((fn.__module__, fn.__qualname__, tuple(args)))
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        calls_file, out_file = os.path.join(tmp, "calls.pkl"), os.path.join(tmp, "out.pkl")
        with open(calls_file, "wb") as f:
            pickle.dump(jobs, f)
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, str(threads), os.pathsep.join(paths), calls_file, out_file],
            env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"child with {threads} threads failed:\n{proc.stderr[-4000:]}"
        with open(out_file, "rb") as f:
            return pickle.load(f)


def protocol_methods(protocol):
    """``{name: parameter names without self}`` of the methods a Protocol declares."""
    return {name: [p for p in inspect.signature(fn).parameters if p != "self"]
            for name, fn in vars(protocol).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def implemented_methods(cls):
    """``{name: parameter names without self}`` of the public methods of ``cls``."""
    return {name: [p for p in inspect.signature(getattr(cls, name)).parameters if p != "self"]
            for name in dir(cls) if callable(getattr(cls, name)) and not name.startswith("_")}


def assert_implements(cls, protocol):
    """Every method ``protocol`` declares is on ``cls``, with the same parameters."""
    have = implemented_methods(cls)
    for name, params in protocol_methods(protocol).items():
        assert name in have, f"{cls.__name__} lacks {name}"
        assert have[name] == params, f"{cls.__name__}.{name}{tuple(have[name])} vs {tuple(params)}"


def make_targets(loss, n, k, rng):
    """Random targets for ``loss`` with ``k`` outputs.

    cross_entropy: int64 labels in 0..k-1; mse: normal values; binary_cross_entropy:
    soft targets in [0, 1]; poisson: counts of mean 2. With ``k == 1`` the regression /
    binary / count targets are 1-D, shape (n,), as the contract allows.
    """
    if loss == "cross_entropy":
        return rng.integers(0, k, size=n).astype(np.int64)
    shape = (n,) if k == 1 else (n, k)
    if loss == "mse":
        return rng.normal(size=shape)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.0, 1.0, size=shape)
    if loss == "poisson":
        return rng.poisson(2.0, size=shape).astype(np.float64)
    raise ValueError(f"unknown loss {loss!r}")
