"""The exact softplus used by SAdam and friends (no threshold, unlike torch.nn.Softplus)."""

from __future__ import annotations

from typing import Any

import torch


def softplus_(x: torch.Tensor, beta: Any) -> torch.Tensor:
    """In place: sp_β(x) = log(1 + e^{βx})/β = x + log1p(e^{−βx})/β, exact for x ≥ 0
    (Tong et al. 2019). ``x`` must be a temporary the caller owns."""
    return x.add_(torch.exp(x * -beta).log1p_().div_(beta))
