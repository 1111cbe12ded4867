"""The core: the optimizer shell, hyperparameter and buffer declarations, precision policy."""

from adamkit.core.buffers import Buffer, copy_of_param, if_hyper, zeros
from adamkit.core.hparams import Hyper, HyperparameterError
from adamkit.core.shell import AdamkitOptimizer, Scalars, State

__all__ = [
    "AdamkitOptimizer",
    "Buffer",
    "Hyper",
    "HyperparameterError",
    "Scalars",
    "State",
    "copy_of_param",
    "if_hyper",
    "zeros",
]
