"""Stable_Adam: the notebook's (source 003, "xty") Adam with per-channel step scaling. No paper."""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Scalars, State
from adamkit.parts.adaptive import adam_denominator, add_bias_corrections
from adamkit.parts.channels import CHANNEL_BUFFERS, CHANNEL_HYPERS, scale_ratio
from adamkit.parts.moments import adam_moments
from adamkit.parts.update import descend_ratio
from adamkit.registry import register


@register
class StableAdam(AdamkitOptimizer):
    r"""Adam whose step on a scale-invariant tensor (one followed by batch norm) grows with the
    tensor's per-output-channel scale, so the effective learning rate stays stable.

    .. math::
        r_k = \mathrm{RMS}(θ_{t-1}^k) / \mathrm{RMS}(θ_0^k);\quad
        θ^k ← θ^k - η · r_k · \hat m^k / (\sqrt{\hat v^k} + ε)

    r is the code's direction (current/initial; the notebook's formula has the inverse, which
    contradicts its own motivation); r = 1 for unselected tensors and for channels whose initial
    RMS is 0 (the notebook divided by zero). θ_0 is the value when the parameter's state is
    created (its first step with a gradient). Selection: ``scale_invariant``
    (:mod:`adamkit.parts.channels`). Decay: ``"decoupled"`` by default (the notebook's was
    ``"fixed"``).
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``init_rms`` (shape (C_out, 1, ...), selected
    tensors only).
    """

    name = "stable_adam"
    vectors_elementwise = True
    shaped = True
    hypers = CHANNEL_HYPERS
    buffers = CHANNEL_BUFFERS

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m, v = adam_moments(g, s, k)
        denom, scale = adam_denominator(v, k)
        if "init_rms" in s:  # r·m/den as m/(den/r): no temporary for the direction
            denom = denom.div_(scale_ratio(p, s["init_rms"]))
        return descend_ratio(p, m, denom, k, scale)
