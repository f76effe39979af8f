"""Importance scores for pruning from gradient information: Taylor, Fisher, their mix, and group aggregation.

For a weight element ``w`` with mean gradient ``g = (1/N) sum_i g_i`` over ``N`` calibration examples and
empirical Fisher diagonal ``F = (1/N) sum_i g_i^2`` (``g_i`` the gradient of example ``i``'s own loss), the
change of the loss when ``w`` is set to 0 has the second-order expansion
``L(w=0) - L(w) ~ -w g + (1/2) w^2 H``; with ``H ~ F`` this gives the element scores of LLM-Pruner
(Ma, Fang, Wang, "LLM-Pruner: On the Structural Pruning of Large Language Models", 2023, arXiv:2305.11627,
Eq. 4-5):

- ``taylor`` (first order, ``param_first``):  ``I = |w g|``
- ``fisher`` (second order, ``param_second``): ``I = (1/2) w^2 F``
- ``param_mix`` (both):                      ``I = |w g - (1/2) w^2 F|``
- ``l2`` (magnitude):                         ``I = w^2``
- ``random``:                                 ``I ~ U[0, 1)`` (a seeded baseline)

and the vector-wise score of one coupled structure ``W_k`` (a channel or head slice of one layer),
``I(W_k) = |sum_{j in W_k} w_j g_j|`` (:func:`group_taylor`). A coupled group (an attention head: rows of
q/k/v and columns of o_proj; an MLP channel) scores the aggregate of its members' scores
(:func:`aggregate`: sum, mean, max or product).

``F`` is the true per-example empirical Fisher, accumulated from
:func:`gradinfo.capture.empirical_fisher_diag` batch by batch and, inside a batch, in chunks of
``chunk_size`` examples, so memory is bounded by one chunk of per-example gradients whatever the number of
calibration examples; it is not the square of the batch gradient (which would be ``g^2``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.capture import batch_grads, empirical_fisher_diag
from gradinfo.core.types import Grads, LossFn
from gradinfo.core.validate import one_of, positive_int

__all__ = ["KINDS", "REDUCTIONS", "aggregate", "fisher_diag", "group_taylor", "importance", "mean_grad"]

KINDS: tuple[str, ...] = ("taylor", "fisher", "param_mix", "l2", "random")
"""Element-wise importance kinds accepted by :func:`importance`."""

REDUCTIONS: tuple[str, ...] = ("sum", "mean", "max", "prod")
"""Ways :func:`aggregate` combines the scores of a group's members."""

Batch = tuple[Tensor, Tensor]


def _selected(model: Any, params: Iterable[str] | None) -> dict[str, nn.Parameter]:
    """The trainable parameters named in ``params`` (all trainable ones when None), in model order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if params is None:
        chosen = trainable
    else:
        if isinstance(params, str) or not isinstance(params, Iterable):
            raise TypeError(
                f"params must be an iterable of parameter names (str), got {type(params).__name__} {params!r}"
            )
        wanted = list(params)
        bad = [n for n in wanted if not isinstance(n, str)]
        if bad:
            raise TypeError(f"params must hold parameter names (str), got {bad!r}")
        unknown = [n for n in wanted if n not in trainable]
        if unknown:
            raise ValueError(
                f"params names {unknown} are not trainable parameters of the model; "
                f"choose among named_parameters() with requires_grad=True (e.g. {list(trainable)[:3]})"
            )
        keep = set(wanted)
        chosen = {n: p for n, p in trainable.items() if n in keep}
    if not chosen:
        raise ValueError("no trainable parameters to score: the model has none or params is empty")
    return chosen


@contextmanager
def _only_trainable(model: nn.Module, keep: dict[str, nn.Parameter]) -> Iterator[None]:
    """Temporarily set ``requires_grad=False`` on every parameter outside ``keep`` (restored on exit)."""
    frozen = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in keep.values())]
    for p in frozen:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _batches(batches: Any) -> Iterator[Batch]:
    """Iterate ``batches``, checking each is an ``(inputs, targets)`` pair of tensors."""
    if batches is None or isinstance(batches, (Tensor, str)) or not isinstance(batches, Iterable):
        raise TypeError(
            "batches must be an iterable of (inputs, targets) tensor pairs, e.g. [(x, y)], "
            f"got {type(batches).__name__}"
        )
    for i, item in enumerate(batches):
        if (
            not isinstance(item, (tuple, list))
            or len(item) != 2
            or not all(isinstance(t, Tensor) for t in item)
        ):
            raise TypeError(f"batches[{i}] must be an (inputs, targets) pair of tensors, got {item!r:.80}")
        yield item[0], item[1]


def fisher_diag(
    model: nn.Module,
    batches: Iterable[Batch],
    loss_fn: LossFn,
    *,
    params: Iterable[str] | None = None,
    chunk_size: int | None = None,
) -> Grads:
    """Empirical Fisher diagonal ``F = (1/N) sum_i g_i^2`` over every example of every batch.

    Caveats: ``g_i`` is the gradient of ``loss_fn(model(x_i), y_i)`` on example ``i`` alone, exactly as
    :func:`gradinfo.per_example_grads` defines it (its rules for dropout, BatchNorm and tied weights apply);
    the model runs in its current mode. While it runs, parameters outside ``params`` have
    ``requires_grad`` switched off (restored afterwards), so only the selected ones are differentiated.

    Args:
        model: the network.
        batches: iterable of ``(inputs [B, ...], targets [B, ...])`` pairs; batch sizes may differ.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, applied to one example at a time.
        params: parameter names to score (default: every trainable parameter).
        chunk_size: examples whose gradients are held at once (default: as many as fit in 256 MiB).

    Returns:
        ``{name: [*param.shape]}``: the Fisher diagonal, averaged over all ``N`` examples.

    Raises:
        TypeError: ``model`` is not a module, ``batches`` is not an iterable of tensor pairs, ``params``
            is not an iterable of names, ``chunk_size`` is not an int.
        ValueError: an unknown parameter name, ``chunk_size < 1``, or ``batches`` is empty.
    """
    chosen = _selected(model, params)
    if chunk_size is not None:
        positive_int("chunk_size", chunk_size)
    total = {n: torch.zeros_like(p, memory_format=torch.contiguous_format) for n, p in chosen.items()}
    count = 0
    with _only_trainable(model, chosen):
        for inputs, targets in _batches(batches):
            part = empirical_fisher_diag(model, loss_fn, inputs, targets, chunk_size=chunk_size)
            size = inputs.shape[0]
            for n in total:
                total[n] += part[n] * size  # [*shape]
            count += size
    if count == 0:
        raise ValueError("batches is empty: the Fisher needs at least one example")
    return {n: t / count for n, t in total.items()}


def mean_grad(
    model: nn.Module, batches: Iterable[Batch], loss_fn: LossFn, *, params: Iterable[str] | None = None
) -> Grads:
    """Example-weighted average of the batch gradients: ``(1/N) sum_b B_b grad loss_fn(model(x_b), y_b)``.

    With a ``loss_fn`` that averages over its batch (the usual ``mean`` reduction) this is the mean
    per-example gradient ``(1/N) sum_i g_i``, the ``g`` of the Taylor scores. One forward and one backward
    per batch (:func:`gradinfo.capture.batch_grads`); while it runs, parameters outside ``params`` have
    ``requires_grad`` switched off (restored afterwards); their ``.grad`` fields are left untouched.

    Args:
        model: the network (runs in its current mode).
        batches: iterable of ``(inputs [B, ...], targets [B, ...])`` pairs.
        loss_fn: ``loss_fn(model(inputs), targets) -> scalar`` over a batch.
        params: parameter names (default: every trainable parameter).

    Returns:
        ``{name: [*param.shape]}``.

    Raises:
        TypeError: as for :func:`fisher_diag`, or ``loss_fn`` does not return a tensor.
        ValueError: an unknown parameter name, ``batches`` is empty, or the loss is not a scalar.
    """
    chosen = _selected(model, params)
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be callable (outputs, targets) -> scalar, got {type(loss_fn).__name__}"
        )
    total = {n: torch.zeros_like(p, memory_format=torch.contiguous_format) for n, p in chosen.items()}
    count = 0
    with _only_trainable(model, chosen):
        for inputs, targets in _batches(batches):
            part = batch_grads(model, loss_fn, inputs, targets).grads
            size = inputs.shape[0]
            for n in total:
                total[n] += part[n] * size  # [*shape]
            count += size
    if count == 0:
        raise ValueError("batches is empty: the gradient needs at least one example")
    return {n: t / count for n, t in total.items()}


def importance(
    model: nn.Module,
    batches: Iterable[Batch] | None,
    loss_fn: LossFn | None,
    *,
    kind: str = "taylor",
    params: Iterable[str] | None = None,
    chunk_size: int | None = None,
    seed: int = 0,
) -> Grads:
    """Per-element importance of every selected weight (see the module docstring for the equations).

    Args:
        model: the network.
        batches: calibration ``(inputs, targets)`` pairs; may be None for ``"l2"`` and ``"random"``. It is
            iterated once per gradient pass (twice for ``"param_mix"``), so pass a list, not a generator.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``, mean-reduced (None for ``"l2"``, ``"random"``).
        kind: ``"taylor"`` ``|w g|``, ``"fisher"`` ``w^2 F / 2``, ``"param_mix"`` ``|w g - w^2 F / 2|``,
            ``"l2"`` ``w^2`` or ``"random"`` (uniform in [0, 1)).
        params: parameter names to score (default: every trainable parameter).
        chunk_size: examples per chunk of per-example gradients (Fisher kinds only).
        seed: seed of the ``"random"`` scores.

    Returns:
        ``{name: [*param.shape]}`` non-negative scores (float, detached).

    Raises:
        TypeError / ValueError: as for :func:`fisher_diag`; ``kind`` unknown; ``batches`` or ``loss_fn``
            missing for a gradient kind; ``seed`` not an int >= 0.
    """
    one_of("kind", kind, KINDS)
    positive_int("seed", seed, minimum=0)
    chosen = _selected(model, params)
    weights = {n: p.detach() for n, p in chosen.items()}
    if kind == "l2":
        return {n: w.square() for n, w in weights.items()}
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        return {n: torch.rand(w.shape, generator=gen, dtype=w.dtype).to(w.device) for n, w in weights.items()}
    if batches is None or loss_fn is None:
        raise ValueError(
            f"kind={kind!r} needs calibration batches and a loss_fn; got batches={batches!r:.40}"
        )
    if isinstance(batches, Iterator):
        raise TypeError("batches must be re-iterable (a list or tuple of (inputs, targets)), got an iterator")
    names = list(chosen)
    if kind == "taylor":
        g = mean_grad(model, batches, loss_fn, params=names)
        return {n: (w * g[n]).abs() for n, w in weights.items()}
    f = fisher_diag(model, batches, loss_fn, params=names, chunk_size=chunk_size)
    if kind == "fisher":
        return {n: 0.5 * w.square() * f[n] for n, w in weights.items()}
    g = mean_grad(model, batches, loss_fn, params=names)
    return {n: (w * g[n] - 0.5 * w.square() * f[n]).abs() for n, w in weights.items()}


def group_taylor(weight: Tensor, grad: Tensor, *, dim: int = 0, group_size: int = 1) -> Tensor:
    """Vector-wise Taylor score of one member layer: ``|sum_{j in slice k} w_j g_j|`` per structure ``k``.

    The slices are the indices along ``dim`` taken ``group_size`` at a time (``group_size = head_dim``
    scores whole heads, 1 scores channels). This is LLM-Pruner's ``vectorize`` importance for one member
    of a coupled group; combine members with :func:`aggregate`.

    Args:
        weight: ``[..., n, ...]`` weight tensor (``n`` along ``dim``).
        grad: gradient with ``weight``'s shape (e.g. from :func:`mean_grad`).
        dim: the axis that indexes the pruned structures (0: output rows of a Linear, 1: input columns).
        group_size: consecutive indices per structure; must divide ``n``.

    Returns:
        ``[n // group_size]`` scores.

    Raises:
        TypeError: ``weight``/``grad`` are not tensors, ``dim``/``group_size`` not ints.
        ValueError: shapes differ, ``dim`` out of range, or ``group_size`` does not divide ``n``.
    """
    for name, value in (("weight", weight), ("grad", grad)):
        if not isinstance(value, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if weight.shape != grad.shape:
        raise ValueError(f"grad must have weight's shape {tuple(weight.shape)}, got {tuple(grad.shape)}")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} {dim!r}")
    if not -weight.dim() <= dim < weight.dim():
        raise ValueError(f"dim must index one of weight's {weight.dim()} axes, got {dim}")
    positive_int("group_size", group_size)
    n = weight.shape[dim]
    if n % group_size:
        raise ValueError(f"group_size must divide weight.shape[{dim}] = {n}, got {group_size}")
    per_index = (weight.detach() * grad.detach()).movedim(dim, 0).reshape(n, -1).sum(1)  # [n]
    return per_index.reshape(n // group_size, group_size).sum(1).abs()  # [n // group_size]


def aggregate(scores: Sequence[Tensor], how: str = "sum") -> Tensor:
    """Score of each coupled group from its members' scores, reduced over members.

    Args:
        scores: one ``[n_groups]`` tensor per member layer of the group (all the same length).
        how: ``"sum"``, ``"mean"``, ``"max"`` or ``"prod"``.

    Returns:
        ``[n_groups]``.

    Raises:
        TypeError: ``scores`` is not a sequence of tensors.
        ValueError: ``scores`` is empty, a member is not 1-D or lengths differ, or ``how`` is unknown.
    """
    one_of("how", how, REDUCTIONS)
    if isinstance(scores, Tensor) or not isinstance(scores, Sequence):
        raise TypeError(f"scores must be a sequence of [n_groups] tensors, got {type(scores).__name__}")
    if not scores:
        raise ValueError("scores is empty: a group needs at least one member")
    if not all(isinstance(s, Tensor) for s in scores):
        raise TypeError(f"scores must hold tensors, got {[type(s).__name__ for s in scores]}")
    shapes = [tuple(s.shape) for s in scores]
    if any(len(s) != 1 for s in shapes) or len(set(shapes)) != 1:
        raise ValueError(f"scores must all be 1-D with the same length [n_groups], got shapes {shapes}")
    stacked = torch.stack(list(scores))  # [M, n_groups]
    if how == "sum":
        return stacked.sum(0)
    if how == "mean":
        return stacked.mean(0)
    if how == "max":
        return stacked.amax(0)
    return stacked.prod(0)
