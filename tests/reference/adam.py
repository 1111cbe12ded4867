"""Adam / AdamW / AMSGrad references (SPEC.md §1)."""

from __future__ import annotations

import math

import torch

from ._base import RefOptimizer, bias_corrections, check_mode, decay_factor, decay_grad


class AdamRef(RefOptimizer):
    """SPEC §1 "adamkit rule" (Kingma & Ba; AMSGrad; labml ε̂ form as eps_mode="hat").

    g ← decay(g); m ← β1 m + (1-β1) g; v ← β2 v + (1-β2) g²
    v_use = v, or with amsgrad v_max ← max(v_max, v) (raw v, as torch)
    "standard": θ ← θ - η/bc1 · m / (sqrt(v_use)/sqrt(bc2) + ε)
    "hat":      θ ← θ - η·sqrt(bc2)/bc1 · m / (sqrt(v_use) + ε)
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
        amsgrad: bool = False,
        eps_mode: str = "standard",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        self.amsgrad = amsgrad
        self.eps_mode = check_mode(eps_mode, ("standard", "hat"), "eps_mode")

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
        if self.amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(p)

    def _transform_grad(self, g: torch.Tensor) -> torch.Tensor:
        """Hook for subclasses (gradient centralisation); identity here."""
        return g

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        t = state["step"]
        bc1, bc2 = bias_corrections(self.betas, t)

        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        g = self._transform_grad(g)

        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)

        if self.amsgrad:
            state["max_exp_avg_sq"] = torch.maximum(state["max_exp_avg_sq"], v)
            v_use = state["max_exp_avg_sq"]
        else:
            v_use = v

        if self.eps_mode == "standard":
            step = (self.lr / bc1) * m / (v_use.sqrt() / math.sqrt(bc2) + self.eps)
        else:
            step = (self.lr * math.sqrt(bc2) / bc1) * m / (v_use.sqrt() + self.eps)

        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)


class AdamWRef(AdamRef):
    """SPEC §1 AdamW: AdamRef with weight_decay=1e-2 and weight_decay_mode="decoupled"."""

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        weight_decay_mode: str = "decoupled",
        amsgrad: bool = False,
        eps_mode: str = "standard",
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
            amsgrad=amsgrad,
            eps_mode=eps_mode,
            maximize=maximize,
        )
