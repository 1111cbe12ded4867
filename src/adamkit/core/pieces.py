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


def in_pieces(
    fn: Callable[[Mapping[str, torch.Tensor]], object], tensors: Mapping[str, torch.Tensor]
) -> None:
    """Call ``fn`` on consecutive pieces of ``tensors`` (equal-sized, flattened alike), or once
    on the tensors themselves. ``fn`` must be element-wise: each output element may depend only
    on the same element of its inputs (and on 0-d tensors or numbers it closes over), and it
    must write its results into the tensors in place."""
    if not _splittable(list(tensors.values())):
        fn(tensors)
        return
    flat = {name: t.view(-1) for name, t in tensors.items()}
    numel = next(iter(flat.values())).numel()
    for start in range(0, numel, PIECE):
        fn({name: t[start : start + PIECE] for name, t in flat.items()})


def _splittable(tensors: list[torch.Tensor]) -> bool:
    """Whether pieces give the whole-tensor result: eager, not segmented, and plain contiguous
    CPU tensors of one size above a piece."""
    if torch.compiler.is_compiling() or reduce.ACTIVE or not tensors:
        return False
    numel = tensors[0].numel()
    return numel > PIECE and all(
        type(t) in reduce.PLAIN_TYPES
        and t.device.type == "cpu"
        and t.is_contiguous()
        and t.numel() == numel
        for t in tensors
    )
