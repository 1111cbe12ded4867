"""The compiled fast path equals the eager reference, never recompiles for changing numbers,
and falls back to eager where it cannot run."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.utils as dynamo_utils
from helpers import grad_stream, make_params

import adamkit

NAMES = adamkit.available()
SHAPES = ((6, 3, 2, 2), (5, 7), (9,), (1,), (3, 4))


def trajectory(name: str, backend: str, dtype: torch.dtype, steps: int = 5, **hyper: object):
    params = make_params(dtype, SHAPES)
    opt = adamkit.create(name, params, backend=backend, **hyper)
    grads = grad_stream(params)
    for i in range(steps):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.to(dtype)
        opt.step()
    return params, opt


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_compiled_equals_eager_in_float64(name: str) -> None:
    eager, _ = (
        trajectory(name, "eager", torch.float64, weight_decay=0.1)
        if "weight_decay" in (adamkit.optimizer_class(name).declared_hypers())
        else trajectory(name, "eager", torch.float64)
    )
    kwargs = (
        {"weight_decay": 0.1}
        if "weight_decay" in adamkit.optimizer_class(name).declared_hypers()
        else {}
    )
    compiled, opt = trajectory(name, "compiled", torch.float64, **kwargs)
    assert any(fn is not None for fn in opt._fast.chunks.functions.values()), "nothing was compiled"
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "state_dtype"), [("adamw", "bfloat16"), ("lamb", "int8")])
def test_compiled_low_precision_state_matches_eager(name: str, state_dtype: str) -> None:
    eager, e_opt = trajectory(name, "eager", torch.float32, state_dtype=state_dtype)
    compiled, c_opt = trajectory(name, "compiled", torch.float32, state_dtype=state_dtype)
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-3, atol=1e-5)
    for pa, pb in zip(compiled, eager, strict=True):
        for key, value in e_opt.state[pb].items():
            if torch.is_tensor(value) and value.is_floating_point():
                other = c_opt.state[pa][key].float()
                torch.testing.assert_close(other, value.float(), rtol=2e-2, atol=1e-3)


@pytest.mark.slow
def test_no_recompiles_over_100_steps_with_a_changing_lr() -> None:
    params = make_params(torch.float32, SHAPES)
    opt = adamkit.AdamW(params, backend="compiled")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=110)
    grads = grad_stream(params)

    def step(i: int) -> None:
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.float()
        opt.step()
        sched.step()

    step(0)
    graphs = dynamo_utils.counters["stats"]["unique_graphs"]
    for i in range(1, 101):
        step(i)
    assert dynamo_utils.counters["stats"]["unique_graphs"] == graphs


def test_parameters_the_compiled_path_cannot_take_run_eagerly() -> None:
    # a 1-element tensor (Dynamo specialises sizes 0 and 1) and a non-contiguous view
    base = torch.randn(4, 6, dtype=torch.float64)
    strided = base.t().detach().requires_grad_()
    single = torch.randn(1, dtype=torch.float64, requires_grad=True)
    opt = adamkit.Adam([strided, single], backend="compiled")
    ref = adamkit.Adam(
        [
            q := strided.detach().clone().requires_grad_(),
            s := single.detach().clone().requires_grad_(),
        ],
        backend="eager",
    )
    for p, r in ((strided, q), (single, s)):
        p.grad = torch.ones_like(p)
        r.grad = torch.ones_like(r)
    opt.step()
    ref.step()
    torch.testing.assert_close(strided.detach(), q.detach())
    torch.testing.assert_close(single.detach(), s.detach())
    assert not opt.__dict__.get("_fast") or not opt._fast.chunks.functions
