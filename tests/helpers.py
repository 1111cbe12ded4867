"""Shared test helpers: deterministic parameters and gradient streams, trajectories, the
compiled calls of an optimizer's step."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

import adamkit

SHAPES: tuple[tuple[int, ...], ...] = ((4, 3, 2, 2), (5, 3), (7,), (1,))


def make_params(
    dtype: torch.dtype = torch.float64,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
    seed: int = 0,
    requires_grad: bool = True,
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for shape in shapes:
        p = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
        out.append(p.requires_grad_(requires_grad))
    return out


def compiled_calls(opt: torch.optim.Optimizer) -> list:
    """The compiled calls (``adamkit.core.compiled.Call``) of every stage of every group's
    program of ``opt``."""
    return [
        call
        for program in opt._programs.values()  # type: ignore[attr-defined]
        for stage in program.stages
        for bucket in stage.work.buckets
        for call in bucket.calls
    ]


def compiled_configurations(configurations: object) -> list:
    """The configurations (``adamkit.core.graphs.Configuration``) that compiled, of a
    ``Configurations``."""
    known = configurations.known.values()  # type: ignore[attr-defined]
    return [config for config in known if config is not None]


def graphs_held(configurations: object) -> int:
    """How many graphs the compiled configurations hold (traced in this process, by Dynamo or
    torch's ahead-of-time capture, or loaded from a stored trace): a recompile adds one."""
    return sum(config.graphs for config in compiled_configurations(configurations))


def grad_stream(
    params: Sequence[torch.Tensor], seed: int = 1
) -> Callable[[int], list[torch.Tensor]]:
    """Gradients for step i (0-based): random, with a drift so the moments have structure."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [p.shape for p in params]
    cache: list[list[torch.Tensor]] = []

    def grads(i: int) -> list[torch.Tensor]:
        while len(cache) <= i:
            step = len(cache)
            cache.append(
                [
                    torch.randn(s, generator=gen, dtype=torch.float64) * (1 + 0.5 * (j % 3))
                    + 0.1 * (step % 5)
                    for j, s in enumerate(shapes)
                ]
            )
        return cache[i]

    return grads


def run(
    opt: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    grads: Callable[[int], list[torch.Tensor]],
    steps: int,
    start: int = 0,
) -> None:
    for i in range(start, start + steps):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.to(p.dtype).clone()
        opt.step()


def trajectory(
    name: str,
    hyper: dict,
    steps: int = 25,
    dtype: torch.dtype = torch.float64,
    shapes: Sequence[tuple[int, ...]] = SHAPES,
) -> list[torch.Tensor]:
    params = make_params(dtype, shapes)
    opt = adamkit.create(name, params, **hyper)
    run(opt, params, grad_stream(params), steps)
    return [p.detach().clone() for p in params]


def assert_close_lists(
    actual: Sequence[torch.Tensor],
    expected: Sequence[torch.Tensor],
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> None:
    assert len(actual) == len(expected)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        torch.testing.assert_close(a, e, rtol=rtol, atol=atol, msg=lambda m, i=i: f"param {i}: {m}")


def assert_identical_lists(
    actual: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]
) -> None:
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert torch.equal(a, e), f"param {i} differs: max |diff| = {(a - e).abs().max().item()}"
