"""Validate the float64 reference optimizers against the public peers named in SPEC.md.

Each case runs the reference and the peer for 25 steps on the same start point and the same
random gradients (fixed torch.Generator) and compares every step's parameters at rtol 1e-10,
atol 1e-12. Only configurations where SPEC.md says the peer agrees with the adamkit rule are used.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

try:
    from reference import REFERENCES
except ImportError:  # tests/ imported as a package
    from tests.reference import REFERENCES

DTYPE = torch.float64
N_STEPS = 25
RTOL = 1e-10
ATOL = 1e-12
SHAPES = [(4, 3, 2, 2), (7,), (5, 6)]  # a 4-D conv-like weight, a 1-D bias, a 2-D matrix


def make_problem(seed: int = 0, param_scale: float = 1.0):
    """Start point and a 25-step gradient sequence with per-step varying magnitudes."""
    gen = torch.Generator().manual_seed(seed)
    params = [param_scale * torch.randn(s, generator=gen, dtype=DTYPE) for s in SHAPES]
    grads = []
    for _ in range(N_STEPS):
        step = []
        for s in SHAPES:
            scale = torch.exp(0.7 * torch.randn((), generator=gen, dtype=DTYPE))
            step.append(scale * torch.randn(s, generator=gen, dtype=DTYPE))
        grads.append(step)
    return params, grads


def drop_some(grads: list[list[torch.Tensor]]) -> list[list[torch.Tensor | None]]:
    """The 1-D parameter has no gradient on steps 1-3 and 10; the 2-D one on step 7."""
    out = []
    for i, step in enumerate(grads, start=1):
        step = list(step)
        if i in (1, 2, 3, 10):
            step[1] = None
        if i == 7:
            step[2] = None
        out.append(step)
    return out


def decay_mode(weight_decouple: bool, fixed_decay: bool) -> str:
    """weight_decay_mode equivalent to the peers' weight_decouple / fixed_decay flags."""
    if not weight_decouple:
        return "l2"
    return "fixed" if fixed_decay else "decoupled"


def run_reference(name: str, params0, grads, **hparams) -> list[list[torch.Tensor]]:
    params = [p.clone() for p in params0]
    opt = REFERENCES[name](params, **hparams)
    history = []
    for step_grads in grads:
        opt.step(step_grads)
        history.append([p.clone() for p in params])
    return history


def run_peer(
    make_opt: Callable[[list[torch.Tensor]], torch.optim.Optimizer],
    params0,
    grads,
    grad_transform: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    before: Callable[[torch.optim.Optimizer], None] | None = None,
) -> tuple[list[list[torch.Tensor]], list[torch.Tensor], torch.optim.Optimizer]:
    params = [p.clone().requires_grad_(True) for p in params0]
    opt = make_opt(params)
    if before is not None:
        before(opt)
    history = []
    for step_grads in grads:
        for p, g in zip(params, step_grads, strict=True):
            if g is None:
                p.grad = None
            else:
                g = g.clone()  # peers may modify p.grad in place
                if grad_transform is not None:
                    g = grad_transform(g, p.detach())
                p.grad = g
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history, params, opt


def assert_same_trajectory(ref_hist, peer_hist) -> None:
    assert len(ref_hist) == len(peer_hist) == N_STEPS
    for t, (ref_params, peer_params) in enumerate(zip(ref_hist, peer_hist, strict=True), start=1):
        for i, (a, b) in enumerate(zip(ref_params, peer_params, strict=True)):
            torch.testing.assert_close(
                a, b, rtol=RTOL, atol=ATOL, msg=lambda m, t=t, i=i: f"step {t}, param {i}: {m}"
            )


# --------------------------------------------------------------------------------------------
# §1 Adam / AdamW / AMSGrad vs torch.optim
# --------------------------------------------------------------------------------------------

ADAM_CASES = [
    ("adam", dict(lr=1e-2), dict(lr=1e-2)),
    ("adam", dict(lr=1e-2, amsgrad=True), dict(lr=1e-2, amsgrad=True)),
    ("adam", dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, weight_decay=0.1)),
    (
        "adam",
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True, maximize=True),
        dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True, maximize=True),
    ),
    ("adamw", dict(lr=1e-2), dict(lr=1e-2)),  # both default to weight_decay=1e-2, decoupled
    ("adamw", dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, weight_decay=0.1)),
    (
        "adamw",
        dict(lr=1e-2, weight_decay=0.1, amsgrad=True),
        dict(lr=1e-2, weight_decay=0.1, amsgrad=True),
    ),
    (
        "adam",
        dict(lr=1e-2, weight_decay=0.1, weight_decay_mode="decoupled"),
        dict(lr=1e-2, weight_decay=0.1),
    ),
]


@pytest.mark.parametrize(("name", "ref_hp", "peer_hp"), ADAM_CASES)
@pytest.mark.parametrize("skip_grads", [False, True], ids=["dense", "none_grads"])
def test_adam_family_vs_torch(name, ref_hp, peer_hp, skip_grads):
    params0, grads = make_problem(1)
    if skip_grads:
        grads = drop_some(grads)
    decoupled = name == "adamw" or ref_hp.get("weight_decay_mode") == "decoupled"
    peer_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = run_reference(name, params0, grads, **ref_hp)
    peer, _, _ = run_peer(lambda ps: peer_cls(ps, **peer_hp), params0, grads)
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §2 RAdam vs torch.optim.RAdam
# --------------------------------------------------------------------------------------------

RADAM_CASES = [
    (dict(lr=1e-2), dict(lr=1e-2)),
    (dict(lr=1e-2, weight_decay=0.1), dict(lr=1e-2, weight_decay=0.1)),
    (
        dict(lr=1e-2, weight_decay=0.1, weight_decay_mode="decoupled"),
        dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True),
    ),
    (
        dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-6, maximize=True),
        dict(lr=1e-2, betas=(0.9, 0.99), eps=1e-6, maximize=True),
    ),
]


@pytest.mark.parametrize(("ref_hp", "peer_hp"), RADAM_CASES)
@pytest.mark.parametrize("skip_grads", [False, True], ids=["dense", "none_grads"])
def test_radam_vs_torch(ref_hp, peer_hp, skip_grads):
    params0, grads = make_problem(2)
    if skip_grads:
        grads = drop_some(grads)
    ref = run_reference("radam", params0, grads, **ref_hp)
    peer, _, _ = run_peer(lambda ps: torch.optim.RAdam(ps, **peer_hp), params0, grads)
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §3 AdaBelief vs adabelief-pytorch 0.2.1 (never amsgrad together with rectify)
# --------------------------------------------------------------------------------------------

# (weight_decouple, fixed_decay, rectify, amsgrad, degenerated_to_sgd, eps, weight_decay)
ADABELIEF_CASES = [
    (True, False, True, False, True, 1e-16, 0.1),
    (True, True, True, False, True, 1e-16, 0.01),
    (False, False, True, False, True, 1e-8, 0.1),
    (True, False, True, False, False, 1e-16, 0.1),
    (True, False, False, False, True, 1e-8, 0.1),
    (True, False, False, True, True, 1e-8, 0.1),
    (False, False, False, True, True, 1e-16, 0.1),
    (True, True, False, False, True, 1e-12, 0.01),
]


@pytest.mark.parametrize(
    ("weight_decouple", "fixed_decay", "rectify", "amsgrad", "degenerated_to_sgd", "eps", "wd"),
    ADABELIEF_CASES,
)
def test_adabelief_vs_adabelief_pytorch(
    weight_decouple, fixed_decay, rectify, amsgrad, degenerated_to_sgd, eps, wd
):
    adabelief_pytorch = pytest.importorskip("adabelief_pytorch")
    params0, grads = make_problem(3)
    mode = decay_mode(weight_decouple, fixed_decay)
    common = dict(lr=1e-2, betas=(0.9, 0.999), eps=eps, weight_decay=wd, amsgrad=amsgrad)
    ref = run_reference(
        "adabelief",
        params0,
        grads,
        weight_decay_mode=mode,
        rectify=rectify,
        degenerated_to_sgd=degenerated_to_sgd,
        **common,
    )
    peer, _, _ = run_peer(
        lambda ps: adabelief_pytorch.AdaBelief(
            ps,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            rectify=rectify,
            degenerated_to_sgd=degenerated_to_sgd,
            print_change_log=False,
            **common,
        ),
        params0,
        grads,
    )
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §4 AdEMAMix vs pytorch_optimizer.AdEMAMix (t_alpha_beta3 = T_alpha = T_beta3)
# --------------------------------------------------------------------------------------------

# (T, betas, alpha, weight_decay, weight_decouple, fixed_decay)
ADEMAMIX_CASES = [
    (None, (0.9, 0.999, 0.9999), 5.0, 0.0, True, False),
    (10, (0.9, 0.999, 0.9999), 5.0, 0.1, True, False),
    (40, (0.9, 0.999, 0.9999), 8.0, 0.1, False, False),
    (10, (0.9, 0.99, 0.999), 2.0, 0.01, True, True),
    (20, (0.8, 0.999, 0.99), 5.0, 0.0, True, False),
]


@pytest.mark.parametrize(
    ("T", "betas", "alpha", "wd", "weight_decouple", "fixed_decay"), ADEMAMIX_CASES
)
@pytest.mark.parametrize("foreach", [False, True])
def test_ademamix_vs_pytorch_optimizer(T, betas, alpha, wd, weight_decouple, fixed_decay, foreach):
    pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer import AdEMAMix

    params0, grads = make_problem(4)
    mode = decay_mode(weight_decouple, fixed_decay)
    ref = run_reference(
        "ademamix",
        params0,
        grads,
        lr=1e-2,
        betas=betas,
        alpha=alpha,
        T_alpha=T,
        T_beta3=T,
        eps=1e-8,
        weight_decay=wd,
        weight_decay_mode=mode,
    )
    peer, _, _ = run_peer(
        lambda ps: AdEMAMix(
            ps,
            lr=1e-2,
            betas=betas,
            alpha=alpha,
            t_alpha_beta3=T,
            eps=1e-8,
            weight_decay=wd,
            weight_decouple=weight_decouple,
            fixed_decay=fixed_decay,
            foreach=foreach,
        ),
        params0,
        grads,
    )
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §5 LAMB vs pytorch_optimizer.Lamb(adam_debias=True), weight_decay = 0
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0.0, 1e-16])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.8, 0.99)])
def test_lamb_vs_pytorch_optimizer(eps, betas):
    # The peer does not bias-correct inside u and adds eps to ‖u‖; both vanish from the
    # trust-ratio-normalised step only for a negligible eps. Its ‖θ‖ clamp at 10 is not reached.
    pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer import Lamb

    params0, grads = make_problem(5, param_scale=0.3)
    ref = run_reference("lamb", params0, grads, lr=1e-2, betas=betas, eps=eps, weight_decay=0.0)
    peer, _, _ = run_peer(
        lambda ps: Lamb(ps, lr=1e-2, betas=betas, eps=eps, weight_decay=0.0, adam_debias=True),
        params0,
        grads,
    )
    assert max(p.norm().item() for step in peer for p in step) < 10.0
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §8 Adam_GCC vs centralize_gradient + torch.optim.Adam
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gc_conv_only", [True, False])
@pytest.mark.parametrize(
    ("wd", "mode"), [(0.0, "decoupled"), (0.1, "l2"), (0.1, "decoupled")], ids=str
)
def test_adam_gc_vs_centralize_gradient(gc_conv_only, wd, mode):
    pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer.optimizer.gradient_centralization import centralize_gradient

    def transform(g, p):
        # L2 decay first (official GC order), then centralise; the peer Adam gets no L2 decay
        if mode == "l2":
            g = g + wd * p
        centralize_gradient(g, gc_conv_only=gc_conv_only)
        return g

    params0, grads = make_problem(6)
    ref = run_reference(
        "adam_gc",
        params0,
        grads,
        lr=1e-2,
        weight_decay=wd,
        weight_decay_mode=mode,
        gc_conv_only=gc_conv_only,
    )
    if mode == "decoupled":

        def make(ps):
            return torch.optim.AdamW(ps, lr=1e-2, weight_decay=wd)
    else:

        def make(ps):
            return torch.optim.Adam(ps, lr=1e-2)

    peer, _, _ = run_peer(make, params0, grads, grad_transform=transform)
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §9/§10: with nothing selected, Stable_Adam and Adam_AWD are Adam with betas=(0.9, 0.99)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stable_adam", "adam_awd"])
def test_unselected_research_adams_vs_torch_adam(name):
    params0, grads = make_problem(7)
    ref = run_reference(name, params0, grads, lr=1e-2, scale_invariant=lambda p: False)
    peer, _, _ = run_peer(
        lambda ps: torch.optim.Adam(ps, lr=1e-2, betas=(0.9, 0.99), eps=1e-8), params0, grads
    )
    assert_same_trajectory(ref, peer)


# --------------------------------------------------------------------------------------------
# §17 schedule-free AdamW vs schedulefree 1.4.1 AdamWScheduleFree (train mode)
# --------------------------------------------------------------------------------------------

SCHEDULEFREE_CASES = [
    dict(lr=1e-2, warmup_steps=0, weight_decay=0.0),
    dict(lr=1e-2, warmup_steps=5, weight_decay=0.1),
    dict(lr=2e-2, betas=(0.8, 0.99), warmup_steps=8, weight_decay=0.05, r=1.0),
    dict(lr=1e-2, warmup_steps=3, weight_decay=0.1, weight_lr_power=0.0, eps=1e-6),
]


@pytest.mark.parametrize("hp", SCHEDULEFREE_CASES)
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("skip_grads", [False, True], ids=["dense", "none_grads"])
def test_schedulefree_vs_package(hp, foreach, skip_grads):
    schedulefree = pytest.importorskip("schedulefree")
    params0, grads = make_problem(8)
    if skip_grads:
        grads = drop_some(grads)

    ref_params = [p.clone() for p in params0]
    ref_opt = REFERENCES["adamw_schedulefree"](ref_params, **hp)
    ref_hist = []
    for step_grads in grads:
        ref_opt.step(step_grads)
        ref_hist.append([p.clone() for p in ref_params])

    peer_hist, peer_params, peer_opt = run_peer(
        lambda ps: schedulefree.AdamWScheduleFree(ps, foreach=foreach, **hp),
        params0,
        grads,
        before=lambda opt: opt.train(),
    )
    assert_same_trajectory(ref_hist, peer_hist)

    # the evaluation point x: the package writes it into the parameters in eval mode
    x_ref = ref_opt.eval_params()
    torch.testing.assert_close(ref_params, peer_hist[-1], rtol=RTOL, atol=ATOL)  # unchanged
    peer_opt.eval()
    for a, b in zip(x_ref, peer_params, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=RTOL, atol=ATOL)
