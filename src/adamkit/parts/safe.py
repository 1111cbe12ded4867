"""Division guarded against zero denominators, without a host synchronisation."""

from __future__ import annotations

import torch


def safe_div(num: torch.Tensor, den: torch.Tensor, fallback: float) -> torch.Tensor:
    """num / den where den ≠ 0, ``fallback`` elsewhere (the division runs only where den ≠ 0)."""
    zero = den == 0
    return (num / den.masked_fill(zero, 1.0)).masked_fill_(zero, fallback)


def sign_floor(u: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """u with |u| raised to at least ``floor`` keeping its sign; ``floor`` where u = 0 (B_Adam)."""
    raised = torch.where(u.abs() > floor, u, u.sign() * floor)
    return torch.where(raised == 0, floor, raised)
