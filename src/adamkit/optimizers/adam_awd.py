"""Adam_AWD: the notebook's (source 003, "xty") Adam with adaptive weight decay. No paper;
motivation: https://blog.janestreet.com/l2-regularization-and-batch-norm/."""

from __future__ import annotations

from torch import Tensor

from adamkit.core import AdamkitOptimizer, Scalars, State
from adamkit.optimizers.adam import Adam
from adamkit.parts.adaptive import add_bias_corrections
from adamkit.parts.channels import CHANNEL_BUFFERS, CHANNEL_HYPERS, rescale_to
from adamkit.registry import register


@register
class AdamAWD(AdamkitOptimizer):
    r"""Adam, then each selected tensor is rescaled per output channel back to its initial RMS:
    the weight decay that exactly cancels the growth of batch-normalized weights.

    .. math::
        θ ← θ - η \hat m / (\sqrt{\hat v} + ε);\quad
        θ^k ← θ^k · \mathrm{RMS}(θ_0^k) / \mathrm{RMS}(θ^k) \text{ (selected tensors)}

    Channels whose RMS is 0 after the step are left alone (the notebook produced NaN). θ_0 is
    the value when the parameter's state is created. Selection: ``scale_invariant``
    (:mod:`adamkit.parts.channels`). The notebook had no ``weight_decay`` (so frameworks that
    set it failed); it is accepted here, default 0, applied before the rescale.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``init_rms`` (selected tensors only).
    """

    name = "adam_awd"
    vectors_elementwise = True
    shaped = True
    hypers = CHANNEL_HYPERS
    buffers = CHANNEL_BUFFERS

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        new_p = Adam.rule(p, g, s, k)
        if "init_rms" in s:
            new_p = rescale_to(new_p, s["init_rms"])
        return new_p
