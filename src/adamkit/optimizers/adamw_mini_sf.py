"""AdamW-mini-SF and Ref-AdamW-mini-ScheduleFree (source 000; https://github.com/muooon/AdamW-mini-SF
and https://github.com/muooon/ref-adamw-mini-ScheduleFree), corrected per SPEC §16.3.

Neither is Adam-mini (v stays element-wise; "mini" is the low-precision storage) nor
schedule-free in Defazio et al.'s sense (the "ScheduleFree" is a gradient-norm learning-rate
heuristic); see :class:`adamkit.AdamMini` and :class:`adamkit.AdamWScheduleFree` for those.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, HyperparameterError, Scalars, State
from adamkit.core import hparams as hp
from adamkit.core.pieces import in_pieces
from adamkit.core.precision import check_state_dtype, new_codec
from adamkit.core.reduce import norm
from adamkit.optimizers.ref_controller import check_controller, new_controller, observe
from adamkit.parts.safe import finite_or_zeros
from adamkit.parts.update import add_scaled_
from adamkit.registry import register

logger = logging.getLogger("adamkit")
INJECT_STREAM = 1 << 21  # random streams of injections into idle parameters


def _unit_closed(name: str, value: Any) -> float:
    number = hp.nonnegative()(name, value)
    if number > 1:
        raise HyperparameterError(f"invalid {name}={value!r}: must be in [0, 1]")
    return number


def nan_scalar(p: Tensor, info: Any = None) -> Tensor:
    """An empty statistic: NaN until the first finite observation sets it."""
    return torch.full((), math.nan, dtype=p.dtype, device=p.device)


MINI_SF_HYPERS: tuple[Hyper, ...] = (
    hp.lr(1e-3),
    hp.adam_betas(0.9, 0.999),
    hp.eps(1e-8),
    hp.weight_decay(0.01),
    hp.weight_decay_mode("decoupled"),
    Hyper("min_lr", 1e-6, hp.nonnegative(), "lower clamp of the automatic learning rate"),
    Hyper("max_lr", 1e-2, hp.nonnegative(), "upper clamp of the automatic learning rate"),
    Hyper("schedulefree_alpha", 0.05, _unit_closed, "EMA coefficient of the gradient norm"),
    Hyper("dtype", None, check_state_dtype, "storage dtype of m and v (None: state_dtype)"),
    Hyper(
        "legacy_fp32_denominator",
        False,
        hp.flag(),
        "reproduce the original: sqrt(v)+ε in float32, cast to the state dtype",
    ),
)


@register
class AdamWMiniSF(AdamkitOptimizer):
    r"""AdamW without bias correction, with a per-tensor automatic learning rate from the
    gradient norm and moments stored in a chosen (low) precision.

    .. math::
        n = ‖g‖_2;\quad \bar n ← n \text{ (first) or } (1-a)\bar n + a n;\quad
        η_a = \mathrm{clip}(η · \bar n/(n + 10^{-12}), η_{min}, η_{max})

        m ← β_1 m + (1-β_1) g;\quad v ← β_2 v + (1-β_2) g^2;\quad
        θ ← θ(1 - λη_a) - η_a · m / (\sqrt{v} + ε)

    a = ``schedulefree_alpha``. No bias correction (the step is (1−β1^t)/sqrt(1−β2^t) times
    Adam's: 3.16× at t = 1). Storage dtype of m, v: group ``dtype`` > constructor ``dtype`` >
    ``state_dtype``. Corrections of the original (SPEC §16.3): ‖g‖ in float32 or better from the
    uncast gradient and kept on the device (no ``.item()`` per tensor); a non-finite ‖g‖ skips
    that tensor's step and leaves n̄ unchanged (the original pinned n̄ at inf forever); the
    denominator is computed in the compute dtype (``legacy_fp32_denominator=True`` reproduces
    the original's float32 sqrt cast to the state dtype). Decay ``"decoupled"`` is the
    original's λ·η_a; ``"fixed"`` uses λ, ``"l2"`` adds λθ to g.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``grad_norm_ema``.
    """

    name = "adamw_mini_sf"
    segmentable = True
    prepass_reads = ("grad",)  # ‖g‖
    hypers = MINI_SF_HYPERS
    buffers = (
        Buffer("exp_avg"),
        Buffer("exp_avg_sq", nonnegative=True),
        Buffer("grad_norm_ema", init=nan_scalar, precision="exact", nan_unset=True),
    )

    @classmethod
    def check_hyper(cls, hyper: Mapping[str, Any]) -> None:
        if hyper["min_lr"] > hyper["max_lr"]:
            raise HyperparameterError(
                f"min_lr={hyper['min_lr']!r} must not exceed max_lr={hyper['max_lr']!r}"
            )

    def storage_setting(self, hyper: Mapping[str, Any]) -> str | None:
        constructor = getattr(self, "defaults", {}).get("dtype")
        return hyper["dtype"] or constructor or hyper["state_dtype"]

    def step_scalars(self, hyper: Mapping[str, Any], t: int, group: Mapping[str, Any]) -> Scalars:
        k = super().step_scalars(hyper, t, group)
        k["inject"] = False
        return k

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        n = norm(g)
        finite = n.isfinite()
        a = k["schedulefree_alpha"]
        ema_prev = s["grad_norm_ema"]
        ema = torch.where(ema_prev.isnan(), n, (1 - a) * ema_prev + a * n)
        lr_auto = (k["lr"] * ema / (n + 1e-12)).clamp(k["min_lr"], k["max_lr"])
        s["grad_norm_ema"] = torch.where(finite, ema, ema_prev)
        # A skipped step (non-finite ‖g‖) runs the same in-place passes with g replaced by 0 and
        # rates 0, which leave m, v and θ as they were; no full-size select is needed.
        rates = {
            "m": _gate(finite, 1 - k["beta1"], 0.0, g),
            "v": _gate(finite, 1 - k["beta2"], 0.0, g),
            "lr": _gate(finite, lr_auto, 0.0, g),
        }
        if k["decay_active"]:
            decay = k["weight_decay"] * (lr_auto if k["weight_decay_mode"] == "decoupled" else 1.0)
            rates["keep"] = _gate(finite, 1 - decay, 1.0, g)
        tensors = {"param": p, "g": g, "exp_avg": s["exp_avg"], "exp_avg_sq": s["exp_avg_sq"]}
        in_pieces(lambda t: _update(t, k, finite, rates), tensors)
        return p


def _update(t: Mapping[str, Tensor], k: Scalars, finite: Tensor, rates: dict[str, Tensor]) -> None:
    """The element-wise part of the step, in place (the per-tensor rates are given)."""
    p = t["param"]
    x = finite_or_zeros(t["g"], finite)
    m = t["exp_avg"].lerp_(x, rates["m"])
    v = t["exp_avg_sq"].lerp_(x.square_(), rates["v"])
    if k["legacy_fp32_denominator"]:
        x = (v.float().sqrt() + k["eps"]).to(_legacy_storage(k, v)).to(v.dtype)
    else:
        x = torch.sqrt(v, out=x).add_(k["eps"])
    if "keep" in rates:
        p.mul_(rates["keep"])
    p.sub_(torch.div(m, x, out=x).mul_(rates["lr"]))
    if k["inject"]:
        add_scaled_(m.mul_(1 - k["inject_alpha"]), p, k["inject_alpha"])


def _gate(finite: Tensor, value: Any, skipped: float, like: Tensor) -> Tensor:
    """``value`` if ‖g‖ is finite, else ``skipped``: a 0-d tensor of ``like``'s dtype."""
    return torch.where(
        finite, torch.as_tensor(value, dtype=like.dtype, device=like.device), skipped
    )


def _legacy_storage(k: Scalars, v: Tensor) -> torch.dtype:
    """The dtype the original cast its float32 denominator to: the float dtype of its state."""
    codec = new_codec(k["dtype"], "nearest", v.dtype, nonnegative=True) if k["dtype"] else None
    return getattr(codec, "dtype", v.dtype)


def _signal(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        return float(value.detach())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(
        f"RefAdamWMiniSF.step: {name} must be a number or a 1-element tensor, got {value!r}"
    )


@register
class RefAdamWMiniSF(AdamWMiniSF):
    r"""AdamW-mini-SF plus the "Ref" controller: in the middle of training (0.2 ≤ t/T ≤ 0.8) the
    current weights are mixed into the first moment, m ← (1 − α)m + αθ, more strongly when the
    loss jumps (α = 0.6/0.8/1.0) and not at all while the validation loss is rising.

    ``step(closure=None, loss=None, max_steps=None, val_loss=None)``: ``loss`` (a number or
    1-element tensor) drives the divergence levels and enables injection, ``val_loss`` the
    overfitting detection, ``max_steps`` (or ``ref_max_steps``) the window; none is required.
    The controller (:mod:`adamkit.optimizers.ref_controller`) is corrected per SPEC §16.3: no
    IndexError in the improvement scan, the closure runs with grad enabled, parameters without
    state are not injected, injections are logged (``logging.getLogger("adamkit")``, INFO, the
    original's text; ``log_injections``) instead of printed (``legacy_print=True`` prints), and
    its whole state is in ``param_groups[0]["ref_controller"]``, so ``state_dict`` saves it.
    The injection is fused into the update of every parameter that has a gradient.
    ``ref_window``, ``ref_base_eps`` and ``ref_min_eps`` are accepted for compatibility and
    ignored, as in the original. Caution (documented, not changed): the original mixes weights
    into the *gradient* momentum, so α = 1 makes the next direction β1·θ + (1 − β1)·g.
    State: ``step``, ``exp_avg``, ``exp_avg_sq``, ``grad_norm_ema``; controller:
    ``step_count``, ``val_loss_history``, ``skip_ema``, ``improve_count``, ``last_loss``,
    ``divergence_steps``, ``alpha``, ``level``.
    """

    name = "ref_adamw_mini_sf"
    hypers: tuple[Hyper, ...] = (
        *MINI_SF_HYPERS,
        Hyper("ref_alpha", 0.5, _unit_closed, "injection strength without divergence"),
        Hyper("ref_window", 20, hp.positive_int(), "accepted and ignored (as the original)"),
        Hyper("ref_base_eps", 1e-3, hp.nonnegative(), "accepted and ignored (as the original)"),
        Hyper("ref_min_eps", 1e-5, hp.nonnegative(), "accepted and ignored (as the original)"),
        Hyper("ref_max_steps", None, hp.optional(hp.nonnegative_int()), "T without max_steps"),
        Hyper("log_injections", True, hp.flag(), "log each injection at INFO"),
        Hyper("legacy_print", False, hp.flag(), "print each injection, as the original"),
    )

    def __init__(self, params: Any, **hyperparameters: Any) -> None:
        super().__init__(params, **hyperparameters)
        self.param_groups[0]["ref_controller"] = new_controller()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.param_groups[0].setdefault("ref_controller", new_controller())

    @property
    def controller(self) -> dict[str, Any]:
        """The controller's state (a view into ``param_groups[0]``)."""
        return self.param_groups[0]["ref_controller"]

    @torch.no_grad()
    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        loss: Any = None,
        max_steps: int | None = None,
        val_loss: Any = None,
    ) -> Any:
        """One step; ``loss``, ``val_loss`` and ``max_steps`` feed the Ref controller."""
        if max_steps is not None and (
            isinstance(max_steps, bool) or not isinstance(max_steps, int)
        ):
            raise TypeError(
                f"RefAdamWMiniSF.step: max_steps must be an int or None, got {max_steps!r}"
            )
        signals = {"loss": _signal("loss", loss), "val_loss": _signal("val_loss", val_loss)}
        out = self._evaluate(closure)
        work = self._plan()
        hyper = work[0][1]
        ctrl = self.controller
        observe(
            ctrl,
            **signals,
            max_steps=max_steps,
            ref_max_steps=hyper["ref_max_steps"],
            ref_alpha=hyper["ref_alpha"],
        )
        self._run(work)
        if ctrl["alpha"] > 0:
            self._inject_idle(work, ctrl["alpha"])
            self._report(hyper, ctrl)
        return out

    def step_scalars(self, hyper: Mapping[str, Any], t: int, group: Mapping[str, Any]) -> Scalars:
        k = super().step_scalars(hyper, t, group)
        k["inject_alpha"] = self.controller["alpha"]
        k["inject"] = k["inject_alpha"] > 0
        return k

    def _inject_idle(self, work: list, alpha: float) -> None:
        """Inject into parameters that have state but no gradient this step."""
        for group, _hyper, active in work:
            stepped = {id(p) for p in active}
            for index, p in enumerate(group["params"]):
                if id(p) in stepped or "exp_avg" not in self.state[p]:
                    continue
                m = self.load_buffer(p, "exp_avg") * (1 - alpha) + alpha * self.load_param(p)
                self.store_buffer(p, "exp_avg", m, group, stream=INJECT_STREAM + index)

    @staticmethod
    def _report(hyper: Mapping[str, Any], ctrl: Mapping[str, Any]) -> None:
        message = (
            f"[ref inject] step={ctrl['step_count']} ref_alpha={ctrl['alpha']} "
            f"skip={ctrl['skip_ema']} div={ctrl['level']}"
        )
        if hyper["legacy_print"]:
            print(message)
        elif hyper["log_injections"]:
            logger.info(message)

    def _check_loadable(self, state_dict: Any) -> None:
        super()._check_loadable(state_dict)
        saved = state_dict["param_groups"][0]
        if "ref_controller" in saved:
            check_controller(f"{type(self).__name__}.load_state_dict", saved["ref_controller"])
