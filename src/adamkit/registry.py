"""The registry: the one list of adamkit optimizers, enumerated by create(), tests, CLI, docs."""

from __future__ import annotations

from typing import Any, TypeVar

from adamkit.core.shell import AdamkitOptimizer, close_matches

_REGISTRY: dict[str, type[AdamkitOptimizer]] = {}

OptimizerClass = TypeVar("OptimizerClass", bound=type[AdamkitOptimizer])


def register(cls: OptimizerClass) -> OptimizerClass:
    """Class decorator: add an optimizer to the registry under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if cls.name in _REGISTRY:
        raise ValueError(f"an optimizer named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """The registry names of every adamkit optimizer, sorted."""
    return sorted(_REGISTRY)


def optimizer_class(name: str) -> type[AdamkitOptimizer]:
    """The class registered as ``name``; an unknown name raises ``ValueError`` naming close ones."""
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ValueError(
            f"unknown optimizer {name!r}{close_matches(key, _REGISTRY)} "
            f"Available: {', '.join(available())}"
        ) from None


def create(name: str, params: Any, **hyperparameters: Any) -> AdamkitOptimizer:
    """Build the optimizer registered as ``name`` on ``params`` with the given hyperparameters."""
    return optimizer_class(name)(params, **hyperparameters)
