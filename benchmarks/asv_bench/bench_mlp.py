"""Time the public API: forward, gradients (backward), one step, one epoch, predict.

Sizes, batches and dtypes are the case table's (``tests/cases.py``: ``ASV_SIZES``,
``BATCHES``, ``DTYPES``). ``setup`` builds the net and calls the timed function once,
so numba's compilation (or cache load) is never timed. Compile time has its own
``track_`` in bench_compile.py.
"""
from .common import cases, make_net, sgd

SIZES = list(cases.ASV_SIZES)
BATCHES = list(cases.BATCHES)
DTYPES = list(cases.DTYPES)


class _OneBatch:
    """A net of ``size`` and one batch of random data (no benchmarks of its own)."""

    params = [SIZES, BATCHES, DTYPES]
    param_names = ["size", "batch", "dtype"]

    def setup(self, size, batch, dtype):
        self.net = make_net(size, dtype)
        self.X, self.y = cases.data(batch, self.net.sizes[0], dtype=dtype)
        self.opt = sgd()
        self.run()  # compile or load from numba's cache outside the timing

    def run(self):
        raise NotImplementedError


class Forward(_OneBatch):
    """``net.forward`` on one batch (the logits)."""

    def run(self):
        self.net.forward(self.X)

    def time_forward(self, size, batch, dtype):
        self.run()


class Backward(_OneBatch):
    """``net.gradients``: forward, loss and layerwise backprop of one batch."""

    def run(self):
        self.net.gradients(self.X, self.y)

    def time_gradients(self, size, batch, dtype):
        self.run()


class Step(_OneBatch):
    """One plain-SGD step: ``fit`` on exactly one batch (so it includes fit's set-up)."""

    def run(self):
        self.net.fit(self.X, self.y, epochs=1, batch_size=self.X.shape[0],
                     optimizer=self.opt, shuffle=False)

    def time_step(self, size, batch, dtype):
        self.run()


class Epoch:
    """One epoch of plain SGD over ``cases.epoch_samples`` rows, in order."""

    params = [SIZES, BATCHES]
    param_names = ["size", "batch"]
    timeout = 120

    def setup(self, size, batch):
        self.net = make_net(size)
        self.X, self.y = cases.data(cases.epoch_samples(size, batch), self.net.sizes[0])
        self.opt = sgd()
        self.time_epoch(size, batch)

    def time_epoch(self, size, batch):
        self.net.fit(self.X, self.y, epochs=1, batch_size=batch, optimizer=self.opt,
                     shuffle=False)


class Predict:
    """``net.predict`` (class labels) on 10000 rows, streamed in chunks by the net."""

    params = [SIZES, DTYPES]
    param_names = ["size", "dtype"]

    def setup(self, size, dtype):
        self.net = make_net(size, dtype)
        self.X, _ = cases.data(10_000, self.net.sizes[0], dtype=dtype)
        self.net.predict(self.X[:10])

    def time_predict(self, size, dtype):
        self.net.predict(self.X)
