"""Shared plumbing of the float64 reference optimizers (SPEC.md §0).

Every reference keeps one state dict per parameter and a per-parameter step
counter. ``step(grads)`` takes one gradient (or ``None``) per parameter; a
``None`` gradient skips that parameter entirely (SPEC §0 rule 1).
"""

from __future__ import annotations

import torch

WEIGHT_DECAY_MODES = ("l2", "decoupled", "fixed")


def check_mode(mode: str, allowed=WEIGHT_DECAY_MODES, name: str = "weight_decay_mode") -> str:
    if mode not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {mode!r}")
    return mode


def rms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x^2)) over the whole tensor (0-d result)."""
    return x.pow(2).mean().sqrt()


def channel_rms(x: torch.Tensor) -> torch.Tensor:
    """RMS per output channel (dim 0) over dims 1.., shape (C_out, 1, 1, ...).

    For a 1-D tensor each element is its own channel, so this is |x|.
    For a 0-d tensor it is |x|.
    """
    if x.ndim <= 1:
        return x.abs()
    dims = tuple(range(1, x.ndim))
    return x.pow(2).mean(dim=dims, keepdim=True).sqrt()


class RefOptimizer:
    """Base class: loop over parameters, lazy state, maximize, skipping None grads.

    Subclasses implement ``_init_state(p, state)`` and ``_update(p, g, state)``;
    ``state["step"]`` is already incremented (t = 1 at the first update) when
    ``_update`` runs, and ``g`` is a fresh float64 copy of the gradient (negated if
    ``maximize``), which the subclass may modify freely.
    """

    def __init__(self, params: list[torch.Tensor], maximize: bool = False):
        self.params = list(params)
        for p in self.params:
            if p.dtype != torch.float64:
                raise TypeError("reference optimizers work on float64 tensors only")
        self.maximize = maximize
        self.state: list[dict] = [{} for _ in self.params]

    # -- hooks -------------------------------------------------------------------------
    def _init_state(self, p: torch.Tensor, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict) -> None:  # pragma: no cover
        raise NotImplementedError

    # -- driver ------------------------------------------------------------------------
    def _prepare_grad(self, grad: torch.Tensor) -> torch.Tensor:
        g = grad.detach().to(torch.float64).clone()
        if self.maximize:
            g = -g
        return g

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor | None]) -> None:
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        for p, grad, state in zip(self.params, grads, self.state, strict=True):
            if grad is None:
                continue
            g = self._prepare_grad(grad)
            if not state:
                state["step"] = 0
                self._init_state(p, state)
            state["step"] += 1
            self._update(p, g, state)


def decay_grad(g: torch.Tensor, p: torch.Tensor, weight_decay: float, mode: str) -> torch.Tensor:
    """Mode "l2": g + λθ (θ = θ_{t-1}); other modes leave g unchanged."""
    if mode == "l2" and weight_decay != 0:
        return g + weight_decay * p
    return g


def decay_factor(lr: float, weight_decay: float, mode: str) -> float:
    """Multiplicative factor applied to θ_{t-1} for the decoupled / fixed modes.

    "decoupled": 1 - lr·λ ; "fixed": 1 - λ ; any other mode ("l2", LAMB's "trust_ratio"): 1.
    The caller computes θ_t = factor·θ_{t-1} - step, where step was computed
    from θ_{t-1} (all modes apply with θ_{t-1}, before the step).
    """
    if mode == "decoupled":
        return 1.0 - lr * weight_decay
    if mode == "fixed":
        return 1.0 - weight_decay
    return 1.0


def bias_corrections(betas: tuple[float, float], t: int) -> tuple[float, float]:
    beta1, beta2 = betas
    return 1.0 - beta1**t, 1.0 - beta2**t
