"""Convergence smoke tests for every registered optimizer: Rosenbrock and a small regression.

Each optimizer gets the same small learning-rate grid and must succeed at its best grid point;
the tests check that the optimizer optimizes, not how fast.
"""

from __future__ import annotations

import pytest
import torch

import adamkit

NAMES = adamkit.available()
LR_GRID = (3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


def rosenbrock_grad(p: torch.Tensor) -> torch.Tensor:
    x, y = p[0], p[1]
    return torch.stack((-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)))


def rosenbrock(p: torch.Tensor) -> float:
    x, y = p[0].item(), p[1].item()
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def finish(opt: torch.optim.Optimizer) -> None:
    """Evaluate at the optimizer's evaluation point (schedule-free's averaged x)."""
    if hasattr(opt, "eval"):
        opt.eval()


def rosenbrock_final(name: str, lr: float, steps: int = 3000) -> float:
    p = torch.tensor([-1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = adamkit.create(name, [p], lr=lr)
    for _ in range(steps):
        p.grad = rosenbrock_grad(p.detach())
        opt.step()
    finish(opt)
    value = rosenbrock(p.detach())
    return value if value == value else float("inf")


@pytest.mark.parametrize("name", NAMES)
def test_rosenbrock(name: str) -> None:
    start = rosenbrock(torch.tensor([-1.5, 2.0]))
    best = min(rosenbrock_final(name, lr) for lr in LR_GRID)
    assert best < 0.02 * start, (
        f"{name}: best final Rosenbrock value {best:.3g} (start {start:.3g})"
    )


def regression_final(name: str, lr: float, steps: int = 400) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=gen)
    w_true = torch.randn(8, 1, generator=gen)
    y = x @ w_true + 0.01 * torch.randn(128, 1, generator=gen)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    torch.manual_seed(0)
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            layer.reset_parameters()
    opt = adamkit.create(name, model.parameters(), lr=lr)
    loss_fn = torch.nn.MSELoss()
    with torch.no_grad():
        initial = loss_fn(model(x), y).item()
    for _ in range(steps):

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)
    finish(opt)
    with torch.no_grad():
        final = loss_fn(model(x), y).item()
    return initial, final if final == final else float("inf")


@pytest.mark.parametrize("name", NAMES)
def test_small_regression(name: str) -> None:
    results = [regression_final(name, lr) for lr in LR_GRID]
    initial = results[0][0]
    best = min(final for _, final in results)
    assert best < 0.05 * initial, f"{name}: best final MSE {best:.3g} from {initial:.3g}"
