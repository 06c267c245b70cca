"""History reads like a record; a copied net shares no weights with its original."""
import copy

import numpy as np
import pytest

import fastdnn as fd


def fitted():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    net = fd.MLP([3, 5, 2], seed=0)
    return net, X, y, net.fit(X, y, epochs=3, validation_data=(X, y))


def test_history_indexing_and_iteration():
    _, _, _, hist = fitted()
    assert hist["loss"] == hist.loss and hist["val_metric"] == hist.val_metric
    rows = list(hist)
    assert len(rows) == 3 and set(rows[0]) == set(fd.History.KEYS)
    assert [row["loss"] for row in rows] == hist.loss
    with pytest.raises(KeyError, match="holds loss"):
        hist["accuracy"]


def test_history_as_a_dataframe():
    pd = pytest.importorskip("pandas")
    _, _, _, hist = fitted()
    assert pd.DataFrame(hist.history).shape == (3, 5)


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_a_copy_trains_without_touching_the_original(how):
    net, X, y, _ = fitted()
    before = net.get_weights()
    twin = how(net)
    assert twin is not net and repr(twin) == repr(net)
    twin.fit(X, y, epochs=2)
    for (W0, b0), (W1, b1) in zip(before, net.get_weights()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)
    # The copy carried the generator state: it trains exactly as the original would.
    net.fit(X, y, epochs=2)
    for (W0, b0), (W1, b1) in zip(net.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy])
def test_a_copy_keeps_the_metadata_it_was_loaded_with(how, tmp_path):
    path = tmp_path / "net.npz"
    fd.MLP([3, 5, 2], seed=0).save(path, metadata={"scale": np.arange(3.0)})
    twin = how(fd.MLP.load(path))
    np.testing.assert_array_equal(twin.metadata["scale"], np.arange(3.0))
    twin.save(tmp_path / "twin.npz")  # and saves it again
    np.testing.assert_array_equal(fd.MLP.load(tmp_path / "twin.npz").metadata["scale"],
                                  np.arange(3.0))
