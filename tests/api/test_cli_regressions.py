"""Command-line cases that failed before (issue 9's list)."""
import os
import subprocess
import sys

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
