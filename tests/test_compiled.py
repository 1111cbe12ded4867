"""The compiled fast path equals the eager reference, never recompiles for changing numbers,
and falls back to eager where it cannot run."""

from __future__ import annotations

import contextlib
import gc
import io
import itertools
import weakref
from collections.abc import Iterator

import pytest
import torch
from helpers import (
    compiled_calls,
    compiled_configurations,
    grad_stream,
    graphs_held,
    make_params,
)

import adamkit
from adamkit.core import compiled, graphs, reduce

NAMES = adamkit.available()


@contextlib.contextmanager
def compiled_afresh() -> Iterator[None]:
    """Compiles inside are made here, not loaded from inductor's on-disk caches."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    with (
        inductor_config.patch(fx_graph_cache=False),
        functorch_config.patch(enable_autograd_cache=False),
    ):
        yield


@pytest.fixture
def loop_body_nodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A one-item count of the loop-body FX nodes inductor's code generation runs (the test
    resets it before the compile it counts)."""
    from torch._inductor import loop_body

    count = [0]
    run_node = loop_body.InterpreterShim.run_node

    def counting(self: object, node: object) -> object:
        count[0] += 1
        return run_node(self, node)  # type: ignore[arg-type]

    monkeypatch.setattr(loop_body.InterpreterShim, "run_node", counting)
    return count


SHAPES = ((6, 3, 2, 2), (5, 7), (9,), (1,), (3, 4))


def trajectory(
    name: str,
    backend: str,
    dtype: torch.dtype,
    steps: int = 5,
    shapes: tuple[tuple[int, ...], ...] = SHAPES,
    **hyper: object,
):
    params = make_params(dtype, shapes)
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
    assert compiled_calls(opt) and all(c.config is not None for c in compiled_calls(opt)), (
        "nothing was compiled"
    )
    # and every call goes straight to its graph after the first step
    assert all(c.graph is not None for c in compiled_calls(opt)), "a call still goes through Dynamo"
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", [n for n in NAMES if compiled.merge_kind(adamkit.optimizer_class(n), 1) == "segmented"]
)
def test_uniform_segmented_merges_equal_eager(name: str) -> None:
    # tensors of one size merge as rows of a matrix (reduced and broadcast per row, no index
    # per element), compiled and eager alike; both equal the per-tensor eager steps
    shapes = ((6,), (6,), (6,), (6,), (1,), (300, 300))  # the matrix: above MERGE_NUMEL
    eager, _ = trajectory(name, "eager", torch.float64, shapes=shapes)
    fast, opt = trajectory(name, "compiled", torch.float64, shapes=shapes)
    assert "uniform" in {c.kind for c in compiled_calls(opt)}
    for a, b in zip(fast, eager, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "state_dtype"), [("adamw", "bfloat16"), ("lamb", "int8")])
def test_compiled_low_precision_state_matches_eager(
    name: str, state_dtype: str, caplog: pytest.LogCaptureFixture
) -> None:
    # with tensors of whole 256-element blocks, and of whole blocks and a shorter last one
    shapes = (*SHAPES, (300, 3), (512,))
    options = {"state_dtype": state_dtype, "shapes": shapes}
    eager, e_opt = trajectory(name, "eager", torch.float32, **options)
    compiled, c_opt = trajectory(name, "compiled", torch.float32, **options)
    assert "torch.compile failed" not in caplog.text  # compiled indeed, not the eager fallback
    for a, b in zip(compiled, eager, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-3, atol=1e-5)
    # Merged calls draw rounding bits by position in the merged buffer, so small tensors round
    # differently than in eager: a state may differ by a few ulps of its largest magnitude,
    # which stay as a moment decays (m after a sign change).
    for pa, pb in zip(compiled, eager, strict=True):
        for key, value in e_opt.state[pb].items():
            if torch.is_tensor(value) and value.is_floating_point():
                other, value = c_opt.state[pa][key].float(), value.float()
                atol = 2**-5 * value.abs().max().item() + 1e-6
                torch.testing.assert_close(other, value, rtol=2e-2, atol=atol)


@pytest.mark.slow
def test_no_recompiles_over_100_steps_with_a_changing_lr(
    fresh_configurations: graphs.Configurations,
) -> None:
    # small tensors (merged into one flat job) and one above the merge size (a chunk call)
    params = make_params(torch.float32, (*SHAPES, (300, 250)))
    assert compiled.MERGE_NUMEL < 300 * 250
    opt = adamkit.AdamW(params, backend="compiled")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=110)
    grads = grad_stream(params)

    def step(i: int) -> None:
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.float()
        opt.step()
        sched.step()

    step(0)
    assert graphs_held(fresh_configurations) == 1  # one graph serves the merged job and the chunk
    assert {type(call) for call in compiled_calls(opt)} == {compiled.Merged, compiled.Chunk}
    for i in range(1, 101):
        step(i)
    assert graphs_held(fresh_configurations) == 1


REDUCING = [n for n in NAMES if not adamkit.optimizer_class(n).elementwise]


@pytest.mark.slow
@pytest.mark.parametrize("name", REDUCING)
def test_reducing_rules_compile_each_configuration_once(
    name: str, fresh_configurations: graphs.Configurations
) -> None:
    # Configurations compile on small stand-ins. Tensors whose reductions run over more than
    # 4096 elements (a chunk call, and two same-sized tensors merged as rows) must be served
    # by that graph: a size guard would compile every configuration a second time.
    shapes = ((300, 250), (50, 100), (50, 100), (7, 3), (5,))
    params = make_params(torch.float32, shapes)
    opt = adamkit.create(name, params, backend="compiled")
    grads = grad_stream(params)
    for i in range(3):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.float()
        opt.step()
    compiled_configs = compiled_configurations(fresh_configurations)
    assert compiled_configs and compiled_calls(opt)
    assert graphs_held(fresh_configurations) == len(compiled_configs)


@pytest.mark.slow
def test_code_generation_does_not_retrace_shared_intermediates(
    fresh_configurations: graphs.Configurations, loop_body_nodes: list[int]
) -> None:
    # Inductor traces an inlined intermediate again for every read. B_Adam's softplus
    # polynomials read its Φ chain many times: with inductor's CPU threshold (50 operations)
    # the loop bodies of its general configuration ran ~95,000 FX nodes in code generation;
    # kept once above 40 operations (INDUCTOR_OPTIONS), ~6,700.
    params = make_params(torch.float32, ((300, 250),))
    opt = adamkit.create("b_adam", params, backend="compiled")
    grads = grad_stream(params)
    with compiled_afresh():
        for i in range(2):  # step 2 compiles the general configuration
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g.float()
            loop_body_nodes[0] = 0
            opt.step()
    assert len(fresh_configurations.known) == 2
    assert 0 < loop_body_nodes[0] < 20_000


def test_an_inlined_intermediate_is_traced_once_per_loop_body(
    loop_body_nodes: list[int],
) -> None:
    # Each level of the chain reads the one before twice; nothing is kept (the opcount
    # threshold of INLINE_DECODED_OPTIONS), so every level is inlined. Inductor traced the
    # chain as a tree, at least 2^levels reads of x (ten levels: a million loop-body nodes run,
    # against 215 memoized); memoized loaders (codegen._loaders_memoized) trace each level once.
    import types

    from torch._inductor.compile_fx import compile_fx

    from adamkit.core.codegen import adjusted_codegen, adjustments_left_out

    def chain(x: torch.Tensor) -> torch.Tensor:
        for _ in range(7):
            x = x * x + 0.5 * x
        return x

    def nodes(left_out: list[str]) -> int:
        def backend(gm: torch.fx.GraphModule, inputs: list[torch.Tensor]) -> object:
            with adjustments_left_out(left_out), adjusted_codegen():
                return compile_fx(gm, inputs, config_patches=graphs.INLINE_DECODED_OPTIONS)

        # a code object of its own per compile, so Dynamo compiles each afresh
        code = chain.__code__.replace(co_name=f"chain_{len(left_out)}")
        fresh = types.FunctionType(code, chain.__globals__)
        loop_body_nodes[0] = 0
        x = torch.rand(64, dtype=torch.float64) * 0.1
        with compiled_afresh():
            got = torch.compile(fresh, backend=backend, fullgraph=True)(x)
        torch.testing.assert_close(got, chain(x), rtol=1e-12, atol=0)
        return loop_body_nodes[0]

    memoized, as_a_tree = nodes([]), nodes(["loaders_memoized"])
    assert 0 < memoized < 400  # (every kernel's loop body, a few nodes per level)
    assert as_a_tree > 20 * memoized


@pytest.mark.parametrize(
    "statistic, exact",
    [
        (reduce.norm, lambda x: x.square().sum().sqrt()),
        (reduce.rms, lambda x: x.square().mean().sqrt()),
        (reduce.mean_square, lambda x: x.square().mean()),
        (reduce.mean_abs, lambda x: x.abs().mean()),
        (
            lambda x: reduce.channel_rms(x.view(2, -1)),
            lambda x: x.view(2, -1)[0].square().mean().sqrt(),
        ),
    ],
)
def test_traced_statistics_of_large_float32_tensors_are_correctly_rounded(
    statistic: object, exact: object
) -> None:
    # Traced on a small tensor, then run on 2^20 + 2 elements of mean 1: the float32 result
    # is within one rounding of the float64 value (a float32 accumulator, or inductor's
    # cascade helper, is not).
    from adamkit.core.graphs import INDUCTOR_OPTIONS

    traced = torch.compile(statistic, dynamic=True, options=INDUCTOR_OPTIONS)
    traced(torch.rand(64) + 0.5)
    x = torch.rand((1 << 20) + 2, generator=torch.Generator().manual_seed(0)) + 0.5
    value = traced(x).reshape(-1)[0]
    truth = exact(x.double())  # type: ignore[operator]
    assert value.dtype == torch.float32
    assert abs(value.double() - truth) <= 2.0**-24 * truth


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
    assert not compiled_calls(opt)


MERGEABLE = [
    n
    for n in NAMES
    if adamkit.optimizer_class(n).elementwise
    or adamkit.optimizer_class(n).segmentable
    or adamkit.optimizer_class(n).vectors_elementwise
]


def _has_scalar_state(name: str) -> bool:
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = adamkit.create(name, [p], backend="eager")
    opt.step()
    return any(torch.is_tensor(v) and v.numel() == 1 for v in opt.state[p].values())


SCALAR_STATE = [n for n in MERGEABLE if _has_scalar_state(n)]


@pytest.mark.parametrize("name", [n for n in MERGEABLE if n not in SCALAR_STATE])
def test_merge_declarations_hold(name: str) -> None:
    # An optimizer that declares its rule element-wise (on every tensor, or on vectors), or
    # coupled only through per-tensor reductions, may have its small tensors concatenated by
    # the compiled path: stepping two tensors must equal stepping their concatenation (with
    # the reductions segmented).
    # (Optimizers with one-element state are checked on the compiled path instead, by
    # test_merged_tensors_keep_their_scalar_state_per_tensor: a joined tensor has one EMA.)
    cls = adamkit.optimizer_class(name)
    vectors_only = not (cls.elementwise or cls.segmentable)
    a, b = make_params(torch.float64, ((15,), (8,)) if vectors_only else ((5, 3), (8,)))
    joined = torch.cat([a.detach().view(-1), b.detach().view(-1)]).requires_grad_()
    hyper = {"scale_invariant": True} if "scale_invariant" in cls.declared_hypers() else {}
    separate = adamkit.create(name, [a, b], backend="eager", **hyper)
    together = adamkit.create(name, [joined], backend="eager", **hyper)
    ids = torch.tensor([0] * 15 + [1] * 8)
    segments = reduce.Segments(
        ids, torch.tensor([15.0, 8.0], dtype=torch.float64), torch.tensor([0, 15])
    )
    grads = grad_stream([joined])
    for i in range(4):
        g = grads(i)[0] * torch.linspace(0.1, 3.0, joined.numel(), dtype=torch.float64)
        a.grad, b.grad = g[:15].view(a.shape).clone(), g[15:].clone()
        joined.grad = g.clone()
        separate.step()
        if cls.segmentable:
            reduce.ACTIVE.append(segments)
        try:
            together.step()
        finally:
            if cls.segmentable:
                reduce.ACTIVE.pop()
    torch.testing.assert_close(
        torch.cat([a.detach().view(-1), b.detach().view(-1)]),
        joined.detach(),
        rtol=1e-12,
        atol=1e-14,
        msg=f"{name} declares a merge it does not allow",
    )


def test_merge_declarations() -> None:
    assert {"adam", "adamw", "radam", "adabelief", "ademamix"} <= set(MERGEABLE)
    assert {"lamb", "um", "b_adam"} <= set(MERGEABLE)
    assert {"stable_adam", "adam_awd", "adam_gc"} <= set(MERGEABLE)
    assert not adamkit.optimizer_class("adam_gc").elementwise  # own rule, not re-declared
    assert not adamkit.optimizer_class("adam_gc").segmentable
    assert {"adamw_mini_sf", "ref_adamw_mini_sf", "adam_mini"} <= set(SCALAR_STATE)


def stepped(backend: str, steps: int, **hyper: object) -> tuple[list[torch.Tensor], object]:
    params = make_params(torch.float64, SHAPES)
    opt = adamkit.AdamW(params, backend=backend, weight_decay=0.1, **hyper)
    grads = grad_stream(params)
    for i in range(steps):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.clone()
        opt.step()
    return params, opt


@pytest.mark.slow
def test_merged_small_tensors_keep_state_as_ordinary_views_and_resume_exactly() -> None:
    params, opt = stepped("compiled", 3)
    assert any(
        isinstance(call, compiled.Merged)
        for bucket in next(iter(opt._programs.values())).stages[0].work.buckets
        for call in bucket.calls
    )
    for p in params:
        assert opt.state[p]["exp_avg"].shape == p.shape
    saved = io.BytesIO()
    torch.save(opt.state_dict(), saved)
    # a fresh optimizer, loaded, continues exactly like the uninterrupted one
    clones = [p.detach().clone().requires_grad_() for p in params]
    fresh = adamkit.AdamW(clones, backend="compiled", weight_decay=0.1)
    saved.seek(0)
    fresh.load_state_dict(torch.load(saved))
    grads = grad_stream(params)
    for i in range(3, 6):
        for p, q, g in zip(params, clones, grads(i), strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        fresh.step()
    for p, q in zip(params, clones, strict=True):
        assert torch.equal(p, q)
    eager, _ = stepped("eager", 6)
    for p, e in zip(params, eager, strict=True):
        torch.testing.assert_close(p.detach(), e.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_compiled_path_follows_changes_between_steps() -> None:
    # Replaced parameter storage, replaced state tensors, a reset state, parameters without
    # gradients and parameters at different steps: the compiled path must notice each and
    # match eager.
    def script(backend: str) -> list[torch.Tensor]:
        params = make_params(torch.float64, SHAPES)
        opt = adamkit.AdamW(params, backend=backend)
        grads = grad_stream(params)
        for i in range(11):
            for j, (p, g) in enumerate(zip(params, grads(i), strict=True)):
                p.grad = None if (i in (7, 8) and j == 0) else g.clone()
            if i == 3:
                params[1].data = params[1].data.clone()
            if i == 5:
                opt.state[params[2]]["exp_avg"] = opt.state[params[2]]["exp_avg"].clone() * 0.5
            if i == 6:
                opt.state[params[3]] = {}  # a reset: the state starts again at step 0
            opt.step()
        if backend == "compiled":  # parameters left at three different steps: three stages
            assert len(opt._programs[id(opt.param_groups[0])].stages) == 3
        return params

    for a, b in zip(script("compiled"), script("eager"), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_compiled_steps_keep_no_gradient_alive() -> None:
    params, _opt = stepped("compiled", 2)
    refs = [weakref.ref(p.grad) for p in params]
    for p in params:
        p.grad = None
    gc.collect()
    assert all(r() is None for r in refs)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adamw", "lamb"])
def test_complex_parameters_merge_as_their_real_view(name: str) -> None:
    def run(backend: str) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(3)
        params = [
            torch.randn(4, 3, dtype=torch.complex128, generator=gen).requires_grad_(),
            torch.randn(7, dtype=torch.float64, generator=gen).requires_grad_(),
            torch.randn(5, dtype=torch.complex128, generator=gen).requires_grad_(),
        ]
        opt = adamkit.create(name, params, backend=backend)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, dtype=p.dtype, generator=gen)
            opt.step()
        return params

    for a, b in zip(run("compiled"), run("eager"), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


def run_model(backend: str, steps: int = 3) -> tuple[torch.nn.Module, object]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3)
    ).double()
    opt = adamkit.AdamW(model.parameters(), backend=backend, weight_decay=0.1)
    x = torch.randn(5, 6, dtype=torch.float64)
    for _ in range(steps):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    return model, opt


@pytest.mark.slow
def test_module_parameters_take_the_compiled_path() -> None:
    # nn.Parameter is a tensor subclass the compiled path must take (unlike DTensor)
    model, opt = run_model("compiled")
    stepped_params = {id(plan.p) for call in compiled_calls(opt) for plan in call.plans}
    assert stepped_params == {id(p) for p in model.parameters()}
    reference, _ = run_model("eager")
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_steady_steps_call_their_graphs_without_dynamo(monkeypatch: pytest.MonkeyPatch) -> None:
    through = []
    original = graphs.Configuration.through_dynamo

    def counted(self: graphs.Configuration, *args: object) -> graphs.Graph | None:
        through.append(1)
        return original(self, *args)

    monkeypatch.setattr(graphs.Configuration, "through_dynamo", counted)
    params, opt = stepped("compiled", 1)
    first = len(through)
    assert first >= len(compiled_calls(opt)) > 0
    assert all(call.graph is not None for call in compiled_calls(opt))
    grads = grad_stream(params)
    for i in range(1, 6):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.clone()
        opt.step()
    assert len(through) == first
    eager, _ = stepped("eager", 6)
    for p, e in zip(params, eager, strict=True):
        torch.testing.assert_close(p.detach(), e.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_a_configuration_is_compiled_once_per_process(
    fresh_configurations: graphs.Configurations,
) -> None:
    stepped("compiled", 2)
    graphs_before = graphs_held(fresh_configurations)
    known = dict(fresh_configurations.known)
    _params, opt = stepped("compiled", 2)  # a second optimizer of the same configuration
    assert graphs_held(fresh_configurations) == graphs_before
    assert fresh_configurations.known == known
    assert all(call.graph is not None for call in compiled_calls(opt))


@pytest.mark.slow
def test_shaped_rules_take_gradients_of_any_strides() -> None:
    # A graph is called directly on the strides Dynamo checked; gradients that come with
    # other strides (here every other step) must still give the eager result.
    def run(backend: str) -> list[torch.Tensor]:
        params = make_params(torch.float64, ((6, 4), (5, 3), (4, 7), (8,)))
        opt = adamkit.create("adam_gc", params, backend=backend)
        grads = grad_stream(params)
        for i in range(4):
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g.t().contiguous().t() if i % 2 and g.ndim == 2 else g.clone()
            opt.step()
        return params

    for a, b in zip(run("compiled"), run("eager"), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_calls_with_huge_tensors_recompute_instead_of_keeping_temporaries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # LAMB keeps its direction u between the norm's pass and the update's, except in calls
    # with tensors above LARGE_NUMEL (lowered here), where it is recomputed: no temporary,
    # and the same values as the eager path.
    from adamkit.bench.speed import peak_step_bytes

    def peak(large_numel: int) -> float:
        monkeypatch.setattr(compiled, "LARGE_NUMEL", large_numel)
        params = make_params(torch.float32, ((300, 250),))
        opt = adamkit.LAMB(params, backend="compiled", weight_decay=0.01)
        params[0].grad = torch.randn(300, 250)
        opt.step()
        assert compiled_calls(opt)[0].recompute == (large_numel < 300 * 250)
        return peak_step_bytes(opt.step) / (300 * 250)

    assert peak(1 << 23) >= 4.0  # kept: a float32 temporary the size of the tensor
    assert peak(1000) < 1.0

    def run(backend: str) -> list[torch.Tensor]:
        params = make_params(torch.float64, ((300, 250), (40, 30), (7,)))
        opt = adamkit.LAMB(params, backend=backend, weight_decay=0.01)
        grads = grad_stream(params)
        for i in range(3):
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g.clone()
            opt.step()
        return params

    for a, b in zip(run("compiled"), run("eager"), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_no_optimizer_keeps_a_tensor_sized_temporary(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Neither a call with a huge tensor (LARGE_NUMEL lowered) nor a merged call of small ones
    # may keep an intermediate as large as its tensors: inductor stores a reused intermediate
    # instead of recomputing it once it reads more than a few buffers (stored scalars and the
    # segment indices of merged calls count). Each part holds half the elements, so such a
    # float32 temporary of either would take 2 bytes per element of the whole.
    from adamkit.bench.speed import peak_step_bytes

    monkeypatch.setattr(compiled, "LARGE_NUMEL", 1000)
    params = make_params(torch.float32, ((300, 250),) + ((128,),) * 586)
    opt = adamkit.create(name, params, backend="compiled")
    grads = grad_stream(params)
    for i in range(2):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g.float()
        opt.step()
    kinds = {type(call) for call in compiled_calls(opt)}
    assert compiled.Merged in kinds and compiled.Chunk in kinds
    assert all(call.recompute for call in compiled_calls(opt) if isinstance(call, compiled.Chunk))
    assert peak_step_bytes(opt.step) < 2 * 75_000  # < 1 byte per element


@pytest.mark.slow
@pytest.mark.parametrize("name", SCALAR_STATE)
def test_merged_tensors_keep_their_scalar_state_per_tensor(name: str) -> None:
    # A segmentable rule with one-element state (AdamW-mini-SF's ‖g‖ EMA, Adam-mini's one-block v)
    # is merged with one value per tensor; a tensor AdamW-mini-SF skips (non-finite ‖g‖) keeps
    # its own. Equal to eager, per tensor, state included.
    shaped = adamkit.optimizer_class(name).shaped  # merges vectors only

    def run(backend: str) -> tuple[list[torch.Tensor], object]:
        params = make_params(
            torch.float64, ((15,), (8,), (6,)) if shaped else ((5, 3), (8,), (4, 4))
        )
        opt = adamkit.create(name, params, backend=backend)
        grads = grad_stream(params)
        for i in range(4):
            for j, (p, g) in enumerate(zip(params, grads(i), strict=True)):
                p.grad = g * (j + 1.0)
            if i == 2 and name.endswith("mini_sf"):  # a skipped step (non-finite ‖g‖)
                params[1].grad[0] = torch.inf
            opt.step()
        return params, opt

    merged, opt = run("compiled")
    assert any(isinstance(c, compiled.Merged) for c in compiled_calls(opt))
    eager, reference = run("eager")
    close = {"rtol": 1e-12, "atol": 1e-14}
    for p, e in zip(merged, eager, strict=True):
        torch.testing.assert_close(p.detach(), e.detach(), **close)
        for key, value in reference.state[e].items():  # type: ignore[attr-defined]
            if torch.is_tensor(value):
                mine = opt.state[p][key]  # type: ignore[attr-defined]
                assert mine.shape == value.shape
                torch.testing.assert_close(mine, value, **close)


@pytest.mark.slow
@pytest.mark.parametrize("name", SCALAR_STATE)
def test_merged_scalar_state_needs_no_temporary(name: str) -> None:
    # Reading the per-segment state back must not keep a per-element copy (4 B per element).
    from adamkit.bench.speed import peak_step_bytes

    params = make_params(torch.float32, [(4096 + j,) for j in range(20)])
    opt = adamkit.create(name, params, backend="compiled")
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    assert any(isinstance(c, compiled.Merged) for c in compiled_calls(opt))
    assert peak_step_bytes(opt.step) < sum(p.numel() for p in params)  # < 1 B per element


def test_codegen_adjustments_apply_to_this_inductor() -> None:
    # Each adjustment skips itself where inductor lacks what it patches; on the torch that
    # adamkit pins, all of them must be in force while adamkit compiles (and none after).
    from torch._inductor.choices import InductorChoices
    from torch._inductor.codegen import cpp
    from torch._inductor.dtype_propagation import DtypePropagationOpsHandler

    from adamkit.core.codegen import adjusted_codegen

    patched = [
        (cpp.CppScheduling, "codegen_outer_loop_node"),
        (cpp.TilingSelect, "select_tiling"),
        (cpp.CppVecOverrides, "to_dtype_bitcast"),
        (cpp, "parallel_num_threads"),
        (cpp.CppVecKernel, "arange"),
        (cpp.CppCSEVariable, "update_on_args"),
        (cpp.CppVecKernel, "get_to_dtype_expr"),
        (DtypePropagationOpsHandler, "__init__"),
        (InductorChoices, "can_fuse"),
        (InductorChoices, "can_fuse_horizontal"),
    ]
    before = [vars(owner).get(name) for owner, name in patched]
    with adjusted_codegen():
        during = [vars(owner).get(name) for owner, name in patched]
    after = [vars(owner).get(name) for owner, name in patched]
    assert all(a is not b for a, b in zip(before, during, strict=True))
    assert all(a is b for a, b in zip(before, after, strict=True))


def test_dtype_rules_are_built_once_unless_their_tables_grow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch._inductor.lowering  # it fills the table of rules
    from torch._inductor import utils
    from torch._inductor.dtype_propagation import DtypePropagationOpsHandler

    from adamkit.core.codegen import adjusted_codegen

    with adjusted_codegen():
        rule = DtypePropagationOpsHandler().add
        assert DtypePropagationOpsHandler().add is rule  # not set again
        a, b = (torch.empty(1, dtype=d) for d in (torch.float16, torch.float32))
        assert rule(a, b) == torch.float32
        grown = dict(utils.op_dtype_propagation_rules)
        grown["adamkit_test_op"] = utils.op_dtype_propagation_rules["add"]
        monkeypatch.setattr(utils, "op_dtype_propagation_rules", grown)
        assert DtypePropagationOpsHandler().adamkit_test_op is not None  # rebuilt with it
        assert DtypePropagationOpsHandler().add is not rule


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.float32])
def test_vectors_of_indices_by_broadcast_equal_eager(dtype: torch.dtype) -> None:
    # The arange adjustment (start broadcast plus a constant vector) gives every lane of the
    # vector body and of the tail, for strides 1 and 3 and a start that is not a multiple of a
    # vector, the values eager gives.
    from torch._inductor.compile_fx import compile_fx

    from adamkit.core.codegen import adjusted_codegen, cache_tag_options

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        with adjusted_codegen():  # keyed on the adjustments, as adamkit compiles
            return compile_fx(gm, example_inputs, config_patches=cache_tag_options())

    def indexed(x: torch.Tensor) -> torch.Tensor:
        n = x.numel()
        ones = torch.arange(n, dtype=dtype)
        threes = torch.arange(5, 5 + 3 * n, 3, dtype=dtype)
        return x * 2 + (ones * 7 + threes).to(x.dtype)

    compiled_indexed = torch.compile(indexed, backend=backend, dynamic=True, fullgraph=True)
    for n in (1, 15, 16, 33, 100, 4099):
        x = torch.randn(n)
        assert torch.equal(compiled_indexed(x), indexed(x)), n


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_stochastic_rounding_compiled_bit_for_bit_as_eager(dtype: torch.dtype) -> None:
    # The vector bitcast and the 16-bit tiling change generated code only: a float32 update
    # and a stochastically rounded 16-bit store in one loop give eager's bits, in the vector
    # body and in the tail of every size.
    from torch._inductor.compile_fx import compile_fx

    from adamkit.core.codegen import adjusted_codegen, cache_tag_options
    from adamkit.core.rounding import stochastic_round, stream_key

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        with adjusted_codegen():  # keyed on the adjustments, as adamkit compiles
            return compile_fx(gm, example_inputs, config_patches=cache_tag_options())

    def update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, t: torch.Tensor) -> None:
        new_m = m.float() * 0.9 + g * 0.1
        p.sub_(new_m * 1e-3)
        m.copy_(stochastic_round(new_m, dtype, stream_key(7, 3, 0, t)))

    compiled_update = torch.compile(update, backend=backend, dynamic=True, fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    for n in (1, 15, 16, 33, 100, 4099):
        g = torch.randn(n, generator=gen) * torch.logspace(-30, 4, n)
        p, m = torch.randn(n, generator=gen), torch.randn(n, generator=gen).to(dtype)
        runs = [(p.clone(), m.clone()) for _ in range(2)]
        for step in range(1, 4):
            t = torch.tensor(step)
            update(runs[0][0], g, runs[0][1], t)
            compiled_update(runs[1][0], g, runs[1][1], t)
        assert torch.equal(runs[0][0], runs[1][0]), n
        assert torch.equal(runs[0][1].view(torch.int16), runs[1][1].view(torch.int16)), n


def test_bfloat16_narrowing_truncates_only_what_stochastic_rounding_made_exact() -> None:
    # With AVX2 or AVX-512, the narrowing of a stochastically rounded value is a truncation; a plain
    # narrowing, and one after a mask that leaves low bits set, keep ATen's rounding to
    # nearest. All three give eager's bits.
    from torch._inductor import cpu_vec_isa
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.utils import run_and_get_cpp_code

    from adamkit.core.codegen import adjusted_codegen, cache_tag_options
    from adamkit.core.rounding import stochastic_round

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        with adjusted_codegen():
            return compile_fx(gm, example_inputs, config_patches=cache_tag_options())

    def narrowings(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        bits = x.view(torch.int32)
        coarse = (bits & -4096).view(torch.float32)  # 12 low bits cleared: not yet a bfloat16
        return (
            x.to(torch.bfloat16),
            coarse.to(torch.bfloat16),
            stochastic_round(x, torch.bfloat16, t),
        )

    compiled = torch.compile(narrowings, backend=backend, dynamic=True, fullgraph=True)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4099, generator=gen) * torch.logspace(-30, 30, 4099)
    x[:4] = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0])
    t = torch.tensor(5)
    got, code = run_and_get_cpp_code(compiled, x, t)
    for a, b in zip(got, narrowings(x, t), strict=True):
        assert torch.equal(a.view(torch.int16), b.view(torch.int16))
    isa = cpu_vec_isa.pick_vec_isa()
    width = 512 if isinstance(isa, cpu_vec_isa.VecAVX512) else 256
    truncations = code.count(f"_mm{width}_packus_epi32(_mm{width}_srli_epi32(")
    truncating = isinstance(isa, (cpu_vec_isa.VecAVX2, cpu_vec_isa.VecAVX512))
    assert truncations == (2 if truncating else 0)


def _adjusted_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
    """inductor as adamkit compiles: its adjustments, options and cache key."""
    from torch._inductor.compile_fx import compile_fx

    from adamkit.core.codegen import adjusted_codegen, cache_tag_options

    with adjusted_codegen():
        options = {**graphs.INDUCTOR_OPTIONS, **cache_tag_options()}
        return compile_fx(gm, example_inputs, config_patches=options)


def test_float64_conversions_are_vector_instructions_with_eagers_values() -> None:
    # float32 -> float64 (a sum accumulated in float64) and float64 -> float32 (an update
    # computed in float64, stored in float32), in the vector body and the tail of every size:
    # eager's bits, from conversion instructions with AVX-512 (ATen's generic conversion goes
    # through memory element by element; with AVX2 it stays, as fast or faster on a Zen 3).
    from torch._inductor import cpu_vec_isa
    from torch._inductor.utils import run_and_get_cpp_code

    def widened(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = torch.sum(x * x, dtype=torch.float64)
        return total, (x.double() * 3.0 + y.double() / 7.0).float()

    compiled_widened = torch.compile(
        widened, backend=_adjusted_backend, dynamic=True, fullgraph=True
    )
    gen = torch.Generator().manual_seed(0)
    for n in (1, 15, 16, 33, 100, 4099):
        x = torch.randn(n, generator=gen) * torch.logspace(-30, 30, n)
        y = torch.randn(n, generator=gen)
        (total, narrowed), code = run_and_get_cpp_code(compiled_widened, x, y)
        expected_total, expected_narrowed = widened(x, y)
        torch.testing.assert_close(total, expected_total, rtol=1e-15, atol=0)  # order of sums
        assert torch.equal(narrowed, expected_narrowed), n
    avx512 = isinstance(cpu_vec_isa.pick_vec_isa(), cpu_vec_isa.VecAVX512)
    assert ("_mm512_cvtps_pd" in code and "_mm512_cvtpd_ps" in code) == avx512
    assert ("at::vec::convert<double" in code) != avx512  # ATen's, elsewhere (AVX2 included)


def test_reductions_over_the_same_loop_share_one_pass() -> None:
    # Pre_LAMB's RMS(θ) and RMS(g) read different tensors over the same range: one loop sums
    # both, then one loop updates (two loops, where inductor alone makes three).
    from torch._inductor.utils import run_and_get_cpp_code

    def two_norms(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor) -> None:
        p_rms = torch.mean(p * p, dtype=torch.float64).sqrt().float()
        g_rms = torch.mean(g * g, dtype=torch.float64).sqrt().float()
        m.mul_(0.9).add_(g * (p_rms / g_rms), alpha=0.1)
        p.sub_(m * 1e-3)

    compiled_norms = torch.compile(
        two_norms, backend=_adjusted_backend, dynamic=True, fullgraph=True
    )
    gen = torch.Generator().manual_seed(0)
    for n in (7, 4099):
        p, g, m = (torch.randn(n, generator=gen) for _ in range(3))
        expected = [t.clone() for t in (p, g, m)]
        two_norms(*expected)
        _, code = run_and_get_cpp_code(compiled_norms, p, g, m)
        torch.testing.assert_close(p, expected[0])
        torch.testing.assert_close(m, expected[2])
        assert code.count("for(int64_t x0=") == 2, code


def test_per_row_statistics_fuse_with_their_rows_update() -> None:
    # Adam-mini's per-row mean of g², the write of the row's v and the row's update: one loop
    # over rows (g read once), where inductor alone makes three loops.
    from torch._inductor.utils import run_and_get_cpp_code

    def row_blocks(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> None:
        m.lerp_(g, 0.1)
        mean_square = torch.mean(g * g, dim=1, keepdim=True, dtype=torch.float64)
        v.mul_(0.999).add_(mean_square.float(), alpha=0.001)
        p.sub_(1e-3 * m / (v.sqrt() + 1e-8))

    compiled_rows = torch.compile(
        row_blocks, backend=_adjusted_backend, dynamic=True, fullgraph=True
    )
    gen = torch.Generator().manual_seed(0)
    for rows, cols in ((3, 7), (40, 100)):
        tensors = [torch.randn(rows, cols, generator=gen) for _ in range(3)]
        tensors.append(torch.rand(rows, 1, generator=gen))
        expected = [t.clone() for t in tensors]
        row_blocks(*expected)
        _, code = run_and_get_cpp_code(compiled_rows, *tensors)
        for got, want in zip(tensors, expected, strict=True):
            torch.testing.assert_close(got, want)
        assert code.count("for(int64_t x0=") == 1, code


def test_centralized_conv_gradients_compile_with_outer_loop_fusion() -> None:
    # Gradient centralization of a conv weight (a per-channel mean, then in-place updates whose
    # buffers are read again) raised KeyError in inductor 2.13's outer-loop fusion
    # (pytorch/pytorch#196570); with adamkit's adjustments it compiles, with eager's values.
    def centralized(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor) -> None:
        centered = g - g.mean(dim=(1, 2, 3), keepdim=True)
        m.lerp_(centered, 0.1)
        v.mul_(0.999).addcmul_(centered, centered, value=0.001)
        p.sub_(1e-3 * m / (v.sqrt() + 1e-8))

    compiled_centralized = torch.compile(
        centralized, backend=_adjusted_backend, dynamic=True, fullgraph=True
    )
    gen = torch.Generator().manual_seed(0)
    tensors = [torch.randn(16, 8, 3, 3, generator=gen) for _ in range(3)]
    tensors.append(torch.rand(16, 8, 3, 3, generator=gen))
    expected = [t.clone() for t in tensors]
    centralized(*expected)
    compiled_centralized(*tensors)
    for got, want in zip(tensors, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_float32_loops_hold_values_in_pairs_of_vectors_with_avx2() -> None:
    # With AVX2, a loop without 16-bit values is tiled at twice the float32 width (values in
    # pairs of vectors); elsewhere inductor's own width stays. Eager's values, to rounding.
    from torch._inductor import cpu_vec_isa
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.utils import run_and_get_cpp_code

    from adamkit.core.codegen import adjusted_codegen, cache_tag_options

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        with adjusted_codegen():
            return compile_fx(gm, example_inputs, config_patches=cache_tag_options())

    def update(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x / (y.sqrt() + 1e-8)

    compiled = torch.compile(update, backend=backend, dynamic=True, fullgraph=True)
    x, y = torch.randn(1000), torch.rand(1000)
    got, code = run_and_get_cpp_code(compiled, x, y)
    torch.testing.assert_close(got, update(x, y))
    paired = "VectorizedN<float,2>" in code
    assert paired == (type(cpu_vec_isa.pick_vec_isa()) is cpu_vec_isa.VecAVX2)


@pytest.mark.slow
def test_compiled_in_a_one_thread_process_is_right_on_two_threads(
    fresh_configurations: graphs.Configurations,
) -> None:
    # Adam-mini's one-element v of a vector is updated by a scalar loop inside a parallel
    # region. Compiled with one thread, inductor left out its `omp single`, and on two threads
    # each thread updated v, so v often took the step twice. The kernel must not come from
    # inductor's on-disk caches, which do not key on the thread count.
    with contextlib.ExitStack() as stack:
        stack.enter_context(compiled_afresh())
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(1)
        compiled_params, opt = trajectory("adam_mini", "compiled", torch.float64, steps=1)
        torch.set_num_threads(2)
        eager_params, reference = trajectory("adam_mini", "eager", torch.float64, steps=1)
        grads = grad_stream(compiled_params)
        for i in range(1, 30):
            for params, optimizer in ((compiled_params, opt), (eager_params, reference)):
                for p, g in zip(params, grads(i), strict=True):
                    p.grad = g.clone()
                optimizer.step()
            for a, b in zip(compiled_params, eager_params, strict=True):
                torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("serial_limit", [compiled.CAT_SERIAL_NUMEL, 100])
@pytest.mark.parametrize("with_matrix", [False, True])
def test_merged_vectors_gather_by_concatenation_and_equal_eager(
    with_matrix: bool, serial_limit: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Merged vectors are copied into their flat buffers by torch.cat, in runs of at most
    # CAT_SERIAL_NUMEL elements (a small matrix among them falls back to one copy per tensor);
    # either way the step equals eager's.
    monkeypatch.setattr(compiled, "CAT_SERIAL_NUMEL", serial_limit)
    shapes = [(17 + i,) for i in range(40)] + ([(6, 5)] if with_matrix else [])
    runs = []
    for backend in ("eager", "compiled"):
        params = make_params(torch.float64, shapes)
        opt = adamkit.create("adamw", params, backend=backend, weight_decay=0.1)
        grads = grad_stream(params)
        for i in range(3):
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g
            opt.step()
        runs.append((params, opt))
    merged = [c for c in compiled_calls(runs[1][1]) if isinstance(c, compiled.Merged)]
    assert merged and all(c.vectors is not with_matrix for c in merged)
    assert all((len(c.runs) > 1) is (serial_limit == 100) for c in merged)
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "sizes", [[1], [5, 5, 5], [40_000], [10, 40_000, 10], [20_000] * 5, [32_768, 1, 32_767]]
)
def test_serial_runs_cover_every_tensor_in_order_within_the_limit(sizes: list[int]) -> None:
    runs = compiled.serial_runs(sizes)
    assert [r[0] for r in runs] == [0] + [r[1] for r in runs[:-1]] and runs[-1][1] == len(sizes)
    starts = [0, *torch.tensor(sizes).cumsum(0).tolist()]
    for first, end, start, stop in runs:
        assert (start, stop) == (starts[first], starts[end])
        assert stop - start <= compiled.CAT_SERIAL_NUMEL or end - first == 1
    # no two neighbouring runs would fit in one
    for a, b in itertools.pairwise(runs):
        assert (a[3] - a[2]) + sizes[b[0]] > compiled.CAT_SERIAL_NUMEL


@pytest.mark.parametrize("name", ["adamw", "lamb", "sadam"])
def test_switching_the_backend_between_steps_continues_the_same_trajectory(name: str) -> None:
    # backend is a hyperparameter of the group: changing it between steps moves the group's
    # work to the other path, with its state (merged buffers included), and back.
    def script(switch: bool) -> list[torch.Tensor]:
        params = make_params(torch.float64, SHAPES)
        opt = adamkit.create(name, params, backend="compiled" if switch else "eager")
        grads = grad_stream(params)
        for i in range(7):
            if switch and i in (2, 5):
                opt.param_groups[0]["backend"] = "eager" if i == 2 else "compiled"
            for p, g in zip(params, grads(i), strict=True):
                p.grad = g
            opt.step()
            program = opt._programs[id(opt.param_groups[0])]
            assert program.compiled is (switch and i not in (2, 3, 4))
        assert all(opt.state[p]["step"] == 7 for p in params)
        return params

    for a, b in zip(script(True), script(False), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-12, atol=1e-14)


def test_traced_sums_accumulate_in_float64_except_on_devices_without_it() -> None:
    from types import SimpleNamespace

    on = lambda device: SimpleNamespace(dtype=torch.float32, device=torch.device(device))  # noqa: E731
    assert reduce._accumulator(on("cpu")) == torch.float64  # type: ignore[arg-type]
    assert reduce._accumulator(on("meta")) == torch.float64  # type: ignore[arg-type]
    assert reduce._accumulator(on("mps")) == torch.float32  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["compiled", "eager"])
def test_a_state_dict_replaced_by_a_copy_is_the_one_stepped(backend: str) -> None:
    # The arranged work is reused while the optimizer's state maps every parameter to the same
    # dicts; a dict replaced by a copy holding the same tensors must be noticed, or its "step"
    # would stay behind while the old dict's advanced.
    params = make_params(torch.float64, [(8,)] * 3)
    opt = adamkit.AdamW(params, backend=backend)
    grads = grad_stream(params)
    for i in range(4):
        for p, g in zip(params, grads(i), strict=True):
            p.grad = g
        if i == 2:
            old = opt.state[params[1]]
            opt.state[params[1]] = dict(old)
        opt.step()
    assert [opt.state[p]["step"] for p in params] == [4, 4, 4]
    assert old["step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("state_rounding", ["stochastic", "kahan"])
def test_compiled_kahan_pairs_keep_their_compensation(state_rounding: str) -> None:
    # A Kahan pair stores hi = round(x) and lo = x - hi. Inductor computes bfloat16 values in
    # float32 and dropped the round trip x -> bfloat16 -> float32 unless it emulates the casts,
    # so lo was 0: updates below half a bfloat16 ulp were lost (graphs.INDUCTOR_OPTIONS).
    stepped = {}
    for backend in ("eager", "compiled"):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(1024).bfloat16())
        opt = adamkit.AdamW(
            [p],
            backend=backend,
            param_rounding="kahan",
            state_dtype="bfloat16",
            state_rounding=state_rounding,
        )
        p.grad = torch.randn_like(p)
        opt.step()  # an update of about 1e-3, below half the ulp of most |p| ~ 1
        state = opt.state[p]
        pairs = {"param": p.detach().float() + state["param_kahan"].float()}
        if state_rounding == "kahan":
            for name in ("exp_avg", "exp_avg_sq"):
                pairs[name] = state[name].float() + state[f"{name}_kahan"].float()
        stepped[backend] = (pairs, state["param_kahan"])
    (eager, _), (fast, fast_lo) = stepped["eager"], stepped["compiled"]
    assert (fast_lo != 0).float().mean() > 0.9
    for name, value in eager.items():
        # a pair holds about 16 significant bits
        torch.testing.assert_close(fast[name], value, rtol=2**-14, atol=1e-9, msg=name)
