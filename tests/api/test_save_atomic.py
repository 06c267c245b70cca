"""save leaves no partial or temporary file behind, even when the process is killed."""
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastdnn as fd
from fastdnn import serialize
from support import assert_same_weights

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


@pytest.mark.parametrize("unnamed", [True, False])  # O_TMPFILE, or mkstemp's named file
def test_a_save_keeps_the_mode_of_the_file_it_replaces(tmp_path, monkeypatch, unnamed):
    if not unnamed:
        monkeypatch.setattr(serialize, "_unnamed_file", lambda folder: None)
    net = fd.MLP([2, 3, 2], seed=0)
    path = tmp_path / "m.npz"
    net.save(path)
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # a new file: as open() makes it
    os.chmod(path, 0o600)
    net.save(path)
    assert os.stat(path).st_mode & 0o777 == 0o600  # was widened to 0o644


def test_a_save_through_a_symbolic_link_replaces_the_file_it_names(tmp_path):
    net = fd.MLP([2, 3, 2], seed=0)
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "m.npz"
    net.save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    fd.MLP([2, 3, 2], seed=1).save(link)
    assert link.is_symlink()  # was replaced by a file
    np.testing.assert_array_equal(fd.MLP.load(target).get_weights()[0][0],
                                  fd.MLP([2, 3, 2], seed=1).get_weights()[0][0])


def test_metadata_names_ending_in_npy_are_refused(tmp_path):
    # NumPy's npz reader found "meta.labels" for the key "meta.labels.npy": another
    # entry's values, without an error.
    net = fd.MLP([2, 3, 2], seed=0)
    with pytest.raises(ValueError, match="must not end in '.npy'"):
        net.save(tmp_path / "m.npz", metadata={"labels": [1, 2], "labels.npy": ["a", "b"]})
    assert not (tmp_path / "m.npz").exists()


def test_a_missing_folder_is_named_not_a_temporary_file(tmp_path):
    # mkstemp's FileNotFoundError named '.../nodir/.fastdnn-q0uow2ic.tmp'.
    with pytest.raises(FileNotFoundError, match="nodir/model.npz'.*does not exist") as info:
        fd.MLP([4, 3, 2], seed=0).save(tmp_path / "nodir" / "model.npz")
    assert ".tmp" not in str(info.value)


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "mkstemp"])
def test_a_folder_given_as_the_file_is_refused_before_writing(tmp_path, monkeypatch, unnamed):
    """The rename's IsADirectoryError came after the whole write and named the
    temporary file ('.../.fastdnn-22996-7fad08c7acf0.tmp' -> '.../models')."""
    if not unnamed:
        monkeypatch.setattr(serialize, "_unnamed_file", lambda folder: None)
    (tmp_path / "models").mkdir()
    written = []
    with pytest.raises(IsADirectoryError, match="models'.*it is a folder") as info:
        serialize.write_atomic(tmp_path / "models", written.append)
    assert written == [] and ".tmp" not in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["models"] and os.listdir(tmp_path / "models") == []


@pytest.mark.parametrize("unnamed", [True, False], ids=["O_TMPFILE", "mkstemp"])
def test_a_bytes_path_is_written_and_leaves_no_temporary_file(tmp_path, monkeypatch, unnamed):
    """A bytes path met the temporary file's str name after the write: TypeError, and
    the complete .fastdnn-*.tmp file stayed behind."""
    if not unnamed:
        monkeypatch.setattr(serialize, "_unnamed_file", lambda folder: None)
    net = fd.MLP([4, 3, 2], seed=0)
    net.save(os.fsencode(tmp_path / "m.npz"))
    assert os.listdir(tmp_path) == ["m.npz"]
    assert fd.MLP.load(tmp_path / "m.npz").get_weights()[0][0].tolist() == \
        net.get_weights()[0][0].tolist()


def test_a_file_of_pickles_is_refused_without_numpys_advice_to_unpickle(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a readable fastdnn model file") as info:
        fd.MLP.load(path)
    assert "allow_pickle" not in str(info.value) and "pickled objects" in str(info.value)


@pytest.mark.parametrize("content", [b"x,y\n1,2\n", b"hello", b"\x00\x01\x02\x03"])
def test_a_file_of_another_kind_is_not_said_to_hold_pickles(tmp_path, content):
    """np.load takes any unknown bytes for a pickle: a CSV given as the model (the CLI's
    arguments swapped) was said to hold pickled objects."""
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="no .npz archive") as info:
        fd.MLP.load(path)
    assert "pickle" not in str(info.value)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="pickled objects"):
        fd.MLP.load(path)


@pytest.mark.parametrize("exists", [False, True])
def test_a_path_ending_in_a_separator_is_a_folder_not_a_file(tmp_path, exists):
    """realpath dropped the "/": save("models/") wrote a file "models" (which load then
    could not read by the path given), and save("m.npz/") replaced m.npz."""
    net = fd.MLP([4, 3, 2], seed=0)
    target = tmp_path / "m.npz"
    if exists:
        net.save(target)
    before = target.read_bytes() if exists else None
    for writer in (net.save, lambda p: fd.export_onnx(net, p)):
        with pytest.raises(IsADirectoryError, match="m.npz/'.*names a folder"):
            writer(str(target) + os.sep)
    assert os.listdir(tmp_path) == (["m.npz"] if exists else [])
    if exists:
        assert target.read_bytes() == before


def test_an_unwritable_folder_is_named_not_a_temporary_file(tmp_path, monkeypatch):
    # "Read-only file system: '.../ro/.fastdnn-sygq5cak.tmp'", a file the user never named.
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(tmp_path / ".fastdnn-sygq5cak.tmp"))

    monkeypatch.setattr(serialize, "_unnamed_file", lambda folder: None)
    monkeypatch.setattr(serialize.tempfile, "mkstemp", read_only)
    with pytest.raises(OSError, match=r"cannot write '.*model.npz' \(Read-only") as info:
        fd.MLP([4, 3, 2], seed=0).save(tmp_path / "model.npz")
    assert ".tmp" not in str(info.value) and info.value.errno == 30


@pytest.mark.parametrize("make", [
    lambda p: fd.ModelCheckpoint(p), lambda p: fd.BackupAndRestore(p)],
    ids=["ModelCheckpoint", "BackupAndRestore"])
def test_a_writing_callbacks_path_is_checked_before_the_first_epoch(tmp_path, make):
    """ModelCheckpoint and BackupAndRestore found out at the first epoch's end (an epoch
    trained for nothing), and wrote a path ending in "/" as a file."""
    net = fd.MLP([4, 3, 2], seed=0)
    before = net.get_weights()
    X, y = np.zeros((8, 4), dtype=np.float32), np.arange(8) % 2
    with pytest.raises(IsADirectoryError, match="names a folder"):
        net.fit(X, y, epochs=2, callbacks=[make(str(tmp_path / "ckpt") + os.sep)])
    np.testing.assert_array_equal(net.get_weights()[0][0], before[0][0])
    assert os.listdir(tmp_path) == []


def test_a_fifo_is_written_into_not_replaced(tmp_path):
    """A FIFO (and a device: /dev/null) was renamed over: a regular file of the model
    took its place (root's `fastdnn train --out /dev/null` made /dev/null a file)."""
    import stat
    import threading
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    net = fd.MLP([4, 8, 2], seed=0)
    serialize.check_writable(fifo)
    net.save(fifo)
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    copy = tmp_path / "copy.npz"
    copy.write_bytes(got[0])
    assert_same_weights(fd.MLP.load(copy).get_weights(), net.get_weights())
    assert sorted(os.listdir(tmp_path)) == ["copy.npz", "pipe"]  # no temporary file


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mknod needs root")
def test_a_device_stays_a_device(tmp_path):
    import stat
    null = tmp_path / "null"  # a private /dev/null (the same device numbers)
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    fd.MLP([4, 8, 2], seed=0).save(null)
    assert stat.S_ISCHR(os.stat(null).st_mode)


def test_csv_logger_to_dev_stdout_keeps_a_redirected_files_other_output(tmp_path):
    """`python fit.py > out.txt` with CSVLogger("/dev/stdout"): the header replaced
    out.txt (everything printed before was lost), and lines written through a new open
    of the file overwrote, and were overwritten by, the script's own prints."""
    script = textwrap.dedent("""
        import numpy as np, fastdnn as fd
        print("before the fit")
        X = np.random.default_rng(0).normal(size=(16, 3)); y = (X[:, 0] > 0).astype(int)
        fd.MLP([3, 4, 2], seed=0).fit(X, y, epochs=2, callbacks=[fd.CSVLogger("/dev/stdout")])
        print("after the fit")
    """)
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        subprocess.run([sys.executable, "-c", script], stdout=f, check=True, timeout=300)
    lines = out.read_text().splitlines()
    assert lines[0] == "before the fit" and lines[-1] == "after the fit", lines
    assert lines[1].startswith("epoch,loss") and [line[:2] for line in lines[2:4]] == ["0,", "1,"]
    assert len(lines) == 5


@pytest.mark.parametrize("name", ["/dev/stdout", "/proc/thread-self/fd/1", "//proc/self/fd/1"])
@pytest.mark.parametrize("mode", ["w", "a"])  # `> model.npz` and `>> model.npz`
def test_a_save_to_stdout_redirected_to_a_file_loads(tmp_path, name, mode):
    """Through O_APPEND (`>>`) the zip writer's seeks back went to the end: a corrupt
    model; /proc/thread-self/fd/1 and //proc/self/fd/1 still replaced the file."""
    if not os.path.exists(name):
        pytest.skip(f"no {name} here")
    script = f"import fastdnn as fd; fd.MLP([2, 3, 1], loss='mse', seed=0).save({name!r})"
    out = tmp_path / "model.npz"
    with open(out, mode + "b") as f:
        subprocess.run([sys.executable, "-c", script], stdout=f, check=True, timeout=300)
    assert fd.MLP.load(out).sizes == [2, 3, 1]


def test_an_error_of_the_disk_names_the_file(tmp_path, monkeypatch):
    """"[Errno 28] No space left on device" named no file: the same words for a model,
    a plot, a checkpoint, a backup or a log (and, from the CLI, for stdout)."""
    import errno

    def disk_full(f, arrays):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(serialize, "_write", disk_full)
    with pytest.raises(OSError, match=r"m\.npz'.*No space left on device") as info:
        fd.MLP([4, 8, 3], seed=0).save(tmp_path / "m.npz")
    assert info.value.errno == errno.ENOSPC and os.listdir(tmp_path) == []
    monkeypatch.undo()
    if os.path.exists("/dev/full"):  # written where it is: the same words
        with pytest.raises(OSError, match="'/dev/full'.*No space left on device"):
            fd.MLP([4, 8, 3], seed=0).save("/dev/full")


def test_a_read_only_file_is_refused_not_replaced(tmp_path):
    """open(path, "w") refuses a file without write permission (so do NumPy's,
    PyTorch's and Keras' saves); the rename replaced it, a model made read-only to keep
    it, and the CLI's --out check let it through."""
    target = tmp_path / "keep.npz"
    fd.MLP([4, 8, 3], seed=0).save(target)
    before = target.read_bytes()
    target.chmod(0o444)
    if os.access(target, os.W_OK):
        pytest.skip("this process writes read-only files (root)")
    with pytest.raises(PermissionError, match="keep.npz'.*read-only"):
        fd.MLP([4, 8, 3], seed=1).save(target)
    with pytest.raises(PermissionError, match="read-only"):
        serialize.check_writable(target)
    assert os.listdir(tmp_path) == ["keep.npz"] and target.read_bytes() == before
