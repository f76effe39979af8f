"""Type aliases shared by every layer of gradinfo.

``Grads`` is the one currency of the library: a dict of tensors keyed by parameter name, exactly as
``model.named_parameters()`` names them. Per-example and per-task gradients are the same dict with a
leading ``[B, ...]`` or ``[T, ...]`` axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

Grads = dict[str, Tensor]
"""Gradients (or any per-parameter tensors) keyed like ``named_parameters()``."""

State = Any
"""The state of a ``GradTransform``: any pytree of tensors, dicts, tuples and Python scalars."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(outputs, targets) -> scalar`` with mean or sum reduction over the batch."""
