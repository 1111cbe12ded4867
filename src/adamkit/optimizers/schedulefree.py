"""Schedule-Free AdamW: Defazio et al. 2024, "The Road Less Scheduled", arXiv:2405.15682, with the
conventions of the public ``schedulefree`` package (1.4.1)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from adamkit.core import (
    AdamkitOptimizer,
    Buffer,
    Hyper,
    HyperparameterError,
    Scalars,
    State,
    copy_of_param,
)
from adamkit.core import hparams as hp
from adamkit.parts.moments import ema_sq_
from adamkit.parts.update import add_scaled_
from adamkit.registry import register

# Per-group counters, kept in param_groups (so they are in state_dict) under schedulefree's names.
GROUP_STATE: dict[str, Any] = {"k": 0, "lr_max": -1.0, "weight_sum": 0.0, "scheduled_lr": 0.0}
SWAP_STREAM = 1 << 20  # random streams of the train/eval swaps (stochastic rounding of bf16 params)


@register
class AdamWScheduleFree(AdamkitOptimizer):
    r"""Schedule-free AdamW: no learning-rate schedule; iterate averaging replaces it.

    With k the 0-based step of the group:

    .. math::
        η_k = η \min(1, (k+1)/\text{warmup\_steps});\quad η_{max} = \max(η_{max}, η_k)

        w_k = (k+1)^r η_{max}^{\text{weight\_lr\_power}};\quad c = w_k / \sum_{j ≤ k} w_j

        v ← β_2 v + (1-β_2) g^2;\quad \hat g = g / (\sqrt{v/(1-β_2^{k+1})} + ε) + λy

        y ← y + c(z - y) + η_k(β_1(1-c) - 1)\hat g;\quad z ← z - η_k \hat g

    Gradients are taken at y, which the parameters hold in train mode; :meth:`eval` swaps in the
    averaged point x = y + (1 − 1/β1)(z − y) and :meth:`train` swaps y back. Both are idempotent
    and the mode is kept in ``param_groups`` (``train_mode``), so it is saved in ``state_dict``.
    Unlike the ``schedulefree`` package, a new optimizer starts in train mode (x = y = z before the
    first step, so nothing moves), and ``p.grad`` is never divided in place.
    Decay modes: ``"decoupled"`` (default; the package's λy in ĝ, scaled by η_k), ``"fixed"``
    (η_k·λ replaced by λ), ``"l2"`` (λy added to g before v).
    State: ``step``, ``z``, ``exp_avg_sq``; group: ``k``, ``lr_max``, ``weight_sum``,
    ``scheduled_lr``, ``train_mode``.
    """

    name = "adamw_schedulefree"
    elementwise = True
    hypers: tuple[Hyper, ...] = (
        hp.lr(0.0025),
        hp.adam_betas(0.9, 0.999),
        hp.eps(1e-8),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("decoupled"),
        Hyper("warmup_steps", 0, hp.nonnegative_int(), "linear learning-rate warm-up (steps)"),
        Hyper("r", 0.0, hp.nonnegative(), "polynomial weighting power of the average"),
        Hyper("weight_lr_power", 2.0, hp.nonnegative(), "average weights ∝ η_max^power"),
    )
    buffers = (
        Buffer("z", init=copy_of_param, precision="iterate"),
        Buffer("exp_avg_sq", nonnegative=True),
    )

    @classmethod
    def check_hyper(cls, hyper: Mapping[str, Any]) -> None:
        if hyper["betas"][0] == 0:
            raise HyperparameterError(
                "schedule-free needs beta1 > 0 (the evaluation point divides by it), "
                f"got betas={tuple(hyper['betas'])!r}"
            )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        mode = self.param_groups[0]["train_mode"] if self.param_groups else True
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        for key, value in GROUP_STATE.items():
            group.setdefault(key, value)
        group.setdefault("train_mode", mode)

    def check_step_allowed(self, index: int, group: dict[str, Any]) -> None:
        if not group["train_mode"]:
            raise RuntimeError(
                f"{type(self).__name__}.step() was called in eval mode (param group {index}); "
                "call optimizer.train() before training steps, optimizer.eval() before evaluation"
            )

    def begin_group_step(self, group: dict[str, Any], hyper: dict[str, Any]) -> None:
        count = group["k"] + 1
        warmup = hyper["warmup_steps"]
        lr = float(hyper["lr"]) * (min(1.0, count / warmup) if warmup > 0 else 1.0)
        group["scheduled_lr"] = lr
        group["lr_max"] = max(lr, group["lr_max"])
        group["weight_sum"] = group["weight_sum"] + self._average_weight(group, hyper, count)
        group["k"] = count

    @staticmethod
    def _average_weight(group: Mapping[str, Any], hyper: Mapping[str, Any], count: int) -> float:
        return count ** hyper["r"] * group["lr_max"] ** hyper["weight_lr_power"]

    def step_scalars(self, hyper: Mapping[str, Any], t: int, group: Mapping[str, Any]) -> Scalars:
        k = super().step_scalars({**hyper, "lr": group["scheduled_lr"]}, t, group)
        count = group["k"]
        weight = self._average_weight(group, hyper, count)
        ckp1 = weight / group["weight_sum"] if group["weight_sum"] != 0 else 0.0
        k["sqrt_bc2"] = math.sqrt(1.0 - k["beta2"] ** count)
        k["ckp1"] = ckp1
        k["y_rate"] = k["beta1"] * (1.0 - ckp1) - 1.0
        return k

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        v = ema_sq_(s["exp_avg_sq"], g, k["beta2"])
        # g/(sqrt(v)/sqrt(bc2) + ε) = sqrt(bc2)·g/(sqrt(v) + ε·sqrt(bc2)): one pass less.
        denom = v.sqrt().add_(k["eps"] * k["sqrt_bc2"])
        step = torch.div(g, denom, out=denom).mul_(k["lr"] * k["sqrt_bc2"])
        if k["decay_active"]:
            add_scaled_(step, p, k["decay"])
        z = s["z"]
        y = add_scaled_(p.lerp_(z, k["ckp1"]), step, k["y_rate"])  # y written into p
        z.sub_(step)
        return y

    @torch.no_grad()
    def train(self) -> None:
        """Put the parameters at y, the point where gradients are taken (idempotent)."""
        self._swap(train=True)

    @torch.no_grad()
    def eval(self) -> None:
        """Put the parameters at the averaged point x, for evaluation and saving (idempotent)."""
        self._swap(train=False)

    def _swap(self, train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == train:
                continue
            beta1 = group["betas"][0]
            weight = 1.0 - beta1 if train else 1.0 - 1.0 / beta1
            for index, p in enumerate(group["params"]):
                if "z" not in self.state[p]:
                    continue
                moved = self.load_param(p).lerp(self.load_buffer(p, "z"), weight)
                self.store_param(p, moved, group, stream=SWAP_STREAM + index)
            group["train_mode"] = train
