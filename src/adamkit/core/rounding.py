"""Stochastic rounding with counter-based random bits.

Rounding a float32 value x to a format with fewer mantissa bits stochastically (up with
probability equal to the fraction of an ulp that x lies above the lower neighbour) is unbiased:
E[round(x)] = x, so an EMA whose increments are below half an ulp still moves on average.

The random bits are a hash of (element index, key): no generator object, so nothing to save
beyond the key's parts (seed, parameter index, buffer index, step), all of which are already in
``state_dict``; resuming from a checkpoint reproduces the same bits, and the bits are the same
on every device and under ``torch.compile``.
"""

from __future__ import annotations

from typing import Any

import torch

_MASK32 = 0xFFFFFFFF
# Multiplier of a well-mixing 32-bit integer hash (x ^= x >> 16; x *= C; twice). It is below
# 2^31, so products of 32-bit values stay inside int64 without overflow.
_MIX = 0x45D9F3B
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
    """Combine integers (seed, parameter index, buffer index, step) into one 32-bit key.

    Parts may be Python ints or int64 tensors (the compiled path), with the same result."""
    key = 0x2545F491
    for part in parts:
        key = mix32((key ^ (part & _MASK32)) & _MASK32)
    return key


def random_bits(like: torch.Tensor, key: int | torch.Tensor) -> torch.Tensor:
    """32 random bits (an int64 tensor in [0, 2^32)) per element of ``like``, from ``key``."""
    index = torch.arange(like.numel(), device=like.device, dtype=torch.int64).view(like.shape)
    return mix32((index ^ key) & _MASK32)


def stochastic_round(x: torch.Tensor, dtype: torch.dtype, bits: torch.Tensor) -> torch.Tensor:
    """Round ``x`` to bfloat16 or float16 stochastically, using the low bits of ``bits``.

    Adds a uniform random integer below 2^k to the float32 bit pattern and clears the k low
    mantissa bits (k = 16 for bfloat16, 13 for float16): magnitudes round up with probability
    equal to their position between the two neighbours. The float16 result is exact wherever
    float16 is normal; below that the final cast rounds to nearest.
    """
    dropped = DROPPED_BITS[dtype]
    low = (1 << dropped) - 1
    pattern = x.to(torch.float32).view(torch.int32)
    noise = (bits & low).to(torch.int32)
    rounded = ((pattern + noise) & ~low).view(torch.float32)
    return rounded.to(dtype)
