"""benchmarks/paired_epochs.py: its settings, its paired summaries, one smoke run, and
failures that end in a message rather than a hang.

The summaries are checked against values worked out by hand.  The smoke run starts two
real workers on the tiny workload c (3 pairs): a few seconds with a warm Numba cache,
more after an edit of fastdnn's sources (the cache folder is named by their hash).  The
failing workers are fake fastdnn trees, so those runs import no fastdnn at all.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import paired_epochs as pe
import peers

SCRIPT = str(Path(pe.__file__).resolve())


def run_script(*args, timeout):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=timeout)


# --------------------------------------------------------------------------- settings
def test_parse_setting():
    assert pe.parse_setting("fastdnn") == pe.Setting("fastdnn", "fastdnn", None, {})
    assert pe.parse_setting("jax") == pe.Setting("jax", "jax", None, {})
    got = pe.parse_setting("FASTDNN_BLAS=scipy,OPENBLAS_CORETYPE=Haswell")
    assert (got.system, got.src) == ("fastdnn", None)
    assert got.env == {"FASTDNN_BLAS": "scipy", "OPENBLAS_CORETYPE": "Haswell"}
    assert pe.parse_setting("XLA_FLAGS=--a=b").env == {"XLA_FLAGS": "--a=b"}  # 1st = only
    src = Path(peers.__file__).resolve().parent.parent / "src"
    got = pe.parse_setting(f"src={src},FASTDNN_BLAS=scipy")
    assert (got.system, got.src, got.env) == ("fastdnn", str(src), {"FASTDNN_BLAS": "scipy"})


@pytest.mark.parametrize("text, message", [
    ("src=/nonexistent", "no fastdnn package in '/nonexistent'"),
    ("FOO", "'FOO' is neither fastdnn nor jax nor NAME=VALUE"),
    ("fastdnn,jax", "more than one system"),
    ("1X=2", "'1X' is not a variable name"),
    ("=2", "'' is not a variable name"),
])
def test_parse_setting_refuses(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        pe.parse_setting(text)


def test_parse_setting_refuses_src_for_jax(tmp_path):
    (tmp_path / "fastdnn").mkdir()
    (tmp_path / "fastdnn" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="src= is for fastdnn trees"):
        pe.parse_setting(f"jax,src={tmp_path}")


def test_worker_env(tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its caches, not /tmp's
    (tmp_path / "fastdnn").mkdir()
    (tmp_path / "fastdnn" / "__init__.py").write_text("x = 1\n")
    base = {"PATH": "/bin", "PYTHONPATH": "/elsewhere", "NUMBA_ENABLE_CUDASIM": "1"}
    env = pe.worker_env(pe.parse_setting(f"src={tmp_path},FASTDNN_BLAS=scipy"), base)
    assert "NUMBA_ENABLE_CUDASIM" not in env and env["PATH"] == "/bin"
    assert env["PYTHONPATH"] == f"{tmp_path}:/elsewhere"
    assert env["FASTDNN_BLAS"] == "scipy"
    assert env["NUMBA_CACHE_DIR"] == peers._fastdnn_cache_dir(tmp_path / "fastdnn")
    # Another source, another cache folder; a set NUMBA_CACHE_DIR is kept.
    (tmp_path / "fastdnn" / "__init__.py").write_text("x = 2\n")
    assert peers._fastdnn_cache_dir(tmp_path / "fastdnn") != env["NUMBA_CACHE_DIR"]
    kept = pe.worker_env(pe.parse_setting("NUMBA_CACHE_DIR=/c"), base)
    assert kept["NUMBA_CACHE_DIR"] == "/c" and kept["PYTHONPATH"] == "/elsewhere"
    assert "NUMBA_CACHE_DIR" not in pe.worker_env(pe.parse_setting("jax"), base)
    # The installed tree: the same folder as benchmarks/peers.py's workers use.
    assert pe.worker_env(pe.parse_setting("fastdnn"), {})["NUMBA_CACHE_DIR"] \
        == peers._fastdnn_cache_dir()


def test_a_new_source_states_cache_folder_makes_room(tmp_path, monkeypatch):
    """Each source state left a 1-2 MB cache folder in /tmp for good (29 on one
    machine): a new one keeps the KEPT_CACHES - 1 latest used besides itself."""
    import os
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old = []
    for i in range(6):
        folder = tmp_path / f"fastdnn-peers-numba-{i:012d}"
        folder.mkdir()
        os.utime(folder, (1000 + i, 1000 + i))
        old.append(folder)
    (tmp_path / "other").mkdir()
    package = tmp_path / "src" / "fastdnn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    new = Path(peers._fastdnn_cache_dir(package))
    left = sorted(p.name for p in tmp_path.glob("fastdnn-peers-numba-*"))
    assert left == sorted(f.name for f in old[-(peers.KEPT_CACHES - 1):])
    assert (tmp_path / "other").is_dir() and not new.exists()
    new.mkdir()
    assert peers._fastdnn_cache_dir(package) == str(new)  # an existing one prunes nothing
    assert len(list(tmp_path.glob("fastdnn-peers-numba-*"))) == peers.KEPT_CACHES


# --------------------------------------------------------------------------- summaries
def test_epoch_stats():
    got = pe.epoch_stats([float(s) for s in range(1, 11)])
    # ms; p90: position 0.9 * 9 = 8.1 between 9000 and 10000.
    assert got == pytest.approx(dict(median=5500.0, min=1000.0, p90=9100.0, max=10000.0))


def test_compare():
    # Ratios 2, 0.5, 1, 0.5: median 0.75; the other won pairs 2 and 4, the base pair 1,
    # pair 3 is a tie.
    assert pe.compare([1, 2, 4, 1], [2, 1, 4, 0.5]) == pytest.approx((0.75, 0.5, 0.25))
    with pytest.raises(ValueError):
        pe.compare([1, 2], [1])


def test_segments():
    assert pe.segments(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert pe.segments(4, 2) == [(0, 2), (2, 4)]
    assert pe.segments(3, 20) == [(0, 3)]
    with pytest.raises(ValueError):
        pe.segments(3, 0)


def test_report():
    a = [0.010, 0.020, 0.040, 0.010]
    b = [0.020, 0.010, 0.030, 0.005]
    lines = pe.report(["A", "B"], ["fastdnn", "FASTDNN_BLAS=scipy"], [a, b],
                      [1.5, 1.6, 1.7, None], segment=3)
    text = "\n".join(lines)
    # A in ms sorted 10 10 20 40: median 15, p90 at 2.7 -> 20 + 0.7 * 20 = 34.
    assert lines[1].split() == ["A", "fastdnn", "15.00", "10.00", "34.00", "40.00"]
    # B sorted 5 10 20 30: median 15, p90 20 + 0.7 * 10 = 27.
    assert lines[2].split() == ["B", "FASTDNN_BLAS=scipy", "15.00", "5.00", "27.00", "30.00"]
    # Ratios 2, 0.5, 0.75, 0.5: median 0.625; B won 3 of 4, A 1.
    assert "B/A: median ratio 0.625 over 4 pairs" in text
    assert "B faster in 75% of pairs, A in 25%" in text
    # Pairs 1-3: ratios 2, 0.5, 0.75 (median 0.75), B won 2 of 3, A's median 20 ms; the
    # load before pair 1.  Pair 4: 0.5, won, A 10 ms, no load.
    assert lines[-2].split() == ["1-3", "0.750", "67%", "20.00", "1.50"]
    assert lines[-1].split() == ["4-4", "0.500", "100%", "10.00", "?"]


# --------------------------------------------------------------------------- runs
def test_smoke_run(tmp_path):
    out = run_script("--workload", "c", "--pairs", "3", "--segment", "2", "--pause", "0",
                     "--json", str(tmp_path / "t.json"), "fastdnn", "FASTDNN_BLAS=scipy",
                     timeout=180)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("CPU: ") and "load (1 min) at end" in text
    for row in ("A fastdnn ", "B FASTDNN_BLAS=scipy "):
        line = next(ln for ln in text.splitlines() if ln.startswith(row))
        median, least, p90, most = map(float, line.split()[2:])
        assert 0 < least <= median <= p90 <= most
    m = re.search(r"B/A: median ratio ([\d.]+) over 3 pairs \(< 1: B faster\); "
                  r"B faster in (\d+)% of pairs, A in (\d+)%", text)
    assert m, text
    assert float(m[1]) > 0 and 0 <= int(m[2]) + int(m[3]) <= 100
    segs = re.findall(r"^\s+(\d+-\d+)\s+([\d.]+)\s+(\d+)%\s+([\d.]+)", text, re.M)
    assert [s[0] for s in segs] == ["1-2", "3-3"]
    assert all(float(s[1]) > 0 and 0 <= int(s[2]) <= 100 and float(s[3]) > 0 for s in segs)
    record = json.loads((tmp_path / "t.json").read_text())
    assert [s["setting"] for s in record["settings"]] == ["fastdnn", "FASTDNN_BLAS=scipy"]
    assert all(len(s["seconds"]) == 3 and min(s["seconds"]) > 0
               for s in record["settings"])
    assert "BLAS scipy" in record["settings"][1]["worker"]


def test_bad_setting_is_refused():
    out = run_script("fastdnn", "src=/nonexistent", timeout=60)
    assert out.returncode == 2 and "no fastdnn package in '/nonexistent'" in out.stderr


def fake_tree(root, body):
    (root / "fastdnn").mkdir(parents=True)
    (root / "fastdnn" / "__init__.py").write_text(body)
    return root


def test_worker_that_fails_names_itself_and_its_error(tmp_path):
    tree = fake_tree(tmp_path, "raise RuntimeError('a broken tree')\n")
    out = run_script("--workload", "c", f"src={tree}", "fastdnn", timeout=60)
    assert out.returncode == 1
    assert f"worker A (src={tree}) exited (exit status 1); its stderr ends:" in out.stderr
    assert "RuntimeError: a broken tree" in out.stderr


def test_worker_that_hangs_times_out(tmp_path):
    tree = fake_tree(tmp_path, "import time\ntime.sleep(120)\n")
    out = run_script("--workload", "c", "--timeout", "2", f"src={tree}", f"src={tree}",
                     timeout=60)
    assert out.returncode == 1
    assert f"worker A (src={tree}) did not answer in 2 s" in out.stderr
