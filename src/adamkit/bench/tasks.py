"""The benchmark's tasks: real (small) learning problems and two illustrative 2-D functions.

Every neural task gives: a model built from a seed, minibatches whose order is fixed by the
seed, an evaluation on the validation or test split, a target fixed in advance (for
time-to-target), and its step budgets (default and ``--full``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from adamkit.bench.data import VOCAB, digits, stdlib_text


@dataclass(frozen=True)
class Target:
    """Time-to-target: the first evaluation where ``metric`` reaches ``value``."""

    metric: str
    value: float
    higher_is_better: bool

    def reached(self, metrics: dict[str, float]) -> bool:
        v = metrics[self.metric]
        return v >= self.value if self.higher_is_better else v <= self.value

    def describe(self) -> str:
        return f"{self.metric} {'>=' if self.higher_is_better else '<='} {self.value:g}"


class NeuralTask:
    name: str = ""
    description: str = ""
    steps: int = 0
    full_steps: int = 0
    eval_every: int = 0
    batch: int = 0
    target: Target
    metric: str = ""  # the reported test metric besides the loss ("acc" or "bpc")
    higher_is_better: bool = False
    # Every optimizer's grid on this task is centred on its reference lr times this factor (the
    # same for all optimizers, fixed before any run): short runs on small data want larger steps.
    lr_scale: float = 1.0

    def model(self, seed: int) -> nn.Module:
        raise NotImplementedError

    def batches(self, seed: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        raise NotImplementedError

    def size(self, split: str) -> int:
        raise NotImplementedError

    def recompute_batchnorm(self, model: nn.Module, seed: int) -> None:
        """Reset BatchNorm statistics and re-estimate them on training batches (needed after
        swapping in a schedule-free evaluation point); a no-op without BatchNorm."""
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        was_training = model.training
        model.train()
        draw = self.batches(seed + 7919)
        device = next(model.parameters()).device
        with torch.no_grad():
            for _ in range(20):
                model(draw()[0].to(device))
        model.train(was_training)


# ------------------------------------------------------------------------------------ digits


class DigitsTask(NeuralTask):
    eval_every = 25
    batch = 64
    lr_scale = 10.0
    metric = "acc"
    higher_is_better = True
    target = Target("val_acc", 0.95, True)

    def batches(self, seed: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        data = digits().train
        gen = torch.Generator().manual_seed(seed)
        order: list[torch.Tensor] = []

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            if not order or len(order[0]) < self.batch:
                order[:] = [torch.randperm(len(data.y), generator=gen)]
            idx, order[0] = order[0][: self.batch], order[0][self.batch :]
            return self.inputs(data.x[idx]), data.y[idx]

        return draw

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        data = getattr(digits(), split)
        device = next(model.parameters()).device
        x, y = self.inputs(data.x).to(device), data.y.to(device)
        model.eval()
        with torch.no_grad():
            logits = model(x)
            loss = F.cross_entropy(logits, y).item()
            acc = (logits.argmax(1) == y).float().mean().item()
        model.train()
        return {f"{split}_loss": loss, f"{split}_acc": acc}

    def size(self, split: str) -> int:
        return len(getattr(digits(), split).y)


class DigitsMLP(DigitsTask):
    name = "digits-mlp"
    description = "MLP 64-128-10 (ReLU) on scikit-learn's 8x8 digits, minibatch 64"
    steps = 300
    full_steps = 1500

    def model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


class DigitsCNN(DigitsTask):
    name = "digits-cnn"
    description = "conv 16-32 with BatchNorm, global pooling, linear; 8x8 digits, minibatch 64"
    steps = 300
    full_steps = 1500

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, 1, 8, 8)

    def model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )


# ----------------------------------------------------------------------------------- char-lm


class Block(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln_1(x)

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q_proj(h)), split(self.k_proj(h)), split(self.v_proj(h))
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(att.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln_2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int, dim: int, layers: int, heads: int, context: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(context, dim)
        self.h = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


class CharLM(NeuralTask):
    name = "char-lm"
    description = (
        "character-level transformer (2 layers, d=64, 4 heads, context 32, minibatch 16) on "
        "the Python standard library's sources; validation bits per character"
    )
    steps = 300
    full_steps = 3000
    eval_every = 50
    batch = 16
    context = 32
    lr_scale = 3.0
    dim, layers, heads = 64, 2, 4
    metric = "bpc"
    higher_is_better = False
    target = Target("val_bpc", 3.3, False)
    eval_windows = 64

    def model(self, seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return TinyGPT(VOCAB, self.dim, self.layers, self.heads, self.context)

    def batches(self, seed: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        text = stdlib_text().train
        gen = torch.Generator().manual_seed(seed)

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            starts = torch.randint(0, len(text) - self.context - 1, (self.batch,), generator=gen)
            window = torch.stack([text[s : s + self.context + 1] for s in starts.tolist()])
            return window[:, :-1], window[:, 1:]

        return draw

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x).reshape(-1, VOCAB), y.reshape(-1))

    def _windows(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        text = getattr(stdlib_text(), split)
        step = (len(text) - self.context - 1) // self.eval_windows
        window = torch.stack(
            [text[i * step : i * step + self.context + 1] for i in range(self.eval_windows)]
        )
        return window[:, :-1], window[:, 1:]

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        device = next(model.parameters()).device
        x, y = (t.to(device) for t in self._windows(split))
        model.eval()
        with torch.no_grad():
            loss = self.loss(model, x, y).item()
        model.train()
        return {f"{split}_loss": loss, f"{split}_bpc": loss / math.log(2)}

    def size(self, split: str) -> int:
        return self.eval_windows * self.context


NEURAL: dict[str, NeuralTask] = {t.name: t for t in (DigitsMLP(), DigitsCNN(), CharLM())}


# ------------------------------------------------------------------------------- 2-D toys


@dataclass(frozen=True)
class ToyTask:
    name: str
    start: tuple[float, float]
    minimum: tuple[float, float]
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 of the plot
    steps: int

    def value(self, p: torch.Tensor) -> torch.Tensor:
        x, y = p[..., 0], p[..., 1]
        if self.name == "rosenbrock":
            return (1 - x) ** 2 + 100 * (y - x * x) ** 2
        return (
            20 + x * x - 10 * torch.cos(2 * math.pi * x) + y * y - 10 * torch.cos(2 * math.pi * y)
        )

    def grad(self, p: torch.Tensor) -> torch.Tensor:
        x, y = p[0], p[1]
        if self.name == "rosenbrock":
            return torch.stack((-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)))
        return torch.stack(
            (
                2 * x + 20 * math.pi * torch.sin(2 * math.pi * x),
                2 * y + 20 * math.pi * torch.sin(2 * math.pi * y),
            )
        )


TOYS: dict[str, ToyTask] = {
    "rosenbrock": ToyTask("rosenbrock", (-1.5, 2.0), (1.0, 1.0), (-2.0, 2.0, -1.0, 3.0), 1000),
    "rastrigin": ToyTask("rastrigin", (-2.2, 2.4), (0.0, 0.0), (-3.0, 3.0, -3.0, 3.0), 500),
}
