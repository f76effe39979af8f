"""Gradients w.r.t. the inputs, or w.r.t. the input embeddings of token models.

For float inputs, example i's gradient is that of its own loss,

    grad_i = d loss_fn(model(x)_i, y_i) / d x_i    # [B, ...] like x

computed in one backward pass through ``sum_i loss_fn(model(x)[i:i+1], y[i:i+1])`` (examples do not
interact in the forward pass, so the sum separates). For integer token inputs the gradient is taken
w.r.t. the output ``e = E[tokens]`` of an ``nn.Embedding`` module (``[B, T, D]``), the quantity that
saliency maps, gradient x input attribution and gradient-guided token search (HotFlip, GCG) need.

References:
    Simonyan, Vedaldi, Zisserman. Deep Inside Convolutional Networks: Visualising Image Classification
    Models and Saliency Maps (2013), arXiv:1312.6034.
    Ebrahimi, Rao, Lowd, Dou. HotFlip: White-Box Adversarial Examples for Text Classification (2018),
    arXiv:1712.06751.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import vmap

from gradinfo.capture.per_example import check_batch, check_batchnorm
from gradinfo.core.types import LossFn
from gradinfo.core.validate import one_of


@dataclass(frozen=True)
class InputGrads:
    """Input gradients together with the values they were taken at (for gradient x input).

    Attributes:
        grads: ``[B, ...]`` gradients w.r.t. the inputs, or ``[B, T, D]`` w.r.t. the embedding output.
        values: the inputs themselves, or the embedding output, same shape as ``grads``.
    """

    grads: Tensor
    values: Tensor


def input_grads(
    model: nn.Module,
    loss_fn: LossFn,
    inputs: Tensor,
    targets: Tensor,
    *,
    embedding: nn.Module | str | None = None,
    reduce: Literal["per_example", "batch"] = "per_example",
) -> InputGrads:
    """Gradient of the loss w.r.t. the inputs (float) or the input embeddings (integer tokens).

    Caveats: with ``reduce="per_example"`` the examples must not interact in the forward pass, so
    BatchNorm in train mode is refused. Dropout draws one mask for the batch, as a plain forward does.
    ``model(inputs)`` must return a tensor whose first axis is the batch.

    Args:
        model: the network; called once as ``model(inputs)``.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, applied to one example at a time
            (``outputs[i:i+1]``, ``targets[i:i+1]``) for ``"per_example"``, to the batch for ``"batch"``.
        inputs: ``[B, ...]`` floating point inputs, or ``[B, T]`` integer tokens (then ``embedding`` is
            required).
        targets: ``[B, ...]`` targets.
        embedding: the ``nn.Embedding`` inside ``model`` whose output to differentiate against, or its
            qualified name (as ``model.named_modules()`` gives it); called exactly once per forward.
        reduce: ``"per_example"``: row i is the gradient of example i's own loss; ``"batch"``: the gradient
            of ``loss_fn(model(inputs), targets)`` (with a mean loss, ``1/B`` times the per-example one).

    Returns:
        ``InputGrads(grads, values)``: ``grads`` is ``[B, ...]`` like ``inputs`` for float inputs and
        ``[B, T, D]`` like the embedding output for tokens; ``values`` holds what the gradient was taken
        at (the inputs, or the embedding output), for gradient x input.

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``targets`` are not tensors, integer inputs come
            without ``embedding``, ``embedding`` is not an ``nn.Embedding``, or the output is not a tensor.
        ValueError: batch sizes differ or are 0, ``reduce`` is unknown, ``embedding`` is not in ``model``
            or is not called exactly once, BatchNorm is in train mode, or the loss is not a scalar.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_batch(inputs, targets)
    one_of("reduce", reduce, ("per_example", "batch"))
    if embedding is None and not inputs.is_floating_point():
        raise TypeError(
            f"inputs have dtype {inputs.dtype}, which cannot be differentiated; for token models pass "
            "embedding=<the nn.Embedding module or its name, e.g. 'embed_tokens'> to get gradients w.r.t. "
            "the embedding output"
        )
    module = None if embedding is None else _find_embedding(model, embedding)
    if reduce == "per_example":
        check_batchnorm(model)

    with torch.enable_grad():
        if module is None:
            leaf = inputs.detach().requires_grad_(True)  # [B, ...]
            outputs = model(leaf)
        else:
            seen: list[Tensor] = []

            def hook(_: nn.Module, __: tuple, out: Tensor) -> Tensor:
                seen.append(out.detach().requires_grad_(True))  # [B, T, D]
                return seen[-1]

            handle = module.register_forward_hook(hook)
            try:
                outputs = model(inputs)
            finally:
                handle.remove()
            if len(seen) != 1:
                raise ValueError(
                    f"embedding module {type(module).__name__} was called {len(seen)} times in one forward; "
                    "pass the embedding that is applied exactly once to the input tokens"
                )
            leaf = seen[0]
        if not isinstance(outputs, Tensor):
            raise TypeError(
                f"model(inputs) must return a tensor, got {type(outputs).__name__}; wrap the model so that "
                "it returns the logits"
            )
        if reduce == "per_example":
            losses = vmap(lambda o, t: loss_fn(o[None], t[None]))(outputs, targets)  # [B]
            loss = losses.sum()
        else:
            loss = loss_fn(outputs, targets)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"loss_fn must return a scalar tensor, got {shape}")
        (grads,) = torch.autograd.grad(loss, leaf, allow_unused=True)
    grads = torch.zeros_like(leaf) if grads is None else grads  # [B, ...] like leaf
    return InputGrads(grads=grads.detach(), values=leaf.detach())


def _find_embedding(model: nn.Module, embedding: nn.Module | str) -> nn.Module:
    """Resolve ``embedding`` (a module or a qualified name) to an ``nn.Embedding`` inside ``model``."""
    if isinstance(embedding, str):
        modules = dict(model.named_modules())
        if embedding not in modules:
            candidates = [n for n, m in modules.items() if isinstance(m, nn.Embedding)]
            raise ValueError(
                f"embedding {embedding!r} is not a submodule of the model; "
                f"embedding modules found: {candidates}"
            )
        module = modules[embedding]
    elif isinstance(embedding, nn.Module):
        if not any(m is embedding for m in model.modules()):
            raise ValueError(
                "embedding module is not a submodule of model; pass the model's own nn.Embedding"
            )
        module = embedding
    else:
        raise TypeError(f"embedding must be an nn.Embedding or its name, got {type(embedding).__name__}")
    if not isinstance(module, nn.Embedding):
        raise TypeError(f"embedding must be an nn.Embedding, got {type(module).__name__} for {embedding!r}")
    return module
