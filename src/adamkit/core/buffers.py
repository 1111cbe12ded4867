"""Declarations of per-parameter state buffers.

An optimizer lists the tensors it keeps per parameter as :class:`Buffer` declarations. The shell
creates them lazily (on the first step the parameter has a gradient), picks their storage dtype
(see :mod:`adamkit.core.precision`) and hands them to the rule in the compute dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch

Precision = Literal["state", "iterate", "exact"]


@dataclass(frozen=True)
class ParamInfo:
    """What a buffer's ``init``/``when`` may know about the parameter besides its value.

    ``param`` is the parameter itself (not its real view), ``name`` its name when the optimizer
    was given ``named_parameters()`` (else ``None``), ``hyper`` its group's hyperparameters.
    """

    param: torch.Tensor
    name: str | None
    hyper: Mapping[str, Any]


def zeros(p: torch.Tensor, info: ParamInfo | None = None) -> torch.Tensor:
    """The default initial value: zeros shaped like the (real view of the) parameter."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def copy_of_param(p: torch.Tensor, info: ParamInfo | None = None) -> torch.Tensor:
    """A copy of the parameter's current value (schedule-free's z starts at x_0)."""
    return p.clone(memory_format=torch.preserve_format)


@dataclass(frozen=True)
class Buffer:
    """One state tensor kept per parameter.

    Attributes:
        name: the key in ``optimizer.state[p]`` and in checkpoints (torch names where they exist).
        init: ``init(p, info)`` builds the initial value from the parameter's real view in the
            compute dtype and its :class:`ParamInfo`.
        when: ``when(info)``: whether this parameter gets the buffer (e.g. ``max_exp_avg_sq``
            only with ``amsgrad``); ``None`` means always.
        precision: ``"state"`` buffers are stored in the group's ``state_dtype`` (the moments);
            ``"iterate"`` buffers (a second copy of the weights, like schedule-free's z) follow
            a floating ``state_dtype`` but are never 8-bit; ``"exact"`` buffers are small
            statistics kept in the compute dtype whatever the policy.
        nonnegative: the buffer never holds negative values (second moments), so 8-bit storage
            can spend every code on magnitudes (and a checkpoint holding one is refused).
        nan_unset: NaN marks a value not set yet (a statistic before its first observation);
            otherwise a checkpoint holding a NaN or an infinity in the buffer is refused.
    """

    name: str
    init: Callable[[torch.Tensor, ParamInfo], torch.Tensor] = zeros
    when: Callable[[ParamInfo], bool] | None = None
    precision: Precision = "state"
    nonnegative: bool = False
    nan_unset: bool = False

    def wanted(self, info: ParamInfo) -> bool:
        return self.when is None or bool(self.when(info))

    def expected_shape(self, real_view: torch.Tensor, info: ParamInfo) -> torch.Size:
        """The shape ``init`` gives for this parameter, computed on the meta device."""
        return self.init(torch.empty_like(real_view, device="meta"), info).shape


def if_hyper(name: str) -> Callable[[ParamInfo], bool]:
    """A ``when`` predicate: the buffer exists when the boolean hyperparameter ``name`` is set."""

    def when(info: ParamInfo) -> bool:
        return bool(info.hyper[name])

    when.__name__ = f"if_{name}"
    return when
