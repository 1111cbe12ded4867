"""The final parameter update shared by every rule: decay and descent in one expression."""

from __future__ import annotations

from typing import Any

import torch

from adamkit.core.sharding import is_dtensor

Scalars = dict[str, Any]


def add_scaled_(x: torch.Tensor, y: torch.Tensor, a: Any) -> torch.Tensor:
    """In place: x ← x + a·y (``a`` a Python number in eager mode, a 0-d tensor when compiled)."""
    if isinstance(a, (int, float)):
        return x.add_(y, alpha=a)
    return x.add_(a * y)


def descend(p: torch.Tensor, d: torch.Tensor | None, k: Scalars, scale: Any = 1.0) -> torch.Tensor:
    """θ ← θ·(1 − κ) − η·scale·d, written into ``p`` and returned.

    κ is the shell's decay factor (η·λ for ``"decoupled"``, λ for ``"fixed"``, 0 otherwise);
    ``d=None`` applies the decay only (a step that leaves the direction out). This is a rule's
    last operation: it updates ``p`` in place (the parameter itself, or its compute-dtype copy
    that the shell then rounds into the parameter), so no full-size temporary is made.
    """
    decay_(p, k)
    if d is None:
        return p
    lr = k["lr"]
    if isinstance(lr, (int, float)):  # eager: no temporary for η·scale·d
        if isinstance(scale, torch.Tensor):  # a 0-d tensor (a reduction)
            return p.addcmul_(d, scale, value=-lr)
        return p.add_(d, alpha=-lr * scale)
    return p.sub_(lr * scale * d)


def descend_ratio(
    p: torch.Tensor, num: torch.Tensor, den: torch.Tensor, k: Scalars, scale: Any = 1.0
) -> torch.Tensor:
    """θ ← θ·(1 − κ) − η·scale·num/den in place (:func:`descend` with d = num/den): in eager
    mode one fused pass (``addcdiv_``), as torch.optim's Adam, and no temporary."""
    decay_(p, k)
    step = k["lr"] * scale
    if is_dtensor(p):
        # With a broadcast denominator (Adam-mini's blocks) of a DTensor sharded so that some
        # rank holds nothing of it, DTensor finds no in-place placement; out of place, it
        # redistributes.
        new = torch.addcdiv(p, num, den, value=-step)
        return p.copy_(new.redistribute(p.device_mesh, p.placements))  # type: ignore[attr-defined]
    if isinstance(step, (int, float)):
        return p.addcdiv_(num, den, value=-step)
    return p.sub_(step * num / den)


def scaled_sum(x: torch.Tensor, y: torch.Tensor, a: Any) -> torch.Tensor:
    """x + a·y as a new tensor (one pass in eager mode, where ``a`` is a Python number)."""
    if isinstance(a, (int, float)):
        return torch.add(x, y, alpha=a)
    return x + a * y


def decay_(p: torch.Tensor, k: Scalars) -> torch.Tensor:
    """θ ← θ·(1 − κ) in place, when the group decays."""
    if k["decay_active"]:
        p.mul_(1 - k["decay"])
    return p
