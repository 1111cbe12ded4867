"""core.eager: the eager path merges small tensors into flat buffers; the results are the
per-tensor results (bit for bit for element-wise rules, to rounding for per-tensor
reductions), the state stays ordinary tensors of the parameters' shapes, and a checkpoint
resumes exactly."""

from __future__ import annotations

import io

import pytest
import torch

import adamkit
from adamkit.core import compiled
from adamkit.core.eager import EagerArrangement
from adamkit.registry import optimizer_class

NAMES = adamkit.available()
# vectors (merged by every rule), matrices (merged by element-wise and segmented rules), a
# scalar (never merged: one element) and one tensor above the merge limit set below
SHAPES = ((7,), (5, 3), (9,), (1,), (4, 4), (16,), (2, 3, 2), (6,), (30, 3))
MERGE_LIMIT = 64


# tensors of one size per signature: segmented rules merge them as rows of a matrix
UNIFORM_SHAPES = ((6,), (6,), (6,), (3, 4), (3, 4), (3, 4), (1,), (30, 3))


def _params(
    dtype: torch.dtype = torch.float64, shapes: tuple[tuple[int, ...], ...] = SHAPES
) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(5)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=dtype) * 0.1) for s in shapes]


def _run(
    name: str,
    merge: bool,
    monkeypatch: pytest.MonkeyPatch,
    steps: int = 4,
    shapes: tuple[tuple[int, ...], ...] = SHAPES,
    **options: object,
) -> tuple[list[torch.nn.Parameter], adamkit.AdamkitOptimizer]:
    monkeypatch.setattr(compiled, "MERGE_NUMEL", MERGE_LIMIT if merge else 0)
    params = _params(shapes=shapes)
    opt = adamkit.create(name, params, lr=1e-2, weight_decay=0.01, backend="eager", **options)
    gen = torch.Generator().manual_seed(6)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
        opt.step()
    return params, opt


def _merged_calls(opt: adamkit.AdamkitOptimizer) -> list[compiled.Merged]:
    return [
        call
        for program in opt._programs.values()  # type: ignore[attr-defined]
        for stage in program.stages
        if isinstance(stage.work, EagerArrangement)
        for call in stage.work.merged
    ]


def _state(opt: adamkit.AdamkitOptimizer, p: torch.Tensor) -> dict[str, torch.Tensor]:
    return {n: t for n, t in opt.state[p].items() if torch.is_tensor(t) and n != "step"}


def _step_alike(
    first: tuple[list[torch.nn.Parameter], adamkit.AdamkitOptimizer],
    second: tuple[list[torch.nn.Parameter], adamkit.AdamkitOptimizer],
    steps: int,
    seed: int,
) -> None:
    """Step two optimizers on the same gradients and check that their parameters stay equal."""
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        for p, q in zip(first[0], second[0], strict=True):
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            q.grad = p.grad.clone()
        first[1].step()
        second[1].step()
    for p, q in zip(first[0], second[0], strict=True):
        assert torch.equal(p, q)


def _elementwise_on(name: str, shape: tuple[int, ...]) -> bool:
    cls = optimizer_class(name)
    return cls.elementwise or (len(shape) == 1 and cls.vectors_elementwise)


@pytest.mark.parametrize("shapes", [SHAPES, UNIFORM_SHAPES], ids=["sizes", "uniform"])
@pytest.mark.parametrize("name", NAMES)
def test_merged_eager_steps_equal_the_per_tensor_steps(
    name: str, shapes: tuple[tuple[int, ...], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, opt_alone = _run(name, False, monkeypatch, shapes=shapes)
    merged, opt_merged = _run(name, True, monkeypatch, shapes=shapes)
    assert _merged_calls(opt_merged), "nothing was merged"
    for call in _merged_calls(opt_merged):  # one size: rows of a matrix; else by index
        if call.kind != "chunk":
            one_size = len({plan.p.numel() for plan in call.plans}) == 1
            assert call.kind == ("uniform" if one_size else "segmented")
    assert not _merged_calls(opt_alone)
    for a, b in zip(alone, merged, strict=True):
        states = (_state(opt_alone, a), _state(opt_merged, b))
        if _elementwise_on(name, tuple(a.shape)):
            assert torch.equal(a, b), a.shape
            for buffer, value in states[0].items():
                assert torch.equal(value, states[1][buffer]), (a.shape, buffer)
        else:  # per-tensor reductions summed in another order
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
            for buffer, value in states[0].items():
                torch.testing.assert_close(value, states[1][buffer], rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("name", ["lamb", "b_adam", "um", "adamw_mini_sf"])
def test_segmented_merges_group_tensors_by_size(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # each size shared by several tensors is a uniform call of its own, the sizes met once are
    # merged together, and all equal the per-tensor steps
    shapes = ((6,), (9,), (6,), (9,), (9,), (5,), (7,), (40, 3))
    alone, _ = _run(name, False, monkeypatch, shapes=shapes)
    merged, opt_merged = _run(name, True, monkeypatch, shapes=shapes)
    groups = sorted(
        (call.kind, sorted(p.p.numel() for p in call.plans)) for call in _merged_calls(opt_merged)
    )
    assert groups == [("segmented", [5, 7]), ("uniform", [6, 6]), ("uniform", [9, 9, 9])]
    for a, b in zip(alone, merged, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ["adamw", "lamb", "adam_mini"])
def test_merged_eager_state_resumes_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # (the shapes of the state are the per-tensor path's: see the test above)
    params, opt = _run(name, True, monkeypatch, steps=3)
    assert _merged_calls(opt)
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    clones = [torch.nn.Parameter(p.detach().clone()) for p in params]
    resumed = adamkit.create(name, clones, lr=1e-2, weight_decay=0.01, backend="eager")
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved, weights_only=True))
    _step_alike((params, opt), (clones, resumed), steps=2, seed=7)


def test_state_replaced_by_the_user_is_used_and_merged_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a state tensor replaced between steps must be read, not the flat buffer's stale copy
    params, opt = _run("adam", True, monkeypatch, steps=2)
    ref, ref_opt = _run("adam", False, monkeypatch, steps=2)
    monkeypatch.setattr(compiled, "MERGE_NUMEL", MERGE_LIMIT)
    for o, p in ((opt, params[0]), (ref_opt, ref[0])):
        o.state[p]["exp_avg"] = o.state[p]["exp_avg"] * 0.5
    _step_alike((params, opt), (ref, ref_opt), steps=1, seed=8)
    assert _merged_calls(opt)


def test_mixed_dtypes_complex_and_missing_gradients_match_per_tensor_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # float32, float64 and complex64 vectors merge by signature; a parameter without a gradient
    # on one step leaves the merged program and comes back
    kinds = ((5, torch.float32), (7, torch.float32), (6, torch.float64), (4, torch.float64))
    kinds += ((3, torch.complex64), (8, torch.complex64))

    def run(merge: bool) -> tuple[list[torch.nn.Parameter], adamkit.AdamkitOptimizer]:
        monkeypatch.setattr(compiled, "MERGE_NUMEL", MERGE_LIMIT if merge else 0)
        gen = torch.Generator().manual_seed(9)
        params = [torch.nn.Parameter(torch.randn(n, generator=gen, dtype=d)) for n, d in kinds]
        opt = adamkit.create("adamw", params, lr=1e-2, backend="eager")
        for step in range(5):
            for j, p in enumerate(params):
                missing = step == 2 and j % 3 == 0
                p.grad = None if missing else torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        return params, opt

    alone, opt_alone = run(False)
    merged, opt_merged = run(True)
    # the last step: two stages (two parameters are a step behind); the float32 vectors and the
    # complex64 ones (float32 real views) of the first stage are merged
    assert [len(call.plans) for call in _merged_calls(opt_merged)] == [3]
    for a, b in zip(alone, merged, strict=True):
        assert torch.equal(a, b)
        for buffer, value in _state(opt_alone, a).items():
            assert torch.equal(value, _state(opt_merged, b)[buffer]), buffer
        assert opt_alone.state[a]["step"] == opt_merged.state[b]["step"]
