"""Duv_Adam, debiased unscaled variance: the notebook's (source 003, "xty") variant. No paper."""

from __future__ import annotations

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.optimizers.adam import ADAM_BUFFERS
from adamkit.parts.adaptive import add_bias_corrections
from adamkit.parts.moments import ema_
from adamkit.parts.safe import at_most_, safe_div_finite
from adamkit.parts.update import descend_ratio
from adamkit.registry import register


@register
class DuvAdam(AdamkitOptimizer):
    r"""Adam whose second moment tracks the scale-free deviation of g from the momentum.

    .. math::
        r = g / m_{t-1} \ (1 \text{ where } m_{t-1} = 0);\quad m ← β_1 m + (1-β_1) g;\quad
        v ← β_2 v + (1-β_2)(r-1)^2

        θ ← θ - η · \hat m / (1 + \sqrt{\hat v})

    r is element-wise (the notebook's ``if state['exp_avg'] != 0`` raised for every tensor with
    more than one element); a non-finite (r − 1)² (from a subnormal m) is replaced by the
    dtype's largest finite value, so v stays finite. Decay: ``"decoupled"`` by default.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    name = "duv_adam"
    elementwise = True
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.999),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("decoupled"),
    )
    buffers = ADAM_BUFFERS[:2]

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        biggest = torch.finfo(g.dtype).max
        deviation = at_most_(safe_div_finite(g, s["exp_avg"], 1.0).sub_(1).square_(), biggest)
        m = ema_(s["exp_avg"], g, k["beta1"])
        v = ema_(s["exp_avg_sq"], deviation, k["beta2"])
        # m̂/(1 + sqrt(v̂)) = (sqrt(bc2)/bc1)·m/(sqrt(bc2) + sqrt(v)): one pass less.
        denom = torch.sqrt(v, out=deviation).add_(k["sqrt_bc2"])
        return descend_ratio(p, m, denom, k, k["sqrt_bc2"] / k["bc1"])
