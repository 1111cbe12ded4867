"""The exact softplus used by SAdam and friends (torch.nn.Softplus's threshold 20 is not exact)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

# Above βx = 40, log1p(e^{−βx})/β < 2^−62·x: sp_β(x) rounds to x in float32 and float64, so
# clipping βx at 40 changes no result.
EXACT_THRESHOLD = 40.0


def softplus(x: torch.Tensor, beta: Any) -> torch.Tensor:
    """sp_β(x) = log(1 + e^{βx})/β = x + log(1 + e^{−βx})/β, exact for x ≥ 0 (Tong et al.
    2019), as a new tensor.

    e^{−βx} ∈ (0, 1] never overflows. In float32 it is 2^w with w = −βx·log2(e), one multiply
    by a per-step number. Then:

    * eagerly (β a Python number) and in float64, the log of 1 + e^{−βx} by torch's kernels,
      in place on one temporary; rounding 1 + e^{−βx} costs at most half an ulp of 1, under
      half an ulp of β·sp_β(x) ≥ ln 2. Float32 takes torch's exp2, cheaper than its exp
      here, and both beat torch's softplus kernel (e^{+βx} and log1p), which also needs its
      input clipped where e^{βx} overflows (the CPU's slow path); the README gives the times;
    * traced in float32 (β a 0-d tensor), 2^w and log1p of it are polynomials
      (:func:`pow2_float32`, :func:`log1p_unit`) that the compiler inlines: the vectorized exp
      and log are calls, which cost more than the rest of the step and keep the compiler
      from fusing multiplies and adds around them.

    In float32, w's rounding (2^-24 of |w|, twice where β·log2(e) is rounded first) changes
    e^{−βx} by a factor of at most 1 + 2^-23·βx, hence log(1 + e^{−βx}) by at most
    2^-23·βx·e^{−βx} ≤ 2^-23/e, about half a unit of 2^-23 of β·sp_β(x) ≥ ln 2
    (tests/test_equivalences.py bounds the whole error).
    """
    # e^{−βx} is clipped at e^{−40} (sp_β(x) = x there, see EXACT_THRESHOLD) so that it never
    # turns subnormal, which costs a microcode assist per lane.
    if x.dtype == torch.float64:
        e = torch.mul(x, -beta).clamp_(min=-EXACT_THRESHOLD).exp_()
        return x + e.add_(1.0).log_().div_(beta)
    if isinstance(beta, (int, float)):
        w = torch.mul(x, -beta * LOG2_E).clamp_(min=-EXACT_THRESHOLD * LOG2_E)
        return x + w.exp2_().add_(1.0).log_().div_(beta)
    w = torch.clamp(x * (-beta * LOG2_E), min=-EXACT_THRESHOLD * LOG2_E)
    return x + log1p_unit_doubled(pow2_float32(w, scale_log2=1)) * beta.reciprocal()


LOG2_E = 1 / math.log(2)
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
# 2^r = e^{r·ln2} on |r| ≤ 1/2: the same interpolant in r (so the same error).
POW2_REDUCED_COEFFICIENTS: tuple[float, ...] = tuple(
    c * math.log(2) ** i for i, c in enumerate(EXP_REDUCED_COEFFICIENTS)
)
# Adding 1.5·2^23 to a float32 of magnitude below 2^22 rounds it to an integer, which the sum
# keeps in its low mantissa bits.
ROUNDING_SHIFT = 1.5 * 2.0**23


def pow2_float32(w: torch.Tensor, scale_log2: int = 0) -> torch.Tensor:
    """2^(w + scale_log2) for float32 w in [−120, 120] (scale_log2 ∈ {0, 1}), within 2 ulp, as
    a new tensor, in operations that a compiler inlines and vectorizes.

    w = n + r with n = round(w) and |r| ≤ 1/2 (r exact: w and n are within a factor of two, or
    n = 0); 2^r is a polynomial (:data:`POW2_REDUCED_COEFFICIENTS`) and 2^(n + scale_log2) is
    built from its exponent bits: t = w + 1.5·2^23 + 127 + scale_log2 holds n + 127 +
    scale_log2 (in [7, 248] here, the exponent field of a normal number) in its low mantissa
    bits, which a shift left by 23 moves into the exponent field; t minus the same constant is
    n. One addition gives both, where floor and a conversion would take three operations (and
    inductor 2.13 converts 32-lane vectors, in loops with bfloat16 state, from float to int
    element by element). Working in base 2 spares the two multiply-adds of a reduction by
    ln 2 (Cody and Waite's) that e^z needs; the caller folds log2(e) into its own multiply.
    """
    shift = ROUNDING_SHIFT + 127.0 + scale_log2
    t = w + shift
    r = w - (t - shift)
    power = (t.view(torch.int32) << 23).view(torch.float32)
    return polynomial(r, POW2_REDUCED_COEFFICIENTS) * power


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
    """:func:`log1p_unit` of e given 2e (which :func:`pow2_float32` gives at no cost)."""
    return polynomial(two_e - 1.0, LOG1P_UNIT_COEFFICIENTS)


def polynomial(u: torch.Tensor, coefficients: Sequence[float]) -> torch.Tensor:
    """Σ c_i·u^i (lowest degree first) by Horner's rule, as a new tensor: one multiply-add per
    degree, the fewest operations.

    Its chain of dependent operations is long, and a core overlaps the chains of consecutive
    vectors only as far as its window of instructions in flight reaches, so both the number
    of operations and the chain's length count. Estrin's scheme (terms paired with u², u⁴,
    ..., chains a third as long at a third more operations) made SAdam's step slower; a
    second-order Horner scheme (even and odd terms as two chains in u²) made it about 3%
    faster on one thread, but multiplied the code generation of B_Adam's softplus (the
    README's Speed section gives the step times on a Zen 3, and that count).
    """
    out: Any = coefficients[-1]
    for c in reversed(coefficients[:-1]):
        out = u * out + c
    return out


def softplus_times(x: torch.Tensor, c: Any, beta: Any) -> torch.Tensor:
    """c·sp_β(x/c) = sp_{β/c}(x) for c > 0, as a new tensor: no pass to divide x by c."""
    return softplus(x, beta / c)
