"""Jobs: the unit of a compiled call, one planned tensor whole or a run of its blocks.

A :class:`Job` holds the views that one :func:`~adamkit.core.execute.update_one` call reads and
writes: a parameter's slot and state tensors, whole (1-D for rules that do not read shapes), or,
where a buffer is stored in blocks (8-bit codes with one scale per 256 elements), a run of whole
blocks viewed as (blocks, 256) rows, with the matching run of each per-block tensor, or the last,
shorter block. Its ``start`` numbers its first element in the whole tensor, so that its
stochastic rounding draws the bits of those elements (:func:`adamkit.core.rounding.random_bits`).

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

from collections.abc import Mapping
from typing import Any

import torch

from adamkit.core.execute import Plan, Rule, update_one

# Elements per run of a block-coded tensor (a multiple of every block) on the compiled path
# (the eager path cuts pieces: execute.piece_layout).
RUN = 1 << 17


class Job:
    """Elements ``start`` to ``stop`` of a planned tensor as one job (the whole tensor when
    ``stop`` is None), as (blocks, block) rows with ``rows``; the whole tensor with its last
    dimension split into blocks with ``split`` (:func:`shaped_in_blocks`)."""

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
        split: bool = False,
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
            self.views, self.numel = plan.state_views, plan.slot["param"].numel()
            self.signature = plan.signature
            if split:
                self.views = [self._last_split(v) for v in self.views]
                self.signature = (*plan.signature, "split")  # type: ignore[misc]
            return
        per_block = plan.per_block_names
        total = plan.slot["param"].numel()
        names = (*plan.slot_names, *plan.state_names)
        self.views = []
        for name, view in zip(names, plan.state_views, strict=True):
            if view.numel() == total:
                self.views.append(self._shaped(view.reshape(-1)[start:stop]))
            elif name in per_block:
                self.views.append(view[start // self.block : -(-stop // self.block)])
            else:
                raise ValueError(f"state {name!r} of {tuple(view.shape)} does not split in runs")
        self.numel = stop - start
        self.signature = (*plan.signature, "rows") if rows else plan.signature  # type: ignore[misc]

    def _shaped(self, flat: torch.Tensor) -> torch.Tensor:
        return flat.view(-1, self.block) if self.rows else flat

    def _last_split(self, t: torch.Tensor) -> torch.Tensor:
        """A tensor of the parameter's shape with its last dimension split into blocks."""
        shape = self.plan.slot["param"].shape
        if t.shape != shape:
            return t
        return t.view(*shape[:-1], shape[-1] // self.block, self.block)

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
            return self._last_split(whole) if self.split else whole
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


def jobs_of(plan: Plan, elementwise: bool, run: int | None = None) -> list[Job]:
    """The jobs of a planned tensor: itself, unless it is stored in blocks. Then, shaped (a
    rule that reads shapes, not :attr:`Plan.flat`), with its last dimension split into
    blocks where it is whole blocks (:func:`shaped_in_blocks`); else, for an ``elementwise``
    rule, runs of at most ``run`` (``RUN``) elements of whole blocks as rows and the last,
    shorter block; for another rule, the tensor as rows if it is whole blocks (its reductions
    span the tensor)."""
    block = plan.block
    if block in (None, 1):
        return [Job(plan)]
    if not plan.flat:
        return [Job(plan, split=shaped_in_blocks(plan, block))]
    if not _splits(plan, block):  # type: ignore[arg-type]
        return [Job(plan)]
    n = plan.slot["param"].numel()
    whole = n - n % block
    if not elementwise:
        return [Job(plan, 0, n, rows=True)] if whole == n else [Job(plan)]
    run = RUN if run is None else run
    runs = [Job(plan, s, min(s + run, whole), rows=True) for s in range(0, whole, run)]
    return runs + ([Job(plan, whole, n)] if whole < n else [])


def shaped_in_blocks(plan: Plan, block: int) -> bool:
    """Whether a shaped plan's last dimension is whole blocks and every full-size tensor has
    the parameter's shape: the compiled call then takes them with that dimension split as
    (…, blocks, ``block``), which the chunk body joins again for the rule. Inductor then sees
    that each row of the tensor is whole blocks and indexes the block maxima by loop
    counters, not by a division per element (what a size symbol leaves it)."""
    shape = plan.slot["param"].shape
    n = shape.numel()
    return (
        len(shape) >= 1
        and shape[-1] % block == 0
        and all(t.shape == shape for t in plan.slot.values())
        and all(t.shape == shape for t in plan.stored.values() if t.numel() == n)
    )


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
