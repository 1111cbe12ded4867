"""Every optimizer under PyTorch's own distributed engines, on two CPU ranks with gloo.

* FSDP2 (``fully_shard``: DTensor parameters, sharded along their first dimension with uneven
  shards, or along their second): the same parameters and state as one unsharded process, to
  float64 rounding; with 16-bit state, the same rounded bits (stochastic rounding numbers each
  element by its place in the whole tensor, whatever the sharding); on the eager path, and on
  the compiled path, which steps element-wise rules' row shards in compiled calls.
* Distributed checkpoints (``torch.distributed.checkpoint`` with ``get_state_dict`` and
  ``set_state_dict``): a run resumed from one equals the run that was not interrupted, bit
  for bit; on the compiled path too, loaded into the optimizer that wrote it.
* DDP and ``ZeroRedundancyOptimizer`` (each rank steps its own share of the parameters): the
  same parameters as one process on the whole batch.
* 8-bit state, whose blocks span the whole tensor, is refused for sharded parameters with a
  clear error, at construction and at a step, and a refused step changes nothing.

Each test starts two processes (:func:`run_on_two_ranks`) that run every optimizer in turn;
the unsharded references run in the test's own process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import adamkit
from adamkit.bench.ranks import RankError, on_ranks
from adamkit.core import compiled

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

WORLD = 2
NAMES = adamkit.available()
STEPS = 4
# (name, hyperparameters) of the FSDP2 runs; "shard" says how FSDP2 shards the matrices.
FSDP_CONFIGS: dict[str, dict[str, Any]] = {
    "float64": {"shard": 0, "hyper": {}},
    "float64, matrices sharded by columns": {"shard": 1, "hyper": {}},
    "bfloat16 state": {"shard": 0, "hyper": {"state_dtype": "bfloat16"}},
    "bfloat16 Kahan state, by columns": {
        "shard": 1,
        "hyper": {"state_dtype": "bfloat16", "state_rounding": "kahan"},
    },
    "scaled float16 state": {"shard": 0, "hyper": {"state_dtype": "float16"}},
}
RESULT_TIMEOUT = 600  # seconds to wait for the ranks' results


# ---------------------------------------------------------------- the model and its data


def model() -> torch.nn.Module:
    """Three layers: the second's one row (and bias) leaves the second rank nothing, the
    third's 5 rows split unevenly."""
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1), torch.nn.Linear(1, 5)
    ).double()


def by_columns(p: torch.Tensor, shard_dim: int) -> bool:
    """Whether FSDP2 shards ``p`` by columns (it splits columns evenly only)."""
    return shard_dim == 1 and p.ndim == 2 and p.shape[1] % WORLD == 0


def batch(step: int, rank: int = 0, world: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's equal share of step ``step``'s batch of 16."""
    gen = torch.Generator().manual_seed(100 + step)
    x = torch.randn(16, 6, generator=gen, dtype=torch.float64)
    y = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    return x.chunk(world)[rank], y.chunk(world)[rank]


def train(
    net: torch.nn.Module, opt: torch.optim.Optimizer, steps: range, rank: int = 0, world: int = 1
) -> None:
    for step in steps:
        x, y = batch(step, rank, world)
        loss = ((net(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def whole(t: Any) -> torch.Tensor:
    """A (possibly sharded) tensor as a whole plain tensor."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def snapshot(net: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, list]:
    """Parameters and every state tensor, whole, as nested lists (which pickle between
    processes without shared memory); 16-bit state as its exact float64 values."""
    out: dict[str, list] = {}
    for i, (name, p) in enumerate(net.named_parameters()):
        out[name] = whole(p.detach()).tolist()
        for key, value in opt.state[p].items():
            if torch.is_tensor(value):
                out[f"{i}.{key}"] = whole(value).to(torch.float64).tolist()
    return out


def no_merging() -> contextlib.AbstractContextManager:
    """Small tensors stepped one by one: merged ones draw their random bits per flat buffer,
    which sharded tensors (never merged) do not."""
    return _patched(compiled, "MERGE_NUMEL", 0)


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


# ---------------------------------------------------------------- two ranks


def run_on_two_ranks(job: Callable[[int, int, str], Any]) -> Any:
    """``job(rank, world, tmp)`` on two gloo ranks (:func:`adamkit.bench.ranks.on_ranks`);
    rank 0's result. A rank's exception, crash or silence fails the test with its reason."""
    try:
        return on_ranks(job, WORLD, RESULT_TIMEOUT)
    except RankError as failed:
        raise AssertionError(str(failed)) from None


# ---------------------------------------------------------------- FSDP2


def sharded_model(shard_dim: int) -> torch.nn.Module:
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import Shard

    def placement(p: torch.nn.Parameter) -> Shard | None:
        return Shard(1) if by_columns(p, shard_dim) else None

    net = model()
    for layer in net:
        if isinstance(layer, torch.nn.Linear):
            fully_shard(layer, shard_placement_fn=placement)
    fully_shard(net, shard_placement_fn=placement)
    return net


def fsdp_job(rank: int, world: int, tmp: str) -> dict[tuple[str, str], Any]:
    """Per configuration and optimizer: the parameters and state after ``STEPS`` steps, and
    how many tensor steps ran on local shards (``execute.local_shards`` found them)."""
    from adamkit.core import execute

    found = execute.local_shards
    local_steps = [0]

    def counted(tensors: dict[str, Any]) -> Any:
        shards = found(tensors)
        local_steps[0] += shards is not None
        return shards

    out: dict[tuple[str, str], Any] = {}
    with no_merging(), _patched(execute, "local_shards", counted):
        for config, spec in FSDP_CONFIGS.items():
            for name in NAMES:
                local_steps[0] = 0
                net = sharded_model(spec["shard"])
                opt = adamkit.create(name, net.parameters(), **spec["hyper"])
                train(net, opt, range(STEPS), rank, world)
                out[(config, name)] = snapshot(net, opt)
                out[(config, name, "local steps")] = local_steps[0]
    return out


def unsharded(name: str, hyper: dict[str, Any]) -> dict[str, list]:
    with no_merging():
        net = model()
        opt = adamkit.create(name, net.parameters(), backend="eager", **hyper)
        train(net, opt, range(STEPS))
        return snapshot(net, opt)


def mismatch(got: dict[str, list], want: dict[str, list]) -> str | None:
    """Why ``got`` differs from ``want`` beyond float64 rounding (16-bit state values must
    match exactly, which that tolerance implies), or None."""
    if got.keys() != want.keys():
        return f"entries {sorted(got)} != {sorted(want)}"
    for key in want:
        a = torch.tensor(got[key], dtype=torch.float64)
        b = torch.tensor(want[key], dtype=torch.float64)
        if not torch.allclose(a, b, rtol=1e-12, atol=1e-14):
            return f"{key}: largest difference {(a - b).abs().max().item():.3g}"
    return None


# One test per engine, each optimizer and configuration checked in it: the two ranks then run
# once per engine, whichever pytest-xdist worker takes the test.


def test_fsdp2_steps_equal_the_unsharded_steps() -> None:
    runs = run_on_two_ranks(fsdp_job)
    failures = []
    for config, spec in FSDP_CONFIGS.items():
        for name in NAMES:
            why = mismatch(runs[(config, name)], unsharded(name, spec["hyper"]))
            if why:
                failures.append(f"{name} ({config}): {why}")
    assert not failures, "\n".join(failures)
    # Rules element-wise on a tensor, or coupled only through per-tensor reductions (summed
    # across the ranks), step its row shards locally (4 steps each); a column shard is not a
    # run of the whole tensor's elements. Other rules step the DTensors.
    for config, spec in FSDP_CONFIGS.items():
        if spec["hyper"]:
            continue
        for name in NAMES:
            cls = adamkit.optimizer_class(name)
            per_tensor = cls.segmentable and not cls.shaped
            local = [
                cls.elementwise or per_tensor or (p.ndim == 1 and cls.vectors_elementwise)
                for p in model().parameters()
                if not by_columns(p, spec["shard"])
            ]
            assert runs[(config, name, "local steps")] == STEPS * sum(local), (config, name)


# Rules the compiled FSDP2 run takes: element-wise ones (stepped by compiled calls on each
# rank's local parts), one element-wise on vectors only (Adam with gradient centralization),
# and one with per-tensor reductions summed across the ranks (stepped eagerly, in one order
# on every rank). With each, how many compiled tensor steps rank 0 takes per configuration:
# its parts have 24, 4, 8, 1, 3 and 3 elements (a part of 1 element is stepped eagerly:
# Dynamo specialises sizes of 1), and the two matrices sharded by columns (the first two)
# are not runs of their elements.
COMPILED_RUNS: dict[str, dict[str, int]] = {
    "adamw": {"float64": 5, "bfloat16 state": 5, "bfloat16 Kahan state, by columns": 3},
    "sadam": {"float64": 5, "bfloat16 state": 5, "bfloat16 Kahan state, by columns": 3},
    "ademamix": {"float64": 5, "bfloat16 state": 5, "bfloat16 Kahan state, by columns": 3},
    "adam_gc": {"float64": 2, "bfloat16 state": 2, "bfloat16 Kahan state, by columns": 2},
    "lamb": {"float64": 0, "bfloat16 state": 0, "bfloat16 Kahan state, by columns": 0},
}


def compiled_fsdp_job(rank: int, world: int, tmp: str) -> dict[tuple[str, ...], Any]:
    """Per configuration and optimizer of ``COMPILED_RUNS``, on the compiled path: the
    parameters and state after ``STEPS`` steps, and how many tensor steps compiled calls took
    on local parts."""
    counted: list[int] = [0]
    run = compiled.Chunk.run

    def counting(self: compiled.Chunk, config: Any, scalars: Any) -> None:
        counted[0] += sum(job.plan.sharded for job in self.jobs)
        run(self, config, scalars)

    out: dict[tuple[str, ...], Any] = {}
    with no_merging(), _patched(compiled.Chunk, "run", counting):
        for name, configs in COMPILED_RUNS.items():
            for config in configs:
                spec = FSDP_CONFIGS[config]
                counted[0] = 0
                net = sharded_model(spec["shard"])
                opt = adamkit.create(name, net.parameters(), backend="compiled", **spec["hyper"])
                train(net, opt, range(STEPS), rank, world)
                out[(config, name)] = snapshot(net, opt)
                out[(config, name, "compiled steps")] = counted[0]
    return out


def test_fsdp2_steps_on_the_compiled_path_equal_the_unsharded_steps() -> None:
    runs = run_on_two_ranks(compiled_fsdp_job)
    failures = []
    for name, configs in COMPILED_RUNS.items():
        for config, parts in configs.items():
            why = mismatch(runs[(config, name)], unsharded(name, FSDP_CONFIGS[config]["hyper"]))
            if why:
                failures.append(f"{name} ({config}): {why}")
            if runs[(config, name, "compiled steps")] != STEPS * parts:
                failures.append(
                    f"{name} ({config}): {runs[(config, name, 'compiled steps')]} compiled "
                    f"steps of local parts on rank 0, not {STEPS * parts}"
                )
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- distributed checkpoints

CHECKPOINT_CONFIGS: dict[str, dict[str, Any]] = {
    "float64": {"hyper": {}, "names": NAMES},
    "bfloat16 state": {"hyper": {"state_dtype": "bfloat16"}, "names": NAMES},
    # The compiled path keeps each tensor's plan and its local parts from step to step: the
    # checkpoint is loaded into the optimizer that wrote it, after two more steps.
    "bfloat16 state, compiled, loaded into itself": {
        "hyper": {"state_dtype": "bfloat16", "backend": "compiled"},
        "names": ("adamw", "sadam", "lamb"),
        "into itself": True,
    },
}


def checkpoint_job(rank: int, world: int, tmp: str) -> dict[tuple[str, str], tuple[list, list]]:
    """Per optimizer: 6 steps straight, and 3 steps, a checkpoint, a fresh model and
    optimizer (or, ``"into itself"``, the same ones after two more steps) loaded from it, 3
    more steps; both runs' parameters and state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    out = {}
    for config, spec in CHECKPOINT_CONFIGS.items():
        for name in spec["names"]:

            def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
                net = sharded_model(0)
                return net, adamkit.create(name, net.parameters(), **spec["hyper"])  # noqa: B023

            net, opt = fresh()
            train(net, opt, range(6), rank, world)
            straight = snapshot(net, opt)
            net, opt = fresh()
            train(net, opt, range(3), rank, world)
            path = os.path.join(tmp, f"{config}-{name}")
            model_sd, optim_sd = get_state_dict(net, opt)
            dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)
            if spec.get("into itself"):
                train(net, opt, range(3, 5), rank, world)
            else:
                net, opt = fresh()
            model_sd, optim_sd = get_state_dict(net, opt)
            loaded = {"model": model_sd, "optim": optim_sd}
            dcp.load(loaded, checkpoint_id=path)
            set_state_dict(
                net, opt, model_state_dict=loaded["model"], optim_state_dict=loaded["optim"]
            )
            train(net, opt, range(3, 6), rank, world)
            out[(config, name)] = (straight, snapshot(net, opt))
    return out


def test_a_run_resumed_from_a_distributed_checkpoint_is_bit_identical() -> None:
    runs = run_on_two_ranks(checkpoint_job)
    failures = [
        f"{name} ({config})"
        for config, spec in CHECKPOINT_CONFIGS.items()
        for name in spec["names"]
        if runs[(config, name)][0] != runs[(config, name)][1]
    ]
    assert not failures, f"resumed runs differ: {failures}"


# ---------------------------------------------------------------- DDP and ZeRO


def replicated_job(rank: int, world: int, tmp: str) -> dict[tuple[str, str], dict[str, list]]:
    """Per optimizer: 5 steps under DDP, and under ZeroRedundancyOptimizer (which builds one
    adamkit optimizer per rank over that rank's share of the parameters) with DDP."""
    from torch.distributed.optim import ZeroRedundancyOptimizer
    from torch.nn.parallel import DistributedDataParallel

    out = {}
    for name in NAMES:
        net = model()
        train(
            DistributedDataParallel(net),
            adamkit.create(name, net.parameters()),
            range(5),
            rank,
            world,
        )
        out[("ddp", name)] = {k: v.tolist() for k, v in net.state_dict().items()}
        net = model()
        zero = ZeroRedundancyOptimizer(
            net.parameters(), optimizer_class=adamkit.optimizer_class(name)
        )
        train(DistributedDataParallel(net), zero, range(5), rank, world)
        zero.consolidate_state_dict(to=0)  # gathers every rank's adamkit state_dict
        out[("zero", name)] = {k: v.tolist() for k, v in net.state_dict().items()}
    return out


def test_ddp_and_zero_steps_equal_one_process_on_the_whole_batch() -> None:
    runs = run_on_two_ranks(replicated_job)
    failures = []
    for name in NAMES:
        net = model()
        train(net, adamkit.create(name, net.parameters()), range(5))
        want = {k: v.tolist() for k, v in net.state_dict().items()}
        for engine in ("ddp", "zero"):
            why = mismatch(runs[(engine, name)], want)
            if why:
                failures.append(f"{name} ({engine}): {why}")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- 8-bit state refused


def int8_job(rank: int, world: int, tmp: str) -> dict[str, Any]:
    """The refusals of 8-bit state for sharded parameters, and what a refused step left."""
    out: dict[str, Any] = {}
    net = sharded_model(0)
    try:
        adamkit.AdamW(net.parameters(), state_dtype="int8")
    except adamkit.HyperparameterError as err:
        out["construction"] = str(err)
    opt = adamkit.AdamW(net.parameters())
    train(net, opt, range(2), rank, world)
    before = snapshot(net, opt)
    try:
        opt.add_param_group({"params": [torch.nn.Parameter(torch.ones(3))], "state_dtype": "int8"})
        extra = sharded_model(0)
        opt.add_param_group({"params": list(extra.parameters()), "state_dtype": "int8"})
    except adamkit.HyperparameterError as err:
        out["add_param_group"] = str(err)
    out["groups"] = len(opt.param_groups)
    opt.param_groups[0]["state_dtype"] = "int8"
    x, y = batch(2, rank, world)
    opt.zero_grad()
    ((net(x) - y) ** 2).mean().backward()
    try:
        opt.step()
    except adamkit.HyperparameterError as err:
        out["step"] = str(err)
    out["unchanged"] = snapshot(net, opt) == before
    return out


def test_8bit_state_is_refused_for_sharded_parameters_before_anything_changes() -> None:
    out = run_on_two_ranks(int8_job)
    for where in ("construction", "add_param_group", "step"):
        message = out[where]
        assert "state_dtype='int8'" in message and "DTensor" in message, (where, message)
        assert "'bfloat16'" in message, (where, message)
    assert "param group 0" in out["construction"] and "param group 2" in out["add_param_group"]
    assert out["groups"] == 2  # the plain group was added, the sharded one refused
    assert out["unchanged"]
