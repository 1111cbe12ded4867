"""AdaBelief: Zhuang et al. 2020, "AdaBelief Optimizer: Adapting Stepsizes by the Belief in Observed
Gradients", arXiv:2010.07468."""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, Scalars, State, if_hyper
from adamkit.core import hparams as hp
from adamkit.parts.adaptive import (
    adam_denominator,
    add_bias_corrections,
    add_rectifier,
    rectified_denominator,
)
from adamkit.parts.moments import ema_, ema_sq_, running_max_
from adamkit.parts.update import descend, descend_ratio
from adamkit.registry import register


@register
class AdaBelief(AdamkitOptimizer):
    r"""AdaBelief: Adam with the EMA of the squared deviation (g − m)² in place of g².

    .. math::
        m ← β_1 m + (1-β_1) g;\quad s ← β_2 s + (1-β_2)(g - m)^2 + ε

        s_{use} = s \text{ or (amsgrad) } \max(s_{max}, s)

        \text{no rectify: } θ ← θ - η/bc_1 · m / (\sqrt{s_{use}}/\sqrt{bc_2} + ε)

        ρ_t ≥ 5:\ θ ← θ - η r_t \sqrt{bc_2}/bc_1 · m / (\sqrt{s_{use}} + ε)

        ρ_t < 5:\ θ ← θ - η/bc_1 · m \text{ if degenerated\_to\_sgd, else θ unchanged}

    ε is accumulated into the stored s every step (paper Alg. 2 and the official code), and
    ``amsgrad`` is honoured in both branches (the official code ignores it when rectifying).
    labml's version (source 004) passed its arguments to RAdam by position and so ran with
    amsgrad on and no update for t ≤ 5; adamkit takes keywords only.
    Decay modes: ``"decoupled"`` (default; official ``weight_decouple``), ``"fixed"``
    (``fixed_decay``), ``"l2"`` (``weight_decouple=False``, without touching ``p.grad``).
    State: ``step``, ``exp_avg``, ``exp_avg_var``, (``max_exp_avg_var``).
    """

    name = "adabelief"
    elementwise = True
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.999),
        hp.eps(1e-16),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("decoupled"),
        hp.amsgrad(),
        Hyper("rectify", True, hp.flag(), "use RAdam's rectified update"),
        Hyper("degenerated_to_sgd", True, hp.flag(), "momentum SGD while ρ_t < 5 (else no step)"),
    )
    buffers = (
        Buffer("exp_avg"),
        Buffer("exp_avg_var", nonnegative=True),
        Buffer("max_exp_avg_var", when=if_hyper("amsgrad"), nonnegative=True),
    )

    @classmethod
    def scalars(cls, k: Scalars, t: int) -> None:
        add_bias_corrections(k, t)
        add_rectifier(k, t, 5.0, inclusive=True)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m = ema_(s["exp_avg"], g, k["beta1"])
        var = ema_sq_(s["exp_avg_var"], g - m, k["beta2"]).add_(k["eps"])
        if k["amsgrad"]:
            var = running_max_(s["max_exp_avg_var"], var)
        if k["rectify"] and not k["rectified"]:
            return descend(p, m if k["degenerated_to_sgd"] else None, k, 1 / k["bc1"])
        denom, scale = (rectified_denominator if k["rectify"] else adam_denominator)(var, k)
        return descend_ratio(p, m, denom, k, scale)
