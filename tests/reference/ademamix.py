"""AdEMAMix reference (SPEC.md §4)."""

from __future__ import annotations

import math

import torch

from ._base import RefOptimizer, bias_corrections, check_mode, decay_factor, decay_grad


def alpha_schedule(t: int, alpha: float, T_alpha: float | None) -> float:
    """α(t) = min(t·α / T_α, α), t 1-based; constant α when T_alpha is None."""
    if T_alpha is None:
        return alpha
    return min(t * alpha / T_alpha, alpha)


def beta3_schedule(t: int, beta_start: float, beta3: float, T_beta3: float | None) -> float:
    """β3(t): linear interpolation of the half-life 1/ln β from β_start = β1 to β3."""
    if T_beta3 is None:
        return beta3
    log_start = math.log(beta_start)
    log_end = math.log(beta3)
    frac = t / T_beta3
    return min(math.exp(log_start * log_end / ((1.0 - frac) * log_end + frac * log_start)), beta3)


class AdEMAMixRef(RefOptimizer):
    """SPEC §4 "adamkit rule" (optax ademamix with the paper's 1-based schedules).

    m1 ← β1 m1 + (1-β1) g ;  m2 ← β3_t m2 + (1-β3_t) g ;  ν ← β2 ν + (1-β2) g²
    θ ← θ - η · (m1/bc1 + α_t m2) / (sqrt(ν/bc2 + eps_root) + eps)   (m2 not bias-corrected)
    Weight decay "decoupled" (default) is optax's η·λ·θ term.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 5.0,
        T_alpha: float | None = None,
        T_beta3: float | None = None,
        eps: float = 1e-8,
        eps_root: float = 0.0,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        beta1, beta2, beta3 = betas
        if beta1 == 0 and (T_alpha is not None or T_beta3 is not None):
            raise ValueError("AdEMAMix schedulers are undefined for beta1 == 0 (ln 0)")
        self.lr = lr
        self.betas = (beta1, beta2, beta3)
        self.alpha = alpha
        self.T_alpha = T_alpha
        self.T_beta3 = T_beta3
        self.eps = eps
        self.eps_root = eps_root
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg_fast"] = torch.zeros_like(p)
        state["exp_avg_slow"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta1, beta2, beta3 = self.betas
        t = state["step"]
        bc1, bc2 = bias_corrections((beta1, beta2), t)
        alpha_t = alpha_schedule(t, self.alpha, self.T_alpha)
        beta3_t = beta3_schedule(t, beta1, beta3, self.T_beta3)

        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m1 = state["exp_avg_fast"]
        m2 = state["exp_avg_slow"]
        nu = state["exp_avg_sq"]
        m1.mul_(beta1).add_((1 - beta1) * g)
        m2.mul_(beta3_t).add_((1 - beta3_t) * g)
        nu.mul_(beta2).add_((1 - beta2) * g * g)

        step = self.lr * (m1 / bc1 + alpha_t * m2) / ((nu / bc2 + self.eps_root).sqrt() + self.eps)

        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)
