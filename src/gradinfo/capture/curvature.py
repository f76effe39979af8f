"""Curvature: Hessian-vector and Gauss-Newton-vector products, and the empirical Fisher diagonal.

With ``L(theta) = loss_fn(f(theta, X), Y)`` the batch loss, ``z = f(theta, X)`` the model outputs and
``J = dz/dtheta``:

- Hessian-vector product (Pearlmutter 1994): ``H v = d/dtheta <grad L(theta), v>``, computed by a second
  backward pass through the first one (reverse over reverse); the ``[P, P]`` Hessian is never formed.
- Generalised Gauss-Newton-vector product (Schraudolph 2002): ``G v = J^T H_z J v`` with
  ``H_z = d^2 L / dz^2`` the Hessian of the loss w.r.t. the outputs. ``J v`` comes from the double-VJP
  trick (``J v = d/du <J^T u, v>``, one forward pass shared with the final ``J^T (H_z J v)``), ``H_z J v``
  from a double backward through the loss alone; ``J`` is never formed. For convex losses in ``z``
  ``G`` is positive semi-definite, and ``G = H`` when ``f`` is linear in ``theta``.
- Empirical Fisher diagonal: ``F_ii = (1/B) sum_b g_b,i^2`` with ``g_b`` the gradient of example b's own
  loss: the true per-example quantity, computed from per-example gradients in chunks of examples, not
  the square of the batch gradient (which is ``(1/B^2) (sum_b g_b,i)^2``).

References:
    Pearlmutter. Fast Exact Multiplication by the Hessian (1994), Neural Computation 6(1).
    Schraudolph. Fast Curvature Matrix-Vector Products for Second-Order Gradient Descent (2002),
    Neural Computation 14(7).
    Kunstner, Hennig, Balles. Limitations of the Empirical Fisher Approximation for Natural Gradient
    Descent (2019), arXiv:1905.12558.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.capture.per_example import check_batch, per_example_grads
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import positive_int

_CHUNK_BYTES = 256 * 2**20
"""Memory budget for one chunk of per-example gradients when ``chunk_size`` is not given."""


def hvp(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, vector: Grads) -> Grads:
    """Hessian of the batch loss w.r.t. the trainable parameters times ``vector``.

    Caveats: the model runs one forward pass in its current mode (dropout masks, BatchNorm statistics);
    every operation must support double backward. The parameters' ``.grad`` fields are left untouched.

    Args:
        model: the network; the Hessian is over its parameters with ``requires_grad=True``.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar``.
        inputs: ``[B, ...]`` model inputs.
        targets: ``[B, ...]`` targets.
        vector: ``{name: [*param.shape]}``, one entry per trainable parameter, keyed like
            ``named_parameters()``.

    Returns:
        ``{name: [*param.shape]}``: ``H v`` in the same layout as ``vector``.

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``targets``/entries of ``vector`` are not tensors,
            or the loss is not a tensor.
        ValueError: batch sizes differ, ``vector`` has missing, extra or misshapen entries, the model has
            no trainable parameters, or the loss is not a scalar.
    """
    names, params = _trainable(model)
    check_batch(inputs, targets)
    vec = _check_vector(vector, names, params)
    with torch.enable_grad():
        loss = _scalar(loss_fn(model(inputs), targets))
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        keep = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        if not keep:  # the loss is at most linear in the parameters
            return {n: torch.zeros_like(p) for n, p in zip(names, params, strict=True)}
        hv = torch.autograd.grad(
            [grads[i] for i in keep], params, grad_outputs=[vec[i] for i in keep], allow_unused=True
        )
    return _as_grads(names, params, hv)


def gnvp(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, vector: Grads) -> Grads:
    """Generalised Gauss-Newton matrix of the batch loss times ``vector``: ``J^T H_z J v``.

    Caveats: ``model(inputs)`` must return a tensor (the outputs ``z`` the loss is applied to); the model
    runs one forward pass in its current mode; every operation must support double backward.

    Args:
        model: the network; ``J`` is the Jacobian of its outputs w.r.t. its trainable parameters.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; ``H_z`` is its Hessian w.r.t. ``outputs``.
        inputs: ``[B, ...]`` model inputs.
        targets: ``[B, ...]`` targets.
        vector: ``{name: [*param.shape]}``, one entry per trainable parameter.

    Returns:
        ``{name: [*param.shape]}``: ``G v`` in the same layout as ``vector``.

    Raises:
        TypeError: as for ``hvp``, or the model output is not a tensor.
        ValueError: as for ``hvp``.
    """
    names, params = _trainable(model)
    check_batch(inputs, targets)
    vec = _check_vector(vector, names, params)
    zeros = {n: torch.zeros_like(p) for n, p in zip(names, params, strict=True)}
    with torch.enable_grad():
        outputs = model(inputs)  # [B, ...]
        if not isinstance(outputs, Tensor):
            raise TypeError(f"model(inputs) must return a tensor for gnvp, got {type(outputs).__name__}")
        # J v by the double-VJP trick: J^T u is linear in u, and d/du <J^T u, v> = J v.
        probe = torch.zeros_like(outputs, requires_grad=True)  # [B, ...]
        jt_probe = torch.autograd.grad(
            outputs, params, grad_outputs=probe, create_graph=True, allow_unused=True
        )
        keep = [i for i, g in enumerate(jt_probe) if g is not None and g.requires_grad]
        if not keep:  # the outputs do not depend on the parameters
            return zeros
        (jv,) = torch.autograd.grad(
            [jt_probe[i] for i in keep], probe, grad_outputs=[vec[i] for i in keep], retain_graph=True
        )  # [B, ...]
        # H_z (J v) by double backward through the loss alone.
        z = outputs.detach().requires_grad_(True)  # [B, ...]
        (grad_z,) = torch.autograd.grad(_scalar(loss_fn(z, targets)), z, create_graph=True)  # [B, ...]
        if not grad_z.requires_grad:  # the loss is linear in the outputs: H_z = 0
            return zeros
        (h_jv,) = torch.autograd.grad(grad_z, z, grad_outputs=jv, allow_unused=True)  # [B, ...]
        if h_jv is None:
            return zeros
        gv = torch.autograd.grad(outputs, params, grad_outputs=h_jv, allow_unused=True)
    return _as_grads(names, params, gv)


def empirical_fisher_diag(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, *, chunk_size: int | None = None
) -> Grads:
    """Diagonal of the empirical Fisher ``(1/B) sum_b g_b g_b^T`` from true per-example gradients.

    Caveats: ``g_b`` is the gradient of ``loss_fn(model(inputs[b:b+1]), targets[b:b+1])`` as
    ``per_example_grads`` defines it (its rules for dropout, BatchNorm and tied weights apply). Only
    ``chunk_size`` examples' gradients (``chunk_size x P``) are held at once.

    Args:
        model: the network.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, applied to one example at a time.
        inputs: ``[B, ...]`` model inputs.
        targets: ``[B, ...]`` targets.
        chunk_size: examples per chunk; by default as many as fit in 256 MiB of per-example gradients.

    Returns:
        ``{name: [*param.shape]}``: ``(1/B) sum_b g_b^2`` per trainable parameter.

    Raises:
        TypeError: ``model`` is not a module, ``inputs``/``targets`` are not tensors, ``chunk_size`` is
            not an int.
        ValueError: batch sizes differ or are 0, ``chunk_size`` < 1, or no trainable parameters.
    """
    names, params = _trainable(model)
    check_batch(inputs, targets)
    if chunk_size is None:
        row_bytes = sum(p.numel() * p.element_size() for p in params)
        chunk_size = max(1, _CHUNK_BYTES // row_bytes)
    else:
        positive_int("chunk_size", chunk_size)
    total = {
        n: torch.zeros_like(p, memory_format=torch.contiguous_format)
        for n, p in zip(names, params, strict=True)
    }
    batch = inputs.shape[0]
    for start in range(0, batch, chunk_size):
        chunk = per_example_grads(
            model, loss_fn, inputs[start : start + chunk_size], targets[start : start + chunk_size]
        )  # {name: [b, *shape]}
        for name in names:
            total[name] += chunk[name].square().sum(0)  # [*shape]
    return {n: t / batch for n, t in total.items()}


def _trainable(model: nn.Module) -> tuple[list[str], list[Tensor]]:
    """Names and tensors of the trainable parameters, in ``named_parameters()`` order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (every parameter has requires_grad=False)")
    return [n for n, _ in named], [p for _, p in named]


def _check_vector(vector: Grads, names: list[str], params: list[Tensor]) -> list[Tensor]:
    """Return ``vector``'s entries in parameter order, cast to each parameter's dtype and device."""
    if not isinstance(vector, dict):
        raise TypeError(
            f"vector must be a dict {{name: tensor}} like named_parameters(), got {type(vector).__name__}"
        )
    not_tensors = [k for k, v in vector.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise TypeError(f"vector entries must be tensors; {not_tensors} are not")
    missing = [n for n in names if n not in vector]
    extra = [k for k in vector if k not in names]
    wrong = [
        f"{n}: {tuple(vector[n].shape)} != {tuple(p.shape)}"
        for n, p in zip(names, params, strict=True)
        if n in vector and vector[n].shape != p.shape
    ]
    if missing or extra or wrong:
        raise ValueError(
            "vector must have one entry per trainable parameter with its shape; "
            f"missing {missing}, unexpected {extra}, wrong shapes {wrong}"
        )
    return [vector[n].to(dtype=p.dtype, device=p.device) for n, p in zip(names, params, strict=True)]


def _scalar(loss: Tensor) -> Tensor:
    """Check that ``loss`` is a scalar tensor."""
    if not isinstance(loss, Tensor):
        raise TypeError(f"loss_fn must return a tensor, got {type(loss).__name__}")
    if loss.dim() != 0:
        raise ValueError(
            f"loss_fn must return a scalar, got shape {tuple(loss.shape)}; reduce with mean or sum"
        )
    return loss


def _as_grads(names: list[str], params: list[Tensor], values: tuple[Tensor | None, ...]) -> Grads:
    """Zip results with names, replacing ``None`` (parameter not reached) with zeros."""
    return {
        n: torch.zeros_like(p) if v is None else v.detach()
        for n, p, v in zip(names, params, values, strict=True)
    }
