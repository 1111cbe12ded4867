"""``adamkit speed``: the table's columns and the peak-memory probe (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import adamkit
from adamkit.bench import speed


def test_peak_step_bytes_sees_a_temporary_and_nothing_else() -> None:
    def wasteful() -> None:
        temporary = torch.ones(250_000)  # 1 MB, freed at return
        temporary.add_(1)

    assert speed.peak_step_bytes(wasteful) >= 1_000_000
    a, b = torch.ones(250_000), torch.ones(250_000)
    assert speed.peak_step_bytes(lambda: a.add_(b)) < 1_000


def test_speed_writes_a_row_per_optimizer(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(speed.SETS, "tiny", lambda: [("a", (64, 32)), ("b", (100,))])
    out = tmp_path / "speed"
    code = speed.main(
        [
            "--optimizers",
            "adamw,ademamix",
            "--sets",
            "tiny",
            "--backend",
            "eager",
            "--repeats",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "speed.json").read_text())
    rows = {r["optimizer"]: r for r in results["rows"]}
    assert set(rows) == {"torch AdamW(foreach)", "torch AdamW(fused)", "adamw", "ademamix"}
    assert rows["adamw"]["bytes_per_param"] == 28.0
    assert rows["ademamix"]["bytes_per_param"] == 36.0
    for r in rows.values():
        assert r["step_ms"] > 0 and r["ratio_to_fused"] > 0 and r["ratio_to_foreach"] > 0
        assert r["per_tensor_us"] == pytest.approx(r["step_ms"] * 1e3 / 2)
        assert r["peak_extra_bytes_per_param"] >= 0
        # the baselines of the rounds paired with the row, shown with its ratios
        assert r["fused_adamw_ms"] > 0 and r["foreach_adamw_ms"] > 0
        assert f"(fused {r['fused_adamw_ms']:6.2f} ms)" in speed.format_row(r)
        assert r["slowest_warmup_step_s"] >= r["first_step_s"] >= 0
    assert rows["torch AdamW(fused)"]["ratio_to_fused"] == 1.0
    # the targets: AdamW 1.10; others 1.2 × their bytes per parameter / 28
    assert rows["adamw"]["target_ratio"] == 1.10
    assert rows["ademamix"]["target_ratio"] == pytest.approx(1.2 * 36 / 28)
    assert "target_ratio" not in rows["torch AdamW(fused)"]
    for r in (rows["adamw"], rows["ademamix"]):
        verdict = "met" if r["ratio_to_fused"] <= r["target_ratio"] else "missed"
        assert f"target x{r['target_ratio']:5.2f} {verdict}" in speed.format_row(r)
    table = (out / "speed.md").read_text()
    assert "| tiny | ademamix |" in table
    header, rule, *body = [line for line in table.splitlines() if line.startswith("|")]
    assert "fused AdamW ms" in header and "slowest warm-up step s" in header
    assert "target ratio" in header
    assert all(line.count("|") == header.count("|") == rule.count("|") for line in body)
    assert results["compiler_startup_s"] is None  # the eager backend compiles nothing


def test_low_precision_state_is_timed_against_float32_state(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(speed.SETS, "tiny", lambda: [("a", (64, 32))])
    out = tmp_path / "speed"
    args = ["--optimizers", "adamw", "--sets", "tiny", "--backend", "eager", "--repeats", "2"]
    assert speed.main([*args, "--state-dtype", "bfloat16", "--out", str(out)]) == 0
    (row,) = [
        r for r in json.loads((out / "speed.json").read_text())["rows"] if "[" in r["optimizer"]
    ]
    assert row["optimizer"] == "adamw [bfloat16, stochastic]"
    assert row["bytes_per_param"] == 20.0
    assert row["ratio_to_float32_state"] > 0
    assert "target_ratio" not in row  # the targets are for float32 state
    assert speed.main([*args, "--out", str(out)]) == 0  # float32 state: no such column
    rows = json.loads((out / "speed.json").read_text())["rows"]
    assert all("ratio_to_float32_state" not in r for r in rows)
    assert "| tiny | adamw |" in (out / "speed.md").read_text()


def test_threads_are_set_and_recorded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(speed.SETS, "tiny", lambda: [("a", (64, 32))])
    before = torch.get_num_threads()
    out = tmp_path / "speed"
    args = ["--optimizers", "adamw", "--sets", "tiny", "--backend", "eager", "--repeats", "2"]
    try:
        assert speed.main([*args, "--threads", "1", "--out", str(out)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert json.loads((out / "speed.json").read_text())["threads"] == 1


@pytest.mark.parametrize("option", ["--threads", "--repeats"])
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_counts_below_one_are_refused(
    option: str, value: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with pytest.raises(SystemExit) as exit_:
        speed.main([option, value, "--out", str(tmp_path / "speed")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert option in err and f"got {value!r}" in err and "at least 1" in err
    assert not (tmp_path / "speed").exists()  # refused before anything ran


def test_interleaved_steps_in_rounds_and_ratios_are_per_round() -> None:
    from adamkit.bench.speed import interleaved, median_ratio

    calls: list[str] = []
    times = interleaved([lambda: calls.append("a"), lambda: calls.append("b")], 3)
    assert calls == ["a", "b"] * 3
    assert [len(t) for t in times] == [3, 3]
    # a drift that doubles both sides in one round leaves the per-round ratio alone
    assert median_ratio([1.0, 2.0, 4.0], [2.0, 4.0, 8.0]) == 0.5
    assert median_ratio([3.0, 1.0, 2.0], [1.0, 1.0, 1.0]) == 2.0


@pytest.mark.parametrize(
    ("name", "state_dtype", "expected"),
    [
        ("adamw", None, 28.0),  # read θ, g, m, v; write θ, m, v
        ("lamb", None, 44.0),  # and a pass that reads θ, g, m, v for the norms
        ("lamb", "bfloat16", 32.0),  # 12 + 2·(2 + 2) + (4 + 4 + 2 + 2)
        ("b_adam", None, 52.0),  # 44, and mean|θ|, mean|u| read θ and u
    ],
)
def test_bytes_per_param_count_the_reductions_own_pass(
    name: str, state_dtype: str | None, expected: float
) -> None:
    params = [torch.nn.Parameter(torch.randn(64, 32))]
    hyper = {} if state_dtype is None else {"state_dtype": state_dtype}
    opt = adamkit.create(name, params, backend="eager", **hyper)
    params[0].grad = torch.randn(64, 32)
    opt.step()
    assert speed.min_bytes_per_param(opt, params) == expected


@pytest.mark.parametrize(
    ("partition", "expected"),
    [
        ("neuron", 20 + 2 * 64 * 4 / 2048),  # θ, g, m and a v per row: rows stay in cache
        ("tensor", 24 + 2 * 4 / 2048),  # one v: the mean of g² over the tensor reads g first
        ("element", 28.0),
    ],
)
def test_adam_minis_bytes_per_param_follow_its_blocks(partition: str, expected: float) -> None:
    params = [torch.nn.Parameter(torch.randn(64, 32))]
    opt = adamkit.create("adam_mini", params, backend="eager", partition=partition)
    params[0].grad = torch.randn(64, 32)
    opt.step()
    assert speed.min_bytes_per_param(opt, params) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", adamkit.available())
def test_prepass_reads_name_tensors_the_optimizer_has(name: str) -> None:
    cls = adamkit.optimizer_class(name)
    known = {"param", "grad", *(b.name for b in cls.buffers)}
    assert set(cls.prepass_reads) <= known


def test_candidates_are_timed_after_rectification() -> None:
    # The warm-up takes the steps before RAdam's rectification (ρ_t > 5 from t = 6 with the
    # default β2), so the first timed step runs the rectified branch; it times every step
    # (a configuration first needed after step 1 compiles there).
    from adamkit.parts.adaptive import rectifier

    assert rectifier(0.999, speed.WARMUP_STEPS)[0] > 5.0
    assert rectifier(0.999, speed.WARMUP_STEPS - 1)[0] <= 5.0

    class Counting:
        steps = 0

        def step(self) -> None:
            self.steps += 1

    counting = Counting()
    times = speed.warm_up(counting)  # type: ignore[arg-type]
    assert len(times) == speed.WARMUP_STEPS and min(times) >= 0.0
    assert counting.steps == speed.WARMUP_STEPS


@pytest.mark.distributed
@pytest.mark.slow
def test_speed_sharded_times_both_paths_on_two_ranks() -> None:
    from adamkit.bench import sharded

    shapes = [("w", (64, 32)), ("b", (100,))]
    rows = sharded.on_two_ranks(("tiny", shapes, ["adamw", "lamb"], "bfloat16", 2))
    assert [r["optimizer"] for r in rows] == ["adamw", "lamb"]
    for r in rows:
        assert r["set"] == "tiny" and r["state_dtype"] == "bfloat16" and r["params"] == 2148
        assert r["compiled_ms"] > 0 and r["eager_ms"] > 0 and r["eager_over_compiled"] > 0
        assert r["first_step_s"] > 0
        assert f"| tiny | {r['optimizer']} | bfloat16 |" in sharded.markdown(rows)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--optimizers", "adamx"], "unknown ['adamx']"),
        (["--repeats", "0"], "--repeats must be at least 1, got 0"),
        (["--sets", "huge"], "unknown set 'huge'"),
    ],
)
def test_speed_sharded_refuses_bad_arguments_before_starting_ranks(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from adamkit.bench import sharded

    with pytest.raises(SystemExit) as exit_:
        sharded.main([*argv, "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.distributed
@pytest.mark.slow
def test_speed_sharded_reports_a_failing_rank_with_its_traceback() -> None:
    from adamkit.bench import sharded

    with pytest.raises(RuntimeError, match=r"rank 0 failed:\n(.|\n)*nope"):
        sharded.on_two_ranks(("tiny", [("w", (8, 4))], ["nope"], None, 1))
