"""Per-example gradient norms without materialising gradients, and the clipped sum of DP-SGD.

``per_example_norms`` returns ``||g_i||_2`` over all trainable parameters. On the hook fast path (see
:mod:`gradinfo.capture.per_example`) each layer adds its squared norm during the backward, by a ghost
(Gram) form where that is cheaper (Goodfellow 2015, arXiv:1510.01799; Li et al. 2022, "Large Language
Models Can Be Strong Differentially Private Learners", arXiv:2110.05679), e.g. for a linear map over a
sequence ``||sum_t g_t a_t^T||^2 = sum_{t,s} (a_t . a_s)(g_t . g_s)``, and by materialising the layer's
per-example gradient (over batch slices) otherwise, choosing per layer by FLOPs (Bu et al. 2022,
"Differentially Private Optimization on Large Model at Small Cost", arXiv:2210.00038). A parameter used by
more than one layer call (tied weights) is materialised, since its norm needs the summed gradient.

``clipped_grad_sum`` returns ``sum_i min(1, C / ||g_i||) g_i`` (Abadi et al. 2016, "Deep Learning with
Differential Privacy", arXiv:1607.00133) by book-keeping (Bu et al. 2022): one forward, one backward to the
layer outputs that yields the norms while keeping each layer's output gradient, then per layer one GEMM of
the coefficient-scaled output gradient with the saved input (or a weighted sum of the per-example gradients
the norm step already materialised). No ``B x P`` tensor is formed on the fast path. Models outside the
fast path materialise per-example gradients chunk by chunk with ``torch.func``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradinfo.capture.per_example import (
    Call,
    FastPathUnavailable,
    Plan,
    accumulate,
    auto_chunk,
    functorch_grads,
    hook_pass,
    make_plan,
    validate,
)
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import positive


def _sq_sum(grads: Grads) -> Tensor:
    """``sum_k ||grads[k][i]||^2`` ``[B]``."""
    return sum(v.flatten(1).pow(2).sum(1) for v in grads.values())  # type: ignore[return-value]


def _fast(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, plan: Plan, keep: bool
) -> tuple[Tensor, list[tuple[Call, Tensor, dict[str, Tensor] | None]], Grads]:
    """Squared norms ``[B]``, the stored ``(call, g, kept)`` (when ``keep``) and materialised shared grads."""
    batch = inputs.shape[0]
    dtype = next(iter(plan.params.values())).dtype
    sq = torch.zeros(batch, dtype=dtype)
    stored: list[tuple[Call, Tensor, dict[str, Tensor] | None]] = []
    shared: Grads = {}

    def sink(call: Call, g: Tensor) -> None:
        nonlocal sq
        own = frozenset(call.targets) - call.shared
        kept = None
        if own:
            s, kept = call.rule.sq_norm(call.module, call.activation, g, own, keep)
            sq = sq + s
        if call.shared:
            grads = call.rule.grad_sample(call.module, call.activation, g, call.shared)
            for role, value in grads.items():
                key, rows = call.targets[role]
                accumulate(shared, key, rows, value, (batch, *plan.params[key].shape))
        if keep:
            stored.append((call, g, kept))
        else:
            call.activation = None

    hook_pass(model, loss_fn, inputs, targets, plan, sink)
    return sq + _sq_sum(shared) if shared else sq, stored, shared


def _chunks(batch: int, plan: Plan) -> list[slice]:
    step = auto_chunk(plan)
    return [slice(s, min(s + step, batch)) for s in range(0, batch, step)]


def per_example_norms(model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor) -> Tensor:
    """L2 norm of each example's full gradient, without materialising per-example gradients where possible.

    Args:
        model: as for :func:`gradinfo.capture.per_example_grads`.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, called on one example at a time.
        inputs: ``[B, ...]`` features or token ids.
        targets: ``[B, ...]``.

    Returns:
        ``[B]`` norms ``||d loss_fn(model(x_i), y_i) / d theta||_2`` over the trainable parameters.

    Raises:
        TypeError, ValueError: as :func:`gradinfo.capture.per_example_grads`.
    """
    batch = validate(model, loss_fn, inputs, targets)
    plan = make_plan(model)
    if not plan.uncovered:
        try:
            return _fast(model, loss_fn, inputs, targets, plan, keep=False)[0].sqrt()
        except FastPathUnavailable:
            pass
    sq = torch.cat(
        [_sq_sum(functorch_grads(model, loss_fn, inputs[s], targets[s], plan)) for s in _chunks(batch, plan)]
    )
    return sq.sqrt()


def clipped_grad_sum(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, max_norm: float
) -> Grads:
    """``sum_i min(1, max_norm / ||g_i||) g_i``: the DP-SGD clipped gradient sum (no noise).

    Args:
        model: as for :func:`gradinfo.capture.per_example_grads`.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, called on one example at a time.
        inputs: ``[B, ...]`` features or token ids.
        targets: ``[B, ...]``.
        max_norm: the clipping bound ``C > 0``.

    Returns:
        ``{name: param.shape}`` for every trainable parameter.

    Raises:
        TypeError, ValueError: as :func:`gradinfo.capture.per_example_grads`; ``max_norm`` not a finite
            number > 0.
    """
    batch = validate(model, loss_fn, inputs, targets)
    bound = positive("max_norm", max_norm)
    plan = make_plan(model)
    if not plan.uncovered:
        try:
            return _fast_clipped(model, loss_fn, inputs, targets, plan, bound)
        except FastPathUnavailable:
            pass
    out = {k: torch.zeros_like(p) for k, p in plan.params.items()}
    for s in _chunks(batch, plan):
        grads = functorch_grads(model, loss_fn, inputs[s], targets[s], plan)
        coef = (bound / _sq_sum(grads).sqrt()).clamp(max=1.0)  # [b]
        for k, v in grads.items():
            out[k] += (coef @ v.flatten(1)).view(out[k].shape)
    return out


def _fast_clipped(
    model: nn.Module, loss_fn: LossFn, inputs: Tensor, targets: Tensor, plan: Plan, bound: float
) -> Grads:
    """Book-keeping clipped sum on the fast path."""
    sq, stored, shared = _fast(model, loss_fn, inputs, targets, plan, keep=True)
    coef = (bound / sq.sqrt()).clamp(max=1.0)  # [B]; a zero gradient gets coefficient 1
    out: Grads = {}
    for call, g, kept in stored:
        kept = kept or {}
        rest = frozenset(call.targets) - call.shared - kept.keys()
        sums = {role: (coef @ v.flatten(1)).view(v.shape[1:]) for role, v in kept.items()}
        if rest:
            sums.update(call.rule.weighted_sum(call.module, call.activation, g, coef, rest))
        call.activation = None  # the Call outlives this pass: drop its activation now
        for role, value in sums.items():
            key, rows = call.targets[role]
            slot = out.setdefault(key, torch.zeros_like(plan.params[key]))
            slot[slice(None) if rows is None else rows] += value
    for key, value in shared.items():
        out.setdefault(key, torch.zeros_like(plan.params[key])).add_(
            (coef @ value.flatten(1)).view(value.shape[1:])
        )
    return {k: out[k] if k in out else torch.zeros_like(p) for k, p in plan.params.items()}
