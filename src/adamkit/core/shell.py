"""The shell: one ``torch.optim.Optimizer`` subclass that runs every adamkit rule.

An optimizer is declared, not programmed: a subclass names its hyperparameters (``hypers``), its
state buffers (``buffers``), the host-side scalars of a step (``scalars``) and the update rule for
one tensor (``rule``). The shell owns everything else: param groups, validation, lazy state,
precision, weight decay modes, ``maximize``, complex parameters, closures, hooks and
``state_dict``.

The rule contract::

    rule(p, g, s, k) -> new value of p

* ``p``: the parameter (real view, compute dtype); read-only except for the final
  :func:`adamkit.parts.update.descend`, which writes the new value into it;
* ``g``: the prepared gradient (negated for ``maximize``, plus λθ in ``"l2"`` mode), read-only;
* ``s``: ``{buffer name: tensor in the compute dtype}``; update in place or assign new tensors;
* ``k``: the step's scalars: every hyperparameter of the group (``betas`` split into ``beta1``,
  ``beta2``, ...), ``t`` (this parameter's 1-based step), ``lr``, the decay factor ``decay`` (κ in
  θ·(1 − κ)) with ``decay_active``, plus what the optimizer's ``scalars`` adds (bias corrections,
  schedules). Numbers in ``k`` may be Python floats or 0-d tensors; bools and strings are static.
  On the compiled path ``k["recompute"]`` is True where an intermediate used twice should be
  computed twice rather than kept (merged small tensors, and tensors so large that a kept
  temporary is fresh memory every step); rules that keep one (LAMB's direction) may read it.
  ``k["spread"]`` names the one-element state entries that a segmented merge hands the rule
  spread per element (so shaped like ``p``); a rule that tells its state's kind by its shape
  reads it (Adam-mini's one-block v).

A step first checks everything (hyperparameters, gradients) and only then changes state, so a
refused step leaves parameters and state exactly as they were.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import operator
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

from adamkit.core import hparams as hp
from adamkit.core.buffers import Buffer, ParamInfo, zeros
from adamkit.core.codecs import Plain, check_stored_values
from adamkit.core.compiled import (
    CompiledPath,
    compiler_available,
    elementwise_on,
    worth_compiling,
)
from adamkit.core.eager import EagerPath
from adamkit.core.execute import Plan, real_view, update_plan
from adamkit.core.params import as_param_list, check_group_params
from adamkit.core.precision import (
    ROUNDINGS,
    Codec,
    check_policy,
    check_state_dtype,
    compute_dtype,
    default_compute_dtype,
    new_codec,
    param_codec,
    stored_codec,
)
from adamkit.core.program import GroupProgram, Stage
from adamkit.core.rounding import stream_key
from adamkit.core.sharding import is_dtensor

Scalars = dict[str, Any]
State = dict[str, torch.Tensor]

SHELL_HYPERS: tuple[hp.Hyper, ...] = (
    hp.maximize(),
    hp.Hyper(
        "state_dtype",
        None,
        check_state_dtype,
        "storage of the moments: None (the parameter's dtype, float32 for half-precision "
        "params), 'float32', 'float64', 'bfloat16', 'float16' (scaled per tensor), 'int8'",
    ),
    hp.Hyper(
        "state_rounding",
        "stochastic",
        hp.choice(*ROUNDINGS),
        "how low-precision state is written back: 'stochastic', 'nearest', 'kahan' (bfloat16)",
    ),
    hp.Hyper(
        "param_rounding",
        "stochastic",
        hp.choice(*ROUNDINGS),
        "how bfloat16/float16 parameters are written back: 'stochastic', 'nearest', 'kahan'",
    ),
    hp.Hyper("rounding_seed", 0, hp.nonnegative_int(), "seed of the stochastic rounding"),
    hp.Hyper(
        "backend",
        "auto",
        hp.choice("auto", "compiled", "eager"),
        "'compiled': the rule fused by torch.compile; 'eager': plain torch ops; 'auto': compiled "
        "for groups of >= 32 tensors or >= 2^18 elements when a compiler is available",
    ),
)
DECAY_MODES_OF_SHELL = ("l2", "decoupled", "fixed")


def close_matches(word: str, choices: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


_LAYOUT = operator.attrgetter("layout")
_SHAPE = operator.attrgetter("shape")
_INDEX = operator.attrgetter("index")


class AdamkitOptimizer(torch.optim.Optimizer):
    """Base class of every adamkit optimizer (see the module docstring for the contract)."""

    name: ClassVar[str] = ""
    hypers: ClassVar[tuple[hp.Hyper, ...]] = ()
    buffers: ClassVar[tuple[Buffer, ...]] = ()
    shaped: ClassVar[bool] = False  # the rule reads tensor shapes (per-channel or per-block math)
    # The rule treats every element on its own (no reductions, no shapes), so tensors may be
    # concatenated; a subclass that brings its own rule must declare it again.
    elementwise: ClassVar[bool] = False
    # The rule couples elements only through the per-tensor reductions of core.reduce (norm,
    # rms, mean_abs), so concatenated tensors can be stepped with those reductions segmented.
    # Its one-element state (a per-tensor statistic) then reaches it spread per element, like
    # those reductions' results, and is read back from each tensor's first element.
    segmentable: ClassVar[bool] = False
    # On 1-D tensors the rule is element-wise (per-channel statistics of a vector are per element,
    # a centralization of a vector is skipped): small vectors may be concatenated.
    vectors_elementwise: ClassVar[bool] = False
    # The tensors ("param", "grad" or buffer names) that the rule's whole-tensor reductions
    # read in a pass of their own before the update's (LAMB's norms): `adamkit speed` counts
    # them in the bytes a step must move. Per-row statistics, whose rows stay in cache, do not.
    prepass_reads: ClassVar[tuple[str, ...]] = ()

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

    def prepass_reads_of(self, p: torch.Tensor) -> tuple[str, ...]:
        """``prepass_reads`` for parameter ``p`` (a rule whose reductions depend on how ``p`` is
        split, Adam-mini's, overrides this; ``p`` has been stepped, so its state exists)."""
        return self.prepass_reads

    def storage_setting(self, hyper: Mapping[str, Any]) -> str | None:
        """The group's requested storage dtype of ``"state"`` buffers (None: the default)."""
        return hyper["state_dtype"]

    # ------------------------------------------------------------------ construction
    @classmethod
    def declared_hypers(cls) -> dict[str, hp.Hyper]:
        return {h.name: h for h in (*cls.hypers, *SHELL_HYPERS)}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for claim in ("elementwise", "segmentable", "vectors_elementwise"):
            if "rule" in cls.__dict__ and claim not in cls.__dict__:
                setattr(cls, claim, False)
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
            check_policy(self.storage_setting(hyper), hyper["state_rounding"])
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
        self._check_sharded_storage(index, {**self.defaults, **group}, group["params"])
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
        """The group's hyperparameters, checked; re-checked only when a value has changed."""
        declared = self.declared_hypers()
        raw = [group[name] for name in declared]
        cache = self.__dict__.setdefault("_checked", {})
        seen = cache.get(id(group))
        if seen is not None and len(seen[0]) == len(raw) and all(map(_same, seen[0], raw)):
            return dict(seen[1])
        owner = f"{type(self).__name__} (param group {index})"
        hyper = {
            name: declared[name].validate(owner, value)
            for name, value in zip(declared, raw, strict=True)
        }
        self._check_cross(hyper)
        cache[id(group)] = (copy.copy(raw), hyper)
        return dict(hyper)

    def _plan(self) -> list[tuple[dict[str, Any], dict[str, Any], list[torch.Tensor]]]:
        """Check every group and gradient; return this step's work, changing nothing."""
        work = []
        for gi, group in enumerate(self.param_groups):
            hyper = self._validated_hyper(gi, group)
            params = group["params"]
            grads = [p.grad for p in params]
            active = [p for p, g in zip(params, grads, strict=True) if g is not None]
            present = [g for g in grads if g is not None]
            # checked all at once (comparisons of lists of layouts and sizes run in C); the
            # loop below only names the offending parameter
            if set(map(_LAYOUT, present)) - {torch.strided} or list(map(_SHAPE, present)) != list(
                map(_SHAPE, active)
            ):
                self._check_grads(gi, params)
            self.check_step_allowed(gi, group)
            self._check_sharded_storage(gi, hyper, active)
            work.append((group, hyper, active))
        return work

    def _check_grads(self, gi: int, params: list[torch.Tensor]) -> None:
        """Raise for the first parameter of group ``gi`` whose gradient is not a dense tensor of
        its shape."""
        owner = type(self).__name__
        for pi, p in enumerate(params):
            grad = p.grad
            if grad is None:
                continue
            if grad.layout != torch.strided:  # sparse COO/CSR/..., or another layout
                raise RuntimeError(
                    f"{owner} does not support sparse gradients (param group {gi}, param {pi} "
                    f"has a {grad.layout} gradient); use dense gradients or torch SparseAdam"
                )
            if grad.shape != p.shape:
                raise RuntimeError(
                    f"{owner}: gradient of param group {gi}, param {pi} has shape "
                    f"{tuple(grad.shape)} but the parameter has shape {tuple(p.shape)}"
                )

    def _check_sharded_storage(
        self, index: int, hyper: Mapping[str, Any], params: list[torch.Tensor]
    ) -> None:
        """Refuse 8-bit state for sharded (DTensor) parameters: its blocks of 256 elements and
        their scales are laid out over the whole tensor, which no rank holds."""
        if self.storage_setting(hyper) != "int8":
            return
        for pi, p in enumerate(params):
            if is_dtensor(p):
                raise hp.HyperparameterError(
                    f"{type(self).__name__} (param group {index}): state_dtype='int8' is not "
                    f"supported for sharded (DTensor) parameters (param {pi}): its blocks of "
                    "256 elements and their scales span the whole tensor, which no rank holds; "
                    "use state_dtype='bfloat16' or 'float16'"
                )

    def check_step_allowed(self, index: int, group: dict[str, Any]) -> None:
        """Raise if this group may not step now (e.g. schedule-free in eval mode)."""

    def _run(self, work: list[tuple[dict[str, Any], dict[str, Any], list[torch.Tensor]]]) -> None:
        offset = 0
        for group, hyper, active in work:
            for name in self.declared_hypers():
                group[name] = hyper[name]
            self.begin_group_step(group, hyper)
            self._run_arranged(group, hyper, active, offset, self._use_compiled(hyper, active))
            offset += len(group["params"])

    def _plans_by_step(
        self,
        group: dict[str, Any],
        hyper: dict[str, Any],
        active: list[torch.Tensor],
        offset: int,
    ) -> dict[int, list[Plan]]:
        """The plans of the group's parameters with gradients (state created lazily), by the
        step each is about to take."""
        position = {id(p): offset + i for i, p in enumerate(group["params"])}
        by_step: dict[int, list[Plan]] = {}
        for p in active:
            state = self.state[p]
            if not state:
                self._init_state(p, self._info(p, group, hyper), state)
            by_step.setdefault(state["step"] + 1, []).append(
                self._plan_of(p, position[id(p)], hyper)
            )
        return by_step

    def _update_eagerly(self, plans: list[Plan], k: Scalars) -> None:
        # In the parameters' order: a sharded tensor's step may sum across the ranks, so every
        # rank must step them in one order, whichever of them it compiled or merged.
        for plan in sorted(plans, key=_INDEX):
            elementwise = elementwise_on(self, plan.slot["param"].ndim)
            update_plan(
                self.rule,
                plan,
                real_view(plan.p.grad),
                k,
                elementwise,
                per_tensor=self.segmentable and not self.shaped,
            )

    def _run_arranged(
        self,
        group: dict[str, Any],
        hyper: dict[str, Any],
        active: list[torch.Tensor],
        offset: int,
        compiled: bool,
    ) -> None:
        """Step a group on the compiled or the eager path, reusing its arranged work (merged
        small tensors, compiled calls) while it fits; plans the path leaves are stepped one by
        one."""
        fast = self.__dict__.setdefault("_fast", CompiledPath())
        path: CompiledPath | EagerPath = fast if compiled else EagerPath()
        programs: dict[int, GroupProgram] = self.__dict__.setdefault("_programs", {})
        roundings = (hyper["state_rounding"], hyper["param_rounding"])
        params = group["params"]
        program = programs.pop(id(group), None)
        if (
            program is None
            or program.compiled != compiled
            or not program.fits(params, active, self.state, roundings, offset)
        ):
            by_step = self._plans_by_step(group, hyper, active, offset)
            stages = [
                Stage(t, plans, path.arrange(self, plans, hyper)) for t, plans in by_step.items()
            ]
            states = [self.state[p] for p in active]
            program = GroupProgram(params, active, states, stages, roundings, offset, compiled)
        for stage in program.stages:
            k = self.step_scalars(hyper, stage.t, group)
            self._update_eagerly(path.run(self, stage.work, k), k)  # type: ignore[arg-type]
        program.advance()
        programs[id(group)] = program

    def _plan_of(self, p: torch.Tensor, index: int, hyper: Mapping[str, Any]) -> Plan:
        """The parameter's plan, reused while its state tensors and rounding policy stay."""
        plans: dict[torch.Tensor, Plan] = self.__dict__.setdefault("_plans", {})
        state = self.state[p]
        roundings = (hyper["state_rounding"], hyper["param_rounding"])
        plan = plans.get(p)
        if plan is not None and plan.index == index and plan.valid(state, roundings):
            return plan
        codecs = self._codecs(state, roundings[0])
        exact = compute_dtype(p.dtype, *_plain_dtypes(codecs.values()))
        pcodec = self._param_codec(p, state, roundings[1])
        plan = Plan(
            p,
            index,
            state,
            codecs,
            pcodec,
            exact,
            self._param_slot(p, state),
            self.shaped,
            roundings,
        )
        plans[p] = plan
        return plan

    def _use_compiled(self, hyper: Mapping[str, Any], active: list[torch.Tensor]) -> bool:
        backend = hyper["backend"]
        if backend == "auto":
            backend = os.environ.get("ADAMKIT_BACKEND", "auto")
            if backend == "auto" and not worth_compiling(active):
                return False
        return backend != "eager" and compiler_available()

    def standalone_plan(
        self, p: torch.Tensor, index: int, hyper: Mapping[str, Any], like: Plan
    ) -> Plan:
        """A plan with fresh state for a tensor outside the optimizer (the compiled path's
        padding), under the same policy as ``like``."""
        state: dict[str, Any] = {}
        self._init_state(p, ParamInfo(p, None, hyper), state)
        return Plan(
            p,
            index,
            state,
            self._codecs(state, like.roundings[0]),
            self._param_codec(p, state, like.roundings[1]),
            like.exact,
            self._param_slot(p, state),
            self.shaped,
            like.roundings,
        )

    def begin_group_step(self, group: dict[str, Any], hyper: dict[str, Any]) -> None:
        """Per-group, per-step bookkeeping before the tensors are updated (rarely needed)."""

    def step_scalars(self, hyper: Mapping[str, Any], t: int, group: Mapping[str, Any]) -> Scalars:
        """The scalars ``k`` of step ``t`` for a group (see the module docstring)."""
        k: Scalars = {}
        for name, value in hyper.items():
            if name == "betas":  # the betas are numbers of the step, not a structural tuple
                k.update(zip(("beta1", "beta2", "beta3")[: len(value)], value, strict=True))
            else:
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
        hyper = info.hyper
        view = real_view(p.detach())
        setting = self.storage_setting(hyper)
        exact = default_compute_dtype(setting, p.dtype)
        pc = view.to(exact)
        state["step"] = 0
        for buf in self.buffers:
            if not buf.wanted(info):
                continue
            if buf.precision == "exact" or (buf.precision == "iterate" and setting == "int8"):
                codec: Codec = Plain(exact)
            else:
                codec = new_codec(setting, hyper["state_rounding"], p.dtype, buf.nonnegative)
            if buf.init is zeros:
                codec.create_zeros(state, buf.name, pc)
            else:
                codec.create(state, buf.name, buf.init(pc, info).to(exact))
        if hyper["param_rounding"] == "kahan" and param_codec(p.dtype, "kahan") is not None:
            state["param_kahan"] = torch.zeros_like(view)

    def _codecs(self, state: Mapping[str, Any], rounding: str) -> dict[str, Codec]:
        return {
            buf.name: stored_codec(state, buf.name, rounding, buf.nonnegative)
            for buf in self.buffers
            if buf.name in state
        }

    @staticmethod
    def _param_slot(p: torch.Tensor, state: dict[str, Any]) -> dict[str, Any]:
        slot: dict[str, Any] = {"param": real_view(p.detach())}
        if "param_kahan" in state:
            slot["param_kahan"] = state["param_kahan"]
        return slot

    def _param_codec(self, p: torch.Tensor, state: Mapping[str, Any], rounding: str) -> Codec:
        if "param_kahan" in state:
            rounding = "kahan"
        codec = param_codec(p.dtype, rounding)
        return codec if codec is not None else Plain(real_view(p.detach()).dtype)

    # ------------------------------------------------------------------ outside the step
    def load_buffer(self, p: torch.Tensor, name: str) -> torch.Tensor:
        """A state buffer of ``p`` decoded to its compute dtype (for work outside ``step``)."""
        state = self.state[p]
        buf = next(b for b in self.buffers if b.name == name)
        codecs = self._codecs(state, "nearest")
        return codecs[buf.name].load(
            state, name, compute_dtype(p.dtype, *_plain_dtypes(codecs.values()))
        )

    def store_buffer(
        self, p: torch.Tensor, name: str, value: torch.Tensor, group: Mapping[str, Any], stream: int
    ) -> None:
        """Round ``value`` into the state buffer ``name`` of ``p`` under the group's policy."""
        state = self.state[p]
        codec = self._codecs(state, group["state_rounding"])[name]
        codec.store(state, name, value, stream_key(group["rounding_seed"], stream, state["step"]))

    def load_param(self, p: torch.Tensor) -> torch.Tensor:
        """The parameter in its compute dtype (with its Kahan compensation, if any)."""
        state = self.state[p]
        codecs = self._codecs(state, "nearest")
        exact = compute_dtype(p.dtype, *_plain_dtypes(codecs.values()))
        return self._param_codec(p, state, "nearest").load(
            self._param_slot(p, state), "param", exact
        )

    def store_param(
        self, p: torch.Tensor, value: torch.Tensor, group: Mapping[str, Any], stream: int
    ) -> None:
        """Write ``value`` into ``p`` with the group's ``param_rounding``."""
        state = self.state[p]
        codec = self._param_codec(p, state, group["param_rounding"])
        key = stream_key(group["rounding_seed"], stream, state.get("step", 0))
        codec.store(self._param_slot(p, state), "param", value, key)

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
        if not _whole_number(step):
            raise ValueError(
                f"{owner}: state of parameter {key} has step={step!r}, not an integer >= 0"
            )
        view = real_view(info.param.detach())
        for buf in self.buffers:
            value = entry.get(buf.name)
            if value is None:
                if entry and buf.wanted(info):
                    raise ValueError(
                        f"{owner}: state of parameter {key} has no '{buf.name}' (it has "
                        f"{sorted(map(str, entry))}); this optimizer keeps {self._wanted(info)}"
                    )
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"{owner}: state '{buf.name}' of parameter {key} is not a tensor")
            shape = buf.expected_shape(view, info)
            if value.shape != shape:
                raise ValueError(
                    f"{owner}: state '{buf.name}' of parameter {key} has shape "
                    f"{tuple(value.shape)}, expected {tuple(shape)}"
                )
            check_stored_values(f"{owner}: state '{buf.name}' of parameter {key}", buf, entry)

    def _wanted(self, info: ParamInfo) -> list[str]:
        return [buf.name for buf in self.buffers if buf.wanted(info)]


CALLABLE_MARK = "<callable>"


def _whole_number(step: Any) -> bool:
    """Whether ``step`` is an integer >= 0 (or a float holding one), not a bool."""
    if isinstance(step, bool) or not isinstance(step, (int, float)):
        return False
    return math.isfinite(step) and float(step).is_integer() and step >= 0


def _same(a: Any, b: Any) -> bool:
    """Whether a hyperparameter value is unchanged since it was checked."""
    if a is b:
        return True
    if type(a) is not type(b) or isinstance(a, torch.Tensor):
        return False
    return bool(a == b) if not isinstance(a, (list, dict)) else False


def _plain_dtypes(codecs: Iterable[Codec]) -> tuple[torch.dtype, ...]:
    """The float64 of any plain float64 buffer, which lifts the compute dtype to float64."""
    wide = [c.dtype for c in codecs if isinstance(c, Plain) and c.dtype == torch.float64]
    return tuple(wide[:1])


def _is_callable_mark(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(CALLABLE_MARK)


def hyperparameter_table(cls: type[AdamkitOptimizer]) -> str:
    """The "Hyperparameters" section appended to every optimizer's docstring."""
    lines = ["Hyperparameters (keyword-only):", ""]
    lines += [f"* ``{h.name}={h.default!r}``: {h.doc}" for h in cls.declared_hypers().values()]
    return "\n".join("    " + line if line else "" for line in lines)
