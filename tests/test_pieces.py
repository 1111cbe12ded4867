"""core.pieces: an element-wise computation run piece by piece gives the whole-tensor result."""

from __future__ import annotations

import pytest
import torch

import adamkit
from adamkit.core import execute, pieces, reduce
from adamkit.optimizers import lamb
from adamkit.registry import available, optimizer_class

# the optimizers whose eager rule runs its element-wise part in pieces (after its reductions),
# and those whose whole eager step runs in pieces (element-wise rules, on the vectors stepped
# here for those element-wise on vectors only)
ELEMENTWISE = tuple(
    n
    for n in available()
    if optimizer_class(n).elementwise or optimizer_class(n).vectors_elementwise
)
PIECEWISE = ("b_adam", "su_adam", "adamw_mini_sf", *ELEMENTWISE)


def _steps(
    name: str,
    numel: int,
    dtype: torch.dtype,
    piece: int,
    monkeypatch: pytest.MonkeyPatch,
    **options: object,
) -> tuple:
    monkeypatch.setattr(pieces, "PIECE", piece)
    gen = torch.Generator().manual_seed(3)
    p = torch.nn.Parameter(torch.randn(numel, generator=gen, dtype=dtype) * 0.02)
    opt = adamkit.create(name, [p], lr=1e-2, weight_decay=0.01, backend="eager", **options)
    for _ in range(4):
        p.grad = torch.randn(numel, generator=gen, dtype=dtype)
        opt.step()
    state = opt.state[p]
    return p.detach().clone(), {n: t.clone() for n, t in state.items() if torch.is_tensor(t)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", PIECEWISE)
def test_in_pieces_equals_the_whole_tensor_bit_for_bit(
    name: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5000 elements in pieces of 1024: four whole pieces and a short one
    whole_p, whole_state = _steps(name, 5000, dtype, 1 << 40, monkeypatch)
    piece_p, piece_state = _steps(name, 5000, dtype, 1024, monkeypatch)
    assert torch.equal(whole_p, piece_p)
    for buffer, value in whole_state.items():
        assert torch.equal(value, piece_state[buffer]), buffer


def _counted(monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> list[int]:
    """Replace ``module.name`` (a function of (fn, tensors)) by a wrapper that records the
    element count of each call's tensors; the list of counts."""
    calls: list[int] = []
    original = getattr(module, name)

    def counting(fn, tensors):  # type: ignore[no-untyped-def]
        calls.append(next(iter(tensors.values())).numel())
        return original(fn, tensors)

    monkeypatch.setattr(module, name, counting)
    return calls


# Storage policies whose codecs round element by element: bfloat16/float16 state (stochastic
# rounding), Kahan-compensated state, bfloat16 parameters with either rounding.
LOW_PRECISION = {
    "bf16-state": (torch.float32, {"state_dtype": "bfloat16"}),
    "fp16-state": (torch.float32, {"state_dtype": "float16"}),
    "kahan-state": (torch.float32, {"state_dtype": "bfloat16", "state_rounding": "kahan"}),
    "bf16-param": (torch.bfloat16, {}),
    "bf16-kahan-param": (torch.bfloat16, {"param_rounding": "kahan"}),
    "bf16-all": (torch.bfloat16, {"state_dtype": "bfloat16"}),
}


@pytest.mark.parametrize("policy", LOW_PRECISION)
@pytest.mark.parametrize("name", PIECEWISE)
def test_in_pieces_with_rounded_storage_equals_the_whole_tensor_bit_for_bit(
    name: str, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each piece's rounding draws the random bits of its own elements (the step's whole update
    # for element-wise rules, the store of the results for the others)
    dtype, options = LOW_PRECISION[policy]
    whole_p, whole_state = _steps(name, 5000, dtype, 1 << 40, monkeypatch, **options)
    piece_p, piece_state = _steps(name, 5000, dtype, 1024, monkeypatch, **options)
    assert torch.equal(whole_p, piece_p)
    for buffer, value in whole_state.items():
        assert torch.equal(value, piece_state[buffer]), buffer


def test_elementwise_steps_with_rounded_state_are_split_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counted(monkeypatch, execute, "in_numbered_pieces")
    _steps("sadam", 5000, torch.float32, 1024, monkeypatch, state_dtype=torch.bfloat16)
    assert calls == [5000] * 4
    _steps("sadam", 5000, torch.float32, 1024, monkeypatch)
    assert calls == [5000] * 8


def test_eager_bfloat16_state_step_has_no_tensor_sized_temporaries() -> None:
    # in pieces, a large tensor's eager step allocates a few pieces' worth of memory, not
    # decoded float32 copies of its 16-bit state and int32 random bits of its size
    from adamkit.bench.speed import peak_step_bytes

    numel = 1 << 24
    p = torch.randn(numel).requires_grad_()
    p.grad = torch.randn(numel)
    opt = adamkit.AdamW([p], backend="eager", state_dtype="bfloat16")
    opt.step()
    assert peak_step_bytes(opt.step) < numel  # below 1 byte per parameter


def test_rules_elementwise_on_vectors_step_vectors_in_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _counted(monkeypatch, execute, "in_numbered_pieces")
    _steps("adam_gc", 5000, torch.float32, 1024, monkeypatch)
    assert calls == [5000] * 4


@pytest.mark.parametrize("options", [{}, {"weight_decay_mode": "decoupled"}])
def test_lamb_on_a_huge_tensor_recomputes_its_direction_in_pieces(
    options: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    # above LARGE_NUMEL the eager LAMB computes u twice, piece by piece (its norm from the
    # pieces' norms), instead of keeping a tensor-sized u: the same step to rounding
    norms = _counted(monkeypatch, lamb, "norm_in_pieces")
    whole_p, whole_state = _steps("lamb", 5000, torch.float64, 1 << 40, monkeypatch, **options)
    assert norms == []
    monkeypatch.setattr(pieces, "LARGE_NUMEL", 4000)
    piece_p, piece_state = _steps("lamb", 5000, torch.float64, 1024, monkeypatch, **options)
    assert norms == [5000] * 4
    torch.testing.assert_close(piece_p, whole_p, rtol=1e-12, atol=0)
    for buffer, value in whole_state.items():
        torch.testing.assert_close(piece_state[buffer], value, rtol=1e-12, atol=0)


def _recorder() -> tuple[list[int], object]:
    seen: list[int] = []

    def fn(t: dict[str, torch.Tensor]) -> None:
        seen.append(t["a"].numel())
        t["a"].add_(t["b"])

    return seen, fn


def test_pieces_cover_every_element_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pieces, "PIECE", 4)
    a, b = torch.zeros(2, 5), torch.arange(10.0).view(2, 5)
    seen, fn = _recorder()
    pieces.in_pieces(fn, {"a": a, "b": b})
    assert seen == [4, 4, 2]
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "case", ["small", "non-contiguous", "unequal sizes", "segments", "compiling"]
)
def test_pieces_fall_back_to_one_call(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pieces, "PIECE", 4)
    a, b = torch.zeros(3, 4), torch.ones(3, 4)
    if case == "small":
        monkeypatch.setattr(pieces, "PIECE", 64)
    elif case == "non-contiguous":
        a = torch.zeros(4, 3).t()
    elif case == "unequal sizes":
        b = torch.ones(1)
    elif case == "segments":
        ids = torch.zeros(12, dtype=torch.int64)
        monkeypatch.setattr(reduce, "ACTIVE", [reduce.Segments(ids, torch.ones(1), ids[:1])])
    else:
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    seen, fn = _recorder()
    pieces.in_pieces(fn, {"a": a, "b": b})
    assert seen == [12]
    assert torch.equal(a, torch.ones(3, 4))


def test_a_rank_part_counts_as_huge_by_its_whole_tensor() -> None:
    # Every rank must take the same branch of a rule (LAMB's huge path computes its norms in
    # another order), whatever the size of its own part of a sharded tensor.
    part = {"x": torch.zeros(10), "y": torch.zeros(10)}
    assert not pieces.huge(part)
    reduce.SHARDS.append(reduce.Shards(group=None, numel=pieces.LARGE_NUMEL + 1))
    try:
        assert pieces.huge(part)
    finally:
        reduce.SHARDS.pop()
    reduce.SHARDS.append(reduce.Shards(group=None, numel=pieces.LARGE_NUMEL))
    try:
        assert not pieces.huge({"x": torch.zeros(pieces.LARGE_NUMEL + 1)})
    finally:
        reduce.SHARDS.pop()
