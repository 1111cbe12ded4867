"""The precision policy: how each buffer is stored, how results are rounded, the compute dtype.

Rules never see storage dtypes. The shell loads every buffer into the *compute dtype* (float32,
or float64 for float64 parameters and float64 state), runs the rule, and rounds each result
once into its storage (:mod:`adamkit.core.codecs`).

Hyperparameters of the policy (every optimizer has them, per param group):

* ``state_dtype``: None (the parameter's dtype for float32/float64 parameters, float32 for
  half-precision ones), ``"float32"``, ``"float64"``, ``"bfloat16"``, ``"float16"`` or
  ``"int8"``. Kept in ``param_groups`` as a string, never as a ``torch.dtype`` object, which
  distributed checkpointing rejects.
* ``state_rounding``: how low-precision state is written back: ``"stochastic"`` (default:
  unbiased, no extra memory), ``"nearest"``, or ``"kahan"`` (bfloat16 only: a compensation
  buffer doubles the storage).
* ``param_rounding``: the same for bfloat16/float16 *parameters* (a model trained entirely in
  low precision); ``"kahan"`` keeps a compensation buffer ``param_kahan`` in the state.
* ``rounding_seed``: the seed of the stochastic rounding's random bits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from adamkit.core.codecs import Blockwise8, Kahan, Plain, Rounded, ScaledHalf
from adamkit.core.hparams import HyperparameterError

Codec = Plain | Kahan | Rounded | ScaledHalf | Blockwise8

_FLOAT_STATES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
STATE_DTYPES = (*_FLOAT_STATES, "int8")
_ALIASES = {
    "fp32": "float32",
    "fp64": "float64",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float": "float32",
    "double": "float64",
    "uint8": "int8",
    "8bit": "int8",
}
ROUNDINGS = ("stochastic", "nearest", "kahan")
LOW_PRECISION = (torch.bfloat16, torch.float16)


def check_state_dtype(name: str, value: Any) -> str | None:
    """Hyperparameter check for ``state_dtype``: ``None``, a dtype or its name; kept as a name."""
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        key = str(value).removeprefix("torch.")
    elif isinstance(value, str):
        key = _ALIASES.get(value, value.removeprefix("torch."))
    else:
        key = None
    if key not in STATE_DTYPES:
        accepted = ", ".join(repr(k) for k in STATE_DTYPES)
        raise HyperparameterError(
            f"invalid {name}={value!r}: accepted values are None, {accepted} "
            "(or the corresponding torch.dtype)"
        )
    return key


def check_policy(setting: str | None, state_rounding: str) -> None:
    """Cross-check of ``state_dtype`` and ``state_rounding``."""
    if state_rounding == "kahan" and setting != "bfloat16":
        raise HyperparameterError(
            f"state_rounding='kahan' needs state_dtype='bfloat16', got state_dtype={setting!r} "
            "(float16 state is scaled per tensor instead; int8 state is block-quantized)"
        )


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype.to_real() if dtype.is_complex else dtype


def new_codec(
    setting: str | None, rounding: str, param_dtype: torch.dtype, nonnegative: bool
) -> Codec:
    """The codec a new ``"state"`` buffer gets under the group's policy."""
    if setting is None:
        real = real_dtype(param_dtype)
        return Plain(real if real in (torch.float32, torch.float64) else torch.float32)
    if setting == "int8":
        return Blockwise8(signed=not nonnegative, rounding=_plain_rounding(rounding))
    if setting == "float16":
        return ScaledHalf(_plain_rounding(rounding))
    dtype = _FLOAT_STATES[setting]
    if dtype == torch.bfloat16:
        return Kahan(dtype) if rounding == "kahan" else Rounded(dtype, rounding)  # type: ignore[arg-type]
    return Plain(dtype)


def stored_codec(state: Mapping[str, Any], name: str, rounding: str, nonnegative: bool) -> Codec:
    """The codec of a buffer as it is stored (so checkpoints load as they were written)."""
    main: torch.Tensor = state[name]
    if main.dtype == torch.uint8:
        return Blockwise8(signed=not nonnegative, rounding=_plain_rounding(rounding))
    if f"{name}_scale" in state:
        return ScaledHalf(_plain_rounding(rounding))
    if f"{name}_kahan" in state:
        return Kahan(main.dtype)
    if main.dtype in LOW_PRECISION:
        return Rounded(main.dtype, _plain_rounding(rounding))
    return Plain(main.dtype)


def _plain_rounding(rounding: str) -> Any:
    return "nearest" if rounding == "nearest" else "stochastic"


def compute_dtype(param_dtype: torch.dtype, state_dtype: torch.dtype | None = None) -> torch.dtype:
    """The dtype the rule's arithmetic runs in: float32 or better, float64 if either is."""
    out = torch.promote_types(real_dtype(param_dtype), torch.float32)
    if state_dtype is not None and state_dtype.is_floating_point:
        out = torch.promote_types(out, state_dtype)
    return out


def default_compute_dtype(setting: str | None, param_dtype: torch.dtype) -> torch.dtype:
    """The compute dtype of a parameter under a group's ``state_dtype`` setting."""
    return compute_dtype(param_dtype, _FLOAT_STATES.get(setting or ""))


def param_codec(param_dtype: torch.dtype, rounding: str) -> Codec | None:
    """How a low-precision parameter is written back (``None``: a plain copy)."""
    real = real_dtype(param_dtype)
    if real not in LOW_PRECISION:
        return None
    if rounding == "kahan":
        return Kahan(real)
    return Rounded(real, _plain_rounding(rounding))
