"""Schedule-free AdamW's train/eval protocol."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_lists, grad_stream, make_params, run

import adamkit


def test_eval_and_train_are_idempotent_and_round_trip() -> None:
    params = make_params()
    opt = adamkit.AdamWScheduleFree(params, lr=1e-2)
    run(opt, params, grad_stream(params), 5)
    y = [p.detach().clone() for p in params]
    opt.eval()
    x = [p.detach().clone() for p in params]
    opt.eval()
    assert_close_lists([p.detach() for p in params], x, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(x, y, strict=True))
    beta1 = 0.9
    for xi, yi, p in zip(x, y, params, strict=True):
        z = opt.state[p]["z"]
        torch.testing.assert_close(xi, yi + (1 - 1 / beta1) * (z - yi), rtol=1e-12, atol=1e-14)
    opt.train()
    opt.train()
    assert_close_lists([p.detach() for p in params], y, rtol=1e-12, atol=1e-14)


def test_step_in_eval_mode_is_refused_without_changes() -> None:
    params = make_params()
    opt = adamkit.AdamWScheduleFree(params)
    run(opt, params, grad_stream(params), 2)
    opt.eval()
    before = [p.detach().clone() for p in params]
    with pytest.raises(
        RuntimeError, match=r"step\(\) was called in eval mode.*call optimizer.train\(\)"
    ):
        opt.step()
    assert_close_lists([p.detach() for p in params], before, rtol=0, atol=0)
    assert opt.param_groups[0]["k"] == 2


def test_mode_and_counters_are_saved_in_the_state_dict() -> None:
    params = make_params()
    opt = adamkit.AdamWScheduleFree(params, warmup_steps=3)
    run(opt, params, grad_stream(params), 4)
    opt.eval()
    sd = opt.state_dict()
    group = sd["param_groups"][0]
    assert group["train_mode"] is False and group["k"] == 4 and group["weight_sum"] > 0
    fresh = adamkit.AdamWScheduleFree(params, warmup_steps=3)
    assert fresh.param_groups[0]["train_mode"] is True
    fresh.load_state_dict(sd)
    assert fresh.param_groups[0]["train_mode"] is False
    fresh.train()
    run(fresh, params, grad_stream(params), 1, start=4)


def test_warmup_scales_the_learning_rate_linearly() -> None:
    params = make_params()
    opt = adamkit.AdamWScheduleFree(params, lr=1e-2, warmup_steps=4)
    seen = []
    for i in range(6):
        run(opt, params, grad_stream(params), 1, start=i)
        seen.append(opt.param_groups[0]["scheduled_lr"])
    assert seen == pytest.approx([2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2, 1e-2])
