"""Adam with gradient centralisation (SPEC.md §8, Adam_GCC)."""

from __future__ import annotations

import torch

from .adam import AdamRef


class AdamGCRef(AdamRef):
    """SPEC §8 "adamkit rule": centralise a copy of the gradient, then Adam (§1).

    Defaults as Adam (§1), so weight_decay_mode="l2" as torch.optim.Adam, the peer.
    g ← decay(g) (L2 mode only changes g); if the tensor qualifies
    (gc_conv_only=True: ndim ≥ 4; False: ndim ≥ 2) g ← g - mean(g over dims 1..);
    then the moments and the Adam step of §1.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        weight_decay_mode: str = "l2",
        amsgrad: bool = False,
        eps_mode: str = "standard",
        gc_conv_only: bool = True,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
            amsgrad=amsgrad,
            eps_mode=eps_mode,
            maximize=maximize,
        )
        self.gc_conv_only = gc_conv_only

    def _transform_grad(self, g: torch.Tensor) -> torch.Tensor:
        min_ndim = 4 if self.gc_conv_only else 2
        if g.ndim >= min_ndim:
            dims = tuple(range(1, g.ndim))
            g = g - g.mean(dim=dims, keepdim=True)
        return g
