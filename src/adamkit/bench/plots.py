"""The report's figures (matplotlib, Agg backend), each written as a PNG."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from adamkit.bench.tasks import NEURAL, TOYS
from adamkit.parts.adaptive import rectifier
from adamkit.parts.schedules import alpha_schedule, beta3_schedule


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    """Write a finished figure as a PNG and release it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _colors(names: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def loss_curves(task: str, finals: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Validation loss against step for the tuned lr: mean over final seeds and min–max band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = _colors(sorted(finals))
    for name, runs in sorted(finals.items()):
        curves = [r["curve"] for r in runs if not r["diverged"] and r["curve"]["step"]]
        if not curves:
            continue
        length = min(len(c["step"]) for c in curves)
        steps = curves[0]["step"][:length]
        values = torch.tensor([c["val_loss"][:length] for c in curves])
        ax.plot(steps, values.mean(0), label=name, color=colors[name])
        ax.fill_between(
            steps, values.min(0).values, values.max(0).values, color=colors[name], alpha=0.15
        )
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_yscale("log")
    ax.set_title(f"{task}: validation loss at the tuned lr (mean, min-max over seeds)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def final_metric(task: str, summary: dict[str, Any], path: Path) -> Path:
    """Test metric per optimizer: mean with its interval (min–max or bootstrap CI)."""
    plt = _pyplot()
    metric = f"test_{NEURAL[task].metric}"
    names = [
        n for n, cell in summary.items() if cell.get(metric) and math.isfinite(cell[metric]["mean"])
    ]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    for i, name in enumerate(names):
        d = summary[name][metric]
        ax.errorbar(
            d["mean"], i, xerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]], fmt="o", capsize=4
        )
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"{metric} (mean, {summary[names[0]][metric]['interval'] if names else ''})")
    ax.set_title(f"{task}: test metric at the tuned lr")
    return _save(fig, path)


def lr_sensitivity(task: str, tuning: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Final validation loss against lr for every grid point; diverged runs drawn as x at the top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = _colors(sorted(tuning))
    finite = [
        r["val_loss"] for runs in tuning.values() for r in runs if math.isfinite(r["val_loss"])
    ]
    ceiling = max(finite) * 1.5 if finite else 10.0
    for name, runs in sorted(tuning.items()):
        runs = sorted(runs, key=lambda r: r["lr"])
        lrs = [r["lr"] for r in runs]
        losses = [r["val_loss"] if math.isfinite(r["val_loss"]) else ceiling for r in runs]
        ax.plot(lrs, losses, "-o", color=colors[name], label=name, markersize=3)
        for lr, r in zip(lrs, runs, strict=True):
            if not math.isfinite(r["val_loss"]):
                ax.plot(lr, ceiling, "x", color=colors[name], markersize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final validation loss (x: diverged)")
    ax.set_title(f"{task}: learning-rate sensitivity (tuning seed)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def toy_trajectories(task: str, best: dict[str, dict[str, Any]], path: Path) -> Path:
    """Each optimizer's trajectory at its best grid lr, on the function's contour plot."""
    plt = _pyplot()
    toy = TOYS[task]
    x0, x1, y0, y1 = toy.box
    xs = torch.linspace(x0, x1, 300, dtype=torch.float64)
    ys = torch.linspace(y0, y1, 300, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
    z = toy.value(grid)
    fig, ax = plt.subplots(figsize=(7, 6))
    levels = torch.logspace(-1, math.log10(float(z.max())), 40) if task == "rosenbrock" else 30
    ax.contourf(xs, ys, z, levels=levels, cmap="viridis", alpha=0.6)
    colors = _colors(sorted(best))
    for name, run in sorted(best.items()):
        path_ = torch.tensor(run["path"])
        ax.plot(
            path_[:, 0],
            path_[:, 1],
            "-",
            lw=1.2,
            color=colors[name],
            label=f"{name} (lr {run['lr']:.2g})",
        )
    ax.plot(*toy.start, "ko")
    ax.plot(*toy.minimum, "x", color="cyan", markersize=12, mew=3)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(
        f"{task} (illustrative): start {toy.start}, {toy.steps} steps, float64, no clipping;\n"
        "each optimizer at the lr of the same 9-point grid 1e-4..1 with the lowest final value",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


RECTIFIER_CHECKS = {
    6: 0.026,
    10: 0.049,
    50: 0.148,
    100: 0.215,
    250: 0.342,
    500: 0.476,
    1000: 0.645,
    2000: 0.828,
    5000: 0.983,
}


def radam_rectifier(
    path: Path, beta2: float = 0.999, length: int = 6000
) -> tuple[Path, list[dict[str, Any]]]:
    """RAdam's rectifier r_t and ρ_t over steps (the notebook's ``plot_RAdam_rectifier``), and
    the check values of BENCH_PROTOCOL.md against the computed ones."""
    plt = _pyplot()
    ts = list(range(1, length))
    rho, r = zip(*(rectifier(beta2, t) for t in ts), strict=True)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(ts, [v if rh > 5 else math.nan for v, rh in zip(r, rho, strict=True)])
    axes[0].set_xscale("log")
    axes[0].set_title(f"rectifier r_t (β2 = {beta2}, applied when ρ_t > 5)")
    axes[0].set_xlabel("step t")
    axes[1].plot(ts, rho, label="ρ_t")
    axes[1].axhline(2 / (1 - beta2) - 1, color="gray", ls="--", label="ρ∞")
    axes[1].axhline(5, color="red", ls=":", label="threshold 5")
    axes[1].set_xscale("log")
    axes[1].legend()
    axes[1].set_xlabel("step t")
    _save(fig, path)
    checks = []
    for t, expected in RECTIFIER_CHECKS.items():
        _, r_t = rectifier(beta2, t)
        checks.append(
            {"t": t, "expected": expected, "computed": r_t, "held": abs(r_t - expected) <= 0.0015}
        )
    return path, checks


def ademamix_schedules(
    path: Path, steps: int = 100_000, alpha: float = 8.0, beta1: float = 0.9, beta3: float = 0.9999
) -> Path:
    """α(t) and β3(t) of the AdEMAMix paper's schedulers (T_α = T_β3 = steps)."""
    plt = _pyplot()
    ts = list(range(1, steps + 1, max(1, steps // 2000)))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    axes[0].plot(ts, [alpha_schedule(t, alpha, steps) for t in ts])
    axes[0].set_title(f"α(t), α = {alpha}, T_α = {steps}")
    axes[1].plot(ts, [1 - beta3_schedule(t, beta1, beta3, steps) for t in ts])
    axes[1].set_yscale("log")
    axes[1].set_title(f"1 − β3(t), β1 = {beta1} → β3 = {beta3}, T_β3 = {steps}")
    for ax in axes:
        ax.set_xlabel("step t")
    return _save(fig, path)


def performance_profile(profile: dict[str, Any], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = _colors(sorted(profile["rho"]))
    for name, rho in sorted(profile["rho"].items()):
        ax.step(
            profile["taus"],
            rho,
            where="post",
            label=f"{name} ({profile['score'][name]:.2f})",
            color=colors[name],
        )
    ax.set_xlabel("τ (steps-to-target relative to the fastest)")
    ax.set_ylabel("fraction of tasks ρ(τ)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"performance profile over {len(profile['tasks'])} tasks (score: area / 3)")
    if profile["rho"]:
        ax.legend(fontsize=7)
    return _save(fig, path)
