"""Gradient inversion through a sketched update, when the sketch's seed is known.

Song et al., "Sketching for First Order Method: Efficient Algorithm for Low-Bandwidth Channel and
Vulnerability" (2023; paper 6): clients send ``s = R_t g`` in R^dim instead of ``g`` in R^P, with a sketch
``R_t`` every party derives from a shared seed and the round (:func:`gradinfo.transform.sketch`). The server
knows ``R_t``, so it can still invert:

    x* = argmin_{x in box}  1 - <R_t grad L(x, y), s> / (||R_t grad L(x, y)|| ||s||) + alpha_TV TV(x)

(the paper writes the L2 form ``||R_t grad L(x) - s||^2``; the cosine form used here is the Inverting
Gradients objective, scale-free like it). With ``R = I`` this is exactly :func:`inverting_gradients`'
objective. ``R_t g`` flattens ``g`` in sorted-parameter-name order, as the sketch transform does. Dense
kinds build ``R_t`` once with :func:`gradinfo.transform.sketch_matrix`; a count sketch is read off the
public :func:`gradinfo.transform.desketch` (``R^T [1, 2, ..., dim]`` gives each coordinate's row and sign)
and applied with ``index_add`` in O(P). Labels come from :func:`label_recovery` on the de-sketched estimate
``R_t^T s`` of the gradient (unbiased), unless given.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads
from gradinfo.core.validate import one_of, positive_int
from gradinfo.privacy.attacks._common import check_attack_args, example_model
from gradinfo.privacy.attacks.label_recovery import label_recovery
from gradinfo.privacy.attacks.matching import match_gradients
from gradinfo.privacy.attacks.optimizers import Adam, MultiStep
from gradinfo.privacy.attacks.search import Inputs
from gradinfo.privacy.threat import Reconstruction, SharedUpdate, share
from gradinfo.transform import desketch, sketch, sketch_matrix
from gradinfo.transform.sketch import KINDS, SKETCH_KEY

MAX_DENSE_ENTRIES = 1 << 27
"""Largest dense ``R`` (dim x P entries, 512 MiB in float32) built; use ``kind="countsketch"`` beyond."""


def dense_projection(matrix: Tensor, names: list[str]) -> Callable[[Grads], Grads]:
    """``g -> {"sketch": R flat(g)}`` for an explicit ``R`` ``[dim, P]``, flattening ``names`` in that order.

    Args:
        matrix: ``R`` ``[dim, P]``.
        names: the parameter names whose gradients are concatenated (sorted order, as the sketch does).

    Returns:
        A differentiable, ``vmap``-compatible map from ``Grads`` to ``{"sketch": [dim]}``.
    """

    def project(grads: Grads) -> Grads:
        flat = torch.cat([grads[n].reshape(-1) for n in names])  # [P]
        return {SKETCH_KEY: matrix @ flat}  # [dim]

    return project


def sketch_projection(
    model: nn.Module, dim: int, sketch_seed: int, kind: str = "gaussian", round: int = 0
) -> Callable[[Grads], Grads]:
    """The map ``g -> R_t g`` that ``gradinfo.transform.sketch(dim, sketch_seed, kind)`` applies in ``round``.

    Args:
        model: the model whose trainable parameters make up ``g`` (their names and sizes fix ``P``).
        dim: the sketch dimension.
        sketch_seed: the sketch's seed (shared by clients and server).
        kind: ``"gaussian"``, ``"rademacher"`` or ``"countsketch"``.
        round: the round ``t`` (0 for a transform initialised afresh, as :func:`share` does).

    Returns:
        A differentiable, ``vmap``-compatible map from ``Grads`` to ``{"sketch": [dim]}``.

    Raises:
        ValueError: a dense ``R`` larger than :data:`MAX_DENSE_ENTRIES`, or a bad argument.
    """
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    names = sorted(params)
    sizes = [params[n].numel() for n in names]
    total = sum(sizes)
    dtype, device = params[names[0]].dtype, params[names[0]].device
    one_of("kind", kind, KINDS)
    if kind != "countsketch":
        if dim * total > MAX_DENSE_ENTRIES:
            raise ValueError(
                f"a dense {kind} sketch of {dim} x {total} entries exceeds {MAX_DENSE_ENTRIES}; "
                "attack a count sketch (kind='countsketch') or a smaller model"
            )
        matrix = sketch_matrix(total, dim, sketch_seed, kind, round=round, dtype=dtype).to(device)  # [dim, P]
        return dense_projection(matrix, names)
    back = desketch(dim, sketch_seed, kind, fresh=True)
    state = back.init({n: params[n].detach() for n in names})
    state["round"] = round
    codes = torch.arange(1, dim + 1, dtype=torch.float64)  # [dim]  row r encoded as r + 1
    columns, _ = back.update({SKETCH_KEY: codes}, state)
    flat = torch.cat([columns[n].reshape(-1) for n in names])  # [P]  sign_j (h(j) + 1)
    rows = (flat.abs().round().long() - 1).to(device)  # [P]
    signs = flat.sign().to(dtype=dtype, device=device)  # [P]

    def project(grads: Grads) -> Grads:
        g = torch.cat([grads[n].reshape(-1) for n in names])  # [P]
        return {SKETCH_KEY: torch.zeros(dim, dtype=g.dtype, device=g.device).index_add(0, rows, signs * g)}

    return project


def _desketched(model: nn.Module, update: SharedUpdate, sketch_seed: int, kind: str, round: int) -> Grads:
    """``R_t^T s`` shaped like the parameters: an unbiased estimate of the gradient, for label recovery."""
    params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    back = desketch(update.grads[SKETCH_KEY].numel(), sketch_seed, kind, fresh=True)
    state = back.init(params)
    state["round"] = round
    estimate, _ = back.update({SKETCH_KEY: update.grads[SKETCH_KEY]}, state)
    return estimate


@register(
    "sketched_inversion",
    family="privacy",
    paper=6,
    summary="Inversion of a sketched update: fit x̂ so that R_t·∇L(x̂) matches the sketch (seed known)",
    claim="gradinfo.claims.sketched_inversion:check",
    example="gradinfo.privacy.attacks.sketched_inversion:CONFORMANCE",
)
def sketched_inversion(
    model: nn.Module,
    update: SharedUpdate,
    *,
    input_shape: tuple[int, ...],
    sketch_seed: int,
    kind: str = "gaussian",
    round: int = 0,
    iterations: int = 1000,
    restarts: int = 4,
    lr: float = 0.1,
    tv: float = 1e-4,
    box: tuple[float, float] = (0.0, 1.0),
    labels: Tensor | None = None,
    seed: int = 0,
) -> Reconstruction:
    """Reconstruct the client's inputs from a sketch ``s = R_t g`` of its gradient, knowing ``R_t``.

    The attack of "Sketching for First Order Method: Efficient Algorithm for Low-Bandwidth Channel and
    Vulnerability" (Song et al., 2023): minimise ``1 - cos(R_t grad_theta CE(f(x), y), s) + tv * TV(x)`` over
    ``x`` in the box by signed Adam (the Inverting Gradients optimiser, batched restarts).

    Args:
        model: the round-start model.
        update: a shared update whose ``grads`` is ``{"sketch": [dim]}`` (``share(..., defense=sketch(dim,
            sketch_seed, kind))``, possibly followed by clipping or noise); kind ``"gradient"``.
        input_shape: one example's shape, e.g. ``(1, 8, 8)``.
        sketch_seed: the seed of the sketch (known to the server: every party derives ``R_t`` from it).
        kind: the sketch kind, ``"gaussian"``, ``"rademacher"`` or ``"countsketch"``.
        round: the round ``t`` of ``R_t`` (0 when the client's transform was freshly initialised).
        iterations: Adam steps, >= 1.
        restarts: random initialisations run together, >= 1.
        lr: Adam's initial step size, > 0.
        tv: weight of the total-variation prior, >= 0.
        box: the data range ``(low, high)``.
        labels: the batch's labels ``[B]`` if known; None recovers them from ``R_t^T s``.
        seed: seeds the initialisations and the label probes.

    Returns:
        A ``Reconstruction`` with ``inputs`` ``[B, *input_shape]``, ``labels`` ``[B]``, the chosen restart's
        objective per iteration, and ``extras``: ``restart_losses`` ``[R]``, ``best_restart``.

    Raises:
        TypeError, ValueError: a bad argument, or an update that is not a sketch, before any work.
    """
    batch, input_shape = check_attack_args(
        model, update, input_shape=input_shape, iterations=iterations, restarts=restarts, gradient=False
    )
    if set(update.grads) != {SKETCH_KEY} or update.grads[SKETCH_KEY].dim() != 1:
        raise ValueError(
            f"update.grads must be {{'{SKETCH_KEY}': Tensor[dim]}} (a sketched update), got keys "
            f"{sorted(update.grads)[:5]}; attack unsketched updates with inverting_gradients"
        )
    if update.kind != "gradient":
        raise ValueError(f"update must sketch a gradient (kind 'gradient'), got kind {update.kind!r}")
    positive_int("sketch_seed", sketch_seed, minimum=0)
    positive_int("round", round, minimum=0)
    search = Inputs(input_shape, box)
    optimizer = Adam(lr, signed=True, schedule=MultiStep())
    project = sketch_projection(model, update.grads[SKETCH_KEY].numel(), sketch_seed, kind, round)
    if labels is None:
        estimate = dataclasses.replace(update, grads=_desketched(model, update, sketch_seed, kind, round))
        labels = label_recovery(model, estimate, input_shape=input_shape, box=box, seed=seed).labels
    result = match_gradients(
        model,
        update.grads,
        search,
        batch_size=batch,
        labels=labels,
        iterations=iterations,
        optimizer=optimizer,
        restarts=restarts,
        tv=tv,
        project=project,
        seed=seed,
    )
    return result.reconstruction(labels)


def _example_update(seed: int, kind: str = "gaussian") -> SharedUpdate:
    gen = torch.Generator().manual_seed(seed)
    x, y = (
        torch.rand(1, 3, 8, 8, generator=gen),
        torch.randint(0, 4, (1,), generator=gen),
    )  # [1, 3, 8, 8], [1]
    model = example_model(seed)
    dim = math.ceil(sum(p.numel() for p in model.parameters()) / 4)
    return share(model, F.cross_entropy, x, y, defense=sketch(dim, seed=seed, kind=kind), seed=seed)


CONFORMANCE = Conformance(
    call=lambda seed: (
        sketched_inversion(
            example_model(seed),
            _example_update(seed),
            input_shape=(3, 8, 8),
            sketch_seed=seed,
            iterations=3,
            restarts=2,
            seed=seed,
        ).inputs
    ),
    bad_calls=(
        lambda: sketched_inversion(example_model(0), None, input_shape=(3, 8, 8), sketch_seed=0),  # type: ignore[arg-type]
        lambda: sketched_inversion(
            example_model(0), _example_update(0), input_shape=(3, 8, 8), sketch_seed=0, kind="srht"
        ),
        lambda: sketched_inversion(
            example_model(0), _example_update(0), input_shape=(3, 8, 8), sketch_seed=-1
        ),
        lambda: sketched_inversion(
            example_model(0),
            share(example_model(0), F.cross_entropy, torch.rand(1, 3, 8, 8), torch.tensor([0])),
            input_shape=(3, 8, 8),
            sketch_seed=0,
        ),
    ),
)
