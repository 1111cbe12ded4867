"""AdEMAMix: Pagliardini, Ablin, Grangier 2024, "The AdEMAMix Optimizer: Better, Faster, Older",
arXiv:2409.03137 (ICLR 2025); the update as documented for optax.contrib.ademamix (source 002)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, HyperparameterError, Scalars, State
from adamkit.core import hparams as hp
from adamkit.parts.adaptive import add_bias_corrections
from adamkit.parts.moments import ema_, ema_sq_
from adamkit.parts.schedules import alpha_schedule, beta3_schedule
from adamkit.parts.update import descend_ratio, scaled_sum
from adamkit.registry import register


@register
class AdEMAMix(AdamkitOptimizer):
    r"""AdEMAMix: Adam with a mixture of a fast and a slow EMA of the gradient.

    .. math::
        m_1 ← β_1 m_1 + (1-β_1) g;\quad m_2 ← β_3 m_2 + (1-β_3) g;\quad ν ← β_2 ν + (1-β_2) g^2

        θ ← θ - η \left( \frac{m_1/bc_1 + α m_2}{\sqrt{ν/bc_2 + \bar ε} + ε} + λθ \right)

    m_2 is not bias-corrected. With ``T_alpha``/``T_beta3`` the paper's schedulers are used at the
    1-based step t: α(t) = min(tα/T_α, α) and β3(t) interpolating the half-life from β1 to β3
    (:mod:`adamkit.parts.schedules`); optax evaluates its schedules at the 0-based count, one step
    behind. ``eps_root`` is ε̄. Weight decay is multiplied by the learning rate (mode
    ``"decoupled"``, the default). A β3 scheduler with β1 = 0 is undefined and refused.
    State: ``step``, ``exp_avg_fast`` (m1), ``exp_avg_slow`` (m2), ``exp_avg_sq`` (ν).
    """

    name = "ademamix"
    elementwise = True
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.999, 0.9999),
        Hyper("alpha", 5.0, hp.nonnegative(), "weight α of the slow EMA"),
        Hyper("T_alpha", None, hp.optional(hp.positive()), "α warm-up horizon (steps)"),
        Hyper("T_beta3", None, hp.optional(hp.positive()), "β3 warm-up horizon (steps)"),
        hp.eps(1e-8),
        Hyper("eps_root", 0.0, hp.nonnegative(), "constant ε̄ inside the square root"),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("decoupled"),
    )
    buffers = (
        Buffer("exp_avg_fast"),
        Buffer("exp_avg_slow"),
        Buffer("exp_avg_sq", nonnegative=True),
    )

    @classmethod
    def check_hyper(cls, hyper: Mapping[str, Any]) -> None:
        beta1, _, beta3 = hyper["betas"]
        schedulers = [n for n in ("T_alpha", "T_beta3") if hyper[n] is not None]
        if schedulers and beta1 == 0:
            raise HyperparameterError(
                f"the AdEMAMix schedulers ({', '.join(schedulers)}) need beta1 > 0 (the beta3 "
                "scheduler interpolates ln beta1; SPEC refuses beta1 = 0 with any scheduler), "
                f"got betas={tuple(hyper['betas'])!r}"
            )
        if hyper["T_beta3"] is not None and beta3 == 0:
            raise HyperparameterError(
                f"the beta3 scheduler needs beta3 > 0 (it interpolates ln beta3), got betas="
                f"{tuple(hyper['betas'])!r}"
            )

    @classmethod
    def scalars(cls, k: Scalars, t: int) -> None:
        add_bias_corrections(k, t)
        k["alpha_t"] = alpha_schedule(t, k["alpha"], k["T_alpha"])
        k["beta3_t"] = beta3_schedule(t, k["beta1"], k["beta3"], k["T_beta3"])

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m1 = ema_(s["exp_avg_fast"], g, k["beta1"])
        m2 = ema_(s["exp_avg_slow"], g, k["beta3_t"])
        nu = ema_sq_(s["exp_avg_sq"], g, k["beta2"])
        # (m1/bc1 + α·m2)/(sqrt(ν/bc2 + ε̄) + ε) = (sqrt(bc2)/bc1)·(m1 + α·bc1·m2) /
        # (sqrt(ν + ε̄·bc2) + ε·sqrt(bc2)): two passes less.
        denom = torch.add(nu, k["eps_root"] * k["bc2"]).sqrt_().add_(k["eps"] * k["sqrt_bc2"])
        mixed = scaled_sum(m1, m2, k["alpha_t"] * k["bc1"])
        return descend_ratio(p, mixed, denom, k, k["sqrt_bc2"] / k["bc1"])
