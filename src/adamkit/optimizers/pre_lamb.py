"""Pre_LAMB: the notebook's (source 003, "xty") LAMB scaling moved to the gradient. No paper."""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Scalars, State
from adamkit.core.reduce import rms
from adamkit.optimizers.um import MOMENTUM_HYPERS, add_momentum_correction
from adamkit.parts.moments import ema_scaled_
from adamkit.parts.safe import safe_div
from adamkit.parts.update import descend
from adamkit.registry import register


@register
class PreLAMB(AdamkitOptimizer):
    r"""Momentum on the gradient rescaled to the parameter's scale ("LAMB before the moments").

    .. math::
        \hat g = g · \mathrm{RMS}(θ)/\mathrm{RMS}(g);\quad m ← βm + (1-β)\hat g;\quad
        θ ← θ - η · m/(1-β^t)

    ĝ = 0 where RMS(g) = 0 (the notebook produced NaN); a tensor with RMS(θ) = 0 gets ĝ = 0 and
    stays where it is, as in the notebook (documented, not changed). The notebook accepted
    ``weight_decay`` and ignored it although its formula has +λθ; here it is honoured, mode
    ``"decoupled"`` by default, ``"fixed"`` being the formula's +λθ.
    State: ``step``, ``exp_avg``.
    """

    name = "pre_lamb"
    segmentable = True
    prepass_reads = ("param", "grad")  # RMS(θ), RMS(g)
    hypers = MOMENTUM_HYPERS
    buffers = (Buffer("exp_avg"),)

    scalars = staticmethod(add_momentum_correction)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m = ema_scaled_(s["exp_avg"], g, safe_div(rms(p), rms(g), 0.0), k["beta"])  # ĝ = g·ratio
        return descend(p, m, k, 1 / k["bc"])
