"""Exponential moving averages of gradients (first and second moments)."""

from __future__ import annotations

from typing import Any

import torch

Scalars = dict[str, Any]


def ema_(buf: torch.Tensor, x: torch.Tensor, beta: Any) -> torch.Tensor:
    """In place: buf ← β·buf + (1 − β)·x."""
    if torch.compiler.is_compiling():
        # lerp's own formula for weights below 1/2 (β > 1/2, every default), so the same
        # values; a traced lerp evaluates both of its branches and selects between them, five
        # vector operations instead of two, which compute-bound steps (SAdam) pay for.
        return buf.add_((x - buf) * (1 - beta))
    return buf.lerp_(x, 1 - beta)


def ema_scaled_(buf: torch.Tensor, x: torch.Tensor, scale: torch.Tensor, beta: Any) -> torch.Tensor:
    """In place: buf ← β·buf + (1 − β)·scale·x, ``scale`` a 0-d tensor (a reduction); eagerly
    without a temporary for scale·x."""
    if torch.compiler.is_compiling():
        return ema_(buf, x * scale, beta)
    return buf.mul_(beta).addcmul_(x, scale, value=1 - beta)


def ema_sq_(buf: torch.Tensor, x: torch.Tensor, beta: Any) -> torch.Tensor:
    """In place: buf ← β·buf + (1 − β)·x²."""
    return buf.mul_(beta).addcmul_(x, x, value=1 - beta)


def running_max_(buf: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """In place: buf ← max(buf, x) (AMSGrad, Reddi et al. 2018)."""
    return torch.maximum(buf, x, out=buf)


def adam_moments(
    g: torch.Tensor, s: dict[str, torch.Tensor], k: Scalars
) -> tuple[torch.Tensor, torch.Tensor]:
    """Adam's moments in ``exp_avg``/``exp_avg_sq``: m ← EMA_β1(g), v ← EMA_β2(g²); with
    ``amsgrad`` the second returned tensor is the running maximum ``max_exp_avg_sq``."""
    m = ema_(s["exp_avg"], g, k["beta1"])
    v = ema_sq_(s["exp_avg_sq"], g, k["beta2"])
    if k.get("amsgrad", False):
        v = running_max_(s["max_exp_avg_sq"], v)
    return m, v
