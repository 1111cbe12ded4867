"""Adam-mini: Zhang et al. 2024, "Adam-mini: Use Fewer Learning Rates To Gain More",
arXiv:2406.16793."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from adamkit.core import AdamkitOptimizer, Buffer, Hyper, HyperparameterError, Scalars, State
from adamkit.core import hparams as hp
from adamkit.core.buffers import ParamInfo
from adamkit.core.reduce import channel_mean_square, mean_square
from adamkit.core.shell import real_view
from adamkit.parts.adaptive import adam_denominator, add_bias_corrections
from adamkit.parts.moments import ema_, ema_sq_
from adamkit.parts.update import descend_ratio
from adamkit.registry import register

# Name fragments of the official implementation (lower-cased substring match).
ELEMENTWISE_NAMES = ("embed", "embd", "wte", "wpe", "lm_head", "output.weight")
QUERY_NAMES = ("q_proj.weight", "wq.weight", "query.weight")
KEY_NAMES = ("k_proj.weight", "wk.weight", "key.weight")
PARTITIONS = ("auto", "element", "head", "neuron", "tensor")


def block_count(p: Tensor, info: ParamInfo) -> int | None:
    """How many second-moment blocks a parameter gets (``None``: one per element).

    ``partition="auto"``: embeddings and the output layer (by name) element-wise; query/key
    projections (by name, with ``n_heads`` given) one block per head (``n_kv_heads`` for keys);
    other tensors with ndim ≥ 2 one block per output neuron (row); the rest one block.
    Without names (plain parameters) only the shape decides: rows for ndim ≥ 2, else one block.
    ``p`` is the real view (a complex parameter is partitioned as its real view).
    """
    hyper = info.hyper
    name = (info.name or "").lower()
    partition = hyper["partition"]
    rows = p.shape[0] if p.ndim >= 1 else 1
    if partition == "auto":
        if any(fragment in name for fragment in ELEMENTWISE_NAMES):
            partition = "element"
        elif hyper["n_heads"] is not None and any(f in name for f in QUERY_NAMES + KEY_NAMES):
            partition = "head"
        else:
            partition = "neuron" if p.ndim >= 2 else "tensor"
    if partition == "element":
        return None
    if partition == "tensor" or (partition == "neuron" and p.ndim < 2):
        return 1
    if partition == "neuron":
        return rows
    heads = hyper["n_heads"]
    if any(fragment in name for fragment in KEY_NAMES) and hyper["n_kv_heads"] is not None:
        heads = hyper["n_kv_heads"]
    if heads is None or rows % heads != 0:
        raise HyperparameterError(
            f"partition 'head' of {info.name or 'a parameter'} with shape {tuple(p.shape)} needs "
            f"n_heads (n_kv_heads for keys) dividing its {rows} rows, got {heads!r}"
        )
    return heads


def block_second_moment(p: Tensor, info: ParamInfo) -> Tensor:
    """v: shaped like p for element-wise blocks, else (blocks, 1)."""
    blocks = block_count(p, info)
    if blocks is None:
        return torch.zeros_like(p)
    return p.new_zeros((blocks, 1))


@register
class AdamMini(AdamkitOptimizer):
    r"""Adam with one second-moment value per parameter block instead of per element.

    .. math::
        m ← β_1 m + (1-β_1) g;\quad v_b ← β_2 v_b + (1-β_2)\,\mathrm{mean}_{i∈b}\, g_i^2

        θ_i ← θ_i(1 - ηλ) - η · \hat m_i / (\sqrt{\hat v_{b(i)}} + ε)

    Blocks follow the Hessian structure the paper identifies (:func:`block_count`): one per
    attention head for queries and keys, one per output neuron for the other matrices, one per
    tensor for vectors, and Adam's element-wise v for embeddings and the output layer. Pass
    ``model.named_parameters()`` so names are known, and ``n_heads`` (``n_kv_heads`` for
    grouped-query keys) for per-head blocks; ``partition`` overrides the choice per group
    ("element", "head", "neuron", "tensor"). With plain parameters: one block per row for
    matrices, one per tensor otherwise. v then costs a few bytes per row instead of 4 per
    element, so the state is about half of AdamW's. Decay: decoupled (AdamW's).
    State: ``step``, ``exp_avg``, ``exp_avg_sq`` (shape (blocks, 1), or the parameter's).
    """

    name = "adam_mini"
    shaped = True
    # Vectors (the only tensors of a shaped rule the compiled path merges) have element-wise v
    # or one block: a per-tensor statistic, which merged is spread per element (k["spread"]).
    segmentable = True
    hypers: tuple[Hyper, ...] = (
        hp.lr(1e-3),
        hp.adam_betas(0.9, 0.999),
        hp.eps(1e-8),
        hp.weight_decay(0.0),
        hp.weight_decay_mode("decoupled"),
        Hyper("n_heads", None, hp.optional(hp.positive_int()), "attention heads (query blocks)"),
        Hyper("n_kv_heads", None, hp.optional(hp.positive_int()), "key heads (grouped query)"),
        Hyper("partition", "auto", hp.choice(*PARTITIONS), "how parameters are split into blocks"),
    )
    buffers = (Buffer("exp_avg"), Buffer("exp_avg_sq", init=block_second_moment, nonnegative=True))

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        hyper: Mapping[str, Any] = {**self.defaults, **group}
        try:
            for p in group["params"]:
                block_second_moment(real_view(p.detach()).to("meta"), self._info(p, group, hyper))
        except HyperparameterError as err:
            self.param_groups.pop()
            raise HyperparameterError(f"{type(self).__name__}: {err}") from None

    def prepass_reads_of(self, p: Tensor) -> tuple[str, ...]:
        """One block over the whole tensor: the mean of g² over it precedes every element's
        update, a pass over g of its own. Per-row blocks read a row while it is in cache."""
        v = self.state[p].get("exp_avg_sq")
        one_block = torch.is_tensor(v) and v.numel() == 1 and p.numel() > 1
        return ("grad",) if one_block else ()

    scalars = staticmethod(add_bias_corrections)

    @staticmethod
    def rule(p: Tensor, g: Tensor, s: State, k: Scalars) -> Tensor:
        m = ema_(s["exp_avg"], g, k["beta1"])
        v = s["exp_avg_sq"]
        if "exp_avg_sq" in k.get("spread", ()):  # merged vectors of one block each
            v = ema_(v, mean_square(g), k["beta2"])
        elif v.shape == p.shape:
            v = ema_sq_(v, g, k["beta2"])
        else:  # one row of p per block; the block's denominator broadcasts over its row
            blocks = v.shape[0]
            v = ema_(v, channel_mean_square(g.reshape(blocks, -1)), k["beta2"])
            denom, scale = adam_denominator(v, k)
            rows = p.reshape(blocks, -1)  # a view of p, or a copy where p is not contiguous
            descend_ratio(rows, m.reshape(blocks, -1), denom, k, scale)
            return p if p.is_contiguous() else rows.view(p.shape)
        denom, scale = adam_denominator(v, k)
        return descend_ratio(p, m, denom, k, scale)
