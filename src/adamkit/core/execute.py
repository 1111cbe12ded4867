"""Running a rule: the per-tensor update shared by both paths, and the compiled fast path.

The same :func:`update_one` (decode the buffers, prepare the gradient, run the rule, round the
results into storage) runs eagerly as the readable reference and, for the fast path, traced by
``torch.compile`` for a chunk of tensors at a time into one fused pass over memory per tensor:

* Step-dependent numbers (lr, bias corrections, schedules, decay factors, the keys of the
  stochastic rounding) are passed as 0-d tensors, so changing them never recompiles; only
  structural values (flags, modes, codecs) are compiled in.
* Rules that do not look at shapes see 1-D views, compiled with dynamic sizes, so one graph
  serves every tensor; chunks are padded with small dummy tensors to a fixed length, so one
  graph serves every chunk.
* Each configuration gets its own code object, so Dynamo's per-function cache never evicts one
  configuration for another; the first call runs on the dummies, so a compiler failure shows
  before any real parameter or state is touched, and then the eager path is used.
* Everything decided per parameter (codecs, views, signature) is planned once and reused while
  the parameter's state tensors stay the same objects.
"""

from __future__ import annotations

import logging
import os
import shutil
import types
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.fx.experimental._config as fx_config

from adamkit.core.precision import Codec
from adamkit.core.rounding import stream_key

logger = logging.getLogger("adamkit")

CHUNK = int(os.environ.get("ADAMKIT_COMPILE_CHUNK", "8"))
PARAM_STREAM = 1 << 16  # the buffer position of the parameter's own random stream
Rule = Callable[..., torch.Tensor]


def update_one(
    rule: Rule,
    slot: dict[str, torch.Tensor],
    grad: torch.Tensor,
    state: dict[str, torch.Tensor],
    codecs: Mapping[str, Codec],
    pcodec: Codec,
    k: Mapping[str, Any],
    index: Any,
    exact: torch.dtype,
) -> None:
    """One tensor's step: decode, rule, encode. Shared by the eager and the compiled paths."""
    pc = pcodec.load(slot, "param", exact)
    g = prepare_grad(grad, pc, k)
    s = {name: codec.load(state, name, exact) for name, codec in codecs.items()}
    new_p = rule(pc, g, s, k)
    seed, t = k["rounding_seed"], k["t"]
    for position, (name, codec) in enumerate(codecs.items()):
        key = stream_key(seed, index, position, t) if codec.random else 0
        codec.store(state, name, s[name], key)
    key = stream_key(seed, index, PARAM_STREAM, t) if pcodec.random else 0
    pcodec.store(slot, "param", new_p, key)


def real_view(t: torch.Tensor) -> torch.Tensor:
    """Complex tensors are optimized as their real view (..., 2), exactly like torch.optim."""
    return torch.view_as_real(t) if t.is_complex() else t


def prepare_grad(grad: torch.Tensor, p: torch.Tensor, k: Mapping[str, Any]) -> torch.Tensor:
    """The gradient the rule sees: in the compute dtype, negated for ``maximize``, plus λθ (L2).

    Never modifies ``grad`` in place.
    """
    g = grad if grad.dtype == p.dtype else grad.to(p.dtype)
    if k["maximize"]:
        g = -g
    if k["l2_active"]:
        g = g + k["weight_decay"] * p
    return g


# ------------------------------------------------------------------------------- planning


def _storage(p: torch.Tensor) -> tuple:
    """What identifies a parameter's memory: replacing ``p.data`` changes it."""
    return (p.data_ptr(), p.dtype, p.shape, p.stride())


def _codec_id(codec: Codec) -> tuple:
    return (type(codec).__name__, *sorted((k, repr(v)) for k, v in vars(codec).items()))


class Plan:
    """What one parameter's update needs, decided once: codecs, compute dtype, the views the
    compiled path takes, and the signature of tensors that can share a compiled graph."""

    __slots__ = (
        "codecs",
        "exact",
        "flat",
        "index",
        "p",
        "pcodec",
        "roundings",
        "signature",
        "slot",
        "slot_names",
        "state",
        "state_names",
        "state_views",
        "storage",
        "stored",
    )

    def __init__(
        self,
        p: torch.Tensor,
        index: int,
        state: dict[str, Any],
        codecs: dict[str, Codec],
        pcodec: Codec,
        exact: torch.dtype,
        slot: dict[str, torch.Tensor],
        shaped: bool,
        roundings: tuple[str, str],
    ) -> None:
        self.p, self.index, self.state, self.codecs, self.pcodec = p, index, state, codecs, pcodec
        self.exact, self.slot, self.roundings = exact, slot, roundings
        self.stored = {n: v for n, v in state.items() if isinstance(v, torch.Tensor)}
        self.storage = _storage(p)
        self.slot_names = tuple(sorted(slot))
        self.state_names = tuple(sorted(self.stored))
        view = slot["param"]
        self.flat = not shaped
        self.signature = self._signature(view, shaped)
        if self.signature is None:
            return

        def squash(t: torch.Tensor) -> torch.Tensor:
            return t.view(-1) if self.flat and t.shape == view.shape else t

        self.state_views = [squash(slot[n]) for n in self.slot_names] + [
            squash(self.stored[n]) for n in self.state_names
        ]

    def _signature(self, view: torch.Tensor, shaped: bool) -> tuple | None:
        if type(self.p) is not torch.Tensor or self.p.numel() < 2 or not view.is_contiguous():
            return None  # DTensors and other subclasses, sizes 0/1 (Dynamo specialises them)
        if not all(t.is_contiguous() for t in self.stored.values()):
            return None
        shapes = tuple(
            (n, t.ndim if shaped else 0, t.shape == view.shape, t.dtype)
            for n, t in sorted({**self.slot, **self.stored}.items())
        )
        return (
            view.device.type,
            view.ndim if shaped else 1,
            self.exact,
            shapes,
            tuple((name, _codec_id(c)) for name, c in self.codecs.items()),
            _codec_id(self.pcodec),
        )

    def valid(self, state: Mapping[str, Any], roundings: tuple[str, str]) -> bool:
        """Whether this plan still describes the parameter: the same storage (``p.data`` may have
        been replaced), the same state tensors and the same rounding policy."""
        return (
            self.storage == _storage(self.p)
            and roundings == self.roundings
            and len(self.stored) == sum(isinstance(v, torch.Tensor) for v in state.values())
            and all(state.get(n) is t for n, t in self.stored.items())
        )

    def grad_view(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.view(-1) if self.flat else grad


# --------------------------------------------------------------------------- compiled path


def _chunk_body(tensors, scalars, indices):  # type: ignore[no-untyped-def]
    # Free names, bound per configuration by ``_configured``: RULE, CODECS, PCODEC, STATIC,
    # FLOAT_NAMES, INT_NAMES, SLOT_NAMES, STATE_NAMES, EXACT.
    floats, ints = scalars
    k = dict(STATIC)  # noqa: F821
    for i, name in enumerate(FLOAT_NAMES):  # noqa: F821
        k[name] = floats[i]
    for i, name in enumerate(INT_NAMES):  # noqa: F821
        k[name] = ints[i]
    n_slot, n_state = len(SLOT_NAMES), len(STATE_NAMES)  # noqa: F821
    per_job = n_slot + 1 + n_state
    for i in range(len(tensors) // per_job):
        base = i * per_job
        slot = dict(zip(SLOT_NAMES, tensors[base : base + n_slot]))  # noqa: F821, B905
        grad = tensors[base + n_slot + n_state]
        state = dict(
            zip(STATE_NAMES, tensors[base + n_slot : base + n_slot + n_state])  # noqa: F821, B905
        )
        update_one(RULE, slot, grad, state, CODECS, PCODEC, k, indices[i], EXACT)  # noqa: F821


def _configured(number: int, bindings: dict[str, Any]) -> Callable[..., None]:
    """A fresh function (own code object, own globals) for one configuration."""
    code = _chunk_body.__code__.replace(co_name=f"adamkit_chunk_{number}")
    return types.FunctionType(code, {**_chunk_body.__globals__, **bindings}, code.co_name)


def split_scalars(k: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Static values (compiled in), and the names of the float and int numbers (0-d tensors)."""
    static, floats, ints = {}, [], []
    for name, value in k.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            static[name] = value
        elif isinstance(value, int):
            ints.append(name)
        else:
            floats.append(name)
    return static, floats, ints


def scalar_tensors(
    k: Mapping[str, Any],
    floats: list[str],
    ints: list[str],
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's numbers as two 1-D tensors (floats in the compute dtype, ints in int64)."""
    return (
        torch.tensor([k[n] for n in floats], dtype=dtype, device=device),
        torch.tensor([k[n] for n in ints], dtype=torch.int64, device=device),
    )


class CompiledChunks:
    """The compiled chunk functions of one optimizer, by configuration."""

    def __init__(self) -> None:
        self.functions: dict[tuple, Callable[..., None] | None] = {}

    def get(
        self, key: tuple, bindings: dict[str, Any], trial: Callable[[Callable[..., None]], None]
    ) -> Callable[..., None] | None:
        """The compiled function for ``key``: compiled and tried (``trial``) the first time;
        ``None`` if that failed, after which the caller uses the eager path."""
        if key in self.functions:
            return self.functions[key]
        fn: Callable[..., None] | None = torch.compile(
            _configured(len(self.functions), bindings), dynamic=True, fullgraph=True
        )
        try:
            # Without duck sizing every dimension gets its own symbol, so a graph traced on the
            # dummies (all sizes distinct) is not re-traced when real tensors share sizes.
            with fx_config.patch(use_duck_shape=False):
                trial(fn)  # type: ignore[arg-type]
        except Exception as err:  # any compiler failure: fall back, once, loudly
            logger.warning("adamkit: torch.compile failed (%s); using the eager path", err)
            fn = None
        self.functions[key] = fn
        return fn


def worth_compiling(count: int, numel: int) -> bool:
    """``backend="auto"`` compiles groups where the per-tensor Python overhead or the memory
    traffic of separate passes matters: at least 32 tensors or 2^18 elements."""
    return count >= 32 or numel >= 1 << 18


_AVAILABLE: list[bool] = []


def compiler_available() -> bool:
    """Whether ``torch.compile`` can be used here (inductor needs a C++ compiler on CPU)."""
    if not _AVAILABLE:
        compilers = ("c++", "g++", "gcc", "clang++", "cl")
        _AVAILABLE.append(hasattr(torch, "compile") and any(shutil.which(c) for c in compilers))
    return _AVAILABLE[0]


def static_key(static: Mapping[str, Any]) -> tuple:
    return tuple(sorted((name, repr(value)) for name, value in static.items()))


def pack(plans: list[Plan]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The flat tensor list and parameter indices of one chunk, as the compiled body reads them."""
    tensors: list[torch.Tensor] = []
    for plan in plans:
        tensors += plan.state_views
        tensors.append(plan.grad_view(real_view(plan.p.grad)))
    device = plans[0].p.device
    return tensors, torch.tensor([plan.index for plan in plans], dtype=torch.int64, device=device)


class CompiledPath:
    """One optimizer's compiled functions and the dummy tensors that pad its chunks."""

    def __init__(self) -> None:
        self.chunks = CompiledChunks()
        self.pads: dict[tuple, list[Plan] | None] = {}

    def run(
        self, opt: Any, plans: list[Plan], k: Mapping[str, Any], hyper: dict[str, Any]
    ) -> list[Plan]:
        """Step the plans the compiled path can take; return the rest (for the eager path)."""
        buckets: dict[tuple, list[Plan]] = {}
        leftover = []
        for plan in plans:
            if plan.signature is None:
                leftover.append(plan)
            else:
                buckets.setdefault(plan.signature, []).append(plan)
        static, floats, ints = split_scalars(k)
        for sig, bucket in buckets.items():
            first = bucket[0]
            if sig not in self.pads:
                self.pads[sig] = self._dummies(opt, first, hyper)
            dummies = self.pads[sig]
            scalars = scalar_tensors(k, floats, ints, first.exact, first.p.device)
            fn = None
            if dummies is not None:
                bindings = {
                    "RULE": opt.rule,
                    "CODECS": first.codecs,
                    "PCODEC": first.pcodec,
                    "STATIC": static,
                    "FLOAT_NAMES": tuple(floats),
                    "INT_NAMES": tuple(ints),
                    "SLOT_NAMES": first.slot_names,
                    "STATE_NAMES": first.state_names,
                    "EXACT": first.exact,
                }
                key = (type(opt), sig, static_key(static), tuple(floats), tuple(ints))
                fn = self.chunks.get(
                    key, bindings, lambda f, d=dummies, sc=scalars: f(*_with(pack(d), sc))
                )
            if fn is None:
                leftover.extend(bucket)
                continue
            for start in range(0, len(bucket), CHUNK):
                part = bucket[start : start + CHUNK]
                fn(*_with(pack(part + dummies[len(part) :]), scalars))  # type: ignore[index]
        return leftover

    @staticmethod
    def _dummies(opt: Any, like: Plan, hyper: dict[str, Any]) -> list[Plan] | None:
        """``CHUNK`` small stand-ins with the same layout and codecs, to pad chunks (and to try
        the compiler on); their sizes differ so that Dynamo does not tie them together."""
        view = like.slot["param"]
        out = []
        for j in range(CHUNK):
            shape = (j + 2,) + (2,) * (view.ndim - 1) if opt.shaped else (j + 2,)
            p = torch.ones(shape, dtype=like.p.dtype, device=view.device, requires_grad=True)
            p.grad = torch.ones_like(p)
            plan = opt.standalone_plan(p, (1 << 30) + j, hyper, like)
            if plan.signature != like.signature:
                return None
            out.append(plan)
        return out


def _with(packed: tuple[list[torch.Tensor], torch.Tensor], scalars: Any) -> tuple:
    tensors, indices = packed
    return tensors, scalars, indices
