"""Norm clipping: one global norm over all tensors, or one norm per example (the DP-SGD core).

Global clipping (Pascanu, Mikolov and Bengio, "On the difficulty of training recurrent neural networks",
2013) rescales the whole gradient ``g`` (all tensors flattened into one vector) to

    g <- g * min(1, C / ||g||_2).

Per-example clipping (Abadi et al., "Deep Learning with Differential Privacy", 2016, arXiv:1607.00133,
Algorithm 1) clips every example's gradient ``g_i`` (its norm taken over ALL tensors) and sums:

    g_bar = sum_i g_i * min(1, C / ||g_i||_2).

DP-SGD is then ``chain(clip_per_example(C), add_gaussian_noise(sigma * C, seed), scale(1 / B))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradinfo.core.types import Grads, State
from gradinfo.core.validate import positive
from gradinfo.transform.base import GradTransform


def _accumulation_dtype(t: Tensor) -> torch.dtype:
    """At least float32, so half-precision gradients do not overflow their squared norm."""
    return torch.promote_types(t.dtype, torch.float32)


def global_norm(grads: Grads) -> Tensor:
    """The L2 norm of all tensors in ``grads`` flattened into one vector (a 0-dim tensor)."""
    if not grads:
        return torch.zeros(())
    tensors = list(grads.values())
    device = tensors[0].device
    norms = [torch.linalg.vector_norm(g, dtype=_accumulation_dtype(g)).to(device) for g in tensors]  # [] each
    dtype = norms[0].dtype
    for n in norms[1:]:
        dtype = torch.promote_types(dtype, n.dtype)
    return torch.linalg.vector_norm(torch.stack([n.to(dtype) for n in norms]))  # []


def _clip_factor(norm: Tensor, max_norm: float) -> Tensor:
    """``min(1, C / norm)`` elementwise; exactly 1 where ``norm <= C`` (so unclipped input is unchanged)."""
    return torch.where(norm > max_norm, max_norm / norm.clamp_min(torch.finfo(norm.dtype).tiny), 1.0)


def clip_by_global_norm(max_norm: float) -> GradTransform:
    """Rescale all gradients together so their joint L2 norm is at most ``max_norm``.

    ``g <- g * min(1, C / ||g||_2)`` with ``||g||_2`` over every tensor; gradients already within the
    bound are returned unchanged (multiplied by exactly 1). Stateless (state ``()``).

    Args:
        max_norm: ``C > 0``.

    Returns:
        A ``GradTransform``; its output has the input's keys and shapes.

    Raises:
        TypeError: ``max_norm`` is not a number.
        ValueError: ``max_norm`` is not a finite number > 0.
    """
    max_norm = positive("max_norm", max_norm)

    def init(params: Grads) -> State:
        return ()

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        if not grads:
            return {}, state
        factor = _clip_factor(global_norm(grads), max_norm)  # []
        return {n: g * factor.to(device=g.device, dtype=g.dtype) for n, g in grads.items()}, state

    return GradTransform(init, update)


def _per_example_norms(grads: Grads) -> Tensor:
    """L2 norm of every example's gradient over all tensors: ``grads[name]`` is ``[B, ...]``; returns ``[B]``.

    Raises:
        ValueError: a tensor has no batch axis, or the tensors disagree on ``B``.
    """
    zero_dim = sorted(name for name, g in grads.items() if g.dim() == 0)
    if zero_dim:
        raise ValueError(
            f"clip_per_example expects per-example gradients with a leading batch axis [B, ...]; "
            f"{zero_dim} are 0-dim; capture them with gradinfo.per_example_grads"
        )
    batch = {name: g.shape[0] for name, g in grads.items()}
    if len(set(batch.values())) > 1:
        raise ValueError(
            f"clip_per_example expects one batch size B across tensors, got leading sizes {batch}"
        )
    tensors = list(grads.values())
    device = tensors[0].device
    dtype = _accumulation_dtype(tensors[0])
    for g in tensors[1:]:
        dtype = torch.promote_types(dtype, _accumulation_dtype(g))
    squares = [
        g.reshape(g.shape[0], -1).to(device=device, dtype=dtype).square().sum(1) for g in tensors
    ]  # [B] each
    return torch.stack(squares).sum(0).sqrt()  # [B]


def clip_per_example(max_norm: float) -> GradTransform:
    """Clip each example's gradient to L2 norm <= ``max_norm`` (over all tensors), then sum over the batch.

    Implements ``g_bar = sum_i g_i * min(1, C / ||g_i||_2)`` of DP-SGD (Abadi et al., "Deep Learning with
    Differential Privacy", 2016). Add noise of std ``sigma * C`` and divide by the (expected) batch size
    after it. Stateless (state ``()``). It cannot act on ``p.grad`` (which has no batch axis); feed it
    per-example gradients from :func:`gradinfo.per_example_grads`.

    Args:
        max_norm: ``C > 0``.

    Returns:
        A ``GradTransform`` mapping ``{name: [B, *shape]}`` to ``{name: [*shape]}``.

    Raises:
        TypeError: ``max_norm`` is not a number.
        ValueError: ``max_norm`` is not a finite number > 0; at update, a tensor without a batch axis or
            tensors with different batch sizes.
    """
    max_norm = positive("max_norm", max_norm)

    def init(params: Grads) -> State:
        return ()

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        if not grads:
            return {}, state
        factor = _clip_factor(_per_example_norms(grads), max_norm)  # [B]
        out = {}
        for name, g in grads.items():
            f = factor.to(device=g.device, dtype=g.dtype).view(-1, *([1] * (g.dim() - 1)))  # [B, 1, ...]
            out[name] = (g * f).sum(0)  # [*shape]
        return out, state

    return GradTransform(init, update)
