"""MLP.load refuses bad files early and with the right message (issue 9's list)."""
import io
import os
import time
import zipfile

import numpy as np
import pytest

import fastdnn as fd


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "net.npz"
    fd.MLP([4, 8, 3], seed=0).save(path)
    return path, dict(np.load(path))


def tampered(tmp_path, arrays, **changes):
    path = tmp_path / "tampered.npz"
    np.savez(path, **{**arrays, **changes})
    return path


def test_a_tiny_file_claiming_a_huge_net_is_refused_at_once(saved, tmp_path):
    _, arrays = saved
    path = tampered(tmp_path, arrays, sizes=np.array([4, 2 * 10 ** 7, 3]))
    start = time.perf_counter()
    with pytest.raises(ValueError, match="need 160,000,003 weights, the file holds 67"):
        fd.MLP.load(path)
    assert time.perf_counter() - start < 1.0  # nothing of the claimed size was built


@pytest.mark.parametrize("change,match", [
    (dict(sizes=np.array([4.5, 8.0, 3.0])), "list of integers"),
    (dict(theta=np.full(67, 1e39)), "beyond float32's range"),
    (dict(theta=np.zeros(67, dtype=complex)), "real numbers"),
    (dict(theta=np.full(67, np.nan)), "NaN"),
    (dict(sizes=np.array([4, 8, 4])), "need 76 weights"),
    # "need 67 weights, the file holds 67"; NumPy's "iteration over a 0-d array"
    (dict(theta=np.zeros((1, 67), np.float32)), r"theta must be 1-D \(P,\); got shape \(1, 67\)"),
    (dict(activations=np.array("relu")), "activations must be a 1-D array of names"),
])
def test_bad_contents_are_value_errors_naming_the_problem(saved, tmp_path, change, match):
    _, arrays = saved
    with pytest.raises(ValueError, match=match):
        fd.MLP.load(tampered(tmp_path, arrays, **change))


def test_an_unreadable_version_is_a_value_error(saved, tmp_path):
    _, arrays = saved
    with pytest.raises(ValueError, match="format version"):
        fd.MLP.load(tampered(tmp_path, arrays, version=np.array([1, 2])))


@pytest.mark.parametrize("version", [np.inf, -np.inf, np.nan, 1.5, 0, -1, True, "abc"])
def test_a_version_that_is_no_format_number_is_unreadable(saved, tmp_path, version):
    """int() of the member: infinity raised a bare OverflowError (fastdnn predict printed
    a traceback), and 1.5, 0, -1 and True loaded as format 1."""
    _, arrays = saved
    with pytest.raises(ValueError, match="tampered.npz' has an unreadable format version"):
        fd.MLP.load(tampered(tmp_path, arrays, version=np.array(version)))


@pytest.mark.parametrize("version", [2, 2.0, np.int32(2), "2"])
def test_a_newer_version_is_named_however_it_is_spelled(saved, tmp_path, version):
    _, arrays = saved
    with pytest.raises(ValueError, match=r"written by a newer fastdnn \(format 2\)"):
        fd.MLP.load(tampered(tmp_path, arrays, version=np.array(version)))


def test_a_newer_version_without_a_key_of_this_one_is_named_as_newer(saved, tmp_path):
    """A later format may drop keys of format 1 (theta split per layer): it was refused
    as "is missing theta", a damaged file, not one to upgrade fastdnn for."""
    _, arrays = saved
    arrays = {k: v for k, v in arrays.items() if k not in ("theta", "sizes")}
    with pytest.raises(ValueError, match=r"written by a newer fastdnn \(format 2\)"):
        fd.MLP.load(tampered(tmp_path, arrays, version=np.array(2), W1=np.zeros((4, 8))))


def test_bad_arguments_are_blamed_on_the_arguments(saved):
    path, _ = saved
    with pytest.raises(ValueError, match="^device must be"):
        fd.MLP.load(path, device="tpu")
    with pytest.raises(ValueError, match="^n_threads"):
        fd.MLP.load(path, n_threads=0)


@pytest.mark.parametrize("where", ["local header", "central directory"])
def test_a_flipped_byte_in_a_name_reads_as_corrupt(saved, tmp_path, where):
    path, _ = saved
    raw = bytearray(path.read_bytes())
    i = raw.find(b"activations") if where == "local header" else raw.rfind(b"activations")
    raw[i] ^= 1
    flipped = tmp_path / "flipped.npz"
    flipped.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        fd.MLP.load(flipped)


def test_any_flipped_bit_reads_as_corrupt_or_changes_nothing(tmp_path):
    """One bit flipped in each byte of a model file (bit ``i % 8`` of byte ``i``): each
    load is a ValueError or the saved net, never another one and never another error.
    Before the index's member count and names were checked, 5 of these 3,208 loads gave
    a net without its l2, dropout or metadata, and 358 raised zipfile's errors."""
    path = tmp_path / "net.npz"
    fd.MLP([4, 8, 3], seed=0, l2=0.5, dropout=0.25).save(
        path, metadata={"target": "y", "classes": np.array([1, 2, 3])})
    raw = path.read_bytes()
    saved = fd.MLP.load(path)

    def described(net):
        return (net.sizes, net.activations, net.loss_name, net.l2, net.dropout,
                [(k, v.tolist()) for k, v in sorted(net.metadata.items())],
                [(W.tolist(), b.tolist()) for W, b in net.get_weights()])

    flipped = tmp_path / "flipped.npz"
    kept = 0
    for i in range(len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 1 << (i % 8)
        flipped.write_bytes(bytes(damaged))
        try:
            net = fd.MLP.load(flipped)
        except ValueError:
            continue
        assert described(net) == described(saved), f"byte {i}"
        kept += 1
    assert 0 < kept < len(raw) // 2  # most flips are caught (the rest hit unread bytes)


def test_a_good_file_still_loads(saved):
    path, arrays = saved
    net = fd.MLP.load(path, n_threads=1)
    np.testing.assert_array_equal(
        np.concatenate([np.concatenate([W.ravel(), b]) for W, b in net.get_weights()]),
        arrays["theta"])
    assert os.path.getsize(path) > 0


def test_a_model_of_more_than_65535_members_loads(tmp_path):
    """A zip64 end record says 0xFFFF members for any count above: a model saved with
    70,000 metadata keys was refused as corrupt ("its index lists 65535 members")."""
    net = fd.MLP([2, 3, 1], loss="mse", seed=0)
    path = tmp_path / "many.npz"
    net.save(path, metadata={f"k{i}": i for i in range(70_000)})
    loaded = fd.MLP.load(path)
    assert len(loaded.metadata) == 70_000 and loaded.metadata["k69999"] == 69_999


def _npy(a):
    import io
    buffer = io.BytesIO()
    np.save(buffer, a)
    return buffer.getvalue()


def _header_only(descr, shape):
    import io
    buffer = io.BytesIO()
    np.lib.format.write_array_header_2_0(buffer, {"descr": descr, "fortran_order": False,
                                                  "shape": shape})
    return buffer.getvalue()


def _crafted_model(path, theta):
    import zipfile
    members = dict(format=_npy(np.array("fastdnn-mlp")), version=_npy(np.array(1)),
                   sizes=_npy(np.array([3, 4, 2])), activations=_npy(np.array(["relu"])),
                   loss=_npy(np.array("cross_entropy")), dtype=_npy(np.array("float64")),
                   theta=theta)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for key, value in members.items():
            z.writestr(key + ".npy", value)


def test_a_member_declaring_more_than_it_holds_is_refused_unread(tmp_path):
    """A 128-byte theta member whose header declared 10**12 float64s: NumPy allocated
    for it first, a MemoryError (7.3 TiB) naming no file; so did a data file's X."""
    import zipfile

    from fastdnn import datasets
    _crafted_model(tmp_path / "m.npz", _header_only("<f8", (10**12,)))
    with pytest.raises(ValueError, match=r"is corrupt \(member theta declares "
                                         r"\(1000000000000,\) of float64, and holds 0 bytes"):
        fd.MLP.load(tmp_path / "m.npz")
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("X.npy", _header_only("<f8", (10**6, 10**6)))
        z.writestr("y.npy", _npy(np.zeros(3)))
    with pytest.raises(ValueError, match="member X declares"):
        datasets.load_table(tmp_path / "d.npz", target="y")


def test_a_theta_that_does_not_fit_the_widths_is_refused_unread(tmp_path):
    # 2**27 zeros deflate to 1 MB: read before the widths' check, 1.1 GB and 8 s.
    import tracemalloc
    _crafted_model(tmp_path / "m.npz", _npy(np.zeros(2**24)))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"the widths \[3, 4, 2\] need 26 weights, the "
                                             r"file holds 16,777,216"):
            fd.MLP.load(tmp_path / "m.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**24, peak  # the theta member alone is 128 MiB


def test_an_npz_of_members_without_the_npy_suffix_loads(tmp_path):
    # Another tool's archive names its members "X" and "y" (np.load reads them): the
    # header check looked for "X.npy" and raised KeyError.
    import zipfile

    from fastdnn import datasets
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.arange(20) % 2
    with zipfile.ZipFile(tmp_path / "d.npz", "w") as z:
        z.writestr("X", _npy(X))
        z.writestr("y", _npy(y))
    table = datasets.load_table(tmp_path / "d.npz", target="y", dtype=np.float64)
    np.testing.assert_array_equal(table.X, X)


def test_members_read_in_one_pass_are_what_numpy_reads(saved, tmp_path):
    # load_npz reads each member as it checks its header (parsed once: a model of
    # 5,000 metadata keys loaded in 0.43 s, 0.27 before the header check): any layout
    # NumPy writes must come back as np.load reads it, writable.
    _, arrays = saved
    rng = np.random.default_rng(1)
    meta = {"fortran": np.asfortranarray(rng.normal(size=(3, 4))),
            "big": rng.normal(size=5).astype(">f4"), "text": np.array(["a", "bc"]),
            "flag": np.array(True), "empty": np.zeros((0, 3)), "c": np.array([1 + 2j]),
            "ints": np.arange(7, dtype=np.int16).reshape(7, 1)}
    path = tampered(tmp_path, arrays, **{f"meta.{k}": v for k, v in meta.items()})
    loaded = fd.MLP.load(path).metadata
    for name, value in meta.items():
        got = loaded[name]
        assert got.dtype == value.dtype and got.shape == value.shape, name
        np.testing.assert_array_equal(got, value)
        assert got.flags.writeable and got.flags.f_contiguous == value.flags.f_contiguous


def test_metadata_of_a_dtype_no_reader_takes_is_refused_before_the_file_is_written(tmp_path):
    """float8_e5m2 (ml_dtypes, kind 'f') was written with the descriptor '<f1', and
    MLP.load refused the whole file as corrupt, the good file it replaced gone."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    path = tmp_path / "model.npz"
    net = fd.MLP([3, 4, 2], seed=0)
    net.save(path)
    with pytest.raises(TypeError, match="metadata 'q' must hold"):
        net.save(path, metadata={"q": np.array([1.5], dtype=ml_dtypes.float8_e5m2)})
    fd.MLP.load(path)  # the earlier file, untouched


@pytest.mark.parametrize("value", [np.array([1.5], dtype=">f8"), np.float16([1, 2]),
                                   np.array([1.5], dtype=np.longdouble), np.array(["ab"]),
                                   np.array([True]), np.array([2**64 - 1], np.uint64)])
def test_metadata_numpy_reads_back_is_still_kept(tmp_path, value):
    net = fd.MLP([3, 4, 2], seed=0)
    net.save(tmp_path / "m.npz", metadata={"v": value})
    got = fd.MLP.load(tmp_path / "m.npz").metadata["v"]
    assert got.dtype == value.dtype and np.array_equal(got, value)


def test_a_theta_with_a_version_3_npy_header_loads(tmp_path):
    """NumPy writes .npy format 3.0 (and reads it); declared_member leaves that header
    to NumPy's reader (None), and the checks of theta then subscripted None: TypeError
    from MLP.load (6cd82f0), where the file loaded before."""
    path, v3 = tmp_path / "m.npz", tmp_path / "v3.npz"
    net = fd.MLP([3, 4, 2], seed=0)
    net.save(path)
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(v3, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename in ("theta.npy", "sizes.npy"):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.load(io.BytesIO(data)), version=(3, 0))
                data = buf.getvalue()
            zout.writestr(info.filename, data)
    loaded = fd.MLP.load(v3)
    np.testing.assert_array_equal(loaded.get_weights()[0][0], net.get_weights()[0][0])
