"""The exact softplus used by SAdam and friends (torch.nn.Softplus's threshold 20 is not exact)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

# Above βx = 40, log1p(e^{−βx})/β < 2^−62·x: sp_β(x) rounds to x in float32 and float64, so
# torch's thresholded kernel with this threshold is exact there too.
EXACT_THRESHOLD = 40.0

T = TypeVar("T")


def softplus(x: torch.Tensor, beta: Any) -> torch.Tensor:
    """sp_β(x) = log(1 + e^{βx})/β = x + log1p(e^{−βx})/β, exact for x ≥ 0 (Tong et al. 2019).

    A new tensor. With β a Python number (eager) this is torch's softplus kernel (one pass for
    both transcendental functions); a traced β (a 0-d tensor) takes the second form, which the
    compiler fuses. There, in float32, e = e^{−βx} ∈ (0, 1] and log1p(e) are polynomials
    (:func:`exp_float32`, :func:`log1p_unit`) that the compiler inlines: the vectorized exp
    and log are calls, which cost more than the rest of the step and keep the compiler from
    fusing multiplies and adds around them. Float64 keeps exp and log(1 + e), whose rounding
    of 1 + e costs at most half an ulp of 1 in absolute terms.
    """
    if isinstance(beta, (int, float)):
        # The kernel evaluates e^{βx} in every lane; above the threshold it returns x, but an
        # overflowing e^{βx} takes the CPU's slow path, so x is clipped there and restored by
        # the max (sp_β(x) ≥ x).
        clipped = x.clamp(max=EXACT_THRESHOLD / beta)
        out = F.softplus(clipped, beta=beta, threshold=EXACT_THRESHOLD)
        return torch.maximum(out, x, out=out)
    if x.dtype == torch.float64:
        return x + torch.exp(x * -beta).add_(1.0).log_().div_(beta)
    # e^{−βx} is clipped at e^{−40} (sp_β(x) = x there, see EXACT_THRESHOLD) so that it
    # never turns subnormal, which costs a microcode assist per lane.
    two_e = exp_float32(torch.clamp(x * -beta, min=-EXACT_THRESHOLD), scale_log2=1)
    return x + log1p_unit_doubled(two_e) * beta.reciprocal()


# e^r on |r| ≤ ln2/2: the degree-6 Chebyshev interpolant, in monomial form, lowest degree
# first. Its relative error is 2^−28 in exact arithmetic.
EXP_REDUCED_COEFFICIENTS: tuple[float, ...] = (
    0.9999999999999997,
    1.0000000377162146,
    0.5000000047117752,
    0.16666415514648764,
    0.0416663528964736,
    0.00837512639865325,
    0.001394110846129596,
)
# ln 2 split for Cody and Waite's reduction: n·LN2_HIGH is exact in float32 for |n| < 2^15.
LN2_HIGH = 0.693359375
LN2_LOW = -2.1219444005469057e-4
# Adding 1.5·2^23 to a float32 of magnitude below 2^22 rounds it to an integer, which the sum
# keeps in its low mantissa bits.
ROUNDING_SHIFT = 1.5 * 2.0**23


def exp_float32(z: torch.Tensor, scale_log2: int = 0) -> torch.Tensor:
    """2^scale_log2 · e^z for float32 z in [−80, 80] (scale_log2 ∈ {0, 1}), within 2 ulp, as a
    new tensor, in operations that a compiler inlines and vectorizes.

    z = n·ln2 + r with n = round(z/ln2) and |r| ≤ ln2/2; e^r is a polynomial
    (:data:`EXP_REDUCED_COEFFICIENTS`) and 2^(n + scale_log2) is built from its exponent bits:
    t = z/ln2 + 1.5·2^23 + 127 + scale_log2 holds n + 127 + scale_log2 (in [11, 244] here, the
    exponent field of a normal number) in its low mantissa bits, which a shift left by 23 moves
    into the exponent field; t minus the same constant is n. One addition gives both, where
    floor and a conversion would take three operations (and inductor 2.13 converts 32-lane
    vectors, in loops with bfloat16 state, from float to int element by element).
    """
    shift = ROUNDING_SHIFT + 127.0 + scale_log2
    t = z * (1 / math.log(2)) + shift
    n = t - shift
    r = z - n * LN2_HIGH - n * LN2_LOW
    power = (t.view(torch.int32) << 23).view(torch.float32)
    return polynomial(r, EXP_REDUCED_COEFFICIENTS) * power


# log1p(e) on [0, 1] as a polynomial in u = 2e − 1: the degree-9 Chebyshev interpolant, in
# monomial form, lowest degree first. Its error is 2^−27.3 in exact arithmetic; evaluated in
# float32 it adds about one ulp of ln 2. With e^{−βx} it replaces the vectorized log, the
# costliest part of a compiled SAdam step on a CPU; float64 keeps the exact log.
LOG1P_UNIT_COEFFICIENTS: tuple[float, ...] = (
    0.4054651038987732,
    0.33333333461362513,
    -0.05555534547844456,
    0.012345615118789026,
    -0.00308808392488002,
    0.0008235513421449422,
    -0.00022406427025492226,
    6.39349743321975e-05,
    -2.401530174431182e-05,
    7.152816709137519e-06,
)


def log1p_unit(e: torch.Tensor) -> torch.Tensor:
    """log1p(e) for 0 ≤ e ≤ 1 to float32 accuracy (absolute error below 2^−23), as a new
    tensor: :data:`LOG1P_UNIT_COEFFICIENTS` in u = 2e − 1."""
    return log1p_unit_doubled(e * 2.0)


def log1p_unit_doubled(two_e: torch.Tensor) -> torch.Tensor:
    """:func:`log1p_unit` of e given 2e (which :func:`exp_float32` gives at no cost)."""
    return polynomial(two_e - 1.0, LOG1P_UNIT_COEFFICIENTS)


def polynomial(u: torch.Tensor, coefficients: Sequence[float]) -> torch.Tensor:
    """Σ c_i·u^i (lowest degree first) by Estrin's scheme, as a new tensor.

    Pairs c_i + c_{i+1}·u are combined with u², u⁴, u⁸: the chains of dependent operations
    are a third as long as Horner's, and a CPU overlaps them.
    """
    terms: list[Any] = [u * c_odd + c_even for c_even, c_odd in _pairs(coefficients)]
    if len(coefficients) % 2:
        terms.append(coefficients[-1])
    power = u * u  # the power of u that separates consecutive terms
    while len(terms) > 1:
        paired = [low + high * power for low, high in _pairs(terms)]
        terms = paired + terms[2 * len(paired) :]  # an odd last term waits for the next level
        if len(terms) > 1:
            power = power * power
    return terms[0]


def _pairs(items: Sequence[T]) -> list[tuple[T, T]]:
    """(items[0], items[1]), (items[2], items[3]), ...; an odd last item is left out."""
    return list(zip(items[0::2], items[1::2], strict=False))


def softplus_times(x: torch.Tensor, c: Any, beta: Any) -> torch.Tensor:
    """c·sp_β(x/c) = sp_{β/c}(x) for c > 0, as a new tensor: no pass to divide x by c."""
    return softplus(x, beta / c)
