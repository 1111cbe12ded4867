"""``adamkit bench --compare OLD.json NEW.json``: what changed between two benchmark runs."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from adamkit.bench.protocol import T_975


def _float(x: Any) -> float:
    if isinstance(x, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(x, math.nan)
    return math.nan if x is None else float(x)


def _final_values(results: dict[str, Any], task: str, optimizer: str, key: str) -> list[float]:
    return [
        _float(r.get(key))
        for r in results["runs"]
        if r.get("kind") == "neural"
        and r["role"] == "final"
        and r["task"] == task
        and r["optimizer"] == optimizer
    ]


def welch(old: list[float], new: list[float]) -> tuple[float, float, float]:
    """Mean difference new − old and its approximate 95 % interval (Welch, t with n−1 dof)."""
    diff = statistics.fmean(new) - statistics.fmean(old)
    if len(old) < 2 or len(new) < 2:
        return diff, math.nan, math.nan
    se = math.sqrt(statistics.variance(old) / len(old) + statistics.variance(new) / len(new))
    t = T_975.get(min(len(old), len(new)) - 1, 2.0)
    return diff, diff - t * se, diff + t * se


def compare(old_path: Path, new_path: Path) -> str:
    old, new = (json.loads(Path(p).read_text()) for p in (old_path, new_path))
    lines = [
        f"comparing {old_path} (old) with {new_path} (new): test metrics at each run's tuned lr",
        "",
    ]
    header = (
        f"{'task':11s} {'optimizer':20s} {'metric':10s} {'old':>10s} {'new':>10s} {'new-old':>10s}"
        "  95% interval        change"
    )
    lines.append(header)
    for task, cells in new.get("summary", {}).items():
        old_cells = old.get("summary", {}).get(task, {})
        for optimizer in sorted(set(cells) | set(old_cells)):
            if optimizer not in cells or optimizer not in old_cells:
                where = "new" if optimizer in cells else "old"
                lines.append(f"{task:11s} {optimizer:20s} only in the {where} run")
                continue
            keys = [
                k
                for k in cells[optimizer]
                if k.startswith("test_") and not k.endswith(("_vs_adamw",))
            ]
            for key in keys:
                a = [v for v in _final_values(old, task, optimizer, key) if math.isfinite(v)]
                b = [v for v in _final_values(new, task, optimizer, key) if math.isfinite(v)]
                if not a or not b:
                    continue
                diff, low, high = welch(a, b)
                changed = "significant" if (low > 0 or high < 0) else "within noise"
                lines.append(
                    f"{task:11s} {optimizer:20s} {key[5:]:10s} {statistics.fmean(a):10.4f} "
                    f"{statistics.fmean(b):10.4f} {diff:+10.4f}  [{low:+.4f}, {high:+.4f}]  {changed}"
                )
            lr_old, lr_new = old_cells[optimizer].get("lr"), cells[optimizer].get("lr")
            if lr_old != lr_new:
                lines.append(f"{task:11s} {optimizer:20s} tuned lr changed: {lr_old} -> {lr_new}")
    return "\n".join(lines)
