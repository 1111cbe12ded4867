"""Data the benchmark tasks train on; nothing is downloaded.

* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1797 images, 10 classes), split
  once with a fixed permutation into train/validation/test (1078/359/360).
* ``stdlib_text``: a character corpus made of the Python standard library's own sources (the
  sorted top-level ``*.py`` files of the running interpreter), mapped to 7-bit ASCII; its
  SHA-256 goes into the report, since it depends on the Python version.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

SPLIT_SEED = 20240905


@dataclass(frozen=True)
class Split:
    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Digits:
    train: Split
    val: Split
    test: Split


@cache
def digits() -> Digits:
    """scikit-learn's digits, scaled to [0, 1], in a fixed 60/20/20 split."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - the bench extra installs scikit-learn
        raise RuntimeError(
            "the digits tasks need scikit-learn: pip install 'adamkit[bench]'"
        ) from err
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    x, y = x[order], y[order]
    n_train, n_val = 1078, 359
    return Digits(
        train=Split(x[:n_train], y[:n_train]),
        val=Split(x[n_train : n_train + n_val], y[n_train : n_train + n_val]),
        test=Split(x[n_train + n_val :], y[n_train + n_val :]),
    )


@dataclass(frozen=True)
class Text:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    sha256: str
    files: int


VOCAB = 128


@cache
def stdlib_text(max_bytes: int = 1_200_000) -> Text:
    """The first ``max_bytes`` of the standard library's sources as ASCII codes, split
    80/10/10 into contiguous train/validation/test ranges."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, size, files = [], 0, 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        size += len(data)
        files += 1
        if size >= max_bytes:
            break
    raw = b"".join(chunks)[:max_bytes]
    codes = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(torch.int64)
    codes = torch.where(codes < VOCAB, codes, ord("?"))
    n = len(codes)
    a, b = int(0.8 * n), int(0.9 * n)
    return Text(codes[:a], codes[a:b], codes[b:], hashlib.sha256(raw).hexdigest(), files)
