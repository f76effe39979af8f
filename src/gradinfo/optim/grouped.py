"""A ``torch.optim.Optimizer`` that steps each parameter group along the transform built from its settings.

:func:`gradinfo.transform.as_optimizer` runs one transform over all groups, so only ``lr`` can differ
between groups. The optimizers of :mod:`gradinfo.optim` need per-group hyperparameters (betas, weight
decay, rank, ...), so they subclass :class:`GroupTransformOptimizer`: at every ``step()`` it calls
``make_transform(group)`` for each group, runs that ``GradTransform`` on the group's gradients and applies

    p <- p - lr_group * update[p]

The transforms used here keep **per-parameter state**: ``init(params)`` returns ``{name: dict}`` and
``update`` returns the same layout. Each parameter's dict is stored as ``optimizer.state[p]``, exactly where
``torch.optim.Adam`` keeps its moments, so ``state_dict()``/``load_state_dict()``, LR schedulers and
``copy.deepcopy`` behave as for any torch optimizer. A stateless transform stores ``{}`` (no bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.types import Grads
from gradinfo.core.validate import positive
from gradinfo.transform.base import GradTransform


class GroupTransformOptimizer(torch.optim.Optimizer):
    """Base class: subclasses implement :meth:`make_transform` (and may override :meth:`apply_update`, or
    :meth:`step_group` to update their state in place).

    Parameters whose ``p.grad`` is None are skipped (no state is created for them), as in ``torch.optim``.

    Raises:
        TypeError: in ``step``, a gradient is sparse.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (missing settings come from the defaults) and validate its settings at once."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group["lr"] = positive("lr", group["lr"], allow_zero=True)
        self.check_group(group)

    def check_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` for a bad setting of ``group`` (subclasses extend it)."""

    def make_transform(self, group: dict[str, Any]) -> GradTransform:
        """The transform for ``group``, built from its hyperparameters (called once per group per step)."""
        raise NotImplementedError

    def apply_update(self, param: Tensor, update: Tensor, group: dict[str, Any]) -> None:
        """Apply ``param <- param - lr * update`` (Q-GaLore overrides it for INT8 weights)."""
        param.add_(update.to(param.dtype), alpha=-group["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One update of every parameter that has a gradient.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            live = [p for p in group["params"] if p.grad is not None]
            if not live:
                continue
            for p in live:
                if p.grad.is_sparse:
                    raise TypeError(f"{type(self).__name__} does not support sparse gradients")
            self.step_group(group, live)
        return loss

    def step_group(self, group: dict[str, Any], live: list[Tensor]) -> None:
        """Update ``live``, the parameters of ``group`` with (dense) gradients, along the group's transform.

        An optimizer that owns its state may override this with an in-place update of the same math.
        """
        transform = self.make_transform(group)
        names = [str(i) for i in range(len(live))]
        params: Grads = dict(zip(names, live, strict=True))
        grads: Grads = {n: p.grad for n, p in params.items()}
        fresh = {n: p for n, p in params.items() if not self.state[p]}
        state = transform.init(fresh) if fresh else {}
        state.update({n: self.state[p] for n, p in params.items() if n not in fresh})
        updates, new_state = transform.update(grads, state, params)
        for n, p in params.items():
            self.state[p] = new_state[n]
            self.apply_update(p, updates[n], group)


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
