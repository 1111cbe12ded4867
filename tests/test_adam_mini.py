"""Adam-mini's partition into blocks, its memory, and parity for a named transformer-like model."""

from __future__ import annotations

import pytest
import torch
from reference import REFERENCES

import adamkit
from adamkit.bench.memory import state_bytes


class TinyAttention(torch.nn.Module):
    def __init__(self, dim: int = 8, heads: int = 2, kv_heads: int = 1, vocab: int = 11) -> None:
        super().__init__()
        head_dim = dim // heads
        self.embed = torch.nn.Embedding(vocab, dim)
        self.q_proj = torch.nn.Linear(dim, dim, bias=False)
        self.k_proj = torch.nn.Linear(dim, kv_heads * head_dim, bias=False)
        self.v_proj = torch.nn.Linear(dim, kv_heads * head_dim)
        self.norm = torch.nn.LayerNorm(dim)
        self.lm_head = torch.nn.Linear(dim, vocab, bias=False)


def partition(model: torch.nn.Module, **hyper: object) -> dict[str, tuple[int, ...]]:
    opt = adamkit.AdamMini(model.named_parameters(), **hyper)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    return {name: tuple(opt.state[p]["exp_avg_sq"].shape) for name, p in model.named_parameters()}


def test_named_partition_follows_the_model_structure() -> None:
    torch.manual_seed(0)
    shapes = partition(TinyAttention(), n_heads=2, n_kv_heads=1)
    assert shapes == {
        "embed.weight": (11, 8),  # element-wise, as Adam
        "q_proj.weight": (2, 1),  # one block per query head
        "k_proj.weight": (1, 1),  # one block per key head (grouped query)
        "v_proj.weight": (4, 1),  # one block per output neuron
        "v_proj.bias": (1, 1),  # one block per vector
        "norm.weight": (1, 1),
        "norm.bias": (1, 1),
        "lm_head.weight": (11, 8),  # element-wise, as Adam
    }


def test_without_heads_queries_fall_back_to_neurons_and_plain_params_use_shapes() -> None:
    torch.manual_seed(0)
    assert partition(TinyAttention())["q_proj.weight"] == (8, 1)
    model = TinyAttention()
    opt = adamkit.AdamMini(model.parameters())
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[model.embed.weight]["exp_avg_sq"].shape == (11, 1)
    assert opt.state[model.norm.weight]["exp_avg_sq"].shape == (1, 1)


def test_partition_override_per_group() -> None:
    torch.manual_seed(0)
    model = TinyAttention()
    opt = adamkit.AdamMini(
        [
            {"params": [model.q_proj.weight], "partition": "element"},
            {"params": [model.k_proj.weight, model.v_proj.weight], "partition": "tensor"},
        ]
    )
    for p in (model.q_proj.weight, model.k_proj.weight, model.v_proj.weight):
        p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[model.q_proj.weight]["exp_avg_sq"].shape == (8, 8)
    assert opt.state[model.v_proj.weight]["exp_avg_sq"].shape == (1, 1)


def test_heads_that_do_not_divide_the_rows_are_refused_at_construction() -> None:
    model = TinyAttention()
    with pytest.raises(
        ValueError, match=r"q_proj.weight with shape \(8, 8\) needs n_heads .* got 3"
    ):
        adamkit.AdamMini(model.named_parameters(), n_heads=3)


def test_state_is_about_half_of_adamw_on_a_transformer_block() -> None:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(64, 4, 256, batch_first=True)
    params = list(layer.named_parameters())
    n = sum(p.numel() for _, p in params)
    mini = adamkit.AdamMini(params, n_heads=4)
    adamw = adamkit.AdamW([p for _, p in params])
    for p in layer.parameters():
        p.grad = torch.randn_like(p)
    mini.step()
    adamw.step()
    assert state_bytes(adamw) / n == pytest.approx(8, abs=0.01)
    assert 4.0 <= state_bytes(mini) / n <= 4.2


def test_named_model_trajectory_matches_the_reference() -> None:
    torch.manual_seed(0)
    model = TinyAttention().double()
    params = [p for _, p in model.named_parameters()]
    blocks = [None, 2, 1, 4, 1, 1, 1, None]
    theirs = [p.detach().clone() for p in params]
    opt = adamkit.AdamMini(
        model.named_parameters(), n_heads=2, n_kv_heads=1, weight_decay=0.1, lr=1e-2
    )
    ref = REFERENCES["adam_mini"](theirs, weight_decay=0.1, lr=1e-2, blocks=blocks)
    gen = torch.Generator().manual_seed(1)
    for _ in range(25):
        grads = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        ref.step(grads)
    for p, q in zip(params, theirs, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=1e-10, atol=1e-12)
