"""save leaves no partial or temporary file behind, even when the process is killed."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import serialize

SAVER = textwrap.dedent("""
    import sys
    import fastdnn as fd
    net = fd.MLP([1024, 2048, 2048, 10], seed=0)   # ~6.3M parameters, 25 MB
    print("ready", flush=True)
    while True:
        net.save(sys.argv[1])
""")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_during_save_leaves_no_file_behind(tmp_path):
    target = tmp_path / "model.npz"
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.6))  # somewhere inside a save (each takes ~0.1-0.3 s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != "model.npz"]
        assert leftovers == []
        if target.exists():  # whatever is there is a whole model
            assert fd.MLP.load(target).sizes == [1024, 2048, 2048, 10]


@pytest.mark.parametrize("path", ["no O_TMPFILE", "link fails"])
def test_fallback_to_a_named_temporary_file(tmp_path, monkeypatch, path):
    if path == "no O_TMPFILE":
        monkeypatch.setattr(serialize, "_unnamed_file", lambda folder: None)
    else:
        monkeypatch.setattr(serialize, "_name_unnamed", lambda f, folder: None)
    net = fd.MLP([4, 8, 3], seed=0)
    target = tmp_path / "m.npz"
    net.save(target)
    net.save(target)  # replaces
    assert os.listdir(tmp_path) == ["m.npz"]
    np.testing.assert_array_equal(fd.MLP.load(target).get_weights()[0][0],
                                  net.get_weights()[0][0])


def test_an_error_while_writing_leaves_the_old_file(tmp_path, monkeypatch):
    net = fd.MLP([4, 8, 3], seed=0)
    target = tmp_path / "m.npz"
    net.save(target)
    before = target.read_bytes()

    def broken(f, arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(serialize, "_write", broken)
    with pytest.raises(OSError, match="disk full"):
        fd.MLP([4, 8, 3], seed=1).save(target)
    assert os.listdir(tmp_path) == ["m.npz"] and target.read_bytes() == before
