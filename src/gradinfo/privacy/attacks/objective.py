"""The terms of the gradient-matching objective: the client's update U, the distances D, the TV prior.

An optimisation attack minimises ``D(U(theta; x, y), g*) + alpha_TV TV(x)`` (see
:mod:`gradinfo.privacy.attacks.matching`). Each term here is a plain function; the engine takes any
:data:`UpdateFn` and any :data:`Distance`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from gradinfo.core.types import Grads

UpdateFn = Callable[[nn.Module, Grads, dict[str, Tensor], Tensor, Tensor], Grads]
"""``update_fn(net, params, buffers, inputs [B, ...], targets) -> Grads``: the client's update as a
differentiable function of the parameters, written with ``torch.func`` so that it can be ``vmap``-ed."""

Distance = Callable[[Grads, Grads, float | None], Tensor]
"""``distance(grads, target, target_norm) -> scalar``; ``target_norm`` is ``||g*||`` when known, else None."""

_COS_EPS = 1e-8


def loss_gradient(
    net: nn.Module, params: Grads, buffers: dict[str, Tensor], inputs: Tensor, targets: Tensor
) -> Grads:
    """The batch-mean cross-entropy gradient at ``params``, differentiable and ``vmap``-compatible.

    Args:
        net: the module whose forward is used (its own parameters are replaced by ``params``).
        params: ``{name: tensor}`` for the parameters to differentiate (the shared ones).
        buffers: every other tensor ``functional_call`` needs (frozen parameters, buffers, masks).
        inputs: ``[B, ...]``.
        targets: hard labels ``[B]`` (int) or class probabilities ``[B, K]``.

    Returns:
        ``{name: grad}`` with the shapes of ``params``; differentiable w.r.t. ``inputs``, ``targets`` and
        ``buffers`` (it is ``torch.func.grad`` of the loss).
    """

    def loss(p: Grads) -> Tensor:
        out = functional_call(net, {**p, **buffers}, (inputs,))  # [B, K]
        return F.cross_entropy(out, targets)

    return torch.func.grad(loss)(params)


def cosine_distance(grads: Grads, target: Grads, target_norm: float | None = None) -> Tensor:
    """``1 - <g, g*> / (||g|| ||g*|| + 1e-8)`` over all entries of all keys of ``target``.

    The distance of Inverting Gradients (Geiping et al., "Inverting Gradients - How easy is it to break
    privacy in federated learning?", 2020): scale-free, so a dummy gradient of the right direction
    matches whatever the client's learning rate or batch size.

    Args:
        grads: the dummy gradient ``{name: tensor}`` (at least the keys of ``target``).
        target: the shared gradient, same shapes.
        target_norm: ``||g*||`` if already known (an optimisation loop computes it once), else None.

    Returns:
        A scalar tensor in [0, 2].
    """
    dot = sum((grads[n] * t).sum() for n, t in target.items())
    norm_g = sum(grads[n].pow(2).sum() for n in target).sqrt()
    if target_norm is None:
        target_norm = norm(target)
    return 1.0 - dot / (norm_g * target_norm + _COS_EPS)


def l2_distance(grads: Grads, target: Grads, target_norm: float | None = None) -> Tensor:
    """``sum_n ||g_n - g*_n||^2``, the squared L2 distance over all entries of all keys of ``target``.

    The distance of Deep Leakage from Gradients (Zhu et al., "Deep Leakage from Gradients", 2019).

    Args:
        grads: the dummy gradient ``{name: tensor}`` (at least the keys of ``target``).
        target: the shared gradient, same shapes.
        target_norm: unused (every :data:`Distance` takes it).

    Returns:
        A scalar tensor >= 0.
    """
    return sum(((grads[n] - t) ** 2).sum() for n, t in target.items())


def norm(grads: Grads) -> float:
    """``||g||`` over all entries of all keys, as a Python float."""
    return math.sqrt(sum(float(t.pow(2).sum()) for t in grads.values()))


def total_variation(x: Tensor) -> Tensor:
    """Anisotropic total variation of one batch ``[B, ...]``: mean |horizontal diff| + mean |vertical diff|.

    ``TV(x) = mean |x[..., :, 1:] - x[..., :, :-1]| + mean |x[..., 1:, :] - x[..., :-1, :]|``: the last axis
    gives the horizontal differences; the second-to-last the vertical ones when each example has at least
    two axes (images ``[C, H, W]``, ``[H, W]``), none for 1-D examples.
    """
    tv = (x[..., 1:] - x[..., :-1]).abs().mean()
    if x.dim() >= 3:
        tv = tv + (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return tv
