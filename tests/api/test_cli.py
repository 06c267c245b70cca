"""Tests for the ``fastdnn`` command line, run in-process through ``cli.main``.

Epochs are kept tiny: these check the plumbing, not the learning (except the one
``slow`` test that holds the default run to its promise of >= 97% on digits).
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastdnn as fd
from fastdnn.cli import main, parse_hidden, throughput_line
from fastdnn.datasets import load_digits

TINY = ["--epochs", "2", "--hidden", "8"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, expected_code=None):
    assert code != 0
    if expected_code is not None:
        assert code == expected_code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fastdnn: error: ")
    assert "Traceback" not in err


def test_train_digits_writes_loadable_model(tmp_path, capsys):
    pytest.importorskip("sklearn")
    path = tmp_path / "m.npz"
    code, out, err = run(["train", *TINY, "--out", str(path), "--seed", "1"], capsys)
    assert code == 0, err
    assert "held-out accuracy: " in out
    assert "samples/s" in out and "wall time: " in out
    assert f"model saved to {path}" in out
    net = fd.MLP.load(str(path))
    assert list(net.sizes) == [64, 8, 10]
    assert net.loss_name == "cross_entropy"
    X, _ = load_digits()
    assert net.predict(X[:5]).shape == (5,)


def test_train_options_reach_the_model(tmp_path, capsys):
    pytest.importorskip("sklearn")
    path = tmp_path / "m.npz"
    argv = ["train", "--epochs", "1", "--hidden", "6,5", "--activation", "tanh,relu",
            "--dtype", "float64", "--optimizer", "momentum", "--lr", "0.05",
            "--batch-size", "100", "--threads", "1", "--out", str(path), "--quiet"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    net = fd.MLP.load(str(path))
    assert list(net.sizes) == [64, 6, 5, 10]
    assert list(net.activations) == ["tanh", "relu"]
    assert net.dtype == np.float64
    assert "momentum lr=0.05" not in out  # --quiet drops the header lines
    assert "held-out accuracy: " in out


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_other_optimizers_run(optimizer, tmp_path, capsys):
    argv = ["train", "--dataset", "zigzag", "--epochs", "1", "--hidden", "4",
            "--optimizer", optimizer, "--no-save", "--quiet"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "held-out R2: " in out and "model saved" not in out


def test_train_parity_evaluates_on_all_data(tmp_path, capsys):
    code, out, err = run(["train", "--dataset", "parity", *TINY,
                          "--out", str(tmp_path / "p.npz")], capsys)
    assert code == 0, err
    assert "all data accuracy: " in out and "(256 samples)" in out
    assert list(fd.MLP.load(str(tmp_path / "p.npz")).sizes) == [8, 8, 2]


def test_train_zigzag_is_regression(tmp_path, capsys):
    code, out, err = run(["train", "--dataset", "zigzag", *TINY,
                          "--out", str(tmp_path / "z.npz")], capsys)
    assert code == 0, err
    assert "held-out R2: " in out
    net = fd.MLP.load(str(tmp_path / "z.npz"))
    assert net.loss_name == "mse" and list(net.sizes) == [1, 8, 1]


def test_train_from_csv(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 3))
    y = (X[:, 0] > 0).astype(int) + 1  # labels 1, 2: mapped to 0, 1
    csv = tmp_path / "d.csv"
    rows = ["f0,f1,label,f2"] + [f"{a},{b},{t},{c}" for (a, b, c), t in zip(X, y)]
    csv.write_text("\n".join(rows) + "\n")
    path = tmp_path / "m.npz"
    code, out, err = run(["train", "--data", str(csv), "--target", "label", *TINY,
                          "--out", str(path)], capsys)
    assert code == 0, err
    assert "labels [1, 2] mapped to 0..1" in out
    assert "held-out accuracy: " in out
    assert list(fd.MLP.load(str(path)).sizes) == [3, 8, 2]


def test_train_from_npz_regression(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 2))
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=X[:, 0] - 0.5 * X[:, 1])
    code, out, err = run(["train", "--data", str(data), *TINY, "--no-save"], capsys)
    assert code == 0, err
    assert "held-out R2: " in out


def test_out_without_npz_suffix_reports_real_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["train", "--dataset", "parity", "--epochs", "1", "--hidden", "4",
                          "--out", "model"], capsys)
    assert code == 0, err
    saved = out.split("model saved to ")[1].strip()
    assert os.path.exists(saved)
    fd.MLP.load(saved)


@pytest.mark.parametrize(
    "argv, expected_code",
    [
        (["train", "--hidden", "abc"], 2),
        (["train", "--hidden", "8,-1"], 2),
        (["train", "--dataset", "nope"], 2),
        (["train", "--epochs", "0"], 2),
        (["train", "--lr", "fast"], 2),
        (["train", "--lr", "inf"], 2),  # exit 1, from the optimizer's check
        (["train", "--lr", "1e400"], 2),
        (["train", "--target", "label"], 2),
        (["train", "--dataset", "digits", "--data", "x.npz"], 2),
        (["train", "--data", "{tmp}/d.csv"], 2),
        (["train", "--bogus"], 2),
        (["train", "--test-size", "1.5"], 2),
        (["train", "--out", "{tmp}/no/such/folder/m.npz"], 2),
        (["nope"], 2),
        ([], 2),
        (["train", "--data", "{tmp}/missing.npz"], 1),
        (["train", "--data", "{tmp}/d.csv", "--target", "nope"], 1),
        (["train", "--data", "{tmp}/bad.csv", "--target", "y"], 1),
        (["train", "--data", "{tmp}/d.txt", "--target", "y"], 1),
        # Bad arguments: exit 2, as the README says (they exited 1, from the net's check).
        (["train", "--dataset", "parity", "--activation", "bogus", "--epochs", "1"], 2),
        (["train", "--dataset", "parity", "--hidden", "4,4", "--activation", "relu,tanh,relu",
          "--epochs", "1"], 2),
        (["train", "--dataset", "zigzag", "--loss", "cross_entropy", "--epochs", "1"], 1),
    ],
)
def test_bad_input_gives_one_line_error(argv, expected_code, tmp_path, capsys):
    (tmp_path / "d.csv").write_text("a,y\n1,0\n2,1\n3,0\n4,1\n5,1\n")
    (tmp_path / "bad.csv").write_text("a,y\n1,0\n2,oops\n")
    (tmp_path / "d.txt").write_text("a,y\n1,0\n")
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in argv]
    code, out, err = run(argv, capsys)
    assert_one_line_error(code, err, expected_code)


def test_diverged_training_is_reported(monkeypatch, capsys):
    def diverge(self, *args, **kwargs):
        raise fd.TrainingDivergedError("loss became nan at epoch 1")

    monkeypatch.setattr(fd.MLP, "fit", diverge)
    code, out, err = run(["train", "--dataset", "parity", "--no-save"], capsys)
    assert_one_line_error(code, err, 1)
    assert "nan" in err and "--lr" in err


def test_help_exits_zero(capsys):
    code, out, err = run(["train", "--help"], capsys)
    assert code == 0
    assert "--dataset" in out and "--optimizer" in out


def test_parse_hidden():
    assert parse_hidden("128,128") == [128, 128]
    assert parse_hidden(" 7 ") == [7]
    assert parse_hidden("") == []


def test_throughput_leaves_out_the_compile_epoch():
    line = throughput_line([5.0, 0.5, 0.5], n_train=1000)
    assert "2,000 samples/s (epochs 2-3)" in line and "6.00 s for 3 epochs" in line
    # One epoch: its rate after the compile, or none; never one that counts the compile.
    line = throughput_line([2.0], n_train=100, first_rate=1234.4)
    assert "1,234 samples/s (epoch 1, after the JIT compile)" in line
    assert "2.00 s for 1 epoch" in line and "epochs" not in line
    line = throughput_line([2.0], n_train=100)
    assert "throughput: not measured" in line and "samples/s" not in line


def test_one_epoch_reports_no_rate_that_counts_the_compile(tmp_path, capsys):
    assert main(["train", "--dataset", "parity", "--epochs", "1", "--hidden", "4",
                 "--quiet", "--no-save"]) == 0
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("throughput:")]
    assert len(line) == 1
    assert "after the JIT compile" in line[0] or "not measured" in line[0], line[0]


def test_python_dash_m(tmp_path):
    path = tmp_path / "m.npz"
    cmd = [sys.executable, "-m", "fastdnn", "train", "--dataset", "parity", "--epochs", "1",
           "--hidden", "4", "--quiet", "--out", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "all data accuracy: " in proc.stdout
    assert path.exists()


def _console_run(argv):
    """``fastdnn.cli.run`` (the console script's entry) in a subprocess whose stdout is a
    pipe (block-buffered) and which registered an ``atexit`` handler before it, as
    coverage or logging do, writing a last line to stdout unflushed."""
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stdout.write('atexit ran\\n'))\n"
            "from fastdnn.cli import run\n"
            f"sys.argv = ['fastdnn'] + {argv!r}\n"
            "run()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env=env)


def test_console_entry_exits_with_output_flushed_and_atexit_run(tmp_path):
    # run() skips the interpreter's teardown: what it keeps must still happen.
    path = tmp_path / "m.npz"
    proc = _console_run(["train", "--dataset", "parity", "--epochs", "1", "--hidden", "4",
                         "--quiet", "--out", str(path)])
    assert proc.returncode == 0, proc.stderr
    assert "all data accuracy: " in proc.stdout and proc.stdout.endswith("atexit ran\n")
    assert path.exists()


def test_console_entry_keeps_the_exit_code(tmp_path):
    proc = _console_run(["train", "--epochs", "0"])
    assert proc.returncode == 2 and "error" in proc.stderr
    assert proc.stdout.endswith("atexit ran\n")
    proc = _console_run(["predict", str(tmp_path / "none.npz"), "--data",
                         str(tmp_path / "none.csv")])
    assert proc.returncode == 1 and "error" in proc.stderr


@pytest.mark.slow
def test_default_run_reaches_97_percent_on_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    code, out, err = run(["train", "--quiet", "--out", str(tmp_path / "m.npz")], capsys)
    assert code == 0, err
    accuracy = float(out.split("held-out accuracy: ")[1].split()[0])
    assert accuracy >= 0.97, out


def test_subcommands_plug_in_through_COMMANDS(monkeypatch, capsys):
    # The hook a future `fastdnn bench` uses: one entry, no change to main.
    from fastdnn import cli

    def configure(parser):
        parser.add_argument("--n", type=int, default=1)

    def run_dummy(args):
        print(f"dummy n={args.n}")
        return 3

    monkeypatch.setitem(cli.COMMANDS, "dummy", cli.Command("a test command", configure, run_dummy))
    code, out, err = run(["dummy", "--n", "5"], capsys)
    assert code == 3 and out == "dummy n=5\n"


def test_an_error_after_ctrl_c_is_the_interrupt(monkeypatch, capsys):
    """A second Ctrl-C inside Numba's compile came out later as "RuntimeError: no
    compiled object yet" (a ctypes callback drops the KeyboardInterrupt): a traceback and
    exit 1.  An error after a press is the interrupt: one line, exit 130."""
    import time

    from fastdnn import cli, fitting

    def pressed_then_broken(args):
        fitting.PRESSES.append(time.perf_counter())
        raise RuntimeError("no compiled object yet for <Library 'train_steps'>")

    monkeypatch.setattr(fitting, "PRESSES", [])
    monkeypatch.setitem(cli.COMMANDS, "dummy", cli.Command("a test", lambda p: None,
                                                           pressed_then_broken))
    code, out, err = run(["dummy"], capsys)
    assert code == 130 and err == "fastdnn: interrupted\n"
    # Without a press, the same error is not hidden.
    monkeypatch.setitem(cli.COMMANDS, "dummy", cli.Command(
        "a test", lambda p: None, lambda args: (_ for _ in ()).throw(RuntimeError("bug"))))
    with pytest.raises(RuntimeError, match="bug"):
        cli.main(["dummy"])


def test_ctrl_c_saves_the_model_trained_so_far(tmp_path, monkeypatch, capsys):
    """The CLI threw the completed epochs away on Ctrl-C (the Python API keeps them):
    now the net after its last step is saved, bit for bit the net of a shorter run, and
    a press before the first step leaves an earlier model in place."""
    pytest.importorskip("sklearn")
    from fastdnn import cli

    whole, cut = tmp_path / "two.npz", tmp_path / "cut.npz"
    code, out, err = run(["train", "--quiet", "--epochs", "2", "--hidden", "8",
                          "--out", str(whole)], capsys)
    assert code == 0, err

    def press_after_two(self, epoch, logs):
        self.rates.append(logs.get("rate"))
        if len(self.rates) == 2:
            raise KeyboardInterrupt
        return False

    monkeypatch.setattr(cli._Rates, "on_epoch_end", press_after_two)
    code, out, err = run(["train", "--quiet", "--epochs", "5", "--hidden", "8",
                          "--out", str(cut)], capsys)
    assert code == 130
    assert "interrupted after 2 of 5 epochs" in err and err.endswith("fastdnn: interrupted\n")
    a, b = fd.MLP.load(whole), fd.MLP.load(cut)
    for (Wa, ba), (Wb, bb) in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)
    assert a.metadata.keys() == b.metadata.keys()

    def press_at_start(self, *args, **kwargs):
        raise KeyboardInterrupt

    before = cut.read_bytes()
    monkeypatch.setattr(fd.MLP, "fit", press_at_start)
    code, out, err = run(["train", "--quiet", "--epochs", "5", "--hidden", "8",
                          "--out", str(cut)], capsys)
    assert code == 130 and "nothing saved" in err
    assert cut.read_bytes() == before


def test_ctrl_c_while_scoring_the_held_out_rows_saves_the_trained_model(tmp_path, monkeypatch,
                                                                         capsys):
    """The press between the fit's end and the save (scoring the held-out rows, slow on a
    big set) threw the whole trained model away."""
    pytest.importorskip("sklearn")
    whole, cut = tmp_path / "two.npz", tmp_path / "cut.npz"
    code, out, err = run(["train", "--quiet", "--epochs", "2", "--hidden", "8",
                          "--out", str(whole)], capsys)
    assert code == 0, err

    def press(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fd.MLP, "score", press)
    code, out, err = run(["train", "--quiet", "--epochs", "2", "--hidden", "8",
                          "--out", str(cut)], capsys)
    assert code == 130 and "interrupted after 2 of 2 epochs: saving" in err
    for (Wa, ba), (Wb, bb) in zip(fd.MLP.load(whole).get_weights(), fd.MLP.load(cut).get_weights()):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(ba, bb)


def test_an_empty_out_is_refused_before_training(capsys):
    # realpath('') is the current folder, which passed the check: trained, then failed.
    code, out, err = run(["train", "--epochs", "2", "--out", ""], capsys)
    assert_one_line_error(code, err, 2)
    assert "the path is empty" in err and "epoch" not in out
