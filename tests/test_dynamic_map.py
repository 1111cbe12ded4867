"""core.dynamic_map: the 8-bit dynamic quantization map as arithmetic, and the block-wise codec."""

from __future__ import annotations

import pytest
import torch

from adamkit.core import codecs, dynamic_map, pieces

SIGNS = [True, False]


def reference_map(signed: bool) -> torch.Tensor:
    """Dettmers et al. 2022's dynamic map as this library defines it, in float64: decades
    10^-k with 2^d evenly spaced steps in decade d (7 decades signed, 8 unsigned)."""
    count = 7 if signed else 8
    magnitudes = [
        10.0 ** (d - count) * (1 + 9 * j / 2**d) for d in range(count) for j in range(1, 2**d + 1)
    ]
    values = [0.0, *magnitudes] + ([-m for m in magnitudes] if signed else [])
    return torch.tensor(sorted(values), dtype=torch.float64)


@pytest.mark.parametrize("signed", SIGNS)
def test_the_codes_are_the_map_in_float32(signed: bool) -> None:
    codes = dynamic_map.codes(signed)
    exact = reference_map(signed)
    assert codes.dtype == torch.float32 and codes.shape == exact.shape
    assert torch.all(codes[1:] > codes[:-1])
    assert codes[-1] == 1.0  # so a block's maximum is stored exactly
    torch.testing.assert_close(codes.double(), exact, rtol=2**-23, atol=0)


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize("stochastic", [True, False])
def test_every_code_encodes_to_its_index_and_back(signed: bool, stochastic: bool) -> None:
    codes = dynamic_map.codes(signed)
    index = torch.arange(codes.numel()).to(torch.uint8)
    draw = (
        torch.rand(codes.shape, generator=torch.Generator().manual_seed(0)) if stochastic else None
    )
    assert torch.equal(dynamic_map.encode(codes, signed, draw), index)
    assert torch.equal(dynamic_map.decode(index, signed), codes)


def _values(signed: bool, n: int = 200_000) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    magnitude = torch.exp(-17 * torch.rand(n, generator=gen))  # every decade and below
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if signed else 1.0
    return magnitude * sign


@pytest.mark.parametrize("signed", SIGNS)
def test_nearest_encoding_picks_a_nearest_code(signed: bool) -> None:
    x = _values(signed)
    codes = dynamic_map.codes(signed)
    got = dynamic_map.decode(dynamic_map.encode(x, signed, None), signed)
    nearest = torch.stack([(x - c).abs() for c in codes]).min(0).values
    assert torch.all((got - x).abs() <= nearest)


@pytest.mark.parametrize("signed", SIGNS)
def test_stochastic_encoding_picks_a_neighbour_without_bias(signed: bool) -> None:
    codes = dynamic_map.codes(signed).double()
    gen = torch.Generator().manual_seed(2)
    for value in (0.8123, 0.3137, 0.02, 3.3e-4, 2e-8) + ((-0.047,) if signed else ()):
        x = torch.full((400_000,), value)
        draw = torch.rand(x.shape, generator=gen)
        got = dynamic_map.decode(dynamic_map.encode(x, signed, draw), signed).double()
        below = codes[codes <= x[0]].max()
        above = codes[codes >= x[0]].min()
        assert set(got.unique().tolist()) <= {below.item(), above.item()}
        # the mean of 400 000 draws: within 5 standard errors of the value
        spread = (above - below).item() / 2 / 400_000**0.5
        assert abs(got.mean().item() - x[0].item()) <= 5 * spread + 1e-12


@pytest.mark.parametrize("stochastic", [True, False])
def test_block_codec_in_pieces_equals_one_run(
    stochastic: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # eagerly the codec runs in pieces of whole blocks; a last block of 44 elements
    rounding = "stochastic" if stochastic else "nearest"
    codec = codecs.Blockwise8(signed=True, rounding=rounding)
    value = torch.randn(4 * 1024 + 44, generator=torch.Generator().manual_seed(3))

    def stored(piece: int) -> dict:
        monkeypatch.setattr(pieces, "PIECE", piece)
        st: dict = {}
        codec.create(st, "m", torch.zeros_like(value))
        codec.store(st, "m", value, key=12345)
        return {**st, "loaded": codec.load(st, "m", torch.float32)}

    one_run, in_pieces = stored(pieces.PIECE), stored(1024)
    assert len(codec._parts(value)) == 5  # four pieces of four blocks, and the short block
    for name, tensor in one_run.items():
        assert torch.equal(tensor, in_pieces[name]), name
    assert in_pieces["m_absmax"].numel() == 17
    # within the top decade's step (0.9/64 of a block's maximum) of the value
    bound = 0.9 / 64 * value.abs().max().item()
    torch.testing.assert_close(in_pieces["loaded"], value, rtol=0, atol=bound)


@pytest.mark.parametrize("signed", [True, False])
def test_eager_lookup_decodes_every_index_as_the_traced_arithmetic(signed: bool) -> None:
    every = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    assert torch.equal(dynamic_map.decode(every, signed), dynamic_map._decoded(every, signed))
    assert torch.equal(
        dynamic_map.decode(every[: 255 if signed else 256], signed), dynamic_map.codes(signed)
    )


@pytest.mark.parametrize("signed", [True, False])
def test_eager_decade_lookup_encodes_as_the_traced_select_chains(
    signed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gen = torch.Generator().manual_seed(11)
    codes = dynamic_map.codes(signed)
    values = torch.cat(
        (
            torch.rand(200_000, generator=gen) * 2 - 1,
            (torch.rand(100_000, generator=gen) * 2 - 1)
            * 10 ** -torch.randint(0, 8, (100_000,), generator=gen),
            codes,
            torch.nextafter(codes, torch.tensor(2.0)),
            torch.nextafter(codes, torch.tensor(-2.0)),
        )
    ).clamp(-1 if signed else 0, 1)
    values = values if signed else values.abs()
    draw = torch.rand(values.shape, generator=gen)
    eager = [dynamic_map.encode(values, signed, d) for d in (None, draw)]
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the traced form
    chained = [dynamic_map.encode(values, signed, d) for d in (None, draw)]
    for a, b in zip(eager, chained, strict=True):
        assert torch.equal(a, b)
