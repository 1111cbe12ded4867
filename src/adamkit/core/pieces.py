"""Running an element-wise computation over large tensors piece by piece (eager CPU).

An eager rule makes a full-size temporary for nearly every operation, and on the CPU each
temporary costs a round trip to memory (and page faults when it is fresh). Run on pieces of a
few hundred thousand elements, the same operations keep their temporaries in cache and read and
write each tensor once, like a fused kernel. Traced (the compiler fuses the whole computation)
and wherever the pieces could change the result (sharded or non-contiguous tensors, segmented
reductions) the computation runs once on the whole tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from adamkit.core import reduce

# Elements per piece: 1 MB per float32 tensor, so a dozen live tensors fit in a CPU's cache
# while each operation still splits across threads.
PIECE = 1 << 18
# Elements per piece of state stored in blocks (8-bit): its eager encoding keeps many more
# temporaries per element than other codecs, and a piece's temporaries are the step's peak; a
# quarter of ``PIECE`` keeps a step on 2^24 elements below 1 byte per parameter
# (test_an_8bit_step_has_no_tensor_sized_temporaries).
BLOCK_PIECE = PIECE // 4
# Above this many elements a temporary of the tensor's size is above glibc's largest mmap
# threshold (32 MB in float32), so it would be fresh pages (page faults) on every step: rules
# recompute an intermediate they need twice instead of keeping it (compiled: ``k["recompute"]``;
# eager: :func:`huge`).
LARGE_NUMEL = 1 << 23


def in_pieces(
    fn: Callable[[Mapping[str, torch.Tensor]], object], tensors: Mapping[str, torch.Tensor]
) -> None:
    """Call ``fn`` on consecutive pieces of ``tensors`` (equal-sized, flattened alike), or once
    on the tensors themselves. ``fn`` must be element-wise: each output element may depend only
    on the same element of its inputs (and on 0-d tensors or numbers it closes over), and it
    must write its results into the tensors in place."""
    in_numbered_pieces(lambda piece, _: fn(piece), tensors)


def in_numbered_pieces(
    fn: Callable[[Mapping[str, torch.Tensor], int], object],
    tensors: Mapping[str, torch.Tensor],
    per_block: Mapping[str, torch.Tensor] | None = None,
    block: int = 1,
    size: int | None = None,
) -> None:
    """:func:`in_pieces`, telling ``fn`` where each piece starts: ``fn(piece, start)``, where
    ``start`` is the number of the piece's first element in the flattened tensors (0 when
    they run whole), so that what depends on an element's number (the random bits of
    stochastic rounding) comes out as for the whole tensors. The pieces, and the optional
    ``per_block`` tensors, ``block`` and ``size``, are those of :func:`numbered_pieces`."""
    for piece, start in numbered_pieces(tensors, per_block, block, size):
        fn(piece, start)


def numbered_pieces(
    tensors: Mapping[str, torch.Tensor],
    per_block: Mapping[str, torch.Tensor] | None = None,
    block: int = 1,
    size: int | None = None,
) -> list[tuple[dict[str, torch.Tensor], int]]:
    """The pieces of :func:`in_numbered_pieces`, each with the number of its first element:
    consecutive runs of ``size`` (``PIECE``) elements of the flattened tensors (views), or the
    tensors themselves where they do not split. ``per_block`` tensors hold one value per
    ``block`` elements (a multiple of which ``size`` must be): each piece takes the run of
    them that belongs to its elements."""
    per_block = per_block or {}
    size = PIECE if size is None else size
    if size % block:
        raise ValueError(f"pieces of {size} elements do not hold whole blocks of {block}")
    if not splittable(tensors, size, per_block):
        return [({**tensors, **per_block}, 0)]
    flat = {name: t.view(-1) for name, t in tensors.items()}
    numel = next(iter(flat.values())).numel()
    return [
        (
            {
                **{name: t[start : start + size] for name, t in flat.items()},
                **{
                    name: t[start // block : -(-(start + size) // block)]
                    for name, t in per_block.items()
                },
            },
            start,
        )
        for start in range(0, numel, size)
    ]


def huge(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``tensors`` split into pieces (:func:`in_pieces`) and are above ``LARGE_NUMEL``
    elements: an eager rule then recomputes, piece by piece, what it would otherwise keep."""
    if reduce.PARTS:
        # a rank's part: decided by the whole tensor, so that every rank branches alike; a
        # staged piece is small (its temporaries stay in cache) and every piece branches alike
        part = reduce.PARTS[-1]
        return isinstance(part, reduce.Shards) and part.numel > LARGE_NUMEL
    return splittable(tensors) and next(iter(tensors.values())).numel() > LARGE_NUMEL


def norm_in_pieces(
    fn: Callable[[Mapping[str, torch.Tensor]], torch.Tensor], tensors: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """‖fn(tensors)‖₂ as a 0-d tensor, where ``fn`` is element-wise (see :func:`in_pieces`) and
    returns a new tensor without writing its inputs: from the norms of its pieces, or once on
    the whole tensors (:func:`adamkit.core.reduce.norm`) where they do not split."""
    if not splittable(tensors):
        return reduce.norm(fn(tensors))
    squares: list[torch.Tensor] = []
    in_pieces(lambda t: squares.append(torch.linalg.vector_norm(fn(t)).square()), tensors)
    return reduce.norm_from_square_sum(torch.stack(squares).sum())


def splittable(
    tensors: Mapping[str, torch.Tensor],
    size: int | None = None,
    per_block: Mapping[str, torch.Tensor] | None = None,
) -> bool:
    """Whether pieces of ``size`` (``PIECE``) elements give the whole-tensor result: eager,
    not segmented, and plain contiguous CPU tensors, ``tensors`` of one size above a piece
    (and ``per_block`` ones, with one value per block of them)."""
    if torch.compiler.is_compiling() or reduce.ACTIVE or not tensors:
        return False
    size = PIECE if size is None else size
    numel = next(iter(tensors.values())).numel()
    return (
        numel > size
        and all(t.numel() == numel for t in tensors.values())
        and all(
            type(t) in reduce.PLAIN_TYPES and t.device.type == "cpu" and t.is_contiguous()
            for t in (*tensors.values(), *(per_block or {}).values())
        )
    )
