"""Reductions used by rules: per-tensor and per-output-channel norms and means.

Every reduction a rule needs goes through these helpers and returns a tensor (never a Python
number), so that no rule synchronises with the device and so that the helpers are the one place
to make reductions global under sharding.
"""

from __future__ import annotations

import math

import torch


def norm(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ over the whole tensor, as a 0-d tensor."""
    return torch.linalg.vector_norm(x)


def rms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x²)) over the whole tensor, as a 0-d tensor (‖x‖₂/sqrt(n): no temporary)."""
    return torch.linalg.vector_norm(x) / math.sqrt(max(1, x.numel()))


def mean_abs(x: torch.Tensor) -> torch.Tensor:
    """mean(|x|) over the whole tensor, as a 0-d tensor (‖x‖₁/n: no temporary)."""
    return torch.linalg.vector_norm(x, 1) / max(1, x.numel())


def channel_dims(x: torch.Tensor) -> tuple[int, ...]:
    """The dimensions reduced for per-output-channel statistics: all but the first."""
    return tuple(range(1, x.ndim))


def channel_rms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x²)) per output channel (dim 0), shaped (C, 1, 1, ...) to broadcast against x.

    A 1-D tensor has one element per channel, so its channel RMS is |x|.
    """
    if x.ndim <= 1:
        return x.abs()
    per_channel = x[0].numel()
    return torch.linalg.vector_norm(x, dim=channel_dims(x), keepdim=True) / math.sqrt(per_channel)


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """mean(x) per output channel (dim 0), shaped (C, 1, 1, ...)."""
    return x.mean(dim=channel_dims(x), keepdim=True)
