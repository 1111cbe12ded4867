"""The compiled fast path: :func:`~adamkit.core.execute.update_one` traced by ``torch.compile``
for many tensors at a time, so that each tensor costs one fused pass over memory.

* Step-dependent numbers (lr, bias corrections, schedules, decay factors, the keys of the
  stochastic rounding) are passed as 1-D tensors, so changing them never recompiles; only
  structural values (flags, modes, codecs) are compiled in.
* Rules that do not look at shapes see 1-D views, compiled with dynamic sizes, so one graph
  serves every tensor; calls are padded with small dummy tensors to a fixed number of jobs, so
  one graph serves every call.
* Large tensors go ``CHUNK`` jobs to a call (``REDUCING_CHUNK`` for rules with reductions):
  a job is a tensor, or, for state stored in blocks (8-bit), a run of its whole blocks viewed
  as rows (:mod:`adamkit.core.jobs`), whose random bits are numbered from the run's first
  element, which the call passes with the parameter's index. Small
  ones (at most ``MERGE_NUMEL`` elements) are merged when the rule allows it (element-wise, or
  coupled only through per-tensor reductions, which then run per segment): their state lives in
  flat buffers, parameters and gradients are copied in and out with batched copies, and one
  compiled job updates them all. The eager path merges the same tensors with the same
  :class:`Merged` calls, stepped by :meth:`Merged.step_eagerly` (:mod:`adamkit.core.eager`).
* Each configuration is compiled once per process (:mod:`adamkit.core.graphs`), with its own
  code object, so Dynamo's per-function cache never evicts one configuration for another; the
  first call runs on the dummies, so a compiler failure shows before any real parameter or
  state is touched, and then the eager path is used. A call object goes through Dynamo once,
  then calls the graph that served it directly. A configuration's trace is stored on disk, so
  a later process loads it instead of tracing again (:mod:`adamkit.core.stored_traces`).
* A group's arrangement (:class:`Arrangement`) is built once and reused by
  :class:`adamkit.core.program.GroupProgram` while the group's parameters, their storage and
  state stay the same, so a steady step costs a few list operations per tensor in Python.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from adamkit.core import pieces
from adamkit.core.execute import Plan, real_view, update_one
from adamkit.core.graphs import CONFIGURATIONS, Configuration, Graph
from adamkit.core.jobs import Job, jobs_of, shared_split_lengths, unaliased
from adamkit.core.reduce import Segments

# Jobs per compiled call: more jobs, fewer calls (~20 us each) but a longer first compile
# (Dynamo traces every job), which grows faster for rules with reductions; 4 and 2 keep a
# configuration's compile under a second with a warm on-disk cache.
# ADAMKIT_COMPILE_CHUNK overrides both.
CHUNK = int(os.environ.get("ADAMKIT_COMPILE_CHUNK", "4"))
REDUCING_CHUNK = int(os.environ.get("ADAMKIT_COMPILE_CHUNK", "2"))
# State stored in blocks (8-bit) is decoded and encoded by select chains, which cost most of a
# configuration's compile: one job per call (the calls of a tensor's runs cost ~20 us each).
BLOCK_CHUNK = int(os.environ.get("ADAMKIT_COMPILE_CHUNK", "1"))
MERGE_NUMEL = int(os.environ.get("ADAMKIT_MERGE_NUMEL", str(1 << 16)))
# ATen's concatenation splits across threads above this many elements (its grain size), which
# made one concatenation of a GPT-like model's 98 vectors (60k elements) three times as slow
# as three concatenations of a third each.
CAT_SERIAL_NUMEL = 1 << 15
# Merged calls whose per-tensor reductions run per segment: of any sizes, or all of one size.
SEGMENTED_KINDS = ("segmented", "uniform")
# Calls with tensors above LARGE_NUMEL elements recompute intermediates rather than keep them
# (``k["recompute"]``): see adamkit.core.pieces.LARGE_NUMEL.
LARGE_NUMEL = pieces.LARGE_NUMEL
# The innermost length of stand-ins (plus their index): inductor halves the vector width of a
# 16-bit loop whose size hint is below one vector (32 bfloat16 lanes with AVX-512), and the
# stand-ins are what it compiles on.
STAND_IN_LENGTH = 64


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


def static_key(static: Mapping[str, Any]) -> tuple:
    return tuple(sorted((name, repr(value)) for name, value in static.items()))


def worth_compiling(tensors: Sequence[torch.Tensor]) -> bool:
    """``backend="auto"`` compiles groups where the per-tensor Python overhead or the memory
    traffic of separate passes matters: at least 32 tensors or 2^18 elements (counted only
    when there are fewer tensors)."""
    return len(tensors) >= 32 or sum(t.numel() for t in tensors) >= 1 << 18


_AVAILABLE: list[bool] = []


def compiler_available() -> bool:
    """Whether ``torch.compile`` can be used here (inductor needs a C++ compiler on CPU)."""
    if not _AVAILABLE:
        compilers = ("c++", "g++", "gcc", "clang++", "cl")
        _AVAILABLE.append(hasattr(torch, "compile") and any(shutil.which(c) for c in compilers))
    return _AVAILABLE[0]


# ------------------------------------------------------------------------- calls of a step


def _job_numbers(jobs: Sequence[Job], device: torch.device) -> torch.Tensor:
    """The (index, first element) of each job of a call, as the compiled body reads them; the
    first element is numbered in the whole tensor (a sharded plan's local part starts at its
    ``first``)."""
    numbers = [[j.index, j.plan.first + j.start] for j in jobs]
    return torch.tensor(numbers, dtype=torch.int64, device=device)


class _Call:
    """A compiled call of a step: through Dynamo the first time (or when the configuration
    changed), then straight to the graph that served it (see :mod:`adamkit.core.graphs`)."""

    indices: torch.Tensor
    recompute = False
    config: Configuration | None = None  # the configuration of the last call
    numbers: tuple | None = None  # the step's static values and names it was chosen for
    graph: Graph | None = None

    def invoke(self, config: Configuration, tensors: list[torch.Tensor], scalars: Any) -> None:
        if config is self.config and self.graph is not None:
            self.graph(tensors, scalars, self.indices)
        else:
            self.graph = config.through_dynamo(tensors, scalars, self.indices)
            self.config = config


class Chunk(_Call):
    """Up to ``CHUNK`` jobs updated by one compiled call (padded with dummies)."""

    kind = "chunk"

    def __init__(self, jobs: list[Job], dummies: list[Job]) -> None:
        self.jobs = jobs
        self.plans = _distinct([job.plan for job in jobs])
        self.recompute = any(job.numel > LARGE_NUMEL for job in jobs)
        self.tensors: list[torch.Tensor | None] = []
        self.grad_at: list[int] = []
        for job in jobs:
            self.tensors += job.views
            self.grad_at.append(len(self.tensors))
            self.tensors.append(None)  # this step's gradient; no reference kept between steps
        for dummy in dummies[len(jobs) :]:
            self.tensors += dummy.tensors(real_view(dummy.plan.p.grad))  # type: ignore[arg-type]
        padded = jobs + dummies[len(jobs) :]
        self.indices = _job_numbers(padded, jobs[0].plan.p.device)

    def run(self, config: Configuration, scalars: Any) -> None:
        tensors = list(self.tensors)
        for at, job in zip(self.grad_at, self.jobs, strict=True):
            tensors[at] = job.grad_view(real_view(job.plan.p.grad))  # type: ignore[arg-type]
        self.invoke(config, tensors, scalars)  # type: ignore[arg-type]

    def fallback(self, rule: Any, k: Mapping[str, Any]) -> list[Plan]:
        """Where this call's configuration failed to compile: the jobs that are
        runs of a tensor are stepped here (the rest of the tensor may be stepped by other
        calls); the plans of whole jobs are returned, for the eager path."""
        whole = []
        for job in self.jobs:
            if job.stop is None:
                whole.append(job.plan)
            else:
                job.step_eagerly(rule, real_view(job.plan.p.grad), k)  # type: ignore[arg-type]
        return whole


def _distinct(plans: list[Plan]) -> list[Plan]:
    return list({id(plan): plan for plan in plans}.values())


class Merged(_Call):
    """Small tensors of one signature updated as one job on flat buffers.

    Their state moves into flat buffers for good (each state entry becomes a view of its
    buffer, so checkpoints and user code see ordinary tensors); parameters and gradients are
    copied in (batched copies) and parameters copied back after the compiled call.

    Exact for element-wise rules and codecs (:meth:`Plan.mergeable`), and, with ``segmented``,
    for rules whose only coupling between elements is a per-tensor reduction of
    :mod:`adamkit.core.reduce` (reduced per segment; a graph of its own, without padding; when
    the tensors all have one size, the ``"uniform"`` kind sums segments as rows).
    Stochastic rounding draws its random bits per flat buffer (keyed by the first tensor's
    index), so its bits differ from the per-tensor path's while keeping the same distribution.
    The buffers of the parameters and gradients cost 2 × element size per merged element.
    """

    def __init__(self, plans: list[Plan], dummies: list[Job], segmented: bool = False) -> None:
        self.plans = plans
        sizes = [plan.state_views[0].numel() for plan in plans]
        uniform = segmented and len(set(sizes)) == 1
        self.kind = "uniform" if uniform else "segmented" if segmented else "chunk"
        self.recompute = segmented  # a kept temporary would be as large as all of them
        self.params = [plan.p for plan in plans]
        self.complex = any(p.is_complex() for p in self.params)
        first = plans[0]
        device = first.p.device
        names = [*first.slot_names, *first.state_names]
        # (buffer, its views, the tensors copied in before and out after each call)
        self.copied: list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]] = []
        self.tensors: list[torch.Tensor] = []
        for j, name in enumerate(names):
            column = [plan.state_views[j] for plan in plans]
            if name in first.scalar_names:  # a per-tensor statistic: one value per segment
                buffer = torch.empty(len(plans), dtype=column[0].dtype, device=device)
                views = [buffer[i : i + 1].view(column[0].shape) for i in range(len(plans))]
            else:
                buffer = torch.empty(sum(sizes), dtype=column[0].dtype, device=device)
                views = list(buffer.split(sizes))
            if j >= len(first.slot_names) and name not in first.slot:
                torch._foreach_copy_(views, column)
                for plan, view in zip(plans, views, strict=True):
                    plan.rebind(name, view)
            else:
                self.copied.append((buffer, views, column))
            self.tensors.append(unaliased(buffer.view(-1)))
        grad = torch.empty(sum(sizes), dtype=first.slot["param"].dtype, device=device)
        shapes = [plan.slot["param"].shape for plan in plans]
        # Vectors are gathered by concatenations into their buffer (a per-tensor copy costs a
        # dispatch each), in runs that each run on one thread.
        self.vectors = not self.complex and all(len(shape) == 1 for shape in shapes)
        self.runs = serial_runs(sizes)
        self.grad = grad
        self.grad_views = [
            piece.view(shape) for piece, shape in zip(grad.split(sizes), shapes, strict=True)
        ]
        self.tensors.append(unaliased(grad.view(-1)))
        if segmented:
            counts = torch.tensor(sizes, device=device)
            ids = torch.repeat_interleave(torch.arange(len(sizes), device=device), counts)
            starts = counts.cumsum(0) - counts
            self.tensors += [ids, counts.to(first.exact), starts]
            dummies = []
        for dummy in dummies[1:]:
            self.tensors += dummy.tensors(real_view(dummy.plan.p.grad))  # type: ignore[arg-type]
        self.indices = _job_numbers([Job(first), *dummies[1:]], device)

    def run(self, config: Configuration, scalars: Any) -> None:
        self.copy_in()
        self.invoke(config, self.tensors, scalars)
        self.copy_out()

    def fallback(self, rule: Any, k: Mapping[str, Any]) -> list[Plan]:
        """Where the configuration failed to compile: the plans, for the eager path."""
        return self.plans

    def step_eagerly(self, rule: Any, k: Mapping[str, Any]) -> None:
        """The same job on the eager path: :func:`update_one` on the flat buffers, with the
        step's numbers as Python numbers."""
        first, tensors = self.plans[0], self.tensors
        segmented = self.kind in SEGMENTED_KINDS
        segments = Segments(*tensors[-3:], self.kind == "uniform") if segmented else None
        n_slot, n_state = len(first.slot_names), len(first.state_names)
        slot = dict(zip(first.slot_names, tensors[:n_slot], strict=True))
        state = dict(zip(first.state_names, tensors[n_slot : n_slot + n_state], strict=True))
        common = (first.codecs, first.pcodec, k, first.index, first.exact)
        self.copy_in()
        scalars = first.scalar_names if segments is not None else ()
        update_one(rule, slot, tensors[n_slot + n_state], state, *common, segments, scalars)
        self.copy_out()

    def copy_in(self) -> None:
        """Parameters and gradients (and state stored with them) into the flat buffers."""
        for buffer, views, sources in self.copied:
            self._gather(buffer, views, sources)
        grads = [p.grad for p in self.params]
        if self.complex:
            grads = [real_view(g) for g in grads]  # type: ignore[arg-type]
        self._gather(self.grad, self.grad_views, grads)  # type: ignore[arg-type]

    def copy_out(self) -> None:
        """The updated parameters (and state stored with them) back from the flat buffers."""
        for _, views, sources in self.copied:
            torch._foreach_copy_(sources, views)

    def _gather(
        self, buffer: torch.Tensor, views: list[torch.Tensor], sources: list[torch.Tensor]
    ) -> None:
        """Copy ``sources`` into ``buffer``, whose ``views`` they fill in order: vectors (whose
        gradients have their shapes) by concatenations, each short enough to run on one thread;
        other tensors by one copy each."""
        if not self.vectors:
            torch._foreach_copy_(views, sources)
            return
        for first, end, start, stop in self.runs:
            torch.cat(sources[first:end], out=buffer[start:stop])


def serial_runs(sizes: list[int]) -> list[tuple[int, int, int, int]]:
    """Consecutive tensors grouped into runs of at most ``CAT_SERIAL_NUMEL`` elements (or one
    larger tensor): (first, end) of the tensors and (start, end) of their elements."""
    runs: list[tuple[int, int, int, int]] = []
    first = start = total = 0
    for i, size in enumerate(sizes):
        if total and total + size > CAT_SERIAL_NUMEL:
            runs.append((first, i, start, start + total))
            first, start, total = i, start + total, 0
        total += size
    runs.append((first, len(sizes), start, start + total))
    return runs


Call = Chunk | Merged


class Bucket:
    """Compiled calls of jobs of one signature: merged small tensors, or chunks of jobs."""

    def __init__(self, first: Job, calls: list[Call]) -> None:
        self.first, self.calls = first, calls


def chunks(jobs: list[Job], dummies: list[Job]) -> list[Call]:
    """Jobs in calls as long as the padding ``dummies``; huge ones last, so that they share
    calls (which recompute) with few others."""
    jobs = sorted(jobs, key=lambda job: job.numel > LARGE_NUMEL)
    size = len(dummies)
    return [Chunk(jobs[start : start + size], dummies) for start in range(0, len(jobs), size)]


def by_signature(plans: list[Plan]) -> tuple[list[list[Plan]], list[Plan]]:
    """The plans grouped by signature, and those without one (one by one on the eager path)."""
    groups: dict[tuple, list[Plan]] = {}
    alone: list[Plan] = []
    for plan in plans:
        if plan.signature is None:
            alone.append(plan)
        else:
            groups.setdefault(plan.signature, []).append(plan)
    return list(groups.values()), alone


def split_small(plans: list[Plan], merge: str | None) -> tuple[list[list[Plan]], list[Plan]]:
    """The plans of one signature to merge (``merge`` from :func:`bucket_merge`), as the groups
    that each make one merged call: those of at most ``MERGE_NUMEL`` elements, when there are
    at least two; and the others. A segmented merge takes every size shared by at least two
    tensors as a group of its own (summed as rows: :class:`Segments` ``uniform``) and the
    other sizes together."""
    scalars = merge == "segmented"
    small = (
        [p for p in plans if p.mergeable(scalars) and p.state_views[0].numel() <= MERGE_NUMEL]
        if merge
        else []
    )
    if len(small) < 2:
        return [], list(plans)
    merged = set(map(id, small))
    rest = [p for p in plans if id(p) not in merged]
    if merge != "segmented":
        return [small], rest
    by_size: dict[int, list[Plan]] = {}
    for plan in small:
        by_size.setdefault(plan.state_views[0].numel(), []).append(plan)
    groups = [group for group in by_size.values() if len(group) > 1]
    mixed = [group[0] for group in by_size.values() if len(group) == 1]
    if len(mixed) > 1:
        groups.append(mixed)
    else:
        rest += mixed
    return groups, rest


def bucket_merge(opt: Any, plans: list[Plan]) -> str | None:
    """How the plans of one signature may be merged (see :func:`merge_kind`), if every one of
    them allows it (sharded ones, never merged, aside: :func:`split_small` leaves them out)."""
    kind = merge_kind(opt, plans[0].slot["param"].ndim)
    scalars = kind == "segmented"
    mergeable = all(p.mergeable(scalars) for p in plans if not p.sharded)
    return kind if kind and mergeable else None


def elementwise_on(opt: Any, ndim: int) -> bool:
    """Whether the optimizer's rule is element-wise on tensors of ``ndim`` dimensions (always,
    or on vectors for ``vectors_elementwise``)."""
    return opt.elementwise or (ndim == 1 and opt.vectors_elementwise)


def merge_kind(opt: Any, ndim: int) -> str | None:
    """How the optimizer's small tensors of ``ndim`` dimensions may be merged: its rule is
    element-wise (:func:`elementwise_on`), or couples elements only through per-tensor
    reductions (segmented), or neither."""
    if elementwise_on(opt, ndim):
        return "elementwise"
    return "segmented" if opt.segmentable else None


class Arrangement:
    """A set of plans arranged for the compiled path: buckets of calls by signature, and the
    plans the compiled path cannot take (left for the eager path).

    Small tensors are merged where the rule and their storage allow it; the others are cut into
    jobs (:func:`adamkit.core.jobs.jobs_of`: whole, or runs of blocks), which go into chunks by
    their signature. A tensor with a job of a signature that cannot be compiled (no stand-in
    has it) is left whole to the eager path."""

    def __init__(self, path: CompiledPath, opt: Any, plans: list[Plan], hyper: Any) -> None:
        buckets, self.eager = by_signature(plans)
        self.buckets: list[Bucket] = []
        jobs: dict[tuple, list[Job]] = {}
        merges = [bucket_merge(opt, bucket) for bucket in buckets]
        cuts = [split_small(bucket, merge) for bucket, merge in zip(buckets, merges, strict=True)]
        shared = shared_split_lengths(plan for _, large in cuts for plan in large)
        for bucket, merge, (groups, large) in zip(buckets, merges, cuts, strict=True):
            pads = path.dummies(opt, Job(bucket[0]), hyper, merge) if groups else None
            if groups and pads is None:
                large = bucket
            elif groups:
                segmented = merge == "segmented"
                merged = [Merged(g, [] if segmented else pads, segmented) for g in groups]  # type: ignore[arg-type]
                self.buckets.append(Bucket(Job(bucket[0]), merged))  # type: ignore[arg-type]
            for plan in large:
                elementwise = elementwise_on(opt, plan.slot["param"].ndim)
                if plan.sharded and not elementwise:  # (its reductions span every rank)
                    self.eager.append(plan)
                    continue
                cut = jobs_of(plan, elementwise, shared=shared)
                if any(path.dummies(opt, job, hyper, None) is None for job in cut):
                    self.eager.append(plan)
                    continue
                for job in cut:
                    jobs.setdefault(job.signature, []).append(job)  # type: ignore[arg-type]
        for alike in jobs.values():
            pads = path.dummies(opt, alike[0], hyper, None)
            self.buckets.append(Bucket(alike[0], chunks(alike, pads)))  # type: ignore[arg-type]


class CompiledPath:
    """One optimizer's compiled functions, the dummy tensors that pad its calls and the trial
    calls (on stand-ins) that each function is first compiled and tried on."""

    def __init__(self) -> None:
        self.pads: dict[tuple, list[Job] | None] = {}
        self.trials: dict[tuple[tuple, str], Call] = {}

    def arrange(self, opt: Any, plans: list[Plan], hyper: Any) -> Arrangement:
        return Arrangement(self, opt, plans, hyper)

    def run(self, opt: Any, work: Arrangement, k: Mapping[str, Any]) -> list[Plan]:
        """Step what the compiled path can take; return the plans left for the eager path."""
        leftover = list(work.eager)
        static, floats, ints = split_scalars(k)
        numbers = (static_key(static), tuple(floats), tuple(ints))
        scalars: dict[tuple, Any] = {}
        for bucket in work.buckets:
            first = bucket.first
            place = (first.plan.exact, first.plan.p.device)
            if place not in scalars:
                scalars[place] = scalar_tensors(k, floats, ints, *place)
            for call in bucket.calls:
                if call.numbers == numbers and call.config is not None:
                    config: Configuration | None = call.config  # as on the last step
                else:
                    config = self._configuration(opt, first, call, static, numbers, scalars[place])
                    call.numbers = numbers
                if config is None:
                    leftover.extend(call.fallback(opt.rule, k))
                else:
                    call.run(config, scalars[place])
        return leftover

    def _configuration(
        self,
        opt: Any,
        job: Job,
        call: Call,
        static: dict[str, Any],
        numbers: tuple[tuple, tuple[str, ...], tuple[str, ...]],
        scalars: Any,
    ) -> Configuration | None:
        kind, first = call.kind, job.plan
        trial = self.trials.get((job.signature, kind))  # type: ignore[arg-type]
        if trial is None:
            return None
        bindings = {
            "RULE": opt.rule,
            "CODECS": first.codecs,
            "PCODEC": first.pcodec,
            "STATIC": {**static, "recompute": call.recompute},
            "FLOAT_NAMES": numbers[1],
            "INT_NAMES": numbers[2],
            "SLOT_NAMES": first.slot_names,
            "STATE_NAMES": first.state_names,
            "EXACT": first.exact,
            "SEGMENTED": kind in SEGMENTED_KINDS,
            "UNIFORM": kind == "uniform",
            "SCALAR_NAMES": first.scalar_names if kind in SEGMENTED_KINDS else (),
            "SPLIT": job.split,
            "SPLIT_NAMES": job.split_names,
            "ROWS": job.block if job.rows else 0,
            # 8-bit state of a rule with reductions: decoded values recomputed, never kept
            "INLINE_DECODED": job.block > 1 and not opt.elementwise,
        }
        key = (type(opt), job.signature, kind, call.recompute, *numbers)
        return CONFIGURATIONS.get(key, bindings, lambda config: trial.run(config, scalars))

    def dummies(self, opt: Any, like: Job, hyper: Any, merge: str | None) -> list[Job] | None:
        """The stand-ins that pad chunk calls of ``like``'s signature, as many as a chunk's
        jobs: ``BLOCK_CHUNK`` for state stored in blocks, else ``CHUNK`` for element-wise
        rules and ``REDUCING_CHUNK`` for the others. Made once
        per signature, with the trial calls of the kinds of call it needs."""
        sig = like.signature
        if sig not in self.pads:
            size = BLOCK_CHUNK if like.block > 1 else CHUNK if opt.elementwise else REDUCING_CHUNK
            plans = self.stand_ins(opt, like, hyper, size)
            pads = self.pads[sig] = None if plans is None else [_like(p, like) for p in plans]
            if pads is not None:
                self.trials[sig, "chunk"] = Chunk(pads[:1], pads)
        pads = self.pads[sig]
        if pads is not None and merge == "segmented" and (sig, "segmented") not in self.trials:
            for kind, alike in (("segmented", False), ("uniform", True)):
                pair = self.stand_ins(opt, like, hyper, 2, alike)
                self.trials[sig, kind] = Merged(pair, [], segmented=True)  # type: ignore[arg-type]
        return pads

    @staticmethod
    def stand_ins(
        opt: Any, like: Job, hyper: Any, count: int, alike: bool = False
    ) -> list[Plan] | None:
        """``count`` small tensors with fresh state, the same layout and codecs as ``like``
        (to pad calls and to try the compiler on); their sizes differ so that Dynamo does not
        tie them together, or, with ``alike``, are equal (a uniform segmented merge). Rows
        get whole blocks, at least two; split jobs whole pieces, at least two a row (one if
        ``like``'s rows are one), and two blocks or more if ``like`` has (else one, all
        alike); other jobs of block-coded state get one block if ``like`` has one, else
        two: Dynamo specialises a size of one, so a graph compiled on one block serves only
        jobs of one block. For the same reason a leading dimension longer than a block is
        longer than a block in the stand-ins too (the block maxima of a per-row state have two
        entries or more). None where no such stand-in has the same signature."""
        view = like.plan.slot["param"]
        out = []
        for j in range(count):
            step = 0 if alike or (like.split and like.numel <= like.block) else j
            if like.rows or like.split:
                one = like.split and view.shape[-1] == like.split  # as many pieces a row
                length = (like.split or like.block) * (1 if one else 2 + step)
            else:  # blocks: one if ``like`` has one, else two (Dynamo specialises a size 1)
                more = like.block if 1 < like.block < like.numel else 0
                length = STAND_IN_LENGTH + step + more
            leading = [2 + step, *(2,) * (view.ndim - 2)][: view.ndim - 1]
            if like.split and like.numel > like.block:  # two blocks or more, as ``like``
                pieces_a_block = like.block // like.split  # (segments: as many more rows)
                if leading:
                    leading[0] *= pieces_a_block
                else:
                    length *= pieces_a_block
            if like.block > 1:  # (see above: per-row state in blocks)
                leading = [
                    n + like.block * (d > like.block)
                    for n, d in zip(leading, view.shape[:-1], strict=True)
                ]
            shape = (*leading, length) if opt.shaped else (length,)
            p = torch.ones(shape, dtype=like.plan.p.dtype, device=view.device, requires_grad=True)
            p.grad = torch.ones_like(p)
            plan = opt.standalone_plan(p, (1 << 30) + j, hyper, like.plan)
            if plan.signature is None or _like(plan, like).signature != like.signature:
                return None
            out.append(plan)
        return out


def _like(plan: Plan, like: Job) -> Job:
    """A stand-in plan as one job of ``like``'s layout."""
    if like.rows:
        return Job(plan, 0, plan.slot["param"].numel(), rows=True)
    return Job(plan, split=like.split)
