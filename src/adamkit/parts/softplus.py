"""The exact softplus used by SAdam and friends (torch.nn.Softplus's threshold 20 is not exact)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

# Above βx = 40, log1p(e^{−βx})/β < 2^−62·x: sp_β(x) rounds to x in float32 and float64, so
# torch's thresholded kernel with this threshold is exact there too.
EXACT_THRESHOLD = 40.0


def softplus(x: torch.Tensor, beta: Any) -> torch.Tensor:
    """sp_β(x) = log(1 + e^{βx})/β = x + log1p(e^{−βx})/β, exact for x ≥ 0 (Tong et al. 2019).

    A new tensor. With β a Python number (eager) this is torch's softplus kernel (one pass for
    both transcendental functions); a traced β (a 0-d tensor) takes the second form, which the
    compiler fuses. There log1p(e) is taken as log(1 + e): e = e^{−βx} ∈ (0, 1], so rounding
    1 + e costs at most half an ulp of 1 in absolute terms, under 1.5 ulp of sp_β(x) ≥ ln2/β;
    inductor's vectorized log1p costs twice the time of the whole Adam pass, log a third.
    """
    if isinstance(beta, (int, float)):
        # The kernel evaluates e^{βx} in every lane; above the threshold it returns x, but an
        # overflowing e^{βx} takes the CPU's slow path, so x is clipped there and restored by
        # the max (sp_β(x) ≥ x).
        clipped = x.clamp(max=EXACT_THRESHOLD / beta)
        out = F.softplus(clipped, beta=beta, threshold=EXACT_THRESHOLD)
        return torch.maximum(out, x, out=out)
    return x + torch.exp(x * -beta).add_(1.0).log_().div_(beta)


def softplus_times(x: torch.Tensor, c: Any, beta: Any) -> torch.Tensor:
    """c·sp_β(x/c) = sp_{β/c}(x) for c > 0, as a new tensor: no pass to divide x by c."""
    return softplus(x, beta / c)
