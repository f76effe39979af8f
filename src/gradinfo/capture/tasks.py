"""Per-task gradients: one gradient per loss term over the same shared parameters.

Multi-task methods (gradient surgery, MGDA, task-affinity scores) need ``g_t = dL_t/dtheta`` for each of
T losses computed from one forward pass. Stacking them gives the per-task Jacobian

    G = [g_1, ..., g_T]^T = J_theta(L)    # [T, P]

whose row t is ``e_t^T J``, i.e. a vector-Jacobian product with the one-hot cotangent ``e_t``. All T
products are computed in one batched backward pass (``torch.autograd.grad(..., is_grads_batched=True)``,
which vmaps the backward over the rows of the identity), falling back to T ordinary backward passes
where an operation in the graph has no batching rule.

References:
    Yu, Kumar, Gupta, Levine, Hausman, Finn. Gradient Surgery for Multi-Task Learning (PCGrad, 2020),
    arXiv:2001.06782 (a consumer of per-task gradients).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gradinfo.core.types import Grads


def task_grads(model: nn.Module, losses: Sequence[Tensor] | Tensor) -> Grads:
    """Gradient of each of T scalar losses w.r.t. the model's trainable parameters.

    Parameters that a loss does not reach get a zero gradient for that loss. The parameters' ``.grad``
    fields are left untouched, and the autograd graph is kept (it is freed when the caller drops the
    losses), so the caller may still backward through them.

    Args:
        model: the module whose trainable parameters (``requires_grad=True``) the losses depend on.
        losses: T scalar loss tensors from one forward pass (a sequence of 0-d tensors, or a 1-D tensor
            ``[T]``), each attached to the autograd graph.

    Returns:
        ``{name: [T, *param.shape]}`` keyed like ``model.named_parameters()`` (trainable only), row t the
        gradient of ``losses[t]``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``; ``losses`` is not a tensor or sequence of tensors,
            or is not floating point.
        ValueError: ``losses`` is empty, a loss is not a scalar, no loss requires grad, or the model has
            no trainable parameters.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    stacked = _stack_losses(losses)  # [T]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (every parameter has requires_grad=False)")
    names = [n for n, _ in named]
    params = [p for _, p in named]
    num_tasks = stacked.shape[0]
    try:
        eye = torch.eye(num_tasks, dtype=stacked.dtype, device=stacked.device)  # [T, T]
        rows = torch.autograd.grad(
            stacked, params, grad_outputs=eye, is_grads_batched=True, retain_graph=True, allow_unused=True
        )  # each [T, *shape] or None
    except RuntimeError:  # an op without a batching rule: one backward per loss
        per_task = [
            torch.autograd.grad(stacked[t], params, retain_graph=True, allow_unused=True)
            for t in range(num_tasks)
        ]
        rows = tuple(
            None
            if all(g[i] is None for g in per_task)
            else torch.stack([torch.zeros_like(p) if g[i] is None else g[i] for g in per_task])
            for i, p in enumerate(params)
        )
    return {
        n: (torch.zeros((num_tasks, *p.shape), dtype=p.dtype, device=p.device) if g is None else g.detach())
        for n, p, g in zip(names, params, rows, strict=True)
    }


def _stack_losses(losses: Sequence[Tensor] | Tensor) -> Tensor:
    """Validate ``losses`` and return them stacked as a 1-D tensor ``[T]``."""
    if isinstance(losses, Tensor):
        if losses.dim() != 1:
            raise ValueError(
                f"losses as a tensor must be 1-D [T], got shape {tuple(losses.shape)}; "
                "pass one scalar loss per task"
            )
        stacked = losses
    elif isinstance(losses, Sequence) and not isinstance(losses, (str, bytes)):
        bad = [i for i, loss in enumerate(losses) if not isinstance(loss, Tensor)]
        if bad:
            raise TypeError(f"losses must hold tensors; entries {bad} are not tensors")
        not_scalar = [(i, tuple(loss.shape)) for i, loss in enumerate(losses) if loss.dim() != 0]
        if not_scalar:
            raise ValueError(
                f"every loss must be a scalar (0-d) tensor; got shapes {not_scalar} (index, shape); "
                "reduce each loss with .mean() or .sum() first"
            )
        stacked = torch.stack(list(losses)) if len(losses) else torch.empty(0)
    else:
        raise TypeError(
            f"losses must be a sequence of scalar tensors or a 1-D tensor, got {type(losses).__name__}"
        )
    if stacked.numel() == 0:
        raise ValueError("losses is empty; pass at least one scalar loss")
    if not stacked.is_floating_point():
        raise TypeError(f"losses must be floating point, got dtype {stacked.dtype}")
    if not stacked.requires_grad:
        raise ValueError(
            "losses do not require grad: compute them from the model's outputs with autograd enabled "
            "(not under torch.no_grad()) and with trainable parameters"
        )
    return stacked
