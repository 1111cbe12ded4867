"""Per-output-channel scale control of Stable_Adam and Adam_AWD (notebook source 003, "xty").

Which tensors count as "followed by batch norm" is the ``scale_invariant`` hyperparameter:
``None`` uses the notebook's shape heuristic, a bool selects all or none of a group's tensors, a
callable ``p -> bool`` decides per tensor.
"""

from __future__ import annotations

from typing import Any

import torch

from adamkit.core import Buffer, Hyper
from adamkit.core import hparams as hp
from adamkit.core.buffers import ParamInfo
from adamkit.core.hparams import HyperparameterError
from adamkit.core.reduce import channel_rms
from adamkit.parts.safe import safe_div


def conv_not_cin256_cout_lt256(p: torch.Tensor) -> bool:
    """The notebook's heuristic: conv weights (ndim ≥ 4) except C_in = 256 with C_out < 256."""
    return p.ndim >= 4 and not (p.shape[1] == 256 and p.shape[0] < 256)


def _check_selector(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool) or callable(value):
        return value
    raise HyperparameterError(
        f"invalid {name}={value!r}: accepted values are None (the notebook's conv heuristic), "
        "True/False (every/no tensor of the group) or a callable p -> bool"
    )


SCALE_INVARIANT = Hyper(
    "scale_invariant",
    None,
    _check_selector,
    "which tensors keep their per-channel scale: None (conv heuristic), bool, or p -> bool",
)


def is_selected(info: ParamInfo) -> bool:
    selector = info.hyper["scale_invariant"]
    if selector is None:
        return conv_not_cin256_cout_lt256(info.param)
    if isinstance(selector, bool):
        return selector
    return bool(selector(info.param))


def initial_channel_rms(p: torch.Tensor, info: ParamInfo | None = None) -> torch.Tensor:
    """RMS(θ_0^k) per output channel, taken when the parameter's state is created."""
    return channel_rms(p).clone()


INIT_RMS = Buffer("init_rms", init=initial_channel_rms, when=is_selected, precision="exact")

# Stable_Adam and Adam_AWD: Adam's moments and defaults (β2 = 0.99 as the notebook) plus the
# selection of scale-invariant tensors and their initial per-channel RMS.
CHANNEL_HYPERS: tuple[Hyper, ...] = (
    hp.lr(1e-3),
    hp.adam_betas(0.9, 0.99),
    hp.eps(1e-8),
    hp.weight_decay(0.0),
    hp.weight_decay_mode("decoupled"),
    SCALE_INVARIANT,
)
CHANNEL_BUFFERS = (Buffer("exp_avg"), Buffer("exp_avg_sq", nonnegative=True), INIT_RMS)


def scale_ratio(p: torch.Tensor, init_rms: torch.Tensor) -> torch.Tensor:
    """RMS(θ^k)/RMS(θ_0^k) per channel; 1 for channels that started at zero."""
    return safe_div(channel_rms(p), init_rms, 1.0)


def rescale_to(p: torch.Tensor, init_rms: torch.Tensor) -> torch.Tensor:
    """θ^k · RMS(θ_0^k)/RMS(θ^k) per channel, in place; channels with RMS(θ^k) = 0 (or NaN) are
    left alone. The factor is chosen per channel, so no select runs over the whole tensor."""
    current = channel_rms(p)
    return p.mul_(torch.where(current > 0, init_rms / current, 1.0))
