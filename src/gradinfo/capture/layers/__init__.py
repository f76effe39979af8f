"""Per-layer rules for the hook fast path: per-example gradients, ghost norms and book-keeping sums.

Each supported layer type has one small module (opacus-style) with three functions of the layer's
saved input ``a`` (``[B, ...]``) and the gradient ``g`` of the summed per-example losses with respect to
the layer's output (``[B, ...]``); row ``i`` of ``g`` is the gradient of example ``i``'s own loss, because
examples do not interact in a supported layer:

- ``grad_sample(module, a, g, roles, out=None) -> {role: [B, *param.shape]}``: per-example gradients,
  written into the buffers in ``out`` where the rule can (large results then avoid a copy).
- ``sq_norm(module, a, g, roles, keep) -> ([B], grads | None)``: squared L2 norms of the per-example
  gradients over ``roles``, by a ghost (Gram) form or by materialising, whichever costs fewer FLOPs; when
  it materialised and ``keep`` is set it also returns the gradients so a caller can reuse them.
- ``weighted_sum(module, a, g, coef, roles) -> {role: param.shape}``: ``sum_i coef_i * grad_i`` without
  materialising per-example gradients (one GEMM: the book-keeping trick).

``roles`` names which of the layer's parameters (``"weight"``, ``"bias"``) are trainable. ``RULES`` maps
a module type to its rule; ``rule_for`` returns None for anything else (the caller then falls back to
``torch.func``). ``nn.MultiheadAttention`` is handled by :mod:`.attention`, which re-expresses the layer as
two or four linear maps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from torch import Tensor, nn

from gradinfo.capture.layers import conv, embedding, linear, norm


class LayerRule(NamedTuple):
    """The three per-layer functions plus a check of the module's configuration."""

    supports: Callable[[Any], bool]
    grad_sample: Callable[..., dict[str, Tensor]]
    sq_norm: Callable[[Any, Tensor, Tensor, frozenset[str], bool], tuple[Tensor, dict[str, Tensor] | None]]
    weighted_sum: Callable[[Any, Tensor, Tensor, Tensor, frozenset[str]], dict[str, Tensor]]


LINEAR = LayerRule(linear.supports, linear.grad_sample, linear.sq_norm, linear.weighted_sum)
CONV = LayerRule(conv.supports, conv.grad_sample, conv.sq_norm, conv.weighted_sum)
EMBEDDING = LayerRule(embedding.supports, embedding.grad_sample, embedding.sq_norm, embedding.weighted_sum)
LAYER_NORM = LayerRule(norm.supports_layer_norm, norm.grad_sample, norm.sq_norm, norm.weighted_sum)
GROUP_NORM = LayerRule(norm.supports_group_norm, norm.grad_sample, norm.sq_norm, norm.weighted_sum)

RULES: dict[type[nn.Module], LayerRule] = {
    nn.Linear: LINEAR,
    nn.Conv1d: CONV,
    nn.Conv2d: CONV,
    nn.Embedding: EMBEDDING,
    nn.LayerNorm: LAYER_NORM,
    nn.GroupNorm: GROUP_NORM,
}


def rule_for(module: nn.Module) -> LayerRule | None:
    """The rule for ``module``, or None when its type (or an overridden ``forward``) is not supported."""
    for cls in type(module).__mro__:
        rule = RULES.get(cls)
        if rule is not None:
            same_forward = type(module).forward is cls.forward
            return rule if same_forward and rule.supports(module) else None
    return None
