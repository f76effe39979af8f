"""Any ``GradTransform`` as a real ``torch.optim.Optimizer``.

At every ``step()`` the optimizer reads ``p.grad`` of every parameter into one ``Grads`` dict, runs the
transform's ``update`` on it (one transform state for the whole optimizer, across all parameter groups), and
applies

    p <- p - lr_group * update[name]

with each group's own ``lr`` (so ``torch.optim.lr_scheduler`` works). **Sign convention:** the transform
outputs a descent direction that is subtracted; ``chain(identity())`` is plain SGD. Do not put ``scale(-lr)``
in the chain as one would in optax.

Names: pass ``model.named_parameters()`` (or groups whose ``"params"`` are ``(name, parameter)`` pairs) to
key the gradients like the model; plain parameters are named ``"g{group}.p{index}"``. The transform state
lives in ``optimizer.state["transform_state"]``, so ``state_dict()``/``load_state_dict()``, ``torch.save``/
``torch.load`` and ``copy.deepcopy`` carry it, and a restored optimizer continues bit-identically.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.types import Grads, State
from gradinfo.core.validate import positive
from gradinfo.transform.base import GradTransform

STATE_KEY = "transform_state"
"""The key of ``optimizer.state`` (and of ``state_dict()["state"]``) holding the transform's state."""


def _is_named(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)


def _map_tensors(tree: State, fn: Callable[[Tensor], Tensor]) -> State:
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: _map_tensors(v, fn) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map_tensors(v, fn) for v in tree)
    return tree


class TransformOptimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` that steps along a ``GradTransform``'s output; build it with
    :func:`as_optimizer`.

    Parameters whose ``p.grad`` is None enter the transform as zeros (so its state keeps one fixed layout)
    and are left unchanged. Sparse gradients are not supported.
    """

    def __init__(self, params: Iterable[Any], transform: GradTransform, lr: float) -> None:
        if not isinstance(transform, GradTransform):
            raise TypeError(
                f"transform must be a GradTransform, got {type(transform).__name__} {transform!r}; "
                "build one with gradinfo.transform.chain(...)"
            )
        self.transform = transform
        super().__init__(params, {"lr": positive("lr", lr, allow_zero=True)})

    def __getstate__(self) -> dict[str, Any]:
        """Include the transform, so ``copy.deepcopy(optimizer)`` keeps it (``torch.save`` the
        ``state_dict()`` instead of the optimizer: a transform's functions are closures)."""
        return {**super().__getstate__(), "transform": self.transform}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; its ``"params"`` may be parameters or ``(name, parameter)`` pairs."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        items = group["params"]
        items = [items] if isinstance(items, Tensor) else list(items)
        if "lr" in group:
            group["lr"] = positive("lr", group["lr"], allow_zero=True)
        named = [_is_named(item) for item in items]
        if any(named) and not all(named):
            raise TypeError("params must be all parameters or all (name, parameter) pairs, not a mix")
        if items and all(named):
            names = [name for name, _ in items]
            group["params"] = [p for _, p in items]
        else:
            index = len(self.param_groups)
            names = group.get("param_names") or [f"g{index}.p{i}" for i in range(len(items))]
            group["params"] = items
        taken = {n for g in self.param_groups for n in g["param_names"]}
        clashes = sorted(taken.intersection(names)) + sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"parameter names must be unique across groups; repeated: {clashes}")
        group["param_names"] = names
        super().add_param_group(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """Run the transform on the current gradients and apply ``p -= lr * update``.

        Args:
            closure: re-evaluates the model and returns the loss (optional).

        Returns:
            The closure's loss, or None.

        Raises:
            TypeError: a gradient is sparse.
            ValueError: the transform's output lacks a parameter that has a gradient.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params: Grads = {}
        grads: Grads = {}
        targets: list[tuple[Tensor, str, float]] = []
        for group in self.param_groups:
            for name, p in zip(group["param_names"], group["params"], strict=True):
                params[name] = p.detach()
                if p.grad is None:
                    grads[name] = torch.zeros_like(p)
                    continue
                if p.grad.is_sparse:
                    raise TypeError(
                        f"parameter {name!r} has a sparse gradient; as_optimizer needs dense ones"
                    )
                grads[name] = p.grad
                targets.append((p, name, group["lr"]))
        if STATE_KEY not in self.state:
            self.state[STATE_KEY] = self.transform.init(params)
        updates, self.state[STATE_KEY] = self.transform.update(grads, self.state[STATE_KEY], params)
        missing = sorted(name for _, name, _ in targets if name not in updates)
        if missing:
            raise ValueError(
                f"the transform's output lacks {missing} (it has {sorted(updates)[:5]}...); a chain given to "
                "as_optimizer must map gradients to updates keyed the same way (end sketch with desketch)"
            )
        for p, name, lr in targets:
            p.add_(updates[name].to(dtype=p.dtype, device=p.device), alpha=-lr)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``; the transform state is deep-copied (and moved to the parameters' device
        when they all share one)."""
        super().load_state_dict(state_dict)
        if STATE_KEY in self.state:
            devices = {p.device for g in self.param_groups for p in g["params"]}
            state = copy.deepcopy(self.state[STATE_KEY])
            if len(devices) == 1:
                device = devices.pop()
                state = _map_tensors(state, lambda t: t.to(device))
            self.state[STATE_KEY] = state


def as_optimizer(transform: GradTransform, params: Iterable[Any], lr: float) -> TransformOptimizer:
    """Wrap ``transform`` as a ``torch.optim.Optimizer`` stepping ``p <- p - lr * transform(grads)[name]``.

    Args:
        transform: any ``GradTransform`` (usually a ``chain``) mapping gradients to a descent direction.
        params: parameters, ``(name, parameter)`` pairs (e.g. ``model.named_parameters()``), or param-group
            dicts of either (each group may set its own ``"lr"``).
        lr: the default learning rate, ``>= 0``.

    Returns:
        A :class:`TransformOptimizer`; use it like ``torch.optim.SGD`` (``zero_grad``, ``step``,
        ``state_dict``, LR schedulers).

    Raises:
        TypeError: ``transform`` is not a ``GradTransform`` or ``params`` mixes named and unnamed entries.
        ValueError: ``lr`` negative or not finite; repeated parameter names.
    """
    return TransformOptimizer(params, transform, lr)
