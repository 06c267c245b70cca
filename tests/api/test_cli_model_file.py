"""The model file's metadata, which carries what ``fastdnn predict`` needs (scaling,
label names) next to the weights: ``MLP.save(path, metadata=...)``, ``net.metadata``."""
import numpy as np
import pytest

import fastdnn as fd
from fastdnn import serialize
from fastdnn.cli import main

META = {"classes": np.array(["cat", "dog", "cow"]), "x_offset": [1.5, -2.0],
        "count": 7, "name": "run-1", "flags": np.array([True, False])}


def test_metadata_round_trips_with_its_types(tmp_path):
    path = tmp_path / "m.npz"
    fd.MLP([2, 4, 3], seed=0).save(path, metadata=META)
    meta = fd.MLP.load(path).metadata
    assert sorted(meta) == sorted(META)
    for name, value in META.items():
        np.testing.assert_array_equal(meta[name], value)
        assert meta[name].dtype.kind == np.asarray(value).dtype.kind
    # Stored beside the net's own arrays under a reserved prefix; the format stays 1.
    with np.load(path) as data:
        assert {f"meta.{name}" for name in META} <= set(data.files)
        assert int(data["version"]) == 1


def test_a_file_without_metadata_loads_with_an_empty_dict(tmp_path):
    path = tmp_path / "m.npz"
    fd.MLP([2, 3], seed=0).save(path)
    assert fd.MLP.load(path).metadata == {}
    with np.load(path) as data:
        assert not [k for k in data.files if k.startswith("meta.")]


def test_saving_a_loaded_net_keeps_its_metadata_unless_replaced(tmp_path):
    first, second, third = (tmp_path / name for name in ("a.npz", "b.npz", "c.npz"))
    fd.MLP([2, 3], seed=0).save(first, metadata={"target": "y"})
    net = fd.MLP.load(first)
    net.save(second)
    assert str(fd.MLP.load(second).metadata["target"]) == "y"
    net.save(third, metadata={})
    assert fd.MLP.load(third).metadata == {}


@pytest.mark.parametrize("metadata, error, match", [
    ([("a", 1)], TypeError, "must be a dict"),
    ({1: 2}, TypeError, "names must be strings"),
    ({"": 1}, ValueError, "metadata name ''"),
    ({"a b": 1}, ValueError, "metadata name 'a b'"),
    ({"../x": 1}, ValueError, "metadata name"),
    ({".hidden": 1}, ValueError, "metadata name"),
    ({"obj": object()}, TypeError, "'obj' must hold booleans, numbers or text"),
    ({"mixed": [1, "a", None]}, TypeError, "'mixed' must hold"),
    ({"ragged": [[1], [1, 2]]}, TypeError, "'ragged' is not an array"),
])
def test_bad_metadata_is_refused_before_anything_is_written(metadata, error, match, tmp_path):
    path = tmp_path / "m.npz"
    with pytest.raises(error, match=match):
        fd.MLP([2, 3], seed=0).save(path, metadata=metadata)
    assert not path.exists()


def test_metadata_that_does_not_fit_the_net_is_one_line_in_predict(tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, X=np.zeros((3, 2)))
    model = tmp_path / "m.npz"
    fd.MLP([2, 3], seed=0).save(model, metadata={"classes": np.array(["a", "b"])})
    assert main(["predict", str(model), "--data", str(data)]) == 1
    err = capsys.readouterr().err
    assert err == ("fastdnn: error: the model's metadata 'classes' must hold 3 labels for a "
                   "net of 3 cross_entropy outputs\n")


def test_check_writable_names_the_problem(tmp_path):
    serialize.check_writable(tmp_path / "new.npz")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        serialize.check_writable(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        serialize.check_writable(tmp_path / "no" / "m.npz")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind
