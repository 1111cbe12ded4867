"""Division guarded against zero denominators, without a host synchronisation."""

from __future__ import annotations

import torch


def safe_div(num: torch.Tensor, den: torch.Tensor, fallback: float) -> torch.Tensor:
    """num / den where den ≠ 0, ``fallback`` elsewhere (what the division gives there is
    discarded)."""
    return torch.where(den == 0, fallback, num / den)


def sign_floor(u: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """u with |u| raised to at least ``floor`` keeping its sign; ``floor`` where u = 0 (B_Adam)."""
    return u.abs().clamp_(min=floor).copysign_(u + 0.0)  # u + 0 is +0 where u = −0
