"""A loaded net can be seeded (MLP.load(..., seed=)), and setting net.seed seeds the
generator again (it was a plain attribute that changed nothing)."""
import pickle

import numpy as np
import pytest

import fastdnn as fd


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(120, 5)), np.arange(120) % 3


def _fit(net):
    X, y = _data()
    net.fit(X, y, epochs=2, batch_size=16, validation_split=0.2)
    return net.get_weights()


def _same(a, b):
    return all(np.array_equal(W1, W2) and np.array_equal(b1, b2)
               for (W1, b1), (W2, b2) in zip(a, b))


def test_a_net_loaded_with_a_seed_trains_as_a_net_made_with_it(tmp_path):
    path = tmp_path / "m.npz"
    fd.MLP([5, 16, 3], seed=3).save(path)
    made = fd.MLP([5, 16, 3], seed=7)
    made.set_weights(fd.MLP.load(path).get_weights())
    expected = _fit(made)
    assert _same(_fit(fd.MLP.load(path, seed=7)), expected)
    assert _same(_fit(fd.MLP.load(path, seed=7)), expected)
    assert fd.MLP.load(path, seed=7).seed == 7
    with pytest.raises(ValueError, match="seed"):
        fd.MLP.load(path, seed=-1)


def test_setting_seed_seeds_the_generator(tmp_path):
    path = tmp_path / "m.npz"
    fd.MLP([5, 16, 3], seed=3).save(path)
    runs = []
    for _ in range(2):
        net = fd.MLP.load(path)
        net.seed = 11
        runs.append(_fit(net))
    assert _same(*runs)
    assert net.seed == 11
    other = fd.MLP.load(path)
    other.seed = 12
    assert not _same(_fit(other), runs[0])
    with pytest.raises(TypeError, match="seed"):
        net.seed = 1.5


def test_seed_survives_pickles_and_copies():
    net = fd.MLP([5, 16, 3], seed=4)
    back = pickle.loads(pickle.dumps(net))
    assert back.seed == 4
    assert _same(_fit(back), _fit(net))
    old = net.__getstate__()  # a pickle from before: seed a plain attribute
    old["seed"] = old.pop("_seed")
    restored = fd.MLP.__new__(fd.MLP)
    restored.__setstate__(old)
    assert restored.seed == 4


def test_seed_cannot_change_during_a_fit():
    X, y = _data()
    net = fd.MLP([5, 8, 3], seed=0)

    def change(epoch, logs):
        net.seed = 5

    with pytest.raises(RuntimeError, match="seed"):
        net.fit(X, y, epochs=1, callbacks=[fd.LambdaCallback(on_epoch_end=change)])


def test_setting_seed_gives_the_generator_of_a_net_made_with_it(tmp_path):
    """net.seed = s seeded a bare generator, while MLP(seed=s) and MLP.load(..., seed=s)
    leave theirs past the initial weights' draws: the two ways to seed a loaded net's
    fine-tuning trained differently, and net.seed = net.seed was no no-op."""
    path = tmp_path / "m.npz"
    fd.MLP([5, 16, 3], seed=3).save(path)
    net = fd.MLP.load(path)
    net.seed = 7
    assert _same(_fit(net), _fit(fd.MLP.load(path, seed=7)))
    same = fd.MLP([5, 16, 3], activation="tanh", seed=2)
    same.seed = same.seed
    assert _same(_fit(same), _fit(fd.MLP([5, 16, 3], activation="tanh", seed=2)))
