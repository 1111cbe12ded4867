"""``python -m adamkit.bench.adjustments`` and the switch it uses: code generated with an
optional adjustment left out, compiled apart (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import adamkit
from adamkit.bench import adjustments, speed
from adamkit.core import codegen, compiled


def test_a_left_out_adjustment_is_not_applied_and_is_keyed_apart() -> None:
    from torch._inductor import cpu_vec_isa
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.utils import run_and_get_cpp_code

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        with codegen.adjusted_codegen():
            return compile_fx(gm, example_inputs, config_patches=codegen.cache_tag_options())

    def update(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x / (y.sqrt() + 1e-8)

    tag = codegen.cache_tag_options()["post_grad_custom_post_pass"]
    kept_key = tag.uuid()
    x, y = torch.randn(1000), torch.rand(1000)
    with codegen.adjustments_left_out(["tiling"]):
        assert tag.uuid() != kept_key
        compiled_update = torch.compile(update, backend=backend, dynamic=True, fullgraph=True)
        got, code = run_and_get_cpp_code(compiled_update, x, y)
    assert tag.uuid() == kept_key
    torch.testing.assert_close(got, update(x, y))
    if type(cpu_vec_isa.pick_vec_isa()) is cpu_vec_isa.VecAVX2:
        assert "VectorizedN<float,2>" not in code  # the tiling adjustment pairs them


def test_only_optional_adjustments_may_be_left_out() -> None:
    with (
        pytest.raises(ValueError, match=r"threads_at_least_two.*optional ones are"),
        codegen.adjustments_left_out(["threads_at_least_two"]),
    ):
        pass
    assert set(adjustments.OPTIONAL) >= {"tiling", "vector_bitcast", "side_by_side_reductions"}


def test_adjustments_writes_a_row_per_optimizer_and_adjustment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(speed.SETS, "tiny", lambda: [("a", (64, 32)), ("b", (100,))])
    out = tmp_path / "adjustments"
    args = ["--sets", "tiny", "--optimizers", "adamw,sadam", "--without", "tiling,vector_bitcast"]
    assert adjustments.main([*args, "--repeats", "2", "--out", str(out)]) == 0
    rows = json.loads((out / "adjustments.json").read_text())["rows"]
    assert [(r["optimizer"], r["left_out"]) for r in rows] == [
        ("adamw", "tiling"),
        ("adamw", "vector_bitcast"),
        ("sadam", "tiling"),
        ("sadam", "vector_bitcast"),
    ]
    for r in rows:
        assert r["with_ms"] > 0 and r["without_ms"] > 0 and r["fused_ms"] > 0
        assert r["without_over_with"] > 0


def test_compiled_apart_compiles_into_configurations_of_its_own() -> None:
    outer = compiled.CONFIGURATIONS
    before = dict(outer.known)
    p = torch.randn(50, requires_grad=True)
    p.grad = torch.randn(50)
    with adjustments.compiled_apart("tiling"):
        inner = compiled.CONFIGURATIONS
        assert inner is not outer
        adamkit.create("adamw", [p], backend="compiled").step()
        assert inner.known  # compiled in there
    assert compiled.CONFIGURATIONS is outer
    assert outer.known == before  # and not in the process-wide ones


@pytest.mark.parametrize("option, value", [("--without", "threads_at_least_two"), ("--sets", "x")])
def test_unknown_choices_are_refused(
    option: str, value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        adjustments.main([option, value, "--out", str(tmp_path / "adj")])
    assert exit_.value.code == 2
    assert repr(value) in capsys.readouterr().err
    assert not (tmp_path / "adj").exists()


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8])
def test_byte_loads_give_the_bytes_loadu_gives(dtype: torch.dtype) -> None:
    """Codes loaded by one 8- or 16-byte load (``byte_loads_in_registers``) decode, compare and
    reduce as inductor's own loads make them, tails included."""
    from torch._inductor import cpu_vec_isa
    from torch._inductor.compile_fx import compile_fx
    from torch._inductor.utils import run_and_get_cpp_code

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        with codegen.adjusted_codegen():
            return compile_fx(gm, example_inputs, config_patches=codegen.cache_tag_options())

    def decode(codes: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = codes.to(torch.float32) * scale
        return values, (codes == 0).sum() + codes.amax()

    compiled_decode = torch.compile(decode, backend=backend, dynamic=True, fullgraph=True)
    low, high = (0, 256) if dtype == torch.uint8 else (-128, 128)
    code = ""
    for n in (4099, 256 * 40, 37):
        codes = torch.randint(low, high, (n,), dtype=torch.int32).to(dtype)
        codes[: n // 3] = 0
        scale = torch.rand(n)
        got, code = run_and_get_cpp_code(compiled_decode, codes, scale)
        want = decode(codes, scale)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    if type(cpu_vec_isa.pick_vec_isa()) is cpu_vec_isa.VecAVX2:
        assert "_mm_loadu_si128" in code or "loadu_one_fourth" in code
