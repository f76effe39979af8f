"""``nn.Embedding`` (no ``max_norm``, no ``scale_grad_by_freq``, dense gradients).

For token ids ``x_i`` ``[T]`` and output gradients ``g_i`` ``[T, D]`` the per-example gradient is the
scatter ``dE_i[v] = sum_{t: x_it = v} g_it`` (rows at ``padding_idx`` stay zero). Its ghost norm is
``||dE_i||^2 = sum_{t,s} [x_it = x_is] (g_it . g_is)`` (Li et al. 2022, "Large Language Models Can Be Strong
Differentially Private Learners", arXiv:2110.05679), chosen when ``T^2 <= V`` (else the scatter into
``[V, D]`` per example is cheaper).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.capture.layers.linear import batch_slices


def supports(module: Any) -> bool:
    """Plain lookups only: ``max_norm`` rewrites the table and the other options change the gradient."""
    return module.max_norm is None and not module.scale_grad_by_freq and not module.sparse


def _flat(module: nn.Embedding, a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Ids ``[B, T]`` and gradients ``[B, T, D]`` with padding positions zeroed."""
    b = a.shape[0]
    ids = a.reshape(b, -1)  # [B, T]
    g3 = g.reshape(b, ids.shape[1], -1)  # [B, T, D]
    if module.padding_idx is not None:
        g3 = g3 * (ids != module.padding_idx).unsqueeze(-1).to(g3.dtype)
    return ids, g3


def _scatter(module: nn.Embedding, ids: Tensor, g3: Tensor, out: Tensor | None = None) -> Tensor:
    """Per-example gradients ``[b, V, D]`` by one ``index_add_`` (into ``out`` if given)."""
    b, _, d = g3.shape
    v = module.num_embeddings
    rows = (ids + v * torch.arange(b, device=ids.device).unsqueeze(1)).flatten()  # [b*T]
    out = g3.new_zeros(b * v, d) if out is None else out.view(b * v, d).zero_()
    out.index_add_(0, rows, g3.reshape(-1, d))
    return out.view(b, v, d)


def grad_sample(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], out: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Per-example ``weight`` gradients ``[B, V, D]``."""
    ids, g3 = _flat(module, a, g)
    return {"weight": _scatter(module, ids, g3, (out or {}).get("weight"))} if "weight" in roles else {}


def sq_norm(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], keep: bool
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Squared per-example gradient norms ``[B]`` (ghost when ``T^2 <= V``)."""
    ids, g3 = _flat(module, a, g)  # [B, T], [B, T, D]
    b, t, d = g3.shape
    out = g3.new_zeros(b)  # [B]
    if "weight" not in roles:
        return out, None
    if t * t <= module.num_embeddings:
        for sl in batch_slices(b, 2 * t * t, g3.numel()):
            same = (ids[sl, :, None] == ids[sl, None, :]).to(g3.dtype)  # [b, T, T]
            out[sl] = (torch.bmm(g3[sl], g3[sl].transpose(1, 2)) * same).sum((1, 2))
        return out, None
    if keep:
        w = _scatter(module, ids, g3)  # [B, V, D]
        return w.flatten(1).pow(2).sum(1), {"weight": w}
    for sl in batch_slices(b, module.num_embeddings * d, g3.numel()):
        out[sl] = _scatter(module, ids[sl], g3[sl]).flatten(1).pow(2).sum(1)
    return out, None


def weighted_sum(module: Any, a: Tensor, g: Tensor, coef: Tensor, roles: frozenset[str]) -> dict[str, Tensor]:
    """``sum_i coef_i dE_i`` ``[V, D]`` by one ``index_add_``."""
    if "weight" not in roles:
        return {}
    ids, g3 = _flat(module, a, g)
    gc = (g3 * coef[:, None, None]).reshape(-1, g3.shape[-1])  # [B*T, D]
    out = g3.new_zeros(module.num_embeddings, g3.shape[-1])  # [V, D]
    out.index_add_(0, ids.flatten(), gc)
    return {"weight": out}
