"""The gradient transform: an ``(init, update)`` pair, composed with :func:`chain`.

A ``GradTransform`` is two pure functions, as in optax:

- ``init(params) -> state`` builds the initial state from the parameters (only their names, shapes,
  dtypes and devices matter);
- ``update(grads, state, params) -> (grads', state')`` maps gradients to new gradients and returns the
  next state.

Contract every transform in gradinfo keeps:

- ``update`` never mutates ``grads``, ``state`` or ``params`` in place, and the state it returns never
  aliases an input gradient tensor (a caller may zero its gradients in place after the call);
- the state is a pytree of tensors, dicts, tuples and Python scalars (no custom classes), so it survives
  ``torch.save``/``torch.load(weights_only=True)``, ``copy.deepcopy`` and an optimizer ``state_dict``;
- randomness comes from a seed plus a step counter held in the state, never from the global RNG, so a run
  that is saved, loaded and continued is bit-identical to one that was never interrupted.

Transforms output whatever their input means: when :func:`gradinfo.transform.as_optimizer` drives a chain,
its output is a *descent direction* that is subtracted (``p <- p - lr * update``), so do not end a chain
with ``scale(-lr)`` as one would in optax.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import NamedTuple

from gradinfo.core.types import Grads, State


class GradTransform(NamedTuple):
    """A pure gradient transformation.

    Attributes:
        init: ``init(params: Grads) -> State``.
        update: ``update(grads: Grads, state: State, params: Grads | None) -> tuple[Grads, State]``.
    """

    init: Callable[[Grads], State]
    update: Callable[[Grads, State, Grads | None], tuple[Grads, State]]


def chain(*transforms: GradTransform) -> GradTransform:
    """Apply ``transforms`` one after another; the state is the tuple of their states.

    Args:
        *transforms: ``GradTransform`` s, applied left to right.

    Returns:
        A ``GradTransform`` whose state is ``tuple(t.init(params) for t in transforms)``.

    Raises:
        TypeError: an argument is not a ``GradTransform``.
    """
    for i, t in enumerate(transforms):
        if not isinstance(t, GradTransform):
            raise TypeError(
                f"chain() argument {i} must be a GradTransform, got {type(t).__name__} {t!r}; "
                "call the factory (e.g. identity(), not identity)"
            )

    def init(params: Grads) -> State:
        return tuple(t.init(params) for t in transforms)

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(
                f"chain of {len(transforms)} transforms got a state that is not a tuple of "
                f"{len(transforms)} states ({type(state).__name__}); build it with the same chain's init()"
            )
        new_states = []
        for t, s in zip(transforms, state, strict=True):
            grads, s = t.update(grads, s, params)
            new_states.append(s)
        return grads, tuple(new_states)

    return GradTransform(init, update)


def identity() -> GradTransform:
    """The transform that returns its input unchanged (stateless; state ``()``)."""

    def init(params: Grads) -> State:
        return ()

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        return grads, state

    return GradTransform(init, update)


def scale(factor: float) -> GradTransform:
    """Multiply every gradient by ``factor`` (any finite number, negative included).

    Args:
        factor: the multiplier.

    Raises:
        TypeError: ``factor`` is not a number.
        ValueError: ``factor`` is not finite.
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)):
        raise TypeError(f"factor must be a number, got {type(factor).__name__} {factor!r}")
    if not math.isfinite(factor):
        raise ValueError(f"factor must be a finite number, got {factor!r}")
    factor = float(factor)

    def init(params: Grads) -> State:
        return ()

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        return {name: g * factor for name, g in grads.items()}, state

    return GradTransform(init, update)


def check_keys(where: str, grads: Grads, expected: Iterable[str]) -> None:
    """Raise a ``ValueError`` when ``grads`` is not keyed exactly like ``expected`` (the state's keys).

    Args:
        where: the transform's name, for the message.
        grads: the gradients given to ``update``.
        expected: the names the state was initialised with.
    """
    expected = set(expected)
    missing = sorted(expected - grads.keys())
    unexpected = sorted(grads.keys() - expected)
    if missing or unexpected:
        raise ValueError(
            f"{where}: the gradients' keys do not match the state's (built by init(params)): "
            f"missing {missing}, unexpected {unexpected}; call init() with the same parameters the "
            "gradients are keyed by"
        )
