"""``nn.Conv1d`` / ``nn.Conv2d`` (any stride, padding incl. ``"same"``, dilation, groups; zero padding).

With the input unfolded (im2col) to ``A_i`` ``[G, C/G * k, L]`` and the output gradient ``g_i``
``[G, O/G, L]``, a convolution is a linear map per group and location, so the per-example weight gradient
is ``dW_i[g] = g_i[g] A_i[g]^T`` (Goodfellow 2015, arXiv:1510.01799); it is computed as one weight-gradient
convolution with the batch folded into the groups (no im2col copy), and the ghost norm is
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

from gradinfo.capture.layers.linear import batch_slices, gram_sq_norm, use_gram


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


def _weight_grad(module: nn.Conv1d | nn.Conv2d, x: Tensor, g: Tensor, groups: int, padding: tuple) -> Tensor:
    """``aten.convolution_backward`` weight gradient of a (possibly batch-folded) convolution."""
    shape = (g.shape[1], x.shape[1] // groups, *module.kernel_size)
    return torch.ops.aten.convolution_backward(
        g,
        x,
        g.new_empty(1).expand(shape),
        None,
        list(module.stride),
        list(padding),
        list(module.dilation),
        False,
        [0] * len(padding),
        groups,
        [False, True, False],
    )[1]


def per_example_weight(module: nn.Conv1d | nn.Conv2d, a: Tensor, g: Tensor) -> Tensor:
    """Per-example weight gradients ``[b, O, C/G, *k]``: the batch folded into channels, ``b * G`` groups.

    One weight-gradient convolution of ``[1, b*C, *S]`` with ``[1, b*O, *S']`` (each example its own set of
    groups) is exactly ``dW_i`` for every ``i``, and runs on the fast convolution kernels (no im2col copy).
    """
    b = a.shape[0]
    x, padding = _padded(module, a)
    w = _weight_grad(
        module, x.reshape(1, -1, *x.shape[2:]), g.reshape(1, -1, *g.shape[2:]), b * module.groups, padding
    )
    return w.view(b, *module.weight.shape)


def grad_sample(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], out: dict[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Per-example ``weight`` ``[B, O, C/G, *k]`` and ``bias`` ``[B, O]`` gradients."""
    out: dict[str, Tensor] = {}
    if "weight" in roles:
        out["weight"] = per_example_weight(module, a, g)
    if "bias" in roles:
        out["bias"] = g.flatten(2).sum(2)  # [B, O]
    return out


def sq_norm(
    module: Any, a: Tensor, g: Tensor, roles: frozenset[str], keep: bool
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """Squared per-example gradient norms ``[B]``: Gram over locations or materialised, per FLOPs.

    Works over batch slices (unless ``keep``) so im2col buffers and materialised gradients stay small.
    """
    b, groups = a.shape[0], module.groups
    total = a.new_zeros(b)  # [B]
    kept: dict[str, Tensor] | None = None
    if "weight" in roles:
        length = g[0, 0].numel()
        i, o = module.weight[0].numel(), module.out_channels // groups
        gram = use_gram(length, i, o)
        if keep and not gram:
            w = per_example_weight(module, a, g)  # [B, O, C/G, *k]
            total += w.flatten(1).pow(2).sum(1)
            kept = {"weight": w}
        else:
            per_example = (
                2 * length * length * groups if gram else module.weight.numel() + i * groups * length
            )
            for sl in batch_slices(b, per_example, a.numel()):
                if gram:
                    cols = unfold(module, a[sl])  # [b, C*k, L]
                    cols = cols.view(-1, i, length).transpose(1, 2)  # [b*G, L, C/G*k]
                    gs = g[sl].reshape(-1, o, length).transpose(1, 2)  # [b*G, L, O/G]
                    total[sl] += gram_sq_norm(cols, gs).view(-1, groups).sum(1)
                else:
                    total[sl] += per_example_weight(module, a[sl], g[sl]).flatten(1).pow(2).sum(1)
    if "bias" in roles:
        total += g.flatten(2).sum(2).pow(2).sum(1)
    return total, kept


def weighted_sum(module: Any, a: Tensor, g: Tensor, coef: Tensor, roles: frozenset[str]) -> dict[str, Tensor]:
    """``sum_i coef_i dW_i`` by one weight-gradient convolution; ``sum_i coef_i db_i``."""
    gc = g * coef.view(-1, *([1] * (g.dim() - 1)))  # [B, O, *S']
    out: dict[str, Tensor] = {}
    if "weight" in roles:
        x, padding = _padded(module, a)
        out["weight"] = _weight_grad(module, x, gc, module.groups, padding)
    if "bias" in roles:
        out["bias"] = gc.flatten(2).sum((0, 2))  # [O]
    return out
