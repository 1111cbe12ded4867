"""One training run of the benchmark, and the protocol by which optimizers get training signals.

The signal protocol (the same for every optimizer, decided from what the optimizer offers):

* Optimizers with ``train()``/``eval()`` (schedule-free) are put in train mode before training
  steps and in eval mode for every evaluation and at the end; BatchNorm statistics are then
  re-estimated at the evaluation point before evaluating.
* Optimizers whose ``step`` accepts ``loss``, ``val_loss`` or ``max_steps`` (the Ref family)
  get: the minibatch loss of the step, the validation loss of the evaluation made since the
  previous step (else ``None``), and the step budget T.
* Every other optimizer gets plain ``step()``.

Schedules: scheduled optimizers get a linear warm-up over the first 5 % of T and a cosine decay
to 0 at T (``torch.optim.lr_scheduler.LambdaLR``); schedule-free optimizers get the same warm-up
(their ``warmup_steps``) and no decay.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

import adamkit
from adamkit.bench.tasks import NEURAL, TOYS
from adamkit.groups import param_groups_weight_decay

WARMUP_FRACTION = 0.05


@dataclass(frozen=True)
class RunSpec:
    task: str
    optimizer: str
    lr: float
    seed: int
    role: str  # "tune" (validation only) or "final" (validation and test)
    steps: int
    eval_every: int
    device: str = "cpu"
    weight_decay: float | None = None  # None: the optimizer's default

    def label(self) -> str:
        return f"{self.task} {self.optimizer} lr={self.lr:.3g} seed={self.seed} ({self.role})"


def is_schedule_free(opt: torch.optim.Optimizer) -> bool:
    return hasattr(opt, "train") and hasattr(opt, "eval") and callable(opt.eval)


class Signals:
    """Delivers the training signals an optimizer accepts (see the module docstring)."""

    def __init__(self, opt: torch.optim.Optimizer, steps: int) -> None:
        accepted = inspect.signature(opt.step).parameters
        self.opt = opt
        self.steps = steps
        self.wants = {name for name in ("loss", "val_loss", "max_steps") if name in accepted}
        self.pending_val: float | None = None

    def step(self, loss: float) -> None:
        kwargs: dict[str, Any] = {}
        if "loss" in self.wants:
            kwargs["loss"] = loss
        if "val_loss" in self.wants:
            kwargs["val_loss"] = self.pending_val
        if "max_steps" in self.wants:
            kwargs["max_steps"] = self.steps
        self.pending_val = None
        self.opt.step(**kwargs)

    def validated(self, val_loss: float) -> None:
        self.pending_val = val_loss


def make_optimizer(spec: RunSpec, model: torch.nn.Module) -> torch.optim.Optimizer:
    cls = adamkit.optimizer_class(spec.optimizer)
    declared = cls.declared_hypers()
    hyper: dict[str, Any] = {"lr": spec.lr}
    if "warmup_steps" in declared:
        hyper["warmup_steps"] = max(1, int(WARMUP_FRACTION * spec.steps))
    named = spec.optimizer == "adam_mini"
    if named:
        heads = [m.heads for m in model.modules() if hasattr(m, "heads")]
        if heads:
            hyper["n_heads"] = heads[0]
    if "weight_decay" in declared:
        wd = declared["weight_decay"].default if spec.weight_decay is None else spec.weight_decay
        params: Any = param_groups_weight_decay(model, wd, named=named)
    else:
        params = list(model.named_parameters()) if named else list(model.parameters())
    return adamkit.create(spec.optimizer, params, **hyper)


def lr_factor(step: int, steps: int) -> float:
    """Linear warm-up over the first 5 % of the steps, then cosine decay to 0 at ``steps``."""
    warmup = max(1, int(WARMUP_FRACTION * steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def run_neural(spec: RunSpec) -> dict[str, Any]:
    """Train one model; returns the run's record (curves, metrics, timing)."""
    task = NEURAL[spec.task]
    device = torch.device(spec.device)
    model = task.model(spec.seed).to(device)
    batches = task.batches(spec.seed)

    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batches()
        return x.to(device), y.to(device)

    opt = make_optimizer(spec, model)
    free = is_schedule_free(opt)
    sched = (
        None if free else torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, spec.steps))
    )
    signals = Signals(opt, spec.steps)
    curve: dict[str, list[float]] = {
        "step": [],
        "val_loss": [],
        f"val_{task.metric}": [],
        "train_loss": [],
        "seconds": [],
    }
    step_times: list[float] = []
    train_seconds = 0.0
    diverged = False
    reached: tuple[int, float] | None = None
    running = math.nan
    wall = time.perf_counter()

    def evaluate(split: str) -> dict[str, float]:
        if free:
            opt.eval()
            task.recompute_batchnorm(model, spec.seed)
        metrics = task.evaluate(model, split)
        if free:
            opt.train()
        return metrics

    for step in range(spec.steps):
        started = time.perf_counter()
        x, y = draw()
        opt.zero_grad(set_to_none=True)
        loss = task.loss(model, x, y)
        if not torch.isfinite(loss):
            diverged = True
            break
        loss.backward()
        value = loss.item()
        before = time.perf_counter()
        signals.step(value)
        step_times.append(time.perf_counter() - before)
        if sched is not None:
            sched.step()
        train_seconds += time.perf_counter() - started
        running = value if math.isnan(running) else 0.9 * running + 0.1 * value
        if (step + 1) % spec.eval_every == 0 or step + 1 == spec.steps:
            metrics = evaluate("val")
            if not math.isfinite(metrics["val_loss"]):
                diverged = True
                break
            signals.validated(metrics["val_loss"])
            curve["step"].append(step + 1)
            curve["val_loss"].append(metrics["val_loss"])
            curve[f"val_{task.metric}"].append(metrics[f"val_{task.metric}"])
            curve["train_loss"].append(running)
            curve["seconds"].append(train_seconds)
            if reached is None and task.target.reached(metrics):
                reached = (step + 1, train_seconds)
    record: dict[str, Any] = asdict(spec)
    record.update(
        diverged=diverged,
        curve=curve,
        steps_to_target=None if reached is None else reached[0],
        seconds_to_target=None if reached is None else reached[1],
        step_us=1e6 * statistics.median(step_times) if step_times else None,
        compile_seconds=0.0,
        state_bytes_per_param=state_bytes_per_param(opt, model),
        signals=sorted(signals.wants),
        splits=["val", "test"] if spec.role == "final" and not diverged else ["val"],
        schedule_free=free,
    )
    if diverged:
        record.update(val_loss=math.inf, **{f"val_{task.metric}": math.nan})
    else:
        final_val = evaluate("val")
        record.update(final_val)
        if spec.role == "final":
            record.update(evaluate("test"))
    record["wall_seconds"] = time.perf_counter() - wall
    return record


def state_bytes_per_param(opt: torch.optim.Optimizer, model: torch.nn.Module) -> float:
    total = sum(
        v.numel() * v.element_size()
        for state in opt.state.values()
        for v in state.values()
        if torch.is_tensor(v)
    )
    return total / sum(p.numel() for p in model.parameters())


def run_toy(task_name: str, optimizer: str, lr: float) -> dict[str, Any]:
    """One 2-D run from the task's start point: the trajectory and the final value."""
    task = TOYS[task_name]
    p = torch.tensor(task.start, dtype=torch.float64, requires_grad=True)
    opt = adamkit.create(optimizer, [p], lr=lr)
    path = [list(task.start)]
    for _ in range(task.steps):
        p.grad = task.grad(p.detach())
        opt.step()
        if not torch.isfinite(p).all():
            break
        path.append(p.detach().tolist())
    if is_schedule_free(opt):
        opt.eval()
        path.append(p.detach().tolist())
    final = task.value(p.detach()).item()
    return {
        "task": task_name,
        "optimizer": optimizer,
        "lr": lr,
        "final_value": final if math.isfinite(final) else math.inf,
        "path": path,
    }


def execute(job: tuple[str, Any]) -> dict[str, Any]:
    """Worker entry point: ("neural", RunSpec) or ("toy", (task, optimizer, lr)) or
    ("reproduction", steps)."""
    kind, payload = job
    torch.set_num_threads(1)
    if kind == "neural":
        return run_neural(payload)
    if kind == "toy":
        return run_toy(*payload)
    from adamkit.bench.rosenbrock_repro import run_reproduction

    return run_reproduction(steps=payload)
