"""``python -m adamkit.bench.adjustments``: what each optional adjustment of inductor's code
generation (:data:`adamkit.core.codegen.ADJUSTMENTS`) is worth on this machine.

For every optimizer and every adjustment named, two instances step copies of the same
parameters in one process: one compiled as adamkit compiles, one compiled with that adjustment
left out (:func:`~adamkit.core.codegen.adjustments_left_out`, its own configurations and its
own keys in inductor's caches). They are timed in rounds with torch's fused AdamW (A B C A B
C ...), so the machine's drifts hit all three alike; the ratio reported is the median over
rounds of the step time without the adjustment over the time with it (above 1: the adjustment
pays here). Comparing two processes instead is at the mercy of the memory traffic, whose
phases moved fused AdamW's step by a third on the Zen 3 of session 16.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

import adamkit
from adamkit.bench.speed import (
    SETS,
    _count,
    clone_params,
    interleaved,
    make_params,
    median_ratio,
    set_names,
    warm_up,
)
from adamkit.core import codegen, compiled, graphs

OPTIONAL = tuple(dict.fromkeys(a.name for a in codegen.ADJUSTMENTS if a.optional))


@contextlib.contextmanager
def compiled_apart(left_out: str) -> Iterator[None]:
    """Configurations compiled inside are new ones, without ``left_out``; those compiled
    before (and after) are untouched. AOTAutograd's cache is off inside, so that nothing
    compiled with every adjustment is served from it."""
    import torch._functorch.config as functorch_config

    previous = compiled.CONFIGURATIONS
    compiled.CONFIGURATIONS = graphs.Configurations()
    try:
        with (
            codegen.adjustments_left_out([left_out]),
            functorch_config.patch(enable_autograd_cache=False),
        ):
            yield
    finally:
        compiled.CONFIGURATIONS = previous


def measure(
    set_name: str, name: str, left_out: str, state_dtype: str | None, repeats: int
) -> dict[str, Any]:
    """One row: ``name`` on ``set_name`` with and without ``left_out``, against fused AdamW."""
    params = make_params(SETS[set_name](), torch.float32)
    options: dict[str, Any] = {"backend": "compiled"}
    if state_dtype is not None:
        options["state_dtype"] = getattr(torch, state_dtype)
    kept = adamkit.create(name, clone_params(params), **options)
    warm_up(kept)
    with compiled_apart(left_out):
        without = adamkit.create(name, clone_params(params), **options)
        warm_up(without)
    fused = torch.optim.AdamW(params, fused=True)
    fused.step()
    with_times, without_times, fused_times = interleaved(
        [kept.step, without.step, fused.step], repeats
    )
    return {
        "set": set_name,
        "optimizer": name,
        "left_out": left_out,
        "state_dtype": state_dtype,
        "with_ms": statistics.median(with_times) * 1e3,
        "without_ms": statistics.median(without_times) * 1e3,
        "fused_ms": statistics.median(fused_times) * 1e3,
        "without_over_with": median_ratio(without_times, with_times),
    }


def format_row(r: dict[str, Any]) -> str:
    return (
        f"{r['set']:<6} {r['optimizer']:<18} without {r['left_out']:<33} "
        f"{r['without_ms']:8.2f} ms, with {r['with_ms']:8.2f} ms: x{r['without_over_with']:.3f}"
        f"  (fused AdamW {r['fused_ms']:.2f} ms)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adamkit.bench.adjustments", description=__doc__
    )
    parser.add_argument("--optimizers", default="adamw", help="comma-separated names")
    parser.add_argument("--without", default=",".join(OPTIONAL), help="adjustments, one at a time")
    parser.add_argument("--sets", default="gpt", help=f"of {', '.join(SETS)}")
    parser.add_argument("--state-dtype", default=None, help="e.g. bfloat16 (default: float32)")
    parser.add_argument("--repeats", type=_count, default=15)
    parser.add_argument("--out", type=Path, default=Path("bench-results/adjustments"))
    args = parser.parse_args(argv)
    names = args.optimizers.split(",")
    for name in names:
        adamkit.optimizer_class(name)
    left_out = args.without.split(",")
    for adjustment in left_out:
        if adjustment not in OPTIONAL:
            parser.error(f"unknown adjustment {adjustment!r}; choose from {', '.join(OPTIONAL)}")
    sets = set_names(parser, args.sets)
    rows = []
    for s in sets:
        for name in names:
            for adjustment in left_out:
                rows.append(measure(s, name, adjustment, args.state_dtype, args.repeats))
                print(format_row(rows[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(), "rows": rows}
    (args.out / "adjustments.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out / 'adjustments.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
