"""B_Adam, binomial Adam: the notebook's (source 003, "xty") variant, as its code computes it."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, Scalars, State
from adamkit.core import hparams as hp
from adamkit.core.pieces import in_pieces
from adamkit.core.reduce import mean_abs
from adamkit.parts.moments import ema_
from adamkit.parts.safe import sign_floor
from adamkit.parts.softplus import softplus_times
from adamkit.parts.update import add_scaled_
from adamkit.registry import register


@register
class BAdam(AdamkitOptimizer):
    r"""Adam whose denominator tracks gradient differences per unit of the previous update.

    .. math::
        m ← β_1 m + (1-β_1) g;\quad ε_t = \mathrm{mean}|θ_{t-1}|

        t = 1:\ u = η ε_t \hat m

        t > 1:\ c = \mathrm{sign\_floor}(u_{t-1}, \mathrm{mean}|u_{t-1}|);\quad
        Φ = (g - g_{t-1}) / c;\quad v ← β_2 v + (1-β_2) Φ;\quad
        u = η ε_t \hat m / sp_β(|v / (1-β_2^{t-1})|)

        u ← u + κθ;\quad θ ← θ - u

    This is the notebook's code (its formula differs: softplus of s_{t-1} in Φ and 1/|v̂_{t-1}|
    in the step). sign_floor raises |u_{t-1}| to its tensor mean keeping the sign (the floor
    where u = 0); the notebook's debugger call on a violated floor is gone, and where the floor
    is 0 (a zero previous update) Φ is 0 instead of a division by zero, and an overflowing Φ
    (a subnormal previous update) is clamped to the largest finite value, so that v never
    becomes inf and then NaN (inf − inf) in float32. The softplus (β =
    ``smooth``) is exact. The decay term κθ sits inside u so that it feeds the next Φ, as in the
    notebook: κ = λ in ``"fixed"`` mode (the default, the notebook's), η·λ in ``"decoupled"``.
    The recursion is ill-conditioned (a 1e-13 change of θ_0 moves θ_25 by ~1e-7).
    State: ``step``, ``exp_avg_1st``, ``exp_avg_2ed``, ``update``, ``grad``.
    """

    name = "b_adam"
    segmentable = True
    prepass_reads = ("param", "update")  # mean|θ|, mean|u_{t-1}|
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.99),
        hp.smooth(50.0),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("fixed"),
    )
    buffers = (Buffer("exp_avg_1st"), Buffer("exp_avg_2ed"), Buffer("update"), Buffer("grad"))

    @classmethod
    def scalars(cls, k: Scalars, t: int) -> None:
        k["bc1"] = 1.0 - k["beta1"] ** t
        k["bc2_prev"] = 1.0 - k["beta2"] ** (t - 1)
        k["first_step"] = t == 1

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        # u = scale·m at t = 1, else scale·m/(bc2·sp(|v̂|)), scale = η·ε_t·(bc2)/bc1
        if k["first_step"]:
            scale, floor = mean_abs(p) * (k["lr"] / k["bc1"]), None
        else:
            scale = mean_abs(p) * (k["lr"] * k["bc2_prev"] / k["bc1"])
            floor = mean_abs(s["update"])
            # Φ = 0 where the floor is 0: dividing by an infinite floor gives it without a mask.
            floor = torch.where(floor == 0, math.inf, floor)
        in_pieces(lambda t: _update(t, k, scale, floor), {"param": p, "g": g, **s})
        return p


def _update(t: Mapping[str, Tensor], k: Scalars, scale: Tensor, floor: Tensor | None) -> None:
    """The element-wise part of the step, in place (the tensor means are given)."""
    p, g, u = t["param"], t["g"], t["update"]
    m = ema_(t["exp_avg_1st"], g, k["beta1"])
    if floor is None:
        torch.mul(m, scale, out=u)
    else:
        biggest = torch.finfo(g.dtype).max
        c = sign_floor(u, floor)
        diff = torch.sub(g, t["grad"], out=t["grad"])  # g_{t-1} is read only here
        phi = torch.div(diff, c, out=diff).clamp_(-biggest, biggest)
        # β2·v + (1 − β2)·Φ, not a lerp: v − Φ may overflow where the sum does not.
        v = add_scaled_(t["exp_avg_2ed"].mul_(k["beta2"]), phi, 1 - k["beta2"])
        denom = softplus_times(v.abs(), k["bc2_prev"], k["smooth"])  # bc2·sp(|v̂|)
        torch.div(m, denom, out=u).mul_(scale)
    if k["decay_active"]:
        add_scaled_(u, p, k["decay"])
    t["grad"].copy_(g)
    p.sub_(u)
