"""SinkGD: a stateless update that alternately normalises a weight gradient's rows and columns.

Scetbon et al., "Gradient Multi-Normalization for Stateless and Scalable LLM Training", 2025
(arXiv:2502.06742), Algorithm 3. For a matrix gradient ``G`` of shape ``[m, n]`` repeat ``L`` times

    G <- sqrt(n) * Q(G)^-1 G        Q(G) = diag(||G_i,:||_2)   (every row to norm sqrt(n))
    G <- sqrt(m) * G R(G)^-1        R(G) = diag(||G_:,j||_2)   (every column to norm sqrt(m))

and step ``W <- W - lr * G``. The alternation is Sinkhorn's iteration on the squared entries, so it converges
to a matrix whose rows have norm ``sqrt(n)`` and columns norm ``sqrt(m)`` (entries of root-mean-square 1).
Matrix parameters keep **no optimizer state**. As in the paper, everything else (biases, norms, and the
embedding and output head, which :func:`sinkgd_param_groups` moves to their own group) is trained by AdamW.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.types import Grads, State
from gradinfo.core.validate import check_betas, positive, positive_int
from gradinfo.transform.base import GradTransform, check_keys
from gradinfo.transform.optimizer import TransformOptimizer

_CHUNK_BYTES = 16 << 20
"""Most bytes of gradients normalised in one batch. Batching same-shape matrices saves kernel launches, but
the batch's stack and squares are temporaries as large as the batch, so a bound keeps an LLM's step from
doubling its gradient memory. On a quiet 2-core CPU (benchmarks/optim.py's model) 16 MiB steps as fast as
one unbounded batch (1.13x vs 1.14x AdamW), and 1 MiB batches, sized for the L2 cache, were 5% slower."""


def sinkhorn_normalize(grad: Tensor, iterations: int = 5) -> Tensor:
    """Alternate row and column normalisation of ``grad`` ``iterations`` times (rows first).

    Args:
        grad: ``[m, n]`` matrix.
        iterations: ``L >= 1``.

    Returns:
        ``[m, n]``: columns of norm ``sqrt(m)`` exactly, rows of norm ``sqrt(n)`` up to the iteration's
        convergence (an all-zero row or column stays zero).

    Raises:
        TypeError: ``grad`` is not a tensor or ``iterations`` not an int.
        ValueError: ``grad`` is not 2-D or ``iterations < 1``.
    """
    if not isinstance(grad, Tensor):
        raise TypeError(f"grad must be a tensor, got {type(grad).__name__}")
    if grad.ndim != 2:
        raise ValueError(f"grad must be a 2-D matrix [m, n], got shape {tuple(grad.shape)}")
    positive_int("iterations", iterations)
    return _sinkhorn_batched(grad[None].clone(), iterations)[0]  # [m, n]


def _sinkhorn_batched(grads: Tensor, iterations: int) -> Tensor:
    """:func:`sinkhorn_normalize` of ``k`` same-shaped matrices at once; overwrites and returns ``grads``.

    ``G_k = diag(r) G diag(c)`` throughout, so only the scalings iterate: with ``S = G * G``, ``a = r^2``,
    ``b = c^2``, the row step sets ``a = n / (S b)`` and the column step ``b = m / (a S)`` (Sinkhorn on
    ``S``): two batched mat-vecs per iteration over ``S``, then one in-place scaling of ``G``. An all-zero
    row or column gets a huge finite scale (``n / 0`` clamped to the dtype's maximum) that multiplies only
    zeros, so it stays zero.

    Both mat-vecs are ``bmm`` of a ``[k, 1, *]`` row vector by ``S`` or ``S^T`` (no temporary the size of
    ``S``); on CPU ``bmm(S, b^T)`` with a ``[k, n, 1]`` column takes a slow path (~10x here), and
    ``vecdot(S, b)`` writes an ``S``-sized product before summing it.

    Args:
        grads: ``[k, m, n]``, owned by the caller (it is scaled in place).
        iterations: ``L >= 1``.

    Returns:
        ``grads``, normalised.
    """
    k, m, n = grads.shape
    big = torch.finfo(grads.dtype).max
    squares = grads * grads  # [k, m, n]
    squares_t = squares.mT  # [k, n, m], a view
    n_t, m_t = grads.new_tensor(n), grads.new_tensor(m)  # 0-dim: no scalar wrapping in the loop
    b = grads.new_ones(k, 1, n)  # [k, 1, n]
    for _ in range(iterations):
        a = torch.bmm(b, squares_t).reciprocal_().mul_(n_t).clamp_(max=big)  # [k, 1, m]
        b = torch.bmm(a, squares).reciprocal_().mul_(m_t).clamp_(max=big)  # [k, 1, n]
    return grads.mul_(a.sqrt_().mT).mul_(b.sqrt_())  # [k, m, n]


def sinkgd_transform(
    iterations: int = 5,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    sinkhorn: bool | None = None,
) -> GradTransform:
    """SinkGD's direction: Sinkhorn-normalised matrices, AdamW on the rest; a ``GradTransform``.

    Args:
        iterations: ``L``, the row/column alternations per step.
        betas, eps: AdamW's settings for the parameters not normalised.
        weight_decay: decoupled decay, ``wd * theta`` added to every direction, ``>= 0``.
        sinkhorn: ``True``: every tensor is a matrix to normalise; ``False``: every tensor goes to AdamW;
            ``None``: 2-D tensors are normalised, the others go to AdamW.

    Returns:
        A ``GradTransform`` with per-parameter state: ``{}`` for normalised matrices, AdamW's
        ``{"step", "exp_avg", "exp_avg_sq"}`` for the rest.

    Raises:
        TypeError / ValueError: a bad setting; in ``init``, ``sinkhorn=True`` with a tensor that is not 2-D.
    """
    positive_int("iterations", iterations)
    b1, b2 = check_betas(betas)
    eps = positive("eps", eps, allow_zero=True)
    weight_decay = positive("weight_decay", weight_decay, allow_zero=True)
    if sinkhorn not in (None, True, False):
        raise TypeError(f"sinkhorn must be True, False or None, got {sinkhorn!r}")

    def is_matrix(name: str, p: Tensor) -> bool:
        if sinkhorn is True and p.ndim != 2:
            raise ValueError(f"sinkhorn=True needs 2-D parameters, but {name!r} has shape {tuple(p.shape)}")
        return p.ndim == 2 if sinkhorn is None else sinkhorn

    def init(params: Grads) -> State:
        return {
            name: {}
            if is_matrix(name, p)
            else {"step": 0, "exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
            for name, p in params.items()
        }

    def update(grads: Grads, state: State, params: Grads | None = None) -> tuple[Grads, State]:
        check_keys("sinkgd_transform", grads, state)
        if weight_decay and params is None:
            raise ValueError("sinkgd_transform with weight_decay > 0 needs params in update()")
        out: Grads = {}
        new_state: State = {}
        same_shape: dict[tuple[Any, ...], list[str]] = {}
        adam = [name for name in grads if state[name]]
        for name, g in grads.items():
            if not state[name]:
                if g.ndim != 2:
                    raise ValueError(f"{name!r} is normalised as a matrix but has shape {tuple(g.shape)}")
                same_shape.setdefault((g.shape, g.dtype, g.device), []).append(name)
                new_state[name] = {}
        for names in same_shape.values():  # batched per shape, in chunks of <= _CHUNK_BYTES: [k, m, n]
            ref = grads[names[0]]
            per_chunk = max(1, _CHUNK_BYTES // (ref.numel() * ref.element_size()))
            for i in range(0, len(names), per_chunk):
                chunk = names[i : i + per_chunk]
                normalised = _sinkhorn_batched(torch.stack([grads[n] for n in chunk]), iterations)
                out.update(zip(chunk, normalised.unbind(0), strict=True))
        if adam:  # AdamW, one foreach op per stage over all these tensors; every result is a new tensor
            gs = [grads[n] for n in adam]
            steps = [state[n]["step"] + 1 for n in adam]
            m = torch._foreach_lerp([state[n]["exp_avg"] for n in adam], gs, 1 - b1)
            v = torch._foreach_mul([state[n]["exp_avg_sq"] for n in adam], b2)
            torch._foreach_addcmul_(v, gs, gs, value=1 - b2)
            denom = torch._foreach_div(v, [1 - b2**t for t in steps])
            torch._foreach_sqrt_(denom)
            torch._foreach_add_(denom, eps)
            direction = torch._foreach_div(m, [1 - b1**t for t in steps])
            torch._foreach_div_(direction, denom)
            for n, t, m_n, v_n, d_n in zip(adam, steps, m, v, direction, strict=True):
                new_state[n] = {"step": t, "exp_avg": m_n, "exp_avg_sq": v_n}
                out[n] = d_n
        out = {name: out[name] for name in grads}
        if weight_decay:  # the directions are fresh tensors: add the decay in place
            torch._foreach_add_(list(out.values()), [params[n] for n in out], alpha=weight_decay)
        return out, {name: new_state[name] for name in grads}

    return GradTransform(init, update)


def sinkgd_param_groups(
    model: nn.Module, lr: float, adam_lr: float, weight_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Split ``model``'s parameters as the paper does: ``nn.Linear`` weights (the output head excepted) are
    Sinkhorn-normalised, everything else (embeddings, head, norms, biases) runs AdamW.

    The head is ``model.get_output_embeddings()`` when the model has that method (Hugging Face models).

    Args:
        model: the network.
        lr: learning rate of the normalised matrices.
        adam_lr: learning rate of the AdamW group.
        weight_decay: decoupled decay of the matrix group (the AdamW group gets none).

    Returns:
        Two param-group dicts for :class:`SinkGD` (``sinkhorn=True`` and ``sinkhorn=False``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    matrices = [
        m.weight
        for m in model.modules()
        if isinstance(m, nn.Linear) and m is not head and m.weight.requires_grad
    ]
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    return [
        {"params": matrices, "lr": lr, "sinkhorn": True, "weight_decay": weight_decay},
        {"params": rest, "lr": adam_lr, "sinkhorn": False, "weight_decay": 0.0},
    ]


@register(
    "sinkgd",
    family="optim",
    paper=31,
    summary="Stateless update: alternately rescale the gradient matrix's rows and columns (Sinkhorn-like)",
    claim="gradinfo.claims.sinkgd:check",
    example="gradinfo.optim.sinkgd:CONFORMANCE",
)
class SinkGD(TransformOptimizer):
    """SinkGD as a ``torch.optim.Optimizer``: stateless for matrices, AdamW for the rest.

    Implements Algorithm 3 of "Gradient Multi-Normalization for Stateless and Scalable LLM Training" (2025):
    ``L`` alternations ``G <- sqrt(n) Q(G)^-1 G``, ``G <- sqrt(m) G R(G)^-1`` (rows to norm ``sqrt(n)``,
    columns to norm ``sqrt(m)``), then ``W <- W - lr * G``. Build the paper's split with
    :func:`sinkgd_param_groups`; with plain ``model.parameters()`` every 2-D tensor is normalised.

    Args:
        params: parameters or param-group dicts; a group may set ``lr``, ``iterations``, ``betas``, ``eps``,
            ``weight_decay`` and ``sinkhorn`` (see :func:`sinkgd_transform`).
        lr: learning rate, ``>= 0``.
        iterations: ``L``.
        betas, eps: of the AdamW part.
        weight_decay: decoupled, ``>= 0``.

    Raises:
        TypeError / ValueError: a bad setting, or ``sinkhorn=True`` on a group holding a non-matrix.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        iterations: int = 5,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = {
            "lr": lr,
            "iterations": iterations,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "sinkhorn": None,
        }
        super().__init__(params, defaults)

    def check_group(self, group: dict[str, Any]) -> None:
        super().check_group(group)
        if group["sinkhorn"] is True:
            bad = [tuple(p.shape) for p in group["params"] if p.ndim != 2]
            if bad:
                raise ValueError(f"a group with sinkhorn=True must hold only matrices; got shapes {bad}")

    def group_transform(self, group: dict[str, Any]) -> GradTransform:
        return sinkgd_transform(
            group["iterations"], group["betas"], group["eps"], group["weight_decay"], group["sinkhorn"]
        )


def _conformance(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    w = torch.nn.Parameter(torch.randn(4, 3, generator=gen))
    b = torch.nn.Parameter(torch.randn(4, generator=gen))
    x = torch.randn(8, 3, generator=gen)
    opt = SinkGD([w, b], lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        ((x @ w.T + b) ** 2).mean().backward()
        opt.step()
    return torch.cat([w.detach().flatten(), b.detach()])


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: SinkGD([torch.nn.Parameter(torch.zeros(2, 2))], lr=-1.0),
        lambda: SinkGD([torch.nn.Parameter(torch.zeros(2, 2))], iterations=0),
        lambda: SinkGD([{"params": [torch.nn.Parameter(torch.zeros(3))], "sinkhorn": True}]),
        lambda: sinkhorn_normalize(torch.zeros(3)),
    ),
)
