"""Parameter sets and small models shared by the benchmarks."""

from __future__ import annotations

import torch


def gpt_like_named_shapes(
    dim: int = 512, layers: int = 12, vocab: int = 8192, context: int = 512
) -> list[tuple[str, tuple[int, ...]]]:
    """The parameter shapes of a GPT-2-style model (token and position embeddings, ``layers``
    blocks of attention and MLP matrices with their biases and layer norms, a final norm); about
    25M parameters with the defaults."""
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("wte.weight", (vocab, dim)),
        ("wpe.weight", (context, dim)),
    ]
    for i in range(layers):
        block = f"h.{i}."
        shapes += [
            (block + "ln_1.weight", (dim,)),
            (block + "ln_1.bias", (dim,)),
            (block + "attn.c_attn.weight", (3 * dim, dim)),
            (block + "attn.c_attn.bias", (3 * dim,)),
            (block + "attn.c_proj.weight", (dim, dim)),
            (block + "attn.c_proj.bias", (dim,)),
            (block + "ln_2.weight", (dim,)),
            (block + "ln_2.bias", (dim,)),
            (block + "mlp.c_fc.weight", (4 * dim, dim)),
            (block + "mlp.c_fc.bias", (4 * dim,)),
            (block + "mlp.c_proj.weight", (dim, 4 * dim)),
            (block + "mlp.c_proj.bias", (dim,)),
        ]
    return [*shapes, ("ln_f.weight", (dim,)), ("ln_f.bias", (dim,))]


def make_named_params(
    shapes: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype = torch.float32, seed: int = 0
) -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (name, (torch.randn(shape, generator=gen) * 0.02).to(dtype).requires_grad_())
        for name, shape in shapes
    ]


def fill_grads(params: list[torch.Tensor], seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)
