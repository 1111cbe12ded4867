"""Degenerate cases where one optimizer must reduce exactly to another or to a closed form."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import assert_close_lists, grad_stream, make_params, run

import adamkit


def test_ademamix_with_alpha_zero_is_adamw() -> None:
    a, b = make_params(), make_params()
    grads = grad_stream(a)
    run(adamkit.AdEMAMix(a, lr=1e-2, alpha=0.0, weight_decay=0.1), a, grads, 25)
    run(adamkit.AdamW(b, lr=1e-2, weight_decay=0.1), b, grads, 25)
    assert_close_lists([p.detach() for p in a], [p.detach() for p in b])


def test_lamb_with_unit_trust_ratio_takes_adams_direction() -> None:
    # trust_clamp=(0, 0) clips ‖θ‖ to 0, where the guard sets the trust ratio to 1.
    a, b = make_params(), make_params()
    grads = grad_stream(a)
    run(adamkit.LAMB(a, lr=1e-2, trust_clamp=(0.0, 0.0)), a, grads, 25)
    run(adamkit.Adam(b, lr=1e-2, eps=1e-6), b, grads, 25)
    assert_close_lists([p.detach() for p in a], [p.detach() for p in b])


def test_lamb_on_a_zero_tensor_takes_adams_first_step_then_moves_on() -> None:
    p = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    q = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    g = torch.linspace(-1, 1, 6, dtype=torch.float64)
    p.grad, q.grad = g.clone(), g.clone()
    adamkit.LAMB([p], lr=1e-2).step()
    adamkit.Adam([q], lr=1e-2, eps=1e-6).step()
    torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-12, atol=0)
    assert p.detach().abs().sum() > 0  # the seed's LAMB never moved a zero-initialised tensor


def test_radam_below_its_threshold_is_bias_corrected_momentum_sgd() -> None:
    params = make_params()
    grads = grad_stream(params)
    opt = adamkit.RAdam(params, lr=1e-2, betas=(0.8, 0.999), rectify_threshold=1e9)
    run(opt, params, grads, 25)
    expected = make_params()
    momentum = [torch.zeros_like(p) for p in expected]
    for t in range(1, 26):
        for p, m, g in zip(expected, momentum, grads(t - 1), strict=True):
            m.mul_(0.8).add_(g, alpha=0.2)
            p.data.sub_(1e-2 * m / (1 - 0.8**t))
    assert_close_lists([p.detach() for p in params], [p.detach() for p in expected])


def test_radam_first_five_steps_are_momentum_sgd_for_default_beta2() -> None:
    # ρ_5 = 4.996 < 5 for β2 = 0.999: torch and the paper's code agree on 5 SGD steps.
    params = make_params()
    grads = grad_stream(params)
    opt = adamkit.RAdam(params, lr=1e-2)
    run(opt, params, grads, 5)
    expected = make_params()
    momentum = [torch.zeros_like(p) for p in expected]
    for t in range(1, 6):
        for p, m, g in zip(expected, momentum, grads(t - 1), strict=True):
            m.mul_(0.9).add_(g, alpha=0.1)
            p.data.sub_(1e-2 * m / (1 - 0.9**t))
    assert_close_lists([p.detach() for p in params], [p.detach() for p in expected])


def test_adabelief_without_rectify_on_a_constant_gradient_matches_its_closed_form() -> None:
    lr, b1, b2, eps, c, steps = 1e-2, 0.9, 0.999, 1e-8, 0.7, 25
    p = torch.full((3,), 2.0, dtype=torch.float64, requires_grad=True)
    opt = adamkit.AdaBelief([p], lr=lr, betas=(b1, b2), eps=eps, rectify=False)
    for _ in range(steps):
        p.grad = torch.full((3,), c, dtype=torch.float64)
        opt.step()
    # m_t = c(1 − β1^t), so g − m_t = c β1^t and
    # s_t = (1 − β2) c² β2^t Σ_{j≤t} (β1²/β2)^j + ε (1 − β2^t)/(1 − β2).
    theta = 2.0
    r = b1 * b1 / b2
    for t in range(1, steps + 1):
        s_t = (1 - b2) * c * c * b2**t * r * (1 - r**t) / (1 - r) + eps * (1 - b2**t) / (1 - b2)
        theta -= lr * c / (math.sqrt(s_t / (1 - b2**t)) + eps)
    torch.testing.assert_close(
        p.detach(), torch.full((3,), theta, dtype=torch.float64), rtol=1e-12, atol=0
    )


def test_sadam_first_step_matches_the_exact_softplus_formula() -> None:
    p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor([0.5, 3.0], dtype=torch.float64)
    adamkit.SAdam([p], lr=0.1, smooth=50.0).step()
    v_hat = torch.tensor([0.25, 9.0], dtype=torch.float64)
    sp = v_hat.sqrt() + torch.log1p(torch.exp(-50.0 * v_hat.sqrt())) / 50.0
    expected = (
        torch.tensor([1.0, -2.0], dtype=torch.float64)
        - 0.1 * torch.tensor([0.5, 3.0], dtype=torch.float64) / sp
    )
    torch.testing.assert_close(p.detach(), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("beta", [50.0, 0.5, 1000.0, 3e4])
def test_softplus_is_within_two_and_a_half_ulp_in_float32_in_every_form(beta: float) -> None:
    # The eager form (torch's kernel, β a number) and the traced form (β a 0-d tensor,
    # polynomials for exp and log1p), run eagerly and compiled as adamkit compiles (fused
    # multiply-adds), against float64: densely where βx < 45, then from x = 0 to far past the
    # threshold. The traced form's error is the polynomial's rounding near log1p(1) and the
    # rounding of 1/β (up to 2.2 units of 2^-23 relative).
    from adamkit.core.graphs import INDUCTOR_OPTIONS
    from adamkit.parts.softplus import softplus

    dense = torch.linspace(0.0, 45.0, 300_001)
    x = torch.cat([dense, torch.logspace(-12, 3, 20001)]) / beta
    x64 = x.double()
    exact = x64 + torch.log1p(torch.exp(-beta * x64)) / beta
    ulp = torch.finfo(torch.float32).eps * exact.abs()
    traced = torch.compile(softplus, fullgraph=True, options=INDUCTOR_OPTIONS)
    forms = (softplus(x, beta), softplus(x, torch.tensor(beta)), traced(x, torch.tensor(beta)))
    for out in forms:
        assert out.dtype == torch.float32
        assert ((out.double() - exact).abs() <= 2.5 * ulp).all()


def test_power_of_two_polynomial_is_within_two_ulp() -> None:
    # The reduced polynomials (in float64) are within 2^-28 of e^r and of 2^r; the float32
    # 2^w built on the second is within 2 units of 2^-23 relative of 2^w from -120 to 120,
    # eager and compiled.
    from adamkit.core.graphs import INDUCTOR_OPTIONS
    from adamkit.parts.softplus import (
        EXP_REDUCED_COEFFICIENTS,
        POW2_REDUCED_COEFFICIENTS,
        polynomial,
        pow2_float32,
    )

    r = torch.linspace(-math.log(2) / 2, math.log(2) / 2, 100_001, dtype=torch.float64)
    assert ((polynomial(r, EXP_REDUCED_COEFFICIENTS) / torch.exp(r) - 1).abs() < 2.0**-28).all()
    half = torch.linspace(-0.5, 0.5, 100_001, dtype=torch.float64)
    assert ((polynomial(half, POW2_REDUCED_COEFFICIENTS) / 2.0**half - 1).abs() < 2.0**-28).all()
    w = torch.linspace(-120.0, 120.0, 1_000_001)
    exact = 2.0 ** w.double()
    compiled = torch.compile(pow2_float32, fullgraph=True, options=INDUCTOR_OPTIONS)
    compiled_doubled = torch.compile(
        lambda w: pow2_float32(w, scale_log2=1), fullgraph=True, options=INDUCTOR_OPTIONS
    )
    halved = (pow2_float32(w, scale_log2=1) / 2, compiled_doubled(w) / 2)  # 2·2^w, halved exactly
    for out in (pow2_float32(w), compiled(w), *halved):
        assert out.dtype == torch.float32
        assert ((out.double() / exact - 1).abs() <= 2 * 2.0**-23).all()


def test_softplus_traced_in_float64_keeps_the_exact_log() -> None:
    from adamkit.parts.softplus import softplus

    x = torch.cat([torch.zeros(1), torch.logspace(-12, 3, 2001, dtype=torch.float64)]) / 50.0
    exact = x + torch.log1p(torch.exp(-50.0 * x)) / 50.0
    torch.testing.assert_close(softplus(x, torch.tensor(50.0)), exact, rtol=4e-16, atol=0)


def test_log1p_polynomial_error_on_the_unit_interval() -> None:
    # The interpolant itself (in float64) is within 2^-27 of log1p; evaluated in float32,
    # within 2^-23 absolute (one ulp of ln 2 is 2^-24).
    from adamkit.parts.softplus import log1p_unit

    e = torch.linspace(0.0, 1.0, 1_000_001, dtype=torch.float64)
    assert (log1p_unit(e) - torch.log1p(e)).abs().max() < 2.0**-27
    e32 = e.float()
    error = (log1p_unit(e32).double() - torch.log1p(e32.double())).abs().max()
    assert error < 2.0**-23


@pytest.mark.slow
def test_guarded_helpers_give_the_same_values_compiled_and_eager() -> None:
    # parts.safe takes other (vectorizable) forms when traced; the values must not change
    from adamkit.parts.safe import at_most_, finite_or_zeros, safe_div_finite, sign_floor

    big = torch.finfo(torch.float32).max
    x = torch.tensor([0.0, 1.5, big, math.inf, math.nan, 2.0**-140])
    num = torch.tensor([1.0, -2.0, 3.0, 0.0, 5.0, 1e30])
    den = torch.tensor([0.0, 4.0, -0.0, 2.0, 1e-30, 1e-30])
    u = torch.tensor([0.0, -0.0, 0.25, -0.25, -3.0, -math.inf])
    floor = torch.tensor(0.5)

    def both(x: torch.Tensor, num: torch.Tensor, den: torch.Tensor) -> tuple[torch.Tensor, ...]:
        kept = finite_or_zeros(num, torch.tensor(True))
        dropped = finite_or_zeros(x, torch.tensor(False))  # x holds inf and NaN
        return (
            at_most_(x.clone(), big),
            safe_div_finite(num, den, 1.0),
            sign_floor(u, floor),
            kept,
            dropped,
        )

    eager = both(x, num, den)
    compiled = torch.compile(both, fullgraph=True, dynamic=True)(x, num, den)
    assert eager[0].tolist() == [0.0, 1.5, big, big, big, 2.0**-140]
    assert eager[1].tolist() == [1.0, -0.5, 1.0, 0.0, (num[4] / den[4]).item(), math.inf]
    assert eager[2].tolist() == [0.5, 0.5, 0.5, -0.5, -3.0, -math.inf]  # −0 counts as +
    assert eager[3].tolist() == num.tolist() and eager[4].tolist() == [0.0] * 6
    assert sign_floor(torch.tensor([math.nan]), floor).isnan().all()
    for a, b in zip(eager, compiled, strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_traced_ema_is_lerp_bit_for_bit(dtype: torch.dtype) -> None:
    # compiled, ema_ writes lerp's formula for weights below 1/2 instead of calling lerp
    from adamkit.core.graphs import INDUCTOR_OPTIONS
    from adamkit.parts.moments import ema_

    compiled = torch.compile(ema_, fullgraph=True, dynamic=True, options=INDUCTOR_OPTIONS)
    gen = torch.Generator().manual_seed(0)
    m, g = (torch.randn(1003, generator=gen, dtype=dtype) for _ in range(2))
    for beta in (0.6, 0.9, 0.999):
        b = torch.tensor(beta, dtype=dtype)
        assert torch.equal(compiled(m.clone(), g, b), m.clone().lerp_(g, 1 - b))


@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (1 << 18,), ((1 << 18) + 1,), (700, 1500)])
def test_mean_abs_in_chunks_equals_the_one_norm(shape: tuple[int, ...]) -> None:
    # the eager CPU mean|x| sums |x| chunk by chunk; it must be ‖x‖₁/n, also for a transposed x
    from adamkit.core import reduce

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    for view in (x, x.t() if x.ndim == 2 else x):
        expected = torch.linalg.vector_norm(view, 1) / max(1, view.numel())
        got = reduce.mean_abs(view)
        assert got.shape == () and got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-13, atol=0)
