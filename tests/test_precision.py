"""Low-precision state and parameters: unbiased rounding, no stagnation, no overflow, memory,
and training that ends where float32 training ends."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from helpers import assert_identical_lists, grad_stream, make_params, run

import adamkit
from adamkit.core.codecs import Blockwise8, Kahan, Plain, Rounded, ScaledHalf
from adamkit.core.rounding import random_bits, stochastic_round, stream_key

NAMES = adamkit.available()


def second_moments(name: str) -> list[str]:
    return [
        b.name for b in adamkit.optimizer_class(name).buffers if b.nonnegative and b.when is None
    ]


WITH_SECOND_MOMENT = [n for n in NAMES if second_moments(n)]
# Second moments of g/m: with random signs m crosses 0 and the statistic is chaotic in any
# precision, so these are driven by a constant gradient (|g| = 1, then 0.1).
RATIO_MOMENTS = {"duv_adam", "su_adam"}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("value", [1 + 1 / 3, 1.001, -7.77777, 0.1, 3.14159e-3, 123.456, 1.999])
def test_stochastic_rounding_is_unbiased(dtype: torch.dtype, value: float) -> None:
    x = torch.full((1 << 20,), value, dtype=torch.float32)
    for key in range(3):
        mean = stochastic_round(x, dtype, stream_key(key)).double().mean().item()
        assert abs(mean - x[0].item()) <= 3e-5 * abs(value)


def test_stochastic_rounding_of_each_element_is_unbiased_over_steps() -> None:
    # What an EMA needs: each element, rounded step after step with that step's key, averages
    # to its value (the element hash alone is one multiply-xorshift round; the key makes it uniform).
    x = torch.full((16,), 1 + 1 / 3, dtype=torch.float32)
    steps = [
        stochastic_round(x, torch.bfloat16, stream_key(0, 5, 1, t)).double() for t in range(1, 8193)
    ]
    means = torch.stack(steps).mean(0)
    ulp = 2.0**-7
    # the rounding error has a std of at most ulp/2 per step: 4 sigma over 8192 steps
    assert ((means - x.double()).abs() <= 4 * (ulp / 2) / 8192**0.5).all(), means


@pytest.mark.parametrize("count", [13, 16, 24])
def test_random_bits_are_fair_and_neighbours_do_not_repeat_each_other(count: int) -> None:
    x = torch.zeros(1 << 18, dtype=torch.int32)
    bits = random_bits(x, stream_key(3, 1, 0, 9), count).long()
    assert bits.min() >= 0 and bits.max() < 1 << count
    ones = torch.stack([(bits >> b) & 1 for b in range(count)]).double().mean(1)
    sigma = 0.5 / len(bits) ** 0.5
    assert ((ones - 0.5).abs() < 5 * sigma).all(), ones  # every bit is a fair coin
    # One multiply-xorshift round leaves neighbours of one step weakly correlated; the
    # product's high bits alone nearly repeated two elements apart. Unbiasedness needs only
    # each element's bits to be uniform over steps (tested above).
    u = bits.double() / (1 << count) - 0.5
    for lag in (1, 2, 4, 8, 16):
        corr = (u[lag:] * u[:-lag]).mean() / u.var()
        assert abs(corr) < 0.4, (lag, corr)


def test_random_bits_of_a_piece_are_those_of_its_elements_in_the_whole_tensor() -> None:
    key = stream_key(5, 2, 1, 7)
    whole = random_bits(torch.zeros(1000, dtype=torch.int32), key, 16)
    piece = random_bits(torch.zeros(300, dtype=torch.int32), key, 16, offset=500)
    assert torch.equal(piece, whole[500:800])
    # past 2^31 the element numbers wrap modulo 2^32, as in a tensor of more elements
    start = (1 << 31) - 4
    wrapped = random_bits(torch.zeros(8, dtype=torch.int32), key, 16, offset=start)
    index = torch.arange(start, start + 8, dtype=torch.int64)
    x = ((index ^ key) * 0x7FEB352D) & 0xFFFFFFFF  # the hash, on int64 without wrapping
    assert torch.equal(wrapped.long(), (x ^ (x >> 16)) & 0xFFFF)


@pytest.mark.parametrize("count", [0, 25])
def test_random_bits_refuse_counts_outside_1_to_24(count: int) -> None:
    with pytest.raises(ValueError, match=f"count={count}"):
        random_bits(torch.zeros(4, dtype=torch.int32), 1, count)


def test_stochastic_rounding_lands_on_the_two_neighbours_only() -> None:
    x = torch.full((4096,), 1.0 + 2**-10, dtype=torch.float32)  # between bf16 1.0 and 1.0078125
    out = stochastic_round(x, torch.bfloat16, 7).float()
    assert set(out.unique().tolist()) == {1.0, 1.0078125}
    assert 0.10 < (out > 1).float().mean().item() < 0.15  # probability 2^-10 / 2^-7 = 1/8


def driven(name: str, state_dtype: str | None, rounding: str, grads: list[torch.Tensor]) -> dict:
    # Adam-mini keeps one v per row: a vector would get a single v, and the stochastic rounding
    # noise of one bfloat16 EMA (a std of about 9 % of v here, whatever the hash) is what
    # averaging over 256 elements takes out. A column gives it 256 blocks.
    shape = (256, 1) if name == "adam_mini" else (256,)
    p = torch.zeros(shape, requires_grad=True)
    kwargs = {"state_dtype": state_dtype, "state_rounding": rounding}
    if "weight_decay" in adamkit.optimizer_class(name).declared_hypers():
        kwargs["weight_decay"] = 0.0
    opt = adamkit.create(name, [p], lr=1e-4, **kwargs)
    for g in grads:
        p.grad = g.view(shape)
        opt.step()
    return {b: opt.load_buffer(p, b).clone() for b in second_moments(name)}


@pytest.mark.slow
@pytest.mark.parametrize("name", WITH_SECOND_MOMENT)
@pytest.mark.parametrize("rounding", ["stochastic", "kahan"])
def test_bfloat16_second_moment_does_not_stagnate(name: str, rounding: str) -> None:
    gen = torch.Generator().manual_seed(0)
    if name in RATIO_MOMENTS:
        signs = [torch.ones(256)] * 3000
    else:
        signs = [torch.randint(0, 2, (256,), generator=gen).float() * 2 - 1 for _ in range(3000)]
    grads = signs + [0.1 * s for s in signs]
    for length in (3000, 6000):
        exact = driven(name, "float32", "nearest", grads[:length])
        low = driven(name, "bfloat16", rounding, grads[:length])
        for key in exact:
            ref = exact[key].double().mean().item()
            got = low[key].double().mean().item()
            # 1e-5 absolute: statistics that converge to 0 (|1/m − 1| for a constant g) end
            # at the rounding noise of m, which no precision reproduces relatively.
            assert abs(got - ref) <= 0.02 * abs(ref) + 1e-5, f"{key} after {length}: {got} vs {ref}"


def test_round_to_nearest_bfloat16_does_stagnate() -> None:
    grads = [torch.ones(256)] * 3000
    exact = driven("adam", "float32", "nearest", grads)["exp_avg_sq"].mean().item()
    nearest = driven("adam", "bfloat16", "nearest", grads)["exp_avg_sq"].mean().item()
    assert exact == pytest.approx(1 - 0.999**3000, rel=1e-4)
    assert nearest < 0.9 * exact  # the failure the default stochastic rounding exists to avoid


def first_update(name: str, magnitude: float, state_dtype: str) -> tuple[torch.Tensor, dict]:
    p = torch.ones(64, requires_grad=True)
    opt = adamkit.create(name, [p], state_dtype=state_dtype)
    gen = torch.Generator().manual_seed(0)
    p.grad = magnitude * (torch.rand(64, generator=gen) + 0.5)
    opt.step()
    return p.detach() - 1.0, opt.state[p]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("magnitude", [1e-4, 1e-3, 300.0, 1e4])
def test_float16_state_has_no_overflow_and_a_first_step_within_10_percent(
    name: str, magnitude: float
) -> None:
    exact, _ = first_update(name, magnitude, "float32")
    half, state = first_update(name, magnitude, "float16")
    for value in state.values():
        if torch.is_tensor(value):
            assert torch.isfinite(value.float()).all()
    assert torch.isfinite(half).all()
    assert (half - exact).norm() <= 0.10 * exact.norm() + 1e-12


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("state_dtype", ["bfloat16", "float16", "int8"])
def test_low_precision_state_resumes_bit_identically(name: str, state_dtype: str) -> None:
    grads = grad_stream(make_params(torch.float32))
    straight = make_params(torch.float32)
    run(adamkit.create(name, straight, state_dtype=state_dtype), straight, grads, 8)
    resumed = make_params(torch.float32)
    first = adamkit.create(name, resumed, state_dtype=state_dtype)
    run(first, resumed, grads, 4)
    saved = copy.deepcopy(first.state_dict())
    second = adamkit.create(name, resumed, state_dtype=state_dtype)
    second.load_state_dict(saved)
    run(second, resumed, grads, 4, start=4)
    assert_identical_lists([p.detach() for p in resumed], [p.detach() for p in straight])


def state_bytes_per_param(name: str, state_dtype: str | None, **hyper: object) -> float:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 256, batch_first=True)
    params = list(layer.named_parameters()) if name == "adam_mini" else list(layer.parameters())
    opt = adamkit.create(name, params, state_dtype=state_dtype, **hyper)
    for p in layer.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    total = sum(
        v.numel() * v.element_size()
        for s in opt.state.values()
        for v in s.values()
        if torch.is_tensor(v)
    )
    return total / sum(p.numel() for p in layer.parameters())


def test_state_bytes_per_parameter() -> None:
    assert state_bytes_per_param("adam", None) == pytest.approx(8.0, abs=0.01)
    assert state_bytes_per_param("adam", "bfloat16") == pytest.approx(4.0, abs=0.01)
    assert state_bytes_per_param("adam", "float16") == pytest.approx(4.0, abs=0.01)
    assert 2.0 < state_bytes_per_param("adam", "int8") < 2.05
    assert state_bytes_per_param("adam", "bfloat16", state_rounding="kahan") == pytest.approx(
        8.0, abs=0.01
    )
    assert state_bytes_per_param("adam_mini", None, n_heads=4) < 0.55 * state_bytes_per_param(
        "adamw", None
    )


def test_int8_codes_reproduce_values_to_a_few_percent() -> None:
    gen = torch.Generator().manual_seed(0)
    for signed, values in (
        (True, torch.randn(4096, generator=gen)),
        (False, torch.rand(4096, generator=gen) ** 4),
    ):
        codec, st = Blockwise8(signed, "nearest"), {}
        codec.create(st, "b", values)
        back = codec.load(st, "b", torch.float32)
        relative = (back - values).abs() / values.abs()
        assert relative.median() < 0.02 and (back - values).abs().max() <= 0.2 * values.abs().max()
        assert st["b"].dtype == torch.uint8 and st["b_absmax"].shape == (16,)


@pytest.mark.parametrize(
    "codec",
    [
        Plain(torch.float32),
        Rounded(torch.bfloat16, "stochastic"),
        Kahan(torch.bfloat16),
        ScaledHalf("nearest"),
        Blockwise8(True, "stochastic"),
        Blockwise8(False, "stochastic"),
        Blockwise8(True, "nearest"),
    ],
    ids=lambda c: f"{type(c).__name__}-{getattr(c, 'signed', '')}-{getattr(c, 'rounding', '')}",
)
def test_creating_zeros_stores_what_creating_from_a_zero_tensor_stores(codec: Any) -> None:
    # The shell creates a buffer whose init is zeros with create_zeros; 8-bit codecs skip the
    # encoding. Shapes of one element, less than a block, whole blocks, and a last block cut.
    for shape in [(1,), (3,), (256,), (2, 512), (5, 300), (1000, 257), (2, 3, 4, 5)]:
        like = (
            torch.randn(shape).to(memory_format=torch.channels_last)
            if len(shape) == 4
            else torch.randn(shape)
        )
        made, from_value = {}, {}
        codec.create_zeros(made, "b", like)
        codec.create(from_value, "b", torch.zeros_like(like, memory_format=torch.preserve_format))
        assert made.keys() == from_value.keys(), shape
        for key, stored in made.items():
            expected = from_value[key]
            assert stored.dtype == expected.dtype and stored.shape == expected.shape, (shape, key)
            assert stored.stride() == expected.stride(), (shape, key)
            assert torch.equal(stored, expected), (shape, key)


def test_scaled_float16_covers_1e_6_to_1e5() -> None:
    codec, st = ScaledHalf("nearest"), {}
    for magnitude in (1e-6, 1e-3, 1.0, 300.0, 1e5):
        value = torch.full((8,), magnitude) ** 2 * 1e-3  # Adam's v after one step
        codec.create(st, "v", value)
        assert codec.load(st, "v", torch.float32) == pytest.approx(value.tolist(), rel=1e-3)


def mlp_final_loss(name: str, **hyper: object) -> float:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 16, generator=gen)
    y = (x[:, :4].sum(1) > 0).long() + (x[:, 4:8].sum(1) > 0).long()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.GELU(), torch.nn.Linear(64, 3))
    opt = adamkit.create(name, model.parameters(), lr=3e-3 if name != "lamb" else 1e-2, **hyper)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(x), y).item()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["adam", "adamw", "adabelief", "ademamix", "lamb", "adamw_schedulefree", "adam_mini"]
)
def test_low_precision_state_trains_like_float32(name: str) -> None:
    exact = mlp_final_loss(name)
    # (LAMB fits this data to a float32 loss of 0 on some CPUs; 8-bit state to 2.3e-10)
    fit = 1e-6
    assert mlp_final_loss(name, state_dtype="bfloat16") == pytest.approx(exact, rel=0.02, abs=fit)
    assert mlp_final_loss(name, state_dtype="float16") == pytest.approx(exact, rel=0.02, abs=fit)
    assert mlp_final_loss(name, state_dtype="int8") == pytest.approx(exact, rel=0.05, abs=fit)


def bf16_param_after(
    rounding: str, steps: int = 1000, dtype: torch.dtype = torch.bfloat16
) -> tuple[float, float]:
    """The parameter's mean, and the optimizer's full-precision view of it."""
    p = torch.ones(512, dtype=dtype, requires_grad=True)
    opt = adamkit.Adam([p], lr=1e-4, param_rounding=rounding)
    for _ in range(steps):
        p.grad = torch.ones_like(p)
        opt.step()
    return p.detach().double().mean().item(), opt.load_param(p).double().mean().item()


def test_bfloat16_params_keep_small_updates_with_stochastic_rounding_or_kahan() -> None:
    target = bf16_param_after("nearest", dtype=torch.float32)[0]
    assert target == pytest.approx(1.0 - 1000 * 1e-4, abs=1e-4)  # Adam moves lr per step here
    assert bf16_param_after("nearest")[0] == 1.0  # every update is below half an ulp: lost
    assert bf16_param_after("stochastic")[0] == pytest.approx(target, abs=2e-3)
    value, compensated = bf16_param_after("kahan")
    assert compensated == pytest.approx(target, abs=1e-5)  # hi + lo follows float32 exactly
    assert value == pytest.approx(target, abs=2**-9)  # hi alone is within half an ulp


def test_kahan_needs_bfloat16_state() -> None:
    with pytest.raises(ValueError, match="state_rounding='kahan' needs state_dtype='bfloat16'"):
        adamkit.Adam(make_params(), state_dtype="float16", state_rounding="kahan")


def char_lm_final_loss(name: str, steps: int = 120, **hyper: object) -> float:
    from adamkit.bench.runner import RunSpec, make_optimizer
    from adamkit.bench.tasks import NEURAL

    task = NEURAL["char-lm"]
    model = task.model(0)
    draw = task.batches(0)
    opt = make_optimizer(RunSpec("char-lm", name, 3e-3, 0, "tune", steps, steps), model)
    for group in opt.param_groups:
        group.update(hyper)
    for _ in range(steps):
        x, y = draw()
        opt.zero_grad()
        task.loss(model, x, y).backward()
        opt.step()
    return task.evaluate(model, "val")["val_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adamw", "adabelief", "ademamix"])
def test_low_precision_state_trains_the_char_lm_like_float32(name: str) -> None:
    exact = char_lm_final_loss(name)
    assert char_lm_final_loss(name, state_dtype="bfloat16") == pytest.approx(exact, rel=0.02)
    assert char_lm_final_loss(name, state_dtype="int8") == pytest.approx(exact, rel=0.05)
