"""obs_prune against a dense float64 reference: F = lambda I + (1/m) sum g g^T built explicitly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from gradinfo.capture import InverseFisher
from gradinfo.compress.obs_prune import obs_prune, obs_step, sparsity_schedule

LAM = 1e-2


def _layer(seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    model = nn.Linear(4, 3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(10, 4, generator=gen, dtype=torch.float64)  # [m, 4]
    y = torch.randint(0, 3, (10,), generator=gen)  # [m]
    return model, x, y


def _dense_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """F over the weight matrix from a naive loop of single-example backward passes."""
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        rows.append(model.weight.grad.reshape(-1).clone())
    model.zero_grad()
    g = torch.stack(rows)  # [m, d]
    return LAM * torch.eye(g.shape[1], dtype=torch.float64) + g.T @ g / len(g)  # [d, d]


def test_scores_and_single_weight_update_equal_closed_form() -> None:
    model, x, y = _layer()
    inv = torch.linalg.inv(_dense_fisher(model, x, y))  # [d, d]
    w = model.weight.detach().reshape(-1).clone()  # [d]
    expected_scores = w**2 / (2 * inv.diagonal())  # [d]
    j = int(expected_scores.argmin())
    expected_w = w - w[j] / inv[j, j] * inv[:, j]  # [d]

    pruned, report = obs_prune(
        model,
        [(x, y)],
        nn.functional.cross_entropy,
        1 / 12,
        params=["weight"],
        m=10,
        damping=LAM,
        block_size=None,
    )
    torch.testing.assert_close(pruned.weight.reshape(-1), expected_w, rtol=1e-9, atol=1e-12)
    assert pruned.weight.reshape(-1)[j] == 0
    assert expected_w[j].abs() < 1e-12  # the closed form itself zeroes w_j
    torch.testing.assert_close(pruned.bias, model.bias, rtol=0, atol=0)
    assert report.saliency[0] == pytest.approx(float(expected_scores[j]), rel=1e-9)
    assert int((~report.masks["weight"]).sum()) == 1 and not report.masks["weight"].reshape(-1)[j]


def test_obs_step_multi_weight_update_is_the_sum_of_single_updates() -> None:
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(6, 20, generator=gen, dtype=torch.float64)  # [m, d]
    w = torch.randn(20, generator=gen, dtype=torch.float64)  # [d]
    dense = LAM * torch.eye(20, dtype=torch.float64) + g.T @ g / 6  # [d, d]
    inv = torch.linalg.inv(dense)  # [d, d]
    new, dropped, scores = obs_step(w, InverseFisher(g, LAM), 5)
    torch.testing.assert_close(scores, w**2 / (2 * inv.diagonal()), rtol=1e-9, atol=0)
    assert set(dropped.tolist()) == set(torch.argsort(scores)[:5].tolist())
    expected = w.clone()
    for j in dropped.tolist():
        expected -= w[j] / inv[j, j] * inv[:, j]
    expected[dropped] = 0
    torch.testing.assert_close(new, expected, rtol=1e-8, atol=1e-10)


def test_block_scores_use_the_block_diagonal_inverse() -> None:
    gen = torch.Generator().manual_seed(2)
    g = torch.randn(5, 12, generator=gen, dtype=torch.float64)  # [m, d]
    w = torch.randn(12, generator=gen, dtype=torch.float64)  # [d]
    dense = LAM * torch.eye(12, dtype=torch.float64) + g.T @ g / 5  # [d, d]
    inv = torch.block_diag(*(torch.linalg.inv(dense[s : s + 4, s : s + 4]) for s in range(0, 12, 4)))
    _, _, scores = obs_step(w, InverseFisher(g, LAM, block_size=4), 0)
    torch.testing.assert_close(scores, w**2 / (2 * inv.diagonal()), rtol=1e-9, atol=0)


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 1000), st.sampled_from([0.25, 0.5, 0.75]))
def test_huge_damping_reduces_to_magnitude_pruning(seed: int, sparsity: float) -> None:
    """With lambda >> |g|^2, F^-1 ~ I/lambda: saliency ~ w^2 and the update vanishes."""
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(8, 6, generator=gen), torch.randint(0, 3, (8,), generator=gen)
    pruned, report = obs_prune(model, [(x, y)], nn.functional.cross_entropy, sparsity, m=8, damping=1e8)
    weights = torch.cat([model[0].weight.reshape(-1), model[2].weight.reshape(-1)]).detach()  # [D]
    count = round(sparsity * weights.numel())
    expected = torch.ones_like(weights, dtype=torch.bool)
    expected[torch.argsort(weights.abs(), stable=True)[:count]] = False
    kept = torch.cat([report.masks["0.weight"].reshape(-1), report.masks["2.weight"].reshape(-1)])
    assert torch.equal(kept, expected)
    new = torch.cat([pruned[0].weight.reshape(-1), pruned[2].weight.reshape(-1)]).detach()
    torch.testing.assert_close(new, weights * expected, rtol=0, atol=1e-6)


def test_gradual_pruning_follows_the_schedule_and_keeps_pruned_weights_zero() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    x, y = torch.randn(16, 8), torch.randint(0, 4, (16,))
    seen = []

    def retrain(net: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        seen.append(sum(int((~mk).sum()) for mk in masks.values()))

    before = {k: v.clone() for k, v in model.state_dict().items()}
    pruned, report = obs_prune(
        model,
        [(x[:10], y[:10]), (x[10:], y[10:])],
        nn.functional.cross_entropy,
        0.7,
        m=16,
        steps=3,
        block_size=16,
        damping=1e-3,
        retrain=retrain,
    )
    schedule = sparsity_schedule(0.7, 3, "cubic")
    assert report.schedule == schedule
    assert seen == [round(s * 96) for s in schedule]
    assert report.sparsity == pytest.approx(round(0.7 * 96) / 96)
    for name in ("0.weight", "2.weight"):
        weight = dict(pruned.named_parameters())[name]
        assert torch.all(weight[~report.masks[name]] == 0)
    for k, v in model.state_dict().items():  # the input model is untouched (deep copy)
        assert torch.equal(v, before[k])
    assert torch.equal(pruned[0].bias, model[0].bias)


def test_schedules() -> None:
    assert sparsity_schedule(0.9, 1) == (0.9,)
    torch.testing.assert_close(
        torch.tensor(sparsity_schedule(0.8, 4, "linear")), torch.tensor([0.2, 0.4, 0.6, 0.8])
    )
    cubic = sparsity_schedule(0.8, 4, "cubic")
    assert cubic[0] == pytest.approx(0.8 * (1 - 0.75**3)) and cubic[-1] == 0.8
    geometric = sparsity_schedule(0.75, 2, "geometric")
    assert geometric[0] == pytest.approx(0.5) and geometric[-1] == 0.75


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sparsity": 1.0}, ValueError),
        ({"sparsity": -0.1}, ValueError),
        ({"m": 0}, ValueError),
        ({"m": 100}, ValueError),
        ({"damping": -1.0}, ValueError),
        ({"block_size": 0}, ValueError),
        ({"steps": 0}, ValueError),
        ({"schedule": "exp"}, ValueError),
        ({"params": ["missing"]}, ValueError),
        ({"params": "weight"}, TypeError),
        ({"dtype": torch.int64}, TypeError),
    ],
)
def test_bad_input(kwargs: dict, error: type) -> None:
    model, x, y = _layer()
    args = {"sparsity": 0.5, "m": 10} | kwargs
    sparsity = args.pop("sparsity")
    with pytest.raises(error):
        obs_prune(model, [(x, y)], nn.functional.cross_entropy, sparsity, **args)
