"""The case table, ``tests/cases.py``, is the one that feeds the oracle tests and both
benchmark suites.

An empty table would not fail anything by itself (pytest skips a test whose parameter
list is empty, asv runs a benchmark with no parameters not at all), and a suite that
went back to a table of its own would drift from the others unseen: these tests fail
in both cases.
"""
import pytest

import cases
import naive
import test_bench_kernels
import test_bench_net
from asv_bench import bench_mlp, bench_training


def test_table_is_not_empty():
    for name in ("HEADS", "SIZES", "BATCHES", "DTYPES", "THREADS",
                 "SMOKE_SIZES", "SMOKE_DTYPES", "ASV_SIZES", "ASV_FIT_SIZES"):
        assert len(getattr(cases, name)) > 0, f"cases.{name} is empty"
    for subset in (cases.SMOKE_SIZES, cases.ASV_SIZES, cases.ASV_FIT_SIZES):
        assert set(subset) <= set(cases.SIZES)
    assert set(cases.SMOKE_DTYPES) <= set(cases.DTYPES)
    assert cases.net_sizes("medium") == [784, 1024, 1024, cases.N_CLASSES]


def test_oracle_tests_read_the_table():
    assert naive.HEADS is cases.HEADS and naive.HEAD_IDS is cases.HEAD_IDS
    assert len(cases.HEAD_IDS) == len(set(cases.HEAD_IDS)) == len(cases.HEADS)
    assert {loss for loss, _ in cases.HEADS} == set(naive.LOSSES)


def parametrized(fn, argname):
    """``(all values, values run in the smoke run)`` of ``fn``'s parametrize mark."""
    for mark in fn.pytestmark:
        if mark.name == "parametrize" and mark.args[0] == argname:
            values, smoke = [], []
            for p in mark.args[1]:
                value = p.values[0] if hasattr(p, "values") else p
                values.append(value)
                if not any(m.name == "bench_full" for m in getattr(p, "marks", ())):
                    smoke.append(value)
            return values, smoke
    raise AssertionError(f"{fn.__name__} is not parametrized over {argname!r}")


@pytest.mark.parametrize("fn", [test_bench_kernels.test_dense_forward,
                                test_bench_kernels.test_dense_backward,
                                test_bench_kernels.test_softmax_cross_entropy,
                                test_bench_net.test_forward, test_bench_net.test_gradients,
                                test_bench_net.test_train_step, test_bench_net.test_epoch],
                         ids=lambda fn: f"{fn.__module__}.{fn.__name__}")
def test_pytest_benchmarks_run_the_table(fn):
    assert parametrized(fn, "size") == (list(cases.SIZES), list(cases.SMOKE_SIZES))
    assert parametrized(fn, "batch") == (list(cases.BATCHES), list(cases.BATCHES))
    assert parametrized(fn, "dtype") == (list(cases.DTYPES), list(cases.SMOKE_DTYPES))


def test_asv_benchmarks_run_the_table():
    grid = [list(cases.ASV_SIZES), list(cases.BATCHES), list(cases.DTYPES)]
    for cls in (bench_mlp.Forward, bench_mlp.Backward, bench_mlp.Step):
        assert cls.params == grid, cls.__name__
    assert bench_mlp.Epoch.params == grid[:2]
    assert bench_mlp.Predict.params == [grid[0], grid[2]]
    assert bench_training.FitMemory.params == [list(cases.ASV_FIT_SIZES), grid[2]]
