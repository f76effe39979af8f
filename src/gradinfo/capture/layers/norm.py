"""``nn.LayerNorm`` and ``nn.GroupNorm`` (affine): per-example gradients are cheap, so they are materialised.

With ``xhat`` the normalised input (recomputed from the saved input) and ``g`` the output gradient, the
per-example gradients are ``dgamma_i = sum (g_i * xhat_i)`` and ``dbeta_i = sum g_i``, summed over every
axis the affine parameters are broadcast along (the sequence axes for LayerNorm, the spatial axes for
GroupNorm). Norms and weighted sums come from these ``[B, *param.shape]`` tensors directly.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn


def supports_layer_norm(module: Any) -> bool:
    """LayerNorm with affine parameters."""
    return bool(module.elementwise_affine)


def supports_group_norm(module: Any) -> bool:
    """GroupNorm with affine parameters."""
    return bool(module.affine)


def grad_sample(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], out: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Per-example ``weight`` and ``bias`` gradients ``[B, *param.shape]``."""
    if isinstance(module, nn.LayerNorm):
        nd = len(module.normalized_shape)
        axes = tuple(range(1, a.dim() - nd))  # the sequence axes between batch and normalised shape
        xhat = F.layer_norm(a, module.normalized_shape, eps=module.eps) if "weight" in roles else None
    else:  # GroupNorm: [B, C, *S], parameters per channel
        axes = tuple(range(2, a.dim()))
        xhat = F.group_norm(a, module.num_groups, eps=module.eps) if "weight" in roles else None
    out: dict[str, Tensor] = {}
    if xhat is not None:
        out["weight"] = (g * xhat).sum(axes) if axes else g * xhat  # [B, *param.shape]
    if "bias" in roles:
        out["bias"] = g.sum(axes) if axes else g  # [B, *param.shape]
    return out


def sq_norm(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], keep: bool
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Squared per-example gradient norms ``[B]`` from the materialised (small) gradients."""
    grads = grad_sample(module, a, g, roles)
    total = a.new_zeros(a.shape[0])  # [B]
    for w in grads.values():
        total += w.flatten(1).pow(2).sum(1)
    return total, grads if keep else None


def weighted_sum(module: Any, a: Tensor, g: Tensor, coef: Tensor, roles: frozenset[str]) -> dict[str, Tensor]:
    """``sum_i coef_i grad_i`` per parameter."""
    grads = grad_sample(module, a, g, roles)
    return {k: (coef @ w.flatten(1)).view(w.shape[1:]) for k, w in grads.items()}
