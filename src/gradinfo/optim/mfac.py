"""M-FAC optimizer: steps along the inverse empirical Fisher of a sliding window of the last m gradients.

Dynamic algorithm of M-FAC (Frantar, Kurtic, Alistarh 2021, Section 4). The window ``G`` ``[m, d]``
holds the last ``m`` flattened gradients (zeros until filled); every step the oldest row is replaced by
the new gradient ``g`` and the update is

    u = F^{-1} g,    F = lambda I + (1/m) G^T G.

By Woodbury, ``F^{-1} x = x / lambda - G^T (m I + G G^T / lambda)^{-1} G x / lambda^2``: the whole
``d``-dimensional work is the product ``G g`` (which is also the new row and column of the Gram matrix
``G G^T`` kept in the state) and the combination ``G^T c``, both ``O(d m)``; the coefficients ``c`` come
from an ``O(m^3)`` factorisation of the ``m x m`` matrix ``m I + G G^T / lambda``. The official code
factors it by LU without pivoting (that is its recursive Sherman-Morrison order); this module uses the
Cholesky factorisation of the same symmetric positive-definite matrix, in float64. As in the official
optimizer, weight decay is added to the gradient before preconditioning (``g + wd * p``) and momentum
averages the preconditioned updates, ``v <- mu v + (1 - mu) u``.

Caveats: all parameters are preconditioned jointly (one ``[m, d]`` window over the concatenated
gradients), so memory is ``m`` times the model's parameters; the default ``ngrads=1024`` is the paper's
and sized for a GPU, use tens for CPU models.

References:
    Frantar, Kurtic, Alistarh. M-FAC: Efficient Matrix-Free Approximations of Second-Order Information
    (2021), NeurIPS, arXiv:2107.03356. Official code: IST-DASLab/M-FAC (``optim.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads, State
from gradinfo.core.validate import positive, positive_int
from gradinfo.transform.base import GradTransform, check_keys
from gradinfo.transform.optimizer import TransformOptimizer


def mfac_transform(
    ngrads: int = 1024, damping: float = 1e-5, momentum: float = 0.0, weight_decay: float = 0.0
) -> GradTransform:
    """The M-FAC dynamic algorithm as a ``GradTransform``: ``g -> F^{-1} (g + wd p)`` (+ momentum).

    From "M-FAC: Efficient Matrix-Free Approximations of Second-Order Information" (2021): each update
    puts the gradient into a ring buffer of the last ``ngrads`` gradients, replacing the oldest, and
    returns ``u = F^{-1} g`` with ``F = damping I + (1/m) sum_i g_i g_i^T`` over the buffer, in
    ``O(d m + m^3)``. The state holds the buffer as a tuple of ``m`` rows ``[d]`` (so a step writes one
    new row and copies nothing), the Gram matrix ``[m, m]`` (float64), the step count and the momentum
    buffer ``[d]`` (None without momentum). Every parameter needs a gradient at every update: the window
    rows are concatenated gradients, so a parameter cannot be skipped (``ValueError``).

    Args:
        ngrads: window size ``m``, >= 1 (paper default 1024).
        damping: ``lambda > 0`` (paper default 1e-5).
        momentum: ``mu`` in ``[0, 1)``; ``v <- mu v + (1 - mu) u`` is output when ``mu > 0``.
        weight_decay: ``wd >= 0``, added to the gradient as ``wd * p`` before preconditioning (needs
            ``params`` in ``update``).

    Returns:
        A ``GradTransform`` whose output is a descent direction keyed like its input.

    Raises:
        TypeError: an argument of the wrong type.
        ValueError: ``ngrads < 1``, ``damping <= 0``, ``momentum`` outside ``[0, 1)``, ``weight_decay < 0``;
            in ``update``, gradients missing for some of the parameters.
    """
    positive_int("ngrads", ngrads)
    damping = positive("damping", damping)
    momentum = positive("momentum", momentum, allow_zero=True)
    if momentum >= 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
    weight_decay = positive("weight_decay", weight_decay, allow_zero=True)

    def init(params: Grads) -> State:
        dim = sum(p.numel() for p in params.values())
        ref = next(iter(params.values()), None)
        if ref is None:
            raise ValueError("mfac needs at least one parameter, got an empty dict")
        kind = {"dtype": ref.dtype, "device": ref.device}
        return {
            "names": tuple(params),
            "rows": tuple(torch.zeros(dim, **kind) for _ in range(ngrads)),
            "gram": torch.zeros(ngrads, ngrads, dtype=torch.float64, device=ref.device),
            "step": 0,
            "velocity": torch.zeros(dim, **kind) if momentum > 0 else None,
        }

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        names = state["names"]
        missing = [n for n in names if n not in grads]
        if missing and grads.keys() < set(names):
            raise ValueError(
                f"mfac preconditions all its parameters jointly, so each needs a gradient at every step; "
                f"{missing} have none (an optimizer skips parameters whose .grad is None): leave them out "
                "of the optimizer's params, or set their .grad to zeros"
            )
        check_keys("mfac", grads, names)
        g = torch.cat([grads[n].reshape(-1) for n in names])  # [d], a fresh tensor: the new row
        sizes = [grads[n].numel() for n in names]
        if weight_decay > 0:
            if params is None:
                raise ValueError("mfac with weight_decay > 0 needs params in update(grads, state, params)")
            decay = [params[n].reshape(-1) for n in names]
            torch._foreach_add_(list(g.split(sizes)), decay, alpha=weight_decay)  # g + wd p, [d]
        slot = state["step"] % ngrads
        rows = (*state["rows"][:slot], g, *state["rows"][slot + 1 :])
        u, gram = _window_ihvp(rows, state["gram"], slot, damping)  # [d], [m, m]
        velocity = state["velocity"]
        if velocity is not None:
            velocity = torch.lerp(velocity, u, 1 - momentum)  # mu v + (1 - mu) u, [d]
            u = velocity
        out = {n: piece.view_as(grads[n]) for n, piece in zip(names, u.split(sizes), strict=True)}
        return out, {**state, "rows": rows, "gram": gram, "step": state["step"] + 1, "velocity": velocity}

    return GradTransform(init, update)


def _window_ihvp(rows: tuple[Tensor, ...], gram: Tensor, slot: int, damping: float) -> tuple[Tensor, Tensor]:
    """``F^{-1} g`` for the window ``rows`` whose row ``slot`` is the new gradient ``g``.

    Two passes over the window, the minimum: ``m`` dot products ``G g`` (the new Gram row and column),
    then ``u = G^T w`` with ``w = e_slot / lambda - (m I + G G^T / lambda)^{-1} G g / lambda^2``: the
    ``g / lambda`` term of Woodbury's formula is folded into the coefficient of ``g``'s own row (in
    float64), so no further pass over ``[d]`` is needed. The rows stay separate tensors (a step replaces
    one without copying the others), so the products are ``m`` vector operations rather than one
    matrix-vector product.

    Args:
        rows: ``m`` tensors ``[d]``, the window with ``g`` already at ``slot``.
        gram: ``[m, m]`` float64 Gram matrix of the previous window.
        slot: the replaced row.
        damping: ``lambda``.

    Returns:
        ``F^{-1} g`` ``[d]`` (a new tensor) and the updated Gram matrix ``[m, m]``.
    """
    g = rows[slot]  # [d]
    m = len(rows)
    dots = torch.stack([r @ g for r in rows]).to(torch.float64)  # [m]
    gram = gram.clone()
    gram[slot, :] = dots
    gram[:, slot] = dots
    system = m * torch.eye(m, dtype=torch.float64, device=gram.device) + gram / damping  # [m, m]
    coef = torch.cholesky_solve((dots / damping)[:, None], torch.linalg.cholesky(system))[:, 0]  # [m]
    weights = coef.div_(-damping)  # [m]
    weights[slot] += 1 / damping
    weights = weights.tolist()
    u = torch.mul(rows[0], weights[0])  # [d], a fresh tensor: accumulate into it
    for w, r in zip(weights[1:], rows[1:], strict=True):
        u.add_(r, alpha=w)
    return u, gram


@register(
    "mfac",
    family="optim",
    paper=43,
    summary=(
        "Preconditions by matrix-free inverse empirical-Fisher products over the last m gradients (Woodbury)"
    ),
    claim="gradinfo.claims.mfac:check",
    example="gradinfo.optim.mfac:CONFORMANCE",
)
class MFAC(TransformOptimizer):
    """M-FAC as a ``torch.optim.Optimizer``: ``p <- p - lr * F^{-1}(g + wd p)`` over a window of m gradients.

    The optimizer of "M-FAC: Efficient Matrix-Free Approximations of Second-Order Information" (2021);
    see :func:`mfac_transform` for the algorithm and the state. All parameter groups share one window (the
    gradients of every group are preconditioned jointly); each group may set its own ``lr``.

    Args:
        params: parameters, ``(name, parameter)`` pairs or param-group dicts (as ``as_optimizer``).
        lr: learning rate, ``>= 0`` (paper default 1e-3).
        ngrads: window size ``m`` (paper default 1024; tens suit CPU models).
        damping: ``lambda > 0`` (paper default 1e-5).
        momentum: in ``[0, 1)``.
        weight_decay: ``>= 0``.

    Raises:
        TypeError / ValueError: as :func:`mfac_transform` and ``as_optimizer``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        ngrads: int = 1024,
        damping: float = 1e-5,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr}, mfac_transform(ngrads, damping, momentum, weight_decay))


def _conformance(seed: int) -> Grads:
    gen = torch.Generator().manual_seed(seed)
    params = {"w": torch.randn(3, 4, generator=gen), "b": torch.randn(4, generator=gen)}
    transform = mfac_transform(ngrads=3, damping=1e-2, momentum=0.5, weight_decay=0.1)
    state = transform.init(params)
    out: Grads = {}
    for _ in range(5):
        grads = {n: torch.randn(p.shape, generator=gen) for n, p in params.items()}
        out, state = transform.update(grads, state, params)
    return out


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: mfac_transform(ngrads=0),
        lambda: mfac_transform(damping=0.0),
        lambda: mfac_transform(momentum=1.0),
        lambda: mfac_transform(weight_decay=-1.0),
        lambda: mfac_transform(ngrads=2.5),  # type: ignore[arg-type]
        lambda: MFAC([torch.zeros(2, requires_grad=True)], lr=-1.0),
    ),
)
