"""Settings checks shared by the per-group optimizers of :mod:`gradinfo.optim`, and their old base name.

The optimizers themselves subclass :class:`gradinfo.transform.TransformOptimizer` with one transform per
group (see :mod:`gradinfo.transform.optimizer` for the rule on missing gradients and where state lives).
"""

from __future__ import annotations

from typing import Any

from gradinfo.transform.optimizer import TransformOptimizer

GroupTransformOptimizer = TransformOptimizer
"""The former base class of the per-group optimizers, now the one adapter (kept because
``gradinfo.optim.GroupTransformOptimizer`` is public and ``gradinfo.claims.q_galore`` annotates with it)."""


def check_betas(betas: Any) -> tuple[float, float]:
    """Return ``betas`` as a float pair after checking ``0 <= beta < 1`` for both.

    Raises:
        TypeError: not a pair of numbers.
        ValueError: a beta outside ``[0, 1)``.
    """
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {type(betas).__name__} {betas!r}")
    for i, beta in enumerate(betas):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise TypeError(f"betas[{i}] must be a number, got {type(beta).__name__} {beta!r}")
        if not 0 <= beta < 1:
            raise ValueError(f"betas[{i}] must lie in [0, 1), got {beta!r}")
    return float(betas[0]), float(betas[1])
