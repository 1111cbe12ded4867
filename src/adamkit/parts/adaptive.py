"""Bias corrections, Adam's adaptive direction and RAdam's rectification term."""

from __future__ import annotations

import math
from typing import Any

import torch

Scalars = dict[str, Any]


def add_bias_corrections(k: Scalars, t: int) -> None:
    """k += bc1 = 1 − β1^t, bc2 = 1 − β2^t and sqrt(bc2), in float64 on the host."""
    k["bc1"] = 1.0 - k["beta1"] ** t
    k["bc2"] = 1.0 - k["beta2"] ** t
    k["sqrt_bc2"] = math.sqrt(k["bc2"])


def adam_denominator(v: torch.Tensor, k: Scalars) -> tuple[torch.Tensor, Any]:
    """(den, scale) of Adam's step direction scale · m / den from raw (uncorrected) moments.

    ``eps_mode="standard"``: m̂ / (sqrt(v̂) + ε).
    ``eps_mode="hat"``: sqrt(bc2)/bc1 · m / (sqrt(v) + ε), Kingma & Ba's ε̂ form (labml
    ``optimized_update``), i.e. the standard form with ε replaced by ε/sqrt(bc2).
    ``den`` is a new tensor shaped as ``v``.
    """
    if k.get("eps_mode", "standard") == "hat":
        return v.sqrt().add_(k["eps"]), k["sqrt_bc2"] / k["bc1"]
    # m̂/(sqrt(v̂) + ε) = (sqrt(bc2)/bc1)·m/(sqrt(v) + ε·sqrt(bc2)): one pass less.
    return v.sqrt().add_(k["eps"] * k["sqrt_bc2"]), k["sqrt_bc2"] / k["bc1"]


def adam_direction(m: torch.Tensor, v: torch.Tensor, k: Scalars) -> torch.Tensor:
    """Adam's step direction scale · m / den (:func:`adam_denominator`), as a new tensor."""
    denom, scale = adam_denominator(v, k)
    if denom.shape != m.shape:  # a block second moment (Adam-mini) broadcasts over m
        return m * scale / denom
    # One temporary, reused in place: on the CPU every fresh full-size tensor costs page faults.
    return torch.div(m, denom, out=denom).mul_(scale)


def add_rectifier(k: Scalars, t: int, threshold: float, inclusive: bool = False) -> None:
    """k += RAdam's variance rectification for step t (Liu et al. 2020, arXiv:1908.03265).

    ρ∞ = 2/(1 − β2) − 1,  ρ_t = ρ∞ − 2tβ2^t/(1 − β2^t);  rectified when ρ_t > threshold
    (≥ with ``inclusive``), and then
    r_t = sqrt((ρ_t − 4)(ρ_t − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρ_t)); otherwise ``rect`` is 0.
    """
    k["rho_t"], k["rect"] = rectifier(k["beta2"], t)
    rho_t = k["rho_t"]
    k["rectified"] = bool(rho_t >= threshold if inclusive else rho_t > threshold)
    if not k["rectified"]:
        k["rect"] = 0.0


def add_rectified_corrections(k: Scalars, t: int) -> None:
    """Bias corrections and RAdam's rectification at the group's ``rectify_threshold``."""
    add_bias_corrections(k, t)
    add_rectifier(k, t, k["rectify_threshold"])


def rectifier(beta2: float, t: int) -> tuple[float, float]:
    """(ρ_t, r_t) of RAdam for step t; r_t is 0 where it is undefined (ρ_t ≤ 4)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = beta2**t
    rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
    if rho_t <= 4.0:
        return rho_t, 0.0
    r2 = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    return rho_t, math.sqrt(r2)


def rectified_denominator(v: torch.Tensor, k: Scalars) -> tuple[torch.Tensor, Any]:
    """(den, scale) of RAdam's rectified direction scale · m / den = r_t · m̂ · sqrt(bc2) /
    (sqrt(v) + ε) (ε uncorrected, as torch); ``den`` is a new tensor."""
    return v.sqrt().add_(k["eps"]), k["rect"] * k["sqrt_bc2"] / k["bc1"]
