"""Schedule-free AdamW reference (SPEC.md §17; schedulefree 1.4.1 AdamWScheduleFree, train mode)."""

from __future__ import annotations

import torch

from ._base import RefOptimizer, check_mode


class AdamWScheduleFreeRef(RefOptimizer):
    """SPEC §17: Defazio et al. schedule-free AdamW, as schedulefree 1.4.1 in train mode.

    The parameters hold y (the gradient point); state per parameter: z, exp_avg_sq.
    Group-level (as the package): k (0-based, advanced on every step call), lr_max, weight_sum.

    lr_k = lr · min(1, (k+1)/warmup_steps) ;  lr_max = max(lr_max, lr_k)
    w_k = (k+1)^r · lr_max^weight_lr_power ;  c = w_k / Σ_{j≤k} w_j   (0 if the sum is 0)
    v ← β2 v + (1-β2) g² ;  ĝ = g / (sqrt(v/(1-β2^{k+1})) + ε)
    "decoupled" (package rule): ĝ ← ĝ + λ y ; y ← y + c (z - y) + lr_k (β1(1-c) - 1) ĝ ;
                                z ← z - lr_k ĝ
    "fixed": d = lr_k ĝ + λ y ; y ← y + c (z - y) + (β1(1-c) - 1) d ; z ← z - d
    "l2":    g ← g + λ y before v, no other decay
    The y used by the decay is y_k, before the y/z updates.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        self.warmup_steps = warmup_steps
        self.r = r
        self.weight_lr_power = weight_lr_power
        # group-level scalars, as the package keeps them
        self.k = 0
        self.lr_max = -1.0
        self.weight_sum = 0.0

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor | None]) -> None:
        if len(grads) != len(self.params):
            raise ValueError(f"expected {len(self.params)} gradients, got {len(grads)}")
        beta1, beta2 = self.betas
        k = self.k
        sched = (k + 1) / self.warmup_steps if k < self.warmup_steps else 1.0
        lr = self.lr * sched
        self.lr_max = max(lr, self.lr_max)
        weight = ((k + 1) ** self.r) * (self.lr_max**self.weight_lr_power)
        self.weight_sum = self.weight_sum + weight
        c = weight / self.weight_sum if self.weight_sum != 0 else 0.0
        bc2 = 1.0 - beta2 ** (k + 1)
        lam = self.weight_decay

        for y, grad, state in zip(self.params, grads, self.state, strict=True):
            if grad is None:
                continue
            g = self._prepare_grad(grad)
            if not state:
                state["step"] = 0  # informational only; the package uses the group counter k
                state["z"] = y.clone()
                state["exp_avg_sq"] = torch.zeros_like(y)
            state["step"] += 1
            z = state["z"]
            v = state["exp_avg_sq"]

            if self.weight_decay_mode == "l2" and lam != 0:
                g = g + lam * y
            v.mul_(beta2).add_((1 - beta2) * g * g)
            g_hat = g / ((v / bc2).sqrt() + self.eps)

            y_old = y.clone()
            if self.weight_decay_mode == "decoupled":
                g_hat = g_hat + lam * y_old
                d = lr * g_hat
            elif self.weight_decay_mode == "fixed":
                d = lr * g_hat + lam * y_old
            else:
                d = lr * g_hat

            y.copy_(y_old + c * (z - y_old) + (beta1 * (1 - c) - 1) * d)
            z.sub_(d)

        self.k = k + 1

    @torch.no_grad()
    def eval_params(self) -> list[torch.Tensor]:
        """x = y + (1 - 1/β1)(z - y) for each parameter (y itself where there is no state yet)."""
        beta1 = self.betas[0]
        out = []
        for y, state in zip(self.params, self.state, strict=True):
            if "z" in state:
                out.append(y + (1 - 1 / beta1) * (state["z"] - y))
            else:
                out.append(y.clone())
        return out
