"""How one state buffer is stored: the codecs of the precision policy.

A codec turns the compute-dtype value of a buffer into the tensors kept in ``optimizer.state[p]``
(the buffer's own key, plus auxiliary keys ``<name>_scale``, ``<name>_kahan`` or
``<name>_absmax``) and back. The codec of a stored buffer is recognised from what is stored, so
a checkpoint loads the way it was written whatever the current hyperparameters say.

* :class:`Plain`: the value as is (float32, float64).
* :class:`Rounded`: bfloat16 or float16, written back by stochastic rounding (default; unbiased,
  no extra memory) or round-to-nearest.
* :class:`Kahan`: bfloat16/float16 as a (hi, lo) pair, hi = round(x), lo = x − hi rounded
  stochastically: about twice the mantissa bits, at twice the storage.
* :class:`ScaledHalf`: float16 divided by a per-tensor power-of-two scale chosen so the largest
  magnitude sits near 2^14: no overflow for any finite value, and a relative range of about
  2^38 inside the tensor (plain float16 overflows at |g| ≥ 256 for Adam's v and loses
  |g| < 5.5e-3).
* :class:`Blockwise8`: 8-bit codes of a dynamic (decade-based) quantization map scaled by the
  absolute maximum of each block of 256 elements (Dettmers et al. 2022, arXiv:2110.02861);
  signed map for moments that change sign, unsigned map for non-negative ones
  (:mod:`adamkit.core.dynamic_map`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, Literal

import torch
from torch.fx.experimental.symbolic_shapes import statically_known_true

from adamkit.core import dynamic_map, pieces
from adamkit.core.pieces import in_numbered_pieces
from adamkit.core.rounding import Offset, random_bits, stochastic_round
from adamkit.core.sharding import absolute_max, is_dtensor

Rounding = Literal["stochastic", "nearest"]
Stored = MutableMapping[str, object]
BLOCK = 256
# The shortest segment of a block that a traced last dimension is cut into (piece_length).
SEGMENT_MIN = 32


def _round_to(
    x: torch.Tensor, dtype: torch.dtype, rounding: Rounding, key: int, offset: Offset = 0
) -> torch.Tensor:
    if rounding == "stochastic":
        return stochastic_round(x, dtype, key, offset)
    return x.to(dtype)


def _unsharded_like(value: torch.Tensor, dst: object) -> torch.Tensor:
    """``value`` as a plain tensor where it is a DTensor and ``dst`` is not: a per-tensor
    statistic of a sharded parameter (a global value, the same on every rank) is stored as a
    plain tensor, as torch.optim stores ``step``."""
    if is_dtensor(value) and not is_dtensor(dst):
        return value.full_tensor()  # type: ignore[attr-defined]
    return value


def _create_zeros_by_value(codec: Any, st: Stored, name: str, like: torch.Tensor) -> None:
    """``create`` from a zero value shaped like ``like`` (the codecs whose ``create`` is a
    cast or a scale: nothing to save by knowing the value)."""
    codec.create(st, name, torch.zeros_like(like, memory_format=torch.preserve_format))


class Plain:
    """Stored in ``dtype`` exactly as computed (a cast, round-to-nearest, if it differs).

    The codec protocol: ``create`` the stored tensors from a first value, ``load`` the value in
    a compute dtype, ``store`` a new value with the key of its random bits; ``offset`` is the
    number, in the whole tensor, of the value's first element (element-wise codecs may be
    stored piece by piece, block-wise ones by runs of whole blocks with the matching runs of
    their ``per_block`` tensors, the others whole, from element 0).
    """

    random = False  # whether ``store`` draws random bits (then it needs a distinct key per call)
    elementwise = True  # each element stored on its own: tensors may be concatenated
    # Elements stored together (one scale per run of ``block``; None: the whole tensor): runs
    # of whole blocks may be stored on their own, with the matching runs of ``per_block``.
    block: int | None = 1

    def per_block(self, name: str) -> tuple[str, ...]:
        """The auxiliary stored tensors of buffer ``name`` with one value per block."""
        return ()

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype

    def create(self, st: Stored, name: str, value: torch.Tensor) -> None:
        st[name] = value.to(self.dtype)

    create_zeros = _create_zeros_by_value

    def load(self, st: Stored, name: str, dtype: torch.dtype) -> torch.Tensor:
        return st[name].to(dtype)  # type: ignore[union-attr]

    def store(
        self, st: Stored, name: str, value: torch.Tensor, key: int, offset: Offset = 0
    ) -> None:
        dst = st[name]
        if value is not dst:
            dst.copy_(_unsharded_like(value, dst))  # type: ignore[union-attr, arg-type]


class Rounded(Plain):
    """bfloat16/float16 storage written back with stochastic rounding or round-to-nearest."""

    def __init__(self, dtype: torch.dtype, rounding: Rounding) -> None:
        super().__init__(dtype)
        self.rounding = rounding
        self.random = rounding == "stochastic"

    def store(
        self, st: Stored, name: str, value: torch.Tensor, key: int, offset: Offset = 0
    ) -> None:
        """Eagerly in pieces (:func:`~adamkit.core.pieces.in_numbered_pieces`): the rounding's
        temporaries stay in cache, and each piece draws its elements' own random bits."""

        def store_piece(t: dict[str, torch.Tensor], start: int) -> None:
            rounded = _round_to(t["value"], self.dtype, self.rounding, key, offset + start)
            t["stored"].copy_(rounded)

        in_numbered_pieces(store_piece, {"stored": st[name], "value": value})  # type: ignore[dict-item]


class Kahan(Plain):
    """A (hi, lo) pair in ``dtype``: x ≈ hi + lo, hi = round(x) to nearest and the compensation
    lo = x − hi rounded stochastically, so that the pair has no bias either."""

    random = True

    def create(self, st: Stored, name: str, value: torch.Tensor) -> None:
        hi = value.to(self.dtype)
        st[name] = hi
        st[f"{name}_kahan"] = (value - hi.to(value.dtype)).to(self.dtype)

    def load(self, st: Stored, name: str, dtype: torch.dtype) -> torch.Tensor:
        return st[name].to(dtype) + st[f"{name}_kahan"].to(dtype)  # type: ignore[union-attr]

    def store(
        self, st: Stored, name: str, value: torch.Tensor, key: int, offset: Offset = 0
    ) -> None:
        def store_piece(t: dict[str, torch.Tensor], start: int) -> None:
            hi = t["value"].to(self.dtype)
            t["hi"].copy_(hi)
            lo = t["value"] - hi.to(t["value"].dtype)
            t["lo"].copy_(_round_to(lo, self.dtype, "stochastic", key, offset + start))

        pair = {"hi": st[name], "lo": st[f"{name}_kahan"], "value": value}
        in_numbered_pieces(store_piece, pair)  # type: ignore[arg-type]


class ScaledHalf:
    """float16 payload times a per-tensor power-of-two float32 scale."""

    TARGET_EXPONENT = 14

    elementwise = False  # one scale per tensor
    block = None

    def __init__(self, rounding: Rounding) -> None:
        self.rounding = rounding
        self.random = rounding == "stochastic"

    @staticmethod
    def per_block(name: str) -> tuple[str, ...]:
        return ()

    def _scale(self, value: torch.Tensor) -> torch.Tensor:
        amax = absolute_max(value.detach()).to(torch.float32)
        exponent = torch.ceil(torch.log2(amax)) - self.TARGET_EXPONENT
        return torch.where(amax > 0, torch.exp2(exponent), 1.0)

    def create(self, st: Stored, name: str, value: torch.Tensor) -> None:
        scale = self._scale(value)
        st[name] = (value / scale).to(torch.float16)
        st[f"{name}_scale"] = scale

    create_zeros = _create_zeros_by_value

    def load(self, st: Stored, name: str, dtype: torch.dtype) -> torch.Tensor:
        return st[name].to(dtype) * st[f"{name}_scale"].to(dtype)  # type: ignore[union-attr]

    def store(
        self, st: Stored, name: str, value: torch.Tensor, key: int, offset: Offset = 0
    ) -> None:
        scale = self._scale(value)
        st[name].copy_(_round_to(value / scale, torch.float16, self.rounding, key))  # type: ignore[union-attr]
        st[f"{name}_scale"].copy_(scale)  # type: ignore[union-attr]


class Blockwise8:
    """uint8 indices into a dynamic quantization map, scaled per block of 256 by the absmax."""

    elementwise = False  # one scale per block of the tensor
    block = BLOCK

    def __init__(self, signed: bool, rounding: Rounding) -> None:
        self.signed = signed
        self.rounding = rounding
        self.random = rounding == "stochastic"

    @staticmethod
    def per_block(name: str) -> tuple[str, ...]:
        return (f"{name}_absmax",)

    @staticmethod
    def _parts(flat: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """A flat tensor as (first element, view) pairs, for the eager path: runs of whole
        blocks as (blocks, 256) views, and its last, shorter block as a (1, rest) view if any.
        On the CPU, runs of ``PIECE`` elements, so that the codec's temporaries stay in cache;
        elsewhere one run of all the whole blocks. (Traced, tensors are not cut:
        :meth:`_encode_in_place`.)"""
        n = flat.numel()
        in_pieces = pieces.splittable({"flat": flat})
        if n % BLOCK == 0 and not in_pieces:
            return [(0, flat.view(-1, BLOCK))]
        whole = n - n % BLOCK
        if in_pieces:
            runs = range(0, whole, pieces.PIECE)
            parts = [(s, flat[s : min(s + pieces.PIECE, whole)].view(-1, BLOCK)) for s in runs]
        else:
            parts = [(0, flat[:whole].view(-1, BLOCK))] if whole else []
        return parts + ([(whole, flat[whole:].view(1, -1))] if whole < n else [])

    def _encode(
        self, value: torch.Tensor, key: int, offset: Offset = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        piece = piece_length(value)
        if piece == BLOCK:
            rows = _in_blocks(value.to(torch.float32))
            codes, absmax = self._encode_rows(rows, key, offset)
            return codes.reshape(value.shape), absmax.reshape(-1)
        if piece:
            return self._encode_segments(value.to(torch.float32), piece, key, offset)
        if torch.compiler.is_compiling():
            return self._encode_in_place(value.to(torch.float32), key, offset)
        codes, maxima = [], []
        for start, part in self._parts(value.reshape(-1).to(torch.float32)):
            part_codes, absmax = self._encode_rows(part, key, offset + start)
            codes.append(part_codes.view(-1))
            maxima.append(absmax.view(-1))
        return _joined(codes).view(value.shape), _joined(maxima)

    def _encode_rows(
        self, rows: torch.Tensor, key: int, offset: Offset
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codes and block maxima of float32 ``rows`` whose last dimension is one block, its
        first element numbered ``offset``."""
        absmax = rows.abs().amax(dim=-1, keepdim=True)
        return self._scaled_codes(rows, absmax, key, offset), absmax

    def _scaled_codes(
        self, value: torch.Tensor, scale: torch.Tensor, key: int, offset: Offset
    ) -> torch.Tensor:
        """The codes of float32 ``value`` divided by ``scale`` (its elements' block maxima,
        broadcast; a block of zeros is divided by 1), its first element numbered ``offset``."""
        normalized = value / torch.where(scale > 0, scale, 1.0)
        draw = None
        if self.rounding == "stochastic":
            bits = random_bits(normalized, key, 24, offset)
            draw = bits.to(torch.float32) * (1.0 / 2**24)
        return dynamic_map.encode(normalized, self.signed, draw)

    def _encode_segments(
        self, value: torch.Tensor, length: int, key: int, offset: Offset
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Traced, float32 ``value`` whose last dimension is known to be whole segments of
        ``length`` elements (a divisor of the block; :func:`piece_length`): each segment's
        maximum magnitude, then each block's, the maximum of its ``BLOCK // length``
        segments; each segment scaled by its block's maximum. The same values as
        :meth:`_encode_rows` on the blocks."""
        segments = value.unflatten(-1, (-1, length))
        maxima = segments.abs().amax(dim=-1).reshape(-1)
        absmax = _group_maxima(maxima, BLOCK // length)
        codes = self._scaled_codes(segments, _segment_scales(absmax, segments), key, offset)
        return codes.reshape(value.shape), absmax

    def _encode_in_place(
        self, value: torch.Tensor, key: int, offset: Offset
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Traced, a tensor not known to be rows of whole blocks: the block maxima of its
        magnitudes padded with zeros to whole blocks (no branch on its size, so no guard: one
        graph serves tensors of whole blocks and not), every other operation on the tensor as
        it is shaped, each element scaled by its block's maximum (:func:`_spread`). The
        same values as :meth:`_encode_rows` on the blocks, but the compiler indexes the codes
        and the rule's tensors alike (contiguously), not through a flat view of size symbols."""
        absmax = _group_maxima(value.reshape(-1).abs(), BLOCK)
        scale = _spread(absmax, BLOCK, value.shape)
        return self._scaled_codes(value, scale, key, offset), absmax

    def create(self, st: Stored, name: str, value: torch.Tensor) -> None:
        index, absmax = self._encode(value, 0)
        st[name] = index
        st[f"{name}_absmax"] = absmax

    def create_zeros(self, st: Stored, name: str, like: torch.Tensor) -> None:
        """``create`` from zeros shaped like ``like``: every element takes the code of 0 and
        every block the maximum 0, without encoding a tensor of zeros (eagerly, 0.4-0.5 s
        per buffer of an 8-bit first step on the GPT-like set before this)."""
        zero, _ = self._encode(torch.zeros(1, device=like.device), 0)
        st[name] = zero.expand(like.shape).clone(memory_format=torch.contiguous_format)
        blocks = math.ceil(like.numel() / BLOCK)
        st[f"{name}_absmax"] = torch.zeros(blocks, device=like.device)

    def load(self, st: Stored, name: str, dtype: torch.dtype) -> torch.Tensor:
        index: torch.Tensor = st[name]  # type: ignore[assignment]
        absmax: torch.Tensor = st[f"{name}_absmax"]  # type: ignore[assignment]
        piece = piece_length(index)
        if piece == BLOCK:
            rows = _in_blocks(index)
            scale = absmax.view(*rows.shape[:-1], 1)
            return (dynamic_map.decode(rows, self.signed) * scale).reshape(index.shape).to(dtype)
        if piece:  # as _encode_segments
            segments = index.unflatten(-1, (-1, piece))
            values = dynamic_map.decode(segments, self.signed) * _segment_scales(absmax, segments)
            return values.reshape(index.shape).to(dtype)
        if torch.compiler.is_compiling():  # as _encode_in_place
            scale = _spread(absmax, BLOCK, index.shape)
            return (dynamic_map.decode(index, self.signed) * scale).to(dtype)
        values = []
        for start, part in self._parts(index.reshape(-1)):
            block = start // BLOCK
            scale = absmax[block : block + part.shape[0]].view(-1, 1)
            values.append((dynamic_map.decode(part, self.signed) * scale).view(-1).to(dtype))
        return _joined(values).view(index.shape)

    def store(
        self, st: Stored, name: str, value: torch.Tensor, key: int, offset: Offset = 0
    ) -> None:
        index, absmax = self._encode(value, key, offset)
        st[name].copy_(index)  # type: ignore[union-attr]
        st[f"{name}_absmax"].copy_(absmax)  # type: ignore[union-attr]


def piece_length(t: torch.Tensor) -> int:
    """Traced, the length of the pieces that ``t``'s last dimension is known to be cut into:
    ``BLOCK`` where it is whole blocks (a rows job's, or a split job's:
    :mod:`adamkit.core.jobs`), else the longest divisor of the block of at least
    ``SEGMENT_MIN`` that it is whole segments of (a split job's); 0 if none, or not traced.
    A segment starts at a multiple of its length, so it lies in one block.
    Cut along that dimension, blocks and segments are indexed by inductor's loop counters;
    through a flat view it would index each element by divisions and remainders of the
    tensor's size symbols. Known, not assumed: a size symbol is never guarded on."""
    if not (torch.compiler.is_compiling() and t.dim() >= 1):
        return 0
    length = BLOCK
    while length >= SEGMENT_MIN:
        if statically_known_true(t.shape[-1] % length == 0):
            return length
        length //= 2
    return 0


def _in_blocks(t: torch.Tensor) -> torch.Tensor:
    """``t``, whose last dimension is whole blocks, with that dimension cut into (blocks,
    ``BLOCK``); as it is if that dimension is one block (rows). Cut into (rows, 1, block), a
    rows job's rows were indexed by inductor through a flat loop with temporaries as large as
    the job, about three times as slow."""
    return t if statically_known_true(t.shape[-1] == BLOCK) else t.unflatten(-1, (-1, BLOCK))


def _spread(absmax: torch.Tensor, per_block: int, shape: Sequence[Any]) -> torch.Tensor:
    """Block maxima repeated ``per_block`` times (once per element, or per segment), the
    first ``shape``'s number of them, shaped as ``shape``: a broadcast, which a compiler
    indexes by the element's (or segment's) number divided by ``per_block``."""
    spread = absmax.view(-1, 1).expand(-1, per_block).reshape(-1)
    return spread[: math.prod(shape)].view(*shape)


def _segment_scales(absmax: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Each segment's block maximum, shaped (…, segments, 1) to scale ``segments``, whose last
    dimension is one segment (a divisor of the block)."""
    return _spread(absmax, BLOCK // segments.shape[-1], (*segments.shape[:-1], 1))


def _group_maxima(values: torch.Tensor, size: int) -> torch.Tensor:
    """The maxima of consecutive groups of ``size`` non-negative values of 1-D ``values``, the
    last group padded with zeros (no branch on the length, so no guard when traced)."""
    padded = torch.nn.functional.pad(values, (0, (-values.numel()) % size))
    return padded.view(-1, size).amax(dim=1)


def _joined(parts: list[torch.Tensor]) -> torch.Tensor:
    """The 1-D parts one after another (the part itself where there is one)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def check_stored_values(what: str, buf: Any, entry: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` (``what`` names the buffer) unless ``entry[buf.name]`` and its
    auxiliary tensors form a stored buffer that a codec can load: a floating tensor (with a
    ``_kahan`` pair of its shape and dtype, or a positive one-element ``_scale``) or uint8
    codes with one ``_absmax`` per block of 256; every value finite (NaN allowed where
    ``buf.nan_unset``) and none negative where ``buf.nonnegative``. For checkpoints, before
    anything is loaded."""
    name = buf.name
    main = entry[name]
    if main.dtype == torch.uint8:
        absmax = entry.get(f"{name}_absmax")
        blocks = math.ceil(main.numel() / BLOCK)
        if (
            not isinstance(absmax, torch.Tensor)
            or not absmax.is_floating_point()
            or absmax.numel() != blocks
        ):
            raise ValueError(
                f"{what} holds 8-bit codes, which need '{name}_absmax': {blocks} floating "
                "values, one per block of 256"
            )
        _check_finite(f"{what} ('{name}_absmax')", absmax, nonnegative=True, nan=False)
        return
    if not main.is_floating_point():
        raise ValueError(
            f"{what} has dtype {main.dtype}; a buffer is stored in a floating dtype, or as uint8 "
            f"8-bit codes with '{name}_absmax'"
        )
    lo, scale = entry.get(f"{name}_kahan"), entry.get(f"{name}_scale")
    if lo is not None and (
        not isinstance(lo, torch.Tensor) or lo.shape != main.shape or lo.dtype != main.dtype
    ):
        raise ValueError(f"{what}: its compensation '{name}_kahan' must match its shape and dtype")
    if scale is not None:
        if (
            not isinstance(scale, torch.Tensor)
            or not scale.is_floating_point()
            or scale.numel() != 1
        ):
            raise ValueError(f"{what}: its scale '{name}_scale' must be one floating value")
        _check_finite(f"{what} ('{name}_scale')", scale, nonnegative=True, nan=False)
        if not bool(scale.reshape(()) > 0):
            raise ValueError(f"{what}: its scale '{name}_scale' must be positive")
    _check_finite(what, main, nonnegative=False, nan=buf.nan_unset)
    if lo is not None:
        _check_finite(f"{what} ('{name}_kahan')", lo, nonnegative=False, nan=False)
    if buf.nonnegative:
        value = main if lo is None else main.to(torch.float32) + lo.to(torch.float32)
        if bool((value < 0).any()):
            raise ValueError(f"{what} has negative values; it holds squares (never negative)")


def _check_finite(what: str, values: torch.Tensor, nonnegative: bool, nan: bool) -> None:
    usable = torch.isfinite(values)
    if nan:
        usable |= torch.isnan(values)
    if not bool(usable.all()):
        raise ValueError(f"{what} has infinite or NaN values")
    if nonnegative and bool((values < 0).any()):
        raise ValueError(f"{what} has negative values")
