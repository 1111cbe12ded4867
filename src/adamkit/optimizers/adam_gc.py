"""Adam with gradient centralization: Yong et al. 2020, "Gradient Centralization: A New Optimization
Technique for Deep Neural Networks", arXiv:2004.01461."""

from __future__ import annotations

from torch import Tensor

from adamkit.core import Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.optimizers.adam import ADAM_HYPERS, Adam
from adamkit.parts.centralize import centralize
from adamkit.registry import register


@register
class AdamGC(Adam):
    r"""Adam on the centralized gradient g̃ = g − mean_{dims 1..}(g).

    ``gc_conv_only=True`` (default, the notebook's "GCC") centralizes tensors with ndim ≥ 4 (conv
    weights); ``False`` centralizes every tensor with ndim ≥ 2 (the paper's "GC"). Centralization
    follows L2 decay (the official GC order) and precedes the moments; it works on a copy (the
    notebook centralized ``p.grad`` in place). All of :class:`Adam`'s options apply.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, (``max_exp_avg_sq``).
    """

    name = "adam_gc"
    vectors_elementwise = True
    shaped = True
    hypers: tuple[Hyper, ...] = (
        *ADAM_HYPERS,
        Hyper("gc_conv_only", True, hp.flag(), "centralize only ndim ≥ 4 tensors (else ndim ≥ 2)"),
    )

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        return Adam.rule(p, centralize(g, k["gc_conv_only"]), s, k)
