"""``nn.Linear`` (and any ``y = a W^T + b`` over a trailing feature axis, e.g. attention projections).

Per-example gradient for inputs ``a_i`` of shape ``[T, I]`` (``T`` = product of extra axes, 1 for plain
vectors) and output gradients ``g_i`` ``[T, O]``: ``dW_i = g_i^T a_i``, ``db_i = sum_t g_it``.

Ghost norm (Goodfellow 2015, "Efficient Per-Example Gradient Computations", arXiv:1510.01799; Li et al.
2022, "Large Language Models Can Be Strong Differentially Private Learners", arXiv:2110.05679):
``||dW_i||^2 = sum_{t,s} (a_it . a_is)(g_it . g_is)``, costing ``T^2 (I + O)`` per example against
``T I O`` for materialising; the cheaper one is chosen (the rule of Bu et al. 2022, "Differentially Private
Optimization on Large Model at Small Cost", arXiv:2210.00038: ghost when ``2 T^2 < I O``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

# Per-layer temporaries of sq_norm are computed over batch slices holding at most this many elements
# (or the size of the layer's own input, if larger), so norms never need much more than the forward.
TEMP_ELEMENTS = 1 << 22


def supports(module: Any) -> bool:
    """Every ``nn.Linear`` is supported."""
    return True


def _flat(a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Reshape to ``[B, T, I]`` and ``[B, T, O]``."""
    b = a.shape[0]
    return a.reshape(b, -1, a.shape[-1]), g.reshape(b, -1, g.shape[-1])


def batch_slices(batch: int, per_example: int, floor: int) -> list[slice]:
    """Slices of ``range(batch)`` whose temporaries hold at most ``max(TEMP_ELEMENTS, floor)`` elements."""
    step = max(1, max(TEMP_ELEMENTS, floor) // max(1, per_example))
    return [slice(s, min(s + step, batch)) for s in range(0, batch, step)]


def grad_sample(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], out: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Per-example ``weight`` ``[B, O, I]`` and ``bias`` ``[B, O]`` gradients (into ``out`` if given)."""
    buf = out or {}
    grads: dict[str, Tensor] = {}
    a3, g3 = _flat(a, g)  # [B, T, I], [B, T, O]
    if "weight" in roles:
        w = buf.get("weight")
        if a3.shape[1] == 1:  # outer product, written once into its destination
            grads["weight"] = (
                torch.mul(g3[:, 0, :, None], a3[:, 0, None, :], out=w)
                if w is not None
                else g3[:, 0, :, None] * a3[:, 0, None, :]
            )
        else:
            grads["weight"] = (
                torch.bmm(g3.transpose(1, 2), a3, out=w)
                if w is not None
                else torch.bmm(g3.transpose(1, 2), a3)
            )
    if "bias" in roles:
        grads["bias"] = g3[:, 0] if g3.shape[1] == 1 else g3.sum(1)  # [B, O]
    return grads


def gram_sq_norm(a3: Tensor, g3: Tensor) -> Tensor:
    """``sum_{t,s} (a_t . a_s)(g_t . g_s)`` per example, over batch slices. ``a3`` ``[B, T, I]``."""
    b, t = a3.shape[:2]
    out = a3.new_empty(b)  # [B]
    for sl in batch_slices(b, 2 * t * t, a3.numel()):
        aa = torch.bmm(a3[sl], a3[sl].transpose(1, 2))  # [b, T, T]
        gg = torch.bmm(g3[sl], g3[sl].transpose(1, 2))  # [b, T, T]
        out[sl] = (aa * gg).sum((1, 2))
    return out


def matmul_sq_norm(a3: Tensor, g3: Tensor, keep: bool) -> tuple[Tensor, Tensor | None]:
    """Materialise ``g_i^T a_i`` (over batch slices unless ``keep``) and return its squared norm."""
    if keep:
        w = torch.bmm(g3.transpose(1, 2), a3)  # [B, O, I]
        return w.flatten(1).pow(2).sum(1), w
    b, _, i = a3.shape
    out = a3.new_empty(b)  # [B]
    for sl in batch_slices(b, i * g3.shape[-1], a3.numel()):
        out[sl] = torch.bmm(g3[sl].transpose(1, 2), a3[sl]).flatten(1).pow(2).sum(1)
    return out, None


def use_gram(t: int, i: int, o: int) -> bool:
    """Bu et al. (2022): the Gram (ghost) form is cheaper when ``2 T^2 < I O``."""
    return 2 * t * t < i * o


def sq_norm(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], keep: bool
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Squared norm of each example's gradient over ``roles`` ``[B]``; materialised grads if kept."""
    a3, g3 = _flat(a, g)  # [B, T, I], [B, T, O]
    total = a3.new_zeros(a3.shape[0])  # [B]
    kept: dict[str, Tensor] | None = None
    if "weight" in roles:
        if a3.shape[1] == 1:
            total += a3.pow(2).sum((1, 2)) * g3.pow(2).sum((1, 2))
        elif use_gram(a3.shape[1], a3.shape[2], g3.shape[2]):
            total += gram_sq_norm(a3, g3)
        else:
            sq, w = matmul_sq_norm(a3, g3, keep)
            total += sq
            kept = None if w is None else {"weight": w}
    if "bias" in roles:
        total += g3.sum(1).pow(2).sum(1)
    return total, kept


def weighted_sum(module: Any, a: Tensor, g: Tensor, coef: Tensor, roles: frozenset[str]) -> dict[str, Tensor]:
    """``sum_i coef_i dW_i`` ``[O, I]`` and ``sum_i coef_i db_i`` ``[O]`` with one GEMM."""
    a3, g3 = _flat(a, g)  # [B, T, I], [B, T, O]
    gc = (g3 * coef[:, None, None]).flatten(0, 1)  # [B*T, O]
    out: dict[str, Tensor] = {}
    if "weight" in roles:
        out["weight"] = gc.t() @ a3.flatten(0, 1)  # [O, I]
    if "bias" in roles:
        out["bias"] = gc.sum(0)  # [O]
    return out
