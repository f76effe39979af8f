"""Per-example gradients (baseline torch.func path; the hook fast path is added on top)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from gradinfo.core.types import Grads, LossFn


def per_example_grads(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *, chunk_size: int | None = None
) -> Grads:
    """Gradient of ``loss_fn(model(inputs[i:i+1]), targets[i:i+1])`` for every i, stacked ``[B, *shape]``."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def loss_one(p: Grads, x: Tensor, y: Tensor) -> Tensor:
        out = functional_call(model, {**p, **frozen, **buffers}, (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_example = vmap(grad(loss_one), in_dims=(None, 0, 0), chunk_size=chunk_size)
    with torch.enable_grad():
        return per_example(params, inputs, targets)
