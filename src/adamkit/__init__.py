"""adamkit: the Adam family of optimizers for PyTorch, each rule written once.

>>> import adamkit, torch
>>> model = torch.nn.Linear(4, 2)
>>> opt = adamkit.create("adabelief", model.parameters(), lr=1e-3)
>>> sorted(adamkit.available())[:3]
['adabelief', 'adam', 'adam_gc']
"""

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, HyperparameterError
from adamkit.optimizers import (
    LAMB,
    AdaBelief,
    Adam,
    AdamGC,
    AdamW,
    AdamWScheduleFree,
    AdEMAMix,
    RAdam,
    SAdam,
    SRAdam,
)
from adamkit.registry import available, create, optimizer_class, register

__version__ = "0.1.0"

__all__ = [
    "LAMB",
    "AdEMAMix",
    "AdaBelief",
    "Adam",
    "AdamGC",
    "AdamW",
    "AdamWScheduleFree",
    "AdamkitOptimizer",
    "Buffer",
    "Hyper",
    "HyperparameterError",
    "RAdam",
    "SAdam",
    "SRAdam",
    "available",
    "create",
    "optimizer_class",
    "register",
]
