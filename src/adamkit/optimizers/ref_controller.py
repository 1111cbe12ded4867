"""The "Ref" controller of Ref-AdamW-mini-ScheduleFree (source 000), corrected per SPEC §16.3.

Host-side logic only: from the training signals of one ``step`` call (``loss``, ``val_loss``,
``max_steps``) it decides the injection strength α that mixes the current weights into the first
moment. Its whole state is a plain dict (ints, floats, bools, a list), kept in the optimizer's
``param_groups[0]["ref_controller"]`` so that ``state_dict`` saves it.

Per call, in the original's order:

1. t ← t + 1; append ``val_loss`` to the history (last 20 kept).
2. overfit ⇔ the last 4 validation losses rise strictly three times in a row.
3. T_imp = min(20, max(10, int(1e-4·(max_steps or 1000)))); improve ⇔ the newest T_imp
   validation losses each fell (the scan is bounded by the history: the original read past its
   start and raised IndexError).
4. overfit → skip, improve_count = 0; while skipping, improve_count counts consecutive improving
   calls (reset otherwise) and skipping ends when it reaches T_imp.
5. divergence level from ``loss``/(previous loss + 1e-8): 3 above 2.0, 2 above 1.5, 1 above
   1.2, else 0; ``divergence_steps`` counts consecutive calls with a level > 0.
6. α = 0 unless ``loss`` is given, 0.2 ≤ t/T ≤ 0.8 (T = ``max_steps`` or ``ref_max_steps``;
   t/T = 0.5 without a T) and not skipping; then α = 0.6/0.8/1.0 for strength 1/2/3 where
   strength = max(level, min(divergence_steps, 3)), and ``ref_alpha`` for strength 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

HISTORY = 20
ALPHA_OF_STRENGTH = {1: 0.6, 2: 0.8, 3: 1.0}
KEYS = (
    "step_count",
    "val_loss_history",
    "skip_ema",
    "improve_count",
    "last_loss",
    "divergence_steps",
    "alpha",
    "level",
)


def new_controller() -> dict[str, Any]:
    return {
        "step_count": 0,
        "val_loss_history": [],
        "skip_ema": False,
        "improve_count": 0,
        "last_loss": None,
        "divergence_steps": 0,
        "alpha": 0.0,
        "level": 0,
    }


def improve_threshold(max_steps: int | None) -> int:
    return min(20, max(10, int(1e-4 * (max_steps or 1000))))


def divergence_level(loss: float, last_loss: float | None) -> int:
    if last_loss is None:
        return 0
    ratio = loss / (last_loss + 1e-8)
    return 3 if ratio > 2.0 else 2 if ratio > 1.5 else 1 if ratio > 1.2 else 0


def observe(
    ctrl: dict[str, Any],
    *,
    loss: float | None,
    val_loss: float | None,
    max_steps: int | None,
    ref_max_steps: int | None,
    ref_alpha: float,
) -> None:
    """Advance the controller by one ``step`` call; sets ``ctrl["alpha"]`` and ``ctrl["level"]``."""
    ctrl["step_count"] += 1
    t = ctrl["step_count"]
    history = ctrl["val_loss_history"]
    if val_loss is not None:
        history.append(val_loss)
        del history[:-HISTORY]
    overfit = len(history) >= 4 and history[-1] > history[-2] > history[-3] > history[-4]
    threshold = improve_threshold(max_steps)
    improving = 0
    for i in range(1, min(len(history) - 1, threshold) + 1):
        if not history[-i] < history[-i - 1]:
            break
        improving += 1
    if overfit:
        ctrl["skip_ema"] = True
        ctrl["improve_count"] = 0
    if ctrl["skip_ema"]:
        ctrl["improve_count"] = ctrl["improve_count"] + 1 if improving >= threshold else 0
        if ctrl["improve_count"] >= threshold:
            ctrl["skip_ema"] = False
    level = 0
    if loss is not None:
        level = divergence_level(loss, ctrl["last_loss"])
        ctrl["last_loss"] = loss
    ctrl["divergence_steps"] = ctrl["divergence_steps"] + 1 if level > 0 else 0
    alpha = 0.0
    if loss is not None and not ctrl["skip_ema"]:
        horizon = max_steps if max_steps is not None else ref_max_steps
        progress = 0.5 if horizon is None or horizon <= 0 else t / horizon
        if 0.2 <= progress <= 0.8:
            strength = max(level, min(ctrl["divergence_steps"], 3))
            alpha = ALPHA_OF_STRENGTH.get(strength, ref_alpha)
    ctrl["alpha"] = alpha
    ctrl["level"] = level


def check_controller(owner: str, ctrl: Any) -> dict[str, Any]:
    """Validate a controller dict read from a checkpoint; returns a copy or raises ValueError."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{owner}: ref_controller {what}")

    if not isinstance(ctrl, Mapping) or set(ctrl) != set(KEYS):
        raise bad(f"must be a dict with keys {', '.join(KEYS)}")
    for key in ("step_count", "improve_count", "divergence_steps", "level"):
        value = ctrl[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"{key}={value!r} is not an integer >= 0")
    if not isinstance(ctrl["skip_ema"], bool):
        raise bad(f"skip_ema={ctrl['skip_ema']!r} is not a bool")
    history = ctrl["val_loss_history"]
    if not isinstance(history, list) or len(history) > HISTORY:
        raise bad(f"val_loss_history must be a list of at most {HISTORY} numbers")
    numbers = [*history, ctrl["alpha"]] + ([] if ctrl["last_loss"] is None else [ctrl["last_loss"]])
    for value in numbers:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isinf(value):
            raise bad(f"holds {value!r} where a finite number is expected")
    return {key: (list(value) if isinstance(value, list) else value) for key, value in ctrl.items()}
