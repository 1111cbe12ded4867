"""A function run on several CPU processes joined in a gloo process group: how
``adamkit speed-sharded`` and the distributed tests start their ranks."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import queue
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

Job = Callable[[int, int, str], Any]


class RankError(RuntimeError):
    """A rank raised (its traceback is in the message), or died or hung without reporting."""


def on_ranks(job: Job, world: int = 2, timeout: float = 600.0, threads: int | None = None) -> Any:
    """``job(rank, world, tmp)`` in ``world`` spawned processes joined in a gloo group (``tmp``
    is a temporary directory they share); rank 0's result. ``job`` must be picklable (a
    module-level function, or a ``functools.partial`` of one). With ``threads``, each rank
    runs that many intra-op threads.

    An exception on a rank is raised here as :class:`RankError` with the rank's traceback. A
    rank that dies without reporting (a native crash; its threads' Python stacks go to
    stderr, by :mod:`faulthandler`) ends the wait at once, since the others would wait in a
    collective until ``timeout``."""
    ctx = torch.multiprocessing.get_context("spawn")
    results = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        rendezvous = os.path.join(tmp, "rendezvous")
        procs = [
            ctx.Process(
                target=_rank_main, args=(job, rank, world, rendezvous, tmp, threads, results)
            )
            for rank in range(world)
        ]
        for proc in procs:
            proc.start()
        outcomes: dict[int, tuple[bool, Any]] = {}
        try:
            outcomes = _reports(results, procs, timeout)
        finally:
            for proc in procs:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.kill()
    if len(outcomes) < world:
        codes = [proc.exitcode for proc in procs]
        raise RankError(
            f"ranks {sorted(set(range(world)) - set(outcomes))} did not report within "
            f"{timeout} s, or died first (exit codes {codes}; negative: a signal; a rank "
            "that crashed printed its threads' Python stacks to stderr)"
        )
    for rank in range(world):
        ok, value = outcomes[rank]
        if not ok:
            raise RankError(f"rank {rank} failed:\n{value}")
    return outcomes[0][1]


def _reports(results: Any, procs: list[Any], timeout: float) -> dict[int, tuple[bool, Any]]:
    """Each rank's (ok, value) as the ranks report them; fewer once ``timeout`` has passed,
    or as soon as a rank has exited without reporting."""
    outcomes: dict[int, tuple[bool, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(outcomes) < len(procs) and time.monotonic() < deadline:
        try:
            rank, ok, value = results.get(timeout=1.0)
            outcomes[rank] = (ok, value)
            continue
        except queue.Empty:
            pass
        if any(not proc.is_alive() and i not in outcomes for i, proc in enumerate(procs)):
            with contextlib.suppress(queue.Empty):  # a report sent just before it exited
                rank, ok, value = results.get(timeout=5.0)
                outcomes[rank] = (ok, value)
                continue
            break
    return outcomes


def _rank_main(
    job: Job,
    rank: int,
    world: int,
    rendezvous: str,
    tmp: str,
    threads: int | None,
    results: Any,
) -> None:
    import torch.distributed as dist

    faulthandler.enable()
    if threads is not None:
        torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        results.put((rank, True, job(rank, world, tmp)))
    except BaseException:  # reported to the parent, which raises
        results.put((rank, False, traceback.format_exc()))
    finally:
        dist.destroy_process_group()
