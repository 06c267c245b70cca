"""fastdnn: fast training of deep feed-forward neural networks with Numba kernels."""
from .errors import DeviceError, TrainingDivergedError
from .fitting import History
from .many import fit_many
from .model import MLP
from .onnx_export import export_onnx
from .optim import SGD, Adam, AdamW, Optimizer
from .schedules import (Constant, CosineDecay, ExponentialDecay, InverseTimeDecay, Schedule,
                        StepDecay)

__version__ = "0.1.0"

__all__ = ["MLP", "History", "fit_many", "export_onnx", "SGD", "Adam", "AdamW", "Optimizer",
           "Schedule", "Constant", "InverseTimeDecay", "StepDecay", "ExponentialDecay",
           "CosineDecay", "TrainingDivergedError", "DeviceError", "__version__"]
