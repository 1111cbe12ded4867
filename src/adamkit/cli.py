"""The ``adamkit`` command line: thin; heavy imports happen inside the subcommands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _list(_args: argparse.Namespace) -> int:
    import adamkit

    for name in adamkit.available():
        cls = adamkit.optimizer_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:22s} {cls.__name__:20s} {summary}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from adamkit.demo import run_demo

    return run_demo(args.optimizers, args.steps, args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adamkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the registered optimizers").set_defaults(func=_list)
    demo = sub.add_parser("demo", help="train a small model with a few optimizers")
    demo.add_argument("--optimizers", default="adamw,adabelief,ademamix,lamb,adamw_schedulefree")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
