"""Division guarded against zero denominators, without a host synchronisation."""

from __future__ import annotations

import math

import torch


def safe_div(num: torch.Tensor, den: torch.Tensor, fallback: float) -> torch.Tensor:
    """num / den where den ≠ 0, ``fallback`` elsewhere (what the division gives there is
    discarded)."""
    return torch.where(den == 0, fallback, num / den)


def safe_div_finite(num: torch.Tensor, den: torch.Tensor, fallback: float) -> torch.Tensor:
    """:func:`safe_div` for finite ``num`` and ``den``, without an element-wise mask (two slow
    passes on the CPU): den/den is 1 except where den = 0, where it makes the quotient NaN."""
    if torch.compiler.is_compiling():
        return safe_div(num, den, fallback)  # the same values; a mask is free in a fused loop
    quotient = torch.div(num, den).mul_(den / den)
    return quotient.nan_to_num_(nan=fallback, posinf=math.inf, neginf=-math.inf)


def at_most_(x: torch.Tensor, biggest: float) -> torch.Tensor:
    """x ≥ 0 with NaN and values above ``biggest`` (+inf) replaced by ``biggest``; in place
    when eager. Compiled, it is a compare and a select: inductor 2.13 lowers ``nan_to_num``
    through a scalar ``isnan`` loop, which made rules that use it 1.5-2x slower."""
    if torch.compiler.is_compiling():
        return torch.where(x <= biggest, x, biggest)
    return x.nan_to_num_(nan=biggest, posinf=biggest)


def finite_or_zeros(x: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """x if the 0-d boolean ``finite`` (x's norm is finite, so every element is) is true, else
    zeros, as a new tensor. Eagerly a multiply by the flag and ``nan_to_num`` (which zeroes
    what 0·inf makes NaN): torch's CPU select with a 0-d condition took three times as long."""
    if torch.compiler.is_compiling():
        return torch.where(finite, x, 0.0)
    return torch.mul(x, finite.to(x.dtype)).nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)


def sign_floor(u: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """u with |u| raised to at least ``floor`` keeping its sign; ``floor`` where u = 0 (B_Adam)."""
    raised = u.abs().clamp_(min=floor)
    if torch.compiler.is_compiling():
        # The same values (−0 counts as positive in both): inductor 2.13 calls Sleef's
        # copysign out of line, which made the whole compiled B_Adam step 14% slower.
        return torch.where(u < 0, -raised, raised)
    return raised.copysign_(u + 0.0)  # u + 0 is +0 where u = −0
