"""The benchmark report: ``results.json`` (every run and the summary), ``report.md``, a
self-contained ``report.html`` and the PNG figures."""

from __future__ import annotations

import base64
import html
import json
import math
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from adamkit.bench import plots
from adamkit.bench.data import stdlib_text
from adamkit.bench.protocol import (
    binomial_se,
    describe,
    paired_comparison,
    performance_profile,
    reference_lr,
    select_lr,
)
from adamkit.bench.runner import WARMUP_FRACTION
from adamkit.bench.tasks import NEURAL, TOYS

BASELINE = "adamw"
TAUS = [1 + 0.05 * i for i in range(61)]  # 1 .. 4
SIGNALS = (
    "Optimizers with train()/eval() (schedule-free) are in train mode for training steps and in "
    "eval mode for every evaluation, with BatchNorm statistics re-estimated at that point; "
    "optimizers whose step() accepts loss/val_loss/max_steps (the Ref family) get the "
    "minibatch loss, the validation loss of the evaluation since their previous step, and T."
)


def cells_of(
    records: list[dict[str, Any]], task: str
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in records:
        if r.get("kind") == "neural" and r["task"] == task:
            out.setdefault(r["optimizer"], {"tune": [], "final": []})[r["role"]].append(r)
    return out


def summarize_task(
    task: str, records: list[dict[str, Any]], grids: dict[str, list[float]]
) -> dict[str, Any]:
    spec = NEURAL[task]
    metric = spec.metric
    cells = cells_of(records, task)
    summary: dict[str, Any] = {}
    baseline = {r["seed"]: r for r in cells.get(BASELINE, {}).get("final", [])}
    for name, runs in sorted(cells.items()):
        grid = grids.get(name, [])
        tune = sorted(runs["tune"], key=lambda r: r["lr"])
        chosen, edge = select_lr(tune, grid) if tune and grid else (math.nan, False)
        finals = [r for r in runs["final"] if r["lr"] == chosen]
        ref = reference_lr(name) * spec.lr_scale
        default_run = next((r for r in tune if math.isclose(r["lr"], ref, rel_tol=1e-9)), None)
        cell: dict[str, Any] = {
            "grid": grid,
            "lr": chosen,
            "lr_at_edge": edge and len(grid) > 1,
            "tuning": [
                {"lr": r["lr"], "val_loss": r["val_loss"], "diverged": r["diverged"]} for r in tune
            ],
            "diverged_fraction": (sum(r["diverged"] for r in tune) / len(tune))
            if tune
            else math.nan,
            "default_lr": ref,
            "default_val_loss": default_run["val_loss"] if default_run else None,
            "runs": len(tune) + len(runs["final"]),
            "seeds": sorted(r["seed"] for r in finals),
        }
        for key in ("test_loss", f"test_{metric}"):
            values = {
                r["seed"]: (r.get(key, math.nan) if not r["diverged"] else math.nan) for r in finals
            }
            cell[key] = describe(list(values.values()))
            base = {
                s: (b.get(key, math.nan) if not b["diverged"] else math.nan)
                for s, b in baseline.items()
            }
            higher = key.endswith("acc")
            cell[f"{key}_vs_{BASELINE}"] = (
                paired_comparison(values, base, higher) if name != BASELINE else None
            )
        steps_to = [r["steps_to_target"] for r in finals]
        secs_to = [r["seconds_to_target"] for r in finals]
        cell["steps_to_target"] = steps_to
        cell["seconds_to_target"] = secs_to
        cell["median_steps_to_target"] = _median_inf(steps_to)
        cell["median_seconds_to_target"] = _median_inf(secs_to)
        cell["step_us"] = _median([r["step_us"] for r in finals if r["step_us"]])
        cell["wall_seconds"] = _median([r["wall_seconds"] for r in finals])
        cell["train_seconds_per_step"] = _median(
            [
                r["curve"]["seconds"][-1] / r["curve"]["step"][-1]
                for r in finals
                if r["curve"]["step"]
            ]
        )
        cell["state_bytes_per_param"] = _median([r["state_bytes_per_param"] for r in finals + tune])
        summary[name] = cell
    return summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _median_inf(values: list[float | None]) -> float:
    return statistics.median([math.inf if v is None else v for v in values]) if values else math.nan


def known_results(
    summaries: dict[str, dict[str, Any]], reproduction: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Whether the expectations listed in BENCH_PROTOCOL.md held in this run."""

    def verdicts(name: str) -> dict[str, str]:
        out = {}
        for task, cells in summaries.items():
            comparison = cells.get(name, {}).get(f"test_loss_vs_{BASELINE}")
            if comparison:
                out[task] = comparison["verdict"]
        return out

    results = []
    family = sorted({n for cells in summaries.values() for n in cells} - {BASELINE})
    beats = {n: [t for t, v in verdicts(n).items() if v == "better"] for n in family}
    several = {n: ts for n, ts in beats.items() if len(ts) >= 2}
    results.append(
        {
            "name": "AdamW-family spread within noise",
            "expectation": (
                "after equal-budget lr tuning no variant beats tuned AdamW beyond the paired "
                "interval on several tasks"
            ),
            "observed": "; ".join(
                f"{n}: {', '.join(f'{t} {v}' for t, v in verdicts(n).items())}" for n in family
            )
            or "no comparisons",
            "held": (not several) if family and summaries else None,
        }
    )
    for name, label, expectation in (
        ("radam", "RAdam ≈ AdamW + warmup", "RAdam ties with AdamW (both get the same warm-up)"),
        (
            "adamw_schedulefree",
            "SF ≈ cosine at T",
            "schedule-free AdamW ties with cosine-scheduled AdamW at T",
        ),
        ("ademamix", "AdEMAMix ≈ AdamW at short T", "AdEMAMix ties with AdamW on these short runs"),
    ):
        v = verdicts(name)
        results.append(
            {
                "name": label,
                "expectation": expectation + " (test loss, paired interval)",
                "observed": ", ".join(f"{t}: {x}" for t, x in v.items()) or "not run",
                "held": all(x == "tie" for x in v.values()) if v else None,
            }
        )
    oscillation = None
    observed = "not run"
    if reproduction:
        check = next((c for c in reproduction.get("checks", []) if c.get("property") == 3), None)
        if check is not None:
            oscillation = check.get("held")
            observed = f"{check.get('name')}: observed {check.get('observed')}"
    results.append(
        {
            "name": "Adam β1 = 0.9999 oscillating on Rosenbrock",
            "expectation": "Adam with b1 = 0.9999 passes near the minimum, leaves, ends near (0.953, 0.908)",
            "observed": observed,
            "held": oscillation,
        }
    )
    for r in results:
        r["flag"] = "investigate" if r["held"] is False else ""
    return results


def fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if math.isnan(x):
            return "–"
        if math.isinf(x):
            return "∞"
        return f"{x:.{digits}g}"
    return str(x)


def cell_text(d: dict[str, Any]) -> str:
    if not d or not d.get("n_finite"):
        return "diverged" if d and d.get("n") else "–"
    return f"{fmt(d['mean'])} ± {fmt(d['std'], 2)} [{fmt(d['low'])}–{fmt(d['high'])}] n={d['n']}"


def verdict_text(c: dict[str, Any] | None) -> str:
    if not c:
        return "baseline"
    if c["verdict"] == "n/a":
        return "n/a"
    return f"{c['verdict']} ({fmt(c['mean_diff'], 2)} [{fmt(c['low'], 2)}, {fmt(c['high'], 2)}])"


def write_report(
    out: Path,
    records: list[dict[str, Any]],
    meta: dict[str, Any],
    log: Callable[[str], None] = print,
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    figures: list[tuple[str, Path]] = []
    neural = [t for t in meta["tasks"] if t in NEURAL]
    toys = [t for t in meta["tasks"] if t in TOYS]
    summaries = {t: summarize_task(t, records, meta["grids"][t]) for t in neural}
    steps_to = {
        t: {n: c["median_steps_to_target"] for n, c in cells.items()}
        for t, cells in summaries.items()
    }
    profile = performance_profile(steps_to, TAUS) if summaries else None
    reproduction = next((r for r in records if r.get("kind") == "reproduction"), None)
    toy_best: dict[str, dict[str, Any]] = {}
    for toy in toys:
        runs = [r for r in records if r.get("kind") == "toy" and r["task"] == toy]
        best: dict[str, dict[str, Any]] = {}
        for r in runs:
            if r["optimizer"] not in best or r["final_value"] < best[r["optimizer"]]["final_value"]:
                best[r["optimizer"]] = r
        toy_best[toy] = best

    for task in neural:
        cells = cells_of(records, task)
        finals = {n: c["final"] for n, c in cells.items() if c["final"]}
        tuning = {n: c["tune"] for n, c in cells.items() if c["tune"]}
        if finals:
            figures.append(
                (f"{task}-curves", plots.loss_curves(task, finals, out / f"{task}-curves.png"))
            )
            figures.append(
                (
                    f"{task}-test",
                    plots.final_metric(task, summaries[task], out / f"{task}-test.png"),
                )
            )
        if tuning:
            figures.append(
                (f"{task}-lr", plots.lr_sensitivity(task, tuning, out / f"{task}-lr.png"))
            )
    for toy, best in toy_best.items():
        if best:
            figures.append((toy, plots.toy_trajectories(toy, best, out / f"{toy}.png")))
    if profile and profile["tasks"]:
        figures.append(
            ("profile", plots.performance_profile(profile, out / "performance-profile.png"))
        )
    rectifier_path, rectifier_checks = plots.radam_rectifier(out / "radam-rectifier.png")
    figures.append(("radam-rectifier", rectifier_path))
    figures.append(("ademamix-schedules", plots.ademamix_schedules(out / "ademamix-schedules.png")))
    if reproduction is not None:
        from adamkit.bench.rosenbrock_repro import plot_reproduction

        for i, path in enumerate(plot_reproduction(reproduction, out)):
            figures.append((f"ademamix-rosenbrock-{i}", path))

    env = {
        "torch": torch.__version__,
        "threads_per_run": 1,
        "workers": meta.get("workers"),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if "char-lm" in neural:
        text = stdlib_text()
        env["char_lm_corpus"] = {
            "sha256": text.sha256,
            "files": text.files,
            "train_chars": len(text.train),
        }
    results = {
        "meta": meta,
        "environment": env,
        "summary": summaries,
        "performance_profile": profile,
        "known_results": known_results(summaries, reproduction),
        "radam_rectifier_checks": rectifier_checks,
        "toys": {
            t: {n: {"lr": r["lr"], "final_value": r["final_value"]} for n, r in b.items()}
            for t, b in toy_best.items()
        },
        "reproduction": reproduction,
        "runs": [r for r in records if r.get("kind") != "reproduction"],
        "figures": {name: path.name for name, path in figures},
    }
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1))
    markdown = render_markdown(results)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(render_html(markdown, out))
    for line in summary_lines(results):
        log(line)
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return (
            value
            if math.isfinite(value)
            else ("inf" if value > 0 else "-inf" if value < 0 else "nan")
        )
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "summary (test metric at the tuned lr; verdict vs AdamW from the paired interval):",
    ]
    for task, cells in results["summary"].items():
        metric = f"test_{NEURAL[task].metric}"
        lines.append(f"  {task}")
        for name, cell in sorted(
            cells.items(), key=lambda kv: -_sort_key(kv[1][metric], NEURAL[task].higher_is_better)
        ):
            lines.append(
                f"    {name:20s} {cell_text(cell[metric]):48s} {verdict_text(cell.get(f'test_loss_vs_{BASELINE}'))}"
            )
    return lines


def _sort_key(d: dict[str, Any], higher: bool) -> float:
    m = d.get("mean", math.nan) if d else math.nan
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return -math.inf
    return m if higher else -m


def render_markdown(results: dict[str, Any]) -> str:
    meta, env = results["meta"], results["environment"]
    proto = meta["protocol"]
    runs_per_cell = proto["grid_points"] * len(proto["tuning_seeds"]) + len(proto["final_seeds"])
    lines = [
        "# adamkit bench report",
        "",
        f"`{meta['command']}` on {env['date']}: torch {env['torch']}, Python {env['python']}, "
        f"{env['cpu']}, {meta.get('workers')} worker processes with 1 thread each; wall time "
        f"{meta['wall_seconds']:.0f} s."
        + (" **Interrupted: partial results.**" if meta["interrupted"] else ""),
        "",
        "## Protocol",
        "",
        f"- Per neural task and optimizer: K = {proto['grid_points']} learning rates "
        f"{proto['grid_spacing_decades']} decades apart, centred on the optimizer's own reference lr "
        f"(its default), tried with tuning seed(s) {proto['tuning_seeds']}; the lr with the lowest "
        f"final validation loss is then run with S = {len(proto['final_seeds'])} fresh seeds "
        f"{proto['final_seeds']} (the same for every optimizer; each seed fixes the initialisation "
        "and the data order). Test metrics come only from those final seeds. Runs per optimizer and "
        f"task: K × tuning seeds + S = {runs_per_cell}, "
        "the same for every optimizer."
        + (
            f" A fixed lr {proto['fixed_lr']} was given: no tuning."
            if proto.get("fixed_lr")
            else ""
        ),
        "- Only the learning rate is tuned: every optimizer runs at its default betas, eps and weight "
        "decay (no decay on biases and normalization weights).",
        f"- Schedule: linear warm-up over the first {WARMUP_FRACTION:.0%} of T, then cosine decay to 0 at T, "
        "for every scheduled optimizer; schedule-free optimizers get the same warm-up and are "
        "evaluated at their averaged point (`eval()`), with BatchNorm statistics recomputed.",
        f"- Training signals: {SIGNALS}",
        "- Cells: mean ± std [min–max for n < 5, 95 % bootstrap CI for n ≥ 5] over the final seeds. "
        "A cell is better or worse than AdamW only when the 95 % paired interval of the difference "
        "(t for n < 5) excludes 0; otherwise it is a tie. No single overall winner is declared: "
        "rankings vary by task.",
        "",
        "| task | T (steps) | eval every | target | test split | model |",
        "|---|---:|---:|---|---:|---|",
    ]
    for task in results["summary"]:
        spec = NEURAL[task]
        lines.append(
            f"| {task} | {meta['steps'][task]} | {min(spec.eval_every, meta['steps'][task])} | "
            f"{spec.target.describe()} | {spec.size('test')} | {spec.description} |"
        )
    lines += [
        "",
        "Learning-rate grids, written out. Each is centred on the optimizer's reference lr times the "
        "task's factor (the same for every optimizer, fixed before the run: short runs on small data "
        "want larger steps):",
        "",
    ]
    for task, grids in meta["grids"].items():
        lines.append(f"- {task} (factor {NEURAL[task].lr_scale:g}):")
        for name, grid in grids.items():
            lines.append(f"  - `{name}`: {', '.join(f'{lr:.3g}' for lr in grid)}")
    for task, cells in results["summary"].items():
        spec = NEURAL[task]
        metric = spec.metric
        lines += [
            "",
            f"## {task}",
            "",
            f"{spec.description}. Test metric: {metric}; target {spec.target.describe()} (fixed before "
            f"the run), evaluated every {min(spec.eval_every, meta['steps'][task])} steps.",
            "",
        ]
        if metric == "acc":
            accs = [
                c[f"test_{metric}"]["mean"]
                for c in cells.values()
                if c[f"test_{metric}"]["n_finite"]
            ]
            if accs:
                n = spec.size("test")
                lines.append(
                    f"Resolution: the test split has {n} examples; the binomial standard error of a test "
                    f"accuracy of {max(accs):.3f} is {binomial_se(max(accs), n):.4f}. Test loss is reported too."
                )
                lines.append("")
        lines += [
            f"| optimizer | tuned lr | test loss | test {metric} | vs AdamW (test loss) "
            "| default lr: val loss | steps to target (per seed; median) | step µs | state B/param |",
            "|---|---|---|---|---|---|---|---:|---:|",
        ]
        for name, c in sorted(cells.items()):
            edge = " **(grid edge)**" if c["lr_at_edge"] else ""
            per_seed = ", ".join(
                fmt(float(s)) if s is not None else "∞" for s in c["steps_to_target"]
            )
            lines.append(
                f"| {name} | {fmt(c['lr'], 3)}{edge} | {cell_text(c['test_loss'])} "
                f"| {cell_text(c[f'test_{metric}'])} | {verdict_text(c.get(f'test_loss_vs_{BASELINE}'))} "
                f"| {fmt(c['default_val_loss'])} | {per_seed}; {fmt(c['median_steps_to_target'])} "
                f"| {fmt(c['step_us'], 3)} | {fmt(c['state_bytes_per_param'], 3)} |"
            )
        edges = [n for n, c in cells.items() if c["lr_at_edge"]]
        if edges:
            lines += [
                "",
                f"lr_at_edge: the tuned lr of {', '.join(edges)} is on an edge of its grid; "
                "the grid may not contain its best lr.",
            ]
        diverged = {n: c["diverged_fraction"] for n, c in cells.items() if c["diverged_fraction"]}
        if diverged:
            lines += [
                "",
                "Diverged tuning runs (drawn in the sensitivity plot): "
                + ", ".join(f"{n} {f:.0%}" for n, f in diverged.items()),
            ]
        note = _wall_time_note(cells)
        if note:
            lines += ["", note]
        figs = results["figures"]
        for key, caption in (
            (f"{task}-curves", "validation loss"),
            (f"{task}-test", "test metric"),
            (f"{task}-lr", "learning-rate sensitivity"),
        ):
            if key in figs:
                lines += ["", f"![{task}: {caption}]({figs[key]})"]
    profile = results.get("performance_profile")
    if profile and profile["tasks"]:
        lines += [
            "",
            "## Time to target and performance profile",
            "",
            f"Built from the median steps-to-target over the final seeds (∞ where not reached) on "
            f"{len(profile['tasks'])} task(s): {', '.join(profile['tasks'])}. ρ(τ) is the fraction of tasks "
            "where an optimizer needs at most τ times the steps of the fastest; the score is the area "
            "under ρ over τ ∈ [1, 4], divided by 3. With this few tasks the profile is coarse.",
            "",
            "| optimizer | score | "
            + " | ".join(f"{t} steps (s)" for t in profile["tasks"])
            + " |",
            "|---|---:|" + "---:|" * len(profile["tasks"]),
        ]
        for name in sorted(profile["score"], key=lambda n: -profile["score"][n]):
            row = [
                f"{fmt(results['summary'][t].get(name, {}).get('median_steps_to_target'))} "
                f"({fmt(results['summary'][t].get(name, {}).get('median_seconds_to_target'), 3)})"
                for t in profile["tasks"]
            ]
            lines.append(f"| {name} | {profile['score'][name]:.2f} | " + " | ".join(row) + " |")
        lines += ["", f"![performance profile]({results['figures']['profile']})"]
    if results["toys"]:
        lines += ["", "## 2-D functions (illustrative, not a ranking)", ""]
        for toy, best in results["toys"].items():
            t = TOYS[toy]
            lines += [
                f"{toy}: start {t.start}, {t.steps} steps, float64, no clipping; each optimizer at the lr "
                f"with the lowest final value on the same 9-point grid 1e-4 … 1.",
                "",
                "| optimizer | lr | final value |",
                "|---|---:|---:|",
            ]
            lines += [
                f"| {n} | {fmt(r['lr'], 3)} | {fmt(r['final_value'])} |"
                for n, r in sorted(best.items())
            ]
            if toy in results["figures"]:
                lines += ["", f"![{toy}]({results['figures'][toy]})", ""]
    repro = results.get("reproduction")
    if repro:
        lines += [
            "",
            "## AdEMAMix Rosenbrock figure (reproduction)",
            "",
            str(repro.get("setup", "")),
            "",
        ]
        lines += ["| check | expected | observed | held |", "|---|---|---|---|"]
        for c in repro.get("checks", []):
            lines.append(
                f"| {c.get('name')} | {c.get('expected')} | {c.get('observed')} | {c.get('held')} |"
            )
        for key in sorted(k for k in results["figures"] if k.startswith("ademamix-rosenbrock")):
            lines += ["", f"![AdEMAMix Rosenbrock reproduction]({results['figures'][key]})"]
    lines += [
        "",
        "## RAdam rectifier and AdEMAMix schedules",
        "",
        "RAdam's rectifier r_t for β2 = 0.999 (threshold ρ_t > 5) against the check values of the protocol:",
        "",
        "| t | expected | computed | held |",
        "|---:|---:|---:|---|",
    ]
    lines += [
        f"| {c['t']} | {c['expected']} | {c['computed']:.4f} | {c['held']} |"
        for c in results["radam_rectifier_checks"]
    ]
    lines += ["", f"![RAdam rectifier]({results['figures']['radam-rectifier']})", ""]
    lines += [f"![AdEMAMix schedules]({results['figures']['ademamix-schedules']})", ""]
    lines += ["## Known results", "", "| expectation | held | observed | |", "|---|---|---|---|"]
    for k in results["known_results"]:
        held = {True: "held", False: "**not held**", None: "not run"}[k["held"]]
        lines.append(
            f"| {k['name']}: {k['expectation']} | {held} | {k['observed']} | {k['flag']} |"
        )
    lines += [
        "",
        "A violated expectation is flagged for investigation, not advertised as a result.",
        "",
        "## Timing",
        "",
        "Per run: wall time, the median `opt.step()` time in the same process, compile time (0: the "
        "eager path runs these small models). Rankings use equal steps. Medians over the final seeds:",
        "",
        "| task | optimizer | wall s | opt.step() µs | compile s |",
        "|---|---|---:|---:|---:|",
    ]
    for task, cells in results["summary"].items():
        for name, c in sorted(cells.items()):
            lines.append(
                f"| {task} | {name} | {fmt(c['wall_seconds'], 3)} | {fmt(c['step_us'], 3)} | 0 |"
            )
    return "\n".join(lines) + "\n"


def _wall_time_note(cells: dict[str, Any]) -> str:
    base = cells.get(BASELINE)
    if not base or not math.isfinite(base.get("train_seconds_per_step", math.nan)):
        return ""
    slow = []
    for name, c in cells.items():
        extra = (c["step_us"] - base["step_us"]) * 1e-6
        per_step = base["train_seconds_per_step"]
        if math.isfinite(extra) and per_step and extra / per_step > 0.10:
            slow.append(f"{name} (+{100 * extra / per_step:.0f} % of a training step)")
    if not slow:
        return ""
    return (
        "Equal-wall-time note: the optimizer step of "
        + ", ".join(slow)
        + " costs over 10 % of a training step more than AdamW's; at equal wall time they would get fewer steps."
    )


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+)\)")
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline(text: str) -> str:
    text = html.escape(text)
    text = _CODE.sub(r"<code>\1</code>", text)
    return _BOLD.sub(r"<strong>\1</strong>", text)


def render_html(markdown: str, folder: Path) -> str:
    """The report as one HTML file with the figures embedded (no external files)."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append([c.strip() for c in lines[i].strip("|").split("|")])
                i += 1
            head, rest = rows[0], rows[2:]
            table = ["<table><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
            table += [
                "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in rest
            ]
            body.append("".join(table) + "</table>")
            continue
        elif (m := _IMAGE.fullmatch(line.strip())) is not None:
            path = folder / m.group(2)
            if path.exists():
                data = base64.b64encode(path.read_bytes()).decode()
                alt = html.escape(m.group(1))
                body.append(
                    f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{alt}</figcaption></figure>"
                )
        elif line.lstrip().startswith("- "):
            items = []
            while i < len(lines) and lines[i].lstrip().startswith("- "):
                items.append(f"<li>{_inline(lines[i].lstrip()[2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
        i += 1
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
        "td,th{border:1px solid #ccc;padding:3px 6px}th{background:#f3f3f3}"
        "img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>adamkit bench report</title>"
        f"<style>{style}</style></head><body>" + "\n".join(body) + "</body></html>\n"
    )
