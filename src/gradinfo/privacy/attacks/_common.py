"""Argument checks and tiny seeded examples shared by the attack modules (not public API)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gradinfo.core.validate import positive_int
from gradinfo.models import cnn
from gradinfo.privacy.threat import SharedUpdate, share


def check_shared(model: object, update: object) -> tuple[nn.Module, SharedUpdate]:
    """Check that ``model`` is an ``nn.Module`` and ``update`` a ``SharedUpdate`` (types only, any kind).

    Returns:
        ``(model, update)``, unchanged.

    Raises:
        TypeError: either has the wrong type.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module (the round-start model), got {type(model).__name__}"
        )
    if not isinstance(update, SharedUpdate):
        raise TypeError(f"update must be a gradinfo.privacy.SharedUpdate, got {type(update).__name__}")
    return model, update


def check_update(model: object, update: object) -> int:
    """Check ``model`` and a FedSGD ``update`` whose gradients fit the model's parameters; return B.

    Raises:
        TypeError: ``model`` or ``update`` of the wrong type.
        ValueError: an update that is not one gradient step, or whose gradients do not fit the model.
    """
    model, update = check_shared(model, update)
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


def check_attack_args(
    model: object,
    update: object,
    *,
    input_shape: object,
    iterations: object,
    restarts: object = 1,
    gradient: bool = True,
) -> tuple[int, tuple[int, ...]]:
    """The checks every optimisation attack makes before any work; return ``(B, input_shape)``.

    Args:
        model: must be an ``nn.Module``.
        update: must be a ``SharedUpdate``; with ``gradient`` also a one-step gradient that fits ``model``
            (:func:`check_update`), otherwise any kind and shape (the attack checks the rest itself).
        input_shape: one example's shape, a non-empty tuple of ints >= 1.
        iterations: optimisation steps, an int >= 1.
        restarts: random initialisations, an int >= 1.
        gradient: whether ``update`` must be a gradient of ``model``'s parameters.

    Returns:
        ``update.batch_size`` (an int >= 1) and ``input_shape`` as a tuple.

    Raises:
        TypeError, ValueError: naming the first bad argument, the value received and what was expected.
    """
    if gradient:
        batch = check_update(model, update)
    else:
        batch = positive_int("update.batch_size", check_shared(model, update)[1].batch_size)
    shape = shape_arg("input_shape", input_shape)
    positive_int("iterations", iterations)
    positive_int("restarts", restarts)
    return batch, shape


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
