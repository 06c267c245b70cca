"""``fastdnn predict`` and ``fastdnn evaluate``: a model trained on a file is used again
with the scaling and labels saved with it (issue 10, part 2)."""
import csv

import numpy as np
import pytest

import fastdnn as fd
from fastdnn.cli import main

from test_cli import assert_one_line_error, run

TINY = ["--epochs", "2", "--hidden", "8", "--quiet"]
SPECIES = np.array(["setosa", "versicolor", "virginica"])


def write_csv(path, header, columns):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(zip(*columns))
    return str(path)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture
def flowers(tmp_path):
    """A CSV of 3 well separated classes named by text, with features in the hundreds
    and in the thousandths (scaling matters), and a model trained on it."""
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 90)
    big = 500.0 + 100.0 * label + rng.normal(0, 5, 90)
    small = 0.001 * label + rng.normal(0, 1e-4, 90)
    data = write_csv(tmp_path / "flowers.csv", ["big", "species", "small"],
                     [big, SPECIES[label], small])
    model = tmp_path / "m.npz"
    assert main(["train", "--data", data, "--target", "species", "--epochs", "60",
                 "--hidden", "16", "--quiet", "--out", str(model)]) == 0
    return data, str(model), SPECIES[label]


def test_text_labels_and_scaling_travel_with_the_model(flowers, tmp_path, capsys):
    data, model, truth = flowers
    capsys.readouterr()
    net = fd.MLP.load(model)
    assert net.metadata["classes"].tolist() == SPECIES.tolist()
    assert net.metadata["scaling"] == "standard"
    assert net.metadata["feature_names"].tolist() == ["big", "small"]
    assert str(net.metadata["target"]) == "species"
    # Unscaled inputs in the hundreds would leave the net near chance after 60 epochs.
    out = tmp_path / "preds.csv"
    code, stdout, err = run(["predict", model, "--data", data, "--out", str(out)], capsys)
    assert code == 0, err
    assert stdout == f"90 predictions written to {out}\n"
    rows = read_csv(out)
    assert rows[0] == ["species"]
    predicted = np.array([r[0] for r in rows[1:]])
    assert set(predicted) <= set(SPECIES)
    assert np.mean(predicted == truth) >= 0.9


def test_predict_prints_one_label_per_line_without_out(flowers, capsys):
    data, model, _ = flowers
    capsys.readouterr()
    code, stdout, err = run(["predict", model, "--data", data], capsys)
    assert code == 0, err
    lines = stdout.splitlines()
    assert len(lines) == 90 and set(lines) <= set(SPECIES)


def test_predict_reads_the_feature_columns_by_name(flowers, tmp_path, capsys):
    data, model, _ = flowers
    rows = read_csv(data)
    # Columns reordered, the target gone, an extra column: the same predictions.
    other = write_csv(tmp_path / "other.csv", ["note", "small", "big"],
                      [["x"] * 90, [r[2] for r in rows[1:]], [r[0] for r in rows[1:]]])
    capsys.readouterr()
    assert run(["predict", model, "--data", data], capsys)[1] == \
        run(["predict", model, "--data", other], capsys)[1]


def test_evaluate_prints_loss_accuracy_and_per_class_counts(flowers, capsys):
    data, model, truth = flowers
    capsys.readouterr()
    code, out, err = run(["evaluate", model, "--data", data, "--threads", "1"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "data: flowers.csv, 90 samples, target 'species'"
    assert lines[1].startswith("loss: ") and "(cross_entropy)" in lines[1]
    accuracy = float(lines[2].split()[1])
    assert accuracy >= 0.9 and lines[2].endswith("(90 samples)")
    for name, line in zip(SPECIES, lines[3:]):
        assert line.startswith(f"class '{name}': {np.sum(truth == name)} samples, ")
    code, quiet, _ = run(["evaluate", model, "--data", data, "--target", "species", "-q"],
                         capsys)
    assert code == 0 and quiet.splitlines() == lines[1:3]


def test_regression_round_trip_in_target_units(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 2))
    y = 300.0 + 50.0 * X[:, 0] - 20.0 * X[:, 1]  # targets far from 0: scaled in training
    data = tmp_path / "d.npz"
    np.savez(data, X=X, t=y)
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(data), "--target", "t", "--epochs", "40",
                 "--hidden", "16", "--quiet", "--out", model, "--dtype", "float64"]) == 0
    capsys.readouterr()
    code, out, err = run(["predict", model, "--data", str(data)], capsys)
    assert code == 0, err
    predicted = np.array(out.split(), dtype=float)
    assert np.sqrt(np.mean((predicted - y) ** 2)) < 10.0  # the targets' spread is 54
    code, out, err = run(["evaluate", model, "--data", str(data)], capsys)
    assert code == 0, err
    assert "on targets scaled as in training" in out
    assert float(out.split("R2: ")[1].split()[0]) > 0.95
    assert "(in target units)" in out


def test_poisson_counts_train_predict_and_evaluate(tmp_path, capsys):
    """--loss poisson: a regression on unscaled counts (scaled, they would go negative),
    predictions are the means exp(z), evaluate reports R2 and RMSE; negative counts are
    a one-line error."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 2))
    y = rng.poisson(np.exp(0.8 * X[:, 0] - 0.5 * X[:, 1] + 1.0))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    model = str(tmp_path / "m.npz")
    code, out, err = run(["train", "--data", str(data), "--loss", "poisson", "--epochs", "60",
                          "--hidden", "16", "--out", model, "--dtype", "float64"], capsys)
    assert code == 0, err
    assert "task: regression (--loss poisson)" in out
    net = fd.MLP.load(model)
    assert net.loss_name == "poisson"
    code, out, err = run(["predict", model, "--data", str(data)], capsys)
    assert code == 0, err
    predicted = np.array(out.split(), dtype=float)
    assert (predicted > 0).all()
    mu = np.exp(0.8 * X[:, 0] - 0.5 * X[:, 1] + 1.0)
    assert np.median(np.abs(predicted / mu - 1)) < 0.2
    code, out, err = run(["evaluate", model, "--data", str(data)], capsys)
    assert code == 0, err
    assert "(poisson)" in out and "scaled" not in out
    assert float(out.split("R2: ")[1].split()[0]) > 0.5 and "RMSE" in out
    np.savez(data, X=X, y=-y)
    code, out, err = run(["train", "--data", str(data), "--loss", "poisson", "--epochs", "1",
                          "--quiet", "--out", model], capsys)
    assert_one_line_error(code, err)
    assert "poisson targets must be >= 0" in err


def test_a_model_without_metadata_predicts_integer_labels(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    net = fd.MLP([3, 4, 2], seed=0)
    net.fit(X, y, epochs=2)
    model = tmp_path / "plain.npz"
    net.save(model)
    code, out, err = run(["predict", str(model), "--data", str(data)], capsys)
    assert code == 0, err
    assert out.split() == [str(v) for v in net.predict(X)]
    code, out, err = run(["evaluate", str(model), "--data", str(data)], capsys)
    assert code == 0, err
    assert f"loss: {net.loss(X, y):.6g} (cross_entropy)" in out
    assert "class 0: " in out and "class 1: " in out


def test_predict_out_csv_for_several_outputs(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 2))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=np.c_[X.sum(axis=1), X[:, 0]])
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(data), *TINY, "--out", model]) == 0
    capsys.readouterr()
    out = tmp_path / "p.csv"
    code, stdout, err = run(["predict", model, "--data", str(data), "--out", str(out), "-q"],
                            capsys)
    assert code == 0 and stdout == "", err
    rows = read_csv(out)
    assert rows[0] == ["y_0", "y_1"] and len(rows) == 31 and len(rows[1]) == 2


@pytest.fixture
def files(tmp_path, flowers):
    """Bad inputs beside the flowers model (m.npz) and data (flowers.csv)."""
    write_csv(tmp_path / "narrow.csv", ["big"], [[1.0, 2.0]])
    write_csv(tmp_path / "alien.csv", ["big", "small", "species"],
              [[500.0, 600.0], [0.0, 0.001], ["setosa", "tulip"]])
    np.savez(tmp_path / "wide.npz", X=np.zeros((2, 5)))
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    plain = fd.MLP([2, 2], seed=0)
    plain.save(tmp_path / "plain.npz")
    return tmp_path


@pytest.mark.parametrize("argv, expected_code", [
    (["predict", "{tmp}/m.npz"], 2),  # --data is required
    (["evaluate", "{tmp}/m.npz"], 2),
    (["predict", "{tmp}/m.npz", "--data", "{tmp}/flowers.csv", "--out", "{tmp}/folder.csv"], 2),
    (["predict", "{tmp}/m.npz", "--data", "{tmp}/flowers.csv", "--threads", "0"], 2),
    (["evaluate", "{tmp}/plain.npz", "--data", "{tmp}/flowers.csv"], 2),  # no target known
    (["predict", "{tmp}/missing.npz", "--data", "{tmp}/flowers.csv"], 1),
    (["predict", "{tmp}/junk.npz", "--data", "{tmp}/flowers.csv"], 1),
    (["predict", "{tmp}/m.npz", "--data", "{tmp}/missing.csv"], 1),
    (["predict", "{tmp}/m.npz", "--data", "{tmp}/narrow.csv"], 1),  # no column 'small'
    (["predict", "{tmp}/m.npz", "--data", "{tmp}/wide.npz"], 1),  # 5 features, not 2
    (["evaluate", "{tmp}/m.npz", "--data", "{tmp}/alien.csv"], 1),  # 'tulip' is unknown
    (["evaluate", "{tmp}/m.npz", "--data", "{tmp}/flowers.csv", "--target", "big"], 1),
])
def test_bad_predict_and_evaluate_input_is_one_line(argv, expected_code, files, capsys):
    argv = [arg.replace("{tmp}", str(files)) for arg in argv]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, expected_code)


def test_unknown_labels_are_named(files, capsys):
    code, _, err = run(["evaluate", f"{files}/m.npz", "--data", f"{files}/alien.csv"], capsys)
    assert code == 1 and "labels ['tulip'] not seen in training" in err


@pytest.mark.parametrize("scale", ["standard", "none"])
def test_a_feature_beyond_the_models_dtype_is_one_line_naming_the_file(tmp_path, capsys, scale):
    """NumPy's overflow warning, then "X contains NaN or infinity" of a file that held
    neither."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    np.savez(tmp_path / "train.npz", X=X, y=y)
    X[7, 1] = 1e39
    np.savez(tmp_path / "new.npz", X=X, y=y)
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(tmp_path / "train.npz"), *TINY, "--scale", scale,
                 "--out", model]) == 0
    capsys.readouterr()
    for command in ("predict", "evaluate"):
        code, _, err = run([command, model, "--data", str(tmp_path / "new.npz")], capsys)
        assert_one_line_error(code, err)
        assert "new.npz: a feature column holds values beyond float32's range" in err


def test_an_output_that_names_an_input_is_refused(flowers, tmp_path, capsys):
    """predict --out over its model or data, and train --out over its data, replaced
    them and said "written"."""
    data, model, _ = flowers
    capsys.readouterr()
    before = {path: open(path, "rb").read() for path in (data, model)}
    for argv in (["predict", model, "--data", data, "--out", model],
                 ["predict", model, "--data", data, "--out", data],
                 ["train", "--data", data, "--target", "species", *TINY, "--out", data],
                 ["train", "--data", data, "--target", "species", *TINY, "--out",
                  str(tmp_path / "m2.npz"), "--plot", data]):
        code, _, err = run(argv, capsys)
        assert_one_line_error(code, err, 2)
        assert "name one file" in err
    assert {path: open(path, "rb").read() for path in (data, model)} == before


def test_predict_to_a_closed_stdout_says_so(flowers, capsys, monkeypatch):
    data, model, _ = flowers
    capsys.readouterr()
    monkeypatch.setattr("sys.stdout", None)
    code = main(["predict", model, "--data", data])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, 2)
    assert "stdout is closed: give --out FILE" in err
