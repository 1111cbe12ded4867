"""A group's arranged work (compiled or eager) kept from step to step: one :class:`Stage` per
step value, reused by :class:`GroupProgram` while the group still fits it."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from adamkit.core.compiled import Arrangement
from adamkit.core.eager import EagerArrangement
from adamkit.core.execute import Plan, memory_of


class Stage:
    """The parameters of a group that take step ``t`` next, arranged for the group's path."""

    __slots__ = ("plans", "t", "work")

    def __init__(self, t: int, plans: list[Plan], work: Arrangement | EagerArrangement) -> None:
        self.t, self.plans, self.work = t, plans, work


class GroupProgram:
    """A group's arranged compiled work, reused from step to step while it still fits: the
    same parameters with gradients, the same parameter storage, the same state dicts and state
    tensors, each at the step it was left at, under the same rounding policy and parameter
    numbering. Parameters at different steps (say, one that skipped steps) form one
    :class:`Stage` per step."""

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        active: list[torch.Tensor],
        states: list[dict[str, Any]],
        stages: list[Stage],
        roundings: tuple[str, str],
        offset: int,
        compiled: bool,
    ) -> None:
        self.params, self.active, self.states, self.stages = list(params), active, states, stages
        self.roundings, self.offset, self.compiled = roundings, offset, compiled
        self.pointers = list(map(_DATA_PTR, active))
        # every stored state tensor as three parallel lists, which fits() checks with map (a
        # generator per entry was a visible share of a step with 1000 small tensors)
        self.stored_in: list[dict[str, Any]] = []
        self.stored_names: list[str] = []
        self.stored_tensors: list[torch.Tensor] = []
        for stage in stages:
            for plan in stage.plans:
                for name, tensor in plan.stored.items():
                    self.stored_in.append(plan.state)
                    self.stored_names.append(name)
                    self.stored_tensors.append(tensor)
        self.steps = list(map(_STEP, states))
        # sharded parameters stepped on their local parts, with those parts' memory (a
        # DTensor's own data_ptr, which ``pointers`` holds, is 0)
        self.local_parts = [
            (plan.p, plan.storage) for stage in stages for plan in stage.plans if plan.sharded
        ]
        # the optimizer's whole state mapping when ``states`` were last found in it
        self.state_keys: list[Any] = []
        self.state_values: list[Any] = []

    def fits(
        self,
        params: Sequence[torch.Tensor],
        active: list[torch.Tensor],
        state: Mapping[torch.Tensor, Any],
        roundings: tuple[str, str],
        offset: int,
    ) -> bool:
        return (
            offset == self.offset
            and roundings == self.roundings
            and _same_objects(params, self.params)
            and _same_objects(active, self.active)
            and self._same_states(state)
            and list(map(_DATA_PTR, active)) == self.pointers
            and all(
                map(
                    operator.is_,
                    map(dict.get, self.stored_in, self.stored_names),
                    self.stored_tensors,
                )
            )
            and list(map(_STEP, self.states)) == self.steps
            and all(memory_of(p) == memory for p, memory in self.local_parts)
        )

    def _same_states(self, state: Mapping[torch.Tensor, Any]) -> bool:
        """Whether ``state`` maps the active parameters to the recorded state dicts.

        Looking each parameter up hashes it, a Python call per tensor; so the mapping's keys and
        values are recorded once the lookups agree, and while they are the same objects in the
        same order, the lookups would give the same dicts."""
        keys, values = state.keys(), state.values()
        if _same_objects(keys, self.state_keys) and _same_objects(values, self.state_values):
            return True
        if not _same_objects(map(state.get, self.active), self.states):
            return False
        self.state_keys, self.state_values = list(keys), list(values)
        return True

    def advance(self) -> None:
        """Record that every stage took its step."""
        for stage in self.stages:
            for plan in stage.plans:
                plan.state["step"] = stage.t
            stage.t += 1
        self.steps = list(map(_STEP, self.states))


_DATA_PTR = torch.Tensor.data_ptr
_STEP = operator.itemgetter("step")


def _same_objects(a: Any, b: Sequence[Any]) -> bool:
    a = list(a)
    return len(a) == len(b) and all(map(operator.is_, a, b))
