"""core.jobs: tensors stored in blocks (8-bit state) cut into runs of whole blocks, as rows,
give the whole-tensor step, eagerly and compiled."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from helpers import compiled_calls, grad_stream, make_params

import adamkit
from adamkit.core import codecs, compiled, jobs
from adamkit.core.codecs import BLOCK
from adamkit.core.execute import Plan
from adamkit.core.rounding import random_bits
from adamkit.registry import available, optimizer_class

ELEMENTWISE = tuple(n for n in available() if optimizer_class(n).elementwise)


def _plan(opt: adamkit.AdamW, p: torch.Tensor) -> Plan:
    return opt._plan_of(p, 0, opt._validated_hyper(0, opt.param_groups[0]))  # type: ignore[attr-defined]


def _stepped_int8(
    shape: int | tuple[int, ...], optimizer: Callable[..., Any] = adamkit.AdamW
) -> tuple[Any, torch.Tensor]:
    """An eager ``optimizer`` on 8-bit state, stepped once, and its parameter of ``shape``."""
    p = torch.nn.Parameter(torch.randn(shape))
    opt = optimizer([p], state_dtype="int8", backend="eager")
    p.grad = torch.randn(shape)
    opt.step()
    return opt, p


def test_runs_cover_every_element_once_as_rows_and_a_short_last_block() -> None:
    numel = 5 * BLOCK * 4 + 100  # runs of 4 x 4 blocks and 3 blocks, then 1 block + 100
    opt, p = _stepped_int8(numel)
    plan = _plan(opt, p)
    cut = jobs.jobs_of(plan, elementwise=True, run=4 * BLOCK)
    assert [(j.start, j.stop, j.rows) for j in cut] == [
        *((s, s + 4 * BLOCK, True) for s in range(0, 16 * BLOCK, 4 * BLOCK)),
        (16 * BLOCK, 19 * BLOCK, True),
        (19 * BLOCK, numel, False),
    ]
    names = (*plan.slot_names, *plan.state_names)
    for job in cut:
        for name, view in zip(names, job.views, strict=True):
            whole = plan.state_views[names.index(name)]
            if name.endswith("_absmax"):
                first = job.start // BLOCK
                assert view.data_ptr() == whole[first:].data_ptr()
                assert view.numel() == -(-job.numel // BLOCK)
            else:
                assert view.data_ptr() == whole[job.start :].data_ptr()
                assert view.shape == ((job.numel // BLOCK, BLOCK) if job.rows else (job.numel,))
        assert job.grad_view(p.grad).data_ptr() == p.grad[job.start :].data_ptr()


@pytest.mark.parametrize(
    ("blocks", "run", "bounds", "last"),
    [
        (0.5, 4, [0], 0),  # one block: the last job is the tensor
        (1, 4, [0], 0),
        (1.5, 4, [0], 0),  # one whole block goes with the short one
        (2, 4, [0, 2], 2),
        (2.5, 4, [0], 0),  # a lone whole block would be left: both go with the short one
        (3.5, 4, [0, 2], 2),  # two whole blocks as rows, the last job has two blocks
        (5, 2, [0, 2, 5], 5),  # a last run of one block joins the run before
        (9, 4, [0, 4, 9], 9),  # runs of 4 and 5 blocks, not 4, 4 and 1
        (10.25, 4, [0, 4, 9], 9),  # rows up to the last whole block, no lone run
    ],
)
def test_no_job_has_a_lone_block_where_its_kind_has_more(
    blocks: float, run: int, bounds: list[int], last: int
) -> None:
    """Runs are rows of two blocks or more, and the last job has two blocks or more, unless
    the tensor has one: Dynamo would compile a configuration again for a size of one."""
    n = int(blocks * BLOCK)
    assert jobs.run_bounds(n, BLOCK, run * BLOCK) == ([b * BLOCK for b in bounds], last * BLOCK)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_configurations")
@pytest.mark.parametrize("name", ["adamw", "lamb", "adam_mini"])
def test_tensors_of_one_block_or_a_few_are_compiled(name: str) -> None:
    """Tensors of one block, or of a few blocks and a short one, each take a compiled
    configuration whose stand-ins have their signature (one-entry block maxima included),
    so none is left to the eager path, for an element-wise rule, one with per-tensor
    reductions and one that reads shapes."""
    shapes = ((BLOCK,), (2, BLOCK // 2), (3, BLOCK), (BLOCK + 44,), (2 * BLOCK + 8,), (50,))
    params = [torch.nn.Parameter(torch.randn(shape)) for shape in shapes]
    opt = adamkit.create(name, params, state_dtype="int8", backend="compiled")
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    (program,) = opt._programs.values()  # type: ignore[attr-defined]
    assert [stage.work.eager for stage in program.stages] == [[]]
    _assert_each_configuration_compiled_once(opt)


def test_a_rule_with_reductions_takes_the_whole_tensor_as_rows_if_whole_blocks() -> None:
    opt, p = _stepped_int8(3 * BLOCK)
    (job,) = jobs.jobs_of(_plan(opt, p), elementwise=False)
    assert job.rows and (job.start, job.stop) == (0, 3 * BLOCK)
    opt, p = _stepped_int8(3 * BLOCK + 1)
    (job,) = jobs.jobs_of(_plan(opt, p), elementwise=False)
    assert not job.rows and job.stop is None  # the whole tensor, 1-D


def test_tensors_stored_element_by_element_or_whole_are_one_job() -> None:
    for state_dtype in ("bfloat16", "float16", None):
        p = torch.nn.Parameter(torch.randn(4 * BLOCK))
        p.grad = torch.randn_like(p)
        opt = adamkit.AdamW([p], state_dtype=state_dtype, backend="eager")
        opt.step()
        (job,) = jobs.jobs_of(_plan(opt, p), elementwise=True, run=BLOCK)
        assert job.stop is None and not job.rows


def test_a_traced_offset_draws_the_bits_of_an_int_offset() -> None:
    like = torch.empty(1000)
    for offset in (0, 12345, (1 << 31) - 500):
        expected = random_bits(like, 0x9E3779B9, 24, offset)
        assert torch.equal(random_bits(like, 0x9E3779B9, 24, torch.tensor(offset)), expected)


def _stepped(
    make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], shapes: tuple
) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    """Parameters of ``shapes`` after four steps of the optimizer ``make`` gives them."""
    params = make_params(torch.float32, shapes)
    opt = make(params)
    grads = grad_stream(params)
    for i in range(4):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.float()
        opt.step()
    return params, opt


def _chunks(opt: torch.optim.Optimizer) -> list[list[jobs.Job]]:
    """The jobs of each compiled chunk call of ``opt``."""
    return [call.jobs for call in compiled_calls(opt)]  # type: ignore[union-attr]


def _assert_each_configuration_compiled_once(opt: torch.optim.Optimizer) -> None:
    """Every configuration that served a call compiled one graph: the graph traced on the
    stand-ins serves every real job (no Dynamo guard failed on a real one). The test must
    compile its own configurations (``fresh_configurations``): one compiled before by another
    test, on other tensors or another thread count, may have compiled more."""
    configurations = {id(call.config): call.config for call in compiled_calls(opt)}
    assert None not in configurations.values()
    assert [config.graphs for config in configurations.values()] == [1] * len(configurations)


def _assert_compiled_as_eager(
    fast: list[torch.Tensor],
    c_opt: torch.optim.Optimizer,
    eager: list[torch.Tensor],
    e_opt: torch.optim.Optimizer,
) -> None:
    """Parameters within float rounding, and the same random bits: the codes agree but where
    float rounding moved a value across the boundary between two codes, which moves the
    parameter's updates after it by a code's step (under 1e-4 at lr 1e-3)."""
    for a, b in zip(fast, eager, strict=True):
        a, b = a.detach(), b.detach()
        apart = ~torch.isclose(a, b, rtol=1e-4, atol=1e-6)
        assert apart.float().mean().item() < 1e-4
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    for pa, pb in zip(fast, eager, strict=True):
        for key, value in e_opt.state[pb].items():
            if torch.is_tensor(value) and value.dtype == torch.uint8:
                same = (c_opt.state[pa][key] == value).float().mean().item()
                assert same > 0.99, key


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_configurations")
def test_compiled_runs_match_the_eager_whole_tensor(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # one tensor in runs of 2 blocks and a last job, one of whole blocks, small ones
    shapes = ((9 * BLOCK + 40,), (4, 2 * BLOCK), (50,), (BLOCK + 128,), (BLOCK,))

    def make(backend: str) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
        return lambda params: adamkit.AdamW(
            params, backend=backend, state_dtype="int8", weight_decay=0.1
        )

    eager, e_opt = _stepped(make("eager"), shapes)
    monkeypatch.setattr(jobs, "RUN", 2 * BLOCK)
    fast, c_opt = _stepped(make("compiled"), shapes)
    assert "torch.compile failed" not in caplog.text  # compiled indeed, not the eager fallback
    chunks = _chunks(c_opt)
    assert all(len(held) <= compiled.BLOCK_CHUNK for held in chunks)
    cut = [(job.rows, job.numel) for held in chunks for job in held]
    assert sorted(cut) == sorted(
        [(True, 2 * BLOCK)] * 4
        + [(False, BLOCK + 40)]
        + [(True, 2 * BLOCK)] * 4
        + [(False, 50), (False, BLOCK + 128), (False, BLOCK)]
    )
    _assert_compiled_as_eager(fast, c_opt, eager, e_opt)
    _assert_each_configuration_compiled_once(c_opt)


@pytest.mark.slow
@pytest.mark.usefixtures("fresh_configurations")
def test_a_shaped_rule_takes_its_last_dimension_split_in_blocks_or_segments(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shaped rules (which read shapes) on 8-bit state: a tensor whose last dimension is whole
    blocks, or whole segments of 32 elements or more (its gcd with the block), is one job
    with that dimension split (jobs.split_length), compiled as the eager whole tensor steps,
    a vector too (whose one-block v, (1, 1), stays as it is); one whose last dimension is
    neither stays whole. The tensors of a group share lengths where that at most halves
    their segments (jobs.shared_split_lengths), so that they share graphs."""
    # (a per-row v of more rows than a block has block maxima of more than one entry)
    groups = (
        ((6, 2 * BLOCK), (2 * BLOCK,), (5, 100), (BLOCK + 44, 2 * BLOCK), (BLOCK + 44, 100)),
        ((7, 3 * BLOCK // 2), (BLOCK + 44, 3 * BLOCK // 2), (3 * BLOCK // 2,), (9, BLOCK // 2)),
        ((5, 9 * BLOCK // 8), (4, 2 * BLOCK), (3, 3 * BLOCK // 2), (6, BLOCK // 4)),
    )
    bounds = list(itertools.accumulate((len(shapes) for shapes in groups), initial=0))

    def make(backend: str) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
        def grouped(params: list[torch.Tensor]) -> torch.optim.Optimizer:
            parts = [{"params": params[a:b]} for a, b in itertools.pairwise(bounds)]
            return adamkit.AdamMini(parts, backend=backend, state_dtype="int8")

        return grouped

    shapes = tuple(shape for group in groups for shape in group)
    eager, e_opt = _stepped(make("eager"), shapes)
    fast, c_opt = _stepped(make("compiled"), shapes)
    assert "torch.compile failed" not in caplog.text
    held = [job for chunk in _chunks(c_opt) for job in chunk]
    assert sorted((tuple(job.plan.slot["param"].shape), job.split) for job in held) == sorted(
        [
            ((6, 2 * BLOCK), BLOCK),
            ((2 * BLOCK,), BLOCK),
            ((5, 100), 0),
            ((BLOCK + 44, 2 * BLOCK), BLOCK),
            ((BLOCK + 44, 100), 0),
            ((7, 3 * BLOCK // 2), BLOCK // 2),
            ((BLOCK + 44, 3 * BLOCK // 2), BLOCK // 2),
            ((3 * BLOCK // 2,), BLOCK // 2),
            ((9, BLOCK // 2), BLOCK // 2),
            ((5, 9 * BLOCK // 8), BLOCK // 8),
            ((4, 2 * BLOCK), BLOCK // 2),
            ((3, 3 * BLOCK // 2), BLOCK // 2),
            ((6, BLOCK // 4), BLOCK // 8),
        ]
    )
    last = {id(p) for p in c_opt.param_groups[-1]["params"]}
    assert len({job.signature for job in held if id(job.plan.p) in last}) == 2
    _assert_compiled_as_eager(fast, c_opt, eager, e_opt)
    _assert_each_configuration_compiled_once(c_opt)


@pytest.mark.parametrize(
    ("lengths", "chosen"),
    [
        ({256, 128}, {256: 128, 128: 128}),
        ({256, 64}, {256: 256, 64: 64}),
        ({32, 64, 128, 256}, {32: 32, 64: 32, 128: 128, 256: 128}),
        ({96, 192}, {96: 96, 192: 96}),
        ({64, 96}, {64: 64, 96: 96}),
    ],
)
def test_split_lengths_are_shared_where_segments_at_most_halve(
    lengths: set[int], chosen: dict[int, int]
) -> None:
    """From the shortest up, a split length takes the last kept one where that divides it
    and is at least its half (jobs.shared_split_lengths)."""
    assert jobs._halving_at_most(lengths) == chosen


@pytest.mark.parametrize(("cols", "piece"), [(512, BLOCK), (384, 128), (288, 32), (100, 0)])
def test_a_traced_split_dimension_is_known_to_be_whole_pieces(cols: int, piece: int) -> None:
    """The codec cuts a joined split dimension into the pieces it was split into (whole blocks
    or the segments of jobs.split_length), known from the graph alone with its other sizes
    symbols; a dimension not split is not known to be pieces."""
    t = torch.zeros(5, cols)
    split = jobs.split_length(_plan(*_stepped_int8((5, cols), adamkit.AdamMini)), BLOCK)
    assert split == piece

    def traced(t: torch.Tensor) -> torch.Tensor:
        joined = t.flatten(-2) if t.dim() == 3 else t
        return t.new_full((), codecs.piece_length(joined))

    shaped = jobs.unaliased(t.unflatten(-1, (-1, split)) if split else t)
    # other sizes symbols; the piece a constant of the graph, as the chunk body's guard makes it
    torch._dynamo.mark_dynamic(shaped, list(range(shaped.dim() - (1 if split else 0))))
    if split:
        torch._dynamo.mark_static(shaped, -1)
    found = torch.compile(traced, backend="eager", dynamic=False, fullgraph=True)(shaped)
    assert int(found) == piece
    assert codecs.piece_length(t) == 0  # not traced


@pytest.mark.parametrize("cols", [384, 288, 3 * BLOCK])
def test_traced_pieces_encode_and_decode_as_the_eager_blocks(cols: int) -> None:
    """8-bit codes of a split tensor (rows not whole blocks, so blocks span rows), encoded and
    decoded traced in pieces, equal the eager codec's bit for bit: the block maxima, the
    codes (stochastic rounding drawn from the same element numbers) and the values."""
    codec = codecs.Blockwise8(signed=True, rounding="stochastic")
    rows = 37  # the last block is short
    value = torch.randn(rows, cols) * torch.logspace(-3, 2, rows)[:, None]
    eager: dict[str, torch.Tensor] = {}
    codec.create(eager, "m", torch.zeros_like(value))
    codec.store(eager, "m", value, 77, 5)
    piece = math.gcd(cols, BLOCK)

    def traced(split: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, ...]:
        stored = {"m": torch.zeros_like(split, dtype=torch.uint8).flatten(-2)}
        stored["m_absmax"] = torch.zeros_like(eager["m_absmax"])
        codec.store(stored, "m", split.flatten(-2), 77, offset)
        return stored["m"], stored["m_absmax"], codec.load(stored, "m", torch.float32)

    compiled_fn = torch.compile(traced, backend="aot_eager", dynamic=False, fullgraph=True)
    split = jobs.unaliased(value.unflatten(-1, (-1, piece)))
    torch._dynamo.mark_dynamic(split, [0, 1])  # (the piece a constant, as above)
    torch._dynamo.mark_static(split, 2)
    codes, absmax, loaded = compiled_fn(split, torch.tensor(5))
    assert torch.equal(absmax, eager["m_absmax"])
    assert torch.equal(codes, eager["m"])
    assert torch.equal(loaded, codec.load(eager, "m", torch.float32))


@pytest.mark.parametrize(
    ("backend", "name"),
    # eager LAMB: pieces in two stages (execute.step_in_stages) with the runs of block maxima;
    # compiled, a rule with reductions steps the tensor in one job whose passes recompute the
    # decoded moments (graphs.INLINE_DECODED_OPTIONS): 8 bytes per parameter were kept before
    [
        ("eager", "adamw"),
        ("eager", "lamb"),
        ("compiled", "adamw"),
        ("compiled", "lamb"),
        ("compiled", "adam_mini"),
    ],
)
def test_an_8bit_step_has_no_tensor_sized_temporaries(backend: str, name: str) -> None:
    numel = 1 << 24
    assert numel > compiled.LARGE_NUMEL
    assert _peak_step_bytes(name, backend, numel) < numel  # below 1 byte per parameter


@pytest.mark.slow
@pytest.mark.parametrize("name", ["b_adam", "adamw_mini_sf", "lamb"])
def test_an_8bit_step_below_the_recompute_size_keeps_no_tensor_sized_temporary(
    name: str,
) -> None:
    """Compiled, below LARGE_NUMEL (a call that keeps intermediates read twice in float32),
    a rule with reductions on 8-bit state still keeps none the size of the tensor: B_Adam
    kept 8.06 bytes per parameter, AdamW-mini-SF 8.03, LAMB 4.03, with inductor's read
    thresholds (graphs.INLINE_DECODED_OPTIONS)."""
    numel = 1 << 22
    assert numel <= compiled.LARGE_NUMEL
    assert _peak_step_bytes(name, "compiled", numel) < numel  # below 1 byte per parameter


def _peak_step_bytes(name: str, backend: str, numel: int) -> int:
    """The peak extra bytes of a step of optimizer ``name`` on 8-bit state, on one tensor of
    ``numel`` elements, after two steps (B_Adam's second is its general one)."""
    from adamkit.bench.speed import peak_step_bytes

    p = torch.randn(numel).requires_grad_()
    p.grad = torch.randn(numel)
    opt = adamkit.create(name, [p], backend=backend, state_dtype="int8")
    opt.step()
    opt.step()
    return peak_step_bytes(opt.step)
