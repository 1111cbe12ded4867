"""The ``adamkit`` command line: thin; each subcommand imports what it needs when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _list(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="adamkit list", description="list the optimizers").parse_args(argv)
    import adamkit

    for name in adamkit.available():
        cls = adamkit.optimizer_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:22s} {cls.__name__:20s} {summary}")
    return 0


def _demo(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="adamkit demo", description="a one-minute demo")
    parser.add_argument("--optimizers", default="adamw,adabelief,ademamix,lamb,adamw_schedulefree")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from adamkit.demo import run_demo

    return run_demo(args.optimizers, args.steps, args.seed)


def _memory(argv: list[str]) -> int:
    from adamkit.bench.memory import main

    return main(argv)


def _speed(argv: list[str]) -> int:
    from adamkit.bench.speed import main

    return main(argv)


def _speed_sharded(argv: list[str]) -> int:
    from adamkit.bench.sharded import main

    return main(argv)


def _bench(argv: list[str]) -> int:
    from adamkit.bench.main import main

    return main(argv)


COMMANDS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "bench": (_bench, "compare optimizers on real tasks; writes a report with tables and plots"),
    "list": (_list, "list the registered optimizers"),
    "demo": (_demo, "train a small model with a few optimizers"),
    "memory": (_memory, "state bytes per parameter of every optimizer x storage policy"),
    "speed": (_speed, "step time of every optimizer against torch's fused AdamW"),
    "speed-sharded": (_speed_sharded, "FSDP2 step time on two CPU ranks, compiled against eager"),
}


def usage() -> str:
    lines = ["usage: adamkit <command> [options]", "", "commands:"]
    lines += [f"  {name:13s} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "adamkit <command> --help shows a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command = COMMANDS.get(args[0])
    if command is None:
        import difflib

        close = difflib.get_close_matches(args[0], COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"adamkit: unknown command {args[0]!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    return int(command[0](args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
