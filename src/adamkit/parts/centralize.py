"""Gradient centralization (Yong et al. 2020, arXiv:2004.01461)."""

from __future__ import annotations

import torch

from adamkit.core.reduce import channel_mean


def centralize(g: torch.Tensor, conv_only: bool) -> torch.Tensor:
    """g − mean of g over all dims but the first, for tensors with ndim ≥ 4 (``conv_only``, the
    "GCC" variant) or ndim ≥ 2; other tensors are returned unchanged. Returns a new tensor."""
    if g.ndim >= (4 if conv_only else 2):
        return g - channel_mean(g)
    return g
