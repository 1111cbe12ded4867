"""The shell: one ``torch.optim.Optimizer`` subclass that runs every adamkit rule.

An optimizer is declared, not programmed: a subclass names its hyperparameters (``hypers``), its
state buffers (``buffers``), the host-side scalars of a step (``scalars``) and the update rule for
one tensor (``rule``). The shell owns everything else: param groups, validation, lazy state,
precision, weight decay modes, ``maximize``, complex parameters, closures, hooks and
``state_dict``.

The rule contract::

    rule(p, g, s, k) -> new value of p

* ``p``: the parameter (real view, compute dtype), read-only;
* ``g``: the prepared gradient (negated for ``maximize``, plus λθ in ``"l2"`` mode), read-only;
* ``s``: ``{buffer name: tensor in the compute dtype}``; update in place or assign new tensors;
* ``k``: the step's scalars: every hyperparameter of the group (``betas`` split into ``beta1``,
  ``beta2``, ...), ``t`` (this parameter's 1-based step), ``lr``, the decay factor ``decay`` (κ in
  θ·(1 − κ)) with ``decay_active``, plus what the optimizer's ``scalars`` adds (bias corrections,
  schedules). Numbers in ``k`` may be Python floats or 0-d tensors; bools and strings are static.

A step first checks everything (hyperparameters, gradients) and only then changes state, so a
refused step leaves parameters and state exactly as they were.
"""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

from adamkit.core import hparams as hp
from adamkit.core.buffers import Buffer, ParamInfo
from adamkit.core.params import as_param_list, check_group_params
from adamkit.core.precision import check_state_dtype, compute_dtype, storage_dtype, store_

Scalars = dict[str, Any]
State = dict[str, torch.Tensor]

SHELL_HYPERS: tuple[hp.Hyper, ...] = (
    hp.maximize(),
    hp.Hyper(
        "state_dtype",
        None,
        check_state_dtype,
        "storage dtype of the moments (None: the parameter's, float32 for half-precision params)",
    ),
)
DECAY_MODES_OF_SHELL = ("l2", "decoupled", "fixed")


def real_view(t: torch.Tensor) -> torch.Tensor:
    """Complex tensors are optimized as their real view (..., 2), exactly like torch.optim."""
    return torch.view_as_real(t) if t.is_complex() else t


def close_matches(word: str, choices: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


class AdamkitOptimizer(torch.optim.Optimizer):
    """Base class of every adamkit optimizer (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    hypers: ClassVar[tuple[hp.Hyper, ...]] = ()
    buffers: ClassVar[tuple[Buffer, ...]] = ()

    # ------------------------------------------------------------------ declaration hooks
    @staticmethod
    def rule(p: torch.Tensor, g: torch.Tensor, s: State, k: Scalars) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def scalars(cls, k: Scalars, t: int) -> None:
        """Add the host-side scalars of step ``t`` (bias corrections, schedules) to ``k``."""

    @classmethod
    def check_hyper(cls, hyper: Mapping[str, Any]) -> None:
        """Checks that involve several hyperparameters; raise ``HyperparameterError``."""

    def storage_setting(self, hyper: Mapping[str, Any]) -> str | None:
        """The group's requested storage dtype of ``"state"`` buffers (None: the default)."""
        return hyper["state_dtype"]

    # ------------------------------------------------------------------ construction
    @classmethod
    def declared_hypers(cls) -> dict[str, hp.Hyper]:
        return {h.name: h for h in (*cls.hypers, *SHELL_HYPERS)}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "hypers" in cls.__dict__:
            parameters = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
            parameters += [
                inspect.Parameter(h.name, inspect.Parameter.KEYWORD_ONLY, default=h.default)
                for h in cls.declared_hypers().values()
            ]
            cls.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
            cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n\n" + hyperparameter_table(cls)

    def __init__(self, params: Any, **hyperparameters: Any) -> None:
        owner = type(self).__name__
        declared = self.declared_hypers()
        for key in hyperparameters:
            if key not in declared:
                raise TypeError(
                    f"{owner}: unknown keyword argument {key!r}{close_matches(key, declared)} "
                    f"Accepted: {', '.join(declared)}"
                )
        defaults = {
            name: h.validate(owner, hyperparameters.get(name, h.default))
            for name, h in declared.items()
        }
        self._check_cross(defaults)
        items = as_param_list(owner, params)
        super().__init__(items, defaults)

    def _check_cross(self, hyper: Mapping[str, Any]) -> None:
        try:
            self.check_hyper(hyper)
        except hp.HyperparameterError as err:
            raise hp.HyperparameterError(f"{type(self).__name__}: {err}") from None

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        owner = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(
                f"{owner}: a param group must be a dict, got {type(param_group).__name__}"
            )
        if "params" not in param_group:
            raise ValueError(f"{owner}: a param group needs a 'params' entry")
        group = dict(param_group)
        index = len(self.param_groups)
        group["params"] = check_group_params(owner, index, group["params"], self._all_param_ids())
        declared = self.declared_hypers()
        for name in declared.keys() & group.keys():
            group[name] = declared[name].validate(f"{owner} (param group {index})", group[name])
        self._check_cross({**self.defaults, **group})
        super().add_param_group(group)

    def _all_param_ids(self) -> set[int]:
        return {id(p) for group in self.param_groups for p in group["params"]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for name, value in self.defaults.items():
                group.setdefault(name, value)

    # ------------------------------------------------------------------ the step
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """Perform one optimization step; evaluates ``closure`` (with grad enabled) first."""
        loss = self._evaluate(closure)
        self._run(self._plan())
        return loss

    @staticmethod
    def _evaluate(closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    def _validated_hyper(self, index: int, group: dict[str, Any]) -> dict[str, Any]:
        owner = f"{type(self).__name__} (param group {index})"
        declared = self.declared_hypers()
        hyper = {name: declared[name].validate(owner, group[name]) for name in declared}
        self._check_cross(hyper)
        return hyper

    def _plan(self) -> list[tuple[dict[str, Any], dict[str, Any], list[torch.Tensor]]]:
        """Check every group and gradient; return this step's work, changing nothing."""
        owner = type(self).__name__
        work = []
        for gi, group in enumerate(self.param_groups):
            hyper = self._validated_hyper(gi, group)
            active = []
            for pi, p in enumerate(group["params"]):
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse or grad.layout != torch.strided:
                    raise RuntimeError(
                        f"{owner} does not support sparse gradients (param group {gi}, param {pi} "
                        f"has a {grad.layout} gradient); use dense gradients or torch SparseAdam"
                    )
                if grad.shape != p.shape:
                    raise RuntimeError(
                        f"{owner}: gradient of param group {gi}, param {pi} has shape "
                        f"{tuple(grad.shape)} but the parameter has shape {tuple(p.shape)}"
                    )
                active.append(p)
            self.check_step_allowed(gi, group)
            work.append((group, hyper, active))
        return work

    def check_step_allowed(self, index: int, group: dict[str, Any]) -> None:
        """Raise if this group may not step now (e.g. schedule-free in eval mode)."""

    def _run(self, work: list[tuple[dict[str, Any], dict[str, Any], list[torch.Tensor]]]) -> None:
        for group, hyper, active in work:
            for name in self.declared_hypers():
                group[name] = hyper[name]
            self.begin_group_step(group, hyper)
            per_step: dict[int, Scalars] = {}
            for p in active:
                state = self.state[p]
                if not state:
                    self._init_state(p, self._info(p, group, hyper), state)
                t = state["step"] + 1
                k = per_step.get(t)
                if k is None:
                    k = per_step[t] = self.step_scalars(hyper, t, group)
                self._step_tensor(p, state, k)
                state["step"] = t

    def begin_group_step(self, group: dict[str, Any], hyper: dict[str, Any]) -> None:
        """Per-group, per-step bookkeeping before the tensors are updated (rarely needed)."""

    def step_scalars(self, hyper: Mapping[str, Any], t: int, group: Mapping[str, Any]) -> Scalars:
        """The scalars ``k`` of step ``t`` for a group (see the module docstring)."""
        k: Scalars = {}
        for name, value in hyper.items():
            if name == "betas":
                k.update(zip(("beta1", "beta2", "beta3")[: len(value)], value, strict=True))
            k[name] = value
        k["t"] = t
        k["lr"] = float(hyper["lr"])
        self.scalars(k, t)
        lam = float(hyper.get("weight_decay", 0.0))
        mode = hyper.get("weight_decay_mode", "decoupled")
        k["l2_active"] = mode == "l2" and lam != 0.0
        k["decay_active"] = mode in ("decoupled", "fixed") and lam != 0.0
        k["decay"] = k["lr"] * lam if mode == "decoupled" else lam if mode == "fixed" else 0.0
        return k

    @staticmethod
    def _info(p: torch.Tensor, group: Mapping[str, Any], hyper: Mapping[str, Any]) -> ParamInfo:
        names = group.get("param_names")
        name = None
        if names is not None:
            name = next(n for n, q in zip(names, group["params"], strict=True) if q is p)
        return ParamInfo(param=p, name=name, hyper=hyper)

    def _init_state(self, p: torch.Tensor, info: ParamInfo, state: dict[str, Any]) -> None:
        view = real_view(p.detach())
        stored = storage_dtype(self.storage_setting(info.hyper), p.dtype)
        exact = compute_dtype(p.dtype, stored)
        pc = view.to(exact)
        state["step"] = 0
        for buf in self.buffers:
            if buf.wanted(info):
                value = buf.init(pc, info)
                state[buf.name] = value.to(stored if buf.precision == "state" else exact)

    def _step_tensor(self, p: torch.Tensor, state: dict[str, Any], k: Scalars) -> None:
        view = real_view(p.detach())
        stored = storage_dtype(self.storage_setting(k), p.dtype)
        exact = compute_dtype(p.dtype, stored)
        pc = view if view.dtype == exact else view.to(exact)
        g = prepare_grad(real_view(p.grad), pc, k)
        tensors = {name: value for name, value in state.items() if isinstance(value, torch.Tensor)}
        s = {name: (v if v.dtype == exact else v.to(exact)) for name, v in tensors.items()}
        new_p = self.rule(pc, g, s, k)
        for name, dst in tensors.items():
            store_(dst, s[name])
        store_(view, new_p)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict, with group entries copied (not aliased to the live optimizer) and
        callable hyperparameters replaced by a marker, so ``torch.load(weights_only=True)`` reads
        it; loading keeps the optimizer's own callable where the marker stands."""
        sd = super().state_dict()
        for group in sd["param_groups"]:
            for key, value in group.items():
                if key == "params":
                    continue
                if callable(value):
                    group[key] = CALLABLE_MARK + getattr(
                        value, "__qualname__", type(value).__name__
                    )
                elif isinstance(value, (dict, list)):
                    group[key] = copy.deepcopy(value)
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state dict, keeping every buffer's saved dtype (torch casts to the param dtype).

        The dict is checked first; a dict that does not fit this optimizer raises ``ValueError``
        and leaves the optimizer unchanged.
        """
        self._check_loadable(state_dict)
        state_dict = {**state_dict, "param_groups": self._restore_callables(state_dict)}
        saved_state = state_dict["state"]
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        super().load_state_dict(state_dict)
        params = [p for g in self.param_groups for p in g["params"]]
        for saved_id, p in zip(saved_ids, params, strict=True):
            if saved_id not in saved_state:
                continue
            restored = self.state[p]
            for key, value in saved_state[saved_id].items():
                if key == "step":
                    restored[key] = int(value)
                elif isinstance(value, torch.Tensor):
                    restored[key] = value.detach().to(device=p.device, copy=True)

    def _restore_callables(self, state_dict: Mapping[str, Any]) -> list[dict[str, Any]]:
        groups = []
        for saved, mine in zip(state_dict["param_groups"], self.param_groups, strict=True):
            groups.append(
                {
                    key: mine.get(key) if _is_callable_mark(value) else value
                    for key, value in saved.items()
                }
            )
        return groups

    def _check_loadable(self, state_dict: Any) -> None:
        owner = f"{type(self).__name__}.load_state_dict"
        if (
            not isinstance(state_dict, Mapping)
            or not {"state", "param_groups"} <= state_dict.keys()
        ):
            raise ValueError(f"{owner}: expected a dict with 'state' and 'param_groups'")
        groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, list) or not isinstance(saved_state, Mapping):
            raise ValueError(f"{owner}: 'param_groups' must be a list and 'state' a dict")
        if len(groups) != len(self.param_groups):
            raise ValueError(
                f"{owner}: the checkpoint has {len(groups)} param groups, this optimizer "
                f"{len(self.param_groups)}"
            )
        declared = self.declared_hypers()
        params: dict[Any, torch.Tensor] = {}
        infos: dict[int, ParamInfo] = {}
        for gi, (saved, mine) in enumerate(zip(groups, self.param_groups, strict=True)):
            if not isinstance(saved, Mapping) or not isinstance(saved.get("params"), list):
                raise ValueError(f"{owner}: param group {gi} is not a dict with a 'params' list")
            if len(saved["params"]) != len(mine["params"]):
                raise ValueError(
                    f"{owner}: param group {gi} has {len(saved['params'])} params in the "
                    f"checkpoint and {len(mine['params'])} here"
                )
            hyper = dict(self.defaults)
            for name in declared.keys() & saved.keys():
                value = mine.get(name) if _is_callable_mark(saved[name]) else saved[name]
                hyper[name] = declared[name].validate(f"{owner} (param group {gi})", value)
            self._check_cross(hyper)
            for p in mine["params"]:
                infos[id(p)] = self._info(p, mine, hyper)
            params.update(zip(saved["params"], mine["params"], strict=True))
        for key, entry in saved_state.items():
            if key not in params:
                raise ValueError(f"{owner}: state for unknown parameter id {key!r}")
            self._check_param_state(owner, key, infos[id(params[key])], entry)

    def _check_param_state(self, owner: str, key: Any, info: ParamInfo, entry: Any) -> None:
        if not isinstance(entry, Mapping):
            raise ValueError(f"{owner}: state of parameter {key} is not a dict")
        step = entry.get("step", 0)
        if isinstance(step, torch.Tensor):
            step = step.item() if step.numel() == 1 else -1
        if isinstance(step, bool) or not float(step).is_integer() or step < 0:
            raise ValueError(
                f"{owner}: state of parameter {key} has step={step!r}, not an integer >= 0"
            )
        view = real_view(info.param.detach())
        for buf in self.buffers:
            value = entry.get(buf.name)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{owner}: state '{buf.name}' of parameter {key} is not a tensor")
            shape = buf.expected_shape(view, info)
            if value.shape != shape:
                raise ValueError(
                    f"{owner}: state '{buf.name}' of parameter {key} has shape "
                    f"{tuple(value.shape)}, expected {tuple(shape)}"
                )


CALLABLE_MARK = "<callable>"


def _is_callable_mark(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(CALLABLE_MARK)


def hyperparameter_table(cls: type[AdamkitOptimizer]) -> str:
    """The "Hyperparameters" section appended to every optimizer's docstring."""
    lines = ["Hyperparameters (keyword-only):", ""]
    lines += [f"* ``{h.name}={h.default!r}``: {h.doc}" for h in cls.declared_hypers().values()]
    return "\n".join("    " + line if line else "" for line in lines)


def prepare_grad(grad: torch.Tensor, p: torch.Tensor, k: Scalars) -> torch.Tensor:
    """The gradient the rule sees: in the compute dtype, negated for ``maximize``, plus λθ (L2).

    Never modifies ``grad`` in place.
    """
    g = grad if grad.dtype == p.dtype else grad.to(p.dtype)
    if k["maximize"]:
        g = -g
    if k["l2_active"]:
        g = g + k["weight_decay"] * p
    return g
