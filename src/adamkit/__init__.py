"""adamkit: the Adam family of optimizers for PyTorch, each rule written once.

>>> import adamkit, torch
>>> model = torch.nn.Linear(4, 2)
>>> opt = adamkit.create("adabelief", model.parameters(), lr=1e-3)
>>> sorted(adamkit.available())[:3]
['adabelief', 'adam', 'adam_gc']
"""

from adamkit import optimizers
from adamkit.core import AdamkitOptimizer, Buffer, Hyper, HyperparameterError
from adamkit.groups import param_groups_weight_decay
from adamkit.optimizers import *  # noqa: F403 - the optimizer classes, listed in optimizers.__all__
from adamkit.registry import available, create, optimizer_class, register

__version__ = "0.1.0"

__all__ = [
    *optimizers.__all__,
    "AdamkitOptimizer",
    "Buffer",
    "Hyper",
    "HyperparameterError",
    "available",
    "create",
    "optimizer_class",
    "param_groups_weight_decay",
    "register",
]
