"""Checks on ``params``, with messages that say what was given and what is accepted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def as_param_list(owner: str, params: Any) -> list[Any]:
    """Materialise ``params`` (tensors, ``(name, tensor)`` pairs or group dicts) once."""
    if isinstance(params, torch.Tensor):
        raise TypeError(
            f"{owner}: params must be an iterable of tensors or of param-group dicts, "
            f"got a single {torch.typename(params)}; pass [tensor] or model.parameters()"
        )
    if isinstance(params, dict):
        raise TypeError(
            f"{owner}: params must be an iterable of tensors or of param-group dicts, got one "
            "dict; pass a list of groups: [{'params': ...}]"
        )
    if not isinstance(params, Iterable):
        raise TypeError(
            f"{owner}: params must be an iterable of tensors or of param-group dicts, "
            f"got {type(params).__name__}"
        )
    items = list(params)
    if not items:
        raise ValueError(
            f"{owner}: params is empty; pass at least one tensor (e.g. model.parameters() of a "
            "model that has parameters)"
        )
    return items


def _tensor_of(item: Any) -> Any:
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
        return item[1]
    return item


def check_group_params(owner: str, group_index: int, params: Any, seen: set[int]) -> list[Any]:
    """Validate the tensors of one param group; ``seen`` holds ids of tensors in other groups."""
    if isinstance(params, torch.Tensor):
        params = [params]
    elif isinstance(params, (set, frozenset)):
        raise TypeError(
            f"{owner}: params of group {group_index} is a set, whose order changes between runs; "
            "pass a list"
        )
    else:
        params = list(params)
    if not params:
        raise ValueError(f"{owner}: param group {group_index} has no parameters")
    in_group: set[int] = set()
    for i, item in enumerate(params):
        p = _tensor_of(item)
        where = f"group {group_index}, param {i}"
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{owner}: {where} is a {type(p).__name__}, not a torch.Tensor")
        if not (p.dtype.is_floating_point or p.dtype.is_complex):
            raise TypeError(
                f"{owner}: {where} has dtype {p.dtype}; only floating-point or complex tensors "
                "can be optimized"
            )
        if not (p.is_leaf or p.retains_grad):
            raise ValueError(
                f"{owner}: {where} is not a leaf tensor (it was computed from other tensors); "
                "optimize the leaf (a torch.nn.Parameter or tensor.detach().requires_grad_())"
            )
        if id(p) in in_group:
            raise ValueError(f"{owner}: {where} appears twice in the same param group")
        if id(p) in seen:
            raise ValueError(f"{owner}: {where} already belongs to another param group")
        in_group.add(id(p))
    return params
