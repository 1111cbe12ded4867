"""Float64 parity with torch.optim for the algorithms torch has (25 steps, rtol 1e-10)."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_close_lists, grad_stream, make_params, run

import adamkit

CASES = [
    ("adam", {}, torch.optim.Adam, {}),
    (
        "adam",
        {"lr": 3e-2, "weight_decay": 0.1},
        torch.optim.Adam,
        {"lr": 3e-2, "weight_decay": 0.1},
    ),
    (
        "adam",
        {"amsgrad": True, "betas": (0.8, 0.99)},
        torch.optim.Adam,
        {"amsgrad": True, "betas": (0.8, 0.99)},
    ),
    (
        "adam",
        {"maximize": True, "weight_decay": 0.05},
        torch.optim.Adam,
        {"maximize": True, "weight_decay": 0.05},
    ),
    (
        "adam",
        {"weight_decay": 0.1, "weight_decay_mode": "decoupled"},
        torch.optim.AdamW,
        {"weight_decay": 0.1},
    ),
    ("adamw", {}, torch.optim.AdamW, {}),
    (
        "adamw",
        {"lr": 2e-2, "weight_decay": 0.3, "amsgrad": True, "eps": 1e-6},
        torch.optim.AdamW,
        {"lr": 2e-2, "weight_decay": 0.3, "amsgrad": True, "eps": 1e-6},
    ),
    ("radam", {}, torch.optim.RAdam, {}),
    (
        "radam",
        {"lr": 1e-2, "weight_decay": 0.1, "betas": (0.9, 0.9)},
        torch.optim.RAdam,
        {"lr": 1e-2, "weight_decay": 0.1, "betas": (0.9, 0.9)},
    ),
    (
        "radam",
        {"weight_decay": 0.1, "weight_decay_mode": "decoupled", "betas": (0.7, 0.8)},
        torch.optim.RAdam,
        {"weight_decay": 0.1, "decoupled_weight_decay": True, "betas": (0.7, 0.8)},
    ),
]


@pytest.mark.parametrize(("name", "ours", "theirs_cls", "theirs"), CASES)
def test_float64_parity_with_torch(name: str, ours: dict, theirs_cls: type, theirs: dict) -> None:
    a, b = make_params(), make_params()
    grads = grad_stream(a)
    run(adamkit.create(name, a, **ours), a, grads, 25)
    run(theirs_cls(b, foreach=False, **theirs), b, grads, 25)
    assert_close_lists([p.detach() for p in a], [p.detach() for p in b])


def test_amsgrad_state_matches_torch_names_and_values() -> None:
    a, b = make_params(), make_params()
    grads = grad_stream(a)
    ours = adamkit.Adam(a, amsgrad=True)
    theirs = torch.optim.Adam(b, amsgrad=True, foreach=False)
    run(ours, a, grads, 7)
    run(theirs, b, grads, 7)
    for pa, pb in zip(a, b, strict=True):
        sa, sb = ours.state[pa], theirs.state[pb]
        assert sa["step"] == int(sb["step"]) == 7
        for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            torch.testing.assert_close(sa[key], sb[key], rtol=1e-12, atol=1e-15)
