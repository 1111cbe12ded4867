"""References for the notebook's research optimizers (SPEC.md §9-§15).

Stable_Adam, Adam_AWD, UM, Pre_LAMB, Duv_Adam, SU_Adam, B_Adam ("xty" variants of seed 003),
in the corrected "adamkit rule" form. Every θ-dependent quantity uses θ_{t-1}.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._base import (
    RefOptimizer,
    bias_corrections,
    channel_rms,
    check_mode,
    decay_factor,
    decay_grad,
    rms,
)
from .softplus_adam import softplus


def default_scale_invariant(p: torch.Tensor) -> bool:
    """The seed heuristic conv_not_cinEq256_coutLt256.

    True for ndim ≥ 4 except when C_in == 256 and C_out < 256.
    """
    if p.ndim < 4:
        return False
    return not (p.shape[1] == 256 and p.shape[0] < 256)


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num/den element-wise where den ≠ 0, else 1 (division only where den ≠ 0)."""
    nonzero = den != 0
    safe_den = torch.where(nonzero, den, torch.ones_like(den))
    return torch.where(nonzero, num / safe_den, torch.ones_like(num))


class _AdamMomentsBase(RefOptimizer):
    """Adam moments with a generic weight decay; used by §9 and §10."""

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        scale_invariant: Callable[[torch.Tensor], bool] | None = None,
        maximize: bool = False,
    ):
        """SPEC §9/§10 defaults (both sections share them)."""
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        if scale_invariant is None:
            scale_invariant = default_scale_invariant
        self.scale_invariant = scale_invariant

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)
        if self.scale_invariant(p):
            # θ_0 = the value at the parameter's first step with a gradient
            state["init_rms"] = channel_rms(p).clone()

    def _adam_direction(self, p, g, state) -> torch.Tensor:
        """m̂ / (sqrt(v̂) + ε) after updating the moments with decay(g)."""
        beta1, beta2 = self.betas
        bc1, bc2 = bias_corrections(self.betas, state["step"])
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)
        return (m / bc1) / ((v / bc2).sqrt() + self.eps)


class StableAdamRef(_AdamMomentsBase):
    """SPEC §9 "adamkit rule" (the code's direction of r).

    r_k = RMS(θ_{t-1}^k) / RMS(θ_0^k) per output channel (r = 1 where RMS(θ_0^k) = 0 or
    the tensor is not selected by ``scale_invariant``); θ^k ← θ^k - η · r_k · m̂^k/(sqrt(v̂^k)+ε).
    """

    def _update(self, p, g, state):
        # r_k from θ_{t-1}, before the step; 1 for tensors that are not selected
        ratio = _safe_ratio(channel_rms(p), state["init_rms"]) if "init_rms" in state else 1.0
        direction = self._adam_direction(p, g, state)
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(self.lr * ratio * direction)


class AdamAWDRef(_AdamMomentsBase):
    """SPEC §10 "adamkit rule": Adam step, then per-output-channel rescale to the initial RMS.

    θ^k ← θ^k · RMS(θ_0^k) / RMS(θ^k) for selected tensors (θ after the Adam step), skipped
    where RMS(θ^k) = 0. The SPEC lists no weight_decay; it is accepted (default 0) with the
    generic modes, applied before the rescale.
    """

    def _update(self, p, g, state):
        direction = self._adam_direction(p, g, state)
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(self.lr * direction)
        if "init_rms" in state:
            p.mul_(_safe_ratio(state["init_rms"], channel_rms(p)))


class UMRef(RefOptimizer):
    """SPEC §11 "adamkit rule" (the code's RMS form).

    m ← β m + (1-β) g ; m̂ = m / (1 - β^t) ; θ ← θ - η · m̂ / max(RMS(m̂), tiny)
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        beta: float = 0.9,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.beta = beta
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta = self.beta
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m = state["exp_avg"]
        m.mul_(beta).add_((1 - beta) * g)
        m_hat = m / (1 - beta ** state["step"])
        tiny = torch.finfo(p.dtype).tiny
        step = self.lr * m_hat / rms(m_hat).clamp(min=tiny)
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)


class PreLAMBRef(RefOptimizer):
    """SPEC §12 "adamkit rule".

    ĝ = g · RMS(θ)/RMS(g) (ĝ = 0 where RMS(g) = 0; RMS(θ) = 0 keeps the tensor frozen)
    m ← β m + (1-β) ĝ ; θ ← θ - η · m / (1 - β^t) ; decay per weight_decay_mode.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        beta: float = 0.9,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.beta = beta
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta = self.beta
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        g_rms = rms(g)
        g_hat = torch.zeros_like(g) if g_rms.item() == 0 else g * rms(p) / g_rms
        m = state["exp_avg"]
        m.mul_(beta).add_((1 - beta) * g_hat)
        step = self.lr * m / (1 - beta ** state["step"])
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)


class DuvAdamRef(RefOptimizer):
    """SPEC §13 "adamkit rule" (debiased, unscaled variance).

    r = g/m_{t-1} where m_{t-1} ≠ 0 else 1 ; m ← β1 m + (1-β1) g
    v ← β2 v + (1-β2)(r-1)² (non-finite (r-1)² → finfo.max) ; θ ← θ - η · m̂/(1 + sqrt(v̂))
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        bc1, bc2 = bias_corrections(self.betas, state["step"])
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        r = _safe_ratio(g, m)  # uses m_{t-1}
        d = (r - 1) ** 2
        d = torch.where(torch.isfinite(d), d, torch.finfo(d.dtype).max)
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * d)
        step = self.lr * (m / bc1) / (1 + (v / bc2).sqrt())
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)


class SUAdamRef(RefOptimizer):
    """SPEC §14 "adamkit rule" (scale-adaptive unit-gradient Adam, as the seed code).

    s = sign(g) ; r = s/m_{t-1} where m_{t-1} ≠ 0 else 1 ; m ← β1 m + (1-β1) s
    v ← β2 v + (1-β2)|r - 1| ; ε_t = mean|θ_{t-1}| ; θ ← θ - η · ε_t · m̂/(1 + v̂)
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg_unit"] = torch.zeros_like(p)
        state["exp_avg_ratio"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        bc1, bc2 = bias_corrections(self.betas, state["step"])
        layer_scale = p.abs().mean()  # ε_t from θ_{t-1}, before decay and update
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        s = torch.sign(g)
        m = state["exp_avg_unit"]
        v = state["exp_avg_ratio"]
        r = _safe_ratio(s, m)  # uses m_{t-1}
        m.mul_(beta1).add_((1 - beta1) * s)
        v.mul_(beta2).add_((1 - beta2) * (r - 1).abs())
        step = self.lr * layer_scale * (m / bc1) / (1 + v / bc2)
        factor = decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)
        p.mul_(factor).sub_(step)


def sign_floor(u: torch.Tensor, floor: torch.Tensor) -> torch.Tensor:
    """The seed's sign_clamp: |c| ≥ floor keeping the sign of u; c = floor where u = 0."""
    c = torch.where(u.abs() > floor, u, torch.sign(u) * floor)
    return torch.where(c == 0, floor, c)


class BAdamRef(RefOptimizer):
    """SPEC §15 "adamkit rule" (binomial Adam, the seed code's form).

    m ← β1 m + (1-β1) g ; m̂ = m/(1-β1^t) ; ε_t = mean|θ_{t-1}|
    t = 1: u = η ε_t m̂
    t > 1: f = mean|u_{t-1}| ; c = sign_floor(u_{t-1}, f) ; Φ = (g - g_prev)/c (Φ = 0 if f = 0)
           v ← β2 v + (1-β2) Φ ; v̂ = v/(1-β2^{t-1}) ; u = η ε_t m̂ / sp_β(|v̂|)
    decay inside u (it feeds the next Φ): "fixed" (default) u += λθ, "decoupled" u += η λ θ;
    "l2" adds λθ to g before the moments (g_prev then stores the decayed g).
    θ ← θ - u ; store u and g_prev = g.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.99),
        smooth: float = 50.0,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "fixed",
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.smooth = smooth
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)

    def _init_state(self, p, state):
        state["exp_avg_1st"] = torch.zeros_like(p)
        state["exp_avg_2ed"] = torch.zeros_like(p)
        state["update"] = torch.zeros_like(p)
        state["grad"] = torch.zeros_like(p)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        t = state["step"]
        lam = self.weight_decay
        g = decay_grad(g, p, lam, self.weight_decay_mode)

        m = state["exp_avg_1st"]
        m.mul_(beta1).add_((1 - beta1) * g)
        m_hat = m / (1 - beta1**t)
        layer_scale = p.abs().mean()

        if t == 1:
            u = self.lr * layer_scale * m_hat
        else:
            u_prev = state["update"]
            floor = u_prev.abs().mean()
            phi = (
                torch.zeros_like(g)
                if floor.item() == 0
                else (g - state["grad"]) / sign_floor(u_prev, floor)
            )
            v = state["exp_avg_2ed"]
            v.mul_(beta2).add_((1 - beta2) * phi)
            v_hat = v / (1 - beta2 ** (t - 1))
            u = self.lr * layer_scale * m_hat / softplus(v_hat.abs(), self.smooth)

        if self.weight_decay_mode == "fixed":
            u = u + lam * p
        elif self.weight_decay_mode == "decoupled":
            u = u + self.lr * lam * p
        p.sub_(u)
        state["update"] = u.clone()
        state["grad"] = g.clone()
