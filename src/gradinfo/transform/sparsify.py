"""Top-k sparsification with optional error feedback.

Keeps the ``k = ceil(fraction * P)`` coordinates of largest magnitude of the whole gradient (all tensors
flattened together: one global top-k, as the compressor ``top_k`` of Stich, Cordonnier and Jaggi,
"Sparsified SGD with Memory", 2018, arXiv:1809.07599) and zeroes the rest. With error feedback (Stich et al.
2018; Karimireddy et al., "Error Feedback Fixes SignSGD and other Gradient Compression Schemes", 2019,
arXiv:1901.09847) what was dropped is remembered and added back next step:

    a_t = g_t + e_t,    sent_t = top_k(a_t),    e_{t+1} = a_t - sent_t,

so ``sum_t sent_t + e_{T+1} = sum_t g_t`` (no gradient mass is lost, only delayed).
"""

from __future__ import annotations

import math

import torch

from gradinfo.core.types import Grads, State
from gradinfo.transform.base import GradTransform, check_keys


def _check_fraction(fraction: object) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"fraction must be a number, got {type(fraction).__name__} {fraction!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1] (the share of coordinates kept), got {fraction!r}")
    return float(fraction)


def topk_count(num_coords: int, fraction: float) -> int:
    """The number of coordinates kept out of ``num_coords``: ``ceil(fraction * num_coords)``.

    The product is rounded to 9 decimals first, so float error does not add one (``0.3 * 10`` keeps 3).
    """
    return min(num_coords, math.ceil(round(fraction * num_coords, 9)))


def topk_sparsify(fraction: float, error_feedback: bool = False) -> GradTransform:
    """Keep the ``ceil(fraction * P)`` largest-magnitude coordinates over all tensors; zero the rest.

    Ties are broken by ``torch.topk``, so exactly ``k`` coordinates are kept (some may be zero when the
    input has fewer than ``k`` nonzeros). Without error feedback the state is ``()``; with it the state is
    ``{"residual": {name: tensor}}`` (zeros from ``init``), keyed like the parameters.

    Args:
        fraction: the share of coordinates kept, in (0, 1].
        error_feedback: remember what was dropped and add it to the next gradient.

    Returns:
        A ``GradTransform``; its output has the input's keys and shapes.

    Raises:
        TypeError: ``fraction`` is not a number or ``error_feedback`` not a bool.
        ValueError: ``fraction`` outside (0, 1]; at update with error feedback, gradients keyed unlike the
            state.
    """
    fraction = _check_fraction(fraction)
    if not isinstance(error_feedback, bool):
        raise TypeError(
            f"error_feedback must be a bool, got {type(error_feedback).__name__} {error_feedback!r}"
        )

    def init(params: Grads) -> State:
        if not error_feedback:
            return ()
        return {"residual": {name: torch.zeros_like(p) for name, p in params.items()}}

    def sparsify(grads: Grads) -> Grads:
        if not grads:
            return {}
        names = list(grads)
        device = grads[names[0]].device
        flat = torch.cat([grads[n].reshape(-1).to(device) for n in names])  # [P]
        keep = topk_count(flat.numel(), fraction)
        idx = flat.abs().topk(keep, sorted=False).indices  # [k]
        mask = torch.zeros(flat.numel(), dtype=torch.bool, device=device).index_fill(0, idx, True)  # [P]
        masks = mask.split([grads[n].numel() for n in names])
        return {
            n: torch.where(m.view_as(grads[n]).to(grads[n].device), grads[n], 0)
            for n, m in zip(names, masks, strict=True)
        }

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        if not error_feedback:
            return sparsify(grads), state
        residual = state["residual"]
        check_keys("topk_sparsify", grads, residual)
        corrected = {n: g + residual[n] for n, g in grads.items()}  # a_t = g_t + e_t
        sent = sparsify(corrected)
        return sent, {"residual": {n: corrected[n] - sent[n] for n in grads}}

    return GradTransform(init, update)
