"""Sharded tensors (``torch.distributed.tensor.DTensor``, as FSDP2 and tensor parallelism
make them): what the executor and the codecs need to know about them.

Rules may run on DTensors through DTensor's own operators, which make reductions global. Four
things need help:

* the random bits of stochastic rounding are numbered by each element's place in the whole
  tensor (:func:`local_numbers`), so that a sharded step rounds as the unsharded one does,
  bit for bit, whatever the sharding, and replicas round alike;
* a step that may run on each rank's part alone takes the local tensors (:func:`local_shards`),
  without DTensor's dispatch per operation: the eager path each step, the compiled path once,
  when it plans the tensor (``Plan.first`` numbers the part's first element), with the
  gradient's part (:func:`local_part`) each step;
* per-tensor reductions of such a step are summed over the group of :func:`row_shard_group`
  (by :mod:`adamkit.core.reduce`);
* the largest magnitude of a tensor (the float16 codec's scale) is taken from each rank's part,
  including parts that hold nothing (:func:`absolute_max`).
"""

from __future__ import annotations

from typing import Any

import torch


def is_dtensor(x: object) -> bool:
    """Whether ``x`` is a DTensor (without importing torch.distributed where it is absent)."""
    if type(x) in (torch.Tensor, torch.nn.Parameter):
        return False  # plain tensors, traced ones among them, take no import
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - a torch built without distributed
        return False
    return isinstance(x, DTensor)


def _settled(placements: Any) -> list[Any]:
    """``placements`` with every partial one (a sum or maximum still pending) made whole."""
    from torch.distributed.tensor import Replicate

    return [Replicate() if p.is_partial() else p for p in placements]


def _settle(x: Any) -> Any:
    """DTensor ``x`` with nothing pending a reduction."""
    if any(p.is_partial() for p in x.placements):
        return x.redistribute(placements=_settled(x.placements))
    return x


def _layout(x: Any) -> tuple[list[int], list[int], tuple[int, ...]]:
    """(shape, corner, strides): the shape of this rank's part of DTensor ``x``, the index of
    its first element in the whole tensor, and the whole tensor's contiguous strides."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, corner = compute_local_shape_and_global_offset(x.shape, x.device_mesh, x.placements)
    strides, step = [], 1
    for n in reversed(x.shape):
        strides.append(step)
        step *= n
    return list(shape), list(corner), tuple(reversed(strides))


def _run_start(x: Any) -> int | None:
    """The number, in the whole tensor flattened, of the first element of this rank's part of
    DTensor ``x`` where that part is a run of consecutive elements of the whole (sharded along
    the first dimension only, as FSDP2 shards, or not at all); else None."""
    shape, corner, strides = _layout(x)
    whole = all(
        c == 0 and n == size for c, n, size in zip(corner[1:], shape[1:], x.shape[1:], strict=True)
    )
    return int(sum(c * s for c, s in zip(corner, strides, strict=True))) if whole else None


def local_numbers(x: Any) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """(local, start, index) of a DTensor ``x``: this rank's tensor, and the numbers, in the
    whole tensor flattened, of its elements: ``start`` + their local numbers where the local
    tensor is a run of consecutive elements of the whole (:func:`_run_start`), else ``index``,
    an int32 tensor of the numbers modulo 2^32 shaped as ``local``. A pending reduction (a
    partial placement) is made whole first."""
    x = _settle(x)
    local = x.to_local()
    start = _run_start(x)
    if start is not None:
        return local.contiguous(), start, None
    shape, corner, strides = _layout(x)
    index = torch.zeros((), dtype=torch.int64, device=local.device)
    for dim, (c, n, s) in enumerate(zip(corner, shape, strides, strict=True)):
        along = (torch.arange(n, dtype=torch.int64, device=local.device) + c) * s
        index = index + along.view([n if d == dim else 1 for d in range(len(shape))])
    return local, 0, index.to(torch.int32)


def like_dtensor(local: torch.Tensor, like: Any) -> Any:
    """``local`` (this rank's part) as a DTensor placed like ``like``, partial placements made
    whole (see :func:`local_numbers`)."""
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        local,
        like.device_mesh,
        _settled(like.placements),
        run_check=False,
        shape=like.shape,
        stride=like.stride(),
    )


def local_shards(tensors: dict[str, Any]) -> tuple[dict[str, torch.Tensor], int] | None:
    """(local, start): the local tensors of DTensors ``tensors`` and the number, in the whole
    tensor, of their first element, where an element-wise computation may run on them alone:
    all are DTensors of one shape, mesh and placements, with nothing pending a reduction,
    and each rank's part is a run of consecutive elements of the whole. Otherwise None.
    ``to_local`` gives views, so writes into the local tensors are writes into the DTensors."""
    values = list(tensors.values())
    first = values[0]
    if not all(
        is_dtensor(t)
        and t.shape == first.shape
        and t.device_mesh == first.device_mesh
        and t.placements == first.placements
        for t in values
    ) or any(p.is_partial() for p in first.placements):
        return None
    start = _run_start(first)
    if start is None:
        return None
    return {name: t.to_local() for name, t in tensors.items()}, start


def local_part(x: Any, like: Any) -> torch.Tensor:
    """This rank's part of DTensor ``x`` placed as DTensor ``like`` (redistributed first where
    it is placed otherwise, or pending a reduction)."""
    if x.device_mesh != like.device_mesh or x.placements != like.placements:
        x = x.redistribute(like.device_mesh, like.placements)
    return x.to_local()


def row_shard_group(x: Any) -> Any:
    """The process group over which DTensor ``x`` is sharded by rows (placements
    ``(Shard(0),)`` on a one-dimensional mesh, as FSDP2 shards), else None."""
    from torch.distributed.tensor import Shard

    if x.device_mesh.ndim != 1 or tuple(x.placements) != (Shard(0),):
        return None
    return x.device_mesh.get_group()


def absolute_max(x: Any) -> torch.Tensor:
    """max |x| over the whole tensor as a 0-d tensor, 0 for an empty one (torch's amax refuses
    it). A DTensor's is global, a replicated 0-d DTensor: each rank's part's (0 where it holds
    nothing), then the largest across the mesh."""
    if not is_dtensor(x):
        return x.abs().amax() if x.numel() else x.new_zeros(())
    from torch.distributed.tensor import DTensor, Partial, Replicate

    part = absolute_max(_settle(x).to_local())
    pending = [Partial("max") if p.is_shard() else Replicate() for p in x.placements]
    spread = DTensor.from_local(part, x.device_mesh, pending, run_check=False)
    return spread.redistribute(x.device_mesh, [Replicate()] * x.device_mesh.ndim)
