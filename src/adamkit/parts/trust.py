"""LAMB's layer-wise trust ratio (You et al. 2020, arXiv:1904.00962)."""

from __future__ import annotations

import torch

from adamkit.core.reduce import norm


def trust_ratio(
    p: torch.Tensor, u: torch.Tensor, clamp: tuple[float, float] | None = None
) -> torch.Tensor:
    """‖θ‖/‖u‖ (‖θ‖ clipped to ``clamp``), and 1 where either norm is 0; a 0-d tensor."""
    return trust_ratio_of_norms(norm(p), norm(u), clamp)


def trust_ratio_of_norms(
    w: torch.Tensor, n: torch.Tensor, clamp: tuple[float, float] | None = None
) -> torch.Tensor:
    """:func:`trust_ratio` from w = ‖θ‖ and n = ‖u‖."""
    if clamp is not None:
        w = w.clamp(clamp[0], clamp[1])
    usable = (w > 0) & (n > 0)
    return torch.where(usable, w / torch.where(usable, n, 1.0), 1.0)
