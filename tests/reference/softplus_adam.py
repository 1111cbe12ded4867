"""SAdam and SRAdam references (SPEC.md §6, §7)."""

from __future__ import annotations

import torch

from ._base import RefOptimizer, bias_corrections, check_mode, decay_factor, decay_grad
from .radam import rectification, rho_terms


def softplus(x: torch.Tensor, beta: float) -> torch.Tensor:
    """Exact softplus_β(x) = log(1 + e^{βx})/β, as x + log1p(e^{-βx})/β (x ≥ 0, no threshold)."""
    return x + torch.log1p(torch.exp(-beta * x)) / beta


class _SoftplusAdamBase(RefOptimizer):
    def __init__(self, params, *, lr, betas, smooth, weight_decay, weight_decay_mode, maximize):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.smooth = smooth
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)

    def _moments(self, p, g, state):
        beta1, beta2 = self.betas
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)
        return m, v

    def _apply(self, p, step):
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)


class SAdamRef(_SoftplusAdamBase):
    """SPEC §6 "adamkit rule": θ ← θ - η · m̂ / sp_β(sqrt(v̂)), β = smooth, no ε."""

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        smooth: float = 50.0,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            smooth=smooth,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
            maximize=maximize,
        )

    def _update(self, p, g, state):
        bc1, bc2 = bias_corrections(self.betas, state["step"])
        m, v = self._moments(p, g, state)
        step = self.lr * (m / bc1) / softplus((v / bc2).sqrt(), self.smooth)
        self._apply(p, step)


class SRAdamRef(_SoftplusAdamBase):
    """SPEC §7 "adamkit rule" (corrected ρ∞ = 2/(1-β2) - 1).

    if ρ_t > rectify_threshold: θ ← θ - η · m̂ / sp_β(sqrt(v̂) / r_t)
    else:                        θ ← θ - η · m̂
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        smooth: float = 50.0,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        rectify_threshold: float = 5.0,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            smooth=smooth,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
            maximize=maximize,
        )
        self.rectify_threshold = rectify_threshold

    def _update(self, p, g, state):
        t = state["step"]
        bc1, bc2 = bias_corrections(self.betas, t)
        m, v = self._moments(p, g, state)
        m_hat = m / bc1
        rho_inf, rho_t = rho_terms(self.betas[1], t)
        if rho_t > self.rectify_threshold:
            r_t = rectification(rho_inf, rho_t)
            step = self.lr * m_hat / softplus((v / bc2).sqrt() / r_t, self.smooth)
        else:
            step = self.lr * m_hat
        self._apply(p, step)
