"""The objective's terms against naive float64 formulas: the update function and the distances.

The TV prior is checked against the naive loop of ``test_matching`` (its reference uses that loop).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradinfo.privacy.attacks.objective import (
    cosine_distance,
    l2_distance,
    loss_gradient,
    norm,
)


def _grads(seed: int) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "w": torch.randn(4, 3, generator=gen, dtype=torch.float64),
        "b": torch.randn(4, generator=gen, dtype=torch.float64),
    }


def _entries(grads: dict[str, Tensor]) -> list[float]:
    return [float(v) for n in sorted(grads) for v in grads[n].flatten()]


def test_loss_gradient_matches_autograd() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(108, 3)).double()
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 1])
    params = {n: p.detach() for n, p in model.named_parameters()}
    got = loss_gradient(model, params, {}, x, y)
    want = torch.autograd.grad(F.cross_entropy(model(x), y), list(model.parameters()))
    for (n, _), w in zip(model.named_parameters(), want, strict=True):
        torch.testing.assert_close(got[n], w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_distances_equal_the_naive_float64_formulas(seed: int) -> None:
    a, t = _grads(seed), _grads(seed + 10)
    va, vt = _entries(a), _entries(t)
    dot = sum(p * q for p, q in zip(va, vt, strict=True))
    na, nt = math.sqrt(sum(p * p for p in va)), math.sqrt(sum(q * q for q in vt))
    want_cos = 1 - dot / (na * nt + 1e-8)
    want_l2 = sum((p - q) ** 2 for p, q in zip(va, vt, strict=True))
    assert float(cosine_distance(a, t)) == pytest.approx(want_cos, rel=1e-12, abs=1e-14)
    assert float(cosine_distance(a, t, nt)) == pytest.approx(want_cos, rel=1e-12, abs=1e-14)
    assert float(l2_distance(a, t)) == pytest.approx(want_l2, rel=1e-12)
    assert float(l2_distance(a, t, 123.0)) == float(l2_distance(a, t))  # target_norm is unused
    assert norm(t) == pytest.approx(nt, rel=1e-12)
    cos = F.cosine_similarity(
        torch.tensor(va, dtype=torch.float64), torch.tensor(vt, dtype=torch.float64), dim=0
    )
    torch.testing.assert_close(cosine_distance(a, t), 1 - cos, rtol=1e-7, atol=1e-7)


def test_distances_compare_only_the_targets_keys_and_cosine_is_scale_free() -> None:
    a, t = _grads(1), _grads(2)
    extra = {**a, "other": torch.ones(5, dtype=torch.float64)}
    assert float(cosine_distance(extra, t)) == float(cosine_distance(a, t))
    assert float(l2_distance(extra, t)) == float(l2_distance(a, t))
    scaled = {n: 7.0 * g for n, g in a.items()}
    base = float(cosine_distance(a, t))
    assert float(cosine_distance(scaled, t)) == pytest.approx(base, rel=1e-7)  # up to the 1e-8 guard
    assert float(cosine_distance(t, t)) == pytest.approx(0.0, abs=1e-8)
