"""Jobs: the unit of a compiled call, one planned tensor whole or a run of its blocks.

A :class:`Job` holds the views that one :func:`~adamkit.core.execute.update_one` call reads and
writes: a parameter's slot and state tensors, whole (1-D for rules that do not read shapes), or,
where a buffer is stored in blocks (8-bit codes with one scale per 256 elements), a run of whole
blocks viewed as (blocks, 256) rows, with the matching run of each per-block tensor, or the last
job of the tensor (its last, shorter block with the whole block or two before it). Its
``start`` numbers its first element in the whole tensor, so that its stochastic rounding draws
the bits of those elements (:func:`adamkit.core.rounding.random_bits`).

Why rows: a compiled graph sees sizes as symbols. A 1-D length that the codec cuts into
(blocks, 256) views is not known to be whole blocks, so inductor indexes every element
modulo the runs, element by element (unvectorized loads). Why runs: the compiled encoding
keeps each new value between the block maxima and the codes, a tensor-sized temporary; in
runs of ``RUN`` elements it is a run's. Runs need an element-wise rule (a per-tensor reduction
spans every run). On one 25M tensor (``adamkit speed --state-dtype int8 --sets large``), 8-bit
AdamW stepped in 403 ms holding 13.1 extra bytes per parameter before, in 105 ms holding 0.04
in runs of rows, one job per call (``compiled.BLOCK_CHUNK``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from adamkit.core.codecs import SEGMENT_MIN
from adamkit.core.execute import Plan, Rule, update_one

# Elements per run of a block-coded tensor (a multiple of every block) on the compiled path
# (the eager path cuts pieces: execute.piece_layout). A run's call holds two float32 rows
# temporaries (8 bytes per element of the run: 0.17 bytes per parameter of a 25M tensor) and
# costs some 40 us in Python. With 2^17, 8-bit AdamW on the GPT-like set took 74.7-76.6 ms,
# with 2^19 70.3 ms (``adamkit speed --state-dtype int8 --sets large,gpt --optimizers adamw``);
# on one 25M tensor 70.6 and 69.6 ms.
RUN = 1 << 19


class Job:
    """Elements ``start`` to ``stop`` of a planned tensor as one job (the whole tensor when
    ``stop`` is None), as (blocks, block) rows with ``rows``; the whole tensor with its last
    dimension split into pieces of ``split`` elements (0: not split), whole blocks or
    segments of one (:func:`split_length`)."""

    __slots__ = (
        "block",
        "index",
        "numel",
        "plan",
        "rows",
        "signature",
        "split",
        "start",
        "stop",
        "views",
    )

    def __init__(
        self,
        plan: Plan,
        start: int = 0,
        stop: int | None = None,
        rows: bool = False,
        split: int = 0,
    ) -> None:
        self.plan, self.index, self.start, self.stop, self.rows, self.split = (
            plan,
            plan.index,
            start,
            stop,
            rows,
            split,
        )
        self.block = plan.block or 1
        if stop is None:
            views, self.numel = plan.state_views, plan.slot["param"].numel()
            self.signature = plan.signature
            if split:
                views = [self._last_split(v) for v in views]
                # (rows of one piece: a dimension of 1, a graph of its own; see run_bounds)
                one = ("one piece a row",) if plan.slot["param"].shape[-1] == split else ()
                self.signature = (*plan.signature, "split", split, *one)  # type: ignore[misc]
            self.views = list(map(unaliased, views))
            self._mark_one_block()
            return
        per_block = plan.per_block_names
        total = plan.slot["param"].numel()
        names = (*plan.slot_names, *plan.state_names)
        self.views = []
        for name, view in zip(names, plan.state_views, strict=True):
            if view.numel() == total:
                # (the block is made a constant of the graph by the chunk body: graphs._rows)
                self.views.append(self._shaped(view.reshape(-1)[start:stop]))
            elif name in per_block:
                self.views.append(unaliased(view[start // self.block : -(-stop // self.block)]))
            else:
                raise ValueError(f"state {name!r} of {tuple(view.shape)} does not split in runs")
        self.numel = stop - start
        self.signature = (*plan.signature, "rows") if rows else plan.signature  # type: ignore[misc]
        self._mark_one_block()

    def _mark_one_block(self) -> None:
        """The per-block tensors of one block (one block maxima value) are named in the
        signature: Dynamo makes a size of 1 a constant, so such a job cannot share a graph
        with jobs whose tensors have more blocks (it gets a configuration, compiled once, of
        its own). A short last block; Adam-mini's per-row v of 256 rows or fewer."""
        plan = self.plan
        names = (*plan.slot_names, *plan.state_names)
        ones = tuple(
            name
            for name, view in zip(names, self.views, strict=True)
            if name in plan.per_block_names and view.numel() == 1
        )
        if ones:
            self.signature = (*self.signature, "one block", ones)  # type: ignore[misc]

    def _shaped(self, flat: torch.Tensor) -> torch.Tensor:
        """A run's elements, as rows of one block with ``rows``."""
        return unaliased(flat.view(-1, self.block) if self.rows else flat)

    def _last_split(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor of the parameter's shape with its last dimension split into pieces of
        ``split`` elements."""
        shape = self.plan.slot["param"].shape
        if t.shape != shape:
            return t
        return t.view(*shape[:-1], shape[-1] // self.split, self.split)

    @property
    def split_names(self) -> frozenset[str]:
        """The slot and state tensors this job hands over with their last dimension split
        (those of the parameter's shape; the gradient too)."""
        if not self.split:
            return frozenset()
        plan, shape = self.plan, self.plan.slot["param"].shape
        names = (*plan.slot_names, *plan.state_names)
        return frozenset(
            n for n, v in zip(names, plan.state_views, strict=True) if v.shape == shape
        )

    def grad_view(self, grad: torch.Tensor) -> torch.Tensor:
        """This job's part of the (real-viewed) gradient, shaped as its other tensors."""
        if self.stop is None:
            whole = self.plan.grad_view(grad)
            return unaliased(self._last_split(whole) if self.split else whole)
        return self._shaped(grad.reshape(-1)[self.start : self.stop])

    def tensors(self, grad: torch.Tensor) -> list[torch.Tensor]:
        """The job's tensors as a compiled call reads them: stored tensors, then the gradient."""
        return [*self.views, self.grad_view(grad)]

    def step_eagerly(self, rule: Rule, grad: torch.Tensor, k: Mapping[str, Any]) -> None:
        """The job on the eager path: :func:`update_one` on its views."""
        plan = self.plan
        n_slot = len(plan.slot_names)
        slot = dict(zip(plan.slot_names, self.views[:n_slot], strict=True))
        state = dict(zip(plan.state_names, self.views[n_slot:], strict=True))
        common = (plan.codecs, plan.pcodec, k, plan.index, plan.exact)
        update_one(rule, slot, self.grad_view(grad), state, *common, offset=self.start)


def unaliased(t: torch.Tensor) -> torch.Tensor:
    """``t`` (same storage, sizes and strides) as a tensor that is not a view of another.

    Dynamo guards a view on its base's sizes and strides too. Those differ between the
    stand-ins a configuration is first compiled on and real tensors (8-bit codes of whole
    blocks are a view of their (blocks, 256) encoding; a run of rows is a view of the flat
    tensor), and the guard failed on every kind of job, so each configuration was compiled
    again for real tensors (8-bit AdamW on the GPT-like set: six graphs for two
    configurations, with the sizes of 1 of :func:`run_bounds`). Every tensor of a compiled
    call is handed over this way."""
    return t.detach()


def jobs_of(
    plan: Plan,
    elementwise: bool,
    run: int | None = None,
    shared: Mapping[int, Mapping[int, int]] | None = None,
) -> list[Job]:
    """The jobs of a planned tensor: itself, unless it is stored in blocks. Then, shaped (a
    rule that reads shapes, not :attr:`Plan.flat`), with its last dimension split into whole
    blocks or segments of one where it can be (:func:`split_length`), in the length that
    ``shared`` maps its own to (:func:`shared_split_lengths`); else, for an ``elementwise``
    rule, runs of whole blocks as rows (:func:`run_bounds`) and a last job, 1-D; for another
    rule, the tensor as rows if it is two or more whole blocks (its reductions span the
    tensor)."""
    block = plan.block
    if block in (None, 1):
        return [Job(plan)]
    if not plan.flat:
        own = split_length(plan, block)
        return [Job(plan, split=(shared or {}).get(block, {}).get(own, own))]
    if not _splits(plan, block):  # type: ignore[arg-type]
        return [Job(plan)]
    n = plan.slot["param"].numel()
    if not elementwise:
        # (one block is not rows: see run_bounds)
        return [Job(plan, 0, n, rows=True)] if n % block == 0 and n > block else [Job(plan)]
    bounds, rest = run_bounds(n, block, RUN if run is None else run)  # type: ignore[arg-type]
    runs = [Job(plan, a, b, rows=True) for a, b in itertools.pairwise(bounds)]
    return runs + ([Job(plan, rest, n)] if rest < n else [])


def run_bounds(n: int, block: int, run: int) -> tuple[list[int], int]:
    """How an element-wise job cuts ``n`` elements: the bounds of runs of at most about
    ``run`` elements of two or more whole blocks (rows), and where the last job, 1-D, starts.

    Dynamo makes a size of 1 a constant of the graph it traces, so a run of one row, or a last
    job of one block, needs a graph of its own, which costs a compile: a configuration of its
    own (:meth:`Job._mark_one_block`), or, before those existed, a second graph of the
    configuration (8-bit AdamW on the GPT-like set compiled four graphs for two
    configurations, adding 20 s to its first step). So no run is one row (a last run of one
    block joins the run before), and the last job takes a tensor's last, shorter block with
    the whole block before it (two blocks before it if one would be left alone): it has one
    block only in a tensor of one block."""
    if n <= block:
        return [0], 0
    whole = n - n % block
    rows_end = whole if whole == n else whole - block
    if rows_end == block:
        rows_end = 0
    bounds = [*range(0, rows_end, run), rows_end] if rows_end else [0]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == block:
        del bounds[-2]
    return bounds, rows_end


def split_length(plan: Plan, block: int) -> int:
    """How a shaped plan's last dimension of C elements is split for the compiled call (0: not
    split): where every full-size tensor has the parameter's shape, into whole blocks if C is
    whole blocks, else into segments of h = gcd(C, ``block``) elements if h is at least
    ``SEGMENT_MIN``. The chunk body joins them again for the rule (a guard makes the piece's
    length a constant of the graph), and the codec cuts the last dimension the same way
    (:func:`adamkit.core.codecs.piece_length`). A segment starts at a multiple of h, which
    divides the block, so it never straddles two blocks: inductor then indexes the block
    maxima by loop counters, once per block or segment, not by a division of each element's
    number (what a size symbol leaves it; unvectorized). 8-bit Stable_Adam on the GPT-like set
    (rows of 384) stepped in 70.7 ms split, 297.6 unsplit (``adamkit speed --state-dtype int8
    --sets gpt``)."""
    shape = plan.slot["param"].shape
    n = shape.numel()
    if not (
        len(shape) >= 1
        and all(t.shape == shape for t in plan.slot.values())
        and all(t.shape == shape for t in plan.stored.values() if t.numel() == n)
    ):
        return 0
    piece = math.gcd(shape[-1], block)
    return piece if piece == block or piece >= SEGMENT_MIN else 0


def shared_split_lengths(plans: Iterable[Plan]) -> dict[int, dict[int, int]]:
    """For each block length, the length in which a shaped plan stored in blocks of it is
    split, by its own split length (:func:`split_length`): going up from the shortest of the
    plans' lengths, a length at most twice the last one kept is cut in that one, a longer one
    is kept.

    A split length is a constant of the graph, so each length is a configuration of its own,
    compiled once. On the GPT-like set (last dimensions of 384 and 1536: segments of 128, and
    whole blocks), 8-bit Adam-mini's first step compiled four configurations in 27.4 s, and
    two in 14.3 s with one length (Adam_AWD: 29.5 s, 16.2 s; ``adamkit speed --state-dtype
    int8 --sets gpt`` with an empty inductor cache). A tensor of whole blocks then has its
    segment maxima found in a pass of their own (rows of one block are encoded row by row,
    each in cache), so the set's steps of Adam_AWD, Adam_GC and Stable_Adam took 1-6%
    longer (Adam-mini's 2-5% shorter). Shorter segments cost more per step and save no more
    compile time, so no tensor's segments are more than halved: one odd tensor of segments of 32
    does not cut the others of its group into eighths of blocks."""
    lengths: dict[int, set[int]] = {}
    for plan in plans:
        block = plan.block
        if block in (None, 1) or plan.flat:
            continue
        split = split_length(plan, block)  # type: ignore[arg-type]
        if split:
            lengths.setdefault(block, set()).add(split)  # type: ignore[arg-type]
    return {block: _halving_at_most(splits) for block, splits in lengths.items()}


def _halving_at_most(lengths: Iterable[int]) -> dict[int, int]:
    """Each of ``lengths`` (divisors of one block) mapped to the last kept length, going up
    from the shortest, where that divides it and is at least its half; kept otherwise."""
    chosen: dict[int, int] = {}
    kept = 0
    for length in sorted(lengths):
        if not (kept and length % kept == 0 and 2 * kept >= length):
            kept = length
        chosen[length] = kept
    return chosen


def _splits(plan: Plan, block: int) -> bool:
    """Whether every stored tensor is the parameter's size or one of a block codec's per-block
    tensors (one value per block), so that runs of blocks may be cut out of each."""
    n = plan.slot["param"].numel()
    per_block = plan.per_block_names
    blocks = -(-n // block)
    return all(
        t.numel() == n or (name in per_block and t.numel() == blocks)
        for name, t in plan.stored.items()
    ) and all(t.numel() == n for t in plan.slot.values())
