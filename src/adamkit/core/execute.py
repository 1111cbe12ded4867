"""Running a rule on one tensor: :func:`update_one` (decode the buffers, prepare the gradient,
run the rule, round the results into storage) and the :class:`Plan` of a parameter.

:func:`update_one` is the readable reference (the eager path runs it per tensor) and the code
that ``torch.compile`` traces for the fast path (:mod:`adamkit.core.compiled`). Everything
decided per parameter (codecs, compute dtype, views, the signature of tensors that can share a
compiled graph) is planned once and reused while the parameter's storage and state tensors stay
the same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from adamkit.core import pieces, reduce, sharding
from adamkit.core.codecs import Plain
from adamkit.core.pieces import in_numbered_pieces, numbered_pieces
from adamkit.core.precision import Codec
from adamkit.core.reduce import PLAIN_TYPES, Segments
from adamkit.core.rounding import Offset, stream_key
from adamkit.core.sharding import is_dtensor, local_part, local_shards, row_shard_group

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
    segments: Segments | None = None,
    scalars: tuple[str, ...] = (),
    offset: Offset = 0,
    private: bool = False,
) -> dict[str, torch.Tensor]:
    """One tensor's step: decode, rule, encode. Shared by the eager and the compiled paths.
    Returns the new state values in the compute dtype.

    ``segments``: the tensor is a concatenation, whose per-tensor reductions are per segment;
    its per-tensor one-element state, ``scalars``, is then stored one value per segment, which
    the rule sees spread per element (and named in ``k["spread"]``) and which is read back from
    each segment's first element. ``offset``: the tensors are a piece of the parameter's,
    starting at this element (the stochastic rounding draws those elements' bits).
    ``private``: the rule works on copies of tensors stored in the compute dtype, so that a
    call that ends before its stores (:class:`adamkit.core.reduce.PendingTotalError`) changes nothing.
    """
    pc = _private(pcodec.load(slot, "param", exact), slot["param"], private)
    g = prepare_grad(grad, pc, k)
    s = {
        name: _private(codec.load(state, name, exact), state[name], private)
        for name, codec in codecs.items()
    }
    if segments is None:
        new_p = rule(pc, g, s, k)
    else:
        for name in scalars:
            s[name] = reduce.spread(s[name], segments)
        reduce.ACTIVE.append(segments)
        try:
            new_p = rule(pc, g, s, {**k, "spread": scalars})
        finally:
            reduce.ACTIVE.pop()
        for name in scalars:
            s[name] = reduce.first_of_each(s[name], segments)
    reduce.settle()
    store_state(codecs, state, s, k, index, offset)
    key = stream_key(k["rounding_seed"], index, PARAM_STREAM, k["t"]) if pcodec.random else 0
    pcodec.store(slot, "param", new_p, key, offset)
    return s


def _private(loaded: torch.Tensor, stored: torch.Tensor, private: bool) -> torch.Tensor:
    return loaded.clone() if private and loaded is stored else loaded


def store_state(
    codecs: Mapping[str, Codec],
    state: dict[str, torch.Tensor],
    values: Mapping[str, torch.Tensor],
    k: Mapping[str, Any],
    index: Any,
    offset: Offset = 0,
    names: tuple[str, ...] | None = None,
) -> None:
    """Round the new state ``values`` into storage (those in ``names``, else all), each buffer
    with the random bits of its own stream (its position among the codecs)."""
    seed, t = k["rounding_seed"], k["t"]
    for position, (name, codec) in enumerate(codecs.items()):
        if names is None or name in names:
            key = stream_key(seed, index, position, t) if codec.random else 0
            codec.store(state, name, values[name], key, offset)


def update_plan(
    rule: Rule,
    plan: Plan,
    grad: torch.Tensor,
    k: Mapping[str, Any],
    elementwise: bool,
    per_tensor: bool = False,
) -> None:
    """The eager step of one planned tensor: :func:`update_one`. An element-wise rule whose
    storage is element-wise too (codecs that round each element on its own) runs it on
    consecutive pieces of the tensors (:func:`adamkit.core.pieces.in_numbered_pieces`), so
    that each operation's temporaries (decoded 16-bit state among them) stay in cache instead
    of being fresh tensor-sized allocations; each piece's rounding draws the random bits of
    its own elements, so the result is the whole tensor's, bit for bit. Sharded alike (every
    tensor a DTensor placed as the parameter, each rank's shard a run of the whole tensor's
    elements, as FSDP2 makes them), such a rule runs on each rank's local tensors, without
    DTensor's dispatch per operation, numbered from the shard's first element
    (:func:`adamkit.core.sharding.local_shards`). So does a rule that couples elements only
    through per-tensor reductions of :mod:`adamkit.core.reduce` (``per_tensor``), its
    reductions summed across the ranks (:func:`step_row_shards`). State stored in blocks
    (8-bit) takes pieces of ``BLOCK_PIECE`` whole blocks with the runs of its per-block maxima
    (:func:`piece_layout`)."""
    common = (plan.codecs, plan.pcodec, k, plan.index, plan.exact)
    layout = piece_layout(plan) if elementwise else None
    sharded = is_dtensor(grad)
    if layout is not None and (layout.single or (sharded and layout.blocked)):
        layout = None
    whole, first = (_named(grad, plan.slot, layout.full) if layout else {}), 0
    if layout is not None and sharded:
        shards = local_shards(whole)
        if shards is None:
            layout = None
        else:
            whole, first = shards
    if layout is None:
        if per_tensor and sharded and step_row_shards(rule, plan, grad, k):
            return
        if per_tensor and not sharded and plan.loads_copies and step_in_stages(rule, plan, grad, k):
            return
        update_one(rule, plan.slot, grad, plan.state, *common)
        return

    def step_piece(t: Mapping[str, torch.Tensor], start: int) -> None:
        slot, state = _unnamed(t, plan.slot, layout.stored)
        update_one(rule, slot, t["grad"], state, *common, offset=first + start)

    in_numbered_pieces(step_piece, whole, layout.per_block, layout.block, layout.size)


class PieceLayout:
    """How a planned tensor's stored tensors are cut into pieces: ``full`` ones (the
    parameter's size) by elements, ``blocked`` ones (one value per ``block`` elements) by
    blocks, in pieces of ``PIECE`` elements (``BLOCK_PIECE`` with blocks); ``single`` ones
    (one element: a per-tensor statistic) are not cut."""

    def __init__(self, plan: Plan, block: int) -> None:
        numel = plan.slot["param"].numel()
        stored = plan.stored.items()
        self.block = block
        self.full = {n: t for n, t in stored if t.numel() == numel}
        names = plan.per_block_names
        self.blocked = {n: t for n, t in stored if n in names and n not in self.full}
        self.single = {
            n: t for n, t in stored if t.numel() == 1 and n not in self.full | self.blocked
        }
        self.stored = {**self.full, **self.blocked}
        self.covers = len(self.stored) + len(self.single) == len(plan.stored)
        # as :func:`_named` names them, and the piece size (None: ``PIECE``, read when cut)
        self.per_block = {f"state {n}": t for n, t in self.blocked.items()}
        self.size = None if block == 1 else pieces.BLOCK_PIECE

    def pieces(
        self, whole: Mapping[str, torch.Tensor]
    ) -> list[tuple[dict[str, torch.Tensor], int]]:
        """The pieces of ``whole`` (:func:`_named` tensors of the full stored ones) with the
        runs of the blocked ones, each with the number of its first element; one piece of
        everything where they do not split."""
        return numbered_pieces(whole, self.per_block, self.block, self.size)


def piece_layout(plan: Plan) -> PieceLayout | None:
    """The piece layout of a planned tensor, or None where it cannot be cut: a buffer stored
    whole (one scale per tensor), or a stored tensor neither full-size, nor per block, nor
    one element."""
    if plan.block is None:
        return None
    layout = PieceLayout(plan, plan.block)
    return layout if layout.covers else None


def step_in_stages(rule: Rule, plan: Plan, grad: torch.Tensor, k: Mapping[str, Any]) -> bool:
    """Step a large tensor piece by piece for a rule whose only coupling between elements is
    its per-tensor reductions (:mod:`adamkit.core.reduce`), so that no buffer is decoded whole
    (a temporary of the tensor's size in the compute dtype for each buffer stored otherwise).

    The rule runs on every piece in passes. In each pass the totals of its first reductions are
    known from the passes before; the next ones hand over the piece's sums and give stand-ins
    (:class:`adamkit.core.reduce.Staged`), on which the rule's scalar arithmetic goes on, so
    that one pass collects every reduction whose input does not depend on a total not known
    yet. The call ends at the first other use of a stand-in, before it stores anything; the
    pieces' sums make those reductions' totals. The pass in which no total is missing steps
    every piece for real: a rule whose statistics are all computed from its inputs (LAMB's
    ‖θ‖ and ‖u‖) reads its tensors twice. One-element state
    (a per-tensor statistic) is seen by every piece as it was before the step and stored once,
    from the last piece. False, stepping nothing, where the tensors do not split into pieces
    (:func:`piece_layout`)."""
    layout = piece_layout(plan)
    if layout is None:
        return False
    numel = plan.slot["param"].numel()
    whole = _named(grad, plan.slot, layout.full)
    cut = layout.pieces(whole)
    if len(cut) == 1:
        return False
    common = (plan.codecs, plan.pcodec, k, plan.index, plan.exact)
    known: list[torch.Tensor] = []
    while True:
        sums: list[list[torch.Tensor]] = []  # per piece, the sums of reductions not yet known
        for piece, start in cut:
            slot, state = _unnamed(piece, plan.slot, layout.stored)
            state.update({n: t.clone() for n, t in layout.single.items()})
            staged = reduce.Staged(numel, known)
            reduce.PARTS.append(staged)
            try:
                values = update_one(
                    rule, slot, piece["grad"], state, *common, offset=start, private=True
                )
            except reduce.PendingTotalError:
                if start > 0 and not sums:
                    raise RuntimeError(_UNEVEN_STAGES) from None
                sums.append(staged.sums)
                continue
            finally:
                reduce.PARTS.pop()
            if sums:
                raise RuntimeError(_UNEVEN_STAGES)
        if not sums:
            store_state(plan.codecs, plan.state, values, k, plan.index, names=tuple(layout.single))
            return True
        if not sums[0] or any(len(piece_sums) != len(sums[0]) for piece_sums in sums):
            raise RuntimeError(_UNEVEN_STAGES)
        for piece_sums in zip(*sums, strict=True):
            known.append(torch.stack(piece_sums).sum(dtype=torch.float64).to(piece_sums[0].dtype))


_UNEVEN_STAGES = "the rule's per-tensor reductions differ between pieces of one tensor"


def step_row_shards(rule: Rule, plan: Plan, grad: torch.Tensor, k: Mapping[str, Any]) -> bool:
    """Step a sharded tensor on this rank's row shard, for a rule whose only coupling between
    elements is its per-tensor reductions (:mod:`adamkit.core.reduce` then sums them across
    the ranks, one collective each, in the same order on every rank); False, stepping
    nothing, where the tensors are not all row-sharded alike over a one-dimensional mesh or
    are stored other than element by element."""
    group = row_shard_group(grad)
    if group is None or not plan.stored_elementwise:
        return False
    sharded = {n: v for n, v in plan.stored.items() if is_dtensor(v)}
    shards = local_shards(_named(grad, plan.slot, sharded))
    if shards is None:
        return False
    local, first = shards
    slot, local_state = _unnamed(local, plan.slot, sharded)
    state = {**plan.state, **local_state}
    common = (plan.codecs, plan.pcodec, k, plan.index, plan.exact)
    reduce.PARTS.append(reduce.Shards(group, plan.slot["param"].numel()))
    try:
        update_one(rule, slot, local["grad"], state, *common, offset=first)
    finally:
        reduce.PARTS.pop()
    return True


def _named(
    grad: torch.Tensor | None,
    slot: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The gradient, slot and state tensors of a step in one dict, as pieces and shards take
    them (``"grad"``, ``"slot <name>"``, ``"state <name>"``; no gradient where it is None)."""
    named = {} if grad is None else {"grad": grad}
    named.update({f"slot {n}": v for n, v in slot.items()})
    named.update({f"state {n}": v for n, v in state.items()})
    return named


def _unnamed(
    named: Mapping[str, torch.Tensor], slot: Iterable[str], state: Iterable[str]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The slot and state dicts (of the names given) back from :func:`_named`'s form."""
    return {n: named[f"slot {n}"] for n in slot}, {n: named[f"state {n}"] for n in state}


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


def memory_of(p: torch.Tensor) -> tuple:
    """What identifies a parameter's memory: replacing ``p.data`` changes it (a DTensor's: its
    local part's, as a DTensor's own ``data_ptr`` is 0)."""
    if is_dtensor(p):
        p = p.to_local()  # type: ignore[attr-defined]
    return (p.data_ptr(), p.dtype, p.shape, p.stride())


def _codec_id(codec: Codec) -> tuple:
    return (type(codec).__name__, *sorted((k, repr(v)) for k, v in vars(codec).items()))


class Plan:
    """What one parameter's update needs, decided once: codecs, compute dtype, the views the
    compiled path takes, and the signature of tensors that can share a compiled graph."""

    __slots__ = (
        "codecs",
        "exact",
        "first",
        "flat",
        "index",
        "p",
        "pcodec",
        "roundings",
        "sharded",
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
        self.storage = memory_of(p)
        self.slot_names = tuple(sorted(slot))
        self.state_names = tuple(sorted(self.stored))
        self.flat = not shaped
        self.first, self.sharded = 0, False
        slot_views, stored_views = slot, self.stored
        if is_dtensor(slot["param"]):
            local = self._local_views()
            if local is None:
                self.signature = None
                return
            slot_views, stored_views, self.first = local
            self.sharded = True
        view = slot_views["param"]
        self.signature = self._signature(view, shaped, slot_views, stored_views)
        if self.signature is None:
            return

        def squash(t: torch.Tensor) -> torch.Tensor:
            return t.view(-1) if self.flat and t.shape == view.shape else t

        self.state_views = [squash(slot_views[n]) for n in self.slot_names] + [
            squash(stored_views[n]) for n in self.state_names
        ]

    def _local_views(
        self,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int] | None:
        """(slot, stored, first): this rank's parts of a sharded parameter's slot and state
        tensors, and the number of their first element in the whole tensor, where the compiled
        path may step them alone: every tensor stored element by element and sharded as the
        parameter, each rank's part a run of the whole tensor's elements
        (:func:`~adamkit.core.sharding.local_shards`). None otherwise. Only an element-wise
        rule steps them so (:class:`~adamkit.core.compiled.Arrangement`)."""
        if not self.stored_elementwise or self.p.is_complex():
            return None
        # (the module's function: tests count the steps that call this module's local_shards)
        shards = sharding.local_shards(_named(None, self.slot, self.stored))
        if shards is None:
            return None
        local, first = shards
        slot, stored = _unnamed(local, self.slot, self.stored)
        return slot, stored, first

    def _signature(
        self,
        view: torch.Tensor,
        shaped: bool,
        slot: Mapping[str, torch.Tensor],
        stored: Mapping[str, torch.Tensor],
    ) -> tuple | None:
        """What tensors must share to share a compiled graph: the views it takes (``view``,
        ``slot`` and ``stored``: the tensors themselves, or a sharded parameter's local parts);
        None where the compiled path cannot take them."""
        # (DTensors and other subclasses, unless stepped on their local parts; sizes 0 and 1,
        # which Dynamo specialises)
        p = view if self.sharded else self.p
        if type(p) not in PLAIN_TYPES or p.numel() < 2 or not view.is_contiguous():
            return None
        if not all(t.is_contiguous() for t in stored.values()):
            return None
        shapes = tuple(
            (n, t.ndim if shaped else 0, t.shape == view.shape, t.dtype)
            for n, t in sorted({**slot, **stored}.items())
        )
        return (
            view.device,
            view.ndim if shaped else 1,
            self.exact,
            shapes,
            tuple((name, _codec_id(c)) for name, c in self.codecs.items()),
            _codec_id(self.pcodec),
        )

    def valid(self, state: Mapping[str, Any], roundings: tuple[str, str]) -> bool:
        """Whether this plan still describes the parameter: the same storage (``p.data`` may have
        been replaced), the same state dict holding the same state tensors, and the same
        rounding policy."""
        return (
            state is self.state
            and self.storage == memory_of(self.p)
            and roundings == self.roundings
            and len(self.stored) == sum(isinstance(v, torch.Tensor) for v in state.values())
            and all(state.get(n) is t for n, t in self.stored.items())
        )

    def rebind(self, name: str, flat: torch.Tensor) -> None:
        """Move state tensor ``name`` to ``flat`` (1-D, same values, same element count): the
        state entry becomes a view of it shaped as before."""
        old = self.stored[name]
        self.state[name] = self.stored[name] = flat.view(old.shape)
        at = len(self.slot_names) + self.state_names.index(name)
        self.state_views[at] = flat if self.flat else self.stored[name]

    def grad_view(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient as the compiled graph takes it: 1-D unless the rule reads shapes, and
        always contiguous (a graph is called directly on the strides it was checked on); of a
        sharded plan, this rank's part, placed as the parameter."""
        if self.sharded:
            grad = local_part(grad, self.p)
        return grad.reshape(-1) if self.flat else grad.contiguous()

    def mergeable(self, scalars: bool = False) -> bool:
        """Whether this tensor may be concatenated with others of its signature: every stored
        tensor has the parameter's shape (or, with ``scalars``, one element: a per-tensor
        statistic that a segmented merge keeps per segment) and is stored element by element.
        (The rule must allow it too; the optimizer declares that.)"""
        shape = self.slot["param"].shape
        return (
            self.signature is not None
            and not self.sharded  # (merged tensors number their elements per flat buffer)
            and (self.flat or len(shape) == 1)
            and self.stored_elementwise
            and all(t.shape == shape for t in self.slot.values())
            and all(t.shape == shape or (scalars and t.numel() == 1) for t in self.stored.values())
        )

    @property
    def stored_elementwise(self) -> bool:
        """Whether the parameter and every buffer are stored element by element (codecs
        without per-tensor or per-block scales): tensors may be concatenated or cut in pieces."""
        return self.pcodec.elementwise and all(c.elementwise for c in self.codecs.values())

    @property
    def block(self) -> int | None:
        """The elements stored together: 1 where every codec stores element by element, a
        block codec's block (8-bit: 256), None where a codec stores whole tensors."""
        blocks = [c.block for c in (self.pcodec, *self.codecs.values())]
        return None if None in blocks else max(blocks)  # type: ignore[type-var]

    @property
    def per_block_names(self) -> set[str]:
        """The stored tensors with one value per block (8-bit codes' block maxima)."""
        return {aux for name, codec in self.codecs.items() for aux in codec.per_block(name)}

    @property
    def loads_copies(self) -> bool:
        """Whether the parameter or a buffer is stored other than in the compute dtype: loading
        it whole makes a temporary of its size."""
        return any(
            type(c) is not Plain or c.dtype != self.exact
            for c in (self.pcodec, *self.codecs.values())
        )

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """The names of the one-element state tensors (per-tensor statistics; the parameter
        has at least two elements)."""
        return tuple(n for n in self.state_names if self.stored[n].numel() == 1)
