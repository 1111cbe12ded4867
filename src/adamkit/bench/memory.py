"""``adamkit memory``: state bytes per parameter of every optimizer under every storage policy,
measured from the state tensors after one step on a GPT-like parameter set."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import adamkit
from adamkit.bench.models import fill_grads, gpt_like_named_shapes, make_named_params

POLICIES: dict[str, dict] = {
    "float32": {"state_dtype": "float32"},
    "bfloat16": {"state_dtype": "bfloat16"},
    "bfloat16+kahan": {"state_dtype": "bfloat16", "state_rounding": "kahan"},
    "float16": {"state_dtype": "float16"},
    "int8": {"state_dtype": "int8"},
}


def state_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(
        v.numel() * v.element_size()
        for state in opt.state.values()
        for v in state.values()
        if torch.is_tensor(v)
    )


def measure(name: str, policy: dict, named: list[tuple[str, torch.Tensor]]) -> float:
    params = [p for _, p in named]
    hyper = {"n_heads": 8} if name == "adam_mini" else {}
    opt = adamkit.create(name, named if name == "adam_mini" else params, **policy, **hyper)
    fill_grads(params)
    opt.step()
    return state_bytes(opt) / sum(p.numel() for p in params)


def memory_table(dim: int, layers: int, vocab: int) -> dict[str, dict[str, float]]:
    shapes = gpt_like_named_shapes(dim=dim, layers=layers, vocab=vocab, context=256)
    table: dict[str, dict[str, float]] = {}
    for name in adamkit.available():
        table[name] = {}
        for label, policy in POLICIES.items():
            named = make_named_params(shapes)
            table[name][label] = measure(name, policy, named)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adamkit memory", description=__doc__)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    table = memory_table(args.dim, args.layers, args.vocab)
    n = sum(
        torch.Size(s).numel()
        for _, s in gpt_like_named_shapes(args.dim, args.layers, args.vocab, 256)
    )
    print(
        f"state bytes per parameter after one step; GPT-like set of {n / 1e6:.2f}M float32 params"
    )
    header = f"{'optimizer':20s}" + "".join(f"{label:>16s}" for label in POLICIES)
    print(header)
    for name, row in table.items():
        print(f"{name:20s}" + "".join(f"{row[label]:16.3f}" for label in POLICIES))
    if args.json:
        args.json.write_text(json.dumps({"params": n, "bytes_per_param": table}, indent=2))
    return 0
