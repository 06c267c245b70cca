"""fastdnn.experiments and `fastdnn experiment`: the tables hold what the constructions
and bounds say, and the command line runs them (one seed, to stay fast)."""
import os
import sys
from pathlib import Path

import pytest

from fastdnn import experiments, regions
from fastdnn.cli import main
from support import TESTS

DEPTH_DOC = Path(TESTS).parent / "docs" / "depth.md"


def test_zigzag_table():
    table = experiments.zigzag(seeds=1, epochs=20)
    depths = [row["depth"] for row in table.rows]
    assert depths == [1, 2, 3, 4, 6]
    for row in table.rows:
        assert row["construction 2^depth"] == 2 ** row["depth"]
        assert row["width"] * row["depth"] == 24
        assert row["upper bound"] == regions.serra_upper_bound([row["width"]] * row["depth"], 1)
        assert 1 <= row["trained mean"] <= row["upper bound"]
    assert "zigzag" in str(table) and "| depth |" in table.markdown()


def test_parity_table():
    table = experiments.parity(seeds=1, n_max=6, epochs=5)
    assert [row["n"] for row in table.rows] == [2, 3, 4, 5, 6]
    for row in table.rows:
        assert row["dnf units"] == 2 ** (row["n"] - 1) and row["saw units"] == row["n"]
    assert any("deep" in note for note in table.notes) and any("shallow" in note for note in table.notes)


def test_regions_table():
    table = experiments.regions(seeds=1, unit_counts=(8, 16), depths=(1, 2), epochs=1)
    assert [(row["depth"], row["units"]) for row in table.rows] == [(1, 8), (2, 8), (1, 16), (2, 16)]
    for row in table.rows:
        # A segment crosses at least one region and at most the most a net of these
        # widths can have on one input.
        bound = regions.serra_upper_bound([row["width"]] * row["depth"], 1)
        assert 1 <= row["at init"] <= bound and 1 <= row["trained"] <= bound


@pytest.mark.parametrize("n_inputs", [1, 2, 3])
def test_regions_with_few_inputs(n_inputs):
    # Two inputs raised (the teacher's wiggles read 3 columns).
    table = experiments.regions(seeds=1, unit_counts=(4,), depths=(1,), n_inputs=n_inputs,
                                epochs=1)
    assert len(table.rows) == 1 and table.rows[0]["at init"] >= 1


def test_bad_seeds():
    with pytest.raises(ValueError, match="seeds"):
        experiments.parity(seeds=0)


@pytest.mark.parametrize("call,match", [
    (lambda: experiments.parity(seeds=1, n_max=1), "n_max must be >= 2"),
    (lambda: experiments.zigzag(seeds=1, units=1), "units must be >= 2"),
    (lambda: experiments.regions(seeds=1, unit_counts=(3,), depths=(2,)), "unit_counts"),
])
def test_arguments_that_leave_nothing_to_run_are_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("call, error, match", [
    # depth -1 made a row of width -16; 0 divided by zero; '16' % L formatted a string
    (lambda: experiments.regions(seeds=1, depths=(-1, 1)), ValueError, "depths entry"),
    (lambda: experiments.regions(seeds=1, depths=(0,)), ValueError, "depths entry"),
    (lambda: experiments.regions(seeds=1, unit_counts=("16",)), TypeError, "unit_counts"),
    (lambda: experiments.regions(seeds=1, unit_counts=16), TypeError, "unit_counts"),
    # max() of an empty sequence; n_max 25 ran every smaller n first (hours)
    (lambda: experiments.parity(seeds=1, budget=10), ValueError, "budget must be at least 17"),
    (lambda: experiments.parity(seeds=1, n_max=25), ValueError, "n_max must be at most 24"),
])
def test_bad_experiment_arguments_are_named_before_any_work(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_large_parity_budget_is_kept():
    """Searches up to widths 200 and 2,000 capped a budget of 1e6 at 81,791 parameters,
    the title saying 1,000,000."""
    deep, shallow, p_deep, p_shallow = experiments._budget_pair(8, 10**6)
    assert 0.99 * 10**6 < p_deep <= 10**6 and p_deep - 8 - 2 < p_shallow <= p_deep
    assert experiments._budget_pair(8, 450) == ([8, 12, 12, 12, 2], [8, 40, 2], 446, 442)


def test_ranges_read_as_ranges():
    # "-0.35 (-0.5--0.2)" read as a subtraction, and a negative R^2 rounded to "-0"
    assert experiments._mean_range([-0.5, -0.2]) == "-0.35 (-0.5 to -0.2)"
    assert experiments._mean_range([-0.0, 0.476]) == "0.238 (0 to 0.476)"


def test_a_table_without_rows_prints():
    table = experiments.Table("empty", ["a", "bb"])
    assert str(table).splitlines() == ["empty", "a  bb"]


def test_cli_runs_an_experiment(capsys):
    assert main(["experiment", "parity", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "dnf units" in out and "trained deep" in out


def test_cli_errors(capsys, monkeypatch):
    assert main(["experiment", "nonsense"]) == 2
    assert main(["experiment", "zigzag", "--seeds", "0"]) == 2
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["experiment", "parity", "--plot", "x.png"]) == 2
    assert "pip install 'fastdnn[plots]'" in capsys.readouterr().err


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    table = experiments.regions(seeds=1, unit_counts=(8,), depths=(1, 2), epochs=1)
    path = tmp_path / "regions.png"
    experiments.plot(table, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_writes_the_file_it_is_given_atomically(tmp_path, monkeypatch):
    """``--plot fig`` wrote fig.png (savefig adds the extension) and said "figure: fig";
    a write that failed midway left a truncated file in place of the old one."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    table = experiments.regions(seeds=1, unit_counts=(8,), depths=(1, 2), epochs=1)
    experiments.plot(table, tmp_path / "fig")
    assert os.listdir(tmp_path) == ["fig"]
    old = (tmp_path / "fig").read_bytes()
    assert old[:8] == b"\x89PNG\r\n\x1a\n"

    def broken(self, f, **kwargs):
        f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        experiments.plot(table, tmp_path / "fig")
    assert os.listdir(tmp_path) == ["fig"] and (tmp_path / "fig").read_bytes() == old


@pytest.mark.parametrize("name, seeds", [("zigzag", 3), ("parity", 5), ("regions", 3)])
def test_docs_depth_tables_are_what_the_commands_print(name, seeds):
    """docs/depth.md says its seeded tables are what ``fastdnn experiment NAME --seeds S``
    prints on any machine: the zigzag table had drifted from the code unnoticed."""
    table = getattr(experiments, name)(seeds=seeds).markdown()
    assert table in DEPTH_DOC.read_text(), f"rerun: fastdnn experiment {name} --seeds {seeds}"


def test_the_init_the_depth_notes_name_is_the_init_relu_nets_get():
    """docs/depth.md said "He-uniform" (limit sqrt(6/fan_in)); relu layers are drawn
    from U(-sqrt(3/fan_in), sqrt(3/fan_in)): LeCun-uniform, half He's variance."""
    import numpy as np
    import fastdnn as fd
    W = fd.MLP([400, 400, 10], activation="relu", seed=0, dtype="float64").get_weights()[0][0]
    assert np.sqrt(3 / 400) * 0.99 < np.abs(W).max() <= np.sqrt(3 / 400)
    assert "He-uniform" not in DEPTH_DOC.read_text()
    assert "LeCun-uniform (limit sqrt(3/fan_in)" in DEPTH_DOC.read_text()
