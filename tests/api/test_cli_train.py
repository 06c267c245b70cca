"""``fastdnn train``: the task chosen from the targets, the input scaling and the loss
plot (issue 10, part 2)."""
import os
import sys

import numpy as np
import pytest

import fastdnn as fd

from test_cli import assert_one_line_error, run

TINY = ["--epochs", "2", "--hidden", "8"]


def measured_integers(tmp_path, n=120):
    """Whole-number targets from 25 to ~350, like the diabetes data set's: a quantity,
    not 100-odd classes."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 3))
    y = np.round(180 + 60 * X[:, 0] - 30 * X[:, 1]).clip(25, 350)
    lines = ["a,b,c,y"] + [f"{a},{b},{c},{int(t)}" for (a, b, c), t in zip(X, y)]
    path = tmp_path / "measured.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path), len(np.unique(y))


def test_many_distinct_integer_targets_default_to_regression(tmp_path, capsys):
    # Before, these became one class per distinct value (the diabetes targets: 214
    # classes, held-out accuracy 0.011).
    data, k = measured_integers(tmp_path)
    model = tmp_path / "m.npz"
    code, out, err = run(["train", "--data", data, "--target", "y", *TINY,
                          "--out", str(model)], capsys)
    assert code == 0, err
    assert (f"task: regression ({k} distinct whole-number targets, more than 20 and not "
            f"0..k-1; --task classification makes them classes)") in out.splitlines()
    assert "held-out R2: " in out
    net = fd.MLP.load(model)
    assert net.loss_name == "mse" and net.sizes[-1] == 1


def test_task_classification_overrides_the_default(tmp_path, capsys):
    data, k = measured_integers(tmp_path)
    code, out, err = run(["train", "--data", data, "--target", "y", *TINY, "--no-save",
                          "--task", "classification"], capsys)
    assert code == 0, err
    assert "task: classification (--task classification)" in out
    assert f"note: {k} labels [" in out and "held-out accuracy: " in out


@pytest.mark.parametrize("labels, task", [
    (np.arange(40) % 3 + 1, "classification (3 distinct whole-number targets, at most 20)"),
    (np.arange(40) % 25, "classification (the targets are the class codes 0..24)"),
    (np.where(np.arange(40) % 2, "yes", "no"), "classification (the targets are text labels)"),
    (np.linspace(0, 1, 40), "regression (the targets are fractional numbers)"),
])
def test_the_chosen_task_is_said_with_its_reason(labels, task, tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, X=np.random.default_rng(0).normal(size=(40, 2)), y=labels)
    code, out, err = run(["train", "--data", str(data), *TINY, "--no-save"], capsys)
    assert code == 0, err
    assert f"task: {task}" in out.splitlines()


@pytest.mark.parametrize("dataset, loss", [("digits", "cross_entropy"),
                                           ("parity", "cross_entropy"), ("zigzag", "mse")])
def test_built_in_data_sets_keep_their_task_and_stay_unscaled(dataset, loss, tmp_path, capsys):
    if dataset == "digits":
        pytest.importorskip("sklearn")
    model = tmp_path / "m.npz"
    code, out, err = run(["train", "--dataset", dataset, *TINY, "--out", str(model)], capsys)
    assert code == 0, err
    net = fd.MLP.load(model)
    assert net.loss_name == loss
    assert "scaling:" not in out and "x_scale" not in net.metadata


@pytest.mark.parametrize("scale", ["standard", "minmax", "none"])
def test_scale_is_fitted_on_the_training_rows_and_saved(scale, tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.uniform(100, 300, size=(50, 2))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=X[:, 0] - X[:, 1])
    model = tmp_path / "m.npz"
    code, out, err = run(["train", "--data", str(data), *TINY, "--scale", scale,
                          "--test-size", "0.2", "--seed", "3", "--out", str(model)], capsys)
    assert code == 0, err
    meta = fd.MLP.load(model).metadata
    if scale == "none":
        assert "x_offset" not in meta and "y_offset" not in meta and "scaling:" not in out
        return
    assert str(meta["scaling"]) == scale
    train = X[np.random.default_rng(3).permutation(50)[10:]]  # train_test_split's rows
    offset, width = (train.mean(0), train.std(0)) if scale == "standard" else \
        (train.min(0), np.ptp(train, axis=0))
    np.testing.assert_allclose(meta["x_offset"], offset, rtol=1e-6)
    np.testing.assert_allclose(meta["x_scale"], width, rtol=1e-6)
    assert meta["y_offset"].shape == meta["y_scale"].shape == (1,)


def test_plot_writes_the_loss_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "loss.png"
    code, out, err = run(["train", "--dataset", "zigzag", *TINY, "--no-save", "--quiet",
                          "--plot", str(figure)], capsys)
    assert code == 0, err
    assert f"loss curves: {figure}" in out
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["loss.png"]  # written via a temporary file, renamed


def test_plot_and_out_naming_one_file_fail_before_training(tmp_path, capsys, monkeypatch):
    """``--out model --plot ./model``: the plot replaced the model, which was "saved"."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["train", "--dataset", "zigzag", *TINY, "--out", "model",
                          "--plot", "./model"], capsys)
    assert_one_line_error(code, err, 2)
    assert "--plot ./model and --out model name one file" in err
    assert out == "" and os.listdir(tmp_path) == []


def test_plot_without_matplotlib_fails_before_training(monkeypatch, capsys, tmp_path):
    # A None entry in sys.modules makes `import matplotlib` raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(["train", "--dataset", "parity", "--no-save",
                          "--plot", str(tmp_path / "l.png")], capsys)
    assert_one_line_error(code, err, 2)
    assert "--plot needs matplotlib: pip install 'fastdnn[plots]'" in err
    assert out == ""  # nothing was trained


@pytest.mark.parametrize("argv, expected_code", [
    (["--task", "regression", "--loss", "cross_entropy"], 2),
    (["--task", "classification", "--loss", "mse"], 2),
    (["--task", "maybe"], 2),
    (["--scale", "log"], 2),
    (["--plot", "{tmp}/loss.xyz"], 2),
    (["--plot", "{tmp}"], 2),
    (["--plot", "{tmp}/new/"], 2),  # a folder's name, though no folder is there
    (["--out", "{tmp}/m.npz"], 2),  # beside --no-save
    (["--activation", "bogus"], 2),
    (["--activation", "relu,tanh"], 2),  # two for one hidden layer
    (["--data", "{tmp}/text.csv", "--target", "y", "--task", "regression"], 1),
    (["--data", "{tmp}/fractions.csv", "--target", "y", "--task", "classification"], 1),
    (["--data", "{tmp}/mixed.csv", "--target", "y"], 1),
    (["--data", "{tmp}/text.csv", "--target", "y", "--loss", "binary_cross_entropy"], 1),
])
def test_bad_train_options_are_one_line(argv, expected_code, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    (tmp_path / "text.csv").write_text("a,y\n1,cat\n2,dog\n3,cow\n4,cat\n5,dog\n")
    (tmp_path / "fractions.csv").write_text("a,y\n1,0.5\n2,1.5\n3,2.25\n4,0.1\n5,3.3\n")
    (tmp_path / "mixed.csv").write_text("a,y\n1,3\n2,4\n3,n/a\n4,5\n5,6\n")
    argv = ["train", "--no-save", *TINY, *(a.replace("{tmp}", str(tmp_path)) for a in argv)]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, expected_code)
    assert "held-out" not in out


def test_out_naming_a_folder_fails_before_training(tmp_path, capsys):
    code, out, err = run(["train", *TINY, "--out", str(tmp_path / "new") + os.sep], capsys)
    assert_one_line_error(code, err, 2)
    assert "names a folder, not a file" in err and "held-out" not in out
    assert list(tmp_path.iterdir()) == []


def test_a_number_column_with_text_in_it_is_refused_not_read_as_labels(tmp_path, capsys):
    (tmp_path / "mixed.csv").write_text("a,y\n1,3.5\n2,4.25\n3,n/a\n4,5\n")
    code, _, err = run(["train", "--data", str(tmp_path / "mixed.csv"), "--target", "y"],
                       capsys)
    assert code == 1
    assert "line 4, column 'y': 'n/a' is not a number, unlike the column's other values" in err


def test_train_holds_no_float64_copy_of_the_data_through_the_fit(tmp_path, monkeypatch):
    """The data as read (float64, 2x the float32 rows the fit reads) was returned to
    run_train and held through the fit: 3x alive as the fit began."""
    import tracemalloc
    from fastdnn import cli
    n, d = 20_000, 20
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d), dtype=np.float32)
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(np.int64))
    np.savez(tmp_path / "small.npz", X=X[:200], y=(X[:200, 0] > 0).astype(np.int64))
    data_bytes = X.nbytes
    del X
    args = ["--epochs", "1", "--hidden", "4", "--quiet", "--no-save"]
    assert cli.main(["train", "--data", str(tmp_path / "small.npz"), *args]) == 0  # imports
    alive = []
    fit = fd.MLP.fit

    def spy(self, *args, **kwargs):
        alive.append(tracemalloc.get_traced_memory()[0])
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(fd.MLP, "fit", spy)
    tracemalloc.start()
    try:
        code = cli.main(["train", "--data", str(tmp_path / "d.npz"), *args])
    finally:
        tracemalloc.stop()
    assert code == 0 and len(alive) == 1
    # The float32 training and test rows (1x) and the net's small arrays.
    assert alive[0] < 1.5 * data_bytes, alive[0] / data_bytes


@pytest.mark.filterwarnings("error::FutureWarning", "error::DeprecationWarning")
def test_text_labels_are_noted_without_a_numpy_warning(tmp_path, capsys):
    # NumPy 1.24 (the declared minimum) warned "elementwise comparison failed" on stderr
    # where the text labels were compared with the codes 0..k-1.
    data = tmp_path / "d.npz"
    np.savez(data, X=np.random.default_rng(0).normal(size=(40, 2)),
             y=np.where(np.arange(40) % 2, "yes", "no"))
    code, out, err = run(["train", "--data", str(data), *TINY, "--no-save"], capsys)
    assert code == 0, err
    assert "note: labels ['no', 'yes'] mapped to 0..1" in out
    assert "Warning" not in err
