"""Exceptions raised by fastdnn."""


class TrainingDivergedError(FloatingPointError):
    """The loss or the weights became NaN/inf during ``fit``.

    No non-finite update reaches the weights: the net goes back to usable ones (its
    best with ``restore_best``, else those of the epoch's start for nets up to
    ``fastdnn.config.SNAPSHOT_BYTES``; L-BFGS: its best point so far), as
    :meth:`fastdnn.MLP.fit` says; ``history`` holds the completed epochs.
    """

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


class DeviceError(RuntimeError):
    """The requested device cannot be used (no numba-cuda, or no GPU)."""


class NonFiniteOutputError(ValueError):
    """A net's outputs are not finite for some rows (inputs too large for its weights):
    ``predict``, ``predict_proba`` and ``score`` raise it rather than make up labels."""
