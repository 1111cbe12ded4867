"""Reductions used by rules: per-tensor and per-output-channel norms and means.

Every reduction a rule needs goes through these helpers and returns a tensor (never a Python
number), so that no rule synchronises with the device and so that the helpers are the one place
to make reductions global under sharding.

Per-tensor reductions may run *segmented*: when the compiled path steps several small tensors
as one flat buffer, it activates their :class:`Segments` for the rule's call, and ``norm``,
``rms`` and ``mean_abs`` then return, for every element, the statistic of the tensor it
belongs to (which broadcasts against the flat buffer exactly as the 0-d result broadcasts
against one tensor).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch


class Segments(NamedTuple):
    """The tensors concatenated in a flat buffer: ``ids`` (int64, one per element) is the index
    of each element's tensor; ``sizes`` (compute dtype, one per tensor) their element counts;
    ``starts`` (int64, one per tensor) the index of each tensor's first element.

    ``uniform``: every tensor has the same size, so the buffer is a (tensors, size) matrix
    whose sums are row sums (inductor writes a sum by ``ids`` as one atomic add per element, a
    row sum as a plain loop)."""

    ids: torch.Tensor
    sizes: torch.Tensor
    starts: torch.Tensor
    uniform: bool = False


# Plain tensors and nn.Parameter (which a traced graph sees detached, as plain tensors); not
# DTensors or other tensor subclasses. Only these take the compiled path and the eager CPU
# shortcuts below.
PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)

ACTIVE: list[Segments] = []  # the segments of the rule call in progress (set by update_one)


class Shards(NamedTuple):
    """The rule call in progress runs on this rank's part of tensors sharded over ``group``
    (each rank a run of the whole tensor's elements), whose whole size is ``numel``: a
    per-tensor statistic sums the local parts, then across the group (one collective)."""

    group: Any
    numel: int

    def total(self, part_sum: torch.Tensor) -> torch.Tensor:
        """The sum over the whole tensor from this rank's ``part_sum`` (in place)."""
        import torch.distributed as dist

        dist.all_reduce(part_sum, group=self.group)
        return part_sum


class PendingTotalError(Exception):
    """A staged call used a per-tensor statistic whose total is not known yet (its pass only
    collects sums): the call ends here, before it stores anything."""


class PendingValue(torch.Tensor):
    """A per-tensor statistic whose total is not known yet, in a staged pass, and what 0-d
    arithmetic makes of it: the rule's scalar computations on such values go on (their values
    mean nothing), so that the pass collects every reduction that does not depend on them.
    Their first use beyond that (an operation with a tensor of more than one element, an
    in-place write into another tensor, a read on the host) raises :class:`PendingTotalError`."""

    HOST_READS = frozenset({"__bool__", "__float__", "__int__", "__index__", "item", "tolist"})

    @staticmethod
    def like(value: torch.Tensor) -> PendingValue:
        placeholder = torch.zeros((), dtype=value.dtype, device=value.device)
        return torch.Tensor._make_subclass(PendingValue, placeholder)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        with torch._C.DisableTorchFunctionSubclass():
            target = kwargs.get("out", args[0] if args else None)
            writes = "out" in kwargs or name == "__setitem__" or name.startswith("__i")
            writes = writes or (name.endswith("_") and not name.startswith("_"))
            if (
                name in cls.HOST_READS
                or any(t.dim() != 0 for t in _tensors_in((*args, *kwargs.values())))
                or (writes and not isinstance(target, PendingValue))
            ):
                raise PendingTotalError
            out = func(*args, **kwargs)
        if isinstance(out, torch.Tensor):
            return out.as_subclass(PendingValue)
        if isinstance(out, tuple):
            return tuple(
                o.as_subclass(PendingValue) if isinstance(o, torch.Tensor) else o for o in out
            )
        return out


def _tensors_in(values: tuple) -> list[torch.Tensor]:
    """The tensors among ``values`` and in the lists and tuples among them (an operation's
    arguments)."""
    found = []
    for v in values:
        if isinstance(v, torch.Tensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            found.extend(t for t in v if isinstance(t, torch.Tensor))
    return found


class Staged:
    """The rule call in progress runs on one piece of tensors (of ``numel`` elements in all)
    that are stepped piece by piece, in passes over every piece (``adamkit.core.execute``):
    the totals of the call's first reductions, in call order, are ``known`` from earlier
    passes. Each further reduction adds the piece's sum to ``sums`` and gives a
    :class:`PendingValue`; the call must then end before it stores anything (:func:`settle`)."""

    def __init__(self, numel: int, known: list[torch.Tensor]) -> None:
        self.numel, self.known, self.calls = numel, known, 0
        self.sums: list[torch.Tensor] = []

    def total(self, part_sum: torch.Tensor) -> torch.Tensor:
        """The whole tensor's sum, if an earlier pass found it; else a :class:`PendingValue`."""
        if isinstance(part_sum, PendingValue):
            raise PendingTotalError  # a statistic of a statistic not known yet
        at, self.calls = self.calls, self.calls + 1
        if at < len(self.known):
            return self.known[at].clone()  # the caller may work on it in place
        self.sums.append(part_sum)
        return PendingValue.like(part_sum)


# The parts of tensors the rule call in progress runs on, where its per-tensor statistics are
# totals over more than the tensors it sees: set by adamkit.core.execute for local steps of
# sharded tensors (Shards) and for eager steps in pieces (Staged).
PARTS: list[Shards | Staged] = []


def _total(part_sum: torch.Tensor) -> torch.Tensor:
    return PARTS[-1].total(part_sum)


def settle() -> None:
    """Called before a rule call stores its results: raises :class:`PendingTotalError` if the
    call (a staged one) used a statistic whose total is not known yet."""
    if PARTS and isinstance(PARTS[-1], Staged) and PARTS[-1].sums:
        raise PendingTotalError


def _square_sum_of_parts(x: torch.Tensor) -> torch.Tensor:
    return _total(torch.linalg.vector_norm(x).square())


# Traced, sums and means over a whole tensor, a channel or a same-size segment accumulate in
# float64 (:func:`_traced_sum`, :func:`_traced_mean`); callers narrow to the input's dtype.
# Inductor 2.13 sums float32 in one of two ways, chosen by whether the size can exceed 4096:
# one accumulator per vector lane, whose error grows with the size, or a cascade helper that
# keeps its partial sums in memory (a store and a load for every vector). The choice put a
# guard on the size, so every reducing configuration compiled twice: on its small stand-ins,
# then again, with the helper, on the first real tensors. A float64 accumulator needs neither,
# and its result, narrowed, is within one rounding of the exact value. Eagerly, torch's own
# float32 reductions (cascade sums) stay. Devices without float64 (Apple's MPS) accumulate in
# the input's dtype.
WIDE = torch.float64
NO_FLOAT64_DEVICES = frozenset({"mps"})


def _accumulator(values: torch.Tensor) -> torch.dtype:
    """The dtype traced sums of ``values`` accumulate in."""
    return values.dtype if values.device.type in NO_FLOAT64_DEVICES else WIDE


def _traced_sum(values: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ values (over ``dim``, else all), in the accumulator's dtype."""
    return torch.sum(values, dim=dim, dtype=_accumulator(values))


def _traced_mean(
    values: torch.Tensor, dim: tuple[int, ...] | None = None, keepdim: bool = False
) -> torch.Tensor:
    """mean(values) (over ``dim``, else all), in the accumulator's dtype.

    Over ``dim`` (per channel), the sum times 1/n: inductor divides a reduction's result by n
    where the result is used, which for a per-row statistic is every iteration of the row's
    update loop (a float64 division per 16 elements of Adam-mini's row update, which the C++
    compiler does not hoist out of that loop); 1/n depends on sizes only, a number computed
    once. Over the whole tensor torch's mean stays: the product did not make those rules
    faster."""
    accumulator = _accumulator(values)
    if dim is None:
        return torch.mean(values, dim=None, keepdim=keepdim, dtype=accumulator)
    count = 1
    for d in dim:
        count = count * values.shape[d]
    return torch.sum(values, dim=dim, keepdim=keepdim, dtype=accumulator) * (1.0 / count)


def _segment_sums(values: torch.Tensor) -> torch.Tensor:
    """Sums of ``values`` per active segment (one per tensor)."""
    segments = ACTIVE[-1]
    if segments.uniform:
        rows = values.view(segments.sizes.shape[0], -1)
        if torch.compiler.is_compiling():
            return _traced_sum(rows, 1).to(values.dtype)
        return rows.sum(1)
    return torch.zeros_like(segments.sizes).index_add_(0, segments.ids, values)


def spread(per_segment: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Each element's segment value, from one value per segment (by ``ids``: a broadcast of
    rows would index by a division per element, which inductor emits lane by lane)."""
    return per_segment[segments.ids]


def first_of_each(values: torch.Tensor, segments: Segments) -> torch.Tensor:
    """Each segment's first element of ``values`` (constant within a segment). In general a
    scatter-add of that element and zeros (exact; a −0 comes back as +0): inductor fuses it
    into the loop that computes ``values`` instead of keeping them for an indexed read (4 B per
    element)."""
    if segments.uniform:
        return values.view(segments.sizes.shape[0], -1)[:, 0]
    position = torch.arange(values.shape[0], device=values.device)
    first = torch.where(position == segments.starts[segments.ids], values, 0.0)
    out = torch.zeros(segments.starts.shape, dtype=values.dtype, device=values.device)
    return out.index_add_(0, segments.ids, first)


def _per_element(per_segment: torch.Tensor) -> torch.Tensor:
    """Each element's segment statistic."""
    return spread(per_segment, ACTIVE[-1])


def norm(x: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ over the whole tensor, as a 0-d tensor."""
    if ACTIVE:
        return _per_element(_segment_sums(x * x).sqrt())
    if torch.compiler.is_compiling():
        return _traced_sum(x * x).sqrt().to(x.dtype)
    if PARTS:
        return _square_sum_of_parts(x).sqrt()
    return torch.linalg.vector_norm(x)


def norm_from_square_sum(square_sum: torch.Tensor) -> torch.Tensor:
    """‖x‖₂ from Σx² over this tensor, or over the part of it in progress (:data:`PARTS`)."""
    return (_total(square_sum) if PARTS else square_sum).sqrt()


# Traced, the statistics below are written as means: inductor evaluates the scalar arithmetic
# on a reduction's result in every iteration of the loop that uses it, and sqrt(n) of a dynamic
# size there slowed the pass of a rule with an RMS (UM, Adam-mini on one 25M tensor in
# `adamkit speed --sets large`); a mean divides inside the reduction. Eager, the norm forms
# need no x² temporary.


def rms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x²)) over the whole tensor, as a 0-d tensor (‖x‖₂/sqrt(n) eagerly)."""
    if ACTIVE:
        return _per_element((_segment_sums(x * x) / ACTIVE[-1].sizes).sqrt())
    if torch.compiler.is_compiling():
        return _traced_mean(x * x).sqrt().to(x.dtype)
    if PARTS:
        return (_square_sum_of_parts(x) / max(1, PARTS[-1].numel)).sqrt()
    return torch.linalg.vector_norm(x) / math.sqrt(max(1, x.numel()))


def mean_square(x: torch.Tensor) -> torch.Tensor:
    """mean(x²) over the whole tensor, as a 0-d tensor (‖x‖₂²/n eagerly)."""
    if ACTIVE:
        return _per_element(_segment_sums(x * x) / ACTIVE[-1].sizes)
    if torch.compiler.is_compiling():
        return _traced_mean(x * x).to(x.dtype)
    if PARTS:
        return _square_sum_of_parts(x) / max(1, PARTS[-1].numel)
    return torch.linalg.vector_norm(x).square() / max(1, x.numel())


# Elements per |x| temporary of the eager CPU sum of absolute values (1 MB in float32).
ABS_SUM_CHUNK = 1 << 18


def mean_abs(x: torch.Tensor) -> torch.Tensor:
    """mean(|x|) over the whole tensor, as a 0-d tensor.

    Traced, on other devices and on tensor subclasses (sharded ones): ‖x‖₁/n, which the
    compiler fuses and which needs no temporary. Eager on the CPU, torch's ‖x‖₁ kernel runs
    at a fraction of the memory bandwidth (a quarter on one 25M tensor, a fifth on a 768×768
    one), so |x| is summed in chunks of ``ABS_SUM_CHUNK`` elements instead."""
    if ACTIVE:
        return _per_element(_segment_sums(x.abs()) / ACTIVE[-1].sizes)
    if torch.compiler.is_compiling():
        return _traced_mean(x.abs()).to(x.dtype)
    if type(x) not in PLAIN_TYPES or x.device.type != "cpu":
        total = torch.linalg.vector_norm(x, 1)
    elif x.numel() <= ABS_SUM_CHUNK:
        total = x.abs().sum()
    else:
        flat = x.reshape(-1)
        total = torch.stack([chunk.abs().sum() for chunk in flat.split(ABS_SUM_CHUNK)]).sum()
    if PARTS:
        return _total(total) / max(1, PARTS[-1].numel)
    return total / max(1, x.numel())


def channel_dims(x: torch.Tensor) -> tuple[int, ...]:
    """The dimensions reduced for per-output-channel statistics: all but the first."""
    return tuple(range(1, x.ndim))


def channel_rms(x: torch.Tensor) -> torch.Tensor:
    """sqrt(mean(x²)) per output channel (dim 0), shaped (C, 1, 1, ...) to broadcast against x.

    A 1-D tensor has one element per channel, so its channel RMS is |x|.
    """
    if x.ndim <= 1:
        return x.abs()
    if torch.compiler.is_compiling():
        return _traced_mean(x * x, channel_dims(x), keepdim=True).sqrt().to(x.dtype)
    per_channel = x[0].numel()
    return torch.linalg.vector_norm(x, dim=channel_dims(x), keepdim=True) / math.sqrt(per_channel)


def channel_mean_square(x: torch.Tensor) -> torch.Tensor:
    """mean(x²) per output channel (dim 0), shaped (C, 1, 1, ...); eagerly from the norm, so
    without an x² temporary."""
    if x.ndim <= 1:
        return x * x
    if torch.compiler.is_compiling():
        return _traced_mean(x * x, channel_dims(x), keepdim=True).to(x.dtype)
    norm = torch.linalg.vector_norm(x, dim=channel_dims(x), keepdim=True)
    # Out of place: a sharded norm (a DTensor pending its reduction) cannot be squared in place.
    return norm.square().div_(x[0].numel())


def channel_mean(x: torch.Tensor) -> torch.Tensor:
    """mean(x) per output channel (dim 0), shaped (C, 1, 1, ...)."""
    if torch.compiler.is_compiling():
        return _traced_mean(x, channel_dims(x), keepdim=True).to(x.dtype)
    return x.mean(dim=channel_dims(x), keepdim=True)
