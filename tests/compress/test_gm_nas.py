"""GM-NAS: gradient-matching distances against direct computations, and the partition against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F

from gradinfo.compress.gm_nas import gm_nas, gradient_distance, split_ops


def _brute_force(d: np.ndarray, groups: int, min_size: int) -> float:
    """The least within-group distance over every labelling (numpy, independent of the library)."""
    k = len(d)
    best = np.inf
    for labels in itertools.product(range(groups), repeat=k):
        sizes = [labels.count(g) for g in range(groups)]
        if min(sizes) < min_size:
            continue
        cost = sum(d[i, j] for i in range(k) for j in range(i + 1, k) if labels[i] == labels[j])
        best = min(best, cost)
    return float(best)


def test_gradient_distances_match_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    ga = [
        torch.randn(4, 3, generator=gen, dtype=torch.float64),
        torch.randn(5, generator=gen, dtype=torch.float64),
    ]
    gb = [
        torch.randn(4, 3, generator=gen, dtype=torch.float64),
        torch.randn(5, generator=gen, dtype=torch.float64),
    ]
    va = np.concatenate([g.numpy().ravel() for g in ga])
    vb = np.concatenate([g.numpy().ravel() for g in gb])
    cos = 1 - va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb) + 1e-6)
    rows = sum(
        1 - ra @ rb / (np.linalg.norm(ra) * np.linalg.norm(rb) + 1e-6)
        for ra, rb in zip(ga[0].numpy(), gb[0].numpy(), strict=True)
    )
    assert float(gradient_distance(ga, gb)) == pytest.approx(cos, rel=1e-12)
    assert float(gradient_distance(ga, gb, "per-filter-cos")) == pytest.approx(rows, rel=1e-12)
    assert float(gradient_distance(ga, gb, "mse")) == pytest.approx(((va - vb) ** 2).sum(), rel=1e-12)


def _supernet() -> tuple[dict[str, nn.Module], list[nn.Module]]:
    torch.manual_seed(0)
    parts = {"stem": nn.Linear(5, 4), "after": nn.Linear(4, 4), "head": nn.Linear(4, 3)}
    ops = [nn.Linear(4, 4), nn.Identity(), nn.Tanh()]
    for m in [*parts.values(), *ops]:
        m.double()
    return parts, ops


def test_distances_equal_direct_computation_from_separate_gradients() -> None:
    parts, ops = _supernet()
    params = {f"{n}.{pn}": p for n, m in parts.items() for pn, p in m.named_parameters()}
    params |= {f"op0.{pn}": p for pn, p in ops[0].named_parameters()}
    gen = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(6, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (6,), generator=gen))
        for _ in range(3)
    ]

    def forward(op: int, x: Tensor) -> Tensor:
        return parts["head"](torch.relu(parts["after"](ops[op](torch.relu(parts["stem"](x))))))

    def op_loss(edge: int, op: int, batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(forward(op, batch[0]), batch[1])

    result = gm_nas(op_loss, params, {0: ["op0.weight", "op0.bias"]}, {0: [0, 1, 2]}, batches)
    shared = [p for n, m in parts.items() for p in m.parameters()]
    expected = np.zeros((3, 3))
    for x, y in batches:
        vecs = []
        for op in range(3):
            for p in [*shared, *ops[0].parameters()]:
                p.grad = None
            F.cross_entropy(forward(op, x), y).backward()
            vecs.append(np.concatenate([p.grad.numpy().ravel() for p in shared]))
        for i, j in itertools.product(range(3), repeat=2):
            if i != j:
                cos = vecs[i] @ vecs[j] / (np.linalg.norm(vecs[i]) * np.linalg.norm(vecs[j]) + 1e-6)
                expected[i, j] += (1 - cos) / len(batches)
    np.testing.assert_allclose(result.distances[0].numpy(), expected, rtol=1e-10, atol=1e-12)
    within = min(expected[0, 1], expected[0, 2], expected[1, 2])
    assert result.score == pytest.approx(expected[np.triu_indices(3, 1)].sum() - within, rel=1e-10)


def test_identical_operations_group_together_and_an_opposite_one_apart() -> None:
    parts, _ = _supernet()
    ops = [nn.Identity(), lambda h: -h, nn.Identity()]
    params = {f"{n}.{pn}": p for n, m in parts.items() for pn, p in m.named_parameters()}
    gen = torch.Generator().manual_seed(2)
    batch = (torch.randn(8, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (8,), generator=gen))

    def op_loss(edge: int, op: int, b: tuple[Tensor, Tensor]) -> Tensor:
        h = ops[op](parts["stem"](b[0]))
        return F.cross_entropy(parts["head"](torch.relu(parts["after"](h))), b[1])

    result = gm_nas(op_loss, params, {}, {0: [0, 1, 2]}, [batch])
    assert result.groups == ((0, 2), (1,))
    assert float(result.distances[0][0, 2]) == pytest.approx(0.0, abs=1e-4)  # 1e-6 / |g|^2 from the eps
    assert float(result.distances[0][0, 1]) > 0.1


def test_best_edge_is_the_one_with_the_highest_score() -> None:
    params = {"w": nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))}
    directions = {0: [1.0, 1.0, 1.0], 1: [1.0, -1.0, 1.0]}  # edge 1's ops disagree

    def op_loss(edge: int, op: int, batch: None) -> Tensor:
        return directions[edge][op] * params["w"].sum() + 0.1 * op * params["w"][0]

    result = gm_nas(op_loss, params, {}, {0: [0, 1, 2], 1: [0, 1, 2]}, [None])
    assert result.edge == 1 and result.scores[1] > result.scores[0]
    assert result.groups == ((0, 2), (1,))


def test_hand_built_matrix_partition_is_the_brute_force_optimum() -> None:
    d = torch.tensor(
        [
            [0.0, 0.1, 0.9, 0.8, 0.7],
            [0.1, 0.0, 0.8, 0.9, 0.9],
            [0.9, 0.8, 0.0, 0.2, 0.1],
            [0.8, 0.9, 0.2, 0.0, 0.3],
            [0.7, 0.9, 0.1, 0.3, 0.0],
        ]
    )
    groups, score = split_ops(d)
    assert groups == ((0, 1), (2, 3, 4))
    assert score == pytest.approx(float(torch.triu(d, 1).sum()) - 0.7, rel=1e-6)
    assert float(torch.triu(d, 1).sum()) - score == pytest.approx(_brute_force(d.double().numpy(), 2, 1))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**16), st.integers(3, 7), st.integers(2, 3), st.integers(1, 2))
def test_partition_matches_brute_force(seed: int, k: int, groups: int, min_size: int) -> None:
    if groups * min_size > k:
        return
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((k, k)), 1)
    d = upper + upper.T
    found, score = split_ops(torch.from_numpy(d), groups, min_size)
    assert sorted(i for g in found for i in g) == list(range(k))
    assert len(found) == groups and min(len(g) for g in found) >= min_size
    within = sum(d[i, j] for g in found for i, j in itertools.combinations(g, 2))
    assert within == pytest.approx(_brute_force(d, groups, min_size), abs=1e-12)
    assert score == pytest.approx(upper.sum() - within, abs=1e-12)


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="square"):
        split_ops(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least 2"):
        split_ops(torch.zeros(3, 3), min_group_size=2)
    with pytest.raises(ValueError, match="not in params"):
        gm_nas(lambda e, o, b: torch.zeros(()), {}, {0: ["x"]}, {0: [0, 1]}, [None])
    with pytest.raises(ValueError, match="empty"):
        gm_nas(lambda e, o, b: torch.zeros(()), {}, {}, {0: [0, 1]}, [])
