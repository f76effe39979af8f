"""GM-NAS: split a weight-sharing supernet where its candidate operations disagree on the shared weights.

Implements "Generalizing Few-Shot NAS with Gradient Matching" (2022), following the official code
(skhu101/GM-NAS: ``split_supernet`` in ``WS-GM/nasbench201/train_search.py``, ``match_loss`` and the
``mincut_split_*`` functions). For an unsplit edge ``e`` with candidate operations ``o_1..o_K``:

    g_k      = d L(w; e fixed to o_k) / d w_shared        (w_shared: every weight not on edge e)
    d(k, l)  = mean over batches of  1 - <g_k, g_l> / (||g_k|| ||g_l|| + 1e-6)      ("cos", the default)
    groups   = argmin over partitions P of {1..K} into G groups of  sum_{P} sum_{k<l in P} d(k, l)
    score(e) = sum_{k<l} d(k, l) - min within-group distance

The edge with the highest score is split: each group becomes a sub-supernet whose edge ``e`` keeps only
that group's operations. The partition is the exhaustive graph cut the official code runs (a minimum
within-group distance, i.e. a maximum cut of the distance graph), here for any ``G`` and a minimum group
size (``min_group_size``: 1 in the once-for-all code, 2 in the DARTS/ProxylessNAS code). Alternative
distances from the code: ``"per-filter-cos"`` (the sum over the rows of every weight matrix of ``1 - cos``,
vectors contributing 0) and ``"mse"`` (``||g_k - g_l||^2``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradinfo.core.registry import Conformance, register
from gradinfo.core.validate import one_of, positive_int

__all__ = ["EdgeSplit", "distance_matrix", "gm_nas", "gradient_distance", "split_ops"]

METRICS = ("cos", "per-filter-cos", "mse")
EPS = 1e-6
MAX_OPS = 16


def gradient_distance(grads_a: Sequence[Tensor], grads_b: Sequence[Tensor], metric: str = "cos") -> Tensor:
    """The gradient-matching distance between two lists of shared-weight gradients.

    Args:
        grads_a: gradients of the shared weights under one operation, one tensor per weight.
        grads_b: the same weights' gradients under another operation (same shapes, same order).
        metric: ``"cos"`` (``1 - cos`` of the concatenated vectors), ``"per-filter-cos"`` (sum over the
            rows of every weight with ``ndim >= 2`` of ``1 - cos``) or ``"mse"`` (squared L2 distance).

    Returns:
        A scalar tensor.

    Raises:
        ValueError: an unknown metric, or lists of different lengths or shapes.
    """
    one_of("metric", metric, METRICS)
    if len(grads_a) != len(grads_b) or any(
        a.shape != b.shape for a, b in zip(grads_a, grads_b, strict=False)
    ):
        raise ValueError("grads_a and grads_b must hold tensors of the same shapes in the same order")
    if metric == "per-filter-cos":
        total = grads_a[0].new_zeros(())
        for a, b in zip(grads_a, grads_b, strict=True):
            if a.dim() < 2:
                continue
            rows_a, rows_b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)  # [R, C]
            dots = (rows_a * rows_b).sum(-1)  # [R]
            total = total + (1 - dots / (rows_a.norm(dim=-1) * rows_b.norm(dim=-1) + EPS)).sum()
        return total
    va = torch.cat([a.reshape(-1) for a in grads_a])  # [D]
    vb = torch.cat([b.reshape(-1) for b in grads_b])  # [D]
    if metric == "mse":
        return ((va - vb) ** 2).sum()
    return 1 - (va @ vb) / (va.norm() * vb.norm() + EPS)


def distance_matrix(op_grads: Sequence[Sequence[Tensor]], metric: str = "cos") -> Tensor:
    """Pairwise :func:`gradient_distance` of the operations' gradient lists ``[K, K]`` (zero diagonal)."""
    k = len(op_grads)
    out = torch.zeros(k, k, dtype=op_grads[0][0].dtype)  # [K, K]
    for i, j in itertools.combinations(range(k), 2):
        out[i, j] = out[j, i] = gradient_distance(op_grads[i], op_grads[j], metric).detach().cpu()
    return out


def _partitions(n: int, groups: int) -> Iterator[list[int]]:
    """Every labelling of ``n`` items into exactly ``groups`` non-empty groups, once (restricted growth)."""

    def grow(prefix: list[int], used: int) -> Iterator[list[int]]:
        if len(prefix) == n:
            if used == groups:
                yield prefix
            return
        if groups - used > n - len(prefix):
            return
        for label in range(min(used + 1, groups)):
            yield from grow([*prefix, label], max(used, label + 1))

    yield from grow([], 0)


def split_ops(
    distances: Tensor, num_groups: int = 2, min_group_size: int = 1
) -> tuple[tuple[tuple[int, ...], ...], float]:
    """Partition operations into groups with the least total within-group distance (exhaustive search).

    Args:
        distances: symmetric pairwise distances ``[K, K]`` (the upper triangle is used).
        num_groups: number of groups ``G``, ``2 <= G <= K``.
        min_group_size: the smallest allowed group, ``>= 1``, with ``G * min_group_size <= K``.

    Returns:
        ``(groups, score)``: the groups as sorted tuples of operation indices (ordered by their smallest
        index; the first optimum in enumeration order on ties) and the edge score, the total pairwise
        distance minus the within-group distance.

    Raises:
        ValueError: a non-square matrix, ``K > 16``, or infeasible group sizes.
    """
    if distances.dim() != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be a square [K, K] matrix, got shape {tuple(distances.shape)}")
    k = distances.shape[0]
    if k > MAX_OPS:
        raise ValueError(f"exhaustive splitting handles at most {MAX_OPS} operations, got {k}")
    positive_int("num_groups", num_groups, minimum=2)
    positive_int("min_group_size", min_group_size)
    if num_groups * min_group_size > k:
        raise ValueError(
            f"cannot split {k} operations into {num_groups} groups of at least {min_group_size} each"
        )
    upper = torch.triu(distances.detach().double().cpu(), diagonal=1)  # [K, K]
    best_cost, best = float("inf"), None
    for labels in _partitions(k, num_groups):
        if min(labels.count(g) for g in range(num_groups)) < min_group_size:
            continue
        lab = torch.tensor(labels)  # [K]
        cost = float((upper * (lab[:, None] == lab[None, :])).sum())
        if cost < best_cost:
            best_cost, best = cost, labels
    assert best is not None  # feasibility was checked above
    groups = tuple(tuple(i for i in range(k) if best[i] == g) for g in range(num_groups))
    return groups, float(upper.sum()) - best_cost


@dataclass(frozen=True)
class EdgeSplit:
    """Where and how GM-NAS splits a supernet.

    Attributes:
        edge: the edge to split (the highest score).
        groups: the operations of each sub-supernet on that edge (operation ids as given in ``edge_ops``).
        score: that edge's score.
        distances: per candidate edge, the mean distance matrix ``[K_e, K_e]`` (rows in ``edge_ops`` order).
        scores: per candidate edge, its score.
    """

    edge: int
    groups: tuple[tuple[int, ...], ...]
    score: float
    distances: dict[int, Tensor]
    scores: dict[int, float]


@register(
    "gm_nas",
    family="compress",
    paper=5,
    summary="Splits the supernet edge whose candidate ops give the most dissimilar shared-weight gradients",
    claim="gradinfo.claims.gm_nas:check",
    example="gradinfo.compress.gm_nas:CONFORMANCE",
    missing="the paper's NB201/DARTS/MobileNet search spaces and their benchmark ground truths (the "
    "nas-bench-201 file) are not available offline; on a small MNIST-1D supernet GM splits rank no better "
    "than random ones",
)
def gm_nas(
    op_loss: Callable[[int, int, Any], Tensor],
    params: Mapping[str, Tensor],
    edge_params: Mapping[int, Collection[str]],
    edge_ops: Mapping[int, Sequence[int]],
    batches: Iterable[Any],
    *,
    num_groups: int = 2,
    min_group_size: int = 1,
    metric: str = "cos",
) -> EdgeSplit:
    """Score every unsplit edge by gradient matching and partition the best one's operations.

    Implements "Generalizing Few-Shot NAS with Gradient Matching" (2022): for each edge ``e`` and batch,
    the gradient of ``op_loss(e, o, batch)`` with respect to the shared weights (``params`` minus
    ``edge_params[e]``) for every candidate ``o``; ``d(o, o') = 1 - cos(g_o, g_o')`` averaged over batches;
    the partition minimising the within-group distance; ``score(e) = sum d - within`` (module docstring).

    Args:
        op_loss: ``op_loss(edge, op, batch)`` returns the scalar supernet loss on ``batch`` with ``edge``
            fixed to operation ``op`` (other edges as the supernet samples or mixes them; keep that choice
            the same for every ``op`` of one batch, for example by carrying it in the batch).
        params: the supernet's weights by name (``dict(model.named_parameters())``).
        edge_params: for each edge, the names of the weights that live on it (excluded from its gradient).
        edge_ops: the unsplit edges to consider and their candidate operation ids (at least
            ``num_groups * min_group_size`` each).
        batches: the batches to average over (the official code uses 100, 10 in its fast mode).
        num_groups: sub-supernets per split, ``>= 2`` (the official default 2).
        min_group_size: the smallest group, ``>= 1``.
        metric: ``"cos"`` (official default), ``"per-filter-cos"`` or ``"mse"``.

    Returns:
        An :class:`EdgeSplit`.

    Raises:
        TypeError / ValueError: bad arguments (unknown names, too few operations, no batches, a loss that
            is not a scalar).
    """
    if not callable(op_loss):
        raise TypeError(f"op_loss must be callable, got {type(op_loss).__name__}")
    one_of("metric", metric, METRICS)
    positive_int("num_groups", num_groups, minimum=2)
    positive_int("min_group_size", min_group_size)
    if not edge_ops:
        raise ValueError("edge_ops must name at least one edge")
    for edge, ops in edge_ops.items():
        if len(ops) < num_groups * min_group_size or len(set(ops)) != len(ops):
            raise ValueError(
                f"edge {edge} needs >= {num_groups * min_group_size} distinct operations, got {list(ops)}"
            )
        unknown = set(edge_params.get(edge, ())) - set(params)
        if unknown:
            raise ValueError(f"edge_params[{edge}] names weights not in params: {sorted(unknown)}")
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty; pass at least one batch")
    distances, scores, splits = {}, {}, {}
    for edge, ops in edge_ops.items():
        excluded = set(edge_params.get(edge, ()))
        shared = [p for name, p in params.items() if name not in excluded and p.requires_grad]
        if not shared:
            raise ValueError(f"edge {edge} has no shared trainable weights outside edge_params[{edge}]")
        total = torch.zeros(len(ops), len(ops), dtype=torch.float64)  # [K, K]
        for batch in batches:
            grads = []
            for op in ops:
                loss = op_loss(edge, op, batch)
                if not isinstance(loss, Tensor) or loss.dim() != 0:
                    raise ValueError(f"op_loss must return a scalar tensor, got {type(loss).__name__}")
                g = torch.autograd.grad(loss, shared, allow_unused=True)
                grads.append(
                    [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, shared, strict=True)]
                )
            total += distance_matrix(grads, metric).double()
        distances[edge] = total / len(batches)
        local, scores[edge] = split_ops(distances[edge], num_groups, min_group_size)
        splits[edge] = tuple(tuple(ops[i] for i in group) for group in local)
    best = max(edge_ops, key=lambda e: scores[e])
    return EdgeSplit(best, splits[best], scores[best], distances, scores)


def _conformance(seed: int) -> EdgeSplit:
    gen = torch.Generator().manual_seed(seed)
    stem, head = nn.Linear(4, 3), nn.Linear(3, 2)
    ops = [nn.Identity(), nn.Tanh(), nn.Linear(3, 3)]
    with torch.no_grad():
        for p in [*stem.parameters(), *head.parameters(), *ops[2].parameters()]:
            p.copy_(torch.randn(p.shape, generator=gen))
    params = {f"stem.{n}": p for n, p in stem.named_parameters()}
    params |= {f"head.{n}": p for n, p in head.named_parameters()}
    params |= {f"op2.{n}": p for n, p in ops[2].named_parameters()}
    x, y = torch.randn(6, 4, generator=gen), torch.randint(0, 2, (6,), generator=gen)  # [6, 4], [6]

    def op_loss(edge: int, op: int, batch: tuple[Tensor, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(head(ops[op](stem(batch[0]))), batch[1])

    return gm_nas(op_loss, params, {0: ["op2.weight", "op2.bias"]}, {0: [0, 1, 2]}, [(x, y)])


CONFORMANCE = Conformance(
    call=_conformance,
    bad_calls=(
        lambda: split_ops(torch.zeros(3, 4)),
        lambda: split_ops(torch.zeros(3, 3), num_groups=4),
        lambda: gradient_distance([torch.ones(2)], [torch.ones(3)]),
        lambda: gm_nas(lambda e, o, b: torch.zeros(()), {}, {}, {0: [0]}, [None]),
        lambda: gm_nas(lambda e, o, b: torch.zeros(()), {}, {}, {0: [0, 1]}, [None], metric="l1"),
        lambda: gm_nas("loss", {}, {}, {0: [0, 1]}, [None]),
    ),
)
