"""``adamkit speed-sharded``: optimizer step times under FSDP2 on two CPU ranks (gloo), the
compiled path against the eager path.

The parameters of one of ``adamkit speed``'s sets are wrapped in a module, sharded by FSDP2's
``fully_shard`` along their first dimension, and given gradients by one backward pass. For
each optimizer, one instance on the compiled path and one on the eager path step the same
parameters in alternation (A B A B, each step timed on both ranks after a barrier, rank 0's
times reported); step times are medians, and the ratio is the median of each round's ratio.
The first step of the compiled instance (its compiles) is reported separately. Each rank runs
one thread, so the two ranks share the machine's two cores as a two-process job would.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import adamkit
from adamkit.bench.ranks import on_ranks
from adamkit.bench.speed import SETS, make_params, median_ratio, set_names

WORLD = 2
BACKENDS = ("compiled", "eager")


class _Parameters(torch.nn.Module):
    """A set's tensors as one module's parameters; its forward is a loss whose gradient is
    each parameter's given gradient (a sum of ⟨θ, g⟩), so FSDP2's backward hands the
    optimizers sharded gradients as training would."""

    def __init__(self, params: list[torch.Tensor]) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(p.detach().clone()) for p in params
        )
        self.grads = [p.grad for p in params]

    def forward(self) -> torch.Tensor:
        return sum(((w * g).sum() for w, g in zip(self.weights, self.grads, strict=True)))  # type: ignore[return-value]


def _timed(opt: torch.optim.Optimizer) -> float:
    torch.distributed.barrier()
    start = time.perf_counter()
    opt.step()
    return time.perf_counter() - start


def measure(
    set_name: str,
    shapes: list[tuple[str, tuple[int, ...]]],
    names: list[str],
    state_dtype: str | None,
    repeats: int,
) -> list[dict[str, Any]]:
    """On each rank (inside its process group): the rows of every optimizer on the tensors of
    ``shapes`` (the set ``set_name``'s)."""
    from torch.distributed.fsdp import fully_shard

    module = _Parameters(make_params(shapes, torch.float32))
    fully_shard(module)
    module().backward()
    params = list(module.parameters())
    numel = sum(p.numel() for p in params)
    rows = []
    for name in names:
        hyper = {} if state_dtype is None else {"state_dtype": state_dtype}
        opts = {b: adamkit.create(name, params, backend=b, **hyper) for b in BACKENDS}
        first = _timed(opts["compiled"])
        for opt in opts.values():
            for _ in range(2):
                _timed(opt)
        times: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for _ in range(repeats):
            for backend, opt in opts.items():
                times[backend].append(_timed(opt))
        rows.append(
            {
                "set": set_name,
                "optimizer": name,
                "state_dtype": state_dtype or "float32",
                "params": numel,
                "compiled_ms": statistics.median(times["compiled"]) * 1e3,
                "eager_ms": statistics.median(times["eager"]) * 1e3,
                "eager_over_compiled": median_ratio(times["eager"], times["compiled"]),
                "first_step_s": first,
            }
        )
        del opts
    return rows


def _measure_on_rank(args: tuple, rank: int, world: int, tmp: str) -> list[dict[str, Any]]:
    return measure(*args)


def on_two_ranks(args: tuple, timeout: float = 3600.0) -> list[dict[str, Any]]:
    """:func:`measure` with ``args`` on two ranks of one thread each; rank 0's rows
    (:func:`adamkit.bench.ranks.on_ranks`: a failing or crashed rank raises)."""
    return on_ranks(functools.partial(_measure_on_rank, args), WORLD, timeout, threads=1)


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['set']:6s} {r['optimizer']:20s} [{r['state_dtype']}] "
        f"compiled {r['compiled_ms']:8.2f} ms  eager {r['eager_ms']:8.2f} ms  "
        f"eager / compiled x {r['eager_over_compiled']:5.2f}  first {r['first_step_s']:6.2f} s"
    )


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| set | optimizer | state | compiled ms | eager ms | eager / compiled | first step s |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['set']} | {r['optimizer']} | {r['state_dtype']} | {r['compiled_ms']:.2f} | "
        f"{r['eager_ms']:.2f} | {r['eager_over_compiled']:.2f} | {r['first_step_s']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adamkit speed-sharded", description=__doc__)
    parser.add_argument("--optimizers", default="adamw", help="comma-separated names, or 'all'")
    parser.add_argument("--sets", default="gpt", help=f"of {', '.join(SETS)}")
    parser.add_argument("--state-dtype", default=None, help="e.g. bfloat16 (default: float32)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench-results/speed-sharded"))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    names = adamkit.available() if args.optimizers == "all" else args.optimizers.split(",")
    unknown = [n for n in names if n not in adamkit.available()]
    if unknown:
        parser.error(f"--optimizers: unknown {unknown}; registered: {adamkit.available()}")
    rows = []
    for set_name in set_names(parser, args.sets):
        shapes = SETS[set_name]()
        for r in on_two_ranks((set_name, shapes, names, args.state_dtype, args.repeats)):
            print(format_row(r), flush=True)
            rows.append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed-sharded.json").write_text(json.dumps(rows, indent=1))
    (args.out / "speed-sharded.md").write_text(markdown(rows))
    print(f"wrote {args.out}/speed-sharded.json and {args.out}/speed-sharded.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
