"""The comparison protocol (../shared/BENCH_PROTOCOL.md): equal learning-rate grids centred on
each optimizer's own reference lr, selection on validation loss, fresh paired seeds for the test
numbers, intervals and ties, time-to-target and the performance profile."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import adamkit

T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass(frozen=True)
class Protocol:
    grid_points: int = 5  # K learning rates per optimizer and task
    grid_spacing: float = 0.5  # decades between grid points
    tuning_seeds: tuple[int, ...] = (0,)
    final_seeds: tuple[int, ...] = (1, 2, 3)  # S fresh seeds, disjoint from the tuning seeds
    toy_grid: tuple[float, ...] = tuple(10.0 ** (e / 2) for e in range(-8, 1))  # 1e-4 .. 1

    def grid(self, reference_lr: float) -> list[float]:
        """K learning rates, ``grid_spacing`` decades apart, centred on ``reference_lr``."""
        middle = (self.grid_points - 1) / 2
        return [
            reference_lr * 10 ** (self.grid_spacing * (i - middle)) for i in range(self.grid_points)
        ]

    def runs_per_cell(self) -> int:
        return self.grid_points * len(self.tuning_seeds) + len(self.final_seeds)


def reference_lr(optimizer: str) -> float:
    """An optimizer's own reference learning rate: its documented default."""
    return float(adamkit.optimizer_class(optimizer).declared_hypers()["lr"].default)


def select_lr(tuning: Sequence[dict[str, Any]], grid: Sequence[float]) -> tuple[float, bool]:
    """The grid lr with the lowest mean final validation loss (diverged = inf), and whether it
    lies on an edge of the grid."""
    by_lr: dict[float, list[float]] = {}
    for run in tuning:
        loss = run["val_loss"]
        by_lr.setdefault(run["lr"], []).append(loss if math.isfinite(loss) else math.inf)
    best = min(grid, key=lambda lr: statistics.fmean(by_lr.get(lr, [math.inf])))
    return best, best in (min(grid), max(grid))


def describe(values: Sequence[float]) -> dict[str, Any]:
    """Mean, std, n and an interval: a 95 % bootstrap CI of the mean for n ≥ 5, else min–max."""
    finite = [v for v in values if math.isfinite(v)]
    n = len(values)
    out: dict[str, Any] = {"n": n, "n_finite": len(finite)}
    if not finite:
        return {
            **out,
            "mean": math.nan,
            "std": math.nan,
            "low": math.nan,
            "high": math.nan,
            "interval": "none",
        }
    mean = statistics.fmean(finite)
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    if len(finite) >= 5:
        low, high = bootstrap_ci(finite)
        kind = "95% bootstrap CI"
    else:
        low, high = min(finite), max(finite)
        kind = "min-max"
    return {**out, "mean": mean, "std": std, "low": low, "high": high, "interval": kind}


def bootstrap_ci(values: Sequence[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(values, k=len(values))) for _ in range(draws))
    return means[int(0.025 * draws)], means[int(0.975 * draws) - 1]


def paired_comparison(
    ours: dict[int, float], baseline: dict[int, float], higher_is_better: bool
) -> dict[str, Any]:
    """The paired difference (ours − baseline) over common seeds, its 95 % interval (t for
    n < 5, bootstrap for n ≥ 5) and the verdict: better/worse only if the interval excludes 0."""
    seeds = sorted(set(ours) & set(baseline))
    diffs = [ours[s] - baseline[s] for s in seeds]
    if len(diffs) < 2 or not all(math.isfinite(d) for d in diffs):
        return {
            "n": len(diffs),
            "mean_diff": math.nan,
            "low": math.nan,
            "high": math.nan,
            "verdict": "n/a",
        }
    mean = statistics.fmean(diffs)
    if len(diffs) >= 5:
        low, high = bootstrap_ci(diffs)
    else:
        half = T_975[len(diffs) - 1] * statistics.stdev(diffs) / math.sqrt(len(diffs))
        low, high = mean - half, mean + half
    verdict = "tie"
    if low > 0 or high < 0:
        improved = (mean > 0) == higher_is_better
        verdict = "better" if improved else "worse"
    return {"n": len(diffs), "mean_diff": mean, "low": low, "high": high, "verdict": verdict}


def performance_profile(
    steps_to_target: dict[str, dict[str, float]], taus: Sequence[float]
) -> dict[str, Any]:
    """ρ(τ): the fraction of tasks where an optimizer needs at most τ times the steps of the
    fastest one (∞ where the target was not reached), and its area over τ ∈ [1, 4] / 3."""
    tasks = sorted(steps_to_target)
    optimizers = sorted({o for per in steps_to_target.values() for o in per})
    ratios: dict[str, list[float]] = {o: [] for o in optimizers}
    for task in tasks:
        per = steps_to_target[task]
        best = min(per.values(), default=math.inf)
        for o in optimizers:
            s = per.get(o, math.inf)
            ratios[o].append(s / best if math.isfinite(s) and math.isfinite(best) else math.inf)
    rho = {
        o: [sum(r <= tau for r in ratios[o]) / max(1, len(tasks)) for tau in taus]
        for o in optimizers
    }
    width = taus[-1] - taus[0]
    area = {
        o: sum(
            (a + b) / 2 * (t1 - t0)
            for a, b, t0, t1 in zip(r[:-1], r[1:], taus[:-1], taus[1:], strict=True)
        )
        / width
        for o, r in rho.items()
    }
    return {"tasks": tasks, "taus": list(taus), "rho": rho, "score": area, "ratios": ratios}


def binomial_se(accuracy: float, n: int) -> float:
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n) if n else math.nan
