"""The Ref family: controller tables, trajectories against the references (corrected and the
original's), checkpoints of the controller mid-training, AMP skipped steps, logging."""

from __future__ import annotations

import copy
import io
import logging

import pytest
import torch
from helpers import assert_close_lists, assert_identical_lists, grad_stream, make_params, run
from reference import REFERENCES
from reference.ref import RefOriginal

import adamkit
from adamkit.optimizers.ref_controller import improve_threshold, new_controller, observe

# A loss sequence with jumps of every level (ratios 1.3, 1.6, 2.5 and a 3-step divergent run)
# and a validation loss that rises three times in a row, then falls.
LOSSES = [
    5.0,
    4.8,
    4.6,
    4.5,
    5.85,
    5.5,
    8.8,
    8.0,
    20.0,
    19.0,
    18.0,
    23.5,
    29.0,
    36.0,
    30.0,
    29.0,
    28.0,
    27.5,
    27.0,
    26.9,
    26.8,
    26.7,
    26.6,
    26.5,
    26.4,
]
VAL = [
    3.0,
    3.1,
    2.9,
    2.8,
    2.9,
    3.0,
    3.1,
    3.0,
    2.9,
    2.8,
    2.7,
    2.6,
    2.5,
    2.4,
    2.3,
    2.2,
    2.1,
    2.0,
    1.9,
    1.8,
    1.7,
    1.6,
    1.5,
    1.4,
    1.3,
]


def controller_run(**signals_per_step: list) -> list[dict]:
    ctrl = new_controller()
    out = []
    steps = len(next(iter(signals_per_step.values())))
    for i in range(steps):
        kwargs = {key: values[i] for key, values in signals_per_step.items()}
        kwargs.setdefault("loss", None)
        kwargs.setdefault("val_loss", None)
        kwargs.setdefault("max_steps", None)
        observe(ctrl, ref_max_steps=None, ref_alpha=0.5, **kwargs)
        out.append(copy.deepcopy(ctrl))
    return out


def test_injection_window_is_t_5_to_20_for_25_steps() -> None:
    steps = controller_run(loss=[1.0] * 25, max_steps=[25] * 25)
    injected = [c["step_count"] for c in steps if c["alpha"] > 0]
    assert injected == list(range(5, 21))
    assert all(c["alpha"] == 0.5 for c in steps if c["alpha"] > 0)


def test_no_injection_without_loss_and_the_middle_without_a_horizon() -> None:
    assert all(c["alpha"] == 0 for c in controller_run(val_loss=[1.0] * 10))
    assert all(c["alpha"] == 0.5 for c in controller_run(loss=[1.0] * 10))


@pytest.mark.parametrize(
    ("ratio", "level", "alpha"),
    [(1.1, 0, 0.5), (1.21, 1, 0.6), (1.51, 2, 0.8), (2.01, 3, 1.0), (1.2, 0, 0.5)],
)
def test_divergence_levels_from_the_loss_ratio(ratio: float, level: int, alpha: float) -> None:
    last = controller_run(loss=[1.0, ratio])[-1]
    assert (last["level"], last["alpha"]) == (level, alpha)


def test_three_consecutive_divergent_steps_inject_fully() -> None:
    steps = controller_run(loss=[1.0, 1.25, 1.57, 1.97, 1.0, 1.0])
    assert [c["divergence_steps"] for c in steps] == [0, 1, 2, 3, 0, 0]
    assert [c["alpha"] for c in steps] == [0.5, 0.6, 0.8, 1.0, 0.5, 0.5]


def test_a_call_without_loss_resets_the_divergence_run() -> None:
    steps = controller_run(loss=[1.0, 1.3, None, 1.7])
    assert [c["divergence_steps"] for c in steps] == [0, 1, 0, 1]


@pytest.mark.parametrize(
    ("max_steps", "threshold"),
    [
        (None, 10),
        (1000, 10),
        (109_999, 10),
        (110_000, 11),
        (199_999, 19),
        (200_000, 20),
        (10**7, 20),
    ],
)
def test_improvement_threshold(max_steps: int | None, threshold: int) -> None:
    assert improve_threshold(max_steps) == threshold


def test_overfitting_stops_injection_until_twenty_straight_improvements() -> None:
    # val rises 4 times (t=1..4), then falls at every call: with T_imp = 10, improve first holds
    # when the last 11 values fall (t = 14) and skipping ends when improve has held 10 times.
    val = [1.0, 1.1, 1.2, 1.3] + [1.3 - 0.01 * i for i in range(1, 30)]
    steps = controller_run(loss=[1.0] * len(val), val_loss=val)
    skipping = [c["step_count"] for c in steps if c["skip_ema"]]
    assert skipping == list(range(4, 23))
    assert all(c["alpha"] == 0 for c in steps[3:22]) and steps[22]["alpha"] == 0.5


def test_history_keeps_twenty_values_and_a_decreasing_start_does_not_raise() -> None:
    steps = controller_run(val_loss=[10.0 - i for i in range(30)])
    assert len(steps[-1]["val_loss_history"]) == 20
    assert steps[-1]["val_loss_history"][0] == 10.0 - 10


def test_the_original_raised_index_error_on_a_decreasing_start() -> None:
    params = [p.detach().clone() for p in make_params()]
    original = RefOriginal(params)
    original.step([torch.ones_like(p) for p in params], val_loss=2.0)
    with pytest.raises(IndexError):
        original.step([torch.ones_like(p) for p in params], val_loss=1.0)
    ours = make_params()
    opt = adamkit.RefAdamWMiniSF(ours)
    for val in (2.0, 1.0):
        for p in ours:
            p.grad = torch.ones_like(p)
        opt.step(val_loss=val)


def run_pair(hyper: dict, ref_cls: type, steps: int = 25, signals: bool = True):
    ours = make_params()
    theirs = [p.detach().clone() for p in make_params()]
    grads = grad_stream(ours)
    opt = adamkit.RefAdamWMiniSF(ours, **hyper)
    ref = ref_cls(theirs, **hyper)
    for i in range(steps):
        kwargs = {"loss": LOSSES[i], "val_loss": VAL[i], "max_steps": steps} if signals else {}
        for p, g in zip(ours, grads(i), strict=True):
            p.grad = g.clone()
        opt.step(**kwargs)
        ref.step(grads(i), **kwargs)
    return opt, ref, [p.detach() for p in ours], theirs


@pytest.mark.parametrize(
    "hyper",
    [
        {},
        {"lr": 1e-2, "ref_alpha": 0.3},
        {"weight_decay": 0.1, "max_lr": 2e-2},
        {"betas": (0.8, 0.99)},
    ],
)
def test_trajectory_with_training_signals_matches_the_corrected_reference(hyper: dict) -> None:
    opt, ref, ours, theirs = run_pair(hyper, REFERENCES["ref_adamw_mini_sf"])
    assert_close_lists(ours, theirs)
    ctrl = opt.controller
    assert ctrl["step_count"] == ref.step_count and ctrl["skip_ema"] == ref.skip_ema
    assert ctrl["val_loss_history"] == ref.val_loss_history
    assert ctrl["divergence_steps"] == ref.divergence_steps
    assert len(ref.injections) > 0
    for p, state in zip(opt.param_groups[0]["params"], ref.state, strict=True):
        torch.testing.assert_close(
            opt.state[p]["exp_avg"], state["exp_avg"], rtol=1e-10, atol=1e-12
        )


@pytest.mark.parametrize("hyper", [{}, {"lr": 1e-2}, {"weight_decay": 0.05, "ref_alpha": 0.7}])
def test_legacy_denominator_reproduces_the_original_to_1e_6(hyper: dict) -> None:
    _, ref, ours, theirs = run_pair({**hyper, "legacy_fp32_denominator": True}, _Original)
    assert_close_lists(ours, theirs, rtol=1e-6, atol=1e-9)
    assert len(ref.injections) > 0


class _Original(RefOriginal):
    def __init__(self, params: list, legacy_fp32_denominator: bool = True, **hyper: object) -> None:
        assert legacy_fp32_denominator
        super().__init__(params, **hyper)


def test_corrected_rule_differs_from_the_original_only_by_the_float32_denominator() -> None:
    _, _, ours, theirs = run_pair({}, _Original)
    differences = [
        ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()
        for a, b in zip(ours, theirs, strict=True)
    ]
    assert 0 < max(differences) < 1e-6


def test_controller_resumes_bit_identically_from_a_checkpoint() -> None:
    grads = grad_stream(make_params())

    def signals(i: int) -> dict:
        return {"loss": LOSSES[i], "val_loss": VAL[i], "max_steps": 25}

    def advance(opt: torch.optim.Optimizer, params: list, start: int, count: int) -> None:
        for i in range(start, start + count):
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g.clone()
            opt.step(**signals(i))

    straight = make_params()
    opt = adamkit.RefAdamWMiniSF(straight)
    advance(opt, straight, 0, 20)

    resumed = make_params()
    first = adamkit.RefAdamWMiniSF(resumed)
    advance(first, resumed, 0, 12)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = adamkit.RefAdamWMiniSF(resumed)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    assert second.controller == first.controller
    advance(second, resumed, 12, 8)
    assert_identical_lists([p.detach() for p in resumed], [p.detach() for p in straight])
    assert second.controller == opt.controller


def test_a_malformed_controller_in_a_checkpoint_is_refused() -> None:
    params = make_params()
    opt = adamkit.RefAdamWMiniSF(params)
    sd = opt.state_dict()
    sd["param_groups"][0]["ref_controller"]["step_count"] = -3
    with pytest.raises(ValueError, match="step_count=-3 is not an integer >= 0"):
        opt.load_state_dict(sd)
    assert opt.controller["step_count"] == 0


def test_injection_skips_params_without_state_and_reaches_idle_ones() -> None:
    params = make_params()
    opt = adamkit.RefAdamWMiniSF(params)
    grads = grad_stream(params)
    for p, g in zip(params[:2], grads(0)[:2], strict=True):
        p.grad = g.clone()
    opt.step(loss=1.0)  # t=1, no horizon: progress 0.5, injects with ref_alpha
    assert not opt.state[params[2]]
    idle = params[1]
    idle.grad = None
    params[0].grad = grads(1)[0].clone()
    m_before = opt.state[idle]["exp_avg"].clone()
    opt.step(loss=1.0)
    expected = m_before * 0.5 + 0.5 * idle.detach()
    torch.testing.assert_close(opt.state[idle]["exp_avg"], expected, rtol=1e-12, atol=0)


def test_a_non_finite_gradient_skips_that_tensor_and_keeps_its_norm_ema() -> None:
    params = make_params()
    opt = adamkit.AdamWMiniSF(params)
    run(opt, params, grad_stream(params), 3)
    before = [p.detach().clone() for p in params]
    ema = opt.state[params[0]]["grad_norm_ema"].clone()
    params[0].grad = torch.full_like(params[0], float("inf"))
    params[1].grad = torch.ones_like(params[1])
    opt.step()
    assert torch.equal(params[0].detach(), before[0])
    assert torch.equal(opt.state[params[0]]["grad_norm_ema"], ema)
    assert not torch.equal(params[1].detach(), before[1])
    assert all(torch.isfinite(v).all() for v in opt.state[params[0]].values() if torch.is_tensor(v))


def test_injections_are_logged_not_printed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    params = make_params()
    opt = adamkit.RefAdamWMiniSF(params)
    grads = grad_stream(params)
    with caplog.at_level(logging.INFO, logger="adamkit"):
        for i in range(3):
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g.clone()
            opt.step(loss=LOSSES[i], max_steps=10)
    assert [r.getMessage() for r in caplog.records] == [
        "[ref inject] step=2 ref_alpha=0.5 skip=False div=0",
        "[ref inject] step=3 ref_alpha=0.5 skip=False div=0",
    ]
    assert capsys.readouterr().out == ""
    loud = adamkit.RefAdamWMiniSF(params, legacy_print=True)
    loud.step(loss=1.0)
    assert capsys.readouterr().out == "[ref inject] step=1 ref_alpha=0.5 skip=False div=0\n"


def test_grad_scaler_skipped_steps_leave_controller_and_state_untouched() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = adamkit.RefAdamWMiniSF(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    x = torch.randn(8, 4)

    def train_step(loss_value_override: float | None = None) -> None:
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x).float().pow(2).mean()
        if loss_value_override is not None:
            loss = loss * loss_value_override
        scaler.scale(loss).backward()
        scaler.step(opt, loss=loss.detach(), max_steps=20)
        scaler.update()

    for _ in range(3):
        train_step()
    snapshot_ctrl = copy.deepcopy(opt.controller)
    snapshot_params = [p.detach().clone() for p in model.parameters()]
    snapshot_state = copy.deepcopy(opt.state_dict()["state"])
    train_step(loss_value_override=float("inf"))  # overflowing gradients: the scaler skips
    assert opt.controller == snapshot_ctrl
    assert_identical_lists([p.detach() for p in model.parameters()], snapshot_params)
    for key, entry in snapshot_state.items():
        for name, value in entry.items():
            now = opt.state_dict()["state"][key][name]
            assert torch.equal(now, value) if torch.is_tensor(value) else now == value
    train_step()
    assert opt.controller["step_count"] == snapshot_ctrl["step_count"] + 1


def test_step_signals_are_checked_before_anything_changes() -> None:
    params = make_params()
    opt = adamkit.RefAdamWMiniSF(params)
    for p in params:
        p.grad = torch.ones_like(p)
    with pytest.raises(TypeError, match="loss must be a number or a 1-element tensor"):
        opt.step(loss="high")
    with pytest.raises(TypeError, match="max_steps must be an int or None"):
        opt.step(loss=1.0, max_steps=2.5)
    assert opt.controller == new_controller() and not opt.state[params[0]]
    opt.step(loss=torch.tensor(2.0), val_loss=torch.tensor([1.5]))
    assert opt.controller["last_loss"] == 2.0 and opt.controller["val_loss_history"] == [1.5]
