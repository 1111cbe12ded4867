"""SU_Adam, scale-adaptive unit-gradient Adam: the notebook's (source 003, "xty") variant."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.core.pieces import in_pieces
from adamkit.core.reduce import mean_abs
from adamkit.parts.adaptive import add_bias_corrections
from adamkit.parts.moments import ema_
from adamkit.parts.safe import safe_div_finite
from adamkit.parts.update import descend
from adamkit.registry import register


@register
class SUAdam(AdamkitOptimizer):
    r"""Momentum of the gradient's sign, damped by how often the sign flips, scaled by the layer.

    .. math::
        s = \mathrm{sign}(g);\quad r = s/m_{t-1} \ (1 \text{ where } m_{t-1} = 0);\quad
        m ← β_1 m + (1-β_1)s;\quad v ← β_2 v + (1-β_2)|r-1|

        ε_t = \mathrm{mean}|θ_{t-1}|;\quad θ ← θ - η · ε_t · \hat m / (1 + \hat v)

    As the notebook's code (its prose proposes a per-element floor max(|θ_i|, mean|θ|) that the
    code leaves commented out); the division by m runs only where m ≠ 0. A tensor with
    mean|θ| = 0 does not move (documented). Decay: ``"decoupled"`` by default.
    State: ``step``, ``exp_avg_unit``, ``exp_avg_ratio``.
    """

    name = "su_adam"
    segmentable = True
    prepass_reads = ("param",)  # mean|θ|
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.99),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("decoupled"),
    )
    buffers = (Buffer("exp_avg_unit"), Buffer("exp_avg_ratio", nonnegative=True))

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        scale = mean_abs(p) * (k["bc2"] / k["bc1"])  # ε_t·bc2/bc1, see _update
        in_pieces(lambda t: _update(t, k, scale), {"param": p, "g": g, **s})
        return p


def _update(t: Mapping[str, Tensor], k: Scalars, scale: Tensor) -> None:
    """The element-wise part of the step, in place (the tensor mean is given)."""
    unit = t["g"].sign()
    flips = safe_div_finite(unit, t["exp_avg_unit"], 1.0).sub_(1).abs_()
    m = ema_(t["exp_avg_unit"], unit, k["beta1"])
    v = ema_(t["exp_avg_ratio"], flips, k["beta2"])
    # m̂/(1 + v̂) = (bc2/bc1)·m/(bc2 + v): one pass less.
    direction = torch.div(m, torch.add(v, k["bc2"], out=unit), out=unit)
    descend(t["param"], direction, k, scale)
