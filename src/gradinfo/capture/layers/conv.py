"""``nn.Conv1d`` / ``nn.Conv2d`` (any stride, padding incl. ``"same"``, dilation, groups; zero padding).

With the input unfolded (im2col) to ``A_i`` ``[G, C/G * k, L]`` and the output gradient ``g_i``
``[G, O/G, L]``, a convolution is a linear map per group and location, so the per-example weight gradient
is ``dW_i[g] = g_i[g] A_i[g]^T`` (Goodfellow 2015, arXiv:1510.01799; as in Opacus) and the ghost norm is
the linear one with ``T = L`` (Bu et al. 2022, "Differentially Private Optimization on Large Model at Small
Cost", arXiv:2210.00038): ``||dW_i||^2 = sum_g sum_{l,m} (A_il . A_im)(g_il . g_im)``, chosen when
``2 L^2 < (C/G k)(O/G)``. The book-keeping sum ``sum_i c_i dW_i`` is one ordinary weight-gradient
convolution of the coefficient-scaled output gradient (``aten.convolution_backward``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.capture.layers.linear import gram_sq_norm, matmul_sq_norm, use_gram


def supports(module: Any) -> bool:
    """Zero padding only (other padding modes pad outside the convolution call)."""
    return module.padding_mode == "zeros"


def _padded(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    """The input and a numeric symmetric padding (``"same"``/``"valid"`` resolved, asymmetry pre-padded)."""
    if not isinstance(module.padding, str):
        return x, tuple(module.padding)
    if module.padding == "valid":
        return x, (0,) * len(module.kernel_size)
    pads: list[int] = []
    for k, d in zip(reversed(module.kernel_size), reversed(module.dilation), strict=True):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads), (0,) * len(module.kernel_size)


def unfold(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """im2col of the layer input ``[B, C, *S]`` -> ``[B, C * prod(k), L]``."""
    x, padding = _padded(module, x)
    if x.dim() == 3:  # Conv1d as a Conv2d of height 1: [B, C, 1, S]
        return F.unfold(
            x.unsqueeze(2),
            (1, module.kernel_size[0]),
            dilation=(1, module.dilation[0]),
            padding=(0, padding[0]),
            stride=(1, module.stride[0]),
        )
    return F.unfold(x, module.kernel_size, dilation=module.dilation, padding=padding, stride=module.stride)


def _grouped(module: nn.Conv1d | nn.Conv2d, a: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
    """Unfolded input ``[B*G, C/G*k, L]`` and gradient ``[B*G, O/G, L]``."""
    cols = unfold(module, a)  # [B, C*k, L]
    b, groups = a.shape[0], module.groups
    cols = cols.reshape(b * groups, -1, cols.shape[-1])  # [B*G, C/G*k, L]
    g3 = g.reshape(b * groups, -1, cols.shape[-1])  # [B*G, O/G, L]
    return cols, g3


def grad_sample(module: Any, a: Tensor, g: Tensor, roles: frozenset[str]) -> dict[str, Tensor]:
    """Per-example ``weight`` ``[B, O, C/G, *k]`` and ``bias`` ``[B, O]`` gradients."""
    out: dict[str, Tensor] = {}
    b = a.shape[0]
    if "weight" in roles:
        cols, g3 = _grouped(module, a, g)  # [B*G, C/G*k, L], [B*G, O/G, L]
        w = torch.bmm(g3, cols.transpose(1, 2))  # [B*G, O/G, C/G*k]
        out["weight"] = w.view(b, *module.weight.shape)
    if "bias" in roles:
        out["bias"] = g.flatten(2).sum(2)  # [B, O]
    return out


def sq_norm(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], keep: bool
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Squared per-example gradient norms ``[B]``: Gram over locations or materialised, per FLOPs."""
    b = a.shape[0]
    total = a.new_zeros(b)  # [B]
    kept: dict[str, Tensor] | None = None
    if "weight" in roles:
        cols, g3 = _grouped(module, a, g)  # [B*G, I, L], [B*G, O/G, L]
        length, i, o = cols.shape[2], cols.shape[1], g3.shape[1]
        if use_gram(length, i, o):
            sq = gram_sq_norm(cols.transpose(1, 2), g3.transpose(1, 2))  # [B*G]
        else:
            sq, w = matmul_sq_norm(cols.transpose(1, 2), g3.transpose(1, 2), keep)  # [B*G]
            kept = None if w is None else {"weight": w.view(b, *module.weight.shape)}
        total += sq.view(b, -1).sum(1)
    if "bias" in roles:
        total += g.flatten(2).sum(2).pow(2).sum(1)
    return total, kept


def weighted_sum(module: Any, a: Tensor, g: Tensor, coef: Tensor, roles: frozenset[str]) -> dict[str, Tensor]:
    """``sum_i coef_i dW_i`` by one weight-gradient convolution; ``sum_i coef_i db_i``."""
    gc = g * coef.view(-1, *([1] * (g.dim() - 1)))  # [B, O, *S']
    out: dict[str, Tensor] = {}
    if "weight" in roles:
        x, padding = _padded(module, a)
        _, dw, _ = torch.ops.aten.convolution_backward(
            gc,
            x,
            module.weight,
            None,
            list(module.stride),
            list(padding),
            list(module.dilation),
            False,
            [0] * len(padding),
            module.groups,
            [False, True, False],
        )
        out["weight"] = dw
    if "bias" in roles:
        out["bias"] = gc.flatten(2).sum((0, 2))  # [O]
    return out
