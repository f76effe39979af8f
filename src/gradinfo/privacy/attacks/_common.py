"""Argument checks and tiny seeded examples shared by the attack modules (not public API)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.core.validate import positive_int
from gradinfo.models import cnn
from gradinfo.privacy.threat import SharedUpdate, share


def check_update(model: object, update: object) -> int:
    """Check ``model`` and a FedSGD ``update`` whose gradients fit the model's parameters; return B."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (the round-start model), got {type(model).__name__}"
        )
    if not isinstance(update, SharedUpdate):
        raise TypeError(f"update must be a gradinfo.privacy.SharedUpdate, got {type(update).__name__}")
    if update.kind != "gradient":
        raise ValueError(
            f"update must be a gradient (kind 'gradient', one local step), got kind {update.kind!r} with "
            f"{update.local_steps} local steps; invert weight deltas with local_steps_inversion"
        )
    params = dict(model.named_parameters())
    bad = [n for n, g in update.grads.items() if n not in params or params[n].shape != g.shape]
    if bad:
        raise ValueError(
            f"update.grads does not fit the model: {', '.join(map(repr, bad[:5]))} are not parameters of "
            "that shape; pass the round-start model the update was computed for"
        )
    return positive_int("update.batch_size", update.batch_size)


def shape_arg(name: str, shape: object) -> tuple[int, ...]:
    """``shape`` as a tuple of ints >= 1 (one example's shape)."""
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"{name} must be a non-empty tuple of ints (one example's shape), got {shape!r}")
    for s in shape:
        positive_int(f"{name} entries", s)
    return tuple(shape)


def example_model(seed: int, dropout: float = 0.0) -> nn.Module:
    """A tiny CNN for conformance examples: ``[B, 3, 8, 8] -> [B, 4]``, train mode."""
    return cnn(
        num_classes=4, in_channels=3, image_size=8, width=2, hidden=8, dropout=dropout, seed=seed
    ).train()


def example_update(seed: int, batch: int = 1, dropout: float = 0.0) -> SharedUpdate:
    """The gradient a client of :func:`example_model` shares for a seeded random batch."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, 8, 8, generator=gen)  # [B, 3, 8, 8]
    y = torch.randint(0, 4, (batch,), generator=gen)  # [B]
    return share(example_model(seed, dropout), F.cross_entropy, x, y, seed=seed)
