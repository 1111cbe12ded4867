"""Adam, AdamW and AMSGrad.

Kingma & Ba 2015, "Adam: A Method for Stochastic Optimization", arXiv:1412.6980;
Loshchilov & Hutter 2019, "Decoupled Weight Decay Regularization", arXiv:1711.05101;
Reddi et al. 2018, "On the Convergence of Adam and Beyond" (AMSGrad), arXiv:1904.09237.
"""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, Scalars, State, if_hyper
from adamkit.core import hparams as hp
from adamkit.parts.adaptive import adam_denominator, add_bias_corrections
from adamkit.parts.moments import adam_moments
from adamkit.parts.update import descend_ratio
from adamkit.registry import register

ADAM_HYPERS: tuple[Hyper, ...] = (
    hp.lr(1e-3),
    hp.adam_betas(0.9, 0.999),
    hp.eps(1e-8),
    hp.weight_decay(0.0),
    hp.weight_decay_mode("l2"),
    hp.amsgrad(),
    Hyper(
        "eps_mode",
        "standard",
        hp.choice("standard", "hat"),
        "'standard': m̂/(sqrt(v̂)+ε); 'hat': Kingma & Ba's ε̂ form (labml optimized_update)",
    ),
)
ADAM_BUFFERS = (
    Buffer("exp_avg"),
    Buffer("exp_avg_sq", nonnegative=True),
    Buffer("max_exp_avg_sq", when=if_hyper("amsgrad"), nonnegative=True),
)


@register
class Adam(AdamkitOptimizer):
    r"""Adam (Kingma & Ba 2015), with AMSGrad and labml's ε̂ form as options.

    .. math::
        g ← decay(g);\quad m ← β_1 m + (1-β_1) g;\quad v ← β_2 v + (1-β_2) g^2

        v_{use} = v \text{ or (amsgrad) } \max(v_{max}, v)

        \text{standard: } θ ← θ - η/bc_1 · m / (\sqrt{v_{use}}/\sqrt{bc_2} + ε)

        \text{hat: } θ ← θ - η\sqrt{bc_2}/bc_1 · m / (\sqrt{v_{use}} + ε)

    with bc_i = 1 - β_i^t. ``weight_decay_mode="l2"`` (default, as torch.optim.Adam) adds λθ to
    the gradient; ``"decoupled"`` is AdamW; ``"fixed"`` multiplies θ by 1 - λ.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, (``max_exp_avg_sq``).
    """

    name = "adam"
    elementwise = True
    hypers = ADAM_HYPERS
    buffers = ADAM_BUFFERS

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m, v = adam_moments(g, s, k)
        denom, scale = adam_denominator(v, k)
        return descend_ratio(p, m, denom, k, scale)


@register
class AdamW(Adam):
    """AdamW (Loshchilov & Hutter 2019): :class:`Adam` with decoupled decay θ ← θ(1 − ηλ), λ = 0.01.

    State: ``step``, ``exp_avg``, ``exp_avg_sq``, (``max_exp_avg_sq``).
    """

    name = "adamw"
    hypers = hp.with_defaults(ADAM_HYPERS, weight_decay=1e-2, weight_decay_mode="decoupled")
