"""AdEMAMix's α and β3 warm-up schedulers (Pagliardini, Ablin, Grangier 2024, arXiv:2409.03137)."""

from __future__ import annotations

import math


def alpha_schedule(t: int, alpha: float, horizon: float | None) -> float:
    """α(t) = min(t·α/T_α, α) for the 1-based step t; constant α without a horizon."""
    if horizon is None:
        return alpha
    return min(t * alpha / horizon, alpha)


def beta3_schedule(t: int, beta_start: float, beta3: float, horizon: float | None) -> float:
    """β3(t): the half-life 1/ln β moves linearly from that of β_start (= β1) to that of β3.

    β3(t) = min(exp(ln β_s · ln β3 / ((1 − t/T)·ln β3 + (t/T)·ln β_s)), β3); constant without T.
    """
    if horizon is None:
        return beta3
    frac = t / horizon
    log_start, log_end = math.log(beta_start), math.log(beta3)
    return min(math.exp(log_start * log_end / ((1 - frac) * log_end + frac * log_start)), beta3)
