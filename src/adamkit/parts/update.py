"""The final parameter update shared by every rule: decay and descent in one expression."""

from __future__ import annotations

from typing import Any

import torch

Scalars = dict[str, Any]


def descend(p: torch.Tensor, d: torch.Tensor | None, k: Scalars) -> torch.Tensor:
    """θ ← θ·(1 − κ) − η·d.

    κ is the shell's decay factor (η·λ for ``"decoupled"``, λ for ``"fixed"``, 0 otherwise);
    ``d=None`` applies the decay only (a step that leaves the direction out).
    """
    out = p * (1 - k["decay"]) if k["decay_active"] else p
    if d is None:
        return out if out is not p else p.clone()
    return out - k["lr"] * d
