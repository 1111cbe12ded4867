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
# the optimizers coupled only through per-tensor reductions, whose eager step on a large tensor
# with state stored in another dtype runs in pieces and in stages (execute.step_in_stages)
STAGED = tuple(
    n for n in available() if optimizer_class(n).segmentable and not optimizer_class(n).shaped
)


def _steps(
    name: str,
    numel: int,
    dtype: torch.dtype,
    piece: int,
    monkeypatch: pytest.MonkeyPatch,
    **options: object,
) -> tuple:
    monkeypatch.setattr(pieces, "PIECE", piece)
    monkeypatch.setattr(pieces, "BLOCK_PIECE", piece)
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

    def counting(fn, tensors, *cutting):  # type: ignore[no-untyped-def]
        calls.append(next(iter(tensors.values())).numel())
        return original(fn, tensors, *cutting)

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
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_in_pieces_with_rounded_storage_equals_the_whole_tensor_bit_for_bit(
    name: str, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # each piece's rounding draws the random bits of its own elements
    dtype, options = LOW_PRECISION[policy]
    whole_p, whole_state = _steps(name, 5000, dtype, 1 << 40, monkeypatch, **options)
    piece_p, piece_state = _steps(name, 5000, dtype, 1024, monkeypatch, **options)
    assert torch.equal(whole_p, piece_p)
    for buffer, value in whole_state.items():
        assert torch.equal(value, piece_state[buffer]), buffer


# the storage policies of float64 parameters (float64 compute) among LOW_PRECISION
FLOAT64_POLICIES = {
    "bf16-state": {"state_dtype": "bfloat16"},
    "fp16-state": {"state_dtype": "float16"},
    "kahan-state": {"state_dtype": "bfloat16", "state_rounding": "kahan"},
    "int8-state": {"state_dtype": "int8"},
}


@pytest.mark.parametrize("policy", FLOAT64_POLICIES)
@pytest.mark.parametrize("name", STAGED)
def test_in_stages_equals_the_whole_tensor_to_rounding(
    name: str, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The pieces' reductions sum in another order (float64 here), and every element draws the
    # random bits of its place: the same step to float64 rounding, and the same rounded state.
    options = FLOAT64_POLICIES[policy]
    staged = _counted_stages(monkeypatch)
    whole_p, whole_state = _steps(name, 5000, torch.float64, 1 << 40, monkeypatch, **options)
    assert staged == [False] * 4
    piece_p, piece_state = _steps(name, 5000, torch.float64, 1024, monkeypatch, **options)
    # float16 state is scaled per tensor (not stored element by element): never staged
    assert staged[4:] == [policy != "fp16-state"] * 4
    # (an absolute tolerance for values that cancel to near 0; the parameters are about 0.02)
    torch.testing.assert_close(piece_p, whole_p, rtol=1e-12, atol=1e-15)
    for buffer, value in whole_state.items():
        torch.testing.assert_close(piece_state[buffer], value, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("policy", ["bf16-param", "bf16-kahan-param", "bf16-all"])
@pytest.mark.parametrize("name", STAGED)
def test_in_stages_steps_bfloat16_parameters_like_the_whole_tensor(
    name: str, policy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # float32 compute: the reductions' other order moves them by float32 roundings, which may
    # move a stochastically rounded bfloat16 value by one unit (2^-8 relative)
    dtype, options = LOW_PRECISION[policy]
    staged = _counted_stages(monkeypatch)
    whole_p, _ = _steps(name, 5000, dtype, 1 << 40, monkeypatch, **options)
    piece_p, _ = _steps(name, 5000, dtype, 1024, monkeypatch, **options)
    assert staged == [False] * 4 + [True] * 4
    torch.testing.assert_close(piece_p.float(), whole_p.float(), rtol=2**-7, atol=1e-6)
    assert (piece_p != whole_p).float().mean() < 0.01


def _counted_stages(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Record what each call of execute.step_in_stages returned (True: it stepped)."""
    calls: list[bool] = []
    original = execute.step_in_stages

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(original(*args))
        return calls[-1]

    monkeypatch.setattr(execute, "step_in_stages", counting)
    return calls


@pytest.mark.parametrize("rounding", ["stochastic", "nearest"])
@pytest.mark.parametrize("name", [n for n in available() if optimizer_class(n).elementwise])
def test_in_pieces_with_8bit_state_equals_the_whole_tensor_bit_for_bit(
    name: str, rounding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    original = execute.update_one

    def counting(rule, slot, grad, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(grad.numel())
        return original(rule, slot, grad, *args, **kwargs)

    monkeypatch.setattr(execute, "update_one", counting)
    options = {"state_dtype": "int8", "state_rounding": rounding}
    whole_p, whole_state = _steps(name, 5000, torch.float32, 1 << 40, monkeypatch, **options)
    assert sizes == [5000] * 4
    piece_p, piece_state = _steps(name, 5000, torch.float32, 1024, monkeypatch, **options)
    # in each of four steps, four pieces of 4 blocks and the rest (3 blocks and 136 elements)
    assert sizes[4:] == ([1024] * 4 + [904]) * 4
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


@pytest.mark.parametrize("name", ["adamw", *STAGED])
def test_eager_bfloat16_state_step_has_no_tensor_sized_temporaries(name: str) -> None:
    # in pieces (and stages), a large tensor's eager step allocates a few pieces' worth of
    # memory, not decoded float32 copies of its 16-bit state and int32 random bits of its size
    from adamkit.bench.speed import peak_step_bytes

    numel = 1 << 24
    p = torch.randn(numel).requires_grad_()
    p.grad = torch.randn(numel)
    opt = adamkit.create(name, [p], backend="eager", state_dtype="bfloat16")
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
    reduce.PARTS.append(reduce.Shards(group=None, numel=pieces.LARGE_NUMEL + 1))
    try:
        assert pieces.huge(part)
    finally:
        reduce.PARTS.pop()
    reduce.PARTS.append(reduce.Shards(group=None, numel=pieces.LARGE_NUMEL))
    try:
        assert not pieces.huge({"x": torch.zeros(pieces.LARGE_NUMEL + 1)})
    finally:
        reduce.PARTS.pop()


@pytest.mark.parametrize("name", STAGED)
def test_in_stages_one_pass_collects_every_statistic_of_the_inputs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every staged rule's statistics are computed from its inputs (none from another's total),
    # so one pass collects them all and the second steps: each piece is called twice per step
    calls = _counted_calls(monkeypatch)
    _steps(name, 5000, torch.float64, 1024, monkeypatch, state_dtype="bfloat16")
    assert calls == [5] * 2 * 4


def _counted_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of pieces of each call of execute.update_one made by a staged step
    (the pieces' element counts summed, in units of 1024)."""
    calls: list[int] = []
    original = execute.update_one

    def counting(rule, slot, *args, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs.get("private"):
            if kwargs["offset"] == 0:
                calls.append(0)
            calls[-1] += 1
        return original(rule, slot, *args, **kwargs)

    monkeypatch.setattr(execute, "update_one", counting)
    return calls


def _staged(known: list[torch.Tensor]) -> reduce.Staged:
    staged = reduce.Staged(10, known)
    reduce.PARTS.append(staged)
    return staged


def test_a_staged_statistic_not_known_yet_is_collected_and_stands_in_for_scalar_arithmetic() -> (
    None
):
    x = torch.arange(4.0)
    staged = _staged([])
    try:
        n = reduce.norm(x)  # Σx² = 14 over this piece, total unknown
        r = torch.where(n > 0, 2.0 / n.clamp(min=1.0), 1.0) * torch.tensor(3.0)
        assert isinstance(r, reduce.PendingValue)
        m = reduce.mean_abs(x)  # independent of n: collected in the same pass
        assert [float(t) for t in staged.sums] == pytest.approx([14.0, 6.0], rel=1e-6)
        for use in (
            lambda: x * r,  # with a tensor of several elements
            lambda: torch.tensor(1.0).mul_(m),  # written into a known tensor
            lambda: bool(r > 0),  # read on the host
            lambda: r.item(),
            lambda: reduce.norm(x * 0 + r),  # a statistic of it
        ):
            with pytest.raises(reduce.PendingTotalError):
                use()
        with pytest.raises(reduce.PendingTotalError):
            reduce.settle()  # nothing may be stored
    finally:
        reduce.PARTS.pop()


def test_a_staged_statistic_known_from_an_earlier_pass_is_its_total() -> None:
    x = torch.arange(4.0)
    staged = _staged([torch.tensor(100.0), torch.tensor(30.0)])
    try:
        assert torch.equal(reduce.norm(x), torch.tensor(10.0))
        assert torch.equal(reduce.mean_abs(x), torch.tensor(3.0))  # total / the whole numel
        assert staged.sums == []
        reduce.settle()
    finally:
        reduce.PARTS.pop()


def test_a_staged_piece_is_never_huge() -> None:
    # a staged piece's temporaries are a piece's: LAMB keeps u rather than computing it twice
    reduce.PARTS.append(reduce.Staged(pieces.LARGE_NUMEL + 1, []))
    try:
        assert not pieces.huge({"x": torch.zeros(10)})
    finally:
        reduce.PARTS.pop()
