"""Hyperparameter declarations and their validation.

Every optimizer declares its hyperparameters once, as a tuple of :class:`Hyper`. The declaration
gives the constructor's keyword names and defaults, the checks run at construction, in
``add_param_group`` and before every step, and the documentation table. A check raises
``ValueError``/``TypeError`` naming the optimizer, the argument, the value given and what is
accepted, and it runs before any parameter or state is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Check = Callable[[str, Any], Any]


class HyperparameterError(ValueError):
    """A hyperparameter was given a value outside its accepted range."""


@dataclass(frozen=True)
class Hyper:
    """One keyword hyperparameter: its name, default, check and one-line doc."""

    name: str
    default: Any
    check: Check
    doc: str = ""

    def validate(self, owner: str, value: Any) -> Any:
        """Return the normalised value or raise an error naming ``owner`` and this argument."""
        try:
            return self.check(self.name, value)
        except (HyperparameterError, TypeError) as err:
            raise type(err)(f"{owner}: {err}") from None


def _is_real_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.is_complex() and value.dtype != torch.bool
    return isinstance(value, (int, float))


def _as_float(name: str, value: Any, accepted: str) -> float:
    if not _is_real_number(value):
        raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
    return float(value)


def nonnegative(finite: bool = True) -> Check:
    """A real number >= 0 (finite unless ``finite=False``)."""
    accepted = "must be a finite number >= 0" if finite else "must be a number >= 0"

    def check(name: str, value: Any) -> float:
        number = _as_float(name, value, accepted)
        if math.isnan(number) or number < 0 or (finite and math.isinf(number)):
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        return number

    return check


def positive() -> Check:
    """A finite real number > 0."""
    accepted = "must be a finite number > 0"

    def check(name: str, value: Any) -> float:
        number = _as_float(name, value, accepted)
        if not math.isfinite(number) or number <= 0:
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        return number

    return check


def learning_rate() -> Check:
    """A finite real number >= 0; a 0-d tensor is kept as given (read each step)."""
    accepted = "must be a finite number >= 0"

    def check(name: str, value: Any) -> Any:
        number = _as_float(name, value, accepted)
        if not math.isfinite(number) or number < 0:
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        return value if isinstance(value, torch.Tensor) else number

    return check


def unit_interval(closed_low: bool = True) -> Check:
    """A real number in [0, 1) (or (0, 1) when ``closed_low`` is False)."""
    accepted = "must be in [0, 1)" if closed_low else "must be in (0, 1)"

    def check(name: str, value: Any) -> float:
        number = _as_float(name, value, accepted)
        low_ok = number >= 0 if closed_low else number > 0
        if not (low_ok and number < 1):
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        return number

    return check


def betas(count: int) -> Check:
    """A tuple of ``count`` real numbers, each in [0, 1)."""
    names = ("beta1", "beta2", "beta3")[:count]
    shape = f"a tuple of {count} numbers ({', '.join(names)}), each in [0, 1)"

    def check(name: str, value: Any) -> tuple[float, ...]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise HyperparameterError(f"invalid {name}={value!r}: must be {shape}")
        if len(value) != count:
            raise HyperparameterError(
                f"invalid {name}={tuple(value)!r}: got {len(value)} values, must be {shape}"
            )
        out = []
        for i, beta in enumerate(value):
            number = _as_float(f"{name}[{i}]", beta, "must be in [0, 1)")
            if not 0 <= number < 1:
                raise HyperparameterError(
                    f"invalid {name}[{i}]={beta!r} ({names[i]}): must be in [0, 1)"
                )
            out.append(number)
        return tuple(out)

    return check


def choice(*options: str) -> Check:
    """One of the given strings."""
    listed = ", ".join(repr(o) for o in options)

    def check(name: str, value: Any) -> str:
        if value not in options or not isinstance(value, str):
            raise HyperparameterError(f"unknown {name}={value!r}: accepted values are {listed}")
        return value

    return check


def flag() -> Check:
    """A bool."""

    def check(name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise TypeError(f"invalid {name}={value!r}: must be True or False")
        return value

    return check


def optional(inner: Check) -> Check:
    """``None`` or a value accepted by ``inner``."""

    def check(name: str, value: Any) -> Any:
        return None if value is None else inner(name, value)

    return check


def positive_int() -> Check:
    """An int >= 1."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HyperparameterError(f"invalid {name}={value!r}: must be an integer >= 1")
        return value

    return check


def nonnegative_int() -> Check:
    """An int >= 0."""

    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise HyperparameterError(f"invalid {name}={value!r}: must be an integer >= 0")
        return value

    return check


def interval_pair() -> Check:
    """A pair (lo, hi) of finite numbers with 0 <= lo <= hi."""
    accepted = "must be None or a pair (lo, hi) of finite numbers with 0 <= lo <= hi"

    def check(name: str, value: Any) -> tuple[float, float]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        lo, hi = (_as_float(name, v, accepted) for v in value)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        return (lo, hi)

    return check


# The hyperparameters most optimizers share, so that names, checks and docs are written once.


def lr(default: float = 1e-3) -> Hyper:
    return Hyper("lr", default, learning_rate(), "learning rate η")


def adam_betas(*default: float) -> Hyper:
    return Hyper("betas", tuple(default), betas(len(default)), "EMA coefficients")


def eps(default: float = 1e-8) -> Hyper:
    return Hyper("eps", default, nonnegative(), "denominator constant ε")


def weight_decay(default: float = 0.0) -> Hyper:
    return Hyper("weight_decay", default, nonnegative(), "weight decay λ")


def weight_decay_mode(default: str, *extra: str) -> Hyper:
    return Hyper(
        "weight_decay_mode",
        default,
        choice("l2", "decoupled", "fixed", *extra),
        "how λ is applied: 'l2' g += λθ; 'decoupled' θ *= 1-ηλ; 'fixed' θ *= 1-λ",
    )


def smooth(default: float = 50.0) -> Hyper:
    return Hyper("smooth", default, positive(), "softplus sharpness β")


def at_least(low: float) -> Check:
    """A finite real number >= ``low``."""
    accepted = f"must be a finite number >= {low:g}"

    def check(name: str, value: Any) -> float:
        number = _as_float(name, value, accepted)
        if not math.isfinite(number) or number < low:
            raise HyperparameterError(f"invalid {name}={value!r}: {accepted}")
        return number

    return check


def rectify_threshold(default: float = 5.0) -> Hyper:
    # r_t is real only for ρ_t > 4, so a lower threshold would take square roots of negatives.
    return Hyper("rectify_threshold", default, at_least(4.0), "rectify when ρ_t > this")


def amsgrad(default: bool = False) -> Hyper:
    return Hyper("amsgrad", default, flag(), "use the running maximum of the second moment")


def maximize() -> Hyper:
    return Hyper("maximize", False, flag(), "maximize the objective instead of minimizing it")


def with_defaults(hypers: tuple[Hyper, ...], **defaults: Any) -> tuple[Hyper, ...]:
    """The same declarations with some defaults changed (e.g. AdamW from Adam)."""
    unknown = defaults.keys() - {h.name for h in hypers}
    if unknown:
        raise KeyError(f"no such hyperparameters: {sorted(unknown)}")
    return tuple(
        Hyper(h.name, defaults[h.name], h.check, h.doc) if h.name in defaults else h for h in hypers
    )
