"""Parameter groups for weight decay: no decay on biases and normalization weights.

Decaying a bias or the gain of a LayerNorm/BatchNorm shrinks it towards zero for no benefit, so
the usual practice (timm's ``param_groups_weight_decay``, nanoGPT, Hugging Face's Trainer) puts
every parameter with fewer than two dimensions, plus any named exception, in a group without
decay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def param_groups_weight_decay(
    model: torch.nn.Module,
    weight_decay: float = 1e-2,
    no_decay: Iterable[str] = (),
    named: bool = False,
) -> list[dict[str, Any]]:
    """Two param groups of ``model``'s trainable parameters: matrices and convolution kernels
    with ``weight_decay``, and biases, normalization weights (every parameter with ndim ≤ 1) and
    parameters whose name contains one of ``no_decay`` with ``weight_decay=0``.

    ``named=True`` lists ``(name, parameter)`` pairs, for optimizers that use names (Adam-mini).
    Empty groups are left out.

    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    >>> [len(g["params"]) for g in param_groups_weight_decay(model, 0.1)]
    [1, 3]
    """
    skip = tuple(no_decay)
    decay: list[Any] = []
    keep: list[Any] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        item = (name, p) if named else p
        (keep if p.ndim <= 1 or any(s in name for s in skip) else decay).append(item)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": keep, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
