"""Stochastic rounding with counter-based random bits.

Rounding a float32 value x to a format with fewer mantissa bits stochastically (up with
probability equal to the fraction of an ulp that x lies above the lower neighbour) is unbiased:
E[round(x)] = x, so an EMA whose increments are below half an ulp still moves on average.

The random bits are a hash of (element index, key): no generator object, so nothing to save
beyond the key's parts (seed, parameter index, buffer index, step), all of which are already in
``state_dict``; resuming from a checkpoint reproduces the same bits, and the bits are the same
on every device and under ``torch.compile``. (Both paths merge small tensors into flat
buffers, whose elements are indexed within them: merged tensors draw other bits than they would
stepped alone, equally unbiased.)
"""

from __future__ import annotations

from typing import Any

import torch

from adamkit.core.sharding import is_dtensor, like_dtensor, local_numbers

# The number of a tensor's first element in the whole tensor: a 0-d int64 tensor on the
# compiled path, whose jobs may be runs of a tensor's elements.
Offset = int | torch.Tensor
_MASK32 = 0xFFFFFFFF
# Multiplier of a well-mixing 32-bit integer hash (x ^= x >> 16; x *= C; twice). It is below
# 2^31, so products of 32-bit values stay inside int64 without overflow.
_MIX = 0x45D9F3B
# An odd multiplier (lowbias32's first, C. Wellons' hash prospector, 2018), below 2^31: the
# per-element hash of random_bits.
_LANE_MIX = 0x7FEB352D
# Odd weights below 2^31 of stream_key's parts (murmur2's and other well-known multipliers).
_PART_WEIGHTS = (0x5BD1E995, 0x27D4EB2F, 0x165667B1, 0x61C88647)
# Mantissa bits dropped from float32 for each target format.
DROPPED_BITS = {torch.bfloat16: 16, torch.float16: 13}


def mix32(x: torch.Tensor | int) -> torch.Tensor | int:
    """A 32-bit integer hash (values in [0, 2^32)); works on Python ints and int64 tensors."""
    x = x ^ (x >> 16)
    x = (x * _MIX) & _MASK32
    x = x ^ (x >> 16)
    x = (x * _MIX) & _MASK32
    return x ^ (x >> 16)


def stream_key(*parts: Any) -> Any:
    """Combine up to four integers (seed, parameter index, buffer index, step) into one 32-bit
    key: a weighted sum of the parts modulo 2^32, hashed once.

    Parts may be Python ints or int64 tensors (the compiled path), with the same result. One
    hash, not one per part: inductor inlines the traced key into the element loop, evaluating
    both operands of each xorshift, so every hash in a chain doubled the expression three more
    times; four chained hashes took a minute of compile time per configuration."""
    if len(parts) > len(_PART_WEIGHTS):
        raise ValueError(f"stream_key takes at most {len(_PART_WEIGHTS)} parts, got {len(parts)}")
    total = 0x2545F491
    for weight, part in zip(_PART_WEIGHTS, parts, strict=False):  # fewer parts than weights
        total = total + (((part & _MASK32) * weight) & _MASK32)
    return mix32(total & _MASK32)


def _as_int32(key: int | torch.Tensor) -> int | torch.Tensor:
    """A 32-bit key as the int32 value with the same bits."""
    if isinstance(key, torch.Tensor):
        return key.to(torch.int32)
    return key - (1 << 32) if key >= 1 << 31 else key


def random_bits(
    like: torch.Tensor, key: int | torch.Tensor, count: int, offset: Offset = 0
) -> torch.Tensor:
    """``count`` (1 to 24) random bits per element of ``like``, from ``key``: int32 values in
    [0, 2^count). Elements are numbered from ``offset``: a piece of a tensor that starts at its
    element ``offset`` draws the bits of those elements of the whole tensor.

    x = (index ^ key) · C modulo 2^32, then the low bits of x ^ (x >> 16): one round of a
    multiply-xorshift hash. One round is enough here: the key is a full hash of (seed, tensor,
    buffer, step), so for every element ``index ^ key`` is uniform and independent from step
    to step, and both steps are bijections, which is what makes stochastic rounding unbiased.
    The xorshift brings the product's well-mixed high bits down: without it, the low bits of
    neighbouring elements count up together, and the high bits alone (with this C close to
    2^31) nearly repeat two elements apart.
    int32 lanes, not int64: a vector holds twice as many, and AVX2 has no 64-bit multiply. On
    int32, ``>>`` is arithmetic; the mask keeps the low bits only, so that does not matter
    below 17 bits, and above it bits 16 to 23 are x's own flipped by its sign, uniform too. An
    element's bits depend on its index modulo 2^32 only. The operations after the first write
    into the one new tensor (eagerly, each pass then stays in that tensor's memory)."""
    if not 1 <= count <= 24:
        raise ValueError(f"random_bits draws 1 to 24 bits per element, got count={count}")
    n = like.numel()
    if isinstance(offset, torch.Tensor):  # traced: a job's first element, a 0-d int64 tensor
        # int32 sums wrap around modulo 2^32, which is all an element's bits depend on
        start = offset.to(torch.int32)
        index = torch.arange(n, device=like.device, dtype=torch.int32) + start
    elif offset + n <= 1 << 31:
        index = torch.arange(offset, offset + n, device=like.device, dtype=torch.int32)
    else:
        index = torch.arange(offset, offset + n, device=like.device, dtype=torch.int64)
        index = index.to(torch.int32)
    return hashed_bits(index.view(like.shape), key, count)


def hashed_bits(index: torch.Tensor, key: int | torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` random bits of the elements numbered ``index`` (int32, the numbers modulo
    2^32), as a new tensor: the hash of :func:`random_bits`."""
    x = torch.bitwise_xor(index, _as_int32(key)).mul_(_LANE_MIX)
    return x.bitwise_xor_(x >> 16).bitwise_and_((1 << count) - 1)


def stochastic_round(
    x: torch.Tensor, dtype: torch.dtype, key: int | torch.Tensor, offset: Offset = 0
) -> torch.Tensor:
    """Round ``x`` to bfloat16 or float16 stochastically, with random bits drawn from ``key``
    for elements numbered from ``offset`` (:func:`random_bits`).

    Adds a uniform random integer below 2^k to the float32 bit pattern and clears the k low
    mantissa bits (k = 16 for bfloat16, 13 for float16): magnitudes round up with probability
    equal to their position between the two neighbours. The float16 result is exact wherever
    float16 is normal; below that the final cast rounds to nearest. (The compiled path narrows
    the bfloat16 case by truncation: :func:`adamkit.core.codegen._exact_bfloat16_by_truncation`.)

    A DTensor is rounded shard by shard, each element with the bits of its place in the whole
    tensor (:func:`adamkit.core.sharding.local_numbers`): the result does not depend on how the
    tensor is sharded, and replicas round alike.
    """
    if is_dtensor(x):
        local, start, index = local_numbers(x)
        if index is None:
            rounded = stochastic_round(local, dtype, key, offset + start)
        else:
            rounded = _round_with(
                local, dtype, hashed_bits(index + offset, key, DROPPED_BITS[dtype])
            )
        return like_dtensor(rounded, x)
    return _round_with(x, dtype, random_bits(x, key, DROPPED_BITS[dtype], offset))


def _round_with(x: torch.Tensor, dtype: torch.dtype, bits: torch.Tensor) -> torch.Tensor:
    """``x`` rounded to ``dtype`` after adding ``bits`` (int32, below 2^k) to its float32 bit
    pattern and clearing the k dropped bits; ``bits`` is consumed."""
    dropped = DROPPED_BITS[dtype]
    pattern = x.to(torch.float32).view(torch.int32)
    rounded = bits.add_(pattern).bitwise_and_(~((1 << dropped) - 1))
    return rounded.view(torch.float32).to(dtype)
