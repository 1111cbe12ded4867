"""adamkit: the Adam family of optimizers for PyTorch, each rule written once.

>>> import adamkit, torch
>>> model = torch.nn.Linear(4, 2)
>>> opt = adamkit.create("adabelief", model.parameters(), lr=1e-3)
>>> sorted(adamkit.available())[:3]
['adabelief', 'adam', 'adam_gc']
"""

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, HyperparameterError
from adamkit.groups import param_groups_weight_decay
from adamkit.optimizers import (
    LAMB,
    UM,
    AdaBelief,
    Adam,
    AdamAWD,
    AdamGC,
    AdamMini,
    AdamW,
    AdamWMiniSF,
    AdamWScheduleFree,
    AdEMAMix,
    BAdam,
    DuvAdam,
    PreLAMB,
    RAdam,
    RefAdamWMiniSF,
    SAdam,
    SRAdam,
    StableAdam,
    SUAdam,
)
from adamkit.registry import available, create, optimizer_class, register

__version__ = "0.1.0"

__all__ = [
    "LAMB",
    "UM",
    "AdEMAMix",
    "AdaBelief",
    "Adam",
    "AdamAWD",
    "AdamGC",
    "AdamMini",
    "AdamW",
    "AdamWMiniSF",
    "AdamWScheduleFree",
    "AdamkitOptimizer",
    "BAdam",
    "Buffer",
    "DuvAdam",
    "Hyper",
    "HyperparameterError",
    "PreLAMB",
    "RAdam",
    "RefAdamWMiniSF",
    "SAdam",
    "SRAdam",
    "SUAdam",
    "StableAdam",
    "available",
    "create",
    "optimizer_class",
    "param_groups_weight_decay",
    "register",
]
