"""Memory and quality of training: ``peakmem_fit``, loss after N epochs, digits accuracy.

The ``track_`` results are numbers asv plots per commit, so a change that makes
training faster but worse shows up next to the timing.
"""
import numpy as np

from .common import cases, fastdnn, make_net


class FitMemory:
    """Peak resident memory of a process that fits for 2 epochs (asv ``peakmem_``)."""

    params = [list(cases.ASV_FIT_SIZES), list(cases.DTYPES)]
    param_names = ["size", "dtype"]
    timeout = 120

    def setup(self, size, dtype):
        self.net = make_net(size, dtype)
        self.X, self.y = cases.data(2048, self.net.sizes[0], dtype=dtype)
        self.net.fit(self.X[:64], self.y[:64], epochs=1, batch_size=64, optimizer="sgd")

    def peakmem_fit(self, size, dtype):
        self.net.fit(self.X, self.y, epochs=2, batch_size=128, optimizer="sgd")


class Convergence:
    """Training loss and held-out accuracy on the 8x8 digits after N epochs (seeded)."""

    params = [["sgd", "adam"], [5, 20]]
    param_names = ["optimizer", "epochs"]
    timeout = 180

    def setup(self, optimizer, epochs):
        fd = fastdnn()
        try:
            from fastdnn.datasets import load_digits, train_test_split
            X, y = load_digits(np.float32)
        except ImportError as exc:  # digits ship with scikit-learn
            raise NotImplementedError(str(exc)) from exc
        self.Xtr, self.Xte, self.ytr, self.yte = train_test_split(X, y, test_size=0.25,
                                                                  seed=0)
        opt = (fd.SGD(lr=0.1, momentum=0.9) if optimizer == "sgd" else fd.Adam(lr=1e-3))
        self.net = fd.MLP([64, 128, 128, 10], activation="relu", loss="cross_entropy",
                          dtype="float32", seed=0)
        self.hist = self.net.fit(self.Xtr, self.ytr, epochs=epochs, batch_size=32,
                                 optimizer=opt, shuffle=True)

    def track_train_loss(self, optimizer, epochs):
        return float(self.hist.loss[-1])

    track_train_loss.unit = "cross-entropy"

    def track_test_accuracy(self, optimizer, epochs):
        return float(self.net.score(self.Xte, self.yte))

    track_test_accuracy.unit = "accuracy"


class GPUEpoch:
    """One epoch on the GPU; n/a (NotImplementedError in setup) without CUDA."""

    params = [["cuda"], list(cases.ASV_FIT_SIZES)]
    param_names = ["device", "size"]
    timeout = 120

    def setup(self, device, size):
        fd = fastdnn()
        try:
            self.net = make_net(size, device=device)
        except (fd.DeviceError, ImportError) as exc:
            raise NotImplementedError(f"no {device} device: {exc}") from exc
        self.X, self.y = cases.data(4096, self.net.sizes[0])
        self.time_epoch(device, size)

    def time_epoch(self, device, size):
        self.net.fit(self.X, self.y, epochs=1, batch_size=256, optimizer="sgd",
                     shuffle=False)
