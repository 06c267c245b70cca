"""History reads like a record; a copied net shares no weights with its original."""
import copy
import pickle

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


class Wider(fd.MLP):
    """A subclass whose constructor takes other arguments than MLP's."""

    def __init__(self, width):
        super().__init__([4, width, 2], seed=1)
        self.width = width


@pytest.mark.parametrize("how", [copy.copy, copy.deepcopy,
                                 lambda net: pickle.loads(pickle.dumps(net))])
def test_a_copy_keeps_attributes_and_subclass(how):
    net = Wider(5)
    net.classes_ = ["cat", "dog"]
    other = how(net)
    assert type(other) is Wider and other.width == 5 and other.classes_ == ["cat", "dog"]
    assert other.classes_ is not net.classes_
    X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(other.forward(X), net.forward(X))


def test_a_net_unpickled_from_read_only_buffers_trains():
    # Pickle protocol 5's out-of-band buffers (as Ray and Dask pass them) and joblib's
    # memory maps give read-only arrays: the weights must come back trainable.
    X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    net = fd.MLP([4, 8, 2], seed=0)
    buffers = []
    data = pickle.dumps(net, protocol=5, buffer_callback=buffers.append)
    frozen = [memoryview(bytes(b.raw())) for b in buffers]  # read-only memory
    back = pickle.loads(data, buffers=frozen)
    history = back.fit(X, y, epochs=2, optimizer=fd.SGD(lr=0.1), shuffle=False)
    twin = copy.deepcopy(net)
    assert history.loss == twin.fit(X, y, epochs=2, optimizer=fd.SGD(lr=0.1), shuffle=False).loss


def test_a_cuda_net_unpickled_without_a_gpu_comes_back_on_the_cpu():
    # It raised DeviceError, and pickle has no way to ask for another device.
    from fastdnn.devices import cuda_status
    if cuda_status() is None:
        pytest.skip("a GPU is usable here")
    net = fd.MLP([3, 4, 2], seed=0)
    state = net.__getstate__()
    state["_device"] = "cuda"  # as a net pickled on a GPU machine
    back = fd.MLP.__new__(fd.MLP)
    with pytest.warns(RuntimeWarning, match="unpickled on the CPU"):
        back.__setstate__(state)
    assert back.device == "cpu"
    np.testing.assert_array_equal(back._backend.get_theta(), net._backend.get_theta())
