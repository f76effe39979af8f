"""Gradient of the batch loss: the plain minibatch gradient as a Grads dict, with the loss it came from.

With ``L(theta) = loss_fn(f(theta, X), Y)`` the loss of one batch (a mean over its examples with the usual
``mean`` reduction), this is ``grad_theta L``: one forward and one backward pass, the quantity a federated
client shares and the ``g`` of Taylor importance. Per-example gradients are in
:func:`gradinfo.capture.per_example_grads`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradinfo.capture.per_example import check_batch
from gradinfo.core.types import Grads, LossFn


@dataclass(frozen=True)
class BatchGrads:
    """The batch loss and its gradient.

    Attributes:
        loss: ``[]`` the batch loss (detached).
        grads: ``{name: [*param.shape]}`` its gradient w.r.t. each trainable parameter (zeros where the
            loss does not reach the parameter).
    """

    loss: Tensor
    grads: Grads


def batch_grads(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> BatchGrads:
    """Gradient of ``loss_fn(model(inputs), targets)`` w.r.t. the model's trainable parameters.

    Caveats: the model runs one forward pass in its current mode (dropout masks, BatchNorm statistics);
    gradients are taken even under ``torch.no_grad()``; the parameters' ``.grad`` fields are left untouched.

    Args:
        model: the network; the gradient is over its parameters with ``requires_grad=True``.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        inputs: ``[B, ...]`` model inputs.
        targets: ``[B, ...]`` targets.

    Returns:
        A :class:`BatchGrads`: the loss ``[]`` and ``{name: [*param.shape]}`` keyed like
        ``named_parameters()`` (trainable only).

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``targets`` are not tensors, ``loss_fn`` is not
            callable or does not return a tensor.
        ValueError: batch sizes differ or are empty, the model has no trainable parameters, or the loss is
            not a scalar.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}"
        )
    check_batch(inputs, targets)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (every parameter has requires_grad=False)")
    params = [p for _, p in named]
    with torch.enable_grad():
        loss = loss_fn(model(inputs), targets)
        if not isinstance(loss, Tensor):
            raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
        if loss.dim() != 0:
            raise ValueError(
                f"loss_fn must return a scalar, got shape {tuple(loss.shape)}; reduce with mean or sum"
            )
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return BatchGrads(
        loss.detach(),
        {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(named, grads, strict=True)},
    )
