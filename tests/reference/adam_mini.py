"""Adam-mini (Zhang et al. 2024, arXiv:2406.16793), float64 reference.

Each parameter is split into blocks along its rows; a block's second moment is the EMA of the
mean of g² over the block; m is Adam's element-wise EMA; decay is AdamW's.

    m ← β1 m + (1-β1) g ;  v_b ← β2 v_b + (1-β2) mean_{i∈b} g_i²
    θ ← θ(1 - ηλ) - η · (m/bc1) / (sqrt(v_b/bc2) + ε)

``blocks`` gives, per parameter, the number of equal row blocks, or ``None`` for Adam's
element-wise v. Without ``blocks``: one block per row for ndim ≥ 2, one block otherwise (the
documented rule for parameters given without names).
"""

from __future__ import annotations

import torch

from ._base import RefOptimizer, bias_corrections, check_mode, decay_factor, decay_grad


class AdamMiniRef(RefOptimizer):
    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "decoupled",
        blocks: list[int | None] | None = None,
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        self.lr, self.betas, self.eps = lr, tuple(betas), eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        if blocks is None:
            blocks = [p.shape[0] if p.ndim >= 2 else 1 for p in self.params]
        self.blocks = {id(p): b for p, b in zip(self.params, blocks, strict=True)}

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        b = self.blocks[id(p)]
        state["exp_avg_sq"] = torch.zeros_like(p) if b is None else torch.zeros(b, dtype=p.dtype)

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        bc1, bc2 = bias_corrections(self.betas, state["step"])
        g = decay_grad(g, p, self.weight_decay, self.weight_decay_mode)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)
        b = self.blocks[id(p)]
        if b is None:
            v.mul_(beta2).add_((1 - beta2) * g * g)
            denom = (v / bc2).sqrt() + self.eps
        else:
            rows_per_block = g.numel() // b
            block_mean = torch.stack(
                [chunk.pow(2).mean() for chunk in g.reshape(-1).split(rows_per_block)]
            )
            v.mul_(beta2).add_((1 - beta2) * block_mean)
            per_block = (v / bc2).sqrt() + self.eps
            denom = per_block.repeat_interleave(rows_per_block).reshape(p.shape)
        step = self.lr * (m / bc1) / denom
        p.mul_(decay_factor(self.lr, self.weight_decay, self.weight_decay_mode)).sub_(step)
