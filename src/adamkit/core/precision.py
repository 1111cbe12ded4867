"""The precision policy: which dtype each buffer is stored in and which dtype the math runs in.

Rules never see storage dtypes. The shell loads every buffer into the *compute dtype*
(``promote_types(param dtype, storage dtype, float32)``: float64 stays float64, half precision is
computed in float32), runs the rule, and rounds each result once into its storage dtype.

``state_dtype`` is kept in ``param_groups`` as a string (``"float32"``, ``"bfloat16"``, ...) or
``None`` (the default: the parameter's dtype for float32/float64 parameters, float32 for
half-precision parameters), never as a ``torch.dtype`` object, which distributed checkpointing
rejects.
"""

from __future__ import annotations

from typing import Any

import torch

from adamkit.core.hparams import HyperparameterError

_STATE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
_ALIASES = {
    "fp32": "float32",
    "fp64": "float64",
    "bf16": "bfloat16",
    "fp16": "float16",
    "half": "float16",
    "float": "float32",
    "double": "float64",
}


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
    if key not in _STATE_DTYPES:
        accepted = ", ".join(repr(k) for k in _STATE_DTYPES)
        raise HyperparameterError(
            f"invalid {name}={value!r}: accepted values are None, {accepted} "
            "(or the corresponding torch.dtype)"
        )
    return key


def storage_dtype(setting: str | None, param_dtype: torch.dtype) -> torch.dtype:
    """The dtype a ``"state"`` buffer is stored in for a parameter of ``param_dtype``."""
    if setting is not None:
        return _STATE_DTYPES[setting]
    real = param_dtype.to_real() if param_dtype.is_complex else param_dtype
    return real if real in (torch.float32, torch.float64) else torch.float32


def compute_dtype(param_dtype: torch.dtype, state_dtype: torch.dtype) -> torch.dtype:
    """The dtype the rule's arithmetic runs in: float32 or better, never below either input."""
    real = param_dtype.to_real() if param_dtype.is_complex else param_dtype
    return torch.promote_types(torch.promote_types(real, state_dtype), torch.float32)


def store_(dst: torch.Tensor, value: torch.Tensor) -> None:
    """Round ``value`` once into ``dst`` (round-to-nearest); a no-op when it is ``dst`` itself."""
    if value is not dst:
        dst.copy_(value)
