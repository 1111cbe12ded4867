"""LAMB reference (SPEC.md §5)."""

from __future__ import annotations

import torch

from ._base import (
    WEIGHT_DECAY_MODES,
    RefOptimizer,
    bias_corrections,
    check_mode,
    decay_factor,
    decay_grad,
)


class LAMBRef(RefOptimizer):
    """SPEC §5 "adamkit rule" (You et al. 2020, Alg. 2) with zero guards.

    u = m̂ / (sqrt(v̂) + ε) + λθ              (weight_decay_mode="trust_ratio", default)
    w = ‖θ‖₂ (clipped to trust_clamp=(lo, hi) if given) ; n = ‖u‖₂
    trust = w / n if w > 0 and n > 0 else 1 ;  θ ← θ - η · trust · u
    The generic modes are also accepted: "l2" adds λθ to g before the moments,
    "decoupled"/"fixed" multiply θ_{t-1} by (1 - ηλ)/(1 - λ) outside the trust ratio
    (u then has no λθ term). ‖θ‖ is always ‖θ_{t-1}‖.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "trust_ratio",
        trust_clamp: tuple[float, float] | None = None,
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode, ("trust_ratio", *WEIGHT_DECAY_MODES))
        self.trust_clamp = trust_clamp

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

        u = (m / bc1) / ((v / bc2).sqrt() + self.eps)
        if self.weight_decay_mode == "trust_ratio" and self.weight_decay != 0:
            u = u + self.weight_decay * p

        w = p.norm().item()
        if self.trust_clamp is not None:
            lo, hi = self.trust_clamp
            w = min(max(w, lo), hi)
        n = u.norm().item()
        trust = w / n if (w > 0 and n > 0) else 1.0

        # 1 for "trust_ratio" and "l2" (the decay already went into u or g)
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(self.lr * trust * u)
