"""The 8-bit dynamic quantization map of block-wise 8-bit state, as arithmetic.

Dettmers et al. 2022, "8-bit Optimizers via Block-wise Quantization", arXiv:2110.02861: a
value divided by its block's absolute maximum is stored as the index of a nearby code of a
map whose codes are dense near 0 in relative terms (decades) and, within each decade, evenly
spaced. Here, with D decades (7 for the signed map of moments that change sign, 8 for the
unsigned map of non-negative ones), the magnitudes are numbered q = 0 .. 2^D − 2; magnitude
q lies in decade d = ⌊log2(q + 1)⌋ as its step j = q + 2 − 2^d ∈ [1, 2^d]:

    m(q) = 10^(d−D) · (1 + 9j/2^d) = K_d · (2^d + 9j),   K_d = 10^(d−D) / 2^d,

so decade d runs from 10^(d−D) (exclusive; the top of decade d − 1) to 10^(d−D+1), and the
top magnitude is 1, which makes each block's maximum exact. Code indices (uint8): unsigned,
0 is 0 and q + 1 is m(q); signed, 127 is 0 and 127 ± (q + 1) is ±m(q).

Both directions are written as element-wise arithmetic, with the per-decade constants picked
by a chain of selects: a compiler vectorizes that, whereas a table lookup (a gather) and a
binary search (``searchsorted``) run element by element. K_d is rounded to float32 and the
product K_d·(2^d + 9j) once more; those float32 values *are* the codes (:func:`codes`), and
encoding chooses between two neighbouring codes computed the same way, so a value equal to a
code is stored exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

ZERO_SIGNED = 127  # the code index of 0 in the signed map


def decades(signed: bool) -> int:
    """The map's number of decades: 7 signed (255 codes), 8 unsigned (256 codes)."""
    return 7 if signed else 8


def _float32(x: float) -> float:
    return float(torch.tensor(x, dtype=torch.float32))


def _decade_scales(count: int) -> tuple[float, ...]:
    """K_d = 10^(d−D)/2^d for d < D = ``count``, rounded to float32."""
    return tuple(_float32(10.0 ** (d - count) / 2**d) for d in range(count))


# (numbers computed once: a traced step must not build tensors to round them)
_SCALES = {signed: _decade_scales(decades(signed)) for signed in (True, False)}


def magnitude(q: torch.Tensor, signed: bool) -> torch.Tensor:
    """m(q) for magnitude numbers ``q`` (float32, integer-valued, 0 ≤ q ≤ 2^D − 2)."""
    number = q + 1.0  # decade d holds the numbers 2^d .. 2^(d+1) − 1
    powers = tuple(2.0**d for d in range(decades(signed)))
    (scale,) = _by_decade(lambda d: number >= powers[d], _SCALES[signed])
    power = _power_of_two_below(number)
    return scale * (power + 9.0 * (number + 1.0 - power))


_EXPONENT_BITS = -(1 << 23)  # 0xFF800000 as int32: a float32's sign and exponent


def _power_of_two_below(x: torch.Tensor) -> torch.Tensor:
    """2^⌊log2 x⌋ of float32 ``x`` ≥ 1 (0 for 0): its bits but the mantissa's."""
    return (x.view(torch.int32) & _EXPONENT_BITS).view(torch.float32)


def _by_decade(
    reaches: Callable[[int], torch.Tensor], *columns: Sequence[float]
) -> list[torch.Tensor]:
    """Each column's value of every element's decade, where ``reaches(d)`` tells which elements
    are in decade d or above (d ≥ 1): a chain of selects per column."""
    out: list[Any] = [column[0] for column in columns]
    for d in range(1, len(columns[0])):
        above = reaches(d)
        out = [torch.where(above, column[d], o) for column, o in zip(columns, out, strict=True)]
    return out


def codes(signed: bool) -> torch.Tensor:
    """Every code of the map in index order (float32): what each index decodes to."""
    count = 2 ** decades(signed) - 1
    positive = magnitude(torch.arange(count, dtype=torch.float32), signed)
    zero = torch.zeros(1)
    if signed:
        return torch.cat((-positive.flip(0), zero, positive))
    return torch.cat((zero, positive))


_TABLES: dict[tuple[bool, torch.device], torch.Tensor] = {}


def _table(signed: bool, device: torch.device) -> torch.Tensor:
    """What the arithmetic decodes each of the 256 indices to, on ``device``, made once."""
    key = (signed, device)
    if key not in _TABLES:
        every = torch.arange(256, dtype=torch.int32).to(torch.uint8)
        _TABLES[key] = _decoded(every, signed).to(device)
    return _TABLES[key]


def _decade_tops(signed: bool) -> tuple[float, ...]:
    """The largest magnitude of each decade, m(2^(d+1) − 2), as computed by :func:`magnitude`."""
    count = decades(signed)
    tops = magnitude(torch.tensor([2.0 ** (d + 1) - 2 for d in range(count)]), signed)
    return tuple(float(t) for t in tops)


_TOPS = {signed: _decade_tops(signed) for signed in (True, False)}
_RECIPROCALS = {
    signed: tuple(_float32(1.0 / k) for k in _SCALES[signed]) for signed in (True, False)
}


def _encoding_columns(signed: bool) -> tuple[tuple[float, ...], ...]:
    """Per decade: 2^d, K_d and 1/K_d."""
    powers = tuple(2.0**d for d in range(decades(signed)))
    return powers, _SCALES[signed], _RECIPROCALS[signed]


_LOOKUPS: dict[tuple[bool, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _decade_constants(a: torch.Tensor, signed: bool) -> list[torch.Tensor]:
    """The encoding columns (:func:`_encoding_columns`) of the decade of each magnitude ``a``,
    the decade whose top is the first at or above a. Traced, a chain of selects; eagerly, the
    decade's number by a binary search in the tops (the count of tops below a, which is what
    the chain's tests add up to) and a lookup in each column: the same values, in a few
    operations instead of some thirty."""
    tops = _TOPS[signed]
    if torch.compiler.is_compiling():
        return _by_decade(lambda d: a > tops[d - 1], *_encoding_columns(signed))
    key = (signed, a.device)
    if key not in _LOOKUPS:
        bounds = torch.tensor(tops[:-1], dtype=torch.float32, device=a.device)
        table = torch.tensor(_encoding_columns(signed), dtype=torch.float32, device=a.device)
        _LOOKUPS[key] = (bounds, table)
    bounds, table = _LOOKUPS[key]
    decade = torch.bucketize(a, bounds)
    return [torch.take(column, decade) for column in table]


def decode(index: torch.Tensor, signed: bool) -> torch.Tensor:
    """The code (float32, in [−1, 1]) of each uint8 ``index``: traced, arithmetic that a
    compiler fuses into the loop that reads the indices; eagerly, a lookup in a table of what
    that arithmetic gives each index (one operation instead of some forty)."""
    if not torch.compiler.is_compiling():
        return torch.take(_table(signed, index.device), index.long())
    return _decoded(index, signed)


def _decoded(index: torch.Tensor, signed: bool) -> torch.Tensor:
    i = index.to(torch.float32)
    if signed:
        offset = i - ZERO_SIGNED
        value = magnitude(offset.abs() - 1.0, signed)
        return torch.where(offset == 0, 0.0, torch.where(offset < 0, -value, value))
    return torch.where(i == 0, 0.0, magnitude(i - 1.0, signed))


def encode(normalized: torch.Tensor, signed: bool, draw: torch.Tensor | None) -> torch.Tensor:
    """The uint8 index of a code next to each value of ``normalized`` (float32, |x| ≤ 1): of the
    two codes around |x|, the upper with probability (|x| − lower)/(upper − lower) where
    ``draw`` holds uniform numbers in [0, 1) (stochastic rounding: unbiased), else the nearer
    one (ties up)."""
    a = normalized.abs()
    power, scale, reciprocal = _decade_constants(a, signed)
    # the step whose code is the first at or above a (to rounding; the fraction below is
    # clamped, so a neighbour off by one still gives one of the two codes around a)
    step = torch.ceil((a * reciprocal - power) * (1.0 / 9.0))
    step = torch.minimum(torch.clamp(step, min=1.0), power)
    upper = scale * (power + 9.0 * step)
    # the code below: the step before, or for the first step K_d·2^d, which is the top of the
    # decade below up to float32 rounding (it only weighs the choice), and 0 below decade 0
    lower = torch.where(a > _TOPS[signed][0], scale * (power + 9.0 * (step - 1.0)), 0.0)
    # the upper code with probability (a − lower)/(upper − lower) (outside [lower, upper], 0
    # or 1), compared without dividing
    above, width = a - lower, upper - lower
    up = draw * width < above if draw is not None else above >= upper - a
    # the code number, 1 + q: power + step − 1 for the upper code, one less for the lower
    number = power + step - torch.where(up, 1.0, 2.0)
    if signed:
        number = torch.where(normalized < 0, ZERO_SIGNED - number, ZERO_SIGNED + number)
    return number.to(torch.uint8)
