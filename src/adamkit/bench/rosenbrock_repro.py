"""Reproduce the AdEMAMix Rosenbrock figure (Pagliardini et al. 2024, Fig. 2) with adamkit.

The paper gives the start point (-3, 5), the Adam β1 sweep and AdEMAMix's β3 values but neither the
learning rate nor the number of steps. This module reproduces the setup of optax's example notebook
"Recreate AdeMAMix Rosenbrock Plot from Paper" (``examples/contrib/rosenbrock_ademamix.ipynb``),
which fixes them, and runs it with adamkit's own :class:`adamkit.Adam` and
:class:`adamkit.AdEMAMix`, so that the reproduction validates adamkit:

* Adam: lr 0.003, betas (β1, 0.9999), eps 1e-8, β1 ∈ {0.9, 0.99, 0.999, 0.9999};
* AdEMAMix: lr 0.003, β1 0.99, β2 0.999, eps 1e-8, eps_root 0, weight_decay 0, with the notebook's
  schedules α(s) = linear 0 → 0.8 over T = 100 000 steps and β3(s) from 0 to β3_end ∈ {0.999,
  0.9999} (half-life interpolation), both evaluated at optax's 0-based count s *before* the
  update (so the first update uses α = 0, β3 = 0). They are applied by writing ``group["alpha"]``
  and ``group["betas"]`` before every ``step()``, as an LR scheduler drives ``group["lr"]``;
* start (-3, 5), 100 000 plain steps on f(x, y) = (1 − x)² + 100(y − x²)² with its analytic
  gradient, no clipping.

:func:`run_reproduction` returns plain Python data (crossing steps, final points, the objective at
the notebook's print points, every ``record_every``-th iterate) together with the check properties
of BENCH_PROTOCOL.md ("Reproducing the AdEMAMix Rosenbrock figure") evaluated against its check
values; :func:`plot_reproduction` draws the trajectories on the contour plot and the distance to
the minimum of every run on one log axis. The figures are illustrative, not a ranking.
"""

from __future__ import annotations

import math
import pathlib
import platform
import time
from typing import Any

import torch

import adamkit

# ----------------------------------------------------------------------------- the setup
LR = 0.003
EPS = 1e-8
START = (-3.0, 5.0)
MINIMUM = (1.0, 1.0)
HORIZON = 100_000  # T: the notebook's num_iterations and the warm-up length of both schedules
ADAM_BETA1S = (0.9, 0.99, 0.999, 0.9999)
ADAM_BETA2 = 0.9999
ADEMAMIX_BETA1 = 0.99
ADEMAMIX_BETA2 = 0.999
ADEMAMIX_BETA3_ENDS = (0.999, 0.9999)
ALPHA_END = 0.8
OBJECTIVE_PRINT_POINTS = (25_000, 50_000, 75_000)
THRESHOLDS: tuple[tuple[str, str, float], ...] = (
    ("f<1e-3", "objective", 1e-3),
    ("d<1e-2", "distance", 1e-2),
    ("d<1e-3", "distance", 1e-3),
)
ADAM_LABELS = tuple(f"Adam b1={b1}" for b1 in ADAM_BETA1S)
ADEMAMIX_LABELS = tuple(f"AdEMAMix b3={b3}" for b3 in ADEMAMIX_BETA3_ENDS)
LABELS = ADAM_LABELS + ADEMAMIX_LABELS


# ----------------------------------------------------------------------------- check values
# BENCH_PROTOCOL.md, "Check values for a reproduction": first step (1-based count of updates)
# after which each threshold holds, as (float32, float64).
def _crossings(
    objective_3: tuple[int, int], distance_2: tuple[int, int], distance_3: tuple[int, int]
) -> dict[str, tuple[int, int]]:
    return {"f<1e-3": objective_3, "d<1e-2": distance_2, "d<1e-3": distance_3}


CHECK_CROSSINGS: dict[str, dict[str, tuple[int, int]]] = {
    #                       f < 1e-3            d < 1e-2            d < 1e-3
    "Adam b1=0.9": _crossings((65_525, 65_530), (72_636, 72_640), (78_727, 78_727)),
    "Adam b1=0.99": _crossings((64_082, 64_089), (71_099, 71_102), (77_072, 77_079)),
    "Adam b1=0.999": _crossings((70_162, 70_171), (76_458, 76_468), (80_987, 80_990)),
    "Adam b1=0.9999": _crossings((50_341, 50_345), (53_439, 53_444), (53_502, 53_508)),
    "AdEMAMix b3=0.999": _crossings((13_088, 13_088), (13_741, 13_741), (14_197, 14_197)),
    "AdEMAMix b3=0.9999": _crossings((12_860, 12_860), (13_163, 13_163), (13_228, 13_228)),
}
CROSSING_TOLERANCE = 0.005  # ±0.5 % (check property 1)
# Not robust to float details (check property 3): Adam b1=0.9999 only passes through d < 1e-3
# (f < 1e-6) near step 53.5k; one float32 run crossed at 53 508, another at 60 598.
NON_ROBUST_CROSSINGS = frozenset({("Adam b1=0.9999", "d<1e-3")})
CHECK_FINAL_FLOAT64: dict[str, tuple[float, float]] = {
    "Adam b1=0.9": (1.0, 1.0),
    "Adam b1=0.99": (1.0, 1.0),
    "Adam b1=0.999": (1.0, 1.0),
    "Adam b1=0.9999": (0.95315, 0.90752),
    "AdEMAMix b3=0.999": (1.0, 1.0),
    "AdEMAMix b3=0.9999": (0.99999, 1.00001),
}
CONVERGING = (*ADAM_LABELS[:3], *ADEMAMIX_LABELS)
CONVERGED_RADIUS = 1e-4  # check property 2: ‖x_T − (1, 1)‖₂ ≤ 1e-4
OSCILLATING = "Adam b1=0.9999"
OSCILLATING_END = ((0.953, 0.002), (0.908, 0.002))  # check property 3: (value, ± tolerance)
HEADLINE_ADAM = "Adam b1=0.99"
# Check property 4: "AdEMAMix reaches d < 1e-2 at ~13.2k–13.7k steps ... ≈ 5.2–5.4x". Both are
# quoted to one decimal, so a value passes when it rounds into the quoted range: the check values
# themselves give 13 163 and 13 741 steps and ratios 71 102/13 741 = 5.17, 71 102/13 163 = 5.40.
HEADLINE_STEPS_RANGE = (13_150, 13_750)  # [low, high): rounds to 13.2k ... 13.7k
HEADLINE_RATIO_RANGE = (5.15, 5.45)  # [low, high): rounds to 5.2 ... 5.4
OSCILLATING_PASS_STEP = 53_400  # "Adam b1 = 0.9999 passes d < 1e-2 at 53.4k but does not stay"

# The notebook's printed outputs (float32, JAX): the objective after the update of loop index i
# (0-based, i.e. after i + 1 updates) and the final point after 100k updates.
NOTEBOOK_OBJECTIVES: dict[str, tuple[float, float, float]] = {
    "Adam b1=0.9": (8.618, 0.2617, 3.93e-6),
    "Adam b1=0.99": (8.370, 0.1776, 1.17e-6),
    "Adam b1=0.999": (8.758, 1.461, 5.86e-5),
    "Adam b1=0.9999": (7.632, 0.8723, 0.1689),
    "AdEMAMix b3=0.999": (1.1e-7, 6.8e-8, 1.3e-7),
    "AdEMAMix b3=0.9999": (6.0e-8, 1.4e-14, 2.4e-8),
}
NOTEBOOK_FINAL_FLOAT32: dict[str, tuple[float, float]] = {
    "Adam b1=0.9": (0.9999863, 0.9999726),
    "Adam b1=0.99": (0.9999860, 0.9999720),
    "Adam b1=0.999": (1.0000104, 1.0000207),
    "Adam b1=0.9999": (0.9527074, 0.9081479),
    "AdEMAMix b3=0.999": (1.0000024, 0.9999975),
    "AdEMAMix b3=0.9999": (0.9999937, 1.0000061),
}

SCHEDULE_CONVENTION = (
    "optax-notebook schedules at the 0-based count s before the update (optax's count_m2): the "
    "update s + 1 uses alpha(s) = 0.8·min(s, T)/T and beta3(s) = f⁻¹((1 − s/T)·f(0) + (s/T)·"
    "f(b3_end)) for s < T, b3_end after, with f(β) = ln 0.5/ln β − 1, f⁻¹(t) = 0.5^(1/(t+1)), "
    "T = 100000; beta3 warms up from 0 (beta3(0) = 0, alpha(0) = 0), not from beta1 as in the "
    "official PyTorch code (apple/ml-ademamix), which also evaluates at the 1-based step. m2 is "
    "not bias-corrected; m1 and nu are. Applied by setting group['alpha'] and group['betas'] "
    "before every step(); adamkit's own T_alpha/T_beta3 schedulers are not used."
)
DIFFERENCES_FROM_PAPER = (
    "Adam b2 = 0.9999 instead of 0.999",
    "AdEMAMix b1 = 0.99 instead of 0.9",
    "alpha = 0.8 instead of 9, with a linear schedule",
    "a beta3 schedule from 0",
    "the same lr 0.003 for both optimizers instead of a reduced lr for AdEMAMix",
    "100k steps instead of a few thousand",
)


# ----------------------------------------------------------------------------- schedules
def notebook_alpha(count: int, alpha_end: float = ALPHA_END, horizon: int = HORIZON) -> float:
    """α at optax's 0-based count: ``optax.linear_schedule(0, alpha_end, horizon)(count)``.

    α(s) = α_end·min(s, T)/T, so α(0) = 0 (the first update does not use the slow EMA) and α = α_end
    from s = T on.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    if horizon <= 0:
        raise ValueError(f"horizon must be > 0, got {horizon!r}")
    return alpha_end * (min(count, horizon) / horizon)


def notebook_beta3(
    count: int, beta_end: float, beta_start: float = 0.0, horizon: int = HORIZON
) -> float:
    """β3 at optax's 0-based count, the notebook's ``b3_scheduler(beta_end, beta_start, warmup)``.

    β3(s) = f⁻¹((1 − s/T)·f(β_start) + (s/T)·f(β_end)) for s < T and β_end from s = T on, with
    f(β) = ln 0.5/ln β − 1 (the half-life minus one) and f⁻¹(t) = 0.5^{1/(t+1)}.

    The argument of f⁻¹ plus one is computed directly as u = (1 − s/T)·h(β_start) + (s/T)·h(β_end)
    with h(β) = f(β) + 1 = ln 0.5/ln β, whose limit at β = 0 is h(0) = 0 (f(0) = −1). This avoids
    the division by ln 0 = −∞ and the cancellation in (t + 1), and gives the limits exactly: u = 0
    (s = 0 from β_start = 0) is β3 = 0.5^{+∞} = 0, and a tiny u underflows to 0. For β_start = 0
    the schedule equals β_end^{T/s}.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count!r}")
    if horizon <= 0:
        raise ValueError(f"horizon must be > 0, got {horizon!r}")
    if not 0.0 < beta_end < 1.0:
        raise ValueError(f"beta_end must be in (0, 1), got {beta_end!r}")
    if not 0.0 <= beta_start < 1.0:
        raise ValueError(f"beta_start must be in [0, 1), got {beta_start!r}")
    if count >= horizon:
        return float(beta_end)
    frac = count / horizon
    u = (1.0 - frac) * _half_life(beta_start) + frac * _half_life(beta_end)
    if u <= 0.0:
        return 0.0
    return 0.5 ** (1.0 / u)


def _half_life(beta: float) -> float:
    """h(β) = ln 0.5/ln β (the half-life in steps of an EMA with decay β); h(0) = 0."""
    return 0.0 if beta == 0.0 else math.log(0.5) / math.log(beta)


# ----------------------------------------------------------------------------- the function
def rosenbrock(x: Any, y: Any) -> Any:
    """f(x, y) = (1 − x)² + 100(y − x²)² for floats, arrays or tensors."""
    return (1 - x) ** 2 + 100 * (y - x * x) ** 2


def _gradient_into(
    xy: torch.Tensor, grad: torch.Tensor, r: torch.Tensor, tmp: torch.Tensor
) -> None:
    """Write ∇f of every row (x, y) of ``xy`` into ``grad`` (same shape) without allocating.

    ∂f/∂x = −2(1 − x) − 400·x·(y − x²), ∂f/∂y = 200·(y − x²).
    """
    x, y = xy[:, 0], xy[:, 1]
    gx, gy = grad[:, 0], grad[:, 1]
    torch.mul(x, x, out=tmp)
    torch.sub(y, tmp, out=r)  # r = y − x²
    torch.mul(r, 200.0, out=gy)
    torch.mul(x, r, out=tmp)
    tmp.mul_(400.0)  # 400·x·r
    torch.sub(x, 1.0, out=gx)
    gx.mul_(2.0)  # −2(1 − x), exactly
    gx.sub_(tmp)


# ----------------------------------------------------------------------------- the runs
def _run_settings() -> dict[str, dict[str, Any]]:
    settings: dict[str, dict[str, Any]] = {}
    for label, b1 in zip(ADAM_LABELS, ADAM_BETA1S, strict=True):
        settings[label] = {
            "optimizer": "adamkit.Adam",
            "lr": LR,
            "betas": [b1, ADAM_BETA2],
            "eps": EPS,
            "weight_decay": 0.0,
            "notebook_call": f"optax.adam(learning_rate=0.003, b1={b1}, b2=0.9999)",
        }
    for label, b3 in zip(ADEMAMIX_LABELS, ADEMAMIX_BETA3_ENDS, strict=True):
        settings[label] = {
            "optimizer": "adamkit.AdEMAMix",
            "lr": LR,
            "betas": [ADEMAMIX_BETA1, ADEMAMIX_BETA2, "beta3(s)"],
            "beta3_end": b3,
            "beta3_start": 0.0,
            "beta3_schedule": f"b3_scheduler({b3}, beta_start=0, warmup={HORIZON})",
            "alpha": "alpha(s)",
            "alpha_end": ALPHA_END,
            "alpha_schedule": f"linear_schedule(0, {ALPHA_END}, {HORIZON})",
            "eps": EPS,
            "eps_root": 0.0,
            "weight_decay": 0.0,
            "notebook_call": (
                "optax.contrib.ademamix(learning_rate=0.003, b1=0.99, b2=0.999, b3=b3_sched, "
                "alpha=alpha_sched)"
            ),
        }
    return settings


def _simulate(steps: int, dtype: torch.dtype) -> torch.Tensor:
    """Run the six runs for ``steps`` updates; return every iterate, shape (steps + 1, 6, 2).

    One parameter tensor of shape (2,) per run; the four Adam runs are the four param groups of
    one :class:`adamkit.Adam`, the two AdEMAMix runs the two groups of one
    :class:`adamkit.AdEMAMix` (fewer ``step()`` calls than six optimizers). Each step writes the
    current iterates into the trajectory, computes all six gradients from that row into one
    (6, 2) buffer whose rows are the parameters' ``.grad``, sets the schedules, then steps.
    """
    n = len(LABELS)
    params = [torch.tensor(START, dtype=dtype) for _ in range(n)]
    grads = torch.zeros(n, 2, dtype=dtype)
    for i, p in enumerate(params):
        p.grad = grads[i]
    adam = adamkit.Adam(
        [{"params": [params[i]], "betas": (b1, ADAM_BETA2)} for i, b1 in enumerate(ADAM_BETA1S)],
        lr=LR,
        eps=EPS,
        weight_decay=0.0,
        backend="eager",
    )
    k = len(ADAM_BETA1S)
    ademamix = adamkit.AdEMAMix(
        [
            {
                "params": [params[k + j]],
                "betas": (ADEMAMIX_BETA1, ADEMAMIX_BETA2, notebook_beta3(0, b3)),
            }
            for j, b3 in enumerate(ADEMAMIX_BETA3_ENDS)
        ],
        lr=LR,
        alpha=notebook_alpha(0),
        eps=EPS,
        eps_root=0.0,
        weight_decay=0.0,
        backend="eager",
    )
    scheduled = list(zip(ademamix.param_groups, ADEMAMIX_BETA3_ENDS, strict=True))
    trajectory = torch.empty(steps + 1, n, 2, dtype=dtype)
    r = torch.empty(n, dtype=dtype)
    tmp = torch.empty(n, dtype=dtype)
    # inference mode skips autograd's version-counter and view bookkeeping on every small op
    # (~10 % of the loop); the optimizers and their state never leave this function.
    with torch.inference_mode():
        for s in range(steps):
            current = trajectory[s]
            torch.stack(params, out=current)
            _gradient_into(current, grads, r, tmp)
            alpha = notebook_alpha(s)
            for group, b3_end in scheduled:
                group["alpha"] = alpha
                group["betas"] = (ADEMAMIX_BETA1, ADEMAMIX_BETA2, notebook_beta3(s, b3_end))
            adam.step()
            ademamix.step()
        torch.stack(params, out=trajectory[steps])
    return trajectory


def run_reproduction(
    steps: int = 100_000, dtype: torch.dtype = torch.float64, record_every: int = 100
) -> dict:
    """Run the optax notebook's six Rosenbrock runs with adamkit's Adam and AdEMAMix.

    Args:
        steps: number of updates per run (the notebook's 100 000; fewer for a quick run, in which
            the schedules keep T = 100 000 so the quick run is a prefix of the full one).
        dtype: ``torch.float64`` or ``torch.float32`` (the notebook's JAX dtype).
        record_every: keep every ``record_every``-th iterate (and the last) for plotting.

    Returns:
        Plain, JSON-serializable data::

            {"setup": str, "schedule_convention": str, "differences_from_paper": [str],
             "dtype": str, "steps": int, "record_every": int, "start": [x, y],
             "minimum": [1.0, 1.0], "labels": [label, ...],
             "runs": {label: {"settings", "crossings", "final_point", "final_objective",
                              "final_distance", "point_at_T", "objective_checkpoints",
                              "notebook_objective_checkpoints", "notebook_final_point_float32",
                              "trajectory": {"steps", "x", "y", "objective", "distance"}}},
             "checks": [{"property", "name", "expected", "observed", "held", "note"?,
                         "reported_only"?}],
             "summary": {"held", "failed", "not_evaluated", "reported_only", "all_held"},
             "timing": {...}}

        Crossings are the 1-based count n of the update after which the condition first holds
        (x_n after n updates, x_0 the start), or None. ``objective_checkpoints[str(i)]`` is f
        after the update of the notebook's 0-based loop index i, i.e. after i + 1 updates.
        The objective and distance are evaluated in float64 from the iterates (held in
        ``dtype``). A check is ``held: None`` (with a note) when it is not evaluated: a quick
        run too short for it (counted in ``summary["not_evaluated"]``; ``all_held`` is then
        None unless a check failed), or the crossing that BENCH_PROTOCOL.md calls non-robust
        (``reported_only: True``, observed value given).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(record_every, bool) or not isinstance(record_every, int) or record_every < 1:
        raise ValueError(f"record_every must be an int >= 1, got {record_every!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")

    started = time.perf_counter()
    trajectory = _simulate(steps, dtype)
    loop_seconds = time.perf_counter() - started

    xy = trajectory.to(torch.float64)
    objective = rosenbrock(xy[..., 0], xy[..., 1])  # (steps + 1, 6)
    distance = torch.linalg.vector_norm(xy - torch.tensor(MINIMUM, dtype=torch.float64), dim=-1)
    recorded = list(range(0, steps + 1, record_every))
    if recorded[-1] != steps:
        recorded.append(steps)
    index = torch.tensor(recorded)
    settings = _run_settings()

    runs: dict[str, dict[str, Any]] = {}
    for j, label in enumerate(LABELS):
        crossings: dict[str, int | None] = {}
        for key, quantity, threshold in THRESHOLDS:
            values = (objective if quantity == "objective" else distance)[1:, j]
            hits = torch.nonzero(values < threshold)
            crossings[key] = int(hits[0, 0]) + 1 if hits.numel() else None
        checkpoints = {
            str(i): float(objective[i + 1, j]) if i + 1 <= steps else None
            for i in OBJECTIVE_PRINT_POINTS
        }
        runs[label] = {
            "settings": settings[label],
            "crossings": crossings,
            "final_point": [float(v) for v in xy[steps, j]],
            "final_objective": float(objective[steps, j]),
            "final_distance": float(distance[steps, j]),
            "point_at_T": [float(v) for v in xy[HORIZON, j]] if steps >= HORIZON else None,
            "objective_checkpoints": checkpoints,
            "notebook_objective_checkpoints": dict(
                zip(
                    (str(i) for i in OBJECTIVE_PRINT_POINTS),
                    NOTEBOOK_OBJECTIVES[label],
                    strict=True,
                )
            ),
            "notebook_final_point_float32": list(NOTEBOOK_FINAL_FLOAT32[label]),
            "trajectory": {
                "steps": list(recorded),
                "x": xy[index, j, 0].tolist(),
                "y": xy[index, j, 1].tolist(),
                "objective": objective[index, j].tolist(),
                "distance": distance[index, j].tolist(),
            },
        }

    checks = _evaluate_checks(runs, steps, dtype)
    states = [c["held"] for c in checks]
    reported_only = sum(bool(c.get("reported_only")) for c in checks)
    too_short = sum(h is None for h in states) - reported_only
    failed = sum(h is False for h in states)
    summary = {
        "held": sum(h is True for h in states),
        "failed": failed,
        "not_evaluated": too_short,
        "reported_only": reported_only,
        # True: every check that can be checked held; None: a quick run left some unevaluated
        "all_held": False if failed else (None if too_short else True),
    }
    dtype_name = str(dtype).removeprefix("torch.")
    wall = time.perf_counter() - started
    return {
        "setup": _setup_text(steps, dtype_name),
        "schedule_convention": SCHEDULE_CONVENTION,
        "differences_from_paper": list(DIFFERENCES_FROM_PAPER),
        "dtype": dtype_name,
        "steps": steps,
        "record_every": record_every,
        "start": list(START),
        "minimum": list(MINIMUM),
        "labels": list(LABELS),
        "runs": runs,
        "checks": checks,
        "summary": summary,
        "timing": {
            "wall_seconds": wall,
            "loop_seconds": loop_seconds,
            "us_per_step_all_six_runs": loop_seconds / steps * 1e6,
            "layout": "one adamkit.Adam with 4 param groups + one adamkit.AdEMAMix with 2 groups",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
        },
    }


def _setup_text(steps: int, dtype_name: str) -> str:
    differences = "; ".join(DIFFERENCES_FROM_PAPER)
    return (
        "Illustrative reproduction of the AdEMAMix Rosenbrock figure (Pagliardini et al. 2024, "
        "Fig. 2) in the setup of optax's example notebook 'Recreate AdeMAMix Rosenbrock Plot from "
        "Paper' (examples/contrib/rosenbrock_ademamix.ipynb), not the paper's own setup: the paper "
        "does not publish its learning rate or number of iterations, the notebook fixes them. Run "
        f"with adamkit.Adam and adamkit.AdEMAMix: start (-3, 5), lr 0.003, {steps} steps, "
        f"{dtype_name}, analytic gradient, no clipping, plain per-step loop. Adam: betas (b1, "
        "0.9999), eps 1e-8, b1 in {0.9, 0.99, 0.999, 0.9999}. AdEMAMix: b1 0.99, b2 0.999, eps "
        "1e-8, eps_root 0, weight_decay 0, alpha linear 0 -> 0.8 over 100000 steps, beta3 from 0 "
        "to b3_end in {0.999, 0.9999} over 100000 steps. Differences from the paper: "
        f"{differences}. Schedule convention: {SCHEDULE_CONVENTION}"
    )


# ----------------------------------------------------------------------------- the checks
def _check(
    prop: int,
    name: str,
    expected: Any,
    observed: Any,
    held: bool | None,
    note: str | None = None,
    reported_only: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "property": prop,
        "name": name,
        "expected": expected,
        "observed": observed,
        "held": held,
    }
    if note is not None:
        out["note"] = note
    if reported_only:
        out["reported_only"] = True
    return out


def _too_short(steps: int, needed: int) -> str:
    return f"quick run of {steps} steps: needs >= {needed} steps; not evaluated"


def _evaluate_checks(
    runs: dict[str, dict[str, Any]], steps: int, dtype: torch.dtype
) -> list[dict[str, Any]]:
    """Check properties 1–4 of BENCH_PROTOCOL.md against the check-value table."""
    column = 1 if dtype == torch.float64 else 0
    column_name = "float64" if column else "float32"
    checks: list[dict[str, Any]] = []

    # 1. every crossing within ±0.5 % of the check value (the non-robust one reported only)
    for label in LABELS:
        for key, _, _ in THRESHOLDS:
            ref = CHECK_CROSSINGS[label][key][column]
            low, high = ref * (1 - CROSSING_TOLERANCE), ref * (1 + CROSSING_TOLERANCE)
            observed = runs[label]["crossings"][key]
            name = f"{label}: first step with {key}"
            expected = f"{ref} ± 0.5 % ([{low:.1f}, {high:.1f}]; {column_name} check value)"
            if (label, key) in NON_ROBUST_CROSSINGS:
                note = (
                    "not robust (BENCH_PROTOCOL.md check property 3: this run only passes "
                    "through d < 1e-3 / f < 1e-6 near 53.5k and the step depends on float "
                    "details); reported, not checked"
                )
                checks.append(_check(1, name, expected, observed, None, note, reported_only=True))
            elif observed is None and steps < high:
                checks.append(
                    _check(1, name, expected, None, None, _too_short(steps, math.ceil(high)))
                )
            else:
                held = observed is not None and low <= observed <= high
                checks.append(_check(1, name, expected, observed, held))

    # 2. the five converging runs end within 1e-4 of (1, 1)
    for label in CONVERGING:
        name = f"{label}: ‖x_T − (1, 1)‖₂ after {HORIZON} steps"
        expected = f"<= {CONVERGED_RADIUS:g}"
        point = runs[label]["point_at_T"]
        if point is None:
            checks.append(_check(2, name, expected, None, None, _too_short(steps, HORIZON)))
            continue
        d = math.hypot(point[0] - MINIMUM[0], point[1] - MINIMUM[1])
        checks.append(_check(2, name, expected, d, d <= CONVERGED_RADIUS))

    # 3. Adam b1 = 0.9999 ends at (0.953 ± 0.002, 0.908 ± 0.002)
    name = f"{OSCILLATING}: final point after {HORIZON} steps"
    expected = "(0.953 ± 0.002, 0.908 ± 0.002)"
    point = runs[OSCILLATING]["point_at_T"]
    if point is None:
        checks.append(_check(3, name, expected, None, None, _too_short(steps, HORIZON)))
    else:
        held = all(abs(v - c) <= tol for v, (c, tol) in zip(point, OSCILLATING_END, strict=True))
        checks.append(_check(3, name, expected, point, held))

    # 4. headline: AdEMAMix d < 1e-2 at ~13.2k–13.7k; Adam b1 = 0.99 needs ≈ 5.2–5.4x more;
    #    Adam b1 = 0.9999 passes d < 1e-2 at 53.4k but does not stay there
    low, high = HEADLINE_STEPS_RANGE
    for label in ADEMAMIX_LABELS:
        name = f"{label}: reaches d < 1e-2 at ~13.2k–13.7k steps"
        observed = runs[label]["crossings"]["d<1e-2"]
        expected = f"in [{low}, {high}) (rounds to 13.2k–13.7k)"
        if observed is None and steps < high:
            checks.append(_check(4, name, expected, None, None, _too_short(steps, high)))
        else:
            held = observed is not None and low <= observed < high
            checks.append(_check(4, name, expected, observed, held))
    adam_steps = runs[HEADLINE_ADAM]["crossings"]["d<1e-2"]
    adam_ref = CHECK_CROSSINGS[HEADLINE_ADAM]["d<1e-2"][column]
    adam_needed = math.ceil(adam_ref * (1 + CROSSING_TOLERANCE))
    low, high = HEADLINE_RATIO_RANGE
    for label in ADEMAMIX_LABELS:
        name = f"headline: d < 1e-2 steps {HEADLINE_ADAM} / {label}"
        expected = f"≈ 5.2–5.4 (in [{low}, {high}), rounds to 5.2–5.4)"
        ademamix_steps = runs[label]["crossings"]["d<1e-2"]
        if adam_steps is None and steps < adam_needed:
            checks.append(_check(4, name, expected, None, None, _too_short(steps, adam_needed)))
        elif adam_steps is None or ademamix_steps is None:
            checks.append(_check(4, name, expected, None, False, "a run never reached d < 1e-2"))
        else:
            ratio = adam_steps / ademamix_steps
            checks.append(_check(4, name, expected, ratio, low <= ratio < high))
    name = f"{OSCILLATING}: passes d < 1e-2 at ~53.4k but does not stay there"
    expected = "first d < 1e-2 crossing rounds to 53.4k and final distance >= 1e-2"
    if steps < HORIZON:
        checks.append(_check(4, name, expected, None, None, _too_short(steps, HORIZON)))
    else:
        crossing = runs[OSCILLATING]["crossings"]["d<1e-2"]
        final_d = math.hypot(
            *(v - m for v, m in zip(runs[OSCILLATING]["point_at_T"], MINIMUM, strict=True))
        )
        held = (
            crossing is not None
            and round(crossing / 100) * 100 == OSCILLATING_PASS_STEP
            and final_d >= 1e-2
        )
        observed = {"first_crossing": crossing, "final_distance": final_d}
        checks.append(_check(4, name, expected, observed, held))
    return checks


# ----------------------------------------------------------------------------- the figures
def plot_reproduction(result: dict, directory: pathlib.Path) -> list[pathlib.Path]:
    """Write the two figures of ``result`` (from :func:`run_reproduction`) into ``directory``.

    * ``rosenbrock_ademamix_trajectories.png``: the recorded iterates (every
      ``record_every``-th) on the notebook's contour plot (contourf of f on [−5, 10]², levels
      logspace(−1, 3, 100), cmap "jet", axes x ∈ [−4, 4], y ∈ [−3.5, 7.5], the minimum marked by
      a cyan "x"), one panel for the Adam runs and one for AdEMAMix;
    * ``rosenbrock_ademamix_distance.png``: ‖x − x*‖₂ against the step for all six runs on one
      log-scaled y axis (not the notebook's √‖x − x*‖ on a twin axis).

    Both say "illustrative" and print the start point, lr, steps, dtype and "no clipping".
    Returns the paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    steps = int(result["steps"])
    steps_text = f"{steps // 1000}k" if steps % 1000 == 0 else str(steps)
    caption = (
        f"illustrative; optax-notebook setup; start (−3, 5), lr 0.003, {steps_text} steps, "
        f"{result['dtype']}, no clipping"
    )
    runs = result["runs"]
    labels = list(result.get("labels", runs))
    adam_labels = [label for label in labels if label.startswith("Adam ")]
    ademamix_labels = [label for label in labels if label.startswith("AdEMAMix ")]
    paths = []

    grid = np.linspace(-5.0, 10.0, 600)
    gx, gy = np.meshgrid(grid, grid)
    z = rosenbrock(gx, gy)
    fig, axes = plt.subplots(1, 2, figsize=(16, 8), constrained_layout=True)
    panels = ((axes[0], adam_labels, "Adam"), (axes[1], ademamix_labels, "AdEMAMix"))
    for ax, panel_labels, title in panels:
        contour = ax.contourf(gx, gy, z, levels=np.logspace(-1, 3, 100), cmap="jet")
        for label in panel_labels:
            trajectory = runs[label]["trajectory"]
            ax.plot(trajectory["x"], trajectory["y"], ".-", markersize=3, linewidth=1, label=label)
        ax.plot(
            *MINIMUM, "x", color="cyan", markersize=14, markeredgewidth=3, label="minimum (1, 1)"
        )
        ax.set_xlim(-4, 4)
        ax.set_ylim(-3.5, 7.5)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.set_title(f"{title} on Rosenbrock (every {result['record_every']}th iterate)")
        ax.legend(loc="upper right")
    fig.colorbar(contour, ax=axes, label="f(x, y)", shrink=0.8)
    fig.suptitle(caption)
    path = directory / "rosenbrock_ademamix_trajectories.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)

    fig, ax = plt.subplots(figsize=(11, 6.5), constrained_layout=True)
    for label in labels:
        trajectory = runs[label]["trajectory"]
        zeros = [
            s for s, d in zip(trajectory["steps"], trajectory["distance"], strict=True) if d == 0
        ]
        legend = label
        if zeros:  # exactly at the minimum: a log axis cannot draw d = 0, so say it
            legend += f" (d = 0 exactly at {len(zeros)} recorded steps from {zeros[0]}; not drawn)"
        ax.plot(trajectory["steps"], trajectory["distance"], label=legend)
    for level in (1e-2, 1e-3):
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("‖x − x*‖₂ (x* = (1, 1))")
    ax.set_title(f"Distance to the minimum, every run on one axis\n{caption}")
    ax.legend()
    ax.grid(True, which="major", alpha=0.3)
    path = directory / "rosenbrock_ademamix_distance.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)
    return paths
