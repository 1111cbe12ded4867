"""The torch.optim contract, checked for every registered optimizer (from the registry)."""

from __future__ import annotations

import copy
import inspect
import io

import pytest
import torch
from helpers import (
    assert_close_lists,
    assert_identical_lists,
    grad_stream,
    make_params,
    run,
)

import adamkit

NAMES = adamkit.available()


def hypers_of(name: str) -> dict[str, adamkit.Hyper]:
    return adamkit.optimizer_class(name).declared_hypers()


def with_decay(name: str) -> dict:
    """Hyperparameters that make weight decay act, where the optimizer has it."""
    return {"weight_decay": 0.1} if "weight_decay" in hypers_of(name) else {}


def snapshot(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize("name", NAMES)
def test_signature_lists_every_hyperparameter_keyword_only(name: str) -> None:
    cls = adamkit.optimizer_class(name)
    sig = inspect.signature(cls)
    declared = cls.declared_hypers()
    keyword_only = {
        n: p.default for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keyword_only == {n: h.default for n, h in declared.items()}
    assert cls.__doc__ and "State:" in cls.__doc__


@pytest.mark.parametrize("name", NAMES)
def test_closure_runs_with_grad_enabled_and_its_loss_is_returned(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params)
    before = snapshot(params)
    calls = []

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = sum((p**2).sum() for p in params)
        loss.backward()
        return loss

    with torch.no_grad():
        loss = opt.step(closure)
    out = opt.step(closure=closure)
    assert calls == [True, True]
    assert isinstance(loss, torch.Tensor) and isinstance(out, torch.Tensor)
    assert any(not torch.equal(a, b) for a, b in zip(params, before, strict=True))
    assert opt.step() is None


@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_skipped_entirely(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params, **with_decay(name))
    frozen = params[1]
    before = frozen.detach().clone()
    grads = grad_stream(params)
    for i in range(3):
        for j, p in enumerate(params):
            p.grad = None if j == 1 else grads(i)[j].clone()
        opt.step()
    assert torch.equal(frozen.detach(), before)
    assert len(opt.state[frozen]) == 0
    assert all(opt.state[p]["step"] == 3 for j, p in enumerate(params) if j != 1)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("extra", [{}, {"maximize": True}])
def test_gradients_are_never_modified_in_place(name: str, extra: dict) -> None:
    modes = hypers_of(name).get("weight_decay_mode")
    variants = (
        [{}] if modes is None else [{"weight_decay_mode": m} for m in ("l2", "decoupled", "fixed")]
    )
    for variant in variants:
        params = make_params()
        opt = adamkit.create(name, params, **with_decay(name), **variant, **extra)
        grads = grad_stream(params)
        for i in range(3):
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g.clone()
            opt.step()
            for p, g in zip(params, grads(i), strict=True):
                assert torch.equal(p.grad, g), f"{name} {variant} changed p.grad"


@pytest.mark.parametrize("name", NAMES)
def test_param_groups_behave_like_separate_optimizers(name: str) -> None:
    params = make_params()
    twins = make_params()
    grads = grad_stream(params)
    base_lr = adamkit.optimizer_class(name).declared_hypers()["lr"].default
    grouped = adamkit.create(
        name, [{"params": params[:2]}, {"params": params[2:], "lr": base_lr * 3}]
    )
    first = adamkit.create(name, twins[:2])
    second = adamkit.create(name, twins[2:], lr=base_lr * 3)
    for i in range(6):
        for p, q, g in zip(params, twins, grads(i), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        grouped.step()
        first.step()
        second.step()
    assert_identical_lists(snapshot(params), snapshot(twins))


@pytest.mark.parametrize("name", NAMES)
def test_add_param_group_steps_the_new_params(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params[:2])
    grads = grad_stream(params)
    run(opt, params[:2], lambda i: grads(i)[:2], 2)
    opt.add_param_group({"params": params[2:], "lr": 1e-2})
    before = snapshot(params[2:])
    run(opt, params, grads, 2, start=2)
    assert all(not torch.equal(p, b) for p, b in zip(params[2:], before, strict=True))
    assert opt.param_groups[1]["lr"] == 1e-2
    assert all(opt.state[p]["step"] == 2 for p in params[2:])


@pytest.mark.parametrize("name", NAMES)
def test_maximize_equals_minimizing_the_negated_gradient(name: str) -> None:
    a, b = make_params(), make_params()
    grads = grad_stream(a)
    opt_a = adamkit.create(name, a, maximize=True, **with_decay(name))
    opt_b = adamkit.create(name, b, **with_decay(name))
    for i in range(5):
        for p, q, g in zip(a, b, grads(i), strict=True):
            p.grad, q.grad = g.clone(), -g
        opt_a.step()
        opt_b.step()
    assert_close_lists(snapshot(a), snapshot(b), rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_lr_schedulers_drive_the_step_through_group_lr(name: str) -> None:
    a, b = make_params(), make_params()
    grads = grad_stream(a)
    opt_a = adamkit.create(name, a, **with_decay(name))
    opt_b = adamkit.create(name, b, **with_decay(name))
    base = opt_a.param_groups[0]["lr"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt_a, lambda i: 1.0 / (1 + i))
    for i in range(6):
        opt_b.param_groups[0]["lr"] = base / (1 + i)
        for p, q, g in zip(a, b, grads(i), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
        sched.step()
    assert_close_lists(snapshot(a), snapshot(b), rtol=1e-15, atol=0)
    assert opt_a.param_groups[0]["lr"] == pytest.approx(base / 7)


@pytest.mark.parametrize("name", NAMES)
def test_step_hooks_are_called(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    run(opt, params, grad_stream(params), 2)
    assert seen == ["pre", "post", "pre", "post"]


def save_and_load(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_resume_from_state_dict_is_bit_identical(name: str, dtype: torch.dtype) -> None:
    grads = grad_stream(make_params())
    straight = make_params(dtype)
    opt = adamkit.create(name, straight, **with_decay(name))
    run(opt, straight, grads, 10)

    resumed = make_params(dtype)
    first = adamkit.create(name, resumed, **with_decay(name))
    run(first, resumed, grads, 5)
    saved = save_and_load(first.state_dict())
    del first
    second = adamkit.create(name, resumed, **with_decay(name))
    second.load_state_dict(saved)
    run(second, resumed, grads, 5, start=5)
    assert_identical_lists(snapshot(resumed), snapshot(straight))
    for p, q in zip(resumed, straight, strict=True):
        for key, value in opt.state[q].items():
            other = second.state[p][key]
            if isinstance(value, torch.Tensor):
                assert other.dtype == value.dtype and torch.equal(other, value), key
            else:
                assert other == value, key


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_plain_data(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params, state_dtype=torch.float32)
    run(opt, params, grad_stream(params), 2)
    sd = opt.state_dict()
    allowed = (int, float, str, bool, type(None), torch.Tensor)

    def walk(value: object) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k)
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        else:
            assert isinstance(value, allowed), f"{type(value)} in state_dict"

    walk(sd)
    assert sd["param_groups"][0]["state_dtype"] == "float32"


@pytest.mark.parametrize("name", NAMES)
def test_loading_keeps_low_precision_buffers_in_their_dtype(name: str) -> None:
    params = make_params(torch.float32)
    opt = adamkit.create(name, params, state_dtype="bfloat16")
    run(opt, params, grad_stream(params), 2)
    saved = copy.deepcopy(opt.state_dict())
    fresh = adamkit.create(name, params, state_dtype="bfloat16")
    fresh.load_state_dict(saved)
    for p in params:
        for key, value in opt.state[p].items():
            if isinstance(value, torch.Tensor):
                assert fresh.state[p][key].dtype == value.dtype, key
                assert torch.equal(fresh.state[p][key], value), key


@pytest.mark.parametrize("name", NAMES)
def test_complex_params_behave_as_their_real_view(name: str) -> None:
    gen = torch.Generator().manual_seed(3)
    shapes = [(3, 4), (5,)]
    complex_params = [
        torch.randn(s, dtype=torch.complex128, generator=gen).requires_grad_() for s in shapes
    ]
    real_params = [torch.view_as_real(p.detach()).clone().requires_grad_() for p in complex_params]
    opt_c = adamkit.create(name, complex_params, **with_decay(name))
    opt_r = adamkit.create(name, real_params, **with_decay(name))
    for _ in range(6):
        for pc, pr in zip(complex_params, real_params, strict=True):
            g = torch.randn(pc.shape, dtype=torch.complex128, generator=gen)
            pc.grad, pr.grad = g, torch.view_as_real(g).clone()
        opt_c.step()
        opt_r.step()
    assert_close_lists(
        [torch.view_as_real(p.detach()) for p in complex_params],
        snapshot(real_params),
        rtol=0,
        atol=0,
    )


@pytest.mark.parametrize("name", NAMES)
def test_a_refused_step_changes_nothing(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params, **with_decay(name))
    grads = grad_stream(params)
    run(opt, params, grads, 3)
    before_params = snapshot(params)
    before_state = copy.deepcopy(opt.state_dict())
    for p, g in zip(params, grads(3), strict=True):
        p.grad = g.clone()
    params[-1].grad = params[-1].grad.to_sparse()
    with pytest.raises(RuntimeError, match=f"{type(opt).__name__} does not support sparse"):
        opt.step()
    params[-1].grad = grads(3)[-1].clone()
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="lr"):
        opt.step()
    assert_identical_lists(snapshot(params), before_params)
    after_state = opt.state_dict()
    for key, entry in before_state["state"].items():
        for name_, value in entry.items():
            other = after_state["state"][key][name_]
            assert torch.equal(other, value) if isinstance(value, torch.Tensor) else other == value


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_low_precision_params_take_finite_steps(name: str, dtype: torch.dtype) -> None:
    params = make_params(dtype)
    opt = adamkit.create(name, params)
    run(opt, params, grad_stream(params), 5)
    for p in params:
        assert p.dtype == dtype and torch.isfinite(p).all()
    for p in params:
        for value in opt.state[p].values():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert torch.isfinite(value).all()


@pytest.mark.parametrize("name", NAMES)
def test_replacing_param_data_between_steps_is_followed(name: str) -> None:
    params = make_params()
    opt = adamkit.create(name, params)
    grads = grad_stream(params)
    run(opt, params, grads, 2)
    params[0].data = params[0].data.clone()  # new storage, as some training utilities do
    before = params[0].detach().clone()
    run(opt, params, grads, 1, start=2)
    assert not torch.equal(params[0].detach(), before)
