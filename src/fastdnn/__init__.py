"""fastdnn: fast training of deep feed-forward neural networks with Numba kernels."""
__version__ = "0.1.0"  # first: modules imported below read it (onnx_export)

from .callbacks import (BackupAndRestore, Callback, CSVLogger, LambdaCallback, ModelCheckpoint,
                        ProgressBar)
from .errors import DeviceError, NonFiniteOutputError, TrainingDivergedError
from .fitting import History
from .many import fit_many
from .model import MLP
from .onnx_export import export_onnx
from .optim import LBFGS, SGD, Adam, AdamW, Optimizer
from .schedules import (Constant, CosineDecay, ExponentialDecay, InverseTimeDecay,
                        ReduceLROnPlateau, Schedule, StepDecay)

__all__ = ["MLP", "History", "fit_many", "export_onnx", "SGD", "Adam", "AdamW", "LBFGS",
           "Optimizer", "Schedule", "Constant", "InverseTimeDecay", "StepDecay",
           "ExponentialDecay", "CosineDecay", "ReduceLROnPlateau", "Callback", "ProgressBar",
           "BackupAndRestore", "ModelCheckpoint", "CSVLogger", "LambdaCallback",
           "TrainingDivergedError", "NonFiniteOutputError", "DeviceError", "__version__"]
