"""Closed-form checks of the float64 reference optimizers that need no peer (SPEC.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

try:
    from reference import REFERENCES
    from reference.ademamix import alpha_schedule, beta3_schedule
    from reference.radam import rho_terms
    from reference.ref import RefOriginal
    from reference.softplus_adam import softplus
except ImportError:  # tests/ imported as a package
    from tests.reference import REFERENCES
    from tests.reference.ademamix import alpha_schedule, beta3_schedule
    from tests.reference.radam import rho_terms
    from tests.reference.ref import RefOriginal
    from tests.reference.softplus_adam import softplus

DTYPE = torch.float64


def rand(gen, *shape, scale=1.0):
    return scale * torch.randn(shape, generator=gen, dtype=DTYPE)


def close(a, b, rtol=1e-12, atol=1e-15):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def channel_rms(x):
    return x.pow(2).mean(dim=tuple(range(1, x.ndim)), keepdim=True).sqrt()


# --------------------------------------------------------------------------------------------
# Registry and the common rules
# --------------------------------------------------------------------------------------------


def test_registry_keys():
    assert set(REFERENCES) == {
        "adam_mini",
        "adam",
        "adamw",
        "radam",
        "adabelief",
        "ademamix",
        "lamb",
        "sadam",
        "sradam",
        "adam_gc",
        "adamw_schedulefree",
        "stable_adam",
        "adam_awd",
        "um",
        "pre_lamb",
        "duv_adam",
        "su_adam",
        "b_adam",
        "adamw_mini_sf",
        "ref_adamw_mini_sf",
    }


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_none_grad_skips_parameter(name):
    """SPEC §0 rule 1: no state, no decay, no step count while the gradient is None."""
    gen = torch.Generator().manual_seed(11)
    a0, b0 = rand(gen, 3, 2, 2, 2), rand(gen, 5)
    grads = [(rand(gen, 3, 2, 2, 2), rand(gen, 5)) for _ in range(6)]
    a, b = a0.clone(), b0.clone()
    opt = REFERENCES[name]([a, b], lr=1e-2, weight_decay=0.1)
    for ga, _ in grads[:3]:
        opt.step([ga, None])
    assert torch.equal(b, b0)
    assert opt.state[1] == {}
    for ga, gb in grads[3:]:
        opt.step([ga, gb])
    if name == "adamw_schedulefree":
        return  # its bias correction and averaging weights use the group-level counter k
    # b's first steps are those of a fresh optimizer (per-parameter step counter)
    b_alone = b0.clone()
    alone = REFERENCES[name]([b_alone], lr=1e-2, weight_decay=0.1)
    for _, gb in grads[3:]:
        alone.step([gb])
    torch.testing.assert_close(b, b_alone, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_maximize_is_negated_gradient(name):
    gen = torch.Generator().manual_seed(12)
    p0 = rand(gen, 4, 3)
    grads = [rand(gen, 4, 3) for _ in range(4)]
    p_max, p_neg = p0.clone(), p0.clone()
    opt_max = REFERENCES[name]([p_max], lr=1e-2, maximize=True)
    opt_neg = REFERENCES[name]([p_neg], lr=1e-2)
    for g in grads:
        opt_max.step([g])
        opt_neg.step([-g])
    torch.testing.assert_close(p_max, p_neg, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_gradients_are_not_modified(name):
    """SPEC §0 rule 3."""
    gen = torch.Generator().manual_seed(13)
    ps = [rand(gen, 2, 3, 2, 2), rand(gen, 4)]
    opt = REFERENCES[name](ps, lr=1e-2, weight_decay=0.1, weight_decay_mode="l2")
    for _ in range(3):
        grads = [rand(gen, 2, 3, 2, 2), rand(gen, 4)]
        copies = [g.clone() for g in grads]
        opt.step(grads)
        for g, c in zip(grads, copies, strict=True):
            assert torch.equal(g, c)


# --------------------------------------------------------------------------------------------
# §1 Adam: the ε̂ ("hat") form
# --------------------------------------------------------------------------------------------


def test_adam_hat_first_step_and_eps_zero():
    gen = torch.Generator().manual_seed(1)
    p0, g = rand(gen, 10), rand(gen, 10, scale=1e-3)
    lr, b2, eps = 1e-2, 0.999, 1e-8
    p = p0.clone()
    REFERENCES["adam"]([p], lr=lr, eps=eps, eps_mode="hat").step([g])
    # t = 1: η·sqrt(1-β2)/(1-β1) · (1-β1) g / (sqrt(1-β2)|g| + ε)
    close(p, p0 - lr * math.sqrt(1 - b2) * g / (math.sqrt(1 - b2) * g.abs() + eps))

    grads = [rand(gen, 10) for _ in range(5)]
    p_hat, p_std = p0.clone(), p0.clone()
    opt_hat = REFERENCES["adam"]([p_hat], lr=lr, eps=0.0, eps_mode="hat")
    opt_std = REFERENCES["adam"]([p_std], lr=lr, eps=0.0)
    for g in grads:
        opt_hat.step([g])
        opt_std.step([g])
    close(p_hat, p_std)


# --------------------------------------------------------------------------------------------
# §5 LAMB guards
# --------------------------------------------------------------------------------------------


def test_lamb_zero_tensor_moves_and_trust_clamp():
    gen = torch.Generator().manual_seed(2)
    g = rand(gen, 6)
    lr, eps = 1e-2, 1e-6
    zero = torch.zeros(6, dtype=DTYPE)
    REFERENCES["lamb"]([zero], lr=lr, eps=eps).step([g])
    close(zero, -lr * g / (g.abs() + eps))  # trust = 1 for ‖θ‖ = 0

    p0 = rand(gen, 6, scale=3.0)
    p = p0.clone()
    REFERENCES["lamb"]([p], lr=lr, trust_clamp=(0.0, 0.5)).step([g])
    assert p0.norm().item() > 0.5
    close((p - p0).norm(), torch.tensor(lr * 0.5, dtype=DTYPE))


# --------------------------------------------------------------------------------------------
# §4 AdEMAMix schedules
# --------------------------------------------------------------------------------------------


def test_ademamix_schedules():
    assert alpha_schedule(1, 8.0, 100) == pytest.approx(0.08, rel=1e-15)
    assert alpha_schedule(100, 8.0, 100) == 8.0
    assert alpha_schedule(500, 8.0, 100) == 8.0
    assert alpha_schedule(3, 8.0, None) == 8.0
    b1, b3 = 0.9, 0.9999
    assert beta3_schedule(0, b1, b3, 100) == pytest.approx(b1, rel=1e-15)
    assert beta3_schedule(100, b1, b3, 100) == pytest.approx(b3, rel=1e-15)
    assert beta3_schedule(1000, b1, b3, 100) == b3
    # half-life 1/ln β is linear in t
    half_lives = [1 / math.log(beta3_schedule(t, b1, b3, 100)) for t in (10, 20, 30)]
    assert half_lives[2] - half_lives[1] == pytest.approx(half_lives[1] - half_lives[0], rel=1e-9)
    no_beta1 = (0.0, 0.999, 0.9999)
    with pytest.raises(ValueError):
        REFERENCES["ademamix"]([torch.zeros(2, dtype=DTYPE)], betas=no_beta1, T_beta3=10)
    with pytest.raises(ValueError):
        REFERENCES["ademamix"]([torch.zeros(2, dtype=DTYPE)], betas=no_beta1, T_alpha=10)
    REFERENCES["ademamix"]([torch.zeros(2, dtype=DTYPE)], betas=no_beta1)  # no scheduler: fine


# --------------------------------------------------------------------------------------------
# §6 SAdam and §7 SRAdam
# --------------------------------------------------------------------------------------------


def test_softplus_exact():
    x = torch.tensor([0.0, 1e-6, 1e-3, 0.02, 0.4, 2.0, 30.0], dtype=DTYPE)
    beta = 50.0
    expected = torch.tensor([np.logaddexp(0.0, beta * xi) / beta for xi in x.tolist()], dtype=DTYPE)
    close(softplus(x, beta), expected, rtol=1e-14, atol=0)


def test_sadam_against_direct_formula():
    gen = torch.Generator().manual_seed(3)
    p0 = rand(gen, 8)
    grads = [rand(gen, 8, scale=0.05) for _ in range(6)]
    lr, (b1, b2), beta = 1e-2, (0.9, 0.999), 50.0
    p = p0.clone()
    opt = REFERENCES["sadam"]([p], lr=lr, betas=(b1, b2), smooth=beta)

    theta, m, v = p0.numpy().copy(), np.zeros(8), np.zeros(8)
    for t, g in enumerate(grads, start=1):
        opt.step([g])
        gn = g.numpy()
        m = b1 * m + (1 - b1) * gn
        v = b2 * v + (1 - b2) * gn**2
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        theta = theta - lr * m_hat / (np.log(1.0 + np.exp(beta * np.sqrt(v_hat))) / beta)
        np.testing.assert_allclose(p.numpy(), theta, rtol=1e-12, atol=0)


def test_sradam_is_momentum_sgd_until_rectification():
    b1, b2 = 0.9, 0.999
    assert rho_terms(b2, 5)[1] < 5.0 < rho_terms(b2, 6)[1]
    gen = torch.Generator().manual_seed(4)
    p0 = rand(gen, 5)
    grads = [rand(gen, 5) for _ in range(6)]
    lr = 1e-2
    p = p0.clone()
    opt = REFERENCES["sradam"]([p], lr=lr, betas=(b1, b2))
    radam_p = p0.clone()
    radam = REFERENCES["radam"]([radam_p], lr=lr, betas=(b1, b2))
    m = torch.zeros(5, dtype=DTYPE)
    for t, g in enumerate(grads, start=1):
        before = p.clone()
        opt.step([g])
        radam.step([g])
        m = b1 * m + (1 - b1) * g
        sgd_step = lr * m / (1 - b1**t)
        if t <= 5:
            close(p, before - sgd_step)
            close(p, radam_p)
        else:
            assert not torch.allclose(p, before - sgd_step, rtol=1e-6, atol=0)


# --------------------------------------------------------------------------------------------
# §9-§15 research optimizers
# --------------------------------------------------------------------------------------------


def test_um_step_rms_equals_lr():
    gen = torch.Generator().manual_seed(5)
    p = rand(gen, 4, 3, 2, 2)
    opt = REFERENCES["um"]([p], lr=3e-3, beta=0.9)
    for _ in range(10):
        before = p.clone()
        opt.step([rand(gen, 4, 3, 2, 2)])
        step_rms = (p - before).pow(2).mean().sqrt()
        close(step_rms, torch.tensor(3e-3, dtype=DTYPE))


def test_stable_adam_scales_by_channel_rms_ratio():
    gen = torch.Generator().manual_seed(6)
    p0 = rand(gen, 4, 3, 2, 2)
    p0[0] *= 5.0
    grads = [rand(gen, 4, 3, 2, 2) for _ in range(6)]
    lr = 0.2  # large, so that the channel RMS moves noticeably
    p, q = p0.clone(), p0.clone()
    stable = REFERENCES["stable_adam"]([p], lr=lr)
    adam = REFERENCES["adam"]([q], lr=lr, betas=(0.9, 0.99))
    init = channel_rms(p0)
    for g in grads:
        ratio = channel_rms(p) / init
        before_p, before_q = p.clone(), q.clone()
        stable.step([g])
        adam.step([g])
        close(p - before_p, ratio * (q - before_q))


def test_adam_awd_keeps_channel_rms():
    gen = torch.Generator().manual_seed(7)
    w0, b0 = rand(gen, 4, 3, 2, 2), rand(gen, 4)
    w, b = w0.clone(), b0.clone()
    opt = REFERENCES["adam_awd"]([w, b], lr=0.1)
    for _ in range(5):
        opt.step([rand(gen, 4, 3, 2, 2), rand(gen, 4)])
        close(channel_rms(w), channel_rms(w0))
    assert not torch.allclose(w, w0)
    assert not torch.allclose(b.abs(), b0.abs())  # the 1-D tensor is not selected


def test_pre_lamb_first_step_and_zero_grad():
    gen = torch.Generator().manual_seed(8)
    p0, g = rand(gen, 6, 5), rand(gen, 6, 5, scale=1e-3)
    lr = 1e-2
    p = p0.clone()
    opt = REFERENCES["pre_lamb"]([p], lr=lr)
    opt.step([g])
    close(p, p0 - lr * g * p0.pow(2).mean().sqrt() / g.pow(2).mean().sqrt())
    before = p.clone()
    opt.step([torch.zeros_like(g)])  # ĝ = 0 guard: m decays, no NaN
    assert torch.isfinite(p).all()
    assert not torch.equal(p, before)


def test_duv_and_su_adam_first_step():
    gen = torch.Generator().manual_seed(9)
    p0, g = rand(gen, 3, 4), rand(gen, 3, 4)
    lr = 1e-2
    p = p0.clone()
    REFERENCES["duv_adam"]([p], lr=lr).step([g])  # r = 1 → v = 0 ; m̂ = g
    close(p, p0 - lr * g)
    p = p0.clone()
    REFERENCES["su_adam"]([p], lr=lr).step([g])  # m̂ = sign(g), v̂ = 0, ε_1 = mean|θ_0|
    close(p, p0 - lr * p0.abs().mean() * torch.sign(g))


def test_duv_adam_division_only_where_m_nonzero():
    p = torch.ones(4, dtype=DTYPE)
    opt = REFERENCES["duv_adam"]([p], lr=1e-2)
    opt.step([torch.tensor([1.0, 0.0, 2.0, 0.0], dtype=DTYPE)])
    opt.step([torch.tensor([1.0, 3.0, 0.0, 0.0], dtype=DTYPE)])
    assert torch.isfinite(p).all()
    # element 1: m_1 = 0 → r = 1 → (r-1)² = 0 ; element 0: r = 1/0.1 = 10
    v = opt.state[0]["exp_avg_sq"]
    assert v[1].item() == 0.0
    assert v[0].item() == pytest.approx(0.999 * 0.0 + 0.001 * 81.0, rel=1e-14)


def test_b_adam_first_two_steps():
    gen = torch.Generator().manual_seed(10)
    p0, g1, g2 = rand(gen, 7), rand(gen, 7), rand(gen, 7)
    lr, (b1, b2), beta = 1e-2, (0.9, 0.99), 50.0
    p = p0.clone()
    opt = REFERENCES["b_adam"]([p], lr=lr)
    opt.step([g1])
    u1 = lr * p0.abs().mean() * g1
    close(p, p0 - u1)
    p1 = p.clone()
    opt.step([g2])
    f = u1.abs().mean()
    c = torch.where(u1.abs() > f, u1, torch.sign(u1) * f)
    phi = (g2 - g1) / c
    v_hat = (1 - b2) * phi / (1 - b2)  # v_2 / (1 - β2^{1})
    m_hat = (b1 * (1 - b1) * g1 + (1 - b1) * g2) / (1 - b1**2)
    sp = torch.tensor(
        [np.logaddexp(0.0, beta * x) / beta for x in v_hat.abs().tolist()], dtype=DTYPE
    )
    close(p, p1 - lr * p1.abs().mean() * m_hat / sp)


# --------------------------------------------------------------------------------------------
# §16 Ref-AdamW-mini-ScheduleFree controller
# --------------------------------------------------------------------------------------------


def _problem(seed=20, n=30):
    gen = torch.Generator().manual_seed(seed)
    params = [rand(gen, 4, 3, 2, 2), rand(gen, 7)]
    grads = [[rand(gen, 4, 3, 2, 2), rand(gen, 7)] for _ in range(n)]
    return params, grads


def test_ref_improve_threshold():
    T = REFERENCES["ref_adamw_mini_sf"].improve_threshold
    assert [T(None), T(1000), T(109_999), T(110_000), T(199_999), T(200_000), T(10**7)] == [
        10,
        10,
        10,
        11,
        19,
        20,
        20,
    ]


def test_ref_injection_window_and_formula():
    params0, grads = _problem()
    ps = [p.clone() for p in params0]
    opt = REFERENCES["ref_adamw_mini_sf"](ps)
    core_ps = [p.clone() for p in params0]
    core = REFERENCES["adamw_mini_sf"](core_ps)
    for t in range(1, 26):
        core_m = None
        if t <= 5:
            core.step(grads[t - 1])
            core_m = [s["exp_avg"].clone() for s in core.state]
        opt.step(grads[t - 1], loss=1.0, max_steps=25)
        if t < 5:
            close(ps, core_ps, rtol=0, atol=0)
        if t == 5:  # θ updated first, then m ← (1-α) m + α θ with α = ref_alpha
            close(ps, core_ps, rtol=0, atol=0)
            for s, m, p in zip(opt.state, core_m, ps, strict=True):
                close(s["exp_avg"], 0.5 * m + 0.5 * p)
    assert [i[0] for i in opt.injections] == list(range(5, 21))
    assert {i[1] for i in opt.injections} == {0.5}


def test_ref_divergence_levels():
    params0, grads = _problem()
    opt = REFERENCES["ref_adamw_mini_sf"]([p.clone() for p in params0], ref_alpha=0.3)
    # loss ratio per step (t ≥ 2): 1 unless listed
    ratios = {8: 1.3, 10: 1.6, 12: 2.5, 14: 1.25, 15: 1.25, 16: 1.25}
    expected = {8: 0.6, 10: 0.8, 12: 1.0, 14: 0.6, 15: 0.8, 16: 1.0}
    loss = 1.0
    for t in range(1, 26):
        loss *= ratios.get(t, 1.0)
        opt.step(grads[t - 1], loss=loss, max_steps=25)
    got = {t: a for t, a, _, _ in opt.injections}
    assert sorted(got) == list(range(5, 21))
    for t in range(5, 21):
        assert got[t] == expected.get(t, 0.3), t
    levels = {t: lvl for t, _, _, lvl in opt.injections}
    assert (levels[8], levels[10], levels[12], levels[14], levels[16]) == (1, 2, 3, 1, 1)


def _overfit_then_recover_val_losses(n):
    rising = [1.0, 1.1, 1.2, 1.3]  # t = 1..4: three strict increases → overfit at t = 4
    return rising + [1.3 - 0.01 * k for k in range(1, n - 3)]  # strictly decreasing from t = 4


def test_ref_overfit_skip_and_recovery_matches_original():
    params0, grads = _problem(n=40)
    vals = _overfit_then_recover_val_losses(40)
    fixed_ps = [p.clone() for p in params0]
    fixed = REFERENCES["ref_adamw_mini_sf"](fixed_ps, legacy_fp32_denominator=True)
    orig_ps = [p.clone() for p in params0]
    orig = RefOriginal(orig_ps)
    for t in range(1, 41):
        for opt in (fixed, orig):
            opt.step(grads[t - 1], loss=1.0, max_steps=100, val_loss=vals[t - 1])
        assert fixed.skip_ema == (4 <= t < 23), t  # skip ends on the call completing 20 decreasing
        close(fixed_ps, orig_ps, rtol=0, atol=0)
    # window 0.2 ≤ t/100 ≤ 0.8 → t = 20..80; skipped until t = 22
    assert [i[0] for i in fixed.injections] == list(range(23, 41))
    assert fixed.injections == orig.injections


def test_ref_original_index_error_and_key_error():
    params0, grads = _problem()
    orig = RefOriginal([p.clone() for p in params0])
    orig.step(grads[0], val_loss=1.0)
    with pytest.raises(IndexError):
        orig.step(grads[1], val_loss=0.9)
    fixed = REFERENCES["ref_adamw_mini_sf"]([p.clone() for p in params0])
    fixed.step(grads[0], val_loss=1.0)
    fixed.step(grads[1], val_loss=0.9)  # corrected scan is bounded by the history

    orig = RefOriginal([p.clone() for p in params0])
    with pytest.raises(KeyError):
        orig.step([grads[0][0], None], loss=1.0)  # progress 0.5 → injects, b has no state
    ps = [p.clone() for p in params0]
    fixed = REFERENCES["ref_adamw_mini_sf"](ps)
    fixed.step([grads[0][0], None], loss=1.0)
    assert torch.equal(ps[1], params0[1])
    assert fixed.state[1] == {}


def test_ref_fp32_denominator_is_close_but_not_exact():
    params0, grads = _problem()
    a_ps, b_ps = [p.clone() for p in params0], [p.clone() for p in params0]
    a = REFERENCES["adamw_mini_sf"](a_ps)
    b = REFERENCES["adamw_mini_sf"](b_ps, legacy_fp32_denominator=True)
    for g in grads[:10]:
        a.step(g)
        b.step(g)
    for x, y, p0 in zip(a_ps, b_ps, params0, strict=True):
        assert not torch.equal(x, y)
        torch.testing.assert_close(x - p0, y - p0, rtol=1e-6, atol=0)


def test_mini_sf_auto_lr_first_steps():
    # no bias correction; η_a = lr·ema/‖g‖ ; first step ema = ‖g‖ → η_a = lr (up to 1e-12)
    gen = torch.Generator().manual_seed(21)
    p0, g1, g2 = rand(gen, 10), rand(gen, 10), rand(gen, 10, scale=0.1)
    lr, (b1, b2), eps, a = 1e-3, (0.9, 0.999), 1e-8, 0.05
    p = p0.clone()
    opt = REFERENCES["adamw_mini_sf"]([p], weight_decay=0.0)
    opt.step([g1])
    n1 = g1.norm().item()
    eta1 = lr * n1 / (n1 + 1e-12)
    m, v = (1 - b1) * g1, (1 - b2) * g1 * g1
    close(p, p0 - eta1 * m / (v.sqrt() + eps))
    p1 = p.clone()
    opt.step([g2])
    n2 = g2.norm().item()
    eta2 = min(1e-2, lr * ((1 - a) * n1 + a * n2) / (n2 + 1e-12))
    m, v = b1 * m + (1 - b1) * g2, b2 * v + (1 - b2) * g2 * g2
    close(p, p1 - eta2 * m / (v.sqrt() + eps))
