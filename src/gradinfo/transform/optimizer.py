"""Any ``GradTransform`` as a real ``torch.optim.Optimizer``: the one adapter of gradinfo.

At every ``step()`` the optimizer reads ``p.grad`` into a ``Grads`` dict, runs a transform's ``update`` on it
and applies

    p <- p - lr_group * update[name]

with each group's own ``lr`` (so ``torch.optim.lr_scheduler`` works). **Sign convention:** the transform
outputs a descent direction that is subtracted; ``chain(identity())`` is plain SGD. Do not put ``scale(-lr)``
in the chain as one would in optax.

Two layouts of the transform and its state, one rule for everything else:

- **one transform** (:func:`as_optimizer`, M-FAC): a single transform sees every group's gradients at once
  (a global-norm clip, a sketch, a joint preconditioner need them together); only ``lr`` differs between
  groups. Its state is one pytree in ``optimizer.state["transform_state"]``, built by ``init`` from every
  parameter at the first step that has a gradient.
- **one transform per group** (the optimizers of :mod:`gradinfo.optim`): a subclass builds the transform
  from each group's settings (betas, rank, ...) with :meth:`TransformOptimizer.group_transform`. Its state
  is per parameter (``init`` returns ``{name: dict}``) and each parameter's dict lives in
  ``optimizer.state[p]``, where ``torch.optim.Adam`` keeps its moments, created at the parameter's first
  gradient.

**Missing gradients** (the rule of ``torch.optim``): a parameter whose ``p.grad`` is None is *skipped*: it
is not moved, it is not in the ``grads`` nor the ``params`` the transform's ``update`` receives, and its
state is left untouched. Precisely, for the state:

- per-parameter state (``optimizer.state[p]``) is neither created nor read nor written;
- in a single transform's state, every dict keyed by exactly the names of all the optimizer's parameters
  (a *per-parameter table*: a ``chain``'s per-parameter states, ``topk_sparsify``'s residuals, ``sketch``'s
  shapes) reaches ``update`` restricted to the parameters that have gradients, and the skipped
  parameters' entries are put back unchanged afterwards. The rest of the state is shared by all parameters
  (noise and sketch rounds, quantiser counters, M-FAC's window over the concatenated gradient) and
  advances as ``update`` decides from the gradients it got: a noise round is used, a step is counted.

A step in which no parameter has a gradient changes nothing. Sparse gradients raise ``TypeError``.

Names: pass ``model.named_parameters()`` (or groups whose ``"params"`` are ``(name, parameter)`` pairs) to
key the gradients like the model; plain parameters are named ``"g{group}.p{index}"``. ``state_dict()``/
``load_state_dict()``, ``torch.save``/``torch.load`` and ``copy.deepcopy`` carry the state, and a restored
optimizer continues bit-identically.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Set
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.types import Grads, State
from gradinfo.core.validate import positive
from gradinfo.transform.base import GradTransform

STATE_KEY = "transform_state"
"""The key of ``optimizer.state`` (and of ``state_dict()["state"]``) holding a single transform's state."""


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


def _restrict(tree: State, names: Set[str], live: Iterable[str]) -> State:
    """``tree`` with every per-parameter table (a dict keyed by exactly ``names``) cut down to ``live``."""
    if isinstance(tree, dict):
        if tree.keys() == names:
            return {n: tree[n] for n in live}
        return {k: _restrict(v, names, live) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_restrict(v, names, live) for v in tree)
    return tree


def _merge(old: State, new: State, names: Set[str]) -> State:
    """``new`` with the entries :func:`_restrict` cut from ``old``'s per-parameter tables put back."""
    if isinstance(old, dict) and isinstance(new, dict):
        if old.keys() == names:
            return {n: new[n] if n in new else old[n] for n in old}
        return {k: _merge(old[k], v, names) if k in old else v for k, v in new.items()}
    if isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)) and len(old) == len(new):
        return type(new)(_merge(a, b, names) for a, b in zip(old, new, strict=True))
    return new


class TransformOptimizer(torch.optim.Optimizer):
    """``torch.optim.Optimizer`` stepping along a ``GradTransform``'s output (the module docstring has the
    rule for missing gradients and where the state lives).

    Build it with :func:`as_optimizer` for one transform over all groups, or subclass it for one transform
    per group: implement :meth:`group_transform`, and override :meth:`check_group` for settings the
    transform does not check, and :meth:`step_group` for an in-place update of the same math.

    Args:
        params: parameters, ``(name, parameter)`` pairs, or param-group dicts of either.
        defaults: the default settings of a group (``lr`` at least).
        transform: one transform for every group; None for one per group from :meth:`group_transform`.

    Raises:
        TypeError: ``transform`` is neither None nor a ``GradTransform``; ``params`` mixes named and
            unnamed entries; a setting of the wrong type.
        ValueError: a negative or non-finite ``lr``, repeated parameter names, a bad setting.
    """

    def __init__(
        self, params: Iterable[Any], defaults: dict[str, Any], transform: GradTransform | None = None
    ) -> None:
        self.transform = None if transform is None else _check_transform(transform)
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        """Include the transform, so ``copy.deepcopy(optimizer)`` keeps it (``torch.save`` the
        ``state_dict()`` instead of the optimizer: a transform's functions are closures)."""
        return {**super().__getstate__(), "transform": self.transform}

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (missing settings come from the defaults) and check its settings at once; its
        ``"params"`` may be parameters or ``(name, parameter)`` pairs."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        items = group["params"]
        items = [items] if isinstance(items, Tensor) else list(items)
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
        group = self.param_groups[-1]
        group["lr"] = positive("lr", group["lr"], allow_zero=True)
        self.check_group(group)

    def group_transform(self, group: dict[str, Any]) -> GradTransform:
        """The transform of ``group``, built from its settings (one transform per group: called once per
        group and step; its state must be per parameter)."""
        raise NotImplementedError(f"{type(self).__name__} must implement group_transform or pass transform")

    def check_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` for a bad ``group`` setting (default: build its transform)."""
        if self.transform is None:
            self.group_transform(group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        """One update of every parameter that has a gradient (the others are skipped).

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
        live = [(group, _live(group)) for group in self.param_groups]
        if self.transform is None:
            for group, members in live:
                if members:
                    self.step_group(group, members)
        elif any(members for _, members in live):
            self._step_one_transform(live)
        return loss

    def step_group(self, group: dict[str, Any], live: Grads) -> None:
        """Update ``live`` (name -> parameter), the parameters of ``group`` that have dense gradients.

        The default runs :meth:`group_updates` and applies ``p -= lr * update``; an optimizer that owns its
        state may override this with an in-place update of the same math.
        """
        updates = self.group_updates(group, live)
        for name, p in live.items():
            _apply(p, updates[name], group["lr"])

    def group_updates(self, group: dict[str, Any], live: Grads) -> Grads:
        """Run ``group``'s transform on the gradients of ``live`` and store the new per-parameter state.

        Returns:
            The update of every parameter of ``live``, keyed like it.
        """
        transform = self.group_transform(group)
        fresh = {n: p for n, p in live.items() if not self.state[p]}
        state = transform.init(fresh) if fresh else {}
        state = {n: state[n] if n in fresh else self.state[p] for n, p in live.items()}
        grads: Grads = {n: p.grad for n, p in live.items()}
        updates, new_state = transform.update(grads, state, dict(live))
        _check_output(updates, live)
        for n, p in live.items():
            self.state[p] = new_state[n]
        return updates

    def _step_one_transform(self, live: list[tuple[dict[str, Any], Grads]]) -> None:
        """One step of the single transform over the live parameters of every group."""
        params: Grads = {
            n: p for g in self.param_groups for n, p in zip(g["param_names"], g["params"], strict=True)
        }
        if STATE_KEY not in self.state:
            self.state[STATE_KEY] = self.transform.init({n: p.detach() for n, p in params.items()})
        state = self.state[STATE_KEY]
        members: Grads = {n: p.detach() for _, group_live in live for n, p in group_live.items()}
        skipped = len(members) < len(params)
        if skipped:
            state = _restrict(state, params.keys(), members)
        grads: Grads = {n: params[n].grad for n in members}
        updates, new_state = self.transform.update(grads, state, members)
        _check_output(updates, members)
        self.state[STATE_KEY] = (
            _merge(self.state[STATE_KEY], new_state, params.keys()) if skipped else new_state
        )
        for group, group_live in live:
            for name, p in group_live.items():
                _apply(p, updates[name], group["lr"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a ``state_dict()``; a single transform's state is deep-copied (and moved to the parameters'
        device when they all share one), per-parameter state is handled as by ``torch.optim``."""
        super().load_state_dict(state_dict)
        if STATE_KEY in self.state:
            devices = {p.device for g in self.param_groups for p in g["params"]}
            state = copy.deepcopy(self.state[STATE_KEY])
            if len(devices) == 1:
                device = devices.pop()
                state = _map_tensors(state, lambda t: t.to(device))
            self.state[STATE_KEY] = state


def _check_transform(transform: Any) -> GradTransform:
    if not isinstance(transform, GradTransform):
        raise TypeError(
            f"transform must be a GradTransform, got {type(transform).__name__} {transform!r}; "
            "build one with gradinfo.transform.chain(...)"
        )
    return transform


def _live(group: dict[str, Any]) -> Grads:
    """``{name: parameter}`` of the parameters of ``group`` that have a gradient, in group order."""
    live: Grads = {}
    for name, p in zip(group["param_names"], group["params"], strict=True):
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            raise TypeError(
                f"parameter {name!r} has a sparse gradient; a TransformOptimizer needs dense ones"
            )
        live[name] = p
    return live


def _check_output(updates: Grads, live: Grads) -> None:
    missing = sorted(name for name in live if name not in updates)
    if missing:
        raise ValueError(
            f"the transform's output lacks {missing} (it has {sorted(updates)[:5]}...); a transform driving "
            "an optimizer must map gradients to updates keyed the same way (end sketch with desketch)"
        )


def _apply(p: Tensor, update: Tensor, lr: float) -> None:
    p.add_(update.to(dtype=p.dtype, device=p.device), alpha=-lr)


def as_optimizer(transform: GradTransform, params: Iterable[Any], lr: float) -> TransformOptimizer:
    """Wrap ``transform`` as a ``torch.optim.Optimizer`` stepping ``p <- p - lr * transform(grads)[name]``.

    One transform runs over every group (only ``lr`` differs between groups); parameters whose ``.grad``
    is None are skipped as the module docstring says.

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
    return TransformOptimizer(params, {"lr": lr}, _check_transform(transform))
