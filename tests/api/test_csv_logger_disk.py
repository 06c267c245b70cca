"""CSVLogger on a disk that fills up: whole lines or none."""
import errno
import os

import numpy as np
import pytest

import fastdnn as fd


def test_csv_logger_takes_back_a_line_written_in_part(tmp_path, monkeypatch):
    """A disk that filled up (or ``ulimit -f``) took the first bytes of an epoch's line
    and none of the rest: os.write returned the part it wrote, which was not looked at,
    so the log ended in half a line (its cut number still parsed), the next epoch's
    write raised, and a resumed fit's first line was glued onto the half line."""
    X = np.random.default_rng(0).normal(size=(32, 3))
    y = np.arange(32) % 2
    path = tmp_path / "log.csv"
    net = fd.MLP([3, 4, 2], seed=0)
    net.fit(X, y, epochs=1, callbacks=[fd.CSVLogger(path)])
    before = path.read_bytes()
    write = os.write
    lines = []

    def disk_fills_up(fd_, data):
        if not bytes(data[:1]).isdigit():  # not a CSV line
            return write(fd_, data)
        lines.append(data)
        if len(lines) == 1:
            return write(fd_, data[:len(data) // 2])  # what fitted
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", disk_fills_up)
    with pytest.raises(OSError) as info:
        net.fit(X, y, epochs=3, callbacks=[fd.CSVLogger(path, append=True)])
    monkeypatch.undo()
    assert len(lines) == 2 and path.read_bytes() == before
    assert "log.csv" in str(info.value)  # "[Errno 28] No space left on device" named none
    net.fit(X, y, epochs=1, callbacks=[fd.CSVLogger(path, append=True)])
    assert [len(line.split(",")) for line in path.read_text().splitlines()] == [7, 7, 7]
