"""Command-line cases that failed before (issue 9's list)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastdnn.cli import main


def test_a_closed_pipe_does_not_stop_training_or_saving(tmp_path):
    out = tmp_path / "m.npz"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "fastdnn", "train", "--epochs", "3",
                             "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()  # like `| head -1`
    proc.stdout.close()
    _, err = proc.communicate(timeout=300)
    assert first.startswith(b"data: digits")
    assert proc.returncode == 0, err.decode()
    assert b"Broken pipe" not in err and b"Traceback" not in err
    assert out.exists()


def test_a_net_too_big_for_memory_is_one_line(capsys):
    assert main(["train", "--hidden", "1000000000", "--no-save"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fastdnn: error: out of memory") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_csv_with_a_byte_order_mark_finds_its_first_column(tmp_path, capsys):
    path = tmp_path / "bom.csv"
    rows = "\n".join(f"{i % 2},{i},{2 * i}" for i in range(40))
    path.write_bytes(b"\xef\xbb\xbf" + f"label,a,b\n{rows}\n".encode())
    assert main(["train", "--data", str(path), "--target", "label", "--epochs", "2",
                 "--no-save", "--quiet"]) == 0
    assert "accuracy" in capsys.readouterr().out


def _trained(out):
    """Whether a run got as far as training (its first progress line)."""
    return "data: " in out


def test_out_naming_a_folder_fails_before_training(tmp_path, capsys):
    assert main(["train", "--dataset", "parity", "--epochs", "1", "--out", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert not _trained(out)
    assert err == f"fastdnn: error: --out {tmp_path}: {tmp_path} is a folder (see fastdnn --help)\n"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_out_into_a_read_only_folder_fails_before_training(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = main(["train", "--dataset", "parity", "--epochs", "1",
                     "--out", str(folder / "m.npz")])
    finally:
        folder.chmod(0o755)
    out, err = capsys.readouterr()
    assert code == 2 and not _trained(out)
    assert err.startswith(f"fastdnn: error: --out {folder / 'm.npz'}: cannot write in folder")
    assert "Permission denied" in err and len(err.splitlines()) == 1


def _csv(path, header, rows):
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return str(path)


def test_features_are_scaled_in_float64_before_the_cast(tmp_path, capsys):
    # Unix times 1.7e9 + i: cast to float32 first, 200 values became 3, and the column
    # that separates the classes exactly separated nothing.
    t = 1.7e9 + np.arange(200)
    data = _csv(tmp_path / "t.csv", "t,y", zip(t, (np.arange(200) >= 100).astype(int)))
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", data, "--target", "y", "--epochs", "30", "-q",
                 "--out", model]) == 0
    accuracy = float(capsys.readouterr().out.split("held-out accuracy: ")[1].split()[0])
    assert accuracy >= 0.9


def test_regression_predictions_are_written_at_float64_after_unscaling(tmp_path, capsys):
    # Targets near 1e8 unscaled in float64 and then written as float32 collapsed to 3
    # values.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    data = _csv(tmp_path / "r.csv", "a,b,y", zip(a, b, 1e8 + 3 * a - 2 * b))
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", data, "--target", "y", "--task", "regression",
                 "--epochs", "5", "-q", "--out", model]) == 0
    out = str(tmp_path / "p.csv")
    assert main(["predict", model, "--data", data, "--out", out, "-q"]) == 0
    written = np.loadtxt(out, delimiter=",", skiprows=1)
    assert len(np.unique(written)) > 250


def test_a_row_of_empty_cells_is_an_error_not_skipped(tmp_path, capsys):
    # "," was skipped: every later prediction was written against the row before it.
    path = tmp_path / "e.csv"
    path.write_text("a,y\n1,0\n,\n2,1\n3,0\n4,1\n")
    assert main(["train", "--data", str(path), "--target", "y", "--no-save"]) == 1
    err = capsys.readouterr().err
    assert "line 3" in err and len(err.strip().splitlines()) == 1


def test_evaluate_with_targets_of_the_wrong_width_is_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    path = tmp_path / "two.npz"
    np.savez(path, X=X, y=np.c_[X[:, 0], X[:, 1]])
    model = str(tmp_path / "m.npz")
    assert main(["train", "--data", str(path), "--epochs", "2", "-q", "--out", model]) == 0
    np.savez(path, X=X, y=X[:, 0])
    capsys.readouterr()
    assert main(["evaluate", model, "--data", str(path)]) == 1
    err = capsys.readouterr().err
    assert "the model predicts 2 values per sample" in err, err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_log_that_cannot_be_written_does_not_stop_training_or_saving(tmp_path):
    """stdout on a disk that filled up (or a terminal that hung up: EIO) ended the run at
    its next progress line with "fastdnn: error: [Errno 28] No space left on device",
    and the model, whose --out had room, was never saved."""
    out = tmp_path / "m.npz"
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fastdnn", "train", "--epochs", "3",
                               "--out", str(out)], stdout=full, stderr=subprocess.PIPE,
                              timeout=300)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert out.exists()
    assert "warning: the output to stdout was lost" in err and "Traceback" not in err


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_predictions_that_cannot_be_written_are_an_error(tmp_path):
    """predict's stdout is its result: a full disk there stays an error (exit 1)."""
    model = tmp_path / "m.npz"
    assert main(["train", "--dataset", "parity", "--epochs", "1", "--out", str(model),
                 "--quiet"]) == 0
    X = np.random.default_rng(0).normal(size=(5, 8))
    np.savez(tmp_path / "x.npz", X=X, y=np.zeros(5))
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fastdnn", "predict", str(model),
                               "--data", str(tmp_path / "x.npz")], stdout=full,
                              stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 1, proc.stderr.decode()
    assert "No space left on device" in proc.stderr.decode()


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_train_saving_to_a_stdout_that_cannot_be_written_fails():
    """train --out /dev/stdout: the stdout guard (keep_going) sent the rest of stdout to
    /dev/null at the first line that failed, the model with it: exit 0 and 'model saved'
    for a model written nowhere (exit 1 before the guard kept train going)."""
    import subprocess
    import sys

    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "fastdnn", "train", "--epochs", "1",
                               "--quiet", "--out", "/dev/stdout"], stdout=full,
                              stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 1, proc.stderr.decode()
    assert "No space left on device" in proc.stderr.decode()
