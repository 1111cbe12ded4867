"""LAMB: You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
arXiv:1904.00962 (Algorithm 2)."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.core.pieces import huge, in_pieces, norm_in_pieces
from adamkit.core.reduce import norm
from adamkit.optimizers.adam import ADAM_BUFFERS
from adamkit.parts.adaptive import adam_direction, add_bias_corrections
from adamkit.parts.moments import adam_moments
from adamkit.parts.trust import trust_ratio, trust_ratio_of_norms
from adamkit.parts.update import add_scaled_, descend
from adamkit.registry import register


@register
class LAMB(AdamkitOptimizer):
    r"""LAMB: Adam's direction rescaled per tensor by the trust ratio ‖θ‖/‖u‖.

    .. math::
        u = \hat m / (\sqrt{\hat v} + ε) + λθ;\quad w = \mathrm{clip}(‖θ‖_2, \text{trust\_clamp});
        \quad n = ‖u‖_2

        θ ← θ - η · (w/n \text{ if } w > 0 \text{ and } n > 0 \text{ else } 1) · u

    ``weight_decay_mode="trust_ratio"`` (default) is the paper's λθ inside u; the generic modes
    (``"l2"``, ``"decoupled"``, ``"fixed"``) apply the decay outside the trust ratio instead.
    Deviations from the notebook source (003): zero guards (a zero-initialised bias moved never
    there; u = 0 gave NaN) and the optional φ clipping ``trust_clamp``.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``.
    """

    name = "lamb"
    segmentable = True
    prepass_reads = ("param", "grad", "exp_avg", "exp_avg_sq")  # ‖θ‖, ‖u(g, m, v)‖
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.999),
        hp.eps(1e-6),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("trust_ratio", "trust_ratio"),
        Hyper("trust_clamp", None, hp.optional(hp.interval_pair()), "clip ‖θ‖ to (lo, hi)"),
    )
    buffers = ADAM_BUFFERS[:2]

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m, v = adam_moments(g, s, k)
        tensors = {"param": p, "exp_avg": m, "exp_avg_sq": v}

        def direction(t: Mapping[str, Tensor]) -> Tensor:
            u = adam_direction(t["exp_avg"], t["exp_avg_sq"], k)
            if k["weight_decay_mode"] == "trust_ratio":
                add_scaled_(u, t["param"], k["weight_decay"])
            return u

        if huge(tensors):
            # Eager on a huge tensor: u is computed piece by piece twice, for its norm and for
            # the update, instead of kept as a temporary of fresh pages (see core.pieces).
            n = norm_in_pieces(direction, tensors)
            ratio = trust_ratio_of_norms(norm(p), n, k["trust_clamp"])
            in_pieces(lambda t: descend(t["param"], direction(t), k, ratio), tensors)
            return p
        u = direction(tensors)
        ratio = trust_ratio(p, u, k["trust_clamp"])
        if k.get("recompute", False):
            # Compiled: inductor then fuses u into the norm's pass and the update's instead of
            # keeping a full-size temporary (same bytes moved, one more sqrt and division).
            u = direction(tensors)
        return descend(p, u, k, ratio)
