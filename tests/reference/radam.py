"""RAdam reference (SPEC.md §2)."""

from __future__ import annotations

import math

import torch

from ._base import RefOptimizer, bias_corrections, check_mode, decay_factor, decay_grad


def rho_terms(beta2: float, t: int) -> tuple[float, float]:
    """ρ∞ = 2/(1-β2) - 1 and ρ_t = ρ∞ - 2 t β2^t / (1 - β2^t)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = beta2**t
    rho_t = rho_inf - 2.0 * t * beta2_t / (1.0 - beta2_t)
    return rho_inf, rho_t


def rectification(rho_inf: float, rho_t: float) -> float:
    """The paper's r_t = sqrt((ρ_t-4)(ρ_t-2)ρ∞ / ((ρ∞-4)(ρ∞-2)ρ_t))."""
    num = (rho_t - 4.0) * (rho_t - 2.0) * rho_inf
    den = (rho_inf - 4.0) * (rho_inf - 2.0) * rho_t
    return math.sqrt(num / den)


class RAdamRef(RefOptimizer):
    """SPEC §2 "adamkit rule" (= torch.optim.RAdam).

    if ρ_t > rectify_threshold: θ ← θ - η · r_t · m̂ · sqrt(bc2) / (sqrt(v) + ε)
    else:                        θ ← θ - η · m̂
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "l2",
        rectify_threshold: float = 5.0,
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        self.rectify_threshold = rectify_threshold

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        t = state["step"]
        bc1, bc2 = bias_corrections(self.betas, t)

        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)

        m_hat = m / bc1
        rho_inf, rho_t = rho_terms(beta2, t)
        if rho_t > self.rectify_threshold:
            r_t = rectification(rho_inf, rho_t)
            # ε is added to the un-corrected sqrt(v) (the ε̂ form), as torch does
            step = self.lr * r_t * m_hat * math.sqrt(bc2) / (v.sqrt() + self.eps)
        else:
            step = self.lr * m_hat

        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)
