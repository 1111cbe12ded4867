"""``adamkit bench``: a fair comparison of optimizers on real tasks, with a report and plots.

Per neural task and optimizer: K learning rates on a grid centred on the optimizer's own
reference lr are tried with the tuning seed; the lr with the lowest validation loss is then run
with S fresh seeds (the same for every optimizer), whose test metrics the report compares.
Runs go to worker processes (one thread each); a line is printed per finished run, and Ctrl-C
writes the report of what finished.
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import adamkit
from adamkit.bench.protocol import Protocol, reference_lr, select_lr
from adamkit.bench.runner import RunSpec, execute
from adamkit.bench.tasks import NEURAL, TOYS

DEFAULT_OPTIMIZERS = (
    "adamw",
    "adam",
    "radam",
    "adabelief",
    "ademamix",
    "lamb",
    "adamw_schedulefree",
    "adam_mini",
)
ALL_TASKS = (*NEURAL, *TOYS)
REPRODUCTION_STEPS = 100_000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="adamkit bench", description=__doc__)
    parser.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_OPTIMIZERS),
        help="names, comma-separated, or 'all'",
    )
    parser.add_argument("--tasks", default=",".join(ALL_TASKS), help=f"of {', '.join(ALL_TASKS)}")
    parser.add_argument("--seeds", default="3", help="number of final seeds S (>= 3), or a list")
    parser.add_argument("--steps", type=int, help="step budget T of every neural task")
    parser.add_argument(
        "--lr", type=float, help="a fixed learning rate for every optimizer (no tuning)"
    )
    parser.add_argument("--lr-grid", type=int, default=5, help="K learning rates per grid")
    parser.add_argument("--lr-spacing", type=float, default=0.5, help="decades between grid points")
    parser.add_argument("--out", type=Path, default=Path("adamkit-report"), help="report folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (0: run in this process)",
    )
    parser.add_argument("--full", action="store_true", help="longer runs (the tasks' full budgets)")
    parser.add_argument(
        "--reproduction-steps",
        type=int,
        default=REPRODUCTION_STEPS,
        help="steps of the AdEMAMix Rosenbrock reproduction (0 skips it)",
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("OLD", "NEW"), type=Path, help="compare two results.json"
    )
    return parser.parse_args(argv)


def names_or_exit(given: str, known: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [n.strip() for n in given.split(",") if n.strip()]
    if names == ["all"]:
        return list(known)
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            raise SystemExit(
                f"adamkit bench: unknown {what} {name!r}{hint} Known: {', '.join(known)}"
            )
    return names


def seeds_from(given: str, tuning: tuple[int, ...]) -> tuple[int, ...]:
    seeds = (
        tuple(int(s) for s in given.split(",")) if "," in given else tuple(range(1, 1 + int(given)))
    )
    if len(seeds) < 3:
        raise SystemExit(
            "adamkit bench: --seeds needs at least 3 final seeds (the protocol's S >= 3)"
        )
    if set(seeds) & set(tuning):
        raise SystemExit(f"adamkit bench: final seeds must differ from the tuning seed(s) {tuning}")
    return seeds


def check_device(device: str) -> None:
    """Fail before any training on a device this machine does not have."""
    import torch

    try:
        torch.empty(1, device=device)
    except (RuntimeError, AssertionError) as err:
        raise SystemExit(f"adamkit bench: cannot use --device {device!r}: {err}") from None


def check_writable(out: Path) -> None:
    """Fail before any training if the report folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".adamkit-write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise SystemExit(f"adamkit bench: cannot write the report folder {out}: {err}") from None


class InProcess:
    """``--workers 0``: run every job in this process, one after the other (for debugging)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except BaseException as err:  # handed to the caller through the future
            future.set_exception(err)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Nothing to stop."""


class Progress:
    """A progress bar (tqdm when installed) and one line per finished run."""

    def __init__(self, total: int) -> None:
        try:
            from tqdm import tqdm

            self.bar: Any = tqdm(total=total, unit="run", dynamic_ncols=True, file=sys.stderr)
        except ImportError:  # pragma: no cover - the bench extra installs tqdm
            self.bar = None
        self.done = 0
        self.total = total

    def line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def advance(self, more_total: int = 0) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.total += more_total
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def describe_run(record: dict[str, Any]) -> str:
    if record.get("kind") == "toy":
        return (
            f"toy   {record['task']:11s} {record['optimizer']:20s} lr={record['lr']:.3g}  "
            f"final f={record['final_value']:.3g}"
        )
    if record.get("kind") == "reproduction":
        held = sum(bool(c.get("held")) for c in record["checks"])
        return (
            f"repro AdEMAMix Rosenbrock (optax setup): {held}/{len(record['checks'])} checks held"
        )
    metric = NEURAL[record["task"]].metric
    test = f"  test_{metric}={record[f'test_{metric}']:.4f}" if f"test_{metric}" in record else ""
    status = "diverged" if record["diverged"] else f"val_loss={record['val_loss']:.4f}"
    return (
        f"{record['role']:5s} {record['task']:11s} {record['optimizer']:20s} lr={record['lr']:.3g} "
        f"seed={record['seed']}  {status}{test}  {record['wall_seconds']:.1f}s"
    )


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _terminate_as_interrupt() -> Any:
    """SIGTERM (``kill``, a job scheduler's stop) handled like Ctrl-C while the runs go on: the
    report of the runs that finished is written and the workers are shut down, instead of the
    process dying with its workers left behind. The previous handler, to restore; None where
    handlers cannot be set (not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def run_bench(args: argparse.Namespace, log: Callable[[str], None] = print) -> Path:
    optimizers = names_or_exit(args.optimizers, adamkit.available(), "optimizer")
    tasks = names_or_exit(args.tasks, list(ALL_TASKS), "task")
    protocol = Protocol(grid_points=1 if args.lr else args.lr_grid, grid_spacing=args.lr_spacing)
    protocol = Protocol(
        grid_points=protocol.grid_points,
        grid_spacing=protocol.grid_spacing,
        final_seeds=seeds_from(args.seeds, protocol.tuning_seeds),
    )
    check_device(args.device)
    check_writable(args.out)
    neural = [t for t in tasks if t in NEURAL]
    toys = [t for t in tasks if t in TOYS]
    steps = {
        t: args.steps or (NEURAL[t].full_steps if args.full else NEURAL[t].steps) for t in neural
    }
    grids = {
        t: {
            o: [args.lr] if args.lr else protocol.grid(reference_lr(o) * NEURAL[t].lr_scale)
            for o in optimizers
        }
        for t in neural
    }

    jobs: list[tuple[str, Any]] = []
    reproduce = "rosenbrock" in toys and args.reproduction_steps > 0
    if reproduce:
        jobs.append(("reproduction", args.reproduction_steps))
    for task in neural:
        eval_every = min(NEURAL[task].eval_every, steps[task])
        for o in optimizers:
            for lr in grids[task][o]:
                for seed in protocol.tuning_seeds:
                    jobs.append(
                        (
                            "neural",
                            RunSpec(
                                task, o, lr, seed, "tune", steps[task], eval_every, args.device
                            ),
                        )
                    )
    for toy in toys:
        for o in optimizers:
            for lr in protocol.toy_grid:
                jobs.append(("toy", (toy, o, lr)))
    finals_per_cell = len(protocol.final_seeds)
    progress = Progress(len(jobs) + finals_per_cell * len(neural) * len(optimizers))
    records: list[dict[str, Any]] = []
    tuning_left = {
        (t, o): len(grids[t][o]) * len(protocol.tuning_seeds) for t in neural for o in optimizers
    }
    started = time.perf_counter()
    interrupted = False
    pool: Any = (
        InProcess()
        if args.workers == 0
        else ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn"))
    )
    previous_handler = _terminate_as_interrupt()
    pending: dict[Future, tuple[str, Any]] = {pool.submit(execute, job): job for job in jobs}
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in [f for f in pending if f in done]:  # in submission order
                kind, _ = pending.pop(future)
                record = future.result()
                record["kind"] = kind
                records.append(record)
                progress.line(describe_run(record))
                progress.advance()
                if kind == "neural" and record["role"] == "tune":
                    cell = (record["task"], record["optimizer"])
                    tuning_left[cell] -= 1
                    if tuning_left[cell] == 0:
                        tuned = [
                            r
                            for r in records
                            if r.get("kind") == "neural"
                            and r["role"] == "tune"
                            and (r["task"], r["optimizer"]) == cell
                        ]
                        lr, _ = select_lr(tuned, grids[cell[0]][cell[1]])
                        for seed in protocol.final_seeds:
                            spec = RunSpec(
                                cell[0],
                                cell[1],
                                lr,
                                seed,
                                "final",
                                steps[cell[0]],
                                min(NEURAL[cell[0]].eval_every, steps[cell[0]]),
                                args.device,
                            )
                            pending[pool.submit(execute, ("neural", spec))] = ("neural", spec)
    except KeyboardInterrupt:
        interrupted = True
        progress.line("interrupted: writing the report of the runs that finished")
        pool.shutdown(wait=False, cancel_futures=True)
    else:
        pool.shutdown()
    finally:
        if previous_handler is not None:
            signal.signal(signal.SIGTERM, previous_handler)
    progress.close()
    from adamkit.bench.report import write_report

    meta = {
        "optimizers": optimizers,
        "tasks": tasks,
        "steps": steps,
        "grids": grids,
        "protocol": {
            "grid_points": protocol.grid_points,
            "grid_spacing_decades": protocol.grid_spacing,
            "tuning_seeds": list(protocol.tuning_seeds),
            "final_seeds": list(protocol.final_seeds),
            "toy_grid": list(protocol.toy_grid),
            "fixed_lr": args.lr,
        },
        "full": args.full,
        "interrupted": interrupted,
        "wall_seconds": time.perf_counter() - started,
        "workers": args.workers,
        "device": args.device,
        "command": " ".join(["adamkit", "bench", *sys.argv[2:]])
        if sys.argv[1:2] == ["bench"]
        else "adamkit bench",
    }
    return write_report(args.out, records, meta, log)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.compare:
        from adamkit.bench.compare import compare

        print(compare(*args.compare))
        return 0
    out = run_bench(args)
    print(f"report: {out / 'report.md'}, {out / 'report.html'}, {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
