"""RAdam: Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and Beyond",
arXiv:1908.03265."""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.optimizers.adam import ADAM_BUFFERS
from adamkit.parts.adaptive import add_rectified_corrections, rectified_denominator
from adamkit.parts.moments import adam_moments
from adamkit.parts.update import descend, descend_ratio
from adamkit.registry import register


@register
class RAdam(AdamkitOptimizer):
    r"""Rectified Adam, as torch.optim.RAdam.

    .. math::
        ρ_∞ = 2/(1-β_2) - 1,\quad ρ_t = ρ_∞ - 2tβ_2^t/(1-β_2^t)

        ρ_t > 5:\ θ ← θ - η · r_t · \hat m · \sqrt{bc_2} / (\sqrt{v} + ε),\quad
        r_t = \sqrt{\frac{(ρ_t-4)(ρ_t-2)ρ_∞}{(ρ_∞-4)(ρ_∞-2)ρ_t}}

        \text{otherwise: } θ ← θ - η · \hat m \quad \text{(bias-corrected momentum SGD)}

    Deviations from the notebook source (003): weight decay applied once (it applied it twice),
    threshold ρ_t > 5 as torch and the official code (the notebook's 4; ``rectify_threshold``),
    β2 = 0.999 (the notebook's 0.99), and ε outside the rectifier (the notebook scaled it by r_t).
    ``weight_decay_mode="decoupled"`` is torch's ``decoupled_weight_decay=True``.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    name = "radam"
    elementwise = True
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.999),
        hp.eps(1e-8),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("l2"),
        hp.rectify_threshold(5.0),
    )
    buffers = ADAM_BUFFERS[:2]

    scalars = staticmethod(add_rectified_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m, v = adam_moments(g, s, k)
        if not k["rectified"]:
            return descend(p, m, k, 1 / k["bc1"])
        denom, scale = rectified_denominator(v, k)
        return descend_ratio(p, m, denom, k, scale)
