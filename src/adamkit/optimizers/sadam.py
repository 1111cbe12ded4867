"""SAdam and SRAdam: Adam and RAdam with a softplus-smoothed denominator.

Tong, Liang, Bi 2019, "Calibrating the Adaptive Learning Rate to Improve Convergence of ADAM",
arXiv:1908.00700 (SAdam); SRAdam is the notebook's (source 003) combination with RAdam.
"""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.optimizers.adam import ADAM_BUFFERS
from adamkit.parts.adaptive import add_bias_corrections, add_rectified_corrections
from adamkit.parts.moments import adam_moments
from adamkit.parts.softplus import softplus_times
from adamkit.parts.update import descend, descend_ratio
from adamkit.registry import register

SOFTPLUS_HYPERS: tuple[Hyper, ...] = (
    hp.lr(1e-3),
    hp.adam_betas(0.9, 0.999),
    hp.smooth(50.0),
    hp.weight_decay(0.0),
    hp.weight_decay_mode("decoupled"),
)


@register
class SAdam(AdamkitOptimizer):
    r"""SAdam: θ ← θ − η · m̂ / sp_β(sqrt(v̂)), sp_β(x) = log(1 + e^{βx})/β, β = ``smooth``.

    The softplus replaces ε. It is computed exactly (torch.nn.Softplus returns x for βx > 20,
    up to 1.1e-10 relative off). The notebook's two ``SAdam`` classes do not run (an undefined
    ``eps``; a copy of SRAdam calling ``super(SRAdam, ...)``); this is the formula they state.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    name = "sadam"
    elementwise = True
    hypers = SOFTPLUS_HYPERS
    buffers = ADAM_BUFFERS[:2]

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m, v = adam_moments(g, s, k)
        denom = softplus_times(v.sqrt(), k["sqrt_bc2"], k["smooth"])  # sqrt(bc2)·sp(sqrt(v̂))
        return descend_ratio(p, m, denom, k, k["sqrt_bc2"] / k["bc1"])


@register
class SRAdam(SAdam):
    r"""SRAdam: RAdam whose rectified step uses the softplus denominator.

    .. math::
        ρ_t > 5:\ θ ← θ - η · \hat m / sp_β(\sqrt{\hat v} / r_t);\quad
        \text{otherwise } θ ← θ - η · \hat m

    with ρ∞ = 2/(1 − β2) − 1. The notebook computed ρ∞ = 2/β2 − 1 (≈ 1.002), so it never
    rectified and was plain momentum SGD; it also used the threshold 4 (``rectify_threshold``).
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    name = "sradam"
    elementwise = True
    hypers = (*SOFTPLUS_HYPERS, hp.rectify_threshold(5.0))

    scalars = staticmethod(add_rectified_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m, v = adam_moments(g, s, k)
        if not k["rectified"]:
            return descend(p, m, k, 1 / k["bc1"])
        c = k["sqrt_bc2"] * k["rect"]
        denom = softplus_times(v.sqrt(), c, k["smooth"])  # c·sp(sqrt(v̂)/r_t)
        return descend_ratio(p, m, denom, k, c / k["bc1"])
