"""AdaBelief reference (SPEC.md §3)."""

from __future__ import annotations

import math

import torch

from ._base import RefOptimizer, bias_corrections, check_mode, decay_factor, decay_grad
from .radam import rectification, rho_terms


class AdaBeliefRef(RefOptimizer):
    """SPEC §3 "adamkit rule" (paper Alg. 2 = adabelief-pytorch 0.2.1, amsgrad in both branches).

    m ← β1 m + (1-β1) g ;  s ← β2 s + (1-β2)(g - m)² + ε   (ε stored into s)
    s_use = s, or with amsgrad s_max ← max(s_max, s)
    not rectify:            θ ← θ - η/bc1 · m / (sqrt(s_use)/sqrt(bc2) + ε)
    rectify and ρ_t ≥ 5:    θ ← θ - η · r_t · sqrt(bc2)/bc1 · m / (sqrt(s_use) + ε)
    elif degenerated_to_sgd: θ ← θ - η/bc1 · m
    else:                   no update step (the weight decay still applies, as the peer)
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-16,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        amsgrad: bool = False,
        rectify: bool = True,
        degenerated_to_sgd: bool = True,
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        self.amsgrad = amsgrad
        self.rectify = rectify
        self.degenerated_to_sgd = degenerated_to_sgd

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_var"] = torch.zeros_like(p)
        if self.amsgrad:
            state["max_exp_avg_var"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        t = state["step"]
        bc1, bc2 = bias_corrections(self.betas, t)

        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m = state["exp_avg"]
        s = state["exp_avg_var"]
        m.mul_(beta1).add_((1 - beta1) * g)
        residual = g - m  # uses the new m_t, as the paper
        s.mul_(beta2).add_((1 - beta2) * residual * residual).add_(self.eps)

        if self.amsgrad:
            state["max_exp_avg_var"] = torch.maximum(state["max_exp_avg_var"], s)
            s_use = state["max_exp_avg_var"]
        else:
            s_use = s

        if not self.rectify:
            step = (self.lr / bc1) * m / (s_use.sqrt() / math.sqrt(bc2) + self.eps)
        else:
            rho_inf, rho_t = rho_terms(beta2, t)
            if rho_t >= 5.0:
                r_t = rectification(rho_inf, rho_t)
                step = (self.lr * r_t * math.sqrt(bc2) / bc1) * m / (s_use.sqrt() + self.eps)
            elif self.degenerated_to_sgd:
                step = (self.lr / bc1) * m
            else:
                step = torch.zeros_like(p)

        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)
