"""Ref-AdamW-mini-ScheduleFree references (SPEC.md §16).

AdamWMiniSFRef          the per-tensor core (§16.1 step 7) with the §16.3 corrections 4 and 5
RefAdamWMiniSFRef       the whole optimizer with its controller, corrected per §16.3
RefOriginal             the original code's behaviour (§16.1) literally, including its
                        IndexError and KeyError (not registered in REFERENCES)
"""

from __future__ import annotations

import math

import torch

from ._base import RefOptimizer, check_mode

HISTORY_CAP = 20  # hard-coded in the original; ref_window is never read


def _check_dtype(dtype) -> None:
    if dtype not in (None, torch.float64):
        raise ValueError("the reference keeps its state in float64 (dtype=None or torch.float64)")


class AdamWMiniSFRef(RefOptimizer):
    """SPEC §16.1 step 7 (AdamW-mini-SF core) with §16.3 items 4 and 5.

    m ← β1 m + (1-β1) g ; v ← β2 v + (1-β2) g²          (no bias correction)
    n = ‖g‖₂ ; ema = n at the first step, else (1-a)·ema + a·n   (a = schedulefree_alpha)
    η_a = max(min(max_lr, lr · ema/(n + 1e-12)), min_lr)        (per tensor)
    denom = sqrt(v) + ε in float64 (legacy_fp32_denominator=True: in float32, cast back)
    decay "decoupled" (default): θ ← θ - λ·η_a·θ ; "fixed": θ ← θ(1-λ) ; "l2": g ← g + λθ first
    θ ← θ - η_a · m / denom
    A non-finite ‖g‖ skips the tensor entirely this step (moments, ema, decay, update).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        weight_decay_mode: str = "decoupled",
        min_lr: float = 1e-6,
        max_lr: float = 1e-2,
        schedulefree_alpha: float = 0.05,
        legacy_fp32_denominator: bool = False,
        dtype: torch.dtype | None = None,
        maximize: bool = False,
    ):
        super().__init__(params, maximize=maximize)
        _check_dtype(dtype)
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.weight_decay_mode = check_mode(weight_decay_mode)
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.schedulefree_alpha = schedulefree_alpha
        self.legacy_fp32_denominator = legacy_fp32_denominator
        self.skip_nonfinite = True  # §16.3 item 5; the original has no such guard

    def _init_state(self, p, state):
        state["exp_avg"] = torch.zeros_like(p)
        state["exp_avg_sq"] = torch.zeros_like(p)

    def _denominator(self, v: torch.Tensor) -> torch.Tensor:
        if self.legacy_fp32_denominator:
            return (v.to(torch.float32).sqrt() + self.eps).to(v.dtype)
        return v.sqrt() + self.eps

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        lam = self.weight_decay
        if self.weight_decay_mode == "l2" and lam != 0:
            g = g + lam * p

        grad_norm = g.norm().item()
        if self.skip_nonfinite and not math.isfinite(grad_norm):
            return

        m = state["exp_avg"]
        v = state["exp_avg_sq"]
        m.mul_(beta1).add_((1 - beta1) * g)
        v.mul_(beta2).add_((1 - beta2) * g * g)

        a = self.schedulefree_alpha
        if "grad_norm_ema" not in state:
            state["grad_norm_ema"] = grad_norm
        else:
            state["grad_norm_ema"] = (1 - a) * state["grad_norm_ema"] + a * grad_norm
        ratio = state["grad_norm_ema"] / (grad_norm + 1e-12)
        auto_lr = max(min(self.max_lr, self.lr * ratio), self.min_lr)

        denom = self._denominator(v)
        if self.weight_decay_mode == "decoupled" and lam != 0:
            p.add_(p, alpha=-lam * auto_lr)
        elif self.weight_decay_mode == "fixed" and lam != 0:
            p.mul_(1 - lam)
        p.addcdiv_(m, denom, value=-auto_lr)


class RefAdamWMiniSFRef(AdamWMiniSFRef):
    """SPEC §16 whole (the controller), corrected per §16.3.

    ``step(grads, loss=None, max_steps=None, val_loss=None)``, one global counter t per call:
    1. val_loss appended to the history (last 20 kept);
    2. overfit ⇔ the last four values strictly increase;
    3. T_imp = min(20, max(10, int(1e-4·(max_steps or 1000)))); improve ⇔ the number of strict
       decreases counted back from the newest value (at most T_imp, bounded by the history:
       i = 1 … min(len-1, T_imp)) reaches T_imp;
    4. overfit → skip, improve_count = 0; while skip: improve_count += 1 if improve else 0,
       skip ends when improve_count ≥ T_imp;
    5. divergence level from loss/(last_loss + 1e-8): >2 → 3, >1.5 → 2, >1.2 → 1, else 0;
       div_steps = consecutive calls with level > 0 (calls without loss reset it);
    6. the per-tensor core (AdamWMiniSFRef);
    7. if loss is given and 0.2 ≤ t/T ≤ 0.8 (T = max_steps or ref_max_steps; progress 0.5 if
       unknown) and not skip: α = 1.0 / 0.8 / 0.6 for level 3 or div_steps ≥ 3 / level 2 or
       div_steps = 2 / level 1 or div_steps = 1, else ref_alpha; m ← (1-α)m + αθ for every
       parameter that has state (parameters without state are skipped).
    Injections are recorded in ``self.injections`` as (t, α, skip, level) instead of printed.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        weight_decay_mode: str = "decoupled",
        min_lr: float = 1e-6,
        max_lr: float = 1e-2,
        schedulefree_alpha: float = 0.05,
        dtype: torch.dtype | None = None,
        ref_alpha: float = 0.5,
        ref_window: int = 20,
        ref_base_eps: float = 1e-3,
        ref_min_eps: float = 1e-5,
        ref_max_steps: int | None = None,
        legacy_fp32_denominator: bool = False,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mode=weight_decay_mode,
            min_lr=min_lr,
            max_lr=max_lr,
            schedulefree_alpha=schedulefree_alpha,
            legacy_fp32_denominator=legacy_fp32_denominator,
            dtype=dtype,
            maximize=maximize,
        )
        self.ref_alpha = ref_alpha
        self.ref_max_steps = ref_max_steps
        # accepted for signature compatibility, never read (as the original)
        self.ref_window = ref_window
        self.ref_base_eps = ref_base_eps
        self.ref_min_eps = ref_min_eps
        # controller state
        self.step_count = 0
        self.val_loss_history: list[float] = []
        self.skip_ema = False
        self.improve_count = 0
        self.last_loss: float | None = None
        self.divergence_steps = 0
        self.injections: list[tuple[int, float, bool, int]] = []

    # -- controller pieces -------------------------------------------------------------
    @staticmethod
    def improve_threshold(max_steps) -> int:
        return min(20, max(10, int(1e-4 * (max_steps or 1000))))

    def _is_overfitting(self) -> bool:
        h = self.val_loss_history
        return len(h) >= 4 and h[-1] > h[-2] > h[-3] > h[-4]

    def _improve_steps(self, threshold: int) -> int:
        """Strict decreases counted back from the newest value; bounded by the history."""
        h = self.val_loss_history
        count = 0
        for i in range(1, min(len(h) - 1, threshold) + 1):
            if h[-i] < h[-i - 1]:
                count += 1
            else:
                break
        return count

    @staticmethod
    def _divergence_level(ratio: float) -> int:
        if ratio > 2.0:
            return 3
        if ratio > 1.5:
            return 2
        if ratio > 1.2:
            return 1
        return 0

    def _injection_alpha(self, level: int) -> float:
        d = self.divergence_steps
        if level == 3 or d >= 3:
            return 1.0
        if level == 2 or d == 2:
            return 0.8
        if level == 1 or d == 1:
            return 0.6
        return self.ref_alpha

    def _inject(self, alpha: float) -> None:
        for p, state in zip(self.params, self.state, strict=True):
            if "exp_avg" not in state:
                continue  # §16.3 item 3
            state["exp_avg"].mul_(1 - alpha).add_(alpha * p)

    # -- one call ----------------------------------------------------------------------
    @torch.no_grad()
    def step(self, grads, loss=None, max_steps=None, val_loss=None) -> None:
        self.step_count += 1
        t = self.step_count

        if val_loss is not None:
            self.val_loss_history.append(float(val_loss))
            self.val_loss_history = self.val_loss_history[-HISTORY_CAP:]

        overfit = self._is_overfitting()
        threshold = self.improve_threshold(max_steps)
        improve = self._improve_steps(threshold) >= threshold
        if overfit:
            self.skip_ema = True
            self.improve_count = 0
        if self.skip_ema:
            self.improve_count = self.improve_count + 1 if improve else 0
            if self.improve_count >= threshold:
                self.skip_ema = False

        level = 0
        if loss is not None:
            loss = float(loss)
            if self.last_loss is not None:
                level = self._divergence_level(loss / (self.last_loss + 1e-8))
            self.last_loss = loss
        self.divergence_steps = self.divergence_steps + 1 if level > 0 else 0

        super().step(grads)

        if loss is not None:
            total = max_steps if max_steps is not None else self.ref_max_steps
            progress = 0.5 if (total is None or total <= 0) else t / total
            in_middle = 0.2 <= progress <= 0.8
            alpha = self._injection_alpha(level) if (in_middle and not self.skip_ema) else 0.0
            if alpha > 0:
                self.injections.append((t, alpha, self.skip_ema, level))
                self._inject(alpha)


class RefOriginal(RefAdamWMiniSFRef):
    """SPEC §16.1: the original RefAdamWminiScheduleFree, literally.

    Differences from RefAdamWMiniSFRef: the denominator is always computed in float32;
    decay is always the decoupled auto-lr form; no non-finite guard; the improvement scan
    runs i = 1 … min(len, T_imp) once the history has two values, so a history that is
    strictly decreasing throughout with len ≤ T_imp raises IndexError (e.g. on the second
    call when the first two val_losses decrease); injection reads every parameter's
    ``exp_avg`` and raises KeyError for a parameter that never had a gradient.
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        min_lr: float = 1e-6,
        max_lr: float = 1e-2,
        schedulefree_alpha: float = 0.05,
        dtype: torch.dtype | None = None,
        ref_alpha: float = 0.5,
        ref_window: int = 20,
        ref_base_eps: float = 1e-3,
        ref_min_eps: float = 1e-5,
        ref_max_steps: int | None = None,
        maximize: bool = False,
    ):
        super().__init__(
            params,
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            weight_decay_mode="decoupled",
            min_lr=min_lr,
            max_lr=max_lr,
            schedulefree_alpha=schedulefree_alpha,
            dtype=dtype,
            ref_alpha=ref_alpha,
            ref_window=ref_window,
            ref_base_eps=ref_base_eps,
            ref_min_eps=ref_min_eps,
            ref_max_steps=ref_max_steps,
            legacy_fp32_denominator=True,
            maximize=maximize,
        )
        self.skip_nonfinite = False

    def _improve_steps(self, threshold: int) -> int:
        h = self.val_loss_history
        if len(h) < 2:
            return 0
        count = 0
        for i in range(1, min(len(h), threshold) + 1):
            if h[-i] < h[-i - 1]:  # IndexError at i = len(h): the original's bug
                count += 1
            else:
                break
        return count

    def _inject(self, alpha: float) -> None:
        for p, state in zip(self.params, self.state, strict=True):
            exp_avg = state["exp_avg"]  # KeyError for a parameter without state: the original's bug
            exp_avg.mul_(1 - alpha).add_(p.to(exp_avg.dtype), alpha=alpha)
