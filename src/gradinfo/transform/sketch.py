"""Random sketches of the flattened gradient, and their unbiased reconstruction.

Song et al., "Sketching for First Order Method: Efficient Algorithm for Low-Bandwidth Channel and
Vulnerability", 2023 (arXiv:2310.09667) sends ``R_t g`` instead of ``g`` in R^P, with a fresh sketching
matrix ``R_t`` in R^{dim x P} every round ``t``, and the receiver steps along

    g^ = R_t^T R_t g,   with E[R_t^T R_t] = I, so E[g^] = g.

Kinds of ``R`` (all satisfy ``E[R^T R] = I``):

- ``"gaussian"``: i.i.d. entries ``N(0, 1/dim)``;
- ``"rademacher"``: i.i.d. entries ``+-1/sqrt(dim)``;
- ``"countsketch"``: one nonzero ``sigma_j in {+-1}`` per column at a random row ``h(j)`` (Charikar, Chen and
  Farach-Colton, "Finding Frequent Items in Data Streams", 2002); ``R g`` costs O(P).

How sketch and desketch share the round: both are built with the same ``(dim, seed, kind, fresh)``, both
keep the round ``t`` (the number of updates done) in their state ``{"round": t, "shapes": {...}}``, and
the matrix of round ``t`` is a function of ``(seed, t)`` only (``t`` is held at 0 when ``fresh=False``).
A client's ``sketch`` and a server's ``desketch`` that each process every round therefore agree; code that
needs round ``t`` out of order builds it with :func:`sketch_matrix` or sets ``state["round"]``.

The gradient is flattened in sorted-name order. ``R`` is generated in column blocks on the CPU, so memory is
``O(dim * block)``, never ``O(dim * P)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from gradinfo.core.types import Grads, State
from gradinfo.core.validate import one_of, positive_int
from gradinfo.transform.base import GradTransform, check_keys
from gradinfo.transform.rng import STREAM_SKETCH, check_seed, step_generator

KINDS: tuple[str, ...] = ("gaussian", "rademacher", "countsketch")
SKETCH_KEY = "sketch"
"""The single key of a sketch's output: ``{"sketch": Tensor[dim]}``."""

_BLOCK_ELEMENTS = 1 << 22  # entries of R generated at once


def _blocks(num_coords: int, dim: int, kind: str, seed: int, round_: int, dtype: torch.dtype) -> Iterator:
    """Yield ``(start, stop, block)`` covering R's columns; a block is dense ``[dim, n]`` or a countsketch
    ``(rows [n], signs [n])``. Sketch and desketch walk the same blocks, so they use the same ``R``."""
    gen = step_generator(seed, STREAM_SKETCH, round_)
    width = _BLOCK_ELEMENTS if kind == "countsketch" else max(1, _BLOCK_ELEMENTS // dim)
    for start in range(0, num_coords, width):
        stop = min(num_coords, start + width)
        n = stop - start
        if kind == "gaussian":
            yield start, stop, torch.randn(dim, n, generator=gen, dtype=dtype) / math.sqrt(dim)  # [dim, n]
        elif kind == "rademacher":
            signs = torch.randint(0, 2, (dim, n), generator=gen).to(dtype) * 2 - 1  # [dim, n]
            yield start, stop, signs / math.sqrt(dim)
        else:
            rows = torch.randint(0, dim, (n,), generator=gen)  # [n]
            signs = torch.randint(0, 2, (n,), generator=gen).to(dtype) * 2 - 1  # [n]
            yield start, stop, (rows, signs)


def _check(dim: object, seed: object, kind: object, fresh: object) -> tuple[int, int, str, bool]:
    dim = positive_int("dim", dim)
    seed = check_seed(seed)
    kind = one_of("kind", kind, KINDS)
    if not isinstance(fresh, bool):
        raise TypeError(f"fresh must be a bool, got {type(fresh).__name__} {fresh!r}")
    return dim, seed, kind, fresh


def sketch_matrix(
    num_coords: int,
    dim: int,
    seed: int = 0,
    kind: str = "gaussian",
    *,
    round: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """The dense sketching matrix ``R`` in R^{dim x num_coords} that :func:`sketch` uses in ``round``.

    For analysis and tests on small problems (it holds ``dim * num_coords`` numbers). With ``fresh=False``
    the transforms always use ``round=0``.

    Args:
        num_coords: ``P``, the number of gradient coordinates.
        dim: the sketch dimension.
        seed, kind: as for :func:`sketch`.
        round: the round index ``t >= 0``.
        dtype: the dtype of ``R``; the transforms use the gradient's.

    Returns:
        ``R`` of shape ``[dim, num_coords]``.
    """
    num_coords = positive_int("num_coords", num_coords)
    dim, seed, kind, _ = _check(dim, seed, kind, False)
    round = positive_int("round", round, minimum=0)
    R = torch.zeros(dim, num_coords, dtype=dtype)  # [dim, P]
    for start, stop, block in _blocks(num_coords, dim, kind, seed, round, dtype):
        if kind == "countsketch":
            rows, signs = block
            R[rows, torch.arange(start, stop)] = signs
        else:
            R[:, start:stop] = block
    return R


def _shapes_state(params: Grads) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in params.items()}


def sketch(dim: int, seed: int = 0, kind: str = "gaussian", *, fresh: bool = False) -> GradTransform:
    """Compress the flattened gradient ``g`` in R^P to ``s = R_t g`` in R^dim.

    ``g`` concatenates the tensors in sorted-name order. ``R_t`` is described in the module docstring;
    with ``fresh=True`` round ``t`` uses a new matrix (Song et al., 2023), otherwise ``R_0`` every round.
    Pair with ``desketch(dim, seed, kind, fresh=fresh)`` built with the same arguments.

    Args:
        dim: the sketch dimension, an int >= 1.
        seed: an int >= 0.
        kind: ``"gaussian"``, ``"rademacher"`` or ``"countsketch"``.
        fresh: draw a new matrix every round.

    Returns:
        A ``GradTransform`` mapping ``{name: [*shape]}`` to ``{"sketch": [dim]}``; state
        ``{"round": t, "shapes": {name: shape}}``.

    Raises:
        TypeError / ValueError: bad ``dim``, ``seed``, ``kind`` or ``fresh`` (named in the message);
            at update, gradients keyed or shaped unlike the ``params`` given to ``init``.
    """
    dim, seed, kind, fresh = _check(dim, seed, kind, fresh)

    def init(params: Grads) -> State:
        return {"round": 0, "shapes": _shapes_state(params)}

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        shapes = state["shapes"]
        check_keys("sketch", grads, shapes)
        bad = {n: (tuple(g.shape), shapes[n]) for n, g in grads.items() if tuple(g.shape) != tuple(shapes[n])}
        if bad:
            raise ValueError(f"sketch: gradient shapes differ from init's (got, expected): {bad}")
        names = sorted(grads)
        flat = torch.cat([grads[n].reshape(-1) for n in names])  # [P]
        s = torch.zeros(dim, dtype=flat.dtype, device=flat.device)  # [dim]
        round_ = state["round"] if fresh else 0
        for start, stop, block in _blocks(flat.numel(), dim, kind, seed, round_, flat.dtype):
            chunk = flat[start:stop]  # [n]
            if kind == "countsketch":
                rows, signs = block
                s = s.index_add(0, rows.to(flat.device), signs.to(flat.device) * chunk)
            else:
                s = s + block.to(flat.device) @ chunk  # [dim]
        return {SKETCH_KEY: s}, {"round": state["round"] + 1, "shapes": shapes}

    return GradTransform(init, update)


def desketch(dim: int, seed: int = 0, kind: str = "gaussian", *, fresh: bool = False) -> GradTransform:
    """Map a sketch ``s = R_t g`` back to ``R_t^T s`` reshaped like the parameters (unbiased for ``g``).

    ``E[R_t^T R_t g] = g`` for every kind. ``init(params)`` records the parameters' names and shapes, which
    the output takes; the round advances with every update exactly as in :func:`sketch`.

    Args:
        dim, seed, kind, fresh: exactly those given to the paired :func:`sketch`.

    Returns:
        A ``GradTransform`` mapping ``{"sketch": [dim]}`` to ``{name: [*shape]}``; state
        ``{"round": t, "shapes": {name: shape}}``.

    Raises:
        TypeError / ValueError: bad arguments (named in the message); at update, input that is not
            ``{"sketch": Tensor[dim]}``.
    """
    dim, seed, kind, fresh = _check(dim, seed, kind, fresh)

    def init(params: Grads) -> State:
        return {"round": 0, "shapes": _shapes_state(params)}

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        check_keys("desketch", grads, [SKETCH_KEY])
        s = grads[SKETCH_KEY]  # [dim]
        if tuple(s.shape) != (dim,):
            raise ValueError(f"desketch: expected a sketch of shape ({dim},), got {tuple(s.shape)}")
        shapes = state["shapes"]
        names = sorted(shapes)
        sizes = [math.prod(shapes[n]) for n in names]
        parts = []
        round_ = state["round"] if fresh else 0
        for _, _, block in _blocks(sum(sizes), dim, kind, seed, round_, s.dtype):
            if kind == "countsketch":
                rows, signs = block
                parts.append(signs.to(s.device) * s[rows.to(s.device)])  # [n]
            else:
                parts.append(block.to(s.device).T @ s)  # [n]
        flat = torch.cat(parts) if parts else s.new_zeros(0)  # [P]
        pieces = dict(zip(names, flat.split(sizes), strict=True))
        out = {n: pieces[n].reshape(shapes[n]) for n in shapes}
        return out, {"round": state["round"] + 1, "shapes": shapes}

    return GradTransform(init, update)
