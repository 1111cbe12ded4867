"""``adamkit speed``: optimizer step time of every registered optimizer against torch's fused and
foreach AdamW, on the same parameters, in one process.

Each measurement alternates the candidate with ``torch.optim.AdamW(fused=True)`` and
``torch.optim.AdamW(foreach=True)`` (A B C A B C ...). Step times are medians; a ratio is the
median of the ratios of each round, so that drifts of the machine hit both sides alike. The
first step (which includes compiling) and the slowest step before timing (where a configuration
first needed later compiles) are reported separately. For every candidate the table
gives the step time, its ratios to fused and foreach AdamW with their median times in the
rounds paired with it (memory-bound steps follow the machine's memory traffic and
compute-bound ones do not, so a ratio is read with its baseline), the bytes it must move per
parameter (read parameter, gradient and state, write parameter and state, and read what the
rule's whole-tensor reductions read in a pass of their own, ``prepass_reads_of``) and the
fraction of the measured memory bandwidth that implies, and the ratio the optimizer aims at
(:func:`target_ratio`). With ``--state-dtype`` (bfloat16, say) each optimizer is also timed
against itself on float32 state, interleaved the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

import adamkit
from adamkit.bench.models import gpt_like_named_shapes
from adamkit.core.precision import check_state_dtype

SETS: dict[str, Callable[[], list[tuple[str, tuple[int, ...]]]]] = {
    "gpt": lambda: gpt_like_named_shapes(dim=384, layers=12, vocab=8192, context=512),
    "small": lambda: [(f"t{i}", (128,)) for i in range(1000)],
    "large": lambda: [("w", (25_000_000,))],
}


def make_params(
    shapes: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = []
    for _, shape in shapes:
        p = (torch.randn(shape, generator=gen) * 0.02).to(dtype).requires_grad_()
        p.grad = torch.randn(shape, generator=gen).to(dtype)
        out.append(p)
    return out


def clone_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for p in params:
        q = p.detach().clone().requires_grad_()
        q.grad = p.grad.clone()  # type: ignore[union-attr]
        out.append(q)
    return out


def bandwidth_gbs(numel: int = 25_000_000, repeats: int = 9) -> float:
    """In-place ``a += b`` on float32: 12 bytes per element moved (read a, b; write a)."""
    a, b = torch.randn(numel), torch.randn(numel)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a.add_(b)
        times.append(time.perf_counter() - start)
    return 12 * numel / statistics.median(times) / 1e9


def compiler_startup_seconds() -> float:
    """The once-per-process cost of torch.compile's first use (imports, the probe of the CPU's
    vector instructions, code templates), paid by whichever optimizer steps first; measured on
    a one-line function so that each optimizer's first step shows its own compile alone."""
    x = torch.ones(8)
    start = time.perf_counter()
    torch.compile(lambda t: t * 2 + 1, dynamic=True)(x)
    return time.perf_counter() - start


def min_bytes_per_param(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> float:
    """Read parameter and gradient, read and write every state tensor, write the parameter;
    plus what the rule's whole-tensor reductions read in a pass before the update
    (``prepass_reads_of`` each parameter)."""
    state = sum(
        v.numel() * v.element_size()
        for p in params
        for v in opt.state[p].values()
        if torch.is_tensor(v)
    )
    moved = sum(3 * p.numel() * p.element_size() for p in params) + 2 * state
    for p in params:
        reads = opt.prepass_reads_of(p) if hasattr(opt, "prepass_reads_of") else ()
        for name in reads:
            read = p if name in ("param", "grad") else opt.state[p].get(name)
            if torch.is_tensor(read):
                moved += read.numel() * read.element_size()
    return moved / sum(p.numel() for p in params)


# Fused AdamW's bytes per parameter: 4-byte parameter, gradient and two state tensors.
ADAMW_BYTES = 28.0
# The slack over the bytes-proportional bound that an optimizer's step may take, and AdamW's
# own (whose bound fused AdamW meets).
TARGET_SLACK, ADAMW_TARGET = 1.2, 1.10


def target_ratio(name: str, bytes_per_param: float) -> float:
    """The ratio to fused AdamW a step aims at on float32 state: 1.10 for AdamW, else 1.2 ×
    the bytes it must move per parameter / 28 (fused AdamW's), so a rule that must move more
    bytes may take proportionally longer (AdEMAMix, 36 B: 1.54)."""
    return ADAMW_TARGET if name == "adamw" else TARGET_SLACK * bytes_per_param / ADAMW_BYTES


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler library's start/stop lines, written by C++ straight to fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_step_bytes(step: Callable[[], Any]) -> int:
    """The most memory a step holds beyond what it started with (temporaries, scratch), from
    the allocation events the profiler records (every CPU/device allocation of torch)."""
    from torch.profiler import ProfilerActivity, profile

    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    held = peak = 0
    for event in events:
        held += event.nbytes()
        peak = max(peak, held)
    return peak


def interleaved(steps: Sequence[Callable[[], Any]], repeats: int) -> list[list[float]]:
    """Step times of each of ``steps``, measured in rounds (A B C A B C ...)."""
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats):
        for step, out in zip(steps, times, strict=True):
            start = time.perf_counter()
            step()
            out.append(time.perf_counter() - start)
    return times


# Steps taken before timing. RAdam and SRAdam rectify from t = 6 with the default β2 and
# take a cheaper branch before, so every candidate is timed from t = 7 on: in its steady state,
# and at the same step as any instance it is compared with.
WARMUP_STEPS = 6


def warm_up(opt: torch.optim.Optimizer) -> list[float]:
    """Take :data:`WARMUP_STEPS` steps; their times in seconds. A configuration compiles at
    the first step that needs it: most at step 1, B_Adam's general one at step 2, RAdam's and
    SRAdam's rectified one at step 6."""
    times = []
    for _ in range(WARMUP_STEPS):
        start = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - start)
    return times


def median_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """The median over rounds of a_i / b_i."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def measure_set(
    set_name: str,
    names: list[str],
    state_dtype: str | None,
    state_rounding: str,
    backend: str,
    repeats: int,
    bandwidth: float,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    shapes = SETS[set_name]()
    base = make_params(shapes, torch.float32)
    n = sum(p.numel() for p in base)
    fused_params = clone_params(base)
    fused = torch.optim.AdamW(fused_params, fused=True)
    fused.step()
    rows = []
    foreach_params = clone_params(base)
    foreach = torch.optim.AdamW(foreach_params, foreach=True)
    start = time.perf_counter()
    foreach.step()
    first = time.perf_counter() - start
    t_foreach, t_fused = interleaved([foreach.step, fused.step], repeats)
    count = len(base)

    def table_row(
        label: str,
        t: list[float],
        fused_t: list[float],
        foreach_t: list[float],
        *,
        warm: list[float],
        bytes_pp: float,
        peak: int,
    ) -> dict[str, Any]:
        out = row(set_name, label, t, fused_t, warm, bytes_pp, n, bandwidth)
        out["ratio_to_foreach"] = median_ratio(t, foreach_t)
        out["foreach_adamw_ms"] = statistics.median(foreach_t) * 1e3
        out["per_tensor_us"] = statistics.median(t) / count * 1e6
        out["peak_extra_bytes_per_param"] = peak / n
        return out

    foreach_peak, fused_peak = peak_step_bytes(foreach.step), peak_step_bytes(fused.step)
    rows.append(
        table_row(
            "torch AdamW(foreach)",
            t_foreach,
            t_fused,
            t_foreach,
            warm=[first],
            bytes_pp=ADAMW_BYTES,
            peak=foreach_peak,
        )
    )
    rows.append(
        table_row(
            "torch AdamW(fused)",
            t_fused,
            t_fused,
            t_foreach,
            warm=[0.0],
            bytes_pp=ADAMW_BYTES,
            peak=fused_peak,
        )
    )
    for row_ in rows:
        log(format_row(row_))
    for name in names:
        params = clone_params(base)
        hyper: dict[str, Any] = {
            "backend": backend,
            "state_dtype": state_dtype,
            "state_rounding": state_rounding,
        }
        opt = adamkit.create(name, params, **hyper)
        warm = warm_up(opt)
        t, t_fused, t_foreach = interleaved([opt.step, fused.step, foreach.step], repeats)
        label = name if state_dtype is None else f"{name} [{state_dtype}, {state_rounding}]"
        result = table_row(
            label,
            t,
            t_fused,
            t_foreach,
            warm=warm,
            bytes_pp=min_bytes_per_param(opt, params),
            peak=peak_step_bytes(opt.step),
        )
        result["backend"] = backend
        if check_state_dtype("state_dtype", state_dtype) in (None, "float32"):
            result["target_ratio"] = target_ratio(name, result["bytes_per_param"])
        else:
            # the same optimizer on float32 state, interleaved with this one
            wide_params = clone_params(base)
            wide = adamkit.create(name, wide_params, backend=backend)
            warm_up(wide)
            t_low, t_wide = interleaved([opt.step, wide.step], repeats)
            result["ratio_to_float32_state"] = median_ratio(t_low, t_wide)
            del wide, wide_params
        rows.append(result)
        log(format_row(result))
        del opt, params
    return rows


def row(
    set_name: str,
    label: str,
    t: list[float],
    t_fused: list[float],
    warm: list[float],
    bytes_pp: float,
    n: int,
    bandwidth: float,
) -> dict[str, Any]:
    """One row of the table; ``warm`` holds the times of the steps taken before timing."""
    step = statistics.median(t)
    return {
        "set": set_name,
        "optimizer": label,
        "step_ms": step * 1e3,
        "fused_adamw_ms": statistics.median(t_fused) * 1e3,
        "ratio_to_fused": median_ratio(t, t_fused),
        "first_step_s": warm[0],
        "slowest_warmup_step_s": max(warm),
        "bytes_per_param": bytes_pp,
        "bandwidth_fraction": bytes_pp * n / step / 1e9 / bandwidth,
    }


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['set']:6s} {r['optimizer']:32s} {r['step_ms']:9.2f} ms  x{r['ratio_to_fused']:5.2f} "
        f"(fused {r['fused_adamw_ms']:6.2f} ms)  "
        f"{r['bytes_per_param']:5.1f} B/p  {100 * r['bandwidth_fraction']:5.1f}% bw  "
        f"foreach x{r['ratio_to_foreach']:5.2f} ({r['foreach_adamw_ms']:7.2f} ms)  "
        f"{r['per_tensor_us']:7.2f} us/tensor  "
        f"peak +{r['peak_extra_bytes_per_param']:5.2f} B/p  first {r['first_step_s']:6.2f} s"
        f" (slowest {r['slowest_warmup_step_s']:6.2f} s)"
        + (f"  target x{r['target_ratio']:5.2f} {_verdict(r)}" if "target_ratio" in r else "")
        + (
            f"  vs float32 state x{r['ratio_to_float32_state']:5.2f}"
            if "ratio_to_float32_state" in r
            else ""
        )
    )


def _verdict(r: dict[str, Any]) -> str:
    """Whether a row's ratio to fused AdamW is within its target."""
    return "met" if r["ratio_to_fused"] <= r["target_ratio"] else "missed"


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# adamkit speed",
        "",
        f"torch {results['torch']}, {results['threads']} threads, {results['cpu']}; "
        f"measured bandwidth {results['bandwidth_gbs']:.1f} GB/s; medians of {results['repeats']} "
        "rounds, each stepping the optimizer, fused AdamW and foreach AdamW in turn; the "
        "AdamW times are the medians of the rounds paired with that row (they move with the "
        "machine's memory traffic and C allocator, so a ratio is read with its baseline). "
        + (
            f"torch.compile's start-up, once per process before the first step: "
            f"{results['compiler_startup_s']:.2f} s."
            if results.get("compiler_startup_s") is not None
            else ""
        ),
        "",
        "| set | optimizer | step ms | ratio to fused AdamW | fused AdamW ms "
        "| ratio to foreach AdamW | foreach AdamW ms "
        "| µs/tensor | bytes/param | bandwidth | peak extra B/param | first step s "
        "| slowest warm-up step s | target ratio | ratio to float32 state |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['set']} | {r['optimizer']} | {r['step_ms']:.2f} | {r['ratio_to_fused']:.2f} | "
            f"{r['fused_adamw_ms']:.2f} | {r['ratio_to_foreach']:.2f} | "
            f"{r['foreach_adamw_ms']:.2f} | {r['per_tensor_us']:.2f} | "
            f"{r['bytes_per_param']:.1f} | {100 * r['bandwidth_fraction']:.0f}% | "
            f"{r['peak_extra_bytes_per_param']:.2f} | {r['first_step_s']:.2f} | "
            f"{r['slowest_warmup_step_s']:.2f} | "
            + (f"{r['target_ratio']:.2f} ({_verdict(r)}) | " if "target_ratio" in r else "— | ")
            + (f"{r['ratio_to_float32_state']:.2f} |" if "ratio_to_float32_state" in r else "— |")
        )
    return "\n".join(lines) + "\n"


def _count(text: str) -> int:
    """A whole number of at least 1 given on the command line."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def set_names(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """The comma-separated parameter sets of ``--sets``; an unknown one is a usage error."""
    names = text.split(",")
    for name in names:
        if name not in SETS:
            parser.error(f"unknown set {name!r}; choose from {', '.join(SETS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adamkit speed", description=__doc__)
    parser.add_argument("--optimizers", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--sets", default="gpt,small,large", help=f"of {', '.join(SETS)}")
    parser.add_argument("--state-dtype", default=None, help="e.g. bfloat16 (default: the params')")
    parser.add_argument(
        "--state-rounding",
        default="stochastic",
        choices=("stochastic", "nearest", "kahan"),
        help="how low-precision state is written back",
    )
    parser.add_argument("--backend", default="compiled", choices=("compiled", "eager", "auto"))
    parser.add_argument("--repeats", type=_count, default=10)
    parser.add_argument(
        "--threads",
        type=_count,
        default=None,
        help="torch's intra-op threads (default: torch's own); one thread shows whether a step "
        "is bound by a core's arithmetic rather than by memory",
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/speed"))
    args = parser.parse_args(argv)
    names = adamkit.available() if args.optimizers == "all" else args.optimizers.split(",")
    for name in names:
        adamkit.optimizer_class(name)
    sets = set_names(parser, args.sets)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    bandwidth = bandwidth_gbs()
    print(f"memory bandwidth (in-place add, float32): {bandwidth:.1f} GB/s")
    startup = compiler_startup_seconds() if args.backend != "eager" else None
    if startup is not None:
        print(f"torch.compile start-up (once per process): {startup:.2f} s")
    rows: list[dict[str, Any]] = []
    for s in sets:
        rows += measure_set(
            s,
            names,
            args.state_dtype,
            args.state_rounding,
            args.backend,
            args.repeats,
            bandwidth,
            print,
        )
    results = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "bandwidth_gbs": bandwidth,
        "repeats": args.repeats,
        "backend": args.backend,
        "state_dtype": args.state_dtype,
        "state_rounding": args.state_rounding,
        "compiler_startup_s": startup,
        "rows": rows,
    }
    (args.out / "speed.json").write_text(json.dumps(results, indent=2))
    (args.out / "speed.md").write_text(markdown(results))
    print(f"wrote {args.out / 'speed.json'} and {args.out / 'speed.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
