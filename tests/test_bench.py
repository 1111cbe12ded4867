"""adamkit bench: a tiny version of every task, the report's files and contents, the protocol's
checklist on results.json, bad input, interruption and --compare."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

import adamkit
from adamkit.bench import main as bench_main
from adamkit.bench.protocol import (
    Protocol,
    describe,
    paired_comparison,
    performance_profile,
    select_lr,
)
from adamkit.bench.runner import Signals, lr_factor
from adamkit.bench.tasks import NEURAL

OPTIMIZERS = "adamw,adamw_schedulefree,ref_adamw_mini_sf"
TASKS = "digits-mlp,digits-cnn,char-lm,rosenbrock,rastrigin"


def tiny(out: Path, *extra: str) -> list[str]:
    return [
        "--optimizers", OPTIMIZERS, "--tasks", TASKS, "--steps", "12", "--lr-grid", "2",
        "--reproduction-steps", "300", "--workers", "0", "--out", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    assert bench_main.main(tiny(out)) == 0
    return out


def load(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_report_files_are_written(report: Path) -> None:
    for name in ("results.json", "report.md", "report.html"):
        assert (report / name).stat().st_size > 0
    pngs = {p.name for p in report.glob("*.png")}
    for task in ("digits-mlp", "digits-cnn", "char-lm"):
        assert {f"{task}-curves.png", f"{task}-test.png", f"{task}-lr.png"} <= pngs
    assert {
        "rosenbrock.png",
        "rastrigin.png",
        "radam-rectifier.png",
        "ademamix-schedules.png",
    } <= pngs
    assert {"performance-profile.png"} <= pngs
    assert any(p.startswith("ademamix-rosenbrock") for p in pngs) or any(
        "rosenbrock" in p and p != "rosenbrock.png" for p in pngs
    )
    html = (report / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(load(report)["figures"])
    assert "<table>" in html and 'src="' not in html.replace('src="data:', "")


def test_equal_budget_and_declared_grids(report: Path) -> None:
    results = load(report)
    proto = results["meta"]["protocol"]
    runs = [r for r in results["runs"] if r["kind"] == "neural"]
    counts = Counter((r["task"], r["optimizer"]) for r in runs)
    expected = proto["grid_points"] * len(proto["tuning_seeds"]) + len(proto["final_seeds"])
    assert set(counts.values()) == {expected}
    assert len(counts) == 3 * 3
    for task, grids in results["meta"]["grids"].items():
        assert {len(g) for g in grids.values()} == {proto["grid_points"]}
        scale = NEURAL[task].lr_scale
        for name, grid in grids.items():
            ratios = [b / a for a, b in itertools.pairwise(grid)]
            assert all(math.isclose(r, 10 ** proto["grid_spacing_decades"]) for r in ratios)
            reference = adamkit.optimizer_class(name).declared_hypers()["lr"].default * scale
            assert math.isclose(math.sqrt(grid[0] * grid[-1]), reference, rel_tol=1e-9)
    md = (report / "report.md").read_text()
    for grids in results["meta"]["grids"].values():
        for name, grid in grids.items():
            assert f"`{name}`: " + ", ".join(f"{lr:.3g}" for lr in grid) in md


def test_selection_on_validation_and_test_only_on_fresh_seeds(report: Path) -> None:
    results = load(report)
    proto = results["meta"]["protocol"]
    assert not set(proto["tuning_seeds"]) & set(proto["final_seeds"])
    assert len(proto["final_seeds"]) >= 3
    for r in results["runs"]:
        if r["kind"] != "neural":
            continue
        has_test = any(k.startswith("test_") for k in r)
        assert has_test == (r["role"] == "final" and not r["diverged"])
        assert r["seed"] in (
            proto["final_seeds"] if r["role"] == "final" else proto["tuning_seeds"]
        )
    for _task, cells in results["summary"].items():
        for _name, cell in cells.items():
            assert cell["seeds"] == proto["final_seeds"]
            assert isinstance(cell["lr_at_edge"], bool)
            tuned = [t for t in cell["tuning"]]
            best = min(
                tuned, key=lambda t: float(t["val_loss"]) if t["val_loss"] != "inf" else math.inf
            )
            assert cell["lr"] == best["lr"]


def test_cells_carry_uncertainty_and_verdicts(report: Path) -> None:
    results = load(report)
    md = (report / "report.md").read_text()
    for task, cells in results["summary"].items():
        metric = {"char-lm": "bpc"}.get(task, "acc")
        for name, cell in cells.items():
            d = cell[f"test_{metric}"]
            assert d["n"] == 3 and d["interval"] in ("min-max", "none")
            if name != "adamw":
                assert cell["test_loss_vs_adamw"]["verdict"] in ("better", "worse", "tie", "n/a")
    assert "binomial standard error" in md and "360 examples" in md
    assert "## Known results" in md and "Adam β1 = 0.9999 oscillating on Rosenbrock" in md
    assert "No single overall winner" in md or "no single overall winner" in md
    assert "illustrative" in md
    assert "optax" in md  # the reproduction says which setup it is


def test_time_to_target_and_profile(report: Path) -> None:
    results = load(report)
    profile = results["performance_profile"]
    assert profile["tasks"] == ["char-lm", "digits-cnn", "digits-mlp"]
    assert all(0 <= s <= 1 for s in profile["score"].values())
    for cells in results["summary"].values():
        for cell in cells.values():
            assert len(cell["steps_to_target"]) == 3


def test_signals_reach_the_ref_optimizer_and_schedule_free_is_evaluated_at_x(report: Path) -> None:
    results = load(report)
    ref_runs = [
        r
        for r in results["runs"]
        if r["kind"] == "neural" and r["optimizer"] == "ref_adamw_mini_sf"
    ]
    assert ref_runs and all(r["signals"] == ["loss", "max_steps", "val_loss"] for r in ref_runs)
    sf_runs = [
        r
        for r in results["runs"]
        if r["kind"] == "neural" and r["optimizer"] == "adamw_schedulefree"
    ]
    assert sf_runs and all(r["schedule_free"] and r["signals"] == [] for r in sf_runs)

    class Recorder(torch.optim.SGD):
        def step(self, closure=None, loss=None, val_loss=None, max_steps=None):  # type: ignore[override]
            calls.append((loss, val_loss, max_steps))

    calls: list[tuple] = []
    signals = Signals(Recorder([torch.zeros(1, requires_grad=True)], lr=0.1), steps=50)
    signals.step(1.5)
    signals.validated(0.7)
    signals.step(1.2)
    signals.step(1.1)
    assert calls == [(1.5, None, 50), (1.2, 0.7, 50), (1.1, None, 50)]


def test_bad_names_and_unwritable_out_fail_before_training(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="unknown optimizer 'adamww'; did you mean 'adamw'"):
        bench_main.main(["--optimizers", "adamww", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="unknown task 'digits-mpl'; did you mean 'digits-mlp'"):
        bench_main.main(["--tasks", "digits-mpl", "--out", str(tmp_path / "b")])
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit, match="cannot write the report folder"):
        bench_main.main(["--out", str(blocker / "report"), "--workers", "0"])
    with pytest.raises(SystemExit, match="cannot use --device 'nodevice'"):
        bench_main.main(["--device", "nodevice", "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match="at least 3 final seeds"):
        bench_main.main(["--seeds", "2", "--out", str(tmp_path / "c")])


def test_interrupt_writes_what_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_execute = bench_main.execute
    calls = {"n": 0}

    def interrupted_on_the_fourth_run(job: tuple) -> dict:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_execute(job)

    monkeypatch.setattr(bench_main, "execute", interrupted_on_the_fourth_run)
    out = tmp_path / "partial"
    args = ["--optimizers", "adamw", "--tasks", "digits-mlp", "--steps", "5", "--workers", "0"]
    bench_main.main([*args, "--out", str(out)])
    results = load(out)
    assert results["meta"]["interrupted"] is True
    assert 0 < len(results["runs"]) < 8
    assert "Interrupted: partial results" in (out / "report.md").read_text()


def test_compare_two_runs(report: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        bench_main.main(["--compare", str(report / "results.json"), str(report / "results.json")])
        == 0
    )
    out = capsys.readouterr().out
    assert "digits-mlp" in out and "within noise" in out and "significant" not in out


def test_protocol_helpers() -> None:
    assert Protocol(grid_points=5).grid(1e-3) == pytest.approx(
        [1e-4, 10**-3.5, 1e-3, 10**-2.5, 1e-2]
    )
    lr, edge = select_lr(
        [
            {"lr": 1.0, "val_loss": 2.0},
            {"lr": 2.0, "val_loss": math.inf},
            {"lr": 3.0, "val_loss": 1.0},
        ],
        [1.0, 2.0, 3.0],
    )
    assert (lr, edge) == (3.0, True)
    d = describe([1.0, 2.0, 3.0])
    assert (d["mean"], d["low"], d["high"], d["interval"]) == (2.0, 1.0, 3.0, "min-max")
    assert describe([1.0, 2.0, 3.0, 4.0, 5.0])["interval"] == "95% bootstrap CI"
    worse = paired_comparison(
        {1: 1.0, 2: 1.1, 3: 1.05}, {1: 0.5, 2: 0.6, 3: 0.52}, higher_is_better=False
    )
    assert worse["verdict"] == "worse"
    tie = paired_comparison(
        {1: 1.0, 2: 0.5, 3: 1.5}, {1: 1.0, 2: 1.0, 3: 1.0}, higher_is_better=False
    )
    assert tie["verdict"] == "tie"
    profile = performance_profile(
        {"a": {"x": 10.0, "y": 20.0}, "b": {"x": math.inf, "y": 5.0}}, [1.0, 2.0, 4.0]
    )
    assert profile["rho"]["x"] == [0.5, 0.5, 0.5] and profile["rho"]["y"] == [0.5, 1.0, 1.0]
    assert lr_factor(0, 100) == pytest.approx(0.2) and lr_factor(99, 100) == pytest.approx(
        0.0, abs=1e-3
    )


def test_param_groups_weight_decay_skips_biases_and_norms() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    groups = adamkit.param_groups_weight_decay(model, 0.1)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert [tuple(p.shape) for p in groups[0]["params"]] == [(4, 3), (2, 4)]
    named = adamkit.param_groups_weight_decay(model, 0.1, no_decay=("2.weight",), named=True)
    assert [n for n, _ in named[0]["params"]] == ["0.weight"]


def test_terminate_signal_writes_what_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM is handled like Ctrl-C while the runs go on, and the previous handler comes back.
    import os
    import signal

    real_execute = bench_main.execute
    calls = {"n": 0}

    def terminated_on_the_fourth_run(job: tuple) -> dict:
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_execute(job)

    monkeypatch.setattr(bench_main, "execute", terminated_on_the_fourth_run)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "terminated"
    args = ["--optimizers", "adamw", "--tasks", "digits-mlp", "--steps", "5", "--workers", "0"]
    bench_main.main([*args, "--out", str(out)])
    assert signal.getsignal(signal.SIGTERM) is before
    results = load(out)
    assert results["meta"]["interrupted"] is True
    assert 0 < len(results["runs"]) < 8
