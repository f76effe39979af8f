"""``nn.MultiheadAttention`` re-expressed as linear maps the fast path can tap.

The layer's own forward fuses the projections, so its output is recomputed from the same inputs and
parameters as ``q, k, v = x W_in^T + b_in`` (one fused projection when query, key and value are the same
tensor, else three slices of ``in_proj_weight``), ``o = softmax(q k^T / sqrt(d_h) + mask) v`` per head, and
``y = o W_out^T + b_out``; the recomputed output replaces the layer's output, so autograd runs through the
taps and the per-example rules of :mod:`.linear` give exact gradients for ``in_proj_*`` and ``out_proj.*``.
Supported: ``_qkv_same_embed_dim``, no ``bias_k``/``bias_v``, no ``add_zero_attn``, and no attention dropout
in training; batch-first or not; ``attn_mask``, ``key_padding_mask``, ``need_weights`` and
``average_attn_weights`` as in the layer. Batched (3-D) inputs only.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Tap = Callable[[Tensor, Tensor, dict[str, tuple[nn.Parameter | None, slice | None]]], Tensor]
"""``tap(y, a, {role: (param, rows)})``: mark ``y = a W^T + b`` for the per-example linear rule."""

_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def supports(module: nn.MultiheadAttention) -> bool:
    """The configurations the re-expression reproduces exactly."""
    return (
        module._qkv_same_embed_dim
        and module.bias_k is None
        and not module.add_zero_attn
        and (module.dropout == 0.0 or not module.training)
    )


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Boolean masks (True = masked out) become additive ``-inf`` masks, as in the layer."""
    if mask is None or mask.is_floating_point():
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))


def forward(
    module: nn.MultiheadAttention, args: tuple, kwargs: dict, tap: Tap
) -> tuple[Tensor, Tensor | None]:
    """The layer's output ``(y, weights)`` with every projection passed through ``tap``.

    Raises:
        LookupError: the inputs are unbatched (2-D), which the fast path does not handle.
    """
    bound = _SIGNATURE.bind(module, *args, **kwargs)
    bound.apply_defaults()
    arg = bound.arguments
    query, key, value = arg["query"], arg["key"], arg["value"]
    if query.dim() != 3:
        raise LookupError("unbatched attention input")
    self_attention = query is key and key is value
    if not module.batch_first:  # [T, B, E] -> [B, T, E]
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    b, t, e = query.shape
    s, h = key.shape[1], module.num_heads
    w_in, b_in = module.in_proj_weight, module.in_proj_bias
    if self_attention:
        qkv = F.linear(query, w_in, b_in)  # [B, T, 3E]
        qkv = tap(qkv, query, {"weight": (w_in, None), "bias": (b_in, None)})
        q, k, v = qkv.chunk(3, dim=-1)  # [B, T, E] each
    else:
        projected = []
        for j, x in enumerate((query, key, value)):
            rows = slice(j * e, (j + 1) * e)
            y = F.linear(x, w_in[rows], None if b_in is None else b_in[rows])  # [B, *, E]
            projected.append(tap(y, x, {"weight": (w_in, rows), "bias": (b_in, rows)}))
        q, k, v = projected
    q = q.reshape(b, t, h, e // h).transpose(1, 2)  # [B, H, T, Dh]
    k = k.reshape(b, s, h, e // h).transpose(1, 2)  # [B, H, S, Dh]
    v = v.reshape(b, s, h, e // h).transpose(1, 2)  # [B, H, S, Dh]
    mask = _float_mask(arg["attn_mask"], q.dtype)
    if mask is not None and mask.dim() == 3:  # [B*H, T, S]
        mask = mask.view(b, h, t, s)
    padding = _float_mask(arg["key_padding_mask"], q.dtype)
    if padding is not None:
        padding = padding.view(b, 1, 1, s)
        mask = padding if mask is None else mask + padding
    weights = None
    if arg["need_weights"]:
        scores = (q * (1.0 / math.sqrt(e // h))) @ k.transpose(-2, -1)  # [B, H, T, S]
        attn = torch.softmax(scores if mask is None else scores + mask, dim=-1)  # [B, H, T, S]
        o = attn @ v  # [B, H, T, Dh]
        weights = attn.mean(1) if arg["average_attn_weights"] else attn
    else:
        causal = bool(arg["is_causal"]) and mask is None
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)  # [B, H, T, Dh]
    o = o.transpose(1, 2).reshape(b, t, e)  # [B, T, E]
    out_proj = module.out_proj
    y = F.linear(o, out_proj.weight, out_proj.bias)  # [B, T, E]
    y = tap(y, o, {"weight": (out_proj.weight, None), "bias": (out_proj.bias, None)})
    if not module.batch_first:
        y = y.transpose(0, 1)  # [T, B, E]
    return y, weights
