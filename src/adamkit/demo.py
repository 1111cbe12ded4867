"""A one-minute demo: a small MLP on a synthetic two-spirals problem, one run per optimizer."""

from __future__ import annotations

import math
import time

import torch

import adamkit


def two_spirals(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=gen) * 3 * math.pi
    label = torch.randint(0, 2, (n,), generator=gen)
    sign = 1 - 2 * label.float()
    x = torch.stack((sign * t * torch.cos(t), sign * t * torch.sin(t)), dim=1) / (3 * math.pi)
    return x + 0.02 * torch.randn(x.shape, generator=gen), label


def train(name: str, steps: int, seed: int) -> tuple[float, float, float]:
    x, y = two_spirals(1024, seed)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 2),
    )
    lr = 3e-3 if name != "lamb" else 3e-2
    opt = adamkit.create(name, model.parameters(), lr=lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()
    with torch.no_grad():
        logits = model(x)
        final = loss_fn(logits, y).item()
        accuracy = (logits.argmax(1) == y).float().mean().item()
    return final, accuracy, time.perf_counter() - start


def run_demo(optimizers: str, steps: int, seed: int) -> int:
    names = [n.strip() for n in optimizers.split(",") if n.strip()]
    for name in names:
        adamkit.optimizer_class(name)  # unknown names fail before any training
    print(f"two spirals, MLP 2-64-64-2, {steps} full-batch steps, seed {seed}")
    print(f"{'optimizer':22s} {'final loss':>10s} {'accuracy':>9s} {'time':>7s}")
    for name in names:
        loss, accuracy, seconds = train(name, steps, seed)
        print(f"{name:22s} {loss:10.4f} {accuracy:9.3f} {seconds:6.2f}s")
    return 0
