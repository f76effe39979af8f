"""Shared set-up of the optimizer claim checks: a tiny Llama trained on the byte-level ``text`` corpus.

:func:`train` builds ``gradinfo.models.tiny_llama`` with a fixed seed, draws seeded mini-batches of
``BLOCK``-byte windows from the train split, runs ``steps`` optimizer steps and returns the mean
next-byte cross-entropy on a fixed held-out set of windows from the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gradinfo.datasets import load
from gradinfo.models import tiny_llama

BLOCK = 64
BATCH = 16
EVAL_WINDOWS = 64


@dataclass(frozen=True)
class Run:
    """What one training run measured: held-out loss after training, and the training losses."""

    eval_loss: float
    train_losses: tuple[float, ...]


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=x).logits  # [B, T, V]
    return nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())


def train(
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    steps: int,
    seed: int = 0,
    hidden_size: int = 64,
    num_layers: int = 2,
    prepare: Callable[[nn.Module], object] | None = None,
) -> Run:
    """Train a fresh seeded tiny Llama with ``make_optimizer(model)`` for ``steps`` steps.

    Args:
        make_optimizer: builds the optimizer from the model.
        steps: optimizer steps.
        seed: seeds the model, the data split and the batch order.
        hidden_size, num_layers: the model's size.
        prepare: called on the model before the optimizer is built (e.g. to swap in INT8 layers).

    Returns:
        A :class:`Run`.
    """
    train_set = load("text", split="train", seed=seed, block_size=BLOCK, max_bytes=200_000)
    test_set = load("text", split="test", seed=seed, block_size=BLOCK, max_bytes=BLOCK * EVAL_WINDOWS + 1)
    model = tiny_llama(hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    if prepare is not None:
        prepare(model)
    optimizer = make_optimizer(model)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(len(train_set.x), (BATCH,), generator=gen)  # [B]
        optimizer.zero_grad(set_to_none=True)
        loss = _loss(model, train_set.x[idx], train_set.y[idx])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        eval_loss = _loss(model, test_set.x[:EVAL_WINDOWS], test_set.y[:EVAL_WINDOWS]).item()
    return Run(eval_loss, tuple(losses))
