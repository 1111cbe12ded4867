"""UM, unit momentum: the notebook's (source 003, "xty") normalized-momentum method. No paper."""

from __future__ import annotations

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.core.reduce import rms
from adamkit.parts.moments import ema_
from adamkit.parts.update import descend
from adamkit.registry import register

SINGLE_BETA = Hyper("beta", 0.9, hp.unit_interval(), "momentum coefficient β")
# UM and Pre_LAMB: a single momentum coefficient (the notebook's betas=(beta, beta) only served fastai)
MOMENTUM_HYPERS: tuple[Hyper, ...] = (
    hp.lr(1e-3),
    SINGLE_BETA,
    hp.weight_decay(0.0),
    hp.weight_decay_mode("decoupled"),
)


def add_momentum_correction(k: Scalars, t: int) -> None:
    """k += bc = 1 − β^t, the bias correction of a single momentum."""
    k["bc"] = 1.0 - k["beta"] ** t


@register
class UM(AdamkitOptimizer):
    r"""Momentum normalized to unit RMS per tensor: every tensor moves by η in RMS per step.

    .. math::
        m ← βm + (1-β)g;\quad \hat m = m/(1-β^t);\quad
        θ ← θ - η · \hat m / \max(\mathrm{RMS}(\hat m), \text{tiny})

    The code's RMS form: the notebook's formula divides by ‖m̂‖₂, which makes the per-element
    step shrink with the layer size. tiny (the dtype's smallest normal number) only guards
    m̂ = 0, where the notebook produced NaN. One ``beta`` (the notebook stored
    ``betas=(beta, beta)`` only to satisfy fastai). Decay: ``"decoupled"`` by default.
    State: ``step``, ``exp_avg``.
    """

    name = "um"
    segmentable = True
    prepass_reads = ("grad", "exp_avg")  # RMS(m̂)
    hypers = MOMENTUM_HYPERS
    buffers = (Buffer("exp_avg"),)

    scalars = staticmethod(add_momentum_correction)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m = ema_(s["exp_avg"], g, k["beta"])
        # m̂/max(RMS(m̂), tiny) as one per-tensor factor of m (RMS(m̂) = RMS(m)/bc): no m̂
        # temporary, which eagerly is a round trip to memory of the tensor's size.
        bc = k["bc"]
        return descend(p, m, k, 1 / (bc * (rms(m) / bc).clamp_min(torch.finfo(m.dtype).tiny)))
